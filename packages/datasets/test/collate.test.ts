/**
 * Collation on the tiny fixture model over the built-in corpus: stored top examples, random samples and
 * statistics against a brute-force recomputation (the model's cached forward, head write norms and latents
 * recomputed in float64 from the weights), sharded-then-merged and interrupted-then-resumed runs against the
 * uninterrupted run, byte for byte.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { hookKey, seededRandom } from "@tdb/model";
import { setDefaultGemm } from "@tdb/tensor";
import { nativeGemm, nativeGemmStatus } from "@tdb/tensor/node";
import { beforeAll, describe, expect, it } from "vitest";
import { ActivationExtractor } from "../src/activations.js";
import {
  type ComponentKind,
  collate,
  mergeDatasets,
  openDatasetStore,
  ResumeMismatchError,
  readCorpus,
  type TokenizedCorpus,
  tokenizeCorpus,
} from "../src/index.js";
import { dumpDataset, loadTiny, tempDir } from "./helpers.js";

const SEQ_LEN = 32;
const TOP_K = 5;
const RANDOM = 4;

type Tiny = Awaited<ReturnType<typeof loadTiny>>;
let tiny: Tiny;
let corpus: TokenizedCorpus;
let dir: string;
let unsharded: string;

const baseOptions = () => ({
  model: tiny.model,
  modelName: "tiny-gpt2",
  tokenizer: tiny.tokenizer,
  corpus,
  seqLen: SEQ_LEN,
  topK: TOP_K,
  randomCount: RANDOM,
  mlpAutoencoder: tiny.autoencoder,
});

beforeAll(async () => {
  tiny = await loadTiny();
  corpus = tokenizeCorpus(readCorpus("builtin:tiny"), tiny.tokenizer);
  dir = tempDir("collate");
  unsharded = join(dir, "unsharded.db");
  await collate({ ...baseOptions(), out: unsharded });
});

let cachedForwards: Map<string, Float32Array>[] | null = null;

/** The model's own forward pass (with its activation cache) over every sequence. */
function forwardCache(): Map<string, Float32Array>[] {
  if (!cachedForwards) {
    const n = Math.floor(corpus.tokens.length / SEQ_LEN);
    cachedForwards = Array.from(
      { length: n },
      (_, s) => tiny.model.forward([...corpus.tokens.subarray(s * SEQ_LEN, (s + 1) * SEQ_LEN)]).activations,
    );
  }
  return cachedForwards;
}

/** Per-sequence values of one component, recomputed independently (float64 where we compute). */
function bruteForceValues(kind: ComponentKind, layer: number, index: number): Float64Array[] {
  const { model } = tiny;
  const { nEmbd: d, nHead: H } = model.config;
  const Dh = d / H;
  const out: Float64Array[] = [];
  for (const acts of forwardCache()) {
    const T = SEQ_LEN;
    if (kind === "mlp_neuron") {
      const post = acts.get(hookKey("mlp.post_act", layer))!;
      out.push(Float64Array.from({ length: T }, (_, t) => post[t * model.config.nInner + index]));
    } else if (kind === "attention_head") {
      const probs = acts.get(hookKey("attn.qk_probs", layer))!;
      const v = acts.get(hookKey("attn.v", layer))!;
      const wO = model.weights.layers[layer].attnOutWeight;
      const norms = new Float64Array(T);
      for (let u = 0; u < T; u++) {
        let sq = 0;
        for (let j = 0; j < d; j++) {
          let x = 0;
          for (let i = 0; i < Dh; i++) x += v[u * d + index * Dh + i] * wO[(index * Dh + i) * d + j];
          sq += x * x;
        }
        norms[u] = Math.sqrt(sq);
      }
      const pairs: number[] = [];
      for (let t = 0; t < T; t++)
        for (let u = 0; u <= t; u++) pairs.push(probs[(t * T + u) * H + index] * norms[u]);
      out.push(Float64Array.from(pairs));
    } else {
      const ae = tiny.autoencoder.byLayer.get(layer)!;
      expect(ae.activation.kind).toBe("relu");
      const x = acts.get(hookKey("mlp.post_act", layer))!;
      const m = ae.nInputs;
      out.push(
        Float64Array.from({ length: T }, (_, t) => {
          let pre = ae.latentBias[index];
          for (let i = 0; i < m; i++)
            pre += (x[t * m + i] - ae.inputBias[i]) * ae.encoderWeight[index * m + i];
          return Math.max(pre, 0);
        }),
      );
    }
  }
  return out;
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  expect(actual.length, what).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const tol = 2e-5 + 2e-5 * Math.abs(expected[i]);
    if (!(Math.abs(actual[i] - expected[i]) <= tol)) {
      throw new Error(`${what}[${i}]: ${actual[i]} vs brute force ${expected[i]}`);
    }
  }
}

describe("collation against a brute-force recomputation", () => {
  it("20 random components: top-k sequences and values, random samples, statistics", () => {
    const store = openDatasetStore(unsharded, { readonly: true });
    try {
      const rand = seededRandom(6);
      const pick = (n: number) => Math.floor(rand() * n);
      const { nLayer, nInner, nHead } = tiny.model.config;
      const components: [ComponentKind, number, number][] = [];
      for (let i = 0; i < 8; i++) components.push(["mlp_neuron", pick(nLayer), pick(nInner)]);
      for (let i = 0; i < 5; i++) components.push(["attention_head", pick(nLayer), pick(nHead)]);
      for (let i = 0; i < 7; i++) components.push(["mlp_autoencoder_latent", 0, pick(512)]);
      const kindsSeen = new Set<string>();
      for (const [kind, layer, index] of components) {
        const name = `${kind}@${layer}:${index}`;
        const brute = bruteForceValues(kind, layer, index);
        const maxima = brute.map((values) =>
          values.reduce((a, b) => Math.max(a, b), Number.NEGATIVE_INFINITY),
        );
        const order = maxima.map((_, s) => s).sort((a, b) => maxima[b] - maxima[a] || a - b);
        const record = store.record(kind, layer, index)!;
        const top = record.mostPositiveActivationRecords;
        expect(top.length, name).toBe(TOP_K);
        // The same sequences as brute force (near-ties at the boundary may swap), best first, same values.
        const kth = maxima[order[TOP_K - 1]];
        const tol = 1e-5 * Math.max(1, Math.abs(kth));
        for (const s of order.filter((s) => maxima[s] > kth + tol)) {
          expect(
            top.map((r) => r.sequenceIndex),
            `${name} must keep sequence ${s}`,
          ).toContain(s);
        }
        for (const r of top) {
          const s = r.sequenceIndex!;
          expect(maxima[s], `${name} kept sequence ${s}`).toBeGreaterThanOrEqual(kth - tol);
          expectClose(r.activations, brute[s], `${name} top seq ${s}`);
          expect(r.tokenIds).toEqual([...corpus.tokens.subarray(s * SEQ_LEN, (s + 1) * SEQ_LEN)]);
          expect(r.tokens).toEqual(r.tokenIds!.map((id) => tiny.tokenizer.tokenString(id)));
        }
        for (let i = 1; i < top.length; i++) {
          expect(maxima[top[i - 1].sequenceIndex!]).toBeGreaterThanOrEqual(
            maxima[top[i].sequenceIndex!] - tol,
          );
        }
        // Random samples: distinct sequences whose stored values are that sequence's values.
        const random = record.randomSample;
        expect(random.length, name).toBe(RANDOM);
        expect(new Set(random.map((r) => r.sequenceIndex)).size).toBe(RANDOM);
        for (const r of random)
          expectClose(r.activations, brute[r.sequenceIndex!], `${name} random seq ${r.sequenceIndex}`);
        // Statistics over every value of every sequence.
        const all = brute.flatMap((v) => [...v]);
        const mean = all.reduce((a, b) => a + b, 0) / all.length;
        const variance = all.reduce((a, b) => a + (b - mean) ** 2, 0) / all.length;
        const stats = store.statistics(kind, layer, index)!;
        expect(stats.count).toBe(all.length);
        expect(stats.mean).toBeCloseTo(mean, 5);
        expect(stats.variance).toBeCloseTo(variance, 4);
        expect(stats.max).toBeCloseTo(Math.max(...all), 5);
        expect(stats.activationFrequency).toBeCloseTo(all.filter((v) => v > 0).length / all.length, 3);
        kindsSeen.add(kind);
      }
      expect(kindsSeen.size).toBe(3);
    } finally {
      store.close();
    }
  });

  it.runIf(nativeGemmStatus().available)(
    "on the native GEMM (all-heads attention kernels), four sequences in one pass give every neuron's and head's brute-force values",
    () => {
      setDefaultGemm(nativeGemm());
      try {
        const extractor = new ActivationExtractor(tiny.model);
        const sequences = [0, 1, 2, 3].map((s) => corpus.tokens.subarray(s * SEQ_LEN, (s + 1) * SEQ_LEN));
        const values = extractor.runMany(sequences);
        const { nInner, nHead } = tiny.model.config;
        extractor.groups.forEach((group, g) => {
          const size = group.kind === "mlp_neuron" ? nInner : nHead;
          for (const index of [0, size - 1]) {
            const brute = bruteForceValues(group.kind, group.layer, index);
            for (let s = 0; s < sequences.length; s++) {
              const all = values[s][g];
              const rows = all.length / group.size;
              const own = Float32Array.from({ length: rows }, (_, r) => all[r * group.size + index]);
              expectClose(own, brute[s], `${group.kind}@${group.layer}:${index} sequence ${s}`);
            }
          }
        });
      } finally {
        setDefaultGemm(null);
      }
    },
  );

  it("records the run in the metadata and lists the component groups", () => {
    const store = openDatasetStore(unsharded, { readonly: true });
    try {
      const meta = store.metadata();
      expect(meta.schemaVersion).toBe(1);
      expect(meta.seqLen).toBe(SEQ_LEN);
      expect(meta.topK).toBe(TOP_K);
      expect(meta.randomCount).toBe(RANDOM);
      expect(meta.corpus.name).toBe("builtin:tiny");
      expect(meta.corpus.sequences).toBe(Math.floor(corpus.tokens.length / SEQ_LEN));
      expect(meta.progress).toEqual({
        processed: meta.corpus.sequences,
        total: meta.corpus.sequences,
        complete: true,
      });
      expect(meta.shard).toEqual({ index: 0, count: 1 });
      expect(meta.autoencoders.mlp?.site).toBe("mlp_post_act");
      expect(meta.dstNames).toEqual({
        mlp_neuron: "mlp_post_act",
        attention_head: "attn_write_norm",
        mlp_autoencoder_latent: "mlp_autoencoder_latent",
      });
      expect(store.components().map((g) => `${g.kind}@${g.layer}:${g.size}:${g.values}`)).toEqual([
        "mlp_neuron@0:256:tokens",
        "mlp_neuron@1:256:tokens",
        "attention_head@0:4:token_pairs",
        "attention_head@1:4:token_pairs",
        "mlp_autoencoder_latent@0:512:tokens",
      ]);
      expect(store.neuronDatasetsMetadata().map((m) => [m.shortName, m.derivedScalarType])).toEqual([
        ["unsharded", "mlp_post_act"],
        ["unsharded", "attn_write_norm"],
        ["unsharded", "mlp_autoencoder_latent"],
      ]);
      expect(store.resolveKind("autoencoder_latent")).toBe("mlp_autoencoder_latent");
      expect(store.resolveKind("unflattened_attn_write_norm")).toBe("attention_head");
      expect(store.resolveKind("attention_autoencoder_latent")).toBeNull();
      expect(store.record("mlp_neuron", 2, 0)).toBeNull();
      expect(store.record("mlp_neuron", 0, 256)).toBeNull();
      expect(store.statistics("attention_autoencoder_latent", 0, 0)).toBeNull();
    } finally {
      store.close();
    }
  });

  it("serves TDB's record shapes", () => {
    const store = openDatasetStore(unsharded, { readonly: true });
    try {
      const neuron = store.neuronRecord("mlp_neuron", 1, 17)!;
      expect(neuron.dataset).toBe("unsharded");
      expect(neuron.topActivations).toHaveLength(TOP_K);
      expect(neuron.randomSample).toHaveLength(RANDOM);
      expect(neuron.topActivations[0]).toHaveLength(SEQ_LEN);
      expect(neuron.maxActivation).toBe(Math.max(...neuron.topActivations.flat().map((t) => t.scalar)));
      const head = store.attentionHeadRecord(0, 1, { dataset: "mine" })!;
      expect(head.dataset).toBe("mine");
      expect(head.mostPositiveTokenSequences).toHaveLength(TOP_K);
      expect(head.mostPositiveTokenSequences[0].map((t) => t.scalars.length)).toEqual(
        Array.from({ length: SEQ_LEN }, (_, i) => i + 1),
      );
      expect(() => store.neuronRecord("attention_head", 0, 0)).toThrow(/attentionHeadRecord/);
    } finally {
      store.close();
    }
  });
});

describe("sharding, merging and resuming", () => {
  it("three shards merged equal the unsharded file exactly", async () => {
    const shards = [0, 1, 2].map((i) => join(dir, `shard-${i}.db`));
    // Out of order on purpose: the merge must not depend on it.
    for (const i of [2, 0, 1])
      await collate({ ...baseOptions(), out: shards[i], shard: { index: i, count: 3 } });
    const merged = join(dir, "merged.db");
    mergeDatasets([shards[1], shards[2], shards[0]], merged);
    expect(dumpDataset(merged)).toEqual(dumpDataset(unsharded));
    expect(() => mergeDatasets([shards[0], shards[1]], join(dir, "partial.db"))).toThrow(
      /shards 2\/3 are missing/,
    );
    expect(() => mergeDatasets([shards[0], shards[0], shards[1], shards[2]], join(dir, "dup.db"))).toThrow(
      /both shard 0\/3/,
    );
    expect(() => mergeDatasets(shards, merged)).toThrow(/already exists/);
  });

  it("an interrupted run resumes from its last commit and ends equal", async () => {
    const out = join(dir, "interrupted.db");
    let commits = 0;
    const first = await collate({
      ...baseOptions(),
      out,
      commitEverySequences: 3,
      afterCommit: () => {
        commits++;
      },
      shouldStop: () => commits >= 4,
    });
    expect(first.progress.complete).toBe(false);
    expect(first.progress.processed).toBe(12);
    // Settings that differ are refused, naming the difference, and leave the file as it was.
    await expect(collate({ ...baseOptions(), out, topK: TOP_K + 1 })).rejects.toThrow(ResumeMismatchError);
    await expect(collate({ ...baseOptions(), out, topK: TOP_K + 1 })).rejects.toThrow(/--top-k: 5 vs 6/);
    await expect(collate({ ...baseOptions(), out, shard: { index: 0, count: 2 } })).rejects.toThrow(
      /--shard: 0\/1 vs 0\/2/,
    );
    const second = await collate({ ...baseOptions(), out, commitEverySequences: 5 });
    expect(second.resumedFrom).toBe(12);
    expect(second.progress.complete).toBe(true);
    expect(dumpDataset(out)).toEqual(dumpDataset(unsharded));
    const third = await collate({ ...baseOptions(), out });
    expect(third.alreadyComplete).toBe(true);
    expect(existsSync(`${out}-wal`)).toBe(false);
  });
});

describe("explanations beside the dataset", () => {
  it("stores and reads explanations per component", () => {
    const file = join(dir, "explained.db");
    mergeDatasets([unsharded], file);
    const store = openDatasetStore(file);
    try {
      const id = store.putExplanation("mlp_neuron", 0, 3, {
        explanation: "the word 'the'",
        score: 0.42,
        method: "offline-token-summary",
        details: { tokens: [" the"] },
      });
      store.putExplanation("mlp_neuron", 0, 3, { explanation: "articles", method: "gpt-4o" });
      const list = store.explanations("mlp_neuron", 0, 3);
      expect(list.map((e) => [e.id === id, e.explanation, e.score, e.method, e.details])).toEqual([
        [true, "the word 'the'", 0.42, "offline-token-summary", { tokens: [" the"] }],
        [false, "articles", null, "gpt-4o", null],
      ]);
      expect(store.explanations("mlp_neuron", 0, 4)).toEqual([]);
      expect(store.deleteExplanations("mlp_neuron", 0, 3, "gpt-4o")).toBe(1);
      expect(store.explanations("mlp_neuron", 0, 3)).toHaveLength(1);
    } finally {
      store.close();
    }
    const readonly = openDatasetStore(file, { readonly: true });
    try {
      expect(() => readonly.putExplanation("mlp_neuron", 0, 1, { explanation: "x", method: "m" })).toThrow(
        /readonly/,
      );
    } finally {
      readonly.close();
    }
  });
});
