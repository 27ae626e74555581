/**
 * Explaining a whole collated dataset (tiny-gpt2 over builtin:tiny, made with the collation API): every
 * component gets an explanation and a score, stored scores match a recomputation written here (own splits,
 * own simulator evaluation, own Pearson), runs resume, --force replaces, an interrupted run ends equal to an
 * uninterrupted one; and the LLM explainer over the fake endpoint on real records.
 */
import { copyFileSync } from "node:fs";
import { join } from "node:path";
import { type ActivationRecord, type DatasetStore, type NeuronRecord, openDatasetStore } from "@tdb/datasets";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ChatClient,
  explainDataset,
  LlmExplainer,
  OfflineExplainer,
  parseComponentSpecs,
  selectComponents,
} from "../src/index.js";
import { type FakeLlm, ruleBasedModel, startFakeLlm } from "./fake-llm.js";
import { tempDir, tinyDataset } from "./helpers.js";

let dir: string;
let file: string;
beforeAll(async () => {
  dir = tempDir("explain-dataset");
  file = await tinyDataset(dir);
});

function pearson(x: number[], y: number[]): number {
  const mx = x.reduce((a, b) => a + b, 0) / x.length;
  const my = y.reduce((a, b) => a + b, 0) / y.length;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < x.length; i++) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) ** 2;
    syy += (y[i] - my) ** 2;
  }
  const r = sxy / Math.sqrt(sxx * syy);
  return Number.isFinite(r) ? r : 0;
}

/** TDB's valid split written out: top records 2, 6, …, 18 and random records 1, 4, …, 13. */
function heldOut(record: NeuronRecord): ActivationRecord[] {
  const top = record.mostPositiveActivationRecords;
  const random = record.randomSample;
  return [...[2, 6, 10, 14, 18].map((i) => top[i]), ...[1, 4, 7, 10, 13].map((i) => random[i])];
}

function rowsPerComponent(store: DatasetStore): number[] {
  return selectComponents(store, parseComponentSpecs(["all"])).map(
    (c) => store.explanations(c.kind, c.layer, c.index).length,
  );
}

describe("offline, whole dataset", () => {
  let store: DatasetStore;
  beforeAll(() => {
    store = openDatasetStore(file);
  });
  afterAll(() => store.close());

  it("explains and scores every component", async () => {
    const components = selectComponents(store, parseComponentSpecs(["all"]));
    // tiny-gpt2: 2 layers × (256 neurons + 4 heads), 512 autoencoder latents in layer 0.
    expect(components).toHaveLength(2 * 256 + 2 * 4 + 512);
    const result = await explainDataset(store, { explainer: new OfflineExplainer(), components });
    expect(result.progress).toMatchObject({
      done: components.length,
      explained: components.length,
      skipped: 0,
    });
    expect(result.scores).toHaveLength(components.length);
    for (const s of result.scores) {
      expect(s.explanation.length).toBeGreaterThan(0);
      expect(s.score).not.toBeNull();
    }
    expect(rowsPerComponent(store).every((n) => n === 1)).toBe(true);
  });

  it("stored scores equal a recomputation from the stored simulators on TDB's held-out records", () => {
    let checked = 0;
    for (const [kind, layer, index] of [
      ["mlp_neuron", 0, 3],
      ["mlp_neuron", 0, 200],
      ["mlp_neuron", 1, 17],
      ["mlp_neuron", 1, 255],
      ["mlp_autoencoder_latent", 0, 5],
      ["mlp_autoencoder_latent", 0, 99],
    ] as const) {
      const [stored] = store.explanations(kind, layer, index);
      const simulator = (
        stored.details as {
          simulator: { tokens: [string, number][]; previous: [string, number][]; first: number };
        }
      ).simulator;
      const weight = (list: [string, number][], token: string) => list.find(([t]) => t === token)?.[1] ?? 0;
      const records = heldOut(store.record(kind, layer, index)!);
      const real = records.flatMap((r) => r.activations);
      const predicted = records.flatMap((r) =>
        r.tokens.map(
          (t, i) =>
            weight(simulator.tokens, t) +
            (i === 0 ? simulator.first : weight(simulator.previous, r.tokens[i - 1])),
        ),
      );
      expect(stored.score).toBeCloseTo(pearson(real, predicted), 10);
      // The explanation lists exactly the simulator's tokens.
      for (const [token] of simulator.tokens) expect(stored.explanation).toContain(JSON.stringify(token));
      checked++;
    }
    expect(checked).toBe(6);
  });

  it("skips explained components on a second run, and replaces them with force", async () => {
    const components = selectComponents(store, parseComponentSpecs(["mlp:1", "heads"]));
    expect(components).toHaveLength(256 + 8);
    const again = await explainDataset(store, { explainer: new OfflineExplainer(), components });
    expect(again.progress).toMatchObject({ skipped: components.length, explained: 0 });
    const forced = await explainDataset(store, {
      explainer: new OfflineExplainer(),
      components,
      force: true,
    });
    expect(forced.progress).toMatchObject({ skipped: 0, explained: components.length });
    expect(rowsPerComponent(store).every((n) => n === 1)).toBe(true);
  });
});

describe("interrupted runs", () => {
  it("resume and end with the explanations of an uninterrupted run", async () => {
    const whole = join(dir, "whole.db");
    const parts = join(dir, "parts.db");
    copyFileSync(await tinyDataset(dir, "fresh.db"), whole);
    copyFileSync(whole, parts);
    const explainer = new OfflineExplainer();
    const a = openDatasetStore(whole);
    const b = openDatasetStore(parts);
    try {
      const components = selectComponents(a, parseComponentSpecs(["mlp_neuron:0", "attention_head"]));
      await explainDataset(a, { explainer, components });
      let calls = 0;
      const first = await explainDataset(b, { explainer, components, shouldStop: () => ++calls > 100 });
      expect(first.stopped).toBe(true);
      expect(first.progress.explained).toBe(100);
      const second = await explainDataset(b, { explainer, components });
      expect(second.progress).toMatchObject({ skipped: 100, explained: components.length - 100 });
      const view = (s: DatasetStore) =>
        components.map((c) =>
          s.explanations(c.kind, c.layer, c.index).map((e) => [e.explanation, e.score, e.method]),
        );
      expect(view(b)).toEqual(view(a));
    } finally {
      a.close();
      b.close();
    }
  });
});

describe("language model over a fake endpoint, real records", () => {
  let fake: FakeLlm;
  beforeAll(async () => {
    fake = await startFakeLlm(ruleBasedModel);
  });
  afterAll(async () => {
    await fake.close();
  });

  it("stores explanations whose scores follow from the endpoint's answers", async () => {
    const store = openDatasetStore(await tinyDataset(dir, "llm.db"));
    try {
      const client = new ChatClient({
        baseUrl: fake.baseUrl,
        model: "fake-model",
        apiKey: null,
        timeoutMs: 5000,
        maxConcurrent: 4,
        maxRetries: 2,
        retryBaseMs: 1,
        maxRetryDelayMs: 10,
        cacheDir: tempDir("llm-cache"),
      });
      // A 429 and a malformed body on the way: retried, nothing lost.
      fake.queue.push(
        { kind: "status", status: 429, body: JSON.stringify({ error: { message: "slow down" } }) },
        { kind: "raw", body: "<html>bad gateway</html>" },
      );
      const components = selectComponents(
        store,
        parseComponentSpecs(["mlp_neuron:0:0,mlp_neuron:1:7,attention_head:1:2"]),
      );
      const result = await explainDataset(store, {
        explainer: new LlmExplainer(client),
        components,
        concurrency: 3,
      });
      expect(result.progress.explained).toBe(3);
      expect(client.stats.retries).toBe(2);
      for (const s of result.scores.filter((x) => x.kind === "mlp_neuron")) {
        const record = store.record(s.kind, s.layer, s.index)!;
        // The fake names the strongest train token (record 0 holds the top activation) …
        const top = record.mostPositiveActivationRecords[0];
        const strongest = top.tokens[top.activations.indexOf(Math.max(...top.activations))].trim();
        expect(s.explanation).toBe(`the token "${strongest}"`);
        // … and its simulator predicts 10 exactly on that token.
        const records = heldOut(record);
        const expected = pearson(
          records.flatMap((r) => r.activations),
          records.flatMap((r) => r.tokens.map((t) => (t.trim() === strongest ? 10 : 0))),
        );
        expect(s.score).toBeCloseTo(expected, 10);
      }
      const headScore = result.scores.find((x) => x.kind === "attention_head")!;
      expect(headScore.explanation).toBe("attends to the previous token");
      expect(headScore.score).not.toBeNull();
      const [stored] = store.explanations("attention_head", 1, 2);
      expect(stored.method).toBe("llm:fake-model");
      expect((stored.details as { pairs: unknown[] }).pairs).toHaveLength(10);
    } finally {
      store.close();
    }
  });
});
