/** `tdb collate`: top-activating examples of every neuron, head and latent over a corpus, into one SQLite file. */
import { existsSync } from "node:fs";
import { basename, resolve } from "node:path";
import { parseArgs } from "node:util";
import {
  type CollateProgressEvent,
  collate,
  mergeDatasets,
  ResumeMismatchError,
  readCorpus,
  tokenizeCorpus,
} from "@tdb/datasets";
import type { AutoencoderSite } from "@tdb/model";
import { createProgressBar, loadAutoencoderFamily, loadModel } from "@tdb/model/node";
import { numberFlag, UsageError } from "./main.js";

const COLLATE_USAGE = `usage: tdb collate --model DIR|NAME --corpus FILE|builtin:NAME --out FILE [options]
       tdb collate merge --out FILE SHARD1 SHARD2 …

Runs the model over the corpus and keeps, for every MLP neuron, attention head (token-pair attention write
norms) and autoencoder latent: the top-k sequences by maximum value, random sequences and statistics.

  --corpus FILE|builtin:NAME  plain text (one document), JSONL with a "text" field per line, or a built-in
                              corpus (builtin:tiny). Documents are joined with <|endoftext|> and the token
                              stream is cut into contiguous windows of --seq-len tokens (a shorter tail is dropped).
  --out FILE                  the SQLite file; an unfinished FILE made with the same settings is resumed
  --mlp-autoencoder DIR       also collate these latents (mlp_post_act or resid_delta_mlp; mlp_post_act when
                              neither the files nor the folder's name say)
  --attn-autoencoder DIR      also collate these latents (resid_delta_attn)
  --seq-len N                 tokens per sequence (default 64)
  --top-k N                   top sequences kept per component (default 20)
  --random N                  random sequences kept per component (default 20)
  --seed N                    seed of the random-sample choice (default 0)
  --shard I/N                 process only sequences i with i mod N = I; merge the N files with 'collate merge'
  --commit-every N            commit after N sequences (default 64; also every 60 s)
  --threads N                 matrix products over N threads (default 2 where 2+ cores; 1 = one thread)

Interrupt with Ctrl-C (the current batch is committed) and run the same command again to resume.`;

type ProgressDraw = (event: CollateProgressEvent, final?: boolean) => void;

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** A one-line bar on a terminal; a line every 10 s otherwise (logs stay short). */
function progressBar(stream: NodeJS.WriteStream, seqLen: number): ProgressDraw {
  let lastDraw = 0;
  return (e, final = false) => {
    const now = Date.now();
    const interval = stream.isTTY ? 200 : 10_000;
    if (!final && now - lastDraw < interval) return;
    lastDraw = now;
    const rate = e.elapsedSeconds > 0 ? e.tokensThisRun / e.elapsedSeconds : 0;
    const remaining = (e.total - e.processed) * seqLen;
    const eta = rate > 0 ? remaining / rate : Number.POSITIVE_INFINITY;
    const done = e.total > 0 ? e.processed / e.total : 1;
    const width = 30;
    const filled = Math.min(width, Math.round(done * width));
    const line =
      `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${(done * 100).toFixed(1)}% ` +
      `${e.processed}/${e.total} sequences, ${Math.round(rate).toLocaleString("en-US")} tokens/s, ` +
      `${final ? `took ${formatDuration(e.elapsedSeconds)}` : `ETA ${formatDuration(eta)}`}`;
    if (stream.isTTY) stream.write(`\r${line}\x1b[K${final ? "\n" : ""}`);
    else stream.write(`${line}\n`);
  };
}

function parseShard(value: string | undefined): { index: number; count: number } {
  if (value === undefined) return { index: 0, count: 1 };
  const match = /^(\d+)\/(\d+)$/.exec(value.trim());
  const index = match ? Number(match[1]) : Number.NaN;
  const count = match ? Number(match[2]) : Number.NaN;
  if (!match || count < 1 || index >= count) {
    throw new UsageError(`--shard expects I/N with 0 ≤ I < N (e.g. 0/4), got '${value}'`);
  }
  return { index, count };
}

/** Blocks for `ms` (tests slow a run down with TDB_COLLATE_TEST_COMMIT_DELAY_MS to kill it mid-way). */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export async function collateCommand(argv: string[]): Promise<number> {
  if (argv[0] === "merge") return mergeCommand(argv.slice(1));
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(COLLATE_USAGE);
    return 0;
  }
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: "string" },
      corpus: { type: "string" },
      out: { type: "string" },
      "mlp-autoencoder": { type: "string" },
      "attn-autoencoder": { type: "string" },
      "seq-len": { type: "string" },
      "top-k": { type: "string" },
      random: { type: "string" },
      seed: { type: "string" },
      shard: { type: "string" },
      "commit-every": { type: "string" },
    },
    strict: true,
  });
  if (!values.model) throw new UsageError(`--model is required; see tdb collate --help`);
  if (!values.corpus) throw new UsageError(`--corpus is required; see tdb collate --help`);
  if (!values.out) throw new UsageError(`--out is required; see tdb collate --help`);
  const seqLen = numberFlag("seq-len", values["seq-len"], 64, true);
  const topK = numberFlag("top-k", values["top-k"], 20, true);
  const randomCount = numberFlag("random", values.random, 20, true);
  const seed = numberFlag("seed", values.seed, 0, true);
  const commitEvery = numberFlag("commit-every", values["commit-every"], 64, true);
  const shard = parseShard(values.shard);
  if (seqLen < 1) throw new UsageError("--seq-len must be ≥ 1");
  if (topK < 0 || randomCount < 0) throw new UsageError("--top-k and --random must be ≥ 0");
  if (commitEvery < 1) throw new UsageError("--commit-every must be ≥ 1");

  const { model, tokenizer, dir } = await loadModel(values.model, { onProgress: createProgressBar() });
  const modelName = existsSync(values.model) ? basename(resolve(values.model)) : values.model;
  // The files (or the folder's name) say where a family attaches; when they don't, the flag decides.
  const loadFamily = async (path: string | undefined, fallbackSite: AutoencoderSite) => {
    if (!path) return null;
    try {
      return await loadAutoencoderFamily(path);
    } catch (error) {
      if (!/cannot tell where/.test((error as Error).message)) throw error;
      return await loadAutoencoderFamily(path, { site: fallbackSite });
    }
  };
  const mlpAutoencoder = await loadFamily(values["mlp-autoencoder"], "mlp_post_act");
  const attentionAutoencoder = await loadFamily(values["attn-autoencoder"], "resid_delta_attn");
  const corpus = tokenizeCorpus(readCorpus(values.corpus), tokenizer);

  let interrupted = false;
  const onSigint = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write("\ninterrupted: committing the current batch (Ctrl-C again to quit at once)\n");
  };
  process.on("SIGINT", onSigint);
  const testDelay = Number(process.env.TDB_COLLATE_TEST_COMMIT_DELAY_MS ?? 0);
  const draw = progressBar(process.stderr, seqLen);
  let last: CollateProgressEvent | null = null;
  try {
    console.error(
      `collating ${modelName} (${dir}) over ${corpus.name}: ${corpus.tokens.length} tokens, ` +
        `${Math.floor(corpus.tokens.length / seqLen)} sequences of ${seqLen}` +
        (shard.count > 1 ? `, shard ${shard.index}/${shard.count}` : ""),
    );
    const result = await collate({
      model,
      modelName,
      tokenizer,
      corpus,
      out: values.out,
      seqLen,
      topK,
      randomCount,
      seed,
      shard,
      mlpAutoencoder,
      attentionAutoencoder,
      commitEverySequences: commitEvery,
      shouldStop: () => interrupted,
      afterCommit: testDelay > 0 ? () => sleepSync(testDelay) : undefined,
      onProgress: (e) => {
        last = e;
        draw(e);
      },
    });
    if (result.alreadyComplete) {
      console.error(`${values.out} is already complete (${result.progress.total} sequences); nothing to do`);
      return 0;
    }
    if (last) draw(last, true);
    if (result.resumedFrom > 0) console.error(`resumed after ${result.resumedFrom} sequences done earlier`);
    if (!result.progress.complete) {
      console.error(
        `stopped after ${result.progress.processed}/${result.progress.total} sequences; run the same command again to resume`,
      );
      return 130;
    }
    const groups = result.run.groups;
    const count = (kind: string) => groups.filter((g) => g.kind === kind).reduce((n, g) => n + g.size, 0);
    console.error(
      `wrote ${values.out}: ${count("mlp_neuron")} neurons, ${count("attention_head")} heads, ` +
        `${count("mlp_autoencoder_latent") + count("attention_autoencoder_latent")} latents`,
    );
    return 0;
  } catch (error) {
    if (error instanceof ResumeMismatchError) {
      console.error(`tdb collate: ${error.message}`);
      return 1;
    }
    throw error;
  } finally {
    process.off("SIGINT", onSigint);
  }
}

function mergeCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { out: { type: "string" } },
    allowPositionals: true,
    strict: true,
  });
  if (!values.out) throw new UsageError(`collate merge: --out is required; see tdb collate --help`);
  if (positionals.length === 0)
    throw new UsageError(`collate merge: name the shard files to merge; see tdb collate --help`);
  const { progress } = mergeDatasets(positionals, values.out);
  console.error(`merged ${positionals.length} shards (${progress.total} sequences) into ${values.out}`);
  return Promise.resolve(0);
}
