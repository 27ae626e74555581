/**
 * What the read routes and the explainer routes need, as interfaces: a local dataset store (packages/datasets),
 * OpenAI's public collated datasets (public-datasets.ts) or an explainer plug in here. Methods return the wire
 * shapes of tdb-spec §3.2; a missing neuron or dataset is a `DatasetNotFoundError` (404).
 */
import type {
  AttentionHeadRecordResponse,
  AttributedScoredExplanation,
  ExistingExplanationsRequest,
  ExplanationResult,
  NeuronDatasetMetadata,
  NeuronRecordResponse,
  NodeIdAndDatasets,
  ScoreRequest,
  ScoreResult,
} from "@tdb/attribution";

export class DatasetNotFoundError extends Error {
  override name = "DatasetNotFoundError";
}

export interface DatasetSource {
  /** Short description for logs and error messages, e.g. "OpenAI public datasets (cache: …)". */
  readonly description: string;
  neuronDatasetsMetadata(): Promise<NeuronDatasetMetadata[]>;
  /** Tries `request.datasets` in order; the first that holds the node answers. */
  neuronRecord(request: NodeIdAndDatasets): Promise<NeuronRecordResponse>;
  attentionHeadRecord(request: NodeIdAndDatasets): Promise<AttentionHeadRecordResponse>;
  existingExplanations(request: ExistingExplanationsRequest): Promise<AttributedScoredExplanation[]>;
}

export interface Explainer {
  readonly description: string;
  explain(request: NodeIdAndDatasets): Promise<ExplanationResult>;
  score(request: ScoreRequest): Promise<ScoreResult>;
}

/** Several sources behind one: the first that knows a node answers; metadata is concatenated. */
export class CombinedDatasetSource implements DatasetSource {
  readonly description: string;
  constructor(private readonly sources: readonly DatasetSource[]) {
    this.description = sources.map((s) => s.description).join(" + ");
  }

  async neuronDatasetsMetadata(): Promise<NeuronDatasetMetadata[]> {
    const lists = await Promise.all(this.sources.map((s) => s.neuronDatasetsMetadata()));
    return lists.flat();
  }

  neuronRecord(request: NodeIdAndDatasets): Promise<NeuronRecordResponse> {
    return this.first((s) => s.neuronRecord(request));
  }

  attentionHeadRecord(request: NodeIdAndDatasets): Promise<AttentionHeadRecordResponse> {
    return this.first((s) => s.attentionHeadRecord(request));
  }

  existingExplanations(request: ExistingExplanationsRequest): Promise<AttributedScoredExplanation[]> {
    return this.first((s) => s.existingExplanations(request));
  }

  private async first<T>(ask: (source: DatasetSource) => Promise<T>): Promise<T> {
    const misses: string[] = [];
    for (const source of this.sources) {
      try {
        return await ask(source);
      } catch (error) {
        if (!(error instanceof DatasetNotFoundError)) throw error;
        misses.push(error.message);
      }
    }
    throw new DatasetNotFoundError(misses.join("; ") || "no dataset source is configured");
  }
}
