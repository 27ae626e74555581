/**
 * Malformed and hostile requests against `tdb serve` (the built CLI, one child process): every one gets a 4xx
 * with a message saying what is wrong, nothing reaches the 500 handler, and afterwards the same process still
 * answers a valid request exactly as before.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServeProcess, startServe, TINY_ARGS } from "./serve-process.js";

let serve: ServeProcess;
beforeAll(async () => {
  serve = await startServe(TINY_ARGS);
});
afterAll(async () => {
  expect(await serve?.stop()).toBe(0);
});

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const VALID_SUB = {
  prompt: "When Mary and John went to the store",
  targetTokens: [" Mary"],
  distractorTokens: [" John"],
  componentTypeForMlp: "neuron",
  componentTypeForAttention: "attention_head",
  topAndBottomKForNodeTable: 5,
  hideEarlyLayersWhenAblating: true,
} as const;
const valid = (): { subRequests: Array<Record<string, Json>> } => ({
  subRequests: [structuredClone(VALID_SUB) as unknown as Record<string, Json>],
});

/** The valid request with one sub-request field replaced (undefined = removed). */
function withField(field: string, value: Json | undefined): Json {
  const body = valid();
  if (value === undefined) delete body.subRequests[0][field];
  else body.subRequests[0][field] = value;
  return body as unknown as Json;
}

const neuron = (t: Json, n: Json, layer: Json = 0) => ({
  nodeIndex: { nodeType: "mlp_neuron", tensorIndices: [t, n], layerIndex: layer, passType: "forward" },
  value: 0,
});
const ablating = (...ablations: Json[]) => withField("nodeAblations", ablations);
const tracing = (nodeIndex: Json, attentionTraceType?: Json) =>
  withField(
    "upstreamNodeToTrace",
    attentionTraceType === undefined ? { nodeIndex } : { nodeIndex, attentionTraceType },
  );
const head = (t: Json, u: Json, h: Json, layer: Json = 0) => ({
  nodeType: "attention_head",
  tensorIndices: [t, u, h],
  layerIndex: layer,
  passType: "forward",
});

function deeplyNested(depth: number): string {
  return `{"subRequests": ${"[".repeat(depth)}${"]".repeat(depth)}}`;
}

interface Hostile {
  name: string;
  method?: string;
  path?: string;
  /** A JSON value (serialised), or raw text/bytes as sent. */
  body?: Json;
  raw?: string | Uint8Array;
  headers?: Record<string, string>;
  /** Expected status; default: any 4xx. */
  status?: number;
  /** Expected in the message. */
  message?: RegExp;
}

const typeErrors: Array<[string, Json]> = [
  ["prompt", 3],
  ["prompt", null],
  ["prompt", []],
  ["prompt", { text: "hi" }],
  ["prompt", true],
  ["prompt", ""],
  ["targetTokens", " Mary"],
  ["targetTokens", [3]],
  ["targetTokens", null],
  ["targetTokens", {}],
  ["targetTokens", []],
  ["distractorTokens", " John"],
  ["distractorTokens", [null]],
  ["componentTypeForMlp", "foo"],
  ["componentTypeForMlp", 1],
  ["componentTypeForAttention", "bar"],
  ["componentTypeForAttention", null],
  ["topAndBottomKForNodeTable", "10"],
  ["topAndBottomKForNodeTable", 1.5],
  ["topAndBottomKForNodeTable", 0],
  ["topAndBottomKForNodeTable", -3],
  ["topAndBottomKForNodeTable", null],
  ["topAndBottomKForNodeTable", 1e300],
  ["hideEarlyLayersWhenAblating", "yes"],
  ["nodeAblations", "none"],
  ["nodeAblations", [1]],
  ["nodeAblations", [{}]],
  ["upstreamNodeToTrace", "node"],
  ["upstreamNodeToTrace", { nodeIndex: null }],
];
const required = [
  "prompt",
  "targetTokens",
  "distractorTokens",
  "componentTypeForMlp",
  "componentTypeForAttention",
  "topAndBottomKForNodeTable",
  "hideEarlyLayersWhenAblating",
];

const HOSTILE: Hostile[] = [
  ...typeErrors.map(([field, value]) => ({
    name: `${field} = ${JSON.stringify(value)}`,
    body: withField(field, value),
    status: 422,
    message: new RegExp(field),
  })),
  ...required.map((field) => ({
    name: `missing ${field}`,
    body: withField(field, undefined),
    status: 422,
    message: new RegExp(field),
  })),
  // top level
  { name: "body is an array", body: [], status: 422 },
  { name: "body is a string", body: "subRequests", status: 422 },
  { name: "body is a number", body: 3, status: 422 },
  { name: "body is null", body: null, status: 422 },
  { name: "empty object", body: {}, status: 422, message: /subRequests/ },
  { name: "subRequests a string", body: { subRequests: "x" }, status: 422, message: /subRequests/ },
  { name: "subRequests an object", body: { subRequests: {} }, status: 422, message: /subRequests/ },
  { name: "no sub-requests", body: { subRequests: [] }, status: 400, message: /at least one/ },
  {
    name: "nine sub-requests",
    body: { subRequests: Array.from({ length: 9 }, () => structuredClone(VALID_SUB) as unknown as Json) },
    status: 400,
    message: /at most 8/,
  },
  // malformed JSON
  { name: "truncated JSON", raw: '{"subRequests": [', status: 422, message: /JSON/ },
  { name: "missing value", raw: '{"subRequests":}', status: 422, message: /JSON/ },
  { name: "single quotes", raw: "{'subRequests': []}", status: 422, message: /JSON/ },
  { name: "trailing comma", raw: '{"subRequests": [],}', status: 422, message: /JSON/ },
  { name: "empty body", raw: "", status: 422, message: /required/ },
  { name: "whitespace body", raw: "   \n ", status: 422, message: /required/ },
  { name: "the word undefined", raw: "undefined", status: 422, message: /JSON/ },
  { name: "two JSON values", raw: "{} {}", status: 422, message: /JSON/ },
  { name: "invalid UTF-8", raw: Uint8Array.of(0x7b, 0xff, 0xfe, 0x7d), status: 422 },
  { name: "NUL byte", raw: "\u0000", status: 422 },
  // non-finite numbers, written as Python's json writes them
  ...["NaN", "Infinity", "-Infinity"].map((word) => ({
    name: `k = ${word}`,
    raw: JSON.stringify(valid()).replace(
      '"topAndBottomKForNodeTable":5',
      `"topAndBottomKForNodeTable":${word}`,
    ),
    status: 422,
    message: new RegExp(`${word} is not valid JSON`),
  })),
  {
    name: "ablation value NaN",
    raw: JSON.stringify(ablating(neuron(0, 0))).replace('"value":0', '"value":NaN'),
    status: 422,
    message: /NaN/,
  },
  {
    name: "ablation value 1e400 (parses to Infinity)",
    raw: JSON.stringify(ablating(neuron(0, 0))).replace('"value":0', '"value":1e400'),
    status: 422,
    message: /value must be a finite number/,
  },
  {
    name: "ablation value a string",
    body: ablating({ ...neuron(0, 0), value: "0" }),
    status: 422,
    message: /value/,
  },
  // sizes
  {
    name: "10 MB body",
    raw: JSON.stringify(withField("prompt", "x".repeat(10_000_000))),
    status: 413,
    message: /too large/,
  },
  { name: "2 MB body", raw: `{"pad": "${"y".repeat(2_000_000)}"}`, status: 413, message: /limit/ },
  {
    name: "5000-token prompt",
    body: withField("prompt", " hello".repeat(5000)),
    status: 400,
    message: /less than 500 tokens/,
  },
  {
    name: "600-token prompt",
    body: withField("prompt", " a".repeat(600)),
    status: 400,
    message: /500 tokens/,
  },
  {
    name: "prompt beyond the model's 64 positions",
    body: withField("prompt", " a".repeat(100)),
    status: 400,
    message: /context window is 64/,
  },
  {
    name: "200 000-character prompt",
    body: withField("prompt", "z".repeat(200_000)),
    status: 400,
    message: /characters/,
  },
  {
    name: "huge k",
    body: withField("topAndBottomKForNodeTable", 100_000),
    status: 400,
    message: /at most 500/,
  },
  { name: "k just over the cap", body: withField("topAndBottomKForNodeTable", 501), status: 400 },
  // node indices
  {
    name: "ablated token out of range",
    body: ablating(neuron(100, 0)),
    status: 400,
    message: /token index 100/,
  },
  { name: "ablated neuron out of range", body: ablating(neuron(0, 5000)), status: 400, message: /5000/ },
  { name: "negative token index", body: ablating(neuron(-1, 0)), status: 422, message: /non-negative/ },
  { name: "negative neuron index", body: ablating(neuron(0, -7)), status: 422, message: /non-negative/ },
  { name: "layer out of range", body: ablating(neuron(0, 0, 7)), status: 400, message: /layer 7/ },
  { name: "negative layer", body: ablating(neuron(0, 0, -1)), status: 422, message: /layerIndex/ },
  { name: "fractional index", body: ablating(neuron(0, 1.5)), status: 422, message: /integer/ },
  { name: "string index", body: ablating(neuron("a", 0)), status: 422 },
  {
    name: "too few indices",
    body: ablating({ nodeIndex: { ...neuron(0, 0).nodeIndex, tensorIndices: [0] }, value: 0 }),
    status: 400,
  },
  {
    name: "too many indices",
    body: ablating({ nodeIndex: { ...neuron(0, 0).nodeIndex, tensorIndices: [0, 1, 2, 3] }, value: 0 }),
    status: 400,
  },
  {
    name: "null index",
    body: ablating({ nodeIndex: { ...neuron(0, 0).nodeIndex, tensorIndices: [null, 1] }, value: 0 }),
    status: 422,
  },
  {
    name: "head out of range",
    body: ablating({ nodeIndex: head(0, 0, 99), value: 0 }),
    status: 400,
    message: /99/,
  },
  {
    name: "unknown node type",
    body: ablating({ nodeIndex: { ...neuron(0, 0).nodeIndex, nodeType: "banana" }, value: 0 }),
    status: 422,
    message: /nodeType/,
  },
  {
    name: "ablating the embedding row",
    body: ablating({
      nodeIndex: { nodeType: "layer", tensorIndices: [0, 0], layerIndex: null, passType: "forward" },
      value: 0,
    }),
    status: 422,
    message: /cannot ablate/,
  },
  {
    name: "ablating a vocab token",
    body: ablating({
      nodeIndex: { nodeType: "vocab_token", tensorIndices: [0, 5], layerIndex: null, passType: "forward" },
      value: 0,
    }),
    status: 422,
  },
  {
    name: "bad passType",
    body: ablating({ nodeIndex: { ...neuron(0, 0).nodeIndex, passType: "sideways" }, value: 0 }),
    status: 422,
    message: /passType/,
  },
  {
    name: "latent ablation without an autoencoder",
    body: ablating({
      nodeIndex: { ...neuron(0, 0).nodeIndex, nodeType: "mlp_autoencoder_latent" },
      value: 0,
    }),
    status: 400,
    message: /autoencoder/,
  },
  {
    name: "latent basis without an autoencoder",
    body: withField("componentTypeForMlp", "autoencoder_latent"),
    status: 400,
    message: /no MLP autoencoder/,
  },
  {
    name: "attention latent basis without an autoencoder",
    body: withField("componentTypeForAttention", "autoencoder_latent"),
    status: 400,
    message: /no attention autoencoder/,
  },
  {
    name: "trace a head without a trace type",
    body: tracing(head(3, 1, 0)),
    status: 422,
    message: /attentionTraceType/,
  },
  { name: "trace type X", body: tracing(head(3, 1, 0), "X"), status: 422, message: /attentionTraceType/ },
  { name: "trace a masked pair", body: tracing(head(1, 3, 0), "Q"), status: 400, message: /masked/ },
  { name: "trace a head out of range", body: tracing(head(3, 1, 12), "K"), status: 400 },
  {
    name: "trace a token out of range",
    body: tracing(head(30, 1, 0), "QK"),
    status: 400,
    message: /token index 30/,
  },
  {
    name: "trace a neuron out of range",
    body: tracing(neuron(0, 9999).nodeIndex),
    status: 400,
    message: /9999/,
  },
  { name: "trace a neuron with a trace type", body: tracing(neuron(0, 1).nodeIndex, "Q"), status: 422 },
  {
    name: "trace the embedding",
    body: tracing({ nodeType: "layer", tensorIndices: [0, 0], layerIndex: null, passType: "forward" }),
    status: 422,
    message: /cannot trace/,
  },
  {
    name: "downstream trace without upstream",
    body: withField("downstreamNodeToTrace", { nodeIndex: head(3, 1, 0), attentionTraceType: "Q" }),
    status: 422,
  },
  // token strings
  {
    name: "multi-token target",
    body: withField("targetTokens", [" Maryxyz"]),
    status: 400,
    message: /wanted exactly 1 token/,
  },
  {
    name: "multi-token distractor",
    body: withField("distractorTokens", [" Johnathanxyz"]),
    status: 400,
    message: /exactly 1 token/,
  },
  {
    name: "empty target string",
    body: withField("targetTokens", [""]),
    status: 400,
    message: /decoded to \[\]/,
  },
  { name: "one bad target among good", body: withField("targetTokens", [" Mary", "two words"]), status: 400 },
  {
    name: "two prompts of unequal length",
    body: {
      subRequests: [
        structuredClone(VALID_SUB),
        { ...structuredClone(VALID_SUB), prompt: "Hello" },
      ] as unknown as Json,
    },
    status: 400,
    message: /same length/,
  },
  // nesting
  { name: "deep nesting (10 000 levels)", raw: deeplyNested(10_000), status: 422, message: /nested/ },
  {
    name: "deep nesting in an ignored field",
    raw: `{"extra": ${"[".repeat(500)}${"]".repeat(500)}}`,
    status: 422,
  },
  {
    name: "deeply chained downstream traces",
    raw: `{"subRequests":[{"downstreamNodeToTrace":${'{"downstreamTraceConfig":'.repeat(300)}null${"}".repeat(300)}}]}`,
    status: 422,
  },
  // methods and routes
  { name: "GET /batched_tdb", method: "GET", path: "/batched_tdb", status: 405, message: /use POST/ },
  { name: "PUT /batched_tdb", method: "PUT", path: "/batched_tdb", body: valid(), status: 405 },
  { name: "DELETE /model_info", method: "DELETE", path: "/model_info", status: 405 },
  { name: "PATCH /neuron_record", method: "PATCH", path: "/neuron_record", body: {}, status: 405 },
  { name: "GET /score", method: "GET", path: "/score", status: 405 },
  {
    name: "POST to an unknown route",
    path: "/batched_tdbx",
    body: valid(),
    status: 404,
    message: /Not Found/,
  },
  { name: "POST /", path: "/", body: {}, status: 404 },
  { name: "POST /openapi.json", path: "/openapi.json", body: {}, status: 404 },
  { name: "GET a missing asset", method: "GET", path: "/assets/missing.js", status: 404 },
  { name: "GET a traversal path", method: "GET", path: "/..%2f..%2fetc%2fpasswd.txt", status: 404 },
  { name: "GET a malformed escape", method: "GET", path: "/%E0%A4%A.js", status: 400, message: /Malformed/ },
  { name: "OPTIONS without Origin", method: "OPTIONS", path: "/batched_tdb", status: 400 },
  // other routes
  {
    name: "neuron_record: bad dst",
    path: "/neuron_record",
    body: { dst: "nope", layerIndex: 0, activationIndex: 0, datasets: [] },
    status: 422,
  },
  { name: "neuron_record: missing fields", path: "/neuron_record", body: {}, status: 422 },
  {
    name: "attention_head_record: negative index",
    path: "/attention_head_record",
    body: { dst: "attn_write_norm", layerIndex: 0, activationIndex: -1, datasets: [] },
    status: 422,
  },
  {
    name: "existing_explanations: both sources",
    path: "/existing_explanations",
    body: {
      dst: "mlp_post_act",
      layerIndex: 0,
      activationIndex: 0,
      explanationDatasets: ["a"],
      neuronDataset: "b",
    },
    status: 422,
    message: /Exactly one/,
  },
  {
    name: "score: explanation a number",
    path: "/score",
    body: { dst: "mlp_post_act", layerIndex: 0, activationIndex: 0, datasets: [], explanation: 5 },
    status: 422,
  },
  { name: "explain: malformed", path: "/explain", raw: "{", status: 422 },
  { name: "batched: wrong shape", path: "/batched", body: { inferenceSubRequests: "x" }, status: 422 },
  {
    name: "derived_scalars: missing spec",
    path: "/derived_scalars",
    body: { inferenceRequestSpec: { prompt: "hi" } },
    status: 422,
  },
  {
    name: "multiple_top_k: empty prompt",
    path: "/multiple_top_k_derived_scalars",
    body: {
      inferenceRequestSpec: { prompt: "" },
      multipleTopKDerivedScalarsRequestSpec: { dstListByGroupId: {} },
    },
    status: 422,
  },
  {
    name: "group_id missing",
    method: "GET",
    path: "/force_client_code_generation",
    status: 422,
    message: /group_id/,
  },
  {
    name: "group_id bogus",
    method: "GET",
    path: "/force_client_code_generation?group_id=bogus",
    status: 422,
  },
  {
    name: "dump_memory_snapshot",
    method: "GET",
    path: "/dump_memory_snapshot",
    status: 400,
    message: /cuda_memory_debugging/,
  },
  // origins and headers
  {
    name: "foreign Origin",
    body: valid(),
    headers: { Origin: "http://evil.example" },
    status: 403,
    message: /not allowed/,
  },
  {
    name: "foreign Origin preflight",
    method: "OPTIONS",
    path: "/batched_tdb",
    headers: { Origin: "https://localhost.evil.example" },
    status: 403,
  },
  { name: "null Origin", body: valid(), headers: { Origin: "null" }, status: 403 },
  {
    name: "20 kB header",
    body: valid(),
    headers: { "X-Padding": "p".repeat(20_000) },
    status: 431,
    message: /headers too large/,
  },
];

async function send(h: Hostile): Promise<{ status: number; text: string }> {
  const method = h.method ?? "POST";
  const body = h.raw ?? (h.body === undefined ? undefined : JSON.stringify(h.body));
  const response = await fetch(serve.url + (h.path ?? "/batched_tdb"), {
    method,
    headers: { "Content-Type": "application/json", ...h.headers },
    body: method === "GET" || method === "HEAD" ? undefined : body,
  });
  return { status: response.status, text: await response.text() };
}

function messageOf(text: string): string {
  try {
    const json = JSON.parse(text) as { message?: unknown };
    return typeof json.message === "string" ? json.message : "";
  } catch {
    return "";
  }
}

describe("robustness of tdb serve", () => {
  let before: string;

  it("answers a valid request (reference)", async () => {
    const { status, text } = await send({ name: "valid", body: valid() });
    expect(status).toBe(200);
    before = text.replace(/"inferenceTime":[^,]*/g, "");
  });

  it(`lists at least 100 hostile requests (${HOSTILE.length})`, () =>
    expect(HOSTILE.length).toBeGreaterThanOrEqual(100));

  for (const h of HOSTILE) {
    it(h.name, async () => {
      const { status, text } = await send(h);
      const where = `${h.name}: ${status} ${text.slice(0, 300)}`;
      expect(status, where).toBeGreaterThanOrEqual(400);
      expect(status, where).toBeLessThan(500);
      if (h.status !== undefined) expect(status, where).toBe(h.status);
      const message = messageOf(text);
      expect(message.length, where).toBeGreaterThan(10);
      if (h.message) expect(message, where).toMatch(h.message);
    });
  }

  const UNAVAILABLE: Hostile[] = [
    {
      name: "neuron_record without datasets configured",
      path: "/neuron_record",
      body: { dst: "mlp_post_act", layerIndex: 0, activationIndex: 0, datasets: ["gpt2-small"] },
      status: 503,
      message: /datasets/,
    },
    {
      name: "explain without an explainer",
      path: "/explain",
      body: { dst: "mlp_post_act", layerIndex: 0, activationIndex: 0, datasets: [] },
      status: 503,
      message: /explainer/,
    },
  ];
  for (const h of UNAVAILABLE) {
    it(`${h.name}: 503 with a message`, async () => {
      const { status, text } = await send(h);
      expect(status).toBe(503);
      expect(messageOf(text)).toMatch(h.message!);
    });
  }

  it("is the same process and still answers the valid request identically", async () => {
    expect(serve.child.exitCode).toBeNull();
    const { status, text } = await send({ name: "valid", body: valid() });
    expect(status).toBe(200);
    expect(text.replace(/"inferenceTime":[^,]*/g, "")).toBe(before);
    expect(serve.stderr()).not.toMatch(/unhandled/i);
  });
});
