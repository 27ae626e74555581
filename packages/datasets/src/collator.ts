/**
 * The collation loop: forward each sequence of the shard, fold it into the accumulators, and commit to the
 * SQLite file every few sequences (or seconds) with a progress marker, so a killed run resumes where its last
 * commit ended. Sequences of shard I/N are I, I+N, I+2N, … of the corpus's windows.
 */
import { createHash } from "node:crypto";
import { existsSync, statSync, unlinkSync } from "node:fs";
import type { Gpt2Model, Gpt2Tokenizer, SparseAutoencoder } from "@tdb/model";
import { wasmArrayRecycler, withJobArrays } from "@tdb/tensor";
import { GroupAccumulator } from "./accumulate.js";
import { ActivationExtractor, type AutoencoderSet } from "./activations.js";
import { sequenceCount, type TokenizedCorpus } from "./corpus.js";
import {
  type AutoencoderInfo,
  bytesOf,
  type CollationProgress,
  type CollationRun,
  DATASET_FORMAT,
  DatasetWriter,
} from "./store.js";

/**
 * Sequences run through the model together: 4 × 64 tokens make the weight products 256 rows tall, where the native
 * GEMM runs ~20 % faster than at 64; more gains little and holds more activations at once.
 */
const SEQUENCES_PER_PASS = 4;

export interface ShardSpec {
  index: number;
  count: number;
}

export interface CollateProgressEvent {
  /** Sequences of this shard done, including those done by earlier runs. */
  processed: number;
  total: number;
  /** Sequences done by earlier runs of this file (resumed from). */
  resumedFrom: number;
  /** Tokens processed by this run. */
  tokensThisRun: number;
  elapsedSeconds: number;
  committed: boolean;
}

export interface CollateOptions {
  model: Gpt2Model;
  /** Shown in the metadata (a hub name or the folder's name). */
  modelName: string;
  tokenizer: Gpt2Tokenizer;
  corpus: TokenizedCorpus;
  out: string;
  seqLen?: number;
  topK?: number;
  randomCount?: number;
  /** Seeds the random-sample hashes (default 0). */
  seed?: number;
  shard?: ShardSpec;
  mlpAutoencoder?: AutoencoderSet | null;
  attentionAutoencoder?: AutoencoderSet | null;
  /** Commit after this many sequences (default 64) or this many seconds (default 60), whichever comes first. */
  commitEverySequences?: number;
  commitEverySeconds?: number;
  /** Commit early when the values waiting to be written exceed this (default 512 MiB). */
  maxPendingBytes?: number;
  onProgress?: (event: CollateProgressEvent) => void;
  /** Checked between sequences; when it returns true the run commits and stops (as an interrupted run would). */
  shouldStop?: () => boolean;
  /** Called after each commit (tests use it to stop or slow a run). */
  afterCommit?: (progress: CollationProgress) => void;
}

export interface CollateResult {
  file: string;
  run: CollationRun;
  progress: CollationProgress;
  resumedFrom: number;
  /** The file was already complete; nothing was computed. */
  alreadyComplete: boolean;
}

export class ResumeMismatchError extends Error {
  override name = "ResumeMismatchError";
}

export function shardSequences(total: number, shard: ShardSpec): number {
  return shard.index < total ? Math.ceil((total - shard.index) / shard.count) : 0;
}

export function modelSha256(model: Gpt2Model): string {
  const hash = createHash("sha256");
  const c = model.config;
  hash.update(
    JSON.stringify([
      c.nLayer,
      c.nHead,
      c.nEmbd,
      c.nInner,
      c.nPositions,
      c.vocabSize,
      c.layerNormEpsilon,
      c.activationFunction,
    ]),
  );
  hash.update(JSON.stringify([c.scaleAttnWeights ?? true, c.scaleAttnByInverseLayerIdx ?? false]));
  const w = model.weights;
  const arrays: Float32Array[] = [w.tokenEmbedding, w.positionEmbedding];
  for (const l of w.layers) {
    arrays.push(l.ln1Gain, l.ln1Bias, l.qkvWeight, l.qkvBias, l.attnOutWeight, l.attnOutBias);
    arrays.push(l.ln2Gain, l.ln2Bias, l.fcWeight, l.fcBias, l.projWeight, l.projBias);
  }
  arrays.push(w.lnFGain, w.lnFBias);
  if (w.unembedding !== w.tokenEmbedding) arrays.push(w.unembedding);
  for (const a of arrays) hash.update(bytesOf(a));
  return hash.digest("hex");
}

export function autoencoderInfo(set: AutoencoderSet): AutoencoderInfo {
  const hash = createHash("sha256");
  const layers = [...set.byLayer.keys()].sort((a, b) => a - b);
  for (const l of layers) {
    const ae: SparseAutoencoder = set.byLayer.get(l)!;
    hash.update(JSON.stringify([l, ae.nInputs, ae.nLatents, ae.activation]));
    for (const a of [ae.encoderWeight, ae.decoderWeight, ae.latentBias, ae.inputBias, ae.outputBias])
      hash.update(bytesOf(a));
  }
  return { name: set.name, site: set.site, sha256: hash.digest("hex"), layers };
}

/** Fields whose values differ between two runs (names of model and corpus excepted: the hashes identify them). */
export function runDifferences(
  a: CollationRun,
  b: CollationRun,
  options: { ignoreShardIndex?: boolean } = {},
): string[] {
  const fields: [string, unknown, unknown][] = [
    ["model (weights sha256)", a.model.sha256, b.model.sha256],
    ["corpus (token sha256)", a.corpus.sha256, b.corpus.sha256],
    ["--seq-len", a.seqLen, b.seqLen],
    ["--top-k", a.topK, b.topK],
    ["--random", a.randomCount, b.randomCount],
    ["seed", a.seed, b.seed],
    ["--mlp-autoencoder", a.autoencoders.mlp?.sha256 ?? null, b.autoencoders.mlp?.sha256 ?? null],
    [
      "--attn-autoencoder",
      a.autoencoders.attention?.sha256 ?? null,
      b.autoencoders.attention?.sha256 ?? null,
    ],
    ["components", a.groups, b.groups],
    options.ignoreShardIndex ? ["shard count", a.shard.count, b.shard.count] : ["--shard", a.shard, b.shard],
  ];
  const show = (v: unknown) =>
    typeof v === "object" && v !== null && "index" in v
      ? `${(v as ShardSpec).index}/${(v as ShardSpec).count}`
      : JSON.stringify(v);
  return fields
    .filter(([, x, y]) => JSON.stringify(x) !== JSON.stringify(y))
    .map(([name, x, y]) => `${name}: ${shorten(show(x))} vs ${shorten(show(y))}`);
}

function shorten(text: string): string {
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function isEmptyDatabaseFile(file: string): boolean {
  return statSync(file).size === 0;
}

export async function collate(options: CollateOptions): Promise<CollateResult> {
  const seqLen = options.seqLen ?? 64;
  const topK = options.topK ?? 20;
  const randomCount = options.randomCount ?? 20;
  const seed = options.seed ?? 0;
  const shard = options.shard ?? { index: 0, count: 1 };
  const { model, corpus, tokenizer } = options;
  if (!Number.isInteger(seqLen) || seqLen < 1)
    throw new RangeError(`seq-len must be a positive whole number, got ${seqLen}`);
  if (seqLen > model.config.nPositions) {
    throw new RangeError(
      `seq-len ${seqLen} exceeds the model's context of ${model.config.nPositions} tokens`,
    );
  }
  if (!Number.isInteger(topK) || topK < 0)
    throw new RangeError(`top-k must be a whole number ≥ 0, got ${topK}`);
  if (!Number.isInteger(randomCount) || randomCount < 0)
    throw new RangeError(`random must be a whole number ≥ 0, got ${randomCount}`);
  if (
    !(
      Number.isInteger(shard.count) &&
      shard.count >= 1 &&
      Number.isInteger(shard.index) &&
      shard.index >= 0 &&
      shard.index < shard.count
    )
  ) {
    throw new RangeError(`shard must be I/N with 0 ≤ I < N, got ${shard.index}/${shard.count}`);
  }
  const corpusSequences = sequenceCount(corpus.tokens.length, seqLen);
  if (corpusSequences === 0) {
    throw new Error(`the corpus has ${corpus.tokens.length} tokens, fewer than one sequence of ${seqLen}`);
  }

  const extractor = new ActivationExtractor(model, {
    mlpAutoencoder: options.mlpAutoencoder,
    attentionAutoencoder: options.attentionAutoencoder,
  });
  const c = model.config;
  const run: CollationRun = {
    format: DATASET_FORMAT,
    model: {
      name: options.modelName,
      sha256: modelSha256(model),
      nLayer: c.nLayer,
      nHead: c.nHead,
      nEmbd: c.nEmbd,
      nInner: c.nInner,
      nPositions: c.nPositions,
      vocabSize: c.vocabSize,
    },
    corpus: {
      name: corpus.name,
      sha256: corpus.sha256,
      tokens: corpus.tokens.length,
      documents: corpus.documents,
      sequences: corpusSequences,
    },
    seqLen,
    topK,
    randomCount,
    seed,
    shard,
    autoencoders: {
      mlp: options.mlpAutoencoder ? autoencoderInfo(options.mlpAutoencoder) : null,
      attention: options.attentionAutoencoder ? autoencoderInfo(options.attentionAutoencoder) : null,
    },
    groups: extractor.groups.map((g) => ({ ...g })),
  };
  const total = shardSequences(corpusSequences, shard);
  const accumulators = run.groups.map((g) => new GroupAccumulator(g, seqLen, topK, randomCount, seed));

  let writer: DatasetWriter;
  let progress: CollationProgress;
  if (existsSync(options.out) && !isEmptyDatabaseFile(options.out)) {
    const opened = DatasetWriter.open(options.out);
    writer = opened.writer;
    progress = opened.progress;
    const differences = runDifferences(writer.run, run);
    if (differences.length > 0) {
      writer.close();
      throw new ResumeMismatchError(
        `${options.out} holds a collation with different settings, so it cannot be resumed (file vs now: ${differences.join("; ")}). ` +
          "Pass another --out, or delete the file to start again.",
      );
    }
    if (progress.complete) {
      writer.close();
      return {
        file: options.out,
        run: writer.run,
        progress,
        resumedFrom: progress.processed,
        alreadyComplete: true,
      };
    }
    writer.restore(accumulators);
  } else {
    if (existsSync(options.out)) unlinkSync(options.out);
    progress = { processed: 0, total, complete: false };
    writer = DatasetWriter.create(options.out, run, progress);
  }

  const resumedFrom = progress.processed;
  const commitEverySequences = Math.max(1, options.commitEverySequences ?? 64);
  const commitEveryMs = (options.commitEverySeconds ?? 60) * 1000;
  const maxPendingBytes = options.maxPendingBytes ?? 512 * 2 ** 20;
  const seenTokens = new Set<number>();
  const start = performance.now();
  let lastCommit = start;
  let lastYield = start;
  let batch: { seq: number; tokens: Int32Array }[] = [];
  let newTokens: [number, string][] = [];
  let tokensThisRun = 0;

  const commit = (processed: number) => {
    progress = { processed, total, complete: processed === total };
    writer.commit(accumulators, batch, newTokens, progress);
    batch = [];
    newTokens = [];
    lastCommit = performance.now();
    options.afterCommit?.(progress);
  };

  // Sequences already run through the model but not yet observed, in order.
  const ahead: { tokens: TokenizedCorpus["tokens"]; values: Float32Array[] }[] = [];
  // A pass's arrays (activations, values) are reused by the next pass once its sequences are observed: the
  // accumulators copy what they keep. They live in the WebAssembly memory, where its kernels use them in place.
  const passArrays = wasmArrayRecycler();
  let inUse: Float32Array[] = [];
  try {
    for (let pos = resumedFrom; pos < total; pos++) {
      if (options.shouldStop?.() === true) {
        if (batch.length > 0) commit(pos);
        break;
      }
      const seq = shard.index + pos * shard.count;
      if (ahead.length === 0) {
        // The next few sequences in one forward pass (more rows per weight product); observed one by one below.
        const count = Math.min(SEQUENCES_PER_PASS, total - pos);
        const next = Array.from({ length: count }, (_, i) => {
          const s = shard.index + (pos + i) * shard.count;
          return corpus.tokens.slice(s * seqLen, (s + 1) * seqLen);
        });
        passArrays.give(inUse);
        const pass = withJobArrays(passArrays, () => extractor.runMany(next));
        inUse = pass.arrays;
        const values = pass.result;
        next.forEach((tokens, i) => {
          ahead.push({ tokens, values: values[i] });
        });
      }
      const { tokens, values } = ahead.shift()!;
      for (let g = 0; g < accumulators.length; g++) accumulators[g].observe(seq, values[g]);
      batch.push({ seq, tokens });
      for (const id of tokens) {
        if (!seenTokens.has(id)) {
          seenTokens.add(id);
          newTokens.push([id, tokenizer.tokenString(id)]);
        }
      }
      tokensThisRun += seqLen;
      const done = pos + 1;
      const now = performance.now();
      let pendingBytes = 0;
      for (const acc of accumulators) pendingBytes += acc.pendingBytes;
      const due =
        batch.length >= commitEverySequences ||
        now - lastCommit >= commitEveryMs ||
        pendingBytes >= maxPendingBytes ||
        done === total;
      if (due) commit(done);
      options.onProgress?.({
        processed: done,
        total,
        resumedFrom,
        tokensThisRun,
        elapsedSeconds: (now - start) / 1000,
        committed: due,
      });
      // Let signal handlers and timers run now and then.
      if (now - lastYield > 200) {
        await new Promise((resolve) => setImmediate(resolve));
        lastYield = performance.now();
      }
    }
    if (total === 0) commit(0);
  } finally {
    passArrays.give(inUse);
    passArrays.clear();
    for (const acc of accumulators) acc.dispose();
    writer.close();
  }
  return { file: options.out, run, progress, resumedFrom, alreadyComplete: false };
}
