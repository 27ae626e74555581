/**
 * The chat-completions client against a local fake endpoint: retries (429 with Retry-After, 5xx, malformed
 * bodies, no answer, refused connections), errors that are not retried, the disk cache, the concurrency
 * limit, and where the endpoint comes from.
 */
import { readdirSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ChatClient,
  type ChatRequest,
  type LlmConfig,
  LlmError,
  NO_ENDPOINT_MESSAGE,
  NoEndpointError,
  optionalLlmConfig,
  resolveLlmConfig,
} from "../src/index.js";
import { type FakeLlm, startFakeLlm } from "./fake-llm.js";
import { tempDir } from "./helpers.js";

let fake: FakeLlm;
beforeAll(async () => {
  fake = await startFakeLlm(() => ({ kind: "chat", content: "ok" }));
});
afterAll(async () => {
  await fake.close();
});

function config(overrides: Partial<LlmConfig> = {}): LlmConfig {
  return {
    baseUrl: fake.baseUrl,
    model: "fake-model",
    apiKey: "sk-test",
    timeoutMs: 5000,
    maxConcurrent: 4,
    maxRetries: 3,
    retryBaseMs: 1,
    maxRetryDelayMs: 10_000,
    cacheDir: null,
    ...overrides,
  };
}

const delays: number[] = [];
function client(overrides: Partial<LlmConfig> = {}): ChatClient {
  return new ChatClient(config(overrides), {
    sleep: async (ms) => {
      delays.push(ms);
    },
  });
}

let counter = 0;
/** A request no earlier test sent (so neither cache nor dedup answers it). */
function freshRequest(): ChatRequest {
  return { messages: [{ role: "user", content: `hello ${counter++}` }], max_tokens: 5, temperature: 0 };
}

describe("ChatClient", () => {
  it("sends the OpenAI request shape with the key as a bearer token", async () => {
    fake.requests.length = 0;
    const response = await client().complete(freshRequest());
    expect(response.choices[0].message.content).toBe("ok");
    expect(fake.requests).toHaveLength(1);
    expect(fake.requests[0].path).toBe("/v1/chat/completions");
    expect(fake.requests[0].authorization).toBe("Bearer sk-test");
    expect(fake.requests[0].body).toMatchObject({ model: "fake-model", max_tokens: 5, temperature: 0 });
  });

  it("retries a 429 after the Retry-After delay, then succeeds", async () => {
    fake.requests.length = 0;
    delays.length = 0;
    fake.queue.push({
      kind: "status",
      status: 429,
      body: JSON.stringify({ error: { message: "Rate limit reached", type: "requests" } }),
      headers: { "Retry-After": "2" },
    });
    const c = client();
    const response = await c.complete(freshRequest());
    expect(response.choices[0].message.content).toBe("ok");
    expect(fake.requests).toHaveLength(2);
    expect(c.stats.retries).toBe(1);
    expect(delays).toHaveLength(1);
    expect(delays[0]).toBeGreaterThanOrEqual(2000);
  });

  it("retries 5xx answers and a malformed body with growing delays", async () => {
    fake.requests.length = 0;
    delays.length = 0;
    fake.queue.push(
      { kind: "status", status: 503, body: "upstream unavailable" },
      { kind: "status", status: 500, body: JSON.stringify({ error: { message: "internal" } }) },
      { kind: "raw", body: '{"choices": [ {"message": ' },
    );
    const c = client({ retryBaseMs: 100, maxRetries: 5 });
    const response = await c.complete(freshRequest());
    expect(response.choices[0].message.content).toBe("ok");
    expect(fake.requests).toHaveLength(4);
    expect(c.stats.retries).toBe(3);
    // base·2^k with ±25 % jitter: 100, 200, 400
    expect(delays[0]).toBeGreaterThanOrEqual(75);
    expect(delays[0]).toBeLessThanOrEqual(125);
    expect(delays[2]).toBeGreaterThanOrEqual(300);
    expect(delays[2]).toBeLessThanOrEqual(500);
  });

  it("gives up after a request that never answers times out on every attempt", async () => {
    fake.queue.push({ kind: "hang" }, { kind: "hang" });
    const c = client({ timeoutMs: 150, maxRetries: 1 });
    const error = await c.complete(freshRequest()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LlmError);
    expect((error as Error).message).toMatch(/no answer within 150 ms.*gave up after 2 attempts/);
  });

  it("retries a timeout, then succeeds", async () => {
    fake.queue.push({ kind: "hang" });
    const c = client({ timeoutMs: 150 });
    const response = await c.complete(freshRequest());
    expect(response.choices[0].message.content).toBe("ok");
    expect(c.stats.retries).toBe(1);
  });

  it("does not retry a 401, and says what the API said", async () => {
    fake.requests.length = 0;
    fake.queue.push({
      kind: "status",
      status: 401,
      body: JSON.stringify({ error: { message: "Incorrect API key provided" } }),
    });
    const error = await client()
      .complete(freshRequest())
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LlmError);
    expect((error as LlmError).status).toBe(401);
    expect((error as Error).message).toContain("Incorrect API key provided");
    expect(fake.requests).toHaveLength(1);
  });

  it("retries refused connections, then reports them", async () => {
    // A port that was free a moment ago: nothing listens there.
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const c = client({ baseUrl: `http://127.0.0.1:${port}/v1`, maxRetries: 2 });
    const error = await c.complete(freshRequest()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LlmError);
    expect((error as Error).message).toMatch(/network error: ECONNREFUSED.*gave up after 3 attempts/);
  });

  it("answers a repeated request from the disk cache, also in a new client", async () => {
    const cacheDir = tempDir("llm-cache");
    fake.requests.length = 0;
    const request = freshRequest();
    const first = await client({ cacheDir }).complete(request);
    const second = client({ cacheDir });
    const again = await second.complete(request);
    expect(again).toEqual(first);
    expect(fake.requests).toHaveLength(1);
    expect(second.stats.cacheHits).toBe(1);
    expect(readdirSync(cacheDir)).toHaveLength(1);
    // Another temperature is another request.
    await second.complete({ ...request, temperature: 1 });
    expect(fake.requests).toHaveLength(2);
  });

  it("keeps at most maxConcurrent requests in flight", async () => {
    const c = client({ maxConcurrent: 3 });
    fake.delayMs = 50;
    try {
      const before = fake.requests.length;
      await Promise.all(Array.from({ length: 10 }, () => c.complete(freshRequest())));
      expect(fake.requests.length - before).toBe(10);
      expect(fake.maxInFlight()).toBeLessThanOrEqual(3);
    } finally {
      fake.delayMs = 0;
    }
  });
});

describe("endpoint configuration", () => {
  it("says how to configure one when nothing is set", () => {
    expect(() => resolveLlmConfig({}, {})).toThrow(NoEndpointError);
    expect(() => resolveLlmConfig({}, {})).toThrow(NO_ENDPOINT_MESSAGE);
    expect(optionalLlmConfig({}, {})).toBeNull();
  });

  it("takes OpenAI with gpt-4o from OPENAI_API_KEY alone", () => {
    // A made-up home folder (relative, so that no machine's path is written here).
    const c = resolveLlmConfig({}, { OPENAI_API_KEY: "sk-x", HOME: "some-home" });
    expect(c).toMatchObject({ baseUrl: "https://api.openai.com/v1", model: "gpt-4o", apiKey: "sk-x" });
    expect(c.cacheDir).toBe(join("some-home", ".cache", "tdb-ts", "llm"));
  });

  it("takes a local server from the environment, flags first", () => {
    const env = { TDB_LLM_BASE_URL: "http://127.0.0.1:8080/v1/", TDB_LLM_MODEL: "qwen" };
    expect(resolveLlmConfig({}, env)).toMatchObject({
      baseUrl: "http://127.0.0.1:8080/v1",
      model: "qwen",
      apiKey: null,
    });
    expect(
      resolveLlmConfig({ baseUrl: "http://localhost:11434/v1/chat/completions", model: "llama3" }, env),
    ).toMatchObject({
      baseUrl: "http://localhost:11434/v1",
      model: "llama3",
    });
    expect(resolveLlmConfig({}, { OPENAI_BASE_URL: "http://h:1/v1", TDB_LLM_MODEL: "m" }).baseUrl).toBe(
      "http://h:1/v1",
    );
  });

  it("refuses a local server without a model name, and OpenAI without a key", () => {
    expect(() => resolveLlmConfig({ baseUrl: "http://127.0.0.1:8080/v1" }, {})).toThrow(/--llm-model/);
    expect(() => resolveLlmConfig({ baseUrl: "https://api.openai.com/v1" }, {})).toThrow(NoEndpointError);
    expect(() => resolveLlmConfig({ baseUrl: "ftp://x/v1", model: "m" }, {})).toThrow(/http/);
  });
});
