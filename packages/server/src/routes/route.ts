/** What a route declares: path, methods, schemas (validation + OpenAPI) and its handler. */
import type { TdbContext } from "@tdb/attribution";
import type { DatasetSource, Explainer } from "../datasets.js";
import type { InferenceQueue } from "../queue.js";
import type { WireSchema } from "../validate.js";

export type HttpMethod = "GET" | "POST";

export interface ServerLimits {
  /** Request bodies beyond this are 413. */
  maxBodyBytes: number;
  /** Sub-requests per batched request. */
  maxSubRequests: number;
  /** topAndBottomKForNodeTable / topAndBottomK. */
  maxTopAndBottomK: number;
  /** TDB's PROMPT_LENGTH_LIMIT. */
  maxPromptTokens: number;
  /** Prompts longer than this are refused before tokenizing (far beyond any 500-token prompt). */
  maxPromptChars: number;
  /** Requests waiting for the model beyond the one running; more are 503. */
  maxQueued: number;
  /** Nesting depth of JSON bodies. */
  maxNesting: number;
}

export const DEFAULT_LIMITS: ServerLimits = {
  maxBodyBytes: 1_000_000,
  maxSubRequests: 8,
  maxTopAndBottomK: 500,
  maxPromptTokens: 500,
  maxPromptChars: 100_000,
  maxQueued: 64,
  maxNesting: 64,
};

export interface AppContext {
  tdb: TdbContext;
  datasets: DatasetSource | null;
  explainer: Explainer | null;
  limits: ServerLimits;
  queue: InferenceQueue;
}

export interface RequestInfo {
  query: URLSearchParams;
  /** True once the client has gone away (queued work for it is skipped). */
  closed: () => boolean;
}

export interface NamedSchema<T> {
  /** Component name in /openapi.json. */
  name: string;
  schema: WireSchema<T>;
  /** The body is a JSON array of `schema`. */
  array?: boolean;
}

export interface QueryParameter {
  name: string;
  required: boolean;
  schema: object;
}

export interface Route {
  path: string;
  methods: readonly HttpMethod[];
  tag: string;
  summary: string;
  request?: NamedSchema<unknown>;
  response?: NamedSchema<unknown>;
  /** JSON Schema of the 200 body when it is not a wire schema (e.g. `null`). */
  responseJsonSchema?: object;
  query?: readonly QueryParameter[];
  /** Error statuses the route may answer with besides 422 and 500. */
  errors: readonly number[];
  handle(app: AppContext, body: unknown, info: RequestInfo): unknown;
}

/** Types the handler's body from the request schema. */
export function defineRoute<T>(
  route: Omit<Route, "request" | "handle"> & {
    request?: NamedSchema<T>;
    handle(app: AppContext, body: T, info: RequestInfo): unknown;
  },
): Route {
  return route as Route;
}
