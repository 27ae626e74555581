/**
 * The read routes backed by OpenAI's public datasets, against a local HTTP server laid out like the public
 * bucket (tdb-spec §6): records and explanations by URL, Python-style NaN in the files, the on-disk cache,
 * fallback over several datasets, 404s, and refusal of URLs outside the configured base. Expected values are
 * worked out by hand from TDB's read_routes.py formulas.
 */

import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TdbContext } from "@tdb/attribution";
import { loadModel } from "@tdb/model/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DatasetNotFoundError } from "../src/datasets.js";
import { PublicDatasetSource } from "../src/public-datasets.js";
import { createTdbServer, type TdbServer } from "../src/server.js";
import { SHARED } from "./serve-process.js";

const neuronRecord = `{"dataclass_name": "NeuronRecord", "neuron_id": {"dataclass_name": "NeuronId", "layer_index": 0, "neuron_index": 5},
 "random_sample": [{"dataclass_name": "ActivationRecord", "tokens": ["d", "e"], "activations": [0.5, 8.0]}],
 "random_sample_by_quantile": null, "quantile_boundaries": null,
 "mean": NaN, "variance": Infinity, "skewness": -Infinity, "kurtosis": 0.0,
 "most_positive_activation_records": [
   {"dataclass_name": "ActivationRecord", "tokens": ["a", "NaN"], "activations": [1.0, 4.0]},
   {"dataclass_name": "ActivationRecord", "tokens": ["c"], "activations": [-2.0]}]}`;

// Legacy record (no dataclass names); token-pair activations as flattened lower triangles.
const attentionRecord = JSON.stringify({
  neuron_id: { layer: 1, idx: 2 },
  most_positive_activation_records: [{ tokens: ["x", "y", "z"], activations: [1, 2, 3, 4, 5, 6] }],
  // 4 tokens with the attended-to window capped at 2: rows of 1, 2, 2, 2 entries.
  random_sample: [{ tokens: ["p", "q", "r", "s"], activations: [1, 0, -1, 2, 0, 3, 1] }],
});

const explanations = `{"dataclass_name": "NeuronSimulationResults", "neuron_id": {"layer_index": 0, "neuron_index": 5}, "scored_explanations": [{"explanation": "words about cats", "scored_simulation": {"ev_correlation_score": 0.42, "rsquared_score": 0.1}}, {"explanation_or_baseline": "an old explanation", "scored_simulation": {"ev_correlation_score": NaN}}]}
`;

const FILES: Record<string, string> = {
  "/neuron-explainer/gpt2_small_data/collated-activations/0/5.json": neuronRecord,
  "/neuron-explainer/gpt2_small/attn_write_norm/collated-activations-by-token-pair/1/2.json": attentionRecord,
  "/neuron-explainer/gpt2_small_data/explanations/0/5.jsonl": explanations,
  "/neuron-explainer/mirror-b/7/1.json": neuronRecord,
};

let bucket: Server;
let base: string;
const hits: string[] = [];
const scratch = mkdtempSync(join(tmpdir(), "tdb-public-datasets-"));
let tdb: TdbContext;
let api: TdbServer;
let apiUrl: string;

beforeAll(async () => {
  bucket = createServer((req, res) => {
    hits.push(req.url ?? "");
    const body = FILES[req.url ?? ""];
    if (body === undefined) {
      res.writeHead(404, { "Content-Type": "application/xml" });
      res.end("<Error><Code>BlobNotFound</Code></Error>");
      return;
    }
    res.writeHead(200, { "Content-Type": "application/octet-stream" });
    res.end(body);
  });
  await new Promise<void>((resolve) => bucket.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(bucket.address() as AddressInfo).port}/neuron-explainer/`;
  const { model, tokenizer } = await loadModel(`${SHARED}fixtures/tiny-gpt2`);
  tdb = { model, tokenizer, modelName: "tiny-gpt2" };
  api = createTdbServer({
    tdb,
    datasets: new PublicDatasetSource({ baseUrl: base, cacheDir: join(scratch, "api-cache") }),
    logRequests: false,
  });
  apiUrl = (await api.listen(0)).url;
});
afterAll(async () => {
  await api.close();
  await new Promise((resolve) => bucket.close(resolve));
  rmSync(scratch, { recursive: true, force: true });
});

const scale = (max: number) => (x: number) => Math.max(x / (max - 1e-5), 0);

describe("PublicDatasetSource", () => {
  it("lists TDB's registry at the configured base", async () => {
    const source = new PublicDatasetSource({ baseUrl: base, cacheDir: join(scratch, "c0") });
    const metadata = await source.neuronDatasetsMetadata();
    expect(metadata.length).toBe(9);
    expect(metadata[1]).toEqual({
      shortName: "gpt2-small",
      derivedScalarType: "mlp_post_act",
      userVisibleName: "GPT-2 small - MLP neurons",
      neuronDatasetPath: `${base}gpt2_small_data/collated-activations/`,
    });
  });

  it("reads a neuron record by short name, normalising over top and random records", async () => {
    const source = new PublicDatasetSource({ baseUrl: base, cacheDir: join(scratch, "c1") });
    const record = await source.neuronRecord({
      dst: "mlp_post_act",
      layerIndex: 0,
      activationIndex: 5,
      datasets: ["gpt2-small"],
    });
    const s = scale(8); // the largest relu'd value over top and random records
    expect(record).toEqual({
      dataset: `${base}gpt2_small_data/collated-activations/`,
      maxActivation: 4, // over the top records only
      topActivations: [
        [
          { token: "a", scalar: 1, normalizedScalar: s(1) },
          { token: "NaN", scalar: 4, normalizedScalar: s(4) },
        ],
        [{ token: "c", scalar: -2, normalizedScalar: 0 }],
      ],
      randomSample: [
        [
          { token: "d", scalar: 0.5, normalizedScalar: s(0.5) },
          { token: "e", scalar: 8, normalizedScalar: s(8) },
        ],
      ],
    });
  });

  it("reads token-pair records: rows of the triangle, in/out totals and maxima, each scaled by its own max", async () => {
    const source = new PublicDatasetSource({ baseUrl: base, cacheDir: join(scratch, "c2") });
    const record = await source.attentionHeadRecord({
      dst: "attn_write_norm",
      layerIndex: 1,
      activationIndex: 2,
      datasets: ["gpt2-small"],
    });
    expect(record.maxAttentionActivation).toBe(6);
    const [top] = record.mostPositiveTokenSequences;
    const [random] = record.randomTokenSequences;
    expect(top.map((t) => t.scalars)).toEqual([[1], [2, 3], [4, 5, 6]]);
    expect(random.map((t) => t.scalars)).toEqual([[1], [0, -1], [2, 0], [3, 1]]);
    // Rows x, y, z: in = row sums 1, 5, 15 and maxima 1, 3, 6; out_j over rows i ≥ j of entry j:
    // column 0 = 1, 2, 4 → 7 (max 4); column 1 = 3, 5 → 8 (max 5); column 2 = 6.
    expect(top.map((t) => [t.totalScalarIn, t.maxScalarIn, t.totalScalarOut, t.maxScalarOut])).toEqual([
      [1, 1, 7, 4],
      [5, 3, 8, 5],
      [15, 6, 6, 6],
    ]);
    // Random rows p..s = [1], [0, -1], [2, 0], [3, 1]: column 0 = 1, 0, 2, 3; column 1 = −1, 0, 1; columns 2
    // and 3 are empty (window of 2) and count as 0.
    expect(random.map((t) => [t.totalScalarIn, t.maxScalarIn, t.totalScalarOut, t.maxScalarOut])).toEqual([
      [1, 1, 6, 3],
      [-1, 0, 0, 1],
      [2, 2, 0, 0],
      [4, 3, 0, 0],
    ]);
    const scalars = scale(6);
    expect(top[2].normalizedScalars).toEqual([4, 5, 6].map(scalars));
    expect(random[1].normalizedScalars).toEqual([0, 0]);
    expect(top[2].normalizedTotalScalarIn).toBe(scale(15)(15));
    expect(top[0].normalizedMaxScalarOut).toBe(scale(6)(4));
    expect(random[0].normalizedTotalScalarOut).toBe(scale(8)(6));
    expect(random[1].normalizedTotalScalarIn).toBe(0);
  });

  it("caches files on disk: a second source with the same folder never asks the network", async () => {
    const cacheDir = join(scratch, "shared-cache");
    const request = {
      dst: "mlp_post_act" as const,
      layerIndex: 0,
      activationIndex: 5,
      datasets: ["gpt2-small"],
    };
    const first = await new PublicDatasetSource({ baseUrl: base, cacheDir }).neuronRecord(request);
    const before = hits.length;
    const second = await new PublicDatasetSource({ baseUrl: base, cacheDir }).neuronRecord(request);
    expect(hits.length).toBe(before);
    expect(second).toEqual(first);
  });

  it("tries datasets in order; none holding the node is a DatasetNotFoundError", async () => {
    const source = new PublicDatasetSource({ baseUrl: base, cacheDir: join(scratch, "c3") });
    const record = await source.neuronRecord({
      dst: "mlp_post_act",
      layerIndex: 7,
      activationIndex: 1,
      datasets: [`${base}mirror-a`, `${base}mirror-b`],
    });
    expect(record.dataset).toBe(`${base}mirror-b`);
    await expect(
      source.neuronRecord({
        dst: "mlp_post_act",
        layerIndex: 9,
        activationIndex: 9,
        datasets: ["gpt2-small"],
      }),
    ).rejects.toBeInstanceOf(DatasetNotFoundError);
    await expect(
      source.neuronRecord({
        dst: "mlp_post_act",
        layerIndex: 0,
        activationIndex: 0,
        datasets: ["gpt3-huge"],
      }),
    ).rejects.toThrow(/Could not find collated activation dataset/);
  });

  it("fetches nothing outside its base URL", async () => {
    const source = new PublicDatasetSource({ baseUrl: base, cacheDir: join(scratch, "c4") });
    const before = hits.length;
    for (const dataset of [
      "https://example.com/neuron-explainer/",
      `${base}../other/`,
      `${base.replace("127.0.0.1", "localhost")}x/`,
      "file:///etc",
    ]) {
      await expect(
        source.neuronRecord({ dst: "mlp_post_act", layerIndex: 0, activationIndex: 0, datasets: [dataset] }),
        dataset,
      ).rejects.toMatchObject({ status: 400 });
    }
    expect(hits.length).toBe(before);
  });

  it("existing explanations: from a neuron dataset's explanation folder, scores NaN → null", async () => {
    const source = new PublicDatasetSource({ baseUrl: base, cacheDir: join(scratch, "c5") });
    const found = await source.existingExplanations({
      dst: "mlp_post_act",
      layerIndex: 0,
      activationIndex: 5,
      explanationDatasets: [],
      neuronDataset: "gpt2-small",
    });
    // datasetName is the last path component, as TDB computes it (empty after the registry's trailing "/").
    expect(found).toEqual([
      { explanation: "words about cats", score: 0.42, datasetName: "" },
      { explanation: "an old explanation", score: null, datasetName: "" },
    ]);
    const none = await source.existingExplanations({
      dst: "mlp_post_act",
      layerIndex: 0,
      activationIndex: 6,
      explanationDatasets: [`${base}gpt2_small_data/explanations`],
      neuronDataset: null,
    });
    expect(none).toEqual([]);
  });
});

describe("read routes over HTTP", () => {
  const post = async (path: string, body: unknown) => {
    const response = await fetch(apiUrl + path, { method: "POST", body: JSON.stringify(body) });
    return { status: response.status, json: await response.json() };
  };

  it("answers /neuron_record, /attention_head_record, /existing_explanations, /neuron_datasets_metadata", async () => {
    const record = await post("/neuron_record", {
      dst: "mlp_post_act",
      layer_index: 0,
      activation_index: 5,
      datasets: ["gpt2-small"],
    });
    expect(record.status).toBe(200);
    expect(record.json.maxActivation).toBe(4);
    const pairs = await post("/attention_head_record", {
      dst: "attn_write_norm",
      layerIndex: 1,
      activationIndex: 2,
      datasets: ["gpt2-small"],
    });
    expect(pairs.status).toBe(200);
    expect(pairs.json.mostPositiveTokenSequences[0][2].scalars).toEqual([4, 5, 6]);
    const stored = await post("/existing_explanations", {
      dst: "mlp_post_act",
      layerIndex: 0,
      activationIndex: 5,
      explanationDatasets: [],
      neuronDataset: "gpt2-small",
    });
    expect(stored.json).toHaveLength(2);
    const metadata = await post("/neuron_datasets_metadata", null);
    expect(metadata.json).toHaveLength(9);
  });

  it("/derived_scalars normalises by the record named in normalizeActivationsUsingNeuronRecord", async () => {
    const body = (normalize: unknown) => ({
      inferenceRequestSpec: { prompt: "When Mary and John went" },
      derivedScalarsRequestSpec: {
        dst: "mlp_post_act",
        layerIndex: 0,
        activationIndex: 5,
        normalizeActivationsUsingNeuronRecord: normalize,
      },
    });
    const plain = await post("/derived_scalars", body(null));
    expect(plain.status, JSON.stringify(plain.json)).toBe(200);
    expect(plain.json.derivedScalarsResponseData.normalizedActivations).toBeNull();
    const activations: number[] = plain.json.derivedScalarsResponseData.activations;
    expect(activations).toHaveLength(5);
    const normalized = await post(
      "/derived_scalars",
      body({ dst: "mlp_post_act", layerIndex: 0, activationIndex: 5, datasets: ["gpt2-small"] }),
    );
    expect(normalized.status).toBe(200);
    // The bucket's record for neuron 0:5 has max activation 4.
    expect(normalized.json.derivedScalarsResponseData.normalizedActivations).toEqual(
      activations.map((a) => Math.max(a, 0) / 4),
    );
    const missing = await post(
      "/derived_scalars",
      body({ dst: "mlp_post_act", layerIndex: 0, activationIndex: 6, datasets: ["gpt2-small"] }),
    );
    expect(missing.status).toBe(200);
    expect(missing.json.derivedScalarsResponseData.normalizedActivations).toBeNull();
  });

  it("404 for a node no dataset holds, 400 for a foreign URL, 503 for /explain", async () => {
    const missing = await post("/neuron_record", {
      dst: "mlp_post_act",
      layerIndex: 3,
      activationIndex: 1,
      datasets: ["gpt2-small"],
    });
    expect(missing.status).toBe(404);
    expect(missing.json.message).toMatch(/Could not find mlp_post_act 3:1/);
    const foreign = await post("/neuron_record", {
      dst: "mlp_post_act",
      layerIndex: 0,
      activationIndex: 5,
      datasets: ["https://attacker.example/"],
    });
    expect(foreign.status).toBe(400);
    const explain = await post("/explain", {
      dst: "mlp_post_act",
      layerIndex: 0,
      activationIndex: 5,
      datasets: [],
    });
    expect(explain.status).toBe(503);
  });
});
