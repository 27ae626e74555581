/**
 * OpenAI's public collated datasets and explanations (GPT-2 small / XL) read by URL, in the layout of
 * tdb-spec §6: `{dataset}/{layer}/{index}.json` records and `{explanations}/{layer}/{index}.jsonl`
 * explanations. Files are kept in an on-disk cache (they never change); a mirror with the same layout can be
 * used instead of the public bucket. Only URLs under the configured base are ever fetched, whatever a client
 * sends.
 */
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type {
  AttentionHeadRecordResponse,
  AttributedScoredExplanation,
  ExistingExplanationsRequest,
  NeuronDatasetMetadata,
  NeuronRecordResponse,
  NodeIdAndDatasets,
} from "@tdb/attribution";
import { DatasetNotFoundError, type DatasetSource } from "./datasets.js";
import { HttpError } from "./http.js";
import {
  attentionHeadRecordResponse,
  type NeuronRecordData,
  neuronRecordResponse,
  parseNeuronRecord,
  parsePythonJson,
  parseSimulationResults,
  type StoredExplanation,
} from "./records.js";

export const OPENAI_PUBLIC_BASE = "https://openaipublic.blob.core.windows.net/neuron-explainer/";

interface RegistryEntry {
  shortName: string;
  derivedScalarType: string;
  userVisibleName: string;
  /** Relative to the base URL (TDB's neuron_datasets.py, trailing slashes as there). */
  path: string;
}

/** TDB's NEURON_DATASET_METADATA_REGISTRY. */
const REGISTRY: readonly RegistryEntry[] = [
  ["gpt2-xl", "mlp_post_act", "GPT-2 XL - MLP neurons", "data/collated-activations/"],
  ["gpt2-small", "mlp_post_act", "GPT-2 small - MLP neurons", "gpt2_small_data/collated-activations/"],
  [
    "gpt2-small",
    "attn_write_norm",
    "GPT-2 small - Attention write by token pair",
    "gpt2_small/attn_write_norm/collated-activations-by-token-pair",
  ],
  [
    "gpt2-small_ae-mlp-post-act-v1",
    "mlp_autoencoder_latent",
    "GPT-2 small - MLP autoencoder (post-act) v1",
    "gpt2_small/autoencoder_latent/mlp_post_act_v1/collated-activations",
  ],
  [
    "gpt2-small_ae-resid-delta-mlp-v1",
    "mlp_autoencoder_latent",
    "GPT-2 small - MLP autoencoder (write) v1",
    "gpt2_small/autoencoder_latent/resid_delta_mlp_v1/collated-activations",
  ],
  [
    "gpt2-small_ae-mlp-post-act-v4",
    "mlp_autoencoder_latent",
    "GPT-2 small - MLP autoencoder (post-act) v4",
    "gpt2_small/autoencoder_latent/mlp_post_act_v4/collated-activations",
  ],
  [
    "gpt2-small_ae-resid-delta-mlp-v4",
    "mlp_autoencoder_latent",
    "GPT-2 small - MLP autoencoder (write) v4",
    "gpt2_small/autoencoder_latent/resid_delta_mlp_v4/collated-activations",
  ],
  [
    "gpt2-small_ae-resid-delta-attn-v4",
    "attention_autoencoder_latent",
    "GPT-2 small - Attention autoencoder (write) v4",
    "gpt2_small/autoencoder_latent/resid_delta_attn_v4/collated-activations",
  ],
  [
    "gpt2-small_ae-resid-delta-attn-v4",
    "flattened_attn_write_to_latent_summed_over_heads",
    "GPT-2 small - Attention autoencoder (write) v4 by token pair",
    "gpt2_small/autoencoder_latent/resid_delta_attn_v4/collated-activations-by-token-pair",
  ],
].map(([shortName, derivedScalarType, userVisibleName, path]) => ({
  shortName,
  derivedScalarType,
  userVisibleName,
  path,
}));

/** TDB's AZURE_EXPLANATION_DATASET_REGISTRY: neuron dataset → explanation dataset. */
const EXPLANATIONS: Readonly<Record<string, string>> = {
  "data/collated-activations/": "data/explanations/",
  "gpt2_small_data/collated-activations/": "gpt2_small_data/explanations/",
};

export interface PublicDatasetSourceOptions {
  /** Base URL in the public bucket's layout (default: OpenAI's bucket). */
  baseUrl?: string;
  /** Downloaded files are kept here, by URL path. */
  cacheDir: string;
  fetch?: typeof fetch;
  /** Per-file timeout in milliseconds (default 60 s). */
  timeoutMs?: number;
  /** Larger files are refused (default 64 MB). */
  maxFileBytes?: number;
}

export class PublicDatasetSource implements DatasetSource {
  readonly description: string;
  private readonly base: string;
  private readonly fetchImpl: typeof fetch;
  private readonly timeoutMs: number;
  private readonly maxFileBytes: number;
  /** URLs known to be missing (404), so they are asked once per run. */
  private readonly missing = new Set<string>();
  private readonly inFlight = new Map<string, Promise<string | null>>();

  constructor(private readonly options: PublicDatasetSourceOptions) {
    const base = options.baseUrl ?? OPENAI_PUBLIC_BASE;
    let url: URL;
    try {
      url = new URL(base);
    } catch {
      throw new Error(`dataset base URL '${base}' is not a URL`);
    }
    if (!/^https?:$/.test(url.protocol)) throw new Error(`dataset base URL '${base}' must be http(s)`);
    this.base = url.href.endsWith("/") ? url.href : `${url.href}/`;
    this.fetchImpl = options.fetch ?? fetch;
    this.timeoutMs = options.timeoutMs ?? 60_000;
    this.maxFileBytes = options.maxFileBytes ?? 64 * 1024 * 1024;
    this.description = `${this.base} (cache: ${options.cacheDir})`;
  }

  async neuronDatasetsMetadata(): Promise<NeuronDatasetMetadata[]> {
    return REGISTRY.map((e) => ({
      shortName: e.shortName,
      derivedScalarType: e.derivedScalarType,
      userVisibleName: e.userVisibleName,
      neuronDatasetPath: this.base + e.path,
    }));
  }

  neuronRecord(request: NodeIdAndDatasets): Promise<NeuronRecordResponse> {
    return this.loadRecord(request, neuronRecordResponse);
  }

  attentionHeadRecord(request: NodeIdAndDatasets): Promise<AttentionHeadRecordResponse> {
    return this.loadRecord(request, attentionHeadRecordResponse);
  }

  async existingExplanations(request: ExistingExplanationsRequest): Promise<AttributedScoredExplanation[]> {
    let datasets: string[];
    if (request.explanationDatasets.length > 0) {
      datasets = request.explanationDatasets.map((d) => this.checkedUrl(d));
    } else {
      const neuronDataset = this.resolveDataset(request.neuronDataset ?? "", request.dst);
      const relative = neuronDataset.slice(this.base.length);
      const explanations = EXPLANATIONS[relative];
      datasets = explanations ? [this.base + explanations] : [];
    }
    const lists = await Promise.all(
      datasets.map(async (dataset) => {
        const url = joinUrl(dataset, `${request.layerIndex}/${request.activationIndex}.jsonl`);
        const text = await this.get(url);
        if (text === null) return [];
        const lines = text.split("\n").filter((line) => line.length > 0);
        if (lines.length !== 1) throw new Error(`${url}: expected one JSON line, found ${lines.length}`);
        const stored: StoredExplanation[] = parseSimulationResults(parsePythonJson(lines[0]), url);
        const datasetName = dataset.split("/").pop() ?? "";
        return stored.map((s) => ({ explanation: s.explanation, score: s.score, datasetName }));
      }),
    );
    return lists.flat();
  }

  /** A short name (with the node's dst) or a full URL under the base → the dataset URL. */
  private resolveDataset(dataset: string, dst: string): string {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(dataset)) return this.checkedUrl(dataset);
    const entry = REGISTRY.find((e) => e.shortName === dataset && e.derivedScalarType === dst);
    if (!entry) {
      const known = REGISTRY.map((e) => `("${e.shortName}", "${e.derivedScalarType}")`).join(", ");
      throw new DatasetNotFoundError(
        `Could not find collated activation dataset for ("${dataset}", "${dst}"). Available datasets are: ${known}`,
      );
    }
    return this.base + entry.path;
  }

  private checkedUrl(dataset: string): string {
    let url: URL;
    try {
      url = new URL(dataset);
    } catch {
      throw new HttpError(400, `'${dataset.slice(0, 200)}' is not a dataset URL`);
    }
    if (
      !url.href.startsWith(this.base) ||
      url.search !== "" ||
      url.hash !== "" ||
      /\/\.\.?(\/|$)/.test(url.pathname)
    ) {
      throw new HttpError(
        400,
        `dataset '${dataset.slice(0, 200)}' is not under ${this.base}; only that location is read`,
      );
    }
    return url.href;
  }

  private async loadRecord<T>(
    request: NodeIdAndDatasets,
    convert: (dataset: string, record: NeuronRecordData) => T,
  ): Promise<T> {
    if (request.datasets.length === 0) throw new HttpError(400, "datasets must name at least one dataset");
    const paths = request.datasets.map((d) => this.resolveDataset(d, request.dst));
    for (const path of paths) {
      const url = joinUrl(path, `${request.layerIndex}/${request.activationIndex}.json`);
      const text = await this.get(url);
      if (text === null) continue;
      return convert(path, parseNeuronRecord(parsePythonJson(text), url));
    }
    throw new DatasetNotFoundError(
      `Could not find ${request.dst} ${request.layerIndex}:${request.activationIndex} in [${paths.map((p) => `'${p}'`).join(", ")}]`,
    );
  }

  private cachePath(url: string): string {
    const { host, pathname } = new URL(url);
    const parts = pathname.split("/").filter((p) => p !== "" && p !== "." && p !== "..");
    return join(this.options.cacheDir, host.replace(/[^\w.-]/g, "_"), ...parts);
  }

  /** The file's text, from the cache or the network; null when the server says it does not exist. */
  private get(url: string): Promise<string | null> {
    if (this.missing.has(url)) return Promise.resolve(null);
    let pending = this.inFlight.get(url);
    if (!pending) {
      pending = this.download(url).finally(() => this.inFlight.delete(url));
      this.inFlight.set(url, pending);
    }
    return pending;
  }

  private async download(url: string): Promise<string | null> {
    const file = this.cachePath(url);
    try {
      return await readFile(file, "utf8");
    } catch {
      // not cached yet
    }
    let response: Response;
    try {
      response = await this.fetchImpl(url, { signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (error) {
      throw new HttpError(502, `could not fetch ${url}: ${(error as Error).message}`);
    }
    // Azure answers 404 for a missing blob (and some mirrors 403).
    if (response.status === 404 || response.status === 403) {
      this.missing.add(url);
      await response.body?.cancel();
      return null;
    }
    if (!response.ok) {
      await response.body?.cancel();
      throw new HttpError(502, `fetching ${url} failed: HTTP ${response.status}`);
    }
    const declared = Number(response.headers.get("content-length"));
    if (Number.isFinite(declared) && declared > this.maxFileBytes) {
      await response.body?.cancel();
      throw new HttpError(502, `${url} is ${declared} bytes, more than the ${this.maxFileBytes} accepted`);
    }
    const bytes = new Uint8Array(await response.arrayBuffer());
    if (bytes.length > this.maxFileBytes) {
      throw new HttpError(502, `${url} is more than the ${this.maxFileBytes} bytes accepted`);
    }
    const text = new TextDecoder().decode(bytes);
    await mkdir(dirname(file), { recursive: true });
    const temporary = `${file}.${process.pid}.${Date.now()}.part`;
    await writeFile(temporary, bytes);
    await rename(temporary, file);
    return text;
  }
}

function joinUrl(base: string, tail: string): string {
  return base.endsWith("/") ? base + tail : `${base}/${tail}`;
}
