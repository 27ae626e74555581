/**
 * Logits and greedy generation against Hugging Face transformers' GPT2LMHeadModel (golden files written by
 * tools/golden/make_test_models.py), on the shared tiny fixture and on models with other sizes, n_inner unset,
 * F16/BF16 weights and sharded checkpoints. Also mlp.post_act and attention probabilities against the
 * PyTorch values in shared/fixtures/tiny-gpt2/reference.json. The logits and generation cases run on every GEMM
 * engine available here (the WebAssembly kernel, and the native one where it was built).
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { setDefaultGemm } from "@tdb/tensor";
import { fastestGemm, nativeGemmStatus } from "@tdb/tensor/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Gpt2Model, generate, hookKey, normalizeGpt2StateDict } from "../src/index.js";
import { loadHfFolder } from "../src/node/index.js";

const TINY = new URL("../../../../shared/fixtures/tiny-gpt2/", import.meta.url);
const MODELS = new URL("fixtures/models/", import.meta.url);

interface Golden {
  vocabIds: number[];
  prompts: {
    name: string;
    inputIds: number[];
    lastLogits: number[];
    argmax: number[];
    logsumexp: number[];
    logitsAtVocabIds: number[][];
  }[];
  generate: { newTokenIds: number[]; maxNewTokens: number };
}

const cases: { name: string; dir: URL; golden: URL }[] = [
  {
    name: "tiny-gpt2 (shared fixture)",
    dir: TINY,
    golden: new URL("golden/tiny-gpt2.json", import.meta.url),
  },
  ...["l3-h2-d32-inner80", "l1-h4-d16-f16", "l1-h2-d16-bf16", "l2-h3-d24-sharded"].map((name) => ({
    name,
    dir: new URL(`${name}/`, MODELS),
    golden: new URL(`${name}/golden.json`, MODELS),
  })),
];

async function load(dir: URL): Promise<Gpt2Model> {
  const { config, tensors } = await loadHfFolder(fileURLToPath(dir));
  return Gpt2Model.fromStateDict(config, normalizeGpt2StateDict(tensors, config), {
    tieWordEmbeddings: config.tieWordEmbeddings,
  });
}

// Golden values are rounded to 6 significant digits, which is within the 1e-4 budget for |logit| < 10.
const tolerance = (expected: number) => 1e-4 + 1e-6 * Math.abs(expected);

const engines: ("wasm" | "native")[] = nativeGemmStatus().available ? ["wasm", "native"] : ["wasm"];

describe.each(engines.flatMap((engine) => cases.map((c) => ({ ...c, engine }))))(
  "$name matches transformers ($engine GEMM)",
  ({ dir, golden: goldenUrl, engine }) => {
    beforeAll(() => setDefaultGemm(fastestGemm(1, { TDB_GEMM: engine }).gemm));
    afterAll(() => setDefaultGemm(null));
    const golden: Golden = JSON.parse(readFileSync(goldenUrl, "utf8"));

    for (const prompt of golden.prompts) {
      it(`logits on the ${prompt.name} prompt (${prompt.inputIds.length} tokens)`, async () => {
        const model = await load(dir);
        const { logits } = model.forward(prompt.inputIds, { cache: false });
        const V = model.config.vocabSize;
        const T = prompt.inputIds.length;
        let maxDiff = 0;
        prompt.lastLogits.forEach((expected, v) => {
          maxDiff = Math.max(
            maxDiff,
            Math.abs(logits[(T - 1) * V + v] - expected) - tolerance(expected) + 1e-4,
          );
        });
        for (let t = 0; t < T; t++) {
          const row = logits.subarray(t * V, (t + 1) * V);
          golden.vocabIds.forEach((id, i) => {
            const expected = prompt.logitsAtVocabIds[t][i];
            maxDiff = Math.max(maxDiff, Math.abs(row[id] - expected) - tolerance(expected) + 1e-4);
          });
          let max = Number.NEGATIVE_INFINITY;
          let best = 0;
          for (let v = 0; v < V; v++) if (row[v] > max) [max, best] = [row[v], v];
          let sum = 0;
          for (let v = 0; v < V; v++) sum += Math.exp(row[v] - max);
          expect(Math.abs(max + Math.log(sum) - prompt.logsumexp[t])).toBeLessThan(2e-4);
          expect(best, `argmax at position ${t}`).toBe(prompt.argmax[t]);
        }
        expect(maxDiff).toBeLessThanOrEqual(1e-4);
      });
    }

    it("greedy generation of 20 tokens", async () => {
      const model = await load(dir);
      const ioi = golden.prompts.find((p) => p.name === "ioi")!;
      expect(generate(model, ioi.inputIds, { maxNewTokens: golden.generate.maxNewTokens })).toEqual(
        golden.generate.newTokenIds,
      );
    });
  },
);

describe("hook values match PyTorch (reference.json)", () => {
  const ref = JSON.parse(readFileSync(new URL("reference.json", TINY), "utf8")) as {
    tokens: number[];
    mlpPostAct: number[][][];
    attnProbs: number[][][][];
  };
  it("mlp.post_act and attn.qk_probs", async () => {
    const model = await load(TINY);
    const { activations } = model.forward(ref.tokens);
    const T = ref.tokens.length;
    const H = model.config.nHead;
    for (let l = 0; l < model.config.nLayer; l++) {
      const post = activations.get(hookKey("mlp.post_act", l))!;
      ref.mlpPostAct[l].flat().forEach((v, i) => {
        expect(Math.abs(post[i] - v)).toBeLessThan(1e-5 + 1e-4 * Math.abs(v));
      });
      const probs = activations.get(hookKey("attn.qk_probs", l))!;
      for (let h = 0; h < H; h++)
        for (let t = 0; t < T; t++)
          for (let u = 0; u < T; u++) {
            expect(Math.abs(probs[(t * T + u) * H + h] - ref.attnProbs[l][h][t][u])).toBeLessThan(1e-6);
          }
    }
  });
});
