/**
 * /explain, /score and /existing_explanations over collated datasets (packages/explain): local dataset files
 * keep their explanations in their explanations table; other sources (OpenAI's public datasets) provide
 * records and their published explanations. Explanations come from a language model when an endpoint is
 * configured, else from the offline explainer; offline, /score uses the keyword-overlap simulator (it
 * predicts activation where a token, or for heads a token pair, matches the explanation's quoted strings or
 * content words, and scores that as TDB does).
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
import type { ActivationRecord, ComponentKind, DatasetStore, NeuronRecord } from "@tdb/datasets";
import { kindForDst } from "@tdb/datasets";
import {
  ChatClient,
  type ComponentExplainer,
  type ComponentRecord,
  INACTIVE_EXPLANATION,
  LlmError,
  LlmExplainer,
  type LlmFlags,
  NotActivatedError,
  OfflineExplainer,
  optionalLlmConfig,
} from "@tdb/explain";
import { DatasetNotFoundError, type DatasetSource, type Explainer } from "./datasets.js";
import { LocalExplanationCache, mergeExplanations } from "./explanation-cache.js";
import { HttpError } from "./http.js";

/** Token-pair latent datasets (OpenAI's attention autoencoder by pair) are explained as heads are. */
const PAIR_DSTS = new Set([
  "attn_write_norm",
  "unflattened_attn_write_norm",
  "flattened_attn_write_to_latent_summed_over_heads",
]);

/** TDB's _map_dst_to_activation_category: the dsts that have explanations. */
function componentKindForDst(dst: string): ComponentKind | null {
  if (PAIR_DSTS.has(dst)) return "attention_head";
  if (dst === "autoencoder_latent" || dst === "online_autoencoder_latent") return "mlp_autoencoder_latent";
  return kindForDst(dst);
}

export function matchesStore(store: DatasetStore, dataset: string): boolean {
  return dataset === store.name || dataset === store.file;
}

interface Located {
  component: ComponentRecord;
  /** Reported as `dataset` / `datasetPath`. */
  dataset: string;
  /** Set for local datasets: explanations live there. */
  store: DatasetStore | null;
}

function fromNeuronResponse(response: NeuronRecordResponse): NeuronRecord {
  const toRecord = (sequence: { token: string; scalar: number }[]): ActivationRecord => ({
    tokens: sequence.map((t) => t.token),
    activations: sequence.map((t) => t.scalar),
  });
  return {
    layerIndex: 0,
    neuronIndex: 0,
    mostPositiveActivationRecords: response.topActivations.map(toRecord),
    randomSample: response.randomSample.map(toRecord),
  };
}

function fromAttentionResponse(response: AttentionHeadRecordResponse): NeuronRecord {
  // Rows of the lower triangle, back to TDB's flattened form.
  const toRecord = (sequence: { token: string; scalars: number[] }[]): ActivationRecord => ({
    tokens: sequence.map((t) => t.token),
    activations: sequence.flatMap((t) => t.scalars),
  });
  return {
    layerIndex: 0,
    neuronIndex: 0,
    mostPositiveActivationRecords: response.mostPositiveTokenSequences.map(toRecord),
    randomSample: response.randomTokenSequences.map(toRecord),
  };
}

function storedAsAttributed(store: DatasetStore, kind: ComponentKind, layer: number, index: number) {
  return store
    .explanations(kind, layer, index)
    .filter((e) => e.explanation !== INACTIVE_EXPLANATION)
    .map(
      (e): AttributedScoredExplanation => ({
        explanation: e.explanation,
        score: e.score !== null && Number.isFinite(e.score) ? e.score : null,
        datasetName: store.name,
      }),
    );
}

export interface DatasetExplainerOptions {
  /** Local collated datasets: their explanations tables are read and written. */
  stores?: readonly DatasetStore[];
  /** Where records of other datasets come from (e.g. OpenAI's public datasets). */
  source?: DatasetSource | null;
  /** The language-model explainer when an endpoint is configured; null = offline. */
  llm?: ComponentExplainer | null;
  /** Where /score keeps results for datasets that are not local files (TDB's cached_explanations). */
  cache?: LocalExplanationCache | null;
  log?: (line: string) => void;
}

export class DatasetExplainer implements Explainer {
  readonly description: string;
  private readonly stores: readonly DatasetStore[];
  private readonly source: DatasetSource | null;
  private readonly llm: ComponentExplainer | null;
  private readonly offline = new OfflineExplainer();
  private readonly cache: LocalExplanationCache | null;
  private readonly log: (line: string) => void;
  /** Scores for datasets we cannot write to when there is no cache folder, for this run. */
  private readonly remembered = new Map<string, number>();

  constructor(options: DatasetExplainerOptions) {
    this.stores = options.stores ?? [];
    this.source = options.source ?? null;
    this.llm = options.llm ?? null;
    this.cache = options.cache ?? null;
    this.log = options.log ?? (() => {});
    this.description = this.llm
      ? this.llm.description
      : "offline explainer (token statistics; /score by keyword overlap — no language model configured)";
  }

  /** The first of the request's datasets that holds the node. */
  private async locate(request: NodeIdAndDatasets): Promise<Located> {
    if (request.datasets.length === 0) throw new HttpError(400, "datasets must name at least one dataset");
    const { dst, layerIndex: layer, activationIndex: index } = request;
    const misses: string[] = [];
    for (const dataset of request.datasets) {
      const store = this.stores.find((s) => matchesStore(s, dataset));
      if (store) {
        const kind = store.resolveKind(dst);
        const record = kind && store.record(kind, layer, index);
        if (kind && record && record.mostPositiveActivationRecords.length > 0) {
          return { component: { kind, layer, index, record }, dataset: store.name, store };
        }
        misses.push(`${store.name} has no ${dst} ${layer}:${index}`);
        continue;
      }
      if (!this.source) {
        misses.push(`no dataset named '${dataset}'`);
        continue;
      }
      const kind = componentKindForDst(dst);
      if (!kind) throw new HttpError(422, `Unsupported derived scalar type ${dst}`);
      const one = { ...request, datasets: [dataset] };
      try {
        const record =
          kind === "attention_head"
            ? fromAttentionResponse(await this.source.attentionHeadRecord(one))
            : fromNeuronResponse(await this.source.neuronRecord(one));
        const response = { kind, layer, index, record };
        return { component: response, dataset, store: null };
      } catch (error) {
        if (!(error instanceof DatasetNotFoundError)) throw error;
        misses.push(error.message);
      }
    }
    throw new DatasetNotFoundError(misses.join("; "));
  }

  private async existing(
    located: Located,
    request: NodeIdAndDatasets,
  ): Promise<AttributedScoredExplanation[]> {
    const { component: c, store } = located;
    if (store) return storedAsAttributed(store, c.kind, c.layer, c.index);
    const cached = this.cache ? await this.cache.list(located.dataset, request.dst, c.layer, c.index) : [];
    if (!this.source) return cached;
    try {
      const published = await this.source.existingExplanations({
        dst: request.dst,
        layerIndex: c.layer,
        activationIndex: c.index,
        explanationDatasets: [],
        neuronDataset: located.dataset,
      });
      return mergeExplanations(published, cached);
    } catch (error) {
      if (error instanceof DatasetNotFoundError) return cached;
      throw error;
    }
  }

  private async run<T>(component: ComponentRecord, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      if (error instanceof NotActivatedError) {
        const what = component.kind === "attention_head" ? "Attention head" : "Neuron";
        throw new HttpError(422, `${what} is not activated on the dataset`);
      }
      if (error instanceof LlmError) throw new HttpError(502, `language-model endpoint: ${error.message}`);
      throw error;
    }
  }

  async explain(request: NodeIdAndDatasets): Promise<ExplanationResult> {
    const located = await this.locate(request);
    const cached = await this.existing(located, request);
    if (cached.length > 0)
      return { explanations: cached.map((e) => e.explanation), dataset: located.dataset };
    const { component, store } = located;
    if (this.llm) {
      // As TDB: generated explanations are stored once scored (/score), not here.
      const explanation = await this.run(component, () => this.llm!.explain(component));
      return { explanations: [explanation], dataset: located.dataset };
    }
    const outcome = await this.run(component, () => this.offline.explainAndScore(component));
    if (store) {
      this.tryStore(store, component, {
        explanation: outcome.explanation,
        score: outcome.score,
        method: outcome.method,
        details: { scoreKind: outcome.scoreKind, ...outcome.details },
      });
    }
    return { explanations: [outcome.explanation], dataset: located.dataset };
  }

  async score(request: ScoreRequest): Promise<ScoreResult> {
    const located = await this.locate(request);
    const { component, store } = located;
    const text = request.explanation.trim();
    if (text === "") throw new HttpError(400, "explanation must not be empty");
    // As TDB: an explanation scored before keeps its score.
    const known = (await this.existing(located, request)).find(
      (e) => e.explanation === text && e.score !== null,
    );
    if (known) return { score: known.score!, datasetPath: located.dataset };
    const key = JSON.stringify([
      located.dataset,
      request.dst,
      component.layer,
      component.index,
      text,
      request.maxSequences,
    ]);
    const remembered = this.remembered.get(key);
    if (remembered !== undefined) return { score: remembered, datasetPath: located.dataset };

    const scorer = this.llm ?? this.offline;
    const outcome = await this.run(component, () =>
      scorer.score(component, text, { maxSequences: request.maxSequences ?? null }),
    );
    if (outcome.score === null) {
      throw new HttpError(
        422,
        "The explanation cannot be scored: the scoring sample has only one class of token pairs",
      );
    }
    if (store) {
      this.tryStore(store, component, {
        explanation: text,
        score: outcome.score,
        method: outcome.method,
        details: {
          scoreKind: outcome.scoreKind,
          maxSequences: request.maxSequences ?? null,
          ...outcome.details,
        },
      });
    } else if (this.cache) {
      const node = {
        layer: component.layer,
        index: component.index,
        attention: outcome.scoreKind === "roc_auc",
      };
      await this.cache
        .add(located.dataset, request.dst, outcome.method, node, text, outcome.score)
        .catch((error: Error) =>
          this.log(`tdb serve: could not cache a scored explanation: ${error.message}`),
        );
    } else {
      this.remembered.set(key, outcome.score);
    }
    return { score: outcome.score, datasetPath: located.dataset };
  }

  private tryStore(
    store: DatasetStore,
    c: ComponentRecord,
    explanation: { explanation: string; score: number | null; method: string; details: unknown },
  ): void {
    try {
      store.putExplanation(c.kind, c.layer, c.index, explanation);
    } catch (error) {
      // A read-only file still answers; the result is just not kept.
      this.log(`tdb serve: could not store an explanation in ${store.file}: ${(error as Error).message}`);
    }
  }
}

/**
 * A DatasetSource whose /existing_explanations answers local datasets from their explanations tables and
 * passes every other name to `source`, adding what /score cached for it; records and metadata come from
 * `source`.
 */
export class StoredExplanationsSource implements DatasetSource {
  readonly description: string;
  constructor(
    private readonly source: DatasetSource,
    private readonly stores: readonly DatasetStore[],
    private readonly cache: LocalExplanationCache | null = null,
  ) {
    this.description = source.description;
  }

  neuronDatasetsMetadata(): Promise<NeuronDatasetMetadata[]> {
    return this.source.neuronDatasetsMetadata();
  }

  neuronRecord(request: NodeIdAndDatasets): Promise<NeuronRecordResponse> {
    return this.source.neuronRecord(request);
  }

  attentionHeadRecord(request: NodeIdAndDatasets): Promise<AttentionHeadRecordResponse> {
    return this.source.attentionHeadRecord(request);
  }

  async existingExplanations(request: ExistingExplanationsRequest): Promise<AttributedScoredExplanation[]> {
    const names = request.neuronDataset != null ? [request.neuronDataset] : request.explanationDatasets;
    const local: AttributedScoredExplanation[] = [];
    const others: string[] = [];
    for (const name of names) {
      const store = this.stores.find((s) => matchesStore(s, name));
      if (!store) {
        others.push(name);
        continue;
      }
      const kind = store.resolveKind(request.dst);
      if (kind) local.push(...storedAsAttributed(store, kind, request.layerIndex, request.activationIndex));
    }
    if (others.length === 0) return local;
    if (request.neuronDataset == null) {
      return [
        ...local,
        ...(await this.source.existingExplanations({ ...request, explanationDatasets: others })),
      ];
    }
    const dataset = others[0];
    const cached = this.cache
      ? await this.cache.list(dataset, request.dst, request.layerIndex, request.activationIndex)
      : [];
    try {
      const published = await this.source.existingExplanations({ ...request, neuronDataset: dataset });
      return mergeExplanations(published, cached);
    } catch (error) {
      if (error instanceof DatasetNotFoundError && cached.length > 0) return cached;
      throw error;
    }
  }
}

export interface ExplanationSetupOptions {
  /** The server's dataset source (records, metadata, published explanations). */
  source: DatasetSource;
  /** Local dataset files among the source's datasets (explanations are read from and written to them). */
  stores: readonly DatasetStore[];
  /** Language-model endpoint flags; the environment fills the rest (TDB_LLM_BASE_URL, OPENAI_API_KEY, …). */
  llm?: LlmFlags;
  env?: NodeJS.ProcessEnv;
  /** TDB's cached_explanations folder for datasets that are not local files; null = keep in memory. */
  cacheDir: string | null;
  log?: (line: string) => void;
}

/**
 * The explainer routes' wiring for `tdb serve`: a language model when an endpoint is configured, else the
 * offline explainer; local explanations tables and the score cache merged into /existing_explanations.
 */
export function setupExplanations(options: ExplanationSetupOptions): {
  datasets: DatasetSource;
  explainer: DatasetExplainer;
} {
  const config = optionalLlmConfig(options.llm ?? {}, options.env ?? process.env);
  const llm = config ? new LlmExplainer(new ChatClient(config, { log: options.log })) : null;
  const cache = options.cacheDir === null ? null : new LocalExplanationCache(options.cacheDir);
  const datasets = new StoredExplanationsSource(options.source, options.stores, cache);
  const explainer = new DatasetExplainer({
    stores: options.stores,
    source: datasets,
    llm,
    cache,
    log: options.log,
  });
  return { datasets, explainer };
}
