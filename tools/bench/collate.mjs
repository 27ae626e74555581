// Collation benchmark on the built packages: a random GPT-2-small-shaped model over sequences of 64 tokens with
// the default settings (top 20, random 20), writing a real SQLite file. benchCollate() resolves to
// [{bench: "collate-gpt2-small-shaped", tokens_per_s, …}]: tokens_per_s covers 8 sequences after 4 warm-up
// sequences (forward, write norms, top-k/random/statistics bookkeeping); the last commit is timed apart. It runs on
// the GEMM the CLI picks on one thread (native where built, else WebAssembly), again on two threads
// (collate-gpt2-small-shaped-2t, what `tdb collate` does on 2+ cores) and on the WebAssembly kernel
// (collate-gpt2-small-shaped-wasm) where the pick is native.
// Those 8 sequences are the start of a run, where every component still enters its top-20 and random-20 sets, so
// every value is copied for the database. collate-gpt2-small-shaped-steady times sequences 41–56 of a run over
// random tokens instead, when the sets are full and take a few components per sequence, as in most of a long run.
import { readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { collate, readCorpus, sha256Hex, tokenizeCorpus } from "../../packages/datasets/dist/index.js";
import { GPT2_SMALL_ARCHITECTURE, Gpt2Tokenizer, randomGpt2 } from "../../packages/model/dist/index.js";
import { setDefaultGemm } from "../../packages/tensor/dist/index.js";
import { fastestGemm } from "../../packages/tensor/dist/node/index.js";

const TINY = new URL("../../../shared/fixtures/tiny-gpt2/", import.meta.url);
const SEQ_LEN = 64;
// The collator runs 4 sequences per forward pass (SEQUENCES_PER_PASS): the timed window covers whole passes, after
// one pass of warm-up, so it pays for exactly the forward passes of the sequences it counts.
const WARMUP = 4;
const MEASURED = 8;

export async function benchCollate() {
  const single = fastestGemm(1);
  const results = [...(await collateOnce(single, ""))];
  const two = fastestGemm(2);
  if (two.threads === 2) results.push(await collateOnce(two, "-2t"));
  else two.close();
  if (single.engine !== "wasm")
    results.push(await collateOnce(fastestGemm(1, { TDB_GEMM: "wasm" }), "-wasm"));
  return results;
}

async function collateOnce(chosen, suffix) {
  setDefaultGemm(chosen.gemm);
  try {
    const start = await collateWith(chosen.engine, suffix);
    if (suffix !== "") return start;
    return [start, await collateWith(chosen.engine, "-steady", { warmup: 40, measured: 16 })];
  } finally {
    setDefaultGemm(null);
    chosen.close();
  }
}

async function collateWith(engine, suffix, window = { warmup: WARMUP, measured: MEASURED }) {
  const model = randomGpt2(GPT2_SMALL_ARCHITECTURE, 1, 0.05);
  const tokenizer = Gpt2Tokenizer.fromVocabAndMerges(
    readFileSync(new URL("vocab.json", TINY), "utf8"),
    readFileSync(new URL("merges.txt", TINY), "utf8"),
  );
  const { warmup, measured } = window;
  // One extra sequence so the final commit falls outside the timed window.
  const count = warmup + measured + 1;
  const full = tokenizeCorpus(readCorpus("builtin:tiny"), tokenizer);
  let corpus;
  if (full.tokens.length >= count * SEQ_LEN)
    corpus = { ...full, tokens: full.tokens.slice(0, count * SEQ_LEN) };
  else {
    // Longer than builtin:tiny: seeded random tokens (the model is random too).
    const tokens = new Int32Array(count * SEQ_LEN);
    let state = 12345;
    for (let i = 0; i < tokens.length; i++) {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      tokens[i] = state % model.config.vocabSize;
    }
    corpus = {
      name: "random-tokens",
      tokens,
      sha256: sha256Hex(new Uint8Array(tokens.buffer)),
      documents: 1,
    };
  }
  const out = join(tmpdir(), `tdb-bench-collate-${process.pid}.db`);
  rmSync(out, { force: true });
  const marks = [];
  const t0 = performance.now();
  try {
    await collate({
      model,
      modelName: "random-gpt2-small",
      tokenizer,
      corpus,
      out,
      seqLen: SEQ_LEN,
      // Only the final commit, timed apart: mid-window commits would charge a long run's amortised writes to a few
      // sequences. A long warm-up commits once as it ends, so that its pending values cannot force a commit inside
      // the window (maxPendingBytes).
      commitEverySequences: warmup > WARMUP ? warmup : 1000,
      commitEverySeconds: 3600,
      onProgress: () => marks.push(performance.now()),
    });
  } finally {
    rmSync(out, { force: true });
  }
  const seconds = (marks[warmup + measured - 1] - marks[warmup - 1]) / 1000;
  return {
    bench: `collate-gpt2-small-shaped${suffix}`,
    engine,
    tokens_per_s: Number(((measured * SEQ_LEN) / seconds).toFixed(1)),
    sequences: measured,
    seq_len: SEQ_LEN,
    final_commit_s: Number(((marks[count - 1] - marks[count - 2]) / 1000).toFixed(2)),
    total_s: Number(((performance.now() - t0) / 1000).toFixed(2)),
  };
}
