/**
 * `tdb train-sae`: trains a sparse autoencoder on one site of one layer of a model, on our own engine, and writes
 * it in OpenAI's format ({layer}.safetensors, state-dict names as in openai/sparse_autoencoder) so `tdb serve`
 * and loadAutoencoderFamily load it. Resumable: a checkpoint is written every --checkpoint-every steps (and on
 * Ctrl-C); the same command continues from it.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { readCorpus, tokenizeCorpus } from "@tdb/datasets";
import {
  ActivationSource,
  AUTOENCODER_SITES,
  type AutoencoderSite,
  parseSafetensorsHeader,
  type SaeActivation,
  SaeTrainer,
  type SaeTrainingOptions,
  type StepReport,
  serializeSafetensors,
} from "@tdb/model";
import { createProgressBar, loadModel } from "@tdb/model/node";
import { numberFlag, UsageError } from "./main.js";
import { applyThreadsFlag } from "./threads.js";

const USAGE = `usage: tdb train-sae --model DIR|NAME --site SITE --layer L --corpus FILE|builtin:NAME --out DIR [options]

Trains a sparse autoencoder on the model's activations at SITE of layer L and writes DIR/L.safetensors in
OpenAI's format (pre_bias, encoder.weight, latent_bias, decoder.weight, latents_activation_frequency, …).
--layer 0,2,3 or --layer all trains several layers on one pass through the model (each ends as it would alone).

  --site SITE             mlp_post_act, resid_delta_attn or resid_delta_mlp
  --corpus FILE|builtin:N plain text, JSONL with a "text" field per line, or a built-in corpus; documents are
                          joined with <|endoftext|> and cut into windows of --seq-len tokens; every 20th window
                          is held out for the final evaluation; the first token of each window is skipped
  --activation topk|relu  default topk (TopK, then ReLU, as OpenAI's TopK autoencoders)
  --k K                   latents kept per token with topk (default 32)
  --l1 λ                  L1 coefficient with relu (default 0.01; inputs are scaled so a token's centred
                          activation has unit mean squared norm)
  --latents N             number of latents (default 4 × the input width)
  --steps S               optimiser steps (default 1000)
  --batch-tokens B        tokens per step (default 1024)
  --lr LR                 Adam learning rate (default 0.15/√(input width); warm-up over the first 5 % of
                          steps, linear decay to zero over the last 20 %)
  --seed S                initialisation and data order (default 0)
  --seq-len N             tokens per window (default 64)
  --dead-tokens N         a latent that has not fired in N training tokens counts as dead (default 262144)
  --cache-mb N            keep the harvested activations in memory when the whole corpus fits in N MiB
                          (default 256): later epochs skip the model's forward pass; same result either way
  --save-dtype float32|float16  encoder and decoder weights in the file (default float32; float16 halves the
                          file, and the reported FVE is measured with the rounded weights)
  --checkpoint-every M    steps between checkpoints (default 50)
  --stop-after N          stop at step N with a checkpoint (train in slices; the same command without it resumes)
  --threads N             matrix products over N threads (default 2 where 2+ cores; 1 = one thread)

Interrupt with Ctrl-C (a checkpoint is written) and run the same command again to resume; the same result
comes out as from an uninterrupted run. A checkpoint made with other settings is refused.`;

/** The settings that determine the result: a checkpoint or finished file is reused only when all match. */
interface TrainingArgs {
  model: string;
  site: AutoencoderSite;
  layer: number;
  corpus: string;
  corpus_sha256: string;
  latents: number;
  activation: "topk" | "relu";
  k: number | null;
  l1: number | null;
  steps: number;
  batch_tokens: number;
  lr: number;
  seed: number;
  seq_len: number;
  dead_tokens: number;
  save_dtype: "float32" | "float16";
}

/** Settings added after files were first written, with the value those files were made with. */
const ARG_DEFAULTS: Partial<Record<keyof TrainingArgs, unknown>> = { save_dtype: "float32" };

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/**
 * One redrawn line on a terminal; otherwise a line every 10 s and at the end (logs stay short). With several
 * layers: the slowest layer's step, each layer's FVE, the mean L0 and the largest dead share.
 */
function progressBar(stream: NodeJS.WriteStream, steps: number, batchTokens: number, firstStep: number) {
  const started = Date.now();
  let lastDraw = 0;
  return (reports: readonly StepReport[], final = false) => {
    const now = Date.now();
    if (reports.length === 0 || (!final && now - lastDraw < (stream.isTTY ? 250 : 10_000))) return;
    lastDraw = now;
    const step = Math.min(...reports.map((r) => r.step));
    const seconds = (now - started) / 1000;
    const rate = seconds > 0 ? ((step - firstStep) * batchTokens) / seconds : 0;
    const eta = rate > 0 ? ((steps - step) * batchTokens) / rate : Number.POSITIVE_INFINITY;
    const width = 24;
    const filled = Math.min(width, Math.round((step / steps) * width));
    const mean = (f: (r: StepReport) => number) => reports.reduce((a, r) => a + f(r), 0) / reports.length;
    const line =
      `step ${step}/${steps} [${"#".repeat(filled)}${"-".repeat(width - filled)}] loss ${mean((r) => r.loss).toFixed(4)} ` +
      `fve ${reports.map((r) => r.fve.toFixed(3)).join("/")} L0 ${mean((r) => r.meanL0).toFixed(1)} ` +
      `dead ${(100 * Math.max(...reports.map((r) => r.deadShare))).toFixed(1)}% ` +
      `${Math.round(rate)} tok/s ETA ${formatDuration(eta)}`;
    stream.write(stream.isTTY ? `\r${line}\x1b[K${final ? "\n" : ""}` : `${line}\n`);
  };
}

function differences(a: TrainingArgs, b: Record<string, unknown>): string[] {
  const stored = (key: keyof TrainingArgs) => (key in b ? b[key] : ARG_DEFAULTS[key]);
  return (Object.keys(a) as (keyof TrainingArgs)[])
    .filter((key) => JSON.stringify(a[key]) !== JSON.stringify(stored(key)))
    .map((key) => `${key}: ${JSON.stringify(stored(key))} there, ${JSON.stringify(a[key])} now`);
}

function readMetadata(path: string): Record<string, string> {
  return parseSafetensorsHeader(new Uint8Array(readFileSync(path)), { name: path }).metadata;
}

function parseStoredArgs(text: string | undefined, path: string): Record<string, unknown> {
  try {
    const parsed: unknown = JSON.parse(text ?? "");
    if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed))
      return parsed as Record<string, unknown>;
  } catch {
    // reported below
  }
  throw new Error(
    `${path} was not written by tdb train-sae (no train_args); move it away or choose another --out`,
  );
}

/** Atomic: a crash mid-write leaves the previous file intact. */
function writeFileAtomic(path: string, bytes: Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, path);
}

export async function trainSaeCommand(rawArgv: string[]): Promise<number> {
  const argv = applyThreadsFlag(rawArgv);
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: "string" },
      site: { type: "string" },
      layer: { type: "string" },
      corpus: { type: "string" },
      out: { type: "string" },
      latents: { type: "string" },
      activation: { type: "string" },
      k: { type: "string" },
      l1: { type: "string" },
      steps: { type: "string" },
      "batch-tokens": { type: "string" },
      lr: { type: "string" },
      seed: { type: "string" },
      "seq-len": { type: "string" },
      "dead-tokens": { type: "string" },
      "cache-mb": { type: "string" },
      "checkpoint-every": { type: "string" },
      "stop-after": { type: "string" },
      "save-dtype": { type: "string" },
    },
    strict: true,
  });
  for (const name of ["model", "site", "layer", "corpus", "out"] as const) {
    if (values[name] === undefined) throw new UsageError(`--${name} is required\n\n${USAGE}`);
  }
  const site = values.site as string;
  if (!(AUTOENCODER_SITES as readonly string[]).includes(site)) {
    throw new UsageError(`--site must be one of ${AUTOENCODER_SITES.join(", ")}, got '${site}'`);
  }
  const saveDtype = values["save-dtype"] ?? "float32";
  if (saveDtype !== "float32" && saveDtype !== "float16") {
    throw new UsageError(`--save-dtype must be float32 or float16, got '${saveDtype}'`);
  }
  const activationName = values.activation ?? "topk";
  if (activationName !== "topk" && activationName !== "relu") {
    throw new UsageError(`--activation must be topk or relu, got '${activationName}'`);
  }
  if (activationName === "relu" && values.k !== undefined)
    throw new UsageError("--k applies to --activation topk");
  if (activationName === "topk" && values.l1 !== undefined)
    throw new UsageError("--l1 applies to --activation relu");
  const k = numberFlag("k", values.k, 32, true);
  const l1 = numberFlag("l1", values.l1, 0.01);
  const steps = numberFlag("steps", values.steps, 1000, true);
  const batchTokens = numberFlag("batch-tokens", values["batch-tokens"], 1024, true);
  const seed = numberFlag("seed", values.seed, 0, true);
  const seqLen = numberFlag("seq-len", values["seq-len"], 64, true);
  const deadTokens = numberFlag("dead-tokens", values["dead-tokens"], 262144, true);
  // Memory only: a cached harvest gives the same rows as a recomputed one, so it is not a training setting.
  const cacheMb = numberFlag("cache-mb", values["cache-mb"], 256, true);
  const checkpointEvery = numberFlag("checkpoint-every", values["checkpoint-every"], 50, true);
  const stopAfter = numberFlag("stop-after", values["stop-after"], Number.POSITIVE_INFINITY, true);
  if (k < 1) throw new UsageError("--k must be ≥ 1");
  if (!(l1 >= 0)) throw new UsageError("--l1 must be ≥ 0");
  if (steps < 1) throw new UsageError("--steps must be ≥ 1");
  if (batchTokens < 1) throw new UsageError("--batch-tokens must be ≥ 1");
  if (seed < 0) throw new UsageError("--seed must be ≥ 0");
  if (seqLen < 2) throw new UsageError("--seq-len must be ≥ 2");
  if (deadTokens < 1) throw new UsageError("--dead-tokens must be ≥ 1");
  if (checkpointEvery < 1) throw new UsageError("--checkpoint-every must be ≥ 1");
  if (stopAfter < 1) throw new UsageError("--stop-after must be ≥ 1");

  const out = resolve(values.out as string);
  mkdirSync(out, { recursive: true });
  const { model, tokenizer, dir } = await loadModel(values.model as string, {
    onProgress: createProgressBar(),
  });
  const layers = parseLayers(values.layer as string, model.config.nLayer);
  // One folder is one autoencoder family: every layer's file must attach at the same site.
  for (const file of readdirSync(out)) {
    const match = /^(\d+)\.safetensors$/.exec(file);
    if (!match || layers.includes(Number(match[1]))) continue;
    const other = readMetadata(join(out, file)).input;
    if (other !== undefined && other !== site) {
      throw new UsageError(`${out} holds ${other} autoencoders (${file}); use another --out for ${site}`);
    }
  }
  if (seqLen > model.config.nPositions) {
    throw new UsageError(`--seq-len ${seqLen} exceeds the model's context (${model.config.nPositions})`);
  }
  const corpus = tokenizeCorpus(readCorpus(values.corpus as string), tokenizer);
  const nInputs = site === "mlp_post_act" ? model.config.nInner : model.config.nEmbd;
  const latents = numberFlag("latents", values.latents, 4 * nInputs, true);
  if (latents < 1) throw new UsageError("--latents must be ≥ 1");
  const lr = numberFlag("lr", values.lr, 0.15 / Math.sqrt(nInputs));
  if (!(lr > 0)) throw new UsageError("--lr must be > 0");
  if (activationName === "topk" && k > latents) throw new UsageError(`--k ${k} exceeds --latents ${latents}`);
  const argsFor = (layer: number): TrainingArgs => ({
    model: dir,
    site: site as AutoencoderSite,
    layer,
    corpus: corpus.name,
    corpus_sha256: corpus.sha256,
    latents,
    activation: activationName,
    k: activationName === "topk" ? k : null,
    l1: activationName === "relu" ? l1 : null,
    steps,
    batch_tokens: batchTokens,
    lr,
    seed,
    seq_len: seqLen,
    dead_tokens: deadTokens,
    save_dtype: saveDtype,
  });
  const finalPath = (layer: number) => join(out, `${layer}.safetensors`);
  const checkpointPath = (layer: number) => join(out, `${layer}.checkpoint.safetensors`);

  // Layers already trained with these settings are skipped; other settings are refused.
  const pending: number[] = [];
  for (const layer of layers) {
    const path = finalPath(layer);
    if (!existsSync(path)) {
      pending.push(layer);
      continue;
    }
    const meta = readMetadata(path);
    const diff = differences(argsFor(layer), parseStoredArgs(meta.train_args, path));
    if (diff.length > 0) {
      throw new Error(
        `${path} already holds an autoencoder trained with other settings (${diff.join("; ")}); ` +
          "remove it or choose another --out",
      );
    }
    console.error(
      `${path} is already trained with these settings (held-out FVE ${meta.fve}, mean L0 ${meta.mean_l0}); nothing to do`,
    );
  }
  if (pending.length === 0) return 0;

  const source = new ActivationSource({
    model,
    site: site as AutoencoderSite,
    layers: pending,
    tokens: corpus.tokens,
    seqLen,
    seed,
    cacheBytes: cacheMb * 1024 * 1024,
  });
  const activation: SaeActivation = activationName === "topk" ? { kind: "topk", k } : { kind: "relu" };
  const options: SaeTrainingOptions = {
    nInputs,
    nLatents: latents,
    activation,
    l1: activationName === "relu" ? l1 : 0,
    lr,
    steps,
    batchRows: batchTokens,
    seed,
    deadTokens,
  };
  const trainingTokens = steps * batchTokens;
  const epochs = trainingTokens / (source.trainSequences.length * source.rowsPerSequence);
  const runs: { layer: number; trainer: SaeTrainer; metadata: Record<string, string> }[] = [];
  for (const layer of pending) {
    const path = checkpointPath(layer);
    const metadata = { train_args: JSON.stringify(argsFor(layer)) };
    if (existsSync(path)) {
      const restored = SaeTrainer.fromCheckpoint(new Uint8Array(readFileSync(path)), path);
      const diff = differences(argsFor(layer), parseStoredArgs(restored.metadata.train_args, path));
      if (diff.length > 0) {
        throw new Error(
          `${path} was made with other settings (${diff.join("; ")}); run with the same settings to ` +
            "resume, or delete the checkpoint to start over",
        );
      }
      console.error(`resuming from ${path}: step ${restored.trainer.step} of ${steps}`);
      runs.push({ layer, trainer: restored.trainer, metadata });
    } else {
      const sampleRows = Math.min(source.rowsPerRound, 16384);
      const sample = source.trainingRows(0, sampleRows, undefined, layer);
      runs.push({ layer, trainer: SaeTrainer.initialize(options, sample, sampleRows), metadata });
    }
  }
  const kind = activationName === "topk" ? `TopK (k=${k})` : `ReLU (λ=${l1})`;
  console.error(
    `training ${kind} autoencoders: ${nInputs} → ${latents} latents on ${site} of layer${pending.length > 1 ? "s" : ""} ` +
      `${pending.join(", ")}; ${corpus.tokens.length} corpus tokens, ${source.trainSequences.length} training ` +
      `windows (${epochs.toFixed(2)} epochs over ${trainingTokens} tokens), ${source.heldOutSequences.length} held out`,
  );

  const saveCheckpoints = () => {
    for (const run of runs) {
      if (!run.trainer.finished)
        writeFileAtomic(checkpointPath(run.layer), run.trainer.checkpoint(run.metadata));
    }
  };
  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    const firstStep = Math.min(...runs.map((r) => r.trainer.step));
    const draw = progressBar(process.stderr, steps, batchTokens, firstStep);
    const batch = new Float32Array(batchTokens * nInputs);
    const reports = new Map<number, StepReport>();
    const step = () => Math.min(...runs.map((r) => r.trainer.step));
    while (runs.some((r) => !r.trainer.finished)) {
      if (interrupted || step() >= stopAfter) {
        saveCheckpoints();
        if (reports.size > 0) draw([...reports.values()], true);
        const what = interrupted ? "interrupted" : "stopped (--stop-after)";
        console.error(
          `${what} at step ${step()} of ${steps}; checkpoint${runs.length > 1 ? "s" : ""} saved in ${out}, ` +
            "run the same command to resume",
        );
        return interrupted ? 130 : 0;
      }
      // Layers move in step; one that resumed further ahead waits for the others.
      const current = step();
      for (const run of runs) {
        if (run.trainer.finished || run.trainer.step !== current) continue;
        source.trainingRows(current * batchTokens, batchTokens, batch, run.layer);
        reports.set(run.layer, run.trainer.trainStep(batch, batchTokens));
      }
      const now = step();
      draw(
        [...reports.values()],
        runs.every((r) => r.trainer.finished),
      );
      if (now % checkpointEvery === 0 && now !== current && runs.some((r) => !r.trainer.finished))
        saveCheckpoints();
      // Let signal handlers run between steps.
      await new Promise<void>((done) => setImmediate(done));
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }

  for (const { layer, trainer, metadata: base } of runs) {
    if (saveDtype === "float16") trainer.roundWeightsToFloat16();
    const evaluation = trainer.evaluation();
    for (const group of source.heldOutRows(4096, layer)) evaluation.add(group.data, group.rows);
    const held = evaluation.result();
    const deadShare = trainer.deadShare();
    const stateDict = trainer.openAiStateDict({ weights: saveDtype === "float16" ? "F16" : "F32" });
    const frequency = stateDict.find(([name]) => name === "latents_activation_frequency")?.[1].data;
    let neverFired = 0;
    if (frequency) for (const f of frequency) if (Number(f) < 1e-8) neverFired++;
    const metadata: Record<string, string> = {
      format: "pt",
      activation: activationName === "topk" ? "TopK" : "ReLU",
      ...(activationName === "topk"
        ? {
            k: String(k),
            postact_fn: "ReLU",
            activation_state_dict: JSON.stringify({ k, postact_fn: "ReLU" }),
          }
        : { l1_coefficient: String(l1) }),
      input: site,
      layer: String(layer),
      n_latents: String(latents),
      fve: held.fve.toFixed(4),
      mean_l0: held.meanL0.toFixed(2),
      dead_share: deadShare.toFixed(4),
      dead_latents_at_end: String(neverFired),
      held_out_tokens: String(held.rows),
      training_tokens: String(trainer.tokensSeen),
      trained_on: corpus.name,
      trained_with: "tdb train-sae",
      ...base,
    };
    writeFileAtomic(finalPath(layer), serializeSafetensors(stateDict, metadata));
    rmSync(checkpointPath(layer), { force: true });
    console.error(
      `wrote ${finalPath(layer)}: held-out (${held.rows} tokens) FVE ${held.fve.toFixed(4)}, mean L0 ` +
        `${held.meanL0.toFixed(2)}; dead latents ${(100 * deadShare).toFixed(1)}% (not fired in the last ` +
        `${Math.min(deadTokens, trainer.tokensSeen)} training tokens), ${neverFired} never fired in the second ` +
        "half of training (moved to the end)",
    );
  }
  return 0;
}

/** "3", "0,2,3" or "all". */
function parseLayers(text: string, nLayer: number): number[] {
  const layers =
    text === "all"
      ? Array.from({ length: nLayer }, (_, i) => i)
      : text.split(",").map((part) => numberFlag("layer", part.trim(), 0, true));
  for (const layer of layers) {
    if (layer < 0 || layer >= nLayer) {
      throw new UsageError(`--layer ${layer} does not exist: the model has layers 0–${nLayer - 1}`);
    }
  }
  if (new Set(layers).size !== layers.length) throw new UsageError(`--layer repeats a layer: ${text}`);
  return layers;
}
