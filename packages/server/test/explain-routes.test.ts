/**
 * /explain, /score and /existing_explanations over HTTP (the server in-process): a local collated dataset of
 * tiny-gpt2 (explanations read from and written to its table), OpenAI's public layout served by a local
 * bucket (published explanations; records explained offline), and a language-model endpoint played by the
 * explain package's fake server.
 */
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { TdbContext } from "@tdb/attribution";
import { type DatasetStore, openDatasetStore } from "@tdb/datasets";
import {
  ChatClient,
  explainDataset,
  LlmExplainer,
  OfflineExplainer,
  parseComponentSpecs,
  selectComponents,
} from "@tdb/explain";
import { loadModel } from "@tdb/model/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FakeLlm, ruleBasedModel, startFakeLlm } from "../../explain/test/fake-llm.js";
import { tempDir, tinyDataset } from "../../explain/test/helpers.js";
import { CombinedDatasetSource } from "../src/datasets.js";
import { DatasetExplainer, StoredExplanationsSource } from "../src/explainer.js";
import { LocalExplanationCache } from "../src/explanation-cache.js";
import { LocalDatasetSource } from "../src/local-datasets.js";
import { PublicDatasetSource } from "../src/public-datasets.js";
import { createTdbServer, type TdbServer } from "../src/server.js";
import { postJson, SHARED } from "./serve-process.js";

// OpenAI's layout (tdb-spec §6): gpt2-small neuron 0:5 has published explanations, 0:6 only a record.
const record = (tokens: string[], activations: number[]) => ({ tokens, activations });
const publicRecord = JSON.stringify({
  dataclass_name: "NeuronRecord",
  neuron_id: { layer_index: 0, neuron_index: 6 },
  most_positive_activation_records: Array.from({ length: 20 }, (_, i) =>
    record(["The", " cat", " sat", i % 2 ? " down" : " still"], [0, 5 - i * 0.1, 0, 0]),
  ),
  random_sample: Array.from({ length: 15 }, (_, i) =>
    record(["A", " dog", i % 3 ? " cat" : " ran"], [0, 0, i % 3 ? 2 : 0]),
  ),
});
const publishedExplanations = `{"dataclass_name": "NeuronSimulationResults", "neuron_id": {"layer_index": 0, "neuron_index": 5}, "scored_explanations": [{"explanation": "words about cats", "scored_simulation": {"ev_correlation_score": 0.42}}]}
`;
const BUCKET: Record<string, string> = {
  "/neuron-explainer/gpt2_small_data/collated-activations/0/5.json": publicRecord,
  "/neuron-explainer/gpt2_small_data/collated-activations/0/6.json": publicRecord,
  "/neuron-explainer/gpt2_small_data/explanations/0/5.jsonl": publishedExplanations,
};

let bucket: Server;
let tdb: TdbContext;
let store: DatasetStore;
let offlineApi: TdbServer;
let offlineUrl: string;
let fake: FakeLlm;
let llmApi: TdbServer;
let llmUrl: string;
let llmStore: DatasetStore;
let cacheDir: string;
let bucketBase: string;

beforeAll(async () => {
  bucket = createServer((req, res) => {
    const body = BUCKET[req.url ?? ""];
    res.writeHead(body === undefined ? 404 : 200);
    res.end(body ?? "");
  });
  await new Promise<void>((resolve) => bucket.listen(0, "127.0.0.1", resolve));
  const base = `http://127.0.0.1:${(bucket.address() as AddressInfo).port}/neuron-explainer/`;
  bucketBase = base;
  const { model, tokenizer } = await loadModel(`${SHARED}fixtures/tiny-gpt2`);
  tdb = { model, tokenizer, modelName: "tiny-gpt2" };
  const dir = tempDir("explain-routes");

  // "demo": layer-0 MLP neurons explained beforehand (as `tdb explain --offline --components mlp:0` does).
  store = openDatasetStore(await tinyDataset(dir, "demo.db"));
  await explainDataset(store, {
    explainer: new OfflineExplainer(),
    components: selectComponents(store, parseComponentSpecs(["mlp:0"])),
  });
  const publicSource = new PublicDatasetSource({ baseUrl: base, cacheDir: join(dir, "cache") });
  cacheDir = join(dir, "cached_explanations");
  const cache = new LocalExplanationCache(cacheDir);
  const source = new StoredExplanationsSource(
    new CombinedDatasetSource([new LocalDatasetSource([store]), publicSource]),
    [store],
    cache,
  );
  offlineApi = createTdbServer({
    tdb,
    datasets: source,
    explainer: new DatasetExplainer({ stores: [store], source, cache }),
    logRequests: false,
  });
  offlineUrl = (await offlineApi.listen(0)).url;

  fake = await startFakeLlm(ruleBasedModel);
  llmStore = openDatasetStore(await tinyDataset(dir, "llm.db"));
  const client = new ChatClient({
    baseUrl: fake.baseUrl,
    model: "fake-model",
    apiKey: null,
    timeoutMs: 5000,
    maxConcurrent: 4,
    maxRetries: 1,
    retryBaseMs: 1,
    maxRetryDelayMs: 10,
    cacheDir: null,
  });
  const llmSource = new StoredExplanationsSource(new LocalDatasetSource([llmStore]), [llmStore]);
  llmApi = createTdbServer({
    tdb,
    datasets: llmSource,
    explainer: new DatasetExplainer({ stores: [llmStore], source: llmSource, llm: new LlmExplainer(client) }),
    logRequests: false,
  });
  llmUrl = (await llmApi.listen(0)).url;
});

afterAll(async () => {
  await offlineApi?.close();
  await llmApi?.close();
  await fake?.close();
  await new Promise((resolve) => bucket?.close(resolve));
  store?.close();
  llmStore?.close();
});

const node = (dst: string, layerIndex: number, activationIndex: number, datasets: string[]) => ({
  dst,
  layerIndex,
  activationIndex,
  datasets,
});

describe("a local dataset, offline", () => {
  it("lists the stored explanation of a neuron with its score", async () => {
    const { status, json } = await postJson(`${offlineUrl}/existing_explanations`, {
      dst: "mlp_post_act",
      layerIndex: 0,
      activationIndex: 1,
      explanationDatasets: [],
      neuronDataset: "demo",
    });
    expect(status).toBe(200);
    const [stored] = store.explanations("mlp_neuron", 0, 1);
    expect(json).toEqual([{ explanation: stored.explanation, score: stored.score, datasetName: "demo" }]);
  });

  it("/explain answers stored explanations as they are", async () => {
    const { status, json } = await postJson(`${offlineUrl}/explain`, node("mlp_post_act", 0, 1, ["demo"]));
    expect(status).toBe(200);
    expect(json).toEqual({
      explanations: [store.explanations("mlp_neuron", 0, 1)[0].explanation],
      dataset: "demo",
    });
  });

  it("/explain explains an unexplained head offline and keeps the result", async () => {
    expect(store.explanations("attention_head", 1, 2)).toHaveLength(0);
    const { status, json } = await postJson(`${offlineUrl}/explain`, node("attn_write_norm", 1, 2, ["demo"]));
    expect(status).toBe(200);
    const [stored] = store.explanations("attention_head", 1, 2);
    expect(stored.method).toBe("offline-token-summary");
    expect(json).toEqual({ explanations: [stored.explanation], dataset: "demo" });
    const listed = await postJson(`${offlineUrl}/existing_explanations`, {
      dst: "attn_write_norm",
      layerIndex: 1,
      activationIndex: 2,
      explanationDatasets: ["demo"],
    });
    expect(listed.json).toEqual([
      { explanation: stored.explanation, score: stored.score, datasetName: "demo" },
    ]);
  });

  it("/score scores a user's explanation with the keyword-overlap simulator and keeps it", async () => {
    const request = { ...node("mlp_post_act", 1, 7, ["demo"]), explanation: 'the tokens "the" and "a"' };
    const first = await postJson(`${offlineUrl}/score`, request);
    expect(first.status).toBe(200);
    const { score, datasetPath } = first.json as { score: number; datasetPath: string };
    expect(datasetPath).toBe("demo");
    const [stored] = store.explanations("mlp_neuron", 1, 7);
    expect(stored).toMatchObject({
      explanation: request.explanation,
      score,
      method: "offline-keyword-overlap",
    });
    // Recomputed here: predictions 1 where a held-out token is "the" or "a" (any case, spaces trimmed).
    const full = store.record("mlp_neuron", 1, 7)!;
    const held = [
      ...[2, 6, 10, 14, 18].map((i) => full.mostPositiveActivationRecords[i]),
      ...[1, 4, 7, 10, 13].map((i) => full.randomSample[i]),
    ];
    const real = held.flatMap((r) => r.activations);
    const predicted = held.flatMap((r) =>
      r.tokens.map((t) => (["the", "a"].includes(t.trim().toLowerCase()) ? 1 : 0)),
    );
    const mean = (x: number[]) => x.reduce((a, b) => a + b, 0) / x.length;
    const [mr, mp] = [mean(real), mean(predicted)];
    let sxy = 0;
    let sxx = 0;
    let syy = 0;
    real.forEach((r, i) => {
      sxy += (r - mr) * (predicted[i] - mp);
      sxx += (r - mr) ** 2;
      syy += (predicted[i] - mp) ** 2;
    });
    expect(score).toBeCloseTo(sxy / Math.sqrt(sxx * syy), 10);
    // Scored before: the same score, nothing added.
    const again = await postJson(`${offlineUrl}/score`, request);
    expect(again.json).toEqual(first.json);
    expect(store.explanations("mlp_neuron", 1, 7)).toHaveLength(1);
  });

  it("answers 404 for a node no dataset holds, 400 without datasets, 422 for an unknown dst", async () => {
    expect((await postJson(`${offlineUrl}/explain`, node("mlp_post_act", 0, 9999, ["demo"]))).status).toBe(
      404,
    );
    expect((await postJson(`${offlineUrl}/explain`, node("mlp_post_act", 0, 1, ["nope"]))).status).toBe(404);
    const none = await postJson(`${offlineUrl}/score`, {
      ...node("mlp_post_act", 0, 1, []),
      explanation: "x",
    });
    expect(none.status).toBe(400);
    expect((await postJson(`${offlineUrl}/explain`, node("no_such_dst", 0, 1, ["demo"]))).status).toBe(422);
  });
});

describe("OpenAI's public datasets (local bucket)", () => {
  it("/existing_explanations and /explain answer the published explanations", async () => {
    const listed = await postJson(`${offlineUrl}/existing_explanations`, {
      dst: "mlp_post_act",
      layerIndex: 0,
      activationIndex: 5,
      explanationDatasets: [],
      neuronDataset: "gpt2-small",
    });
    // datasetName is the explanation folder's last path component: "" for ".../explanations/", as in TDB.
    expect(listed.json).toEqual([{ explanation: "words about cats", score: 0.42, datasetName: "" }]);
    const explained = await postJson(`${offlineUrl}/explain`, node("mlp_post_act", 0, 5, ["gpt2-small"]));
    expect(explained.status).toBe(200);
    expect((explained.json as { explanations: string[] }).explanations).toEqual(["words about cats"]);
  });

  it("explains and scores a record without published explanations offline", async () => {
    const explained = await postJson(`${offlineUrl}/explain`, node("mlp_post_act", 0, 6, ["gpt2-small"]));
    expect(explained.status).toBe(200);
    expect((explained.json as { explanations: string[] }).explanations[0]).toMatch(/^tokens " cat"/);
    const scored = await postJson(`${offlineUrl}/score`, {
      ...node("mlp_post_act", 0, 6, ["gpt2-small"]),
      explanation: '"cat"',
    });
    expect(scored.status).toBe(200);
    expect((scored.json as { score: number }).score).toBeGreaterThan(0.9);
  });

  it("keeps /score results in TDB's local cache layout and lists them with the published ones", async () => {
    const request = { ...node("mlp_post_act", 0, 5, ["gpt2-small"]), explanation: 'the word "cat"' };
    const scored = await postJson(`${offlineUrl}/score`, request);
    expect(scored.status).toBe(200);
    const score = (scored.json as { score: number }).score;
    const file = join(cacheDir, "gpt2-small", "cache_mlp_post_act_offline-keyword-overlap", "0", "5.jsonl");
    expect(JSON.parse(readFileSync(file, "utf8"))).toEqual({
      dataclass_name: "NeuronSimulationResults",
      neuron_id: { dataclass_name: "NeuronId", layer_index: 0, neuron_index: 5 },
      scored_explanations: [
        {
          dataclass_name: "ScoredExplanation",
          explanation: 'the word "cat"',
          scored_simulation: {
            dataclass_name: "ScoredSimulation",
            scored_sequence_simulations: [],
            ev_correlation_score: score,
            rsquared_score: null,
            absolute_dev_explained_score: null,
          },
        },
      ],
    });
    // A fresh source over the same folder lists both, published first.
    const fresh = new StoredExplanationsSource(
      new PublicDatasetSource({ baseUrl: bucketBase, cacheDir: join(cacheDir, "..", "cache2") }),
      [],
      new LocalExplanationCache(cacheDir),
    );
    expect(
      await fresh.existingExplanations({
        dst: "mlp_post_act",
        layerIndex: 0,
        activationIndex: 5,
        explanationDatasets: [],
        neuronDataset: "gpt2-small",
      }),
    ).toEqual([
      { explanation: "words about cats", score: 0.42, datasetName: "" },
      { explanation: 'the word "cat"', score, datasetName: "cache_mlp_post_act_offline-keyword-overlap" },
    ]);
    // Scoring the published explanation answers its published score.
    const published = await postJson(`${offlineUrl}/score`, { ...request, explanation: "words about cats" });
    expect(published.json).toMatchObject({ score: 0.42 });
  });
});

describe("with a language-model endpoint", () => {
  it("/explain asks the model, /score simulates and keeps the scored explanation", async () => {
    const explained = await postJson(`${llmUrl}/explain`, node("mlp_post_act", 1, 7, ["llm"]));
    expect(explained.status).toBe(200);
    const [explanation] = (explained.json as { explanations: string[] }).explanations;
    expect(explanation).toMatch(/^the token "/);
    expect(llmStore.explanations("mlp_neuron", 1, 7)).toHaveLength(0);
    const scored = await postJson(`${llmUrl}/score`, {
      ...node("mlp_post_act", 1, 7, ["llm"]),
      explanation,
      maxSequences: 2,
    });
    expect(scored.status).toBe(200);
    const [stored] = llmStore.explanations("mlp_neuron", 1, 7);
    expect(stored).toMatchObject({
      explanation,
      method: "llm-simulator:fake-model",
      score: (scored.json as { score: number }).score,
    });
    // Cached now, as TDB: /explain returns it without asking the model.
    const before = fake.requests.length;
    const again = await postJson(`${llmUrl}/explain`, node("mlp_post_act", 1, 7, ["llm"]));
    expect(again.json).toEqual({ explanations: [explanation], dataset: "llm" });
    expect(fake.requests.length).toBe(before);
  });

  it("reports an endpoint that refuses as 502 with its message", async () => {
    fake.queue.push({
      kind: "status",
      status: 401,
      body: JSON.stringify({ error: { message: "Incorrect API key" } }),
    });
    const { status, json } = await postJson(`${llmUrl}/explain`, node("mlp_post_act", 1, 8, ["llm"]));
    expect(status).toBe(502);
    expect((json as { message: string }).message).toContain("Incorrect API key");
  });
});
