// Model-level benchmarks on the built packages: GPT-2-small-shaped forward at 32 tokens, and everything behind
// one TDB request (forward, backward, all node metrics, top-k, scored tokens) at 32 tokens, cold (no cached
// scored-token lists) and warm (the same request again). Random weights.
// Every line runs on the GEMM the CLI picks (fastestGemm: native where built, else WebAssembly) on one thread; the
// *-2t lines repeat them over two threads (what `tdb serve` uses on 2+ cores) and, where the pick is native, the
// *-wasm lines on the WebAssembly kernel. Each line names its engine.
import { readFileSync } from "node:fs";
import { clearScoredTokenCache, handleBatchedTdb } from "../../packages/attribution/dist/index.js";
import { GPT2_SMALL_ARCHITECTURE, Gpt2Tokenizer, randomGpt2 } from "../../packages/model/dist/index.js";
import { setDefaultGemm } from "../../packages/tensor/dist/index.js";
import { fastestGemm } from "../../packages/tensor/dist/node/index.js";

const TINY = new URL("../../../shared/fixtures/tiny-gpt2/", import.meta.url);

function median(run, { warmup = 2, reps = 9 } = {}) {
  for (let i = 0; i < warmup; i++) run();
  const times = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    run();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return Number(times[Math.floor(times.length / 2)].toFixed(2));
}

/** 32 tokens of ordinary text with the GPT-2 tokenizer (the shared fixture has GPT-2's own files). */
export function prompt32(tokenizer) {
  const text =
    "When Mary and John went to the store, John gave a drink to Mary. Later that day the two friends walked home along the quiet river and talked about the long summer";
  const ids = tokenizer.encode(text).slice(0, 32);
  if (ids.length !== 32) throw new Error(`benchmark prompt has ${ids.length} tokens, expected 32`);
  return { ids, text: tokenizer.decode(ids) };
}

/**
 * The benchmark's model, prompt and TDB request (random GPT-2-small-shaped weights, 32 tokens), made once: the
 * second request line reuses the model (and its prepacked weights) rather than packing another one.
 */
let setup;
function requestSetup() {
  setup ??= makeSetup();
  return setup;
}

function makeSetup() {
  const model = randomGpt2(GPT2_SMALL_ARCHITECTURE, 1, 0.05);
  const tokenizer = Gpt2Tokenizer.fromVocabAndMerges(
    readFileSync(new URL("vocab.json", TINY), "utf8"),
    readFileSync(new URL("merges.txt", TINY), "utf8"),
  );
  const { ids, text } = prompt32(tokenizer);
  const request = {
    subRequests: [
      {
        specType: "tdb_request_spec",
        prompt: text,
        targetTokens: [" Mary"],
        distractorTokens: [" John"],
        componentTypeForMlp: "neuron",
        componentTypeForAttention: "attention_head",
        topAndBottomKForNodeTable: 10,
        hideEarlyLayersWhenAblating: true,
        nodeAblations: [],
      },
    ],
  };
  return { model, ids, request, ctx: { model, tokenizer, modelName: "random-gpt2-small" } };
}

/** One cold TDB request, median of 7 after one warm-up (the scored-token lists are dropped before each). */
function coldRequestMs(ctx, request) {
  return median(
    () => {
      clearScoredTokenCache();
      handleBatchedTdb(ctx, request);
    },
    { warmup: 1, reps: 7 },
  );
}

/**
 * The one-thread cold request again, for run.js to time after PyTorch's baseline: the host's speed drifts between
 * minutes, and this line shows how far our two measurements, a minute apart, differ.
 */
export async function benchRequestAgain() {
  const { ctx, request } = requestSetup();
  const chosen = fastestGemm(1);
  setDefaultGemm(chosen.gemm);
  try {
    return [
      {
        bench: "gpt2-small-tdb-request-t32-after-torch",
        engine: chosen.engine,
        median_ms: coldRequestMs(ctx, request),
      },
    ];
  } finally {
    setDefaultGemm(null);
    chosen.close();
  }
}

export async function benchModel() {
  const { model, ids, request, ctx } = requestSetup();
  const results = [];
  const run = (suffix, engine) => {
    results.push({
      bench: `gpt2-small-forward-t32${suffix}`,
      engine,
      median_ms: median(() => model.forward(ids, { cache: false })),
    });
    results.push({
      bench: `gpt2-small-tdb-request-t32${suffix}`,
      engine,
      // Cold: the scored-token lists cached per weight row are dropped before every request.
      median_ms: coldRequestMs(ctx, request),
    });
    results.push({
      // The same request again (what the viewer sends after an ablation or a trace on the same prompt).
      bench: `gpt2-small-tdb-request-t32-warm${suffix}`,
      engine,
      median_ms: median(() => handleBatchedTdb(ctx, request), { warmup: 1, reps: 7 }),
    });
  };
  // The model and the attribution code hold defaultGemm(), which forwards to whatever is set now.
  const runOn = (chosen, suffix) => {
    setDefaultGemm(chosen.gemm);
    try {
      run(suffix, chosen.engine);
    } finally {
      setDefaultGemm(null);
      chosen.close();
    }
  };
  const single = fastestGemm(1);
  runOn(single, "");
  const two = fastestGemm(2);
  if (two.threads === 2) runOn(two, "-2t");
  else two.close();
  if (single.engine !== "wasm") runOn(fastestGemm(1, { TDB_GEMM: "wasm" }), "-wasm");
  return results;
}
