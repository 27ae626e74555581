/**
 * Scored tokens of MLP neurons and latents go through cached per-row lists (activation × a fixed weight row). They
 * must equal scoring each node's own direction against the whole vocabulary, for positive and negative
 * activations, and a warm cache must give exactly what a cold one gives. On the WebAssembly GEMM (full products) and
 * on the native one where it is built (int8 screening of the vocabulary, then exact scores for the candidates).
 */
import { hookKey } from "@tdb/model";
import { currentDefaultGemm, type Gemm, setDefaultGemm } from "@tdb/tensor";
import { fastestGemm, nativeGemmStatus } from "@tdb/tensor/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  clearScoredTokenCache,
  inputTokensThatUpvoteMlp,
  type NodeRef,
  runInference,
  type TdbContext,
  type TopTokens,
  upvotedOutputTokens,
} from "../src/index.js";
import { loadTinyMlpAutoencoder, loadTinyModel } from "./fixture-model.js";

const { model, tokenizer } = loadTinyModel();
const ctx: TdbContext = { model, tokenizer, modelName: "tiny", mlpAutoencoder: loadTinyMlpAutoencoder() };
const tokens = tokenizer.encode("When Mary and John went to the store, John gave a drink to");
const run = runInference(ctx, {
  tokens,
  loss: { name: "logit_diff", targets: tokenizer.encode(" Mary"), distractors: tokenizer.encode(" John") },
});
const { nEmbd: d, nInner: F, vocabSize: V } = model.config;
const excluded = new Set([11, 13, 262]);
const last = tokens.length - 1;

// Neurons of both layers at two tokens, with activations of both signs.
const neurons: NodeRef[] = [];
for (const layer of [0, 1]) {
  const act = run.forward.activations.get(hookKey("mlp.post_act", layer))!;
  for (const t of [3, last]) {
    const byValue = [...Array(F).keys()].sort((a, b) => act[t * F + a] - act[t * F + b]);
    for (const n of [...byValue.slice(0, 3), ...byValue.slice(-3)]) {
      neurons.push({ kind: "mlp_neuron", layer, tensorIndices: [t, n] } as NodeRef);
    }
  }
}
const latentRecords = run.mlpLatents.get(0)!;
const nLatents = ctx.mlpAutoencoder!.byLayer.get(0)!.nLatents;
const latents: NodeRef[] = [];
for (let l = 0; l < nLatents && latents.length < 4; l++) {
  if (latentRecords.values[last * nLatents + l] > 0)
    latents.push({ kind: "mlp_latent", layer: 0, tensorIndices: [last, l] } as NodeRef);
}

/** TDB's definition, computed here from scratch: centred w·(W_U ⊙ γ_f) with w the node's write. */
function directOutput(node: NodeRef): Float64Array {
  const [t, i] = node.tensorIndices as number[];
  const w = new Float64Array(d);
  if (node.kind === "mlp_neuron") {
    const a = run.forward.activations.get(hookKey("mlp.post_act", node.layer))![t * F + i];
    const proj = model.weights.layers[node.layer!].projWeight;
    for (let j = 0; j < d; j++) w[j] = a * proj[i * d + j];
  } else {
    const ae = ctx.mlpAutoencoder!.byLayer.get(0)!;
    const z = latentRecords.values[t * nLatents + i];
    const proj = model.weights.layers[0].projWeight;
    for (let f = 0; f < F; f++) {
      const dec = ae.decoderWeight[f * nLatents + i];
      for (let j = 0; j < d; j++) w[j] += z * dec * proj[f * d + j];
    }
  }
  const scores = new Float64Array(V);
  let mean = 0;
  for (let v = 0; v < V; v++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += w[j] * model.weights.lnFGain[j] * model.weights.unembedding[v * d + j];
    scores[v] = s;
    mean += s;
  }
  mean /= V;
  for (let v = 0; v < V; v++) scores[v] -= mean;
  return scores;
}

/** ((W_fc[:, j] ⊙ γ2) − mean) / σ_t · W_E for an MLP neuron. */
function directInput(node: NodeRef): Float64Array {
  const [t, n] = node.tensorIndices as number[];
  const lw = model.weights.layers[node.layer!];
  const sigma = run.forward.activations.get(hookKey("mlp_ln.scale", node.layer))![t];
  const read = new Float64Array(d);
  let mean = 0;
  for (let i = 0; i < d; i++) mean += lw.fcWeight[i * F + n] * lw.ln2Gain[i];
  mean /= d;
  for (let i = 0; i < d; i++) read[i] = (lw.fcWeight[i * F + n] * lw.ln2Gain[i] - mean) / sigma;
  const scores = new Float64Array(V);
  for (let v = 0; v < V; v++) {
    let s = 0;
    for (let i = 0; i < d; i++) s += read[i] * model.weights.tokenEmbedding[v * d + i];
    scores[v] = s;
  }
  return scores;
}

/** The listed tokens are the true top/bottom 10 (up to float32 near-ties) with the true scores. */
function expectMatches(lists: TopTokens | null, scores: Float64Array) {
  expect(lists).not.toBeNull();
  const kept = [...scores.keys()].filter((v) => !excluded.has(v));
  const byScore = [...kept].sort((a, b) => scores[b] - scores[a]);
  const scale = Math.max(Math.abs(scores[byScore[0]]), Math.abs(scores[byScore[byScore.length - 1]]));
  const tol = 1e-5 * scale;
  const check = (got: TopTokens["top"], want: number[]) => {
    expect(got).toHaveLength(10);
    got.forEach((entry, r) => {
      // The r-th true score, and a token whose true score is that one (a float32 near-tie may swap two ids).
      expect(Math.abs(entry.scalar - scores[want[r]])).toBeLessThanOrEqual(tol);
      const candidates = kept.filter((v) => Math.abs(scores[v] - scores[want[r]]) <= tol);
      expect(candidates.map((v) => tokenizer.tokenString(v))).toContain(entry.token);
      expect(Math.abs(entry.normalizedScalar - entry.scalar / scale)).toBeLessThanOrEqual(1e-5);
    });
  };
  check(lists!.top, byScore.slice(0, 10));
  // TDB's bottom list runs from the lowest score up.
  check(lists!.bottom, byScore.slice(-10).reverse());
}

const engines: ("wasm" | "native")[] = nativeGemmStatus().available ? ["wasm", "native"] : ["wasm"];
const nativeScreens =
  nativeGemmStatus().available && fastestGemm(1, { TDB_GEMM: "native" }).gemm.ntExtremes !== undefined;
describe.each(engines)("scored tokens on the %s GEMM", (engine) => {
  beforeAll(() => setDefaultGemm(fastestGemm(1, { TDB_GEMM: engine }).gemm));
  afterAll(() => setDefaultGemm(null));

  it("upvoted output tokens of neurons (both signs) and latents equal TDB's direct definition", () => {
    clearScoredTokenCache();
    const nodes = [...neurons, ...latents];
    expect(latents.length).toBeGreaterThan(0);
    const lists = upvotedOutputTokens(ctx, run, nodes, excluded, 10);
    for (const [i, node] of nodes.entries()) expectMatches(lists[i], directOutput(node));
  });

  it("input tokens that upvote neurons equal the direct read through the LN scale", () => {
    clearScoredTokenCache();
    const lists = inputTokensThatUpvoteMlp(ctx, run, neurons, excluded, 10);
    for (const [i, node] of neurons.entries()) expectMatches(lists[i], directInput(node));
  });

  // Only where the engine screens (the WebAssembly one scores every row in full, as the tests above check).
  it.skipIf(engine !== "native" || !nativeScreens)(
    "rows the engine leaves unscreened are scored in full, beside the screened ones",
    () => {
      const inner = currentDefaultGemm();
      // Every other row handed back as not screened (as for a non-finite direction or too many candidates).
      const halfScreened: Gemm = {
        ...inner,
        ntExtremes: (a, bt, m, k, n, count, skip) => {
          const result = inner.ntExtremes!(a, bt, m, k, n, count, skip);
          if (result) for (let r = 1; r < m; r += 2) result.screened[r] = 0;
          return result;
        },
      };
      setDefaultGemm(halfScreened);
      try {
        clearScoredTokenCache();
        const nodes = [...neurons, ...latents];
        const lists = upvotedOutputTokens(ctx, run, nodes, excluded, 10);
        for (const [i, node] of nodes.entries()) expectMatches(lists[i], directOutput(node));
      } finally {
        setDefaultGemm(inner);
      }
    },
  );

  it("screens the vocabulary instead of scoring all of it where the engine can", () => {
    const inner = currentDefaultGemm();
    let full = 0;
    let screened = 0;
    const counting: Gemm = {
      nn: (...args) => inner.nn(...args),
      tn: (...args) => inner.tn(...args),
      nt: (a, bt, c, m, k, n, accumulate) => {
        if (n === V) full += m;
        inner.nt(a, bt, c, m, k, n, accumulate);
      },
      ntExtremes: inner.ntExtremes
        ? (a, bt, m, k, n, count, skip) => {
            const result = inner.ntExtremes!(a, bt, m, k, n, count, skip);
            if (result) screened += result.screened.reduce((s, x) => s + x, 0);
            return result;
          }
        : undefined,
    };
    setDefaultGemm(counting);
    try {
      clearScoredTokenCache();
      upvotedOutputTokens(ctx, run, [...neurons, ...latents], excluded, 10);
      // One screened row per weight row: a neuron listed at two tokens is scored once.
      const rows = new Set([...neurons, ...latents].map((n) => `${n.kind}|${n.layer}|${n.tensorIndices[1]}`))
        .size;
      if (engine === "native") expect([screened, full]).toEqual([rows, 0]);
      else expect([screened, full]).toEqual([0, rows]);
    } finally {
      setDefaultGemm(inner);
    }
  });

  it("a warm cache answers exactly as a cold one, without scoring the vocabulary again", () => {
    const nodes = [...neurons, ...latents];
    const both = () => [
      upvotedOutputTokens(ctx, run, nodes, excluded, 10),
      inputTokensThatUpvoteMlp(ctx, run, nodes, excluded, 10),
    ];
    // Count the products against the whole vocabulary ([N×d]·[d×V]).
    const inner = currentDefaultGemm();
    let vocabularyProducts = 0;
    const counting: Gemm = {
      nn: (...args) => inner.nn(...args),
      tn: (...args) => inner.tn(...args),
      nt: (a, bt, c, m, k, n, accumulate) => {
        if (n === V) vocabularyProducts++;
        inner.nt(a, bt, c, m, k, n, accumulate);
      },
    };
    setDefaultGemm(counting);
    try {
      clearScoredTokenCache();
      const cold = both();
      // One product for the neuron and latent writes, one for the neuron and latent reads.
      expect(vocabularyProducts).toBe(2);
      vocabularyProducts = 0;
      const warm = both();
      // Latent reads depend on the token, so they are scored again; everything else comes from the cache.
      expect(vocabularyProducts).toBe(1);
      expect(warm).toEqual(cold);
    } finally {
      setDefaultGemm(null);
    }
  });
});
