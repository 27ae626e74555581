/**
 * Collated dataset files made by `tdb collate` (packages/datasets) as a DatasetSource: each file answers to its
 * short name (the base name without extension) or its path, as listed by /neuron_datasets_metadata.
 */
import type {
  AttentionHeadRecordResponse,
  AttributedScoredExplanation,
  NeuronDatasetMetadata,
  NeuronRecordResponse,
  NodeIdAndDatasets,
} from "@tdb/attribution";
import type { DatasetStore } from "@tdb/datasets";
import { DatasetNotFoundError, type DatasetSource } from "./datasets.js";
import { matchesStore } from "./explainer.js";

export class LocalDatasetSource implements DatasetSource {
  readonly description: string;

  constructor(private readonly stores: readonly DatasetStore[]) {
    this.description = `local datasets (${stores.map((s) => s.name).join(", ")})`;
  }

  async neuronDatasetsMetadata(): Promise<NeuronDatasetMetadata[]> {
    return this.stores.flatMap((s) => s.neuronDatasetsMetadata());
  }

  async neuronRecord(request: NodeIdAndDatasets): Promise<NeuronRecordResponse> {
    return this.find(request, (store, kind) =>
      store.neuronRecord(kind, request.layerIndex, request.activationIndex),
    );
  }

  async attentionHeadRecord(request: NodeIdAndDatasets): Promise<AttentionHeadRecordResponse> {
    return this.find(request, (store) =>
      store.attentionHeadRecord(request.layerIndex, request.activationIndex),
    );
  }

  /** Local explanations are read by the explanation wiring (StoredExplanationsSource), not here. */
  async existingExplanations(): Promise<AttributedScoredExplanation[]> {
    throw new DatasetNotFoundError(
      "local datasets answer /existing_explanations through their explanations table",
    );
  }

  private find<T>(
    request: NodeIdAndDatasets,
    read: (store: DatasetStore, kind: NonNullable<ReturnType<DatasetStore["resolveKind"]>>) => T | null,
  ): T {
    const tried: string[] = [];
    for (const name of request.datasets) {
      const store = this.stores.find((s) => matchesStore(s, name));
      if (!store) continue;
      const kind = store.resolveKind(request.dst);
      if (!kind) {
        tried.push(`${store.name} has no ${request.dst} components`);
        continue;
      }
      const record = read(store, kind);
      if (record) return record;
      tried.push(
        `${store.name} has no ${kind} at layer ${request.layerIndex}, index ${request.activationIndex}`,
      );
    }
    throw new DatasetNotFoundError(
      tried.length > 0
        ? tried.join("; ")
        : `none of [${request.datasets.join(", ")}] is a local dataset (loaded: ${this.stores.map((s) => s.name).join(", ")})`,
    );
  }
}
