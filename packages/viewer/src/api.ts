/**
 * Typed client for the activation server (same origin). Types come from the wire schemas in
 * @tdb/attribution; the import is type-only, so no server code reaches the bundle.
 */
import type {
  AttentionHeadRecordResponse,
  AttributedScoredExplanation,
  BatchedRequest,
  BatchedResponse,
  BatchedTdbRequest,
  DerivedAttentionScalarsRequest,
  DerivedAttentionScalarsResponse,
  DerivedScalarsRequest,
  DerivedScalarsResponse,
  ExistingExplanationsRequest,
  ExplanationResult,
  ModelInfoResponse,
  NeuronDatasetMetadata,
  NeuronRecordResponse,
  NodeIdAndDatasets,
  ScoreRequest,
  ScoreResult,
} from "@tdb/attribution";

/** A failed call, with one readable line taken from the server's body. */
export class ApiError extends Error {
  override name = "ApiError";
  constructor(
    readonly route: string,
    /** HTTP status, or 0 when the server could not be reached. */
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
  /** 503: the server is up but has no datasets/explainer for this route. */
  get unavailable(): boolean {
    return this.status === 503 || this.status === 404;
  }
}

interface DetailEntry {
  loc?: unknown[];
  msg?: unknown;
}

/** TDB answers `{"message": …}` (400/404/500/503) or FastAPI's `{"detail": [...]}` (422). */
export function errorMessageFromBody(status: number, body: unknown, fallback: string): string {
  if (typeof body === "object" && body !== null) {
    const record = body as { message?: unknown; detail?: unknown };
    if (typeof record.message === "string" && record.message !== "") return record.message;
    if (typeof record.detail === "string") return record.detail;
    if (Array.isArray(record.detail)) {
      const lines = (record.detail as DetailEntry[]).slice(0, 5).map((d) => {
        const loc = Array.isArray(d.loc) ? d.loc.join(".") : "";
        return `${loc ? `${loc}: ` : ""}${String(d.msg ?? "invalid")}`;
      });
      if (lines.length > 0) return lines.join("; ");
    }
  }
  return fallback || `HTTP ${status}`;
}

async function post<T>(route: string, body: unknown, signal?: AbortSignal): Promise<T> {
  let response: Response;
  try {
    response = await fetch(route, {
      method: "POST",
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (error) {
    if (signal?.aborted) throw error;
    throw new ApiError(
      route,
      0,
      `Cannot reach the activation server (${window.location.origin}${route}): ${(error as Error).message}`,
    );
  }
  const text = await response.text();
  // The TDB page measures its render time from here (performance entry "tdb-render").
  performance.mark(`${route}:received`);
  let parsed: unknown = null;
  try {
    parsed = text === "" ? null : JSON.parse(text);
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    const fallback = text.length > 300 ? `${text.slice(0, 300)}…` : text;
    throw new ApiError(
      route,
      response.status,
      errorMessageFromBody(response.status, parsed, fallback || response.statusText),
    );
  }
  return parsed as T;
}

export const api = {
  modelInfo: (signal?: AbortSignal) => post<ModelInfoResponse>("/model_info", undefined, signal),
  batchedTdb: (request: BatchedTdbRequest, signal?: AbortSignal) =>
    post<BatchedResponse>("/batched_tdb", request, signal),
  batched: (request: BatchedRequest, signal?: AbortSignal) =>
    post<BatchedResponse>("/batched", request, signal),
  derivedScalars: (request: DerivedScalarsRequest, signal?: AbortSignal) =>
    post<DerivedScalarsResponse>("/derived_scalars", request, signal),
  derivedAttentionScalars: (request: DerivedAttentionScalarsRequest, signal?: AbortSignal) =>
    post<DerivedAttentionScalarsResponse>("/derived_attention_scalars", request, signal),
  neuronDatasetsMetadata: (signal?: AbortSignal) =>
    post<NeuronDatasetMetadata[]>("/neuron_datasets_metadata", undefined, signal),
  neuronRecord: (request: NodeIdAndDatasets, signal?: AbortSignal) =>
    post<NeuronRecordResponse>("/neuron_record", request, signal),
  attentionHeadRecord: (request: NodeIdAndDatasets, signal?: AbortSignal) =>
    post<AttentionHeadRecordResponse>("/attention_head_record", request, signal),
  existingExplanations: (request: ExistingExplanationsRequest, signal?: AbortSignal) =>
    post<AttributedScoredExplanation[]>("/existing_explanations", request, signal),
  explain: (request: NodeIdAndDatasets, signal?: AbortSignal) =>
    post<ExplanationResult>("/explain", request, signal),
  score: (request: ScoreRequest, signal?: AbortSignal) => post<ScoreResult>("/score", request, signal),
};
