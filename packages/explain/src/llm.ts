/**
 * A client for any OpenAI-compatible chat-completions endpoint (OpenAI, llama.cpp's server, vLLM, Ollama):
 * responses cached on disk by request hash, a limit on requests in flight, retries with exponential backoff
 * on 429 / 5xx / network errors / timeouts / malformed bodies, and a per-attempt timeout.
 */
import { createHash } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";

export const OPENAI_BASE_URL = "https://api.openai.com/v1";
/** TDB's explainer and simulator model (PR #26). */
export const OPENAI_DEFAULT_MODEL = "gpt-4o";

export interface LlmConfig {
  /** Base URL including the API version, e.g. https://api.openai.com/v1 or http://127.0.0.1:8080/v1. */
  baseUrl: string;
  model: string;
  apiKey: string | null;
  /** Per attempt (default 60 s, as TDB). */
  timeoutMs: number;
  /** Requests in flight at once (default 5, TDB's simulation client). */
  maxConcurrent: number;
  /** Further attempts after a retryable failure (default 6). */
  maxRetries: number;
  /** First backoff delay; doubles per retry up to maxRetryDelayMs (defaults 1 s and 60 s). */
  retryBaseMs: number;
  maxRetryDelayMs: number;
  /** Responses are kept here by request hash; null = no disk cache. */
  cacheDir: string | null;
}

export interface LlmFlags {
  baseUrl?: string;
  model?: string;
  apiKey?: string;
  timeoutMs?: number;
  maxConcurrent?: number;
  maxRetries?: number;
  cacheDir?: string | null;
}

/** No endpoint is configured (CLI exit 2, HTTP 503). */
export class NoEndpointError extends Error {
  override name = "NoEndpointError";
}

/** The endpoint refused the request, or every retry failed. */
export class LlmError extends Error {
  override name = "LlmError";
  constructor(
    message: string,
    readonly status: number | null,
  ) {
    super(message);
  }
}

export const NO_ENDPOINT_MESSAGE =
  "No language-model endpoint is configured. Set TDB_LLM_BASE_URL (or OPENAI_BASE_URL) and TDB_LLM_MODEL for an " +
  "OpenAI-compatible server (llama.cpp, vLLM, Ollama: e.g. http://127.0.0.1:11434/v1), or OPENAI_API_KEY for " +
  "OpenAI; or explain offline (tdb explain --offline).";

export function defaultLlmCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CACHE_HOME || join(env.HOME || ".", ".cache");
  return join(base, "tdb-ts", "llm");
}

function nonEmpty(value: string | undefined): string | undefined {
  return value !== undefined && value.trim() !== "" ? value.trim() : undefined;
}

/**
 * The endpoint from flags, else the environment (TDB_LLM_BASE_URL / OPENAI_BASE_URL, TDB_LLM_MODEL,
 * TDB_LLM_API_KEY / OPENAI_API_KEY). OPENAI_API_KEY alone means OpenAI with gpt-4o. Throws NoEndpointError
 * when nothing is configured, and a plain Error for an unusable configuration.
 */
export function resolveLlmConfig(flags: LlmFlags = {}, env: NodeJS.ProcessEnv = process.env): LlmConfig {
  const apiKey =
    nonEmpty(flags.apiKey) ?? nonEmpty(env.TDB_LLM_API_KEY) ?? nonEmpty(env.OPENAI_API_KEY) ?? null;
  let baseUrl = nonEmpty(flags.baseUrl) ?? nonEmpty(env.TDB_LLM_BASE_URL) ?? nonEmpty(env.OPENAI_BASE_URL);
  if (baseUrl === undefined) {
    if (apiKey === null) throw new NoEndpointError(NO_ENDPOINT_MESSAGE);
    baseUrl = OPENAI_BASE_URL;
  }
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new Error(`language-model base URL '${baseUrl}' is not a URL`);
  }
  if (!/^https?:$/.test(url.protocol))
    throw new Error(`language-model base URL '${baseUrl}' must be http(s)`);
  const normalized = url.href.replace(/\/+$/, "").replace(/\/chat\/completions$/, "");
  const isOpenAi = url.hostname === "api.openai.com";
  const model =
    nonEmpty(flags.model) ?? nonEmpty(env.TDB_LLM_MODEL) ?? (isOpenAi ? OPENAI_DEFAULT_MODEL : undefined);
  if (model === undefined) {
    throw new Error(
      `no model name for the language-model endpoint ${normalized}: pass --llm-model NAME or set TDB_LLM_MODEL`,
    );
  }
  if (isOpenAi && apiKey === null) {
    throw new NoEndpointError(`${NO_ENDPOINT_MESSAGE} (${normalized} needs OPENAI_API_KEY)`);
  }
  return {
    baseUrl: normalized,
    model,
    apiKey,
    timeoutMs: flags.timeoutMs ?? 60_000,
    maxConcurrent: flags.maxConcurrent ?? 5,
    maxRetries: flags.maxRetries ?? 6,
    retryBaseMs: 1000,
    maxRetryDelayMs: 60_000,
    cacheDir: flags.cacheDir === undefined ? defaultLlmCacheDir(env) : flags.cacheDir,
  };
}

/** resolveLlmConfig, or null when no endpoint is configured at all (other configuration errors still throw). */
export function optionalLlmConfig(
  flags: LlmFlags = {},
  env: NodeJS.ProcessEnv = process.env,
): LlmConfig | null {
  try {
    return resolveLlmConfig(flags, env);
  } catch (error) {
    if (error instanceof NoEndpointError) return null;
    throw error;
  }
}

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface ChatRequest {
  messages: ChatMessage[];
  max_tokens: number;
  temperature: number;
  top_p?: number;
  n?: number;
  logprobs?: boolean;
  top_logprobs?: number;
}

export interface TopLogprob {
  token: string;
  logprob: number;
}

export interface ChatChoice {
  message: { role?: string; content: string | null };
  finish_reason?: string | null;
  logprobs?: { content?: { token: string; logprob: number; top_logprobs?: TopLogprob[] }[] | null } | null;
}

export interface ChatResponse {
  choices: ChatChoice[];
  model?: string;
}

export interface ChatClientOptions {
  fetch?: typeof fetch;
  /** Waits between retries (tests replace it). */
  sleep?: (ms: number) => Promise<void>;
  /** One line per retry. */
  log?: (line: string) => void;
}

export interface ChatClientStats {
  requests: number;
  cacheHits: number;
  retries: number;
}

class RetryableError extends Error {
  constructor(
    message: string,
    readonly status: number | null,
    readonly retryAfterMs: number | null = null,
  ) {
    super(message);
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Checks the parts of a chat-completions body this package reads. */
export function parseChatResponse(value: unknown): ChatResponse {
  if (!isRecord(value) || !Array.isArray(value.choices) || value.choices.length === 0) {
    throw new Error("the answer has no choices");
  }
  for (const choice of value.choices) {
    if (!isRecord(choice) || !isRecord(choice.message)) throw new Error("a choice has no message");
    const content = choice.message.content;
    if (content !== null && content !== undefined && typeof content !== "string") {
      throw new Error("a message's content is not a string");
    }
  }
  return value as unknown as ChatResponse;
}

function retryAfterMs(header: string | null): number | null {
  if (header === null) return null;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(header);
  return Number.isFinite(date) ? Math.max(0, date - Date.now()) : null;
}

function apiErrorMessage(text: string): string {
  try {
    const body = JSON.parse(text) as unknown;
    if (isRecord(body)) {
      const error = body.error;
      if (isRecord(error) && typeof error.message === "string") return error.message;
      if (typeof error === "string") return error;
      if (typeof body.message === "string") return body.message;
    }
  } catch {
    // not JSON
  }
  return text.slice(0, 300);
}

/** Counting semaphore: at most `limit` holders at once, served first come first served. */
class Semaphore {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly limit: number) {}

  async acquire(): Promise<void> {
    if (this.active < this.limit) {
      this.active++;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.active--;
  }
}

export class ChatClient {
  readonly stats: ChatClientStats = { requests: 0, cacheHits: 0, retries: 0 };
  private readonly fetchImpl: typeof fetch;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly log: (line: string) => void;
  private readonly semaphore: Semaphore;
  private readonly memory = new Map<string, ChatResponse>();
  private readonly inFlight = new Map<string, Promise<ChatResponse>>();
  readonly url: string;

  constructor(
    readonly config: LlmConfig,
    options: ChatClientOptions = {},
  ) {
    this.fetchImpl = options.fetch ?? fetch;
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.log = options.log ?? (() => {});
    this.semaphore = new Semaphore(Math.max(1, config.maxConcurrent));
    this.url = `${config.baseUrl}/chat/completions`;
  }

  /** Short description, e.g. "gpt-4o at https://api.openai.com/v1". */
  get description(): string {
    return `${this.config.model} at ${this.config.baseUrl}`;
  }

  /** The body sent for a request (the model is the client's). */
  body(request: ChatRequest): Record<string, unknown> {
    return { model: this.config.model, ...request };
  }

  /** Cache key: the URL and the exact body (never the key). */
  cacheKey(request: ChatRequest): string {
    return createHash("sha256")
      .update(JSON.stringify([this.url, this.body(request)]))
      .digest("hex");
  }

  complete(request: ChatRequest): Promise<ChatResponse> {
    const key = this.cacheKey(request);
    const remembered = this.memory.get(key);
    if (remembered) {
      this.stats.cacheHits++;
      return Promise.resolve(remembered);
    }
    let pending = this.inFlight.get(key);
    if (!pending) {
      pending = this.cachedOrFetched(key, request).finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, pending);
    }
    return pending;
  }

  private cacheFile(key: string): string | null {
    return this.config.cacheDir === null ? null : join(this.config.cacheDir, key.slice(0, 2), `${key}.json`);
  }

  private async cachedOrFetched(key: string, request: ChatRequest): Promise<ChatResponse> {
    const file = this.cacheFile(key);
    if (file !== null) {
      try {
        const stored = JSON.parse(await readFile(file, "utf8")) as { response: unknown };
        const response = parseChatResponse(stored.response);
        this.memory.set(key, response);
        this.stats.cacheHits++;
        return response;
      } catch {
        // not cached (or unreadable): ask the endpoint
      }
    }
    const response = await this.fetchWithRetries(request);
    this.memory.set(key, response);
    if (file !== null) {
      await mkdir(join(file, ".."), { recursive: true });
      const temporary = `${file}.${process.pid}.${Date.now()}.part`;
      await writeFile(temporary, JSON.stringify({ request: this.body(request), response }));
      await rename(temporary, file);
    }
    return response;
  }

  private async fetchWithRetries(request: ChatRequest): Promise<ChatResponse> {
    const { maxRetries, retryBaseMs, maxRetryDelayMs } = this.config;
    for (let attempt = 0; ; attempt++) {
      await this.semaphore.acquire();
      let failure: RetryableError;
      try {
        return await this.attempt(request);
      } catch (error) {
        if (!(error instanceof RetryableError)) throw error;
        failure = error;
      } finally {
        this.semaphore.release();
      }
      if (attempt >= maxRetries) {
        throw new LlmError(
          `${this.url}: ${failure.message} (gave up after ${attempt + 1} attempt${attempt === 0 ? "" : "s"})`,
          failure.status,
        );
      }
      const backoff = Math.min(maxRetryDelayMs, retryBaseMs * 2 ** attempt);
      const jittered = backoff * (0.75 + 0.5 * Math.random());
      const delay = Math.min(maxRetryDelayMs, Math.max(failure.retryAfterMs ?? 0, jittered));
      this.stats.retries++;
      this.log(
        `llm: ${failure.message}; retry ${attempt + 1}/${maxRetries} in ${(delay / 1000).toFixed(1)} s`,
      );
      await this.sleep(delay);
    }
  }

  private async attempt(request: ChatRequest): Promise<ChatResponse> {
    this.stats.requests++;
    const headers: Record<string, string> = { "Content-Type": "application/json" };
    if (this.config.apiKey !== null) headers.Authorization = `Bearer ${this.config.apiKey}`;
    let response: Response;
    let text: string;
    try {
      response = await this.fetchImpl(this.url, {
        method: "POST",
        headers,
        body: JSON.stringify(this.body(request)),
        signal: AbortSignal.timeout(this.config.timeoutMs),
      });
      text = await response.text();
    } catch (error) {
      const e = error as Error;
      if (e.name === "TimeoutError" || e.name === "AbortError") {
        throw new RetryableError(`no answer within ${this.config.timeoutMs} ms`, null);
      }
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      throw new RetryableError(`network error: ${cause?.code ?? cause?.message ?? e.message}`, null);
    }
    if (response.status === 429 || response.status >= 500) {
      throw new RetryableError(
        `HTTP ${response.status}: ${apiErrorMessage(text)}`,
        response.status,
        retryAfterMs(response.headers.get("retry-after")),
      );
    }
    if (!response.ok) {
      const hint =
        response.status === 401 || response.status === 403
          ? " (check OPENAI_API_KEY / TDB_LLM_API_KEY)"
          : response.status === 404
            ? ` (is ${this.config.baseUrl} the API's base URL, including /v1, and '${this.config.model}' a model it serves?)`
            : "";
      throw new LlmError(
        `${this.url}: HTTP ${response.status}: ${apiErrorMessage(text)}${hint}`,
        response.status,
      );
    }
    try {
      return parseChatResponse(JSON.parse(text));
    } catch (error) {
      throw new RetryableError(`malformed answer (${(error as Error).message}): ${text.slice(0, 120)}`, null);
    }
  }
}
