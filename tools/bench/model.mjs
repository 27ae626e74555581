// Model-level benchmarks on the built packages: GPT-2-small-shaped forward at 32 tokens, and everything behind
// one TDB request (forward, backward, all node metrics, top-k, scored tokens) at 32 tokens, cold (no cached
// scored-token lists) and warm (the same request again). Random weights.
// The *-2t lines repeat both with the two-thread GEMM as the process default (what `tdb serve` uses on 2+ cores).
import { readFileSync } from "node:fs";
import { clearScoredTokenCache, handleBatchedTdb } from "../../packages/attribution/dist/index.js";
import { GPT2_SMALL_ARCHITECTURE, Gpt2Tokenizer, randomGpt2 } from "../../packages/model/dist/index.js";
import { setDefaultGemm } from "../../packages/tensor/dist/index.js";
import { threadedGemm } from "../../packages/tensor/dist/node/index.js";

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

export async function benchModel() {
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
  const ctx = { model, tokenizer, modelName: "random-gpt2-small" };
  const results = [];
  const run = (suffix) => {
    results.push({
      bench: `gpt2-small-forward-t32${suffix}`,
      median_ms: median(() => model.forward(ids, { cache: false })),
    });
    results.push({
      bench: `gpt2-small-tdb-request-t32${suffix}`,
      // Cold: the scored-token lists cached per weight row are dropped before every request.
      median_ms: median(
        () => {
          clearScoredTokenCache();
          handleBatchedTdb(ctx, request);
        },
        { warmup: 1, reps: 7 },
      ),
    });
    results.push({
      // The same request again (what the viewer sends after an ablation or a trace on the same prompt).
      bench: `gpt2-small-tdb-request-t32-warm${suffix}`,
      median_ms: median(() => handleBatchedTdb(ctx, request), { warmup: 1, reps: 7 }),
    });
  };
  run("");
  // The model and the attribution code hold defaultGemm(), which forwards to whatever is set now.
  const threaded = threadedGemm({ threads: 2 });
  if (threaded.threads === 2) {
    setDefaultGemm(threaded);
    try {
      run("-2t");
    } finally {
      setDefaultGemm(null);
    }
  }
  threaded.close();
  return results;
}
