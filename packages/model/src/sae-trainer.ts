/**
 * Sparse-autoencoder training (OpenAI's recipe, reduced to what fits a few CPU minutes):
 * - inputs are scaled by one constant so a token's centred activation has unit mean squared norm (the scale is
 *   folded back into the biases on export, so the saved autoencoder reads raw activations);
 * - b_pre starts at the geometric median of a sample; decoder columns start as random unit vectors and the
 *   encoder as their transpose; b_lat at zero;
 * - Adam (β 0.9/0.999, ε 6.25e-10) with linear warm-up over the first 5 % of steps and linear decay to zero
 *   over the last 20 %;
 * - decoder columns stay unit-norm: the gradient's component along each column is removed before the step and
 *   the columns are renormalised after it;
 * - a latent is dead when it has not fired in the last `deadTokens` training tokens (or, earlier in training,
 *   not at all). AuxK is not implemented.
 * Activation frequencies and mean squares in the exported file are measured over the second half of training.
 * On export, latents that never fired there are moved to the end (TDB drops dead latents from the end).
 */
import { SparseAutoencoder } from "./autoencoder.js";
import { WeightFormatError } from "./formats/errors.js";
import { parseSafetensorsHeader } from "./formats/safetensors.js";
import {
  decodeFloat64,
  rawTensorBytes,
  roundToFloat16,
  serializeSafetensors,
  type WritableTensor,
} from "./formats/safetensors-write.js";
import { decodeContiguous } from "./formats/tensor-data.js";
import { seededRandom } from "./random.js";
import { mixSeed } from "./sae-activations.js";
import { SaeSparseKernel } from "./sae-kernel.js";
import {
  allocateSaeParameters,
  SAE_CHUNK_ROWS,
  type SaeActivation,
  SaeObjective,
  type SaeParameters,
} from "./sae-objective.js";

export interface SaeTrainingOptions {
  nInputs: number;
  nLatents: number;
  activation: SaeActivation;
  /** L1 coefficient (ReLU only), in the scaled units described above. */
  l1: number;
  lr: number;
  steps: number;
  /** Rows (tokens) per step. */
  batchRows: number;
  seed: number;
  /** A latent that has not fired in this many training tokens counts as dead (default 262144). */
  deadTokens?: number;
}

export interface StepReport {
  /** Steps completed, this one included. */
  step: number;
  loss: number;
  /** On this batch, before the update. */
  fve: number;
  meanL0: number;
  deadShare: number;
  lr: number;
}

export interface EvaluationResult {
  rows: number;
  /** 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖² over the rows, x̄ their mean. */
  fve: number;
  meanL0: number;
  /** Latents that fired on at least one of the rows. */
  firedLatents: number;
}

const PARAMETER_NAMES = ["encoder", "decoder", "latentBias", "preBias"] as const;
const ADAM_BETA1 = 0.9;
const ADAM_BETA2 = 0.999;
const ADAM_EPS = 6.25e-10;
const CHECKPOINT_KIND = "tdb-sae-checkpoint-v1";

export class SaeTrainer {
  readonly options: Required<SaeTrainingOptions>;
  readonly objective: SaeObjective;
  readonly params: SaeParameters;
  /** Multiplies raw inputs before they enter the autoencoder. */
  readonly scale: number;
  /** The data mean, scaled (the loss normaliser's μ). */
  readonly mean: Float32Array;
  /** Completed steps. */
  step = 0;
  tokensSeen = 0;
  /** tokensSeen at the end of the step a latent last fired in; −1 when it never has. */
  readonly lastFired: Float64Array;
  readonly windowFires: Float64Array;
  readonly windowSumSquares: Float64Array;
  windowTokens = 0;
  private readonly grads: SaeParameters;
  private readonly adamM: SaeParameters;
  private readonly adamV: SaeParameters;
  private scaledBatch = new Float32Array(0);
  /** The kernel holding the weights, gradients and Adam moments (TopK with WebAssembly), else null. */
  private readonly kernel: SaeSparseKernel | null;

  private constructor(options: SaeTrainingOptions, scale: number, mean: Float32Array) {
    this.options = { ...options, deadTokens: options.deadTokens ?? 262144 };
    const { nInputs: n, nLatents: m, steps, batchRows, lr } = this.options;
    if (!(Number.isInteger(steps) && steps > 0))
      throw new RangeError(`steps must be a positive whole number`);
    if (!(Number.isInteger(batchRows) && batchRows > 0))
      throw new RangeError(`the batch must hold a positive whole number of tokens`);
    if (!(lr > 0 && Number.isFinite(lr))) throw new RangeError(`the learning rate must be positive`);
    if (!(this.options.l1 >= 0)) throw new RangeError(`the L1 coefficient must be ≥ 0`);
    const config = { nInputs: n, nLatents: m, activation: options.activation, l1: options.l1 };
    // TopK: weights, gradients and Adam moments live in the WebAssembly kernel's memory, where the whole step runs.
    const act = options.activation;
    const kernel =
      act.kind === "topk"
        ? SaeSparseKernel.create(n, m, Math.min(act.k, m), SAE_CHUNK_ROWS, { training: true })
        : null;
    const blocks = kernel?.training;
    if (kernel && blocks) {
      this.kernel = kernel;
      this.objective = new SaeObjective(config, undefined, kernel);
      this.params = {
        encoder: blocks.E,
        decoder: kernel.D,
        latentBias: new Float32Array(m),
        preBias: new Float32Array(n),
      };
      this.grads = {
        encoder: kernel.gE,
        decoder: kernel.gD,
        latentBias: new Float32Array(m),
        preBias: new Float32Array(n),
      };
      this.adamM = {
        encoder: blocks.mE,
        decoder: blocks.mD,
        latentBias: new Float32Array(m),
        preBias: new Float32Array(n),
      };
      this.adamV = {
        encoder: blocks.vE,
        decoder: blocks.vD,
        latentBias: new Float32Array(m),
        preBias: new Float32Array(n),
      };
    } else {
      this.kernel = null;
      this.objective = new SaeObjective(config, undefined, kernel ?? undefined);
      this.params = allocateSaeParameters(n, m, { activation: act });
      this.grads = allocateSaeParameters(n, m, { activation: act, gradients: true });
      this.adamM = plainParameters(n, m);
      this.adamV = plainParameters(n, m);
    }
    this.scale = scale;
    this.mean = mean;
    this.lastFired = new Float64Array(m).fill(-1);
    this.windowFires = new Float64Array(m);
    this.windowSumSquares = new Float64Array(m);
  }

  /** A fresh autoencoder initialised from a sample of raw activations [rows, nInputs]. */
  static initialize(options: SaeTrainingOptions, sample: Float32Array, rows: number): SaeTrainer {
    const n = options.nInputs;
    const m = options.nLatents;
    if (rows < 1 || sample.length < rows * n)
      throw new RangeError("initialisation needs a sample of activations");
    const rawMean = new Float64Array(n);
    for (let t = 0; t < rows; t++) for (let i = 0; i < n; i++) rawMean[i] += sample[t * n + i];
    for (let i = 0; i < n; i++) rawMean[i] /= rows;
    let deviation = 0;
    for (let t = 0; t < rows; t++) {
      for (let i = 0; i < n; i++) deviation += (sample[t * n + i] - rawMean[i]) ** 2;
    }
    deviation /= rows;
    const scale = deviation > 0 ? 1 / Math.sqrt(deviation) : 1;
    const trainer = new SaeTrainer(
      options,
      scale,
      Float32Array.from(rawMean, (v) => v * scale),
    );

    const p = trainer.params;
    const rand = seededRandom(mixSeed(options.seed, 0x1a17));
    const normal = gaussian(rand);
    for (let j = 0; j < m; j++) {
      const row = p.decoder.subarray(j * n, (j + 1) * n);
      for (let i = 0; i < n; i++) row[i] = normal();
      normalizeRow(row);
    }
    p.encoder.set(p.decoder);
    const scaled = Float32Array.from(sample.subarray(0, rows * n), (v) => v * scale);
    p.preBias.set(geometricMedian(scaled, Math.min(rows, 4096), n, trainer.mean));
    return trainer;
  }

  get finished(): boolean {
    return this.step >= this.options.steps;
  }

  learningRate(step: number): number {
    const { lr, steps } = this.options;
    const warmup = Math.max(1, Math.round(0.05 * steps));
    const decay = Math.round(0.2 * steps);
    let f = Math.min(1, (step + 1) / warmup);
    if (decay > 0 && step >= steps - decay) f *= (steps - step) / decay;
    return lr * f;
  }

  /** The share of latents that are dead now (see the module comment). */
  deadShare(): number {
    const window = Math.min(this.options.deadTokens, this.tokensSeen);
    const threshold = this.tokensSeen - window;
    let dead = 0;
    for (const t of this.lastFired) if (t <= threshold) dead++;
    return dead / this.options.nLatents;
  }

  /** One Adam step on a batch of raw activations [rows, nInputs]. */
  trainStep(batch: Float32Array, rows: number): StepReport {
    if (this.finished) throw new Error(`training already finished (${this.options.steps} steps)`);
    const { nInputs: n, nLatents: m } = this.options;
    if (this.scaledBatch.length < rows * n) this.scaledBatch = new Float32Array(rows * n);
    const x = this.scaledBatch;
    for (let i = 0; i < rows * n; i++) x[i] = batch[i] * this.scale;
    const statistics = { fires: new Float64Array(m), sumSquares: new Float64Array(m) };
    const result = this.objective.evaluate(this.params, x, rows, {
      mean: this.mean,
      gradients: this.grads,
      statistics,
    });
    if (!Number.isFinite(result.loss)) {
      throw new Error(`the loss became ${result.loss} at step ${this.step + 1}; try a smaller learning rate`);
    }
    this.tokensSeen += rows;
    const inWindow = this.step >= Math.floor(this.options.steps / 2);
    for (let j = 0; j < m; j++) {
      if (statistics.fires[j] > 0) this.lastFired[j] = this.tokensSeen;
      if (inWindow) {
        this.windowFires[j] += statistics.fires[j];
        this.windowSumSquares[j] += statistics.sumSquares[j];
      }
    }
    if (inWindow) this.windowTokens += rows;

    const lr = this.learningRate(this.step);
    const t = this.step + 1;
    const c1 = 1 / (1 - ADAM_BETA1 ** t);
    const c2 = 1 / (1 - ADAM_BETA2 ** t);
    const K = this.kernel;
    if (K) {
      const ops = K.exports;
      const { at } = K;
      ops.removeParallel(at.gD, at.D, m, n);
      for (const [p, g, mo, v] of [
        [at.E, at.gE, at.mE, at.vE],
        [at.D, at.gD, at.mD, at.vD],
      ]) {
        ops.adam(p, g, mo, v, m * n, lr, c1, c2, ADAM_BETA1, ADAM_BETA2, ADAM_EPS);
      }
      for (const name of ["latentBias", "preBias"] as const) {
        adamUpdate(this.params[name], this.grads[name], this.adamM[name], this.adamV[name], lr, c1, c2);
      }
      ops.normalizeRows(at.D, m, n);
    } else {
      removeParallelComponent(this.grads.decoder, this.params.decoder, m, n);
      for (const name of PARAMETER_NAMES) {
        adamUpdate(this.params[name], this.grads[name], this.adamM[name], this.adamV[name], lr, c1, c2);
      }
      for (let j = 0; j < m; j++) normalizeRow(this.params.decoder.subarray(j * n, (j + 1) * n));
    }
    this.step++;
    return {
      step: this.step,
      loss: result.loss,
      fve: result.fve,
      meanL0: result.meanL0,
      deadShare: this.deadShare(),
      lr,
    };
  }

  /** Accumulates an evaluation over groups of raw rows. */
  evaluation(): {
    add(data: Float32Array, rows: number): void;
    result(): EvaluationResult;
  } {
    const { nInputs: n, nLatents: m } = this.options;
    const sum = new Float64Array(n);
    let sumSquares = 0;
    let sse = 0;
    let l0 = 0;
    let rowsSeen = 0;
    const statistics = { fires: new Float64Array(m), sumSquares: new Float64Array(m) };
    return {
      add: (data, rows) => {
        const x = Float32Array.from(data.subarray(0, rows * n), (v) => v * this.scale);
        const r = this.objective.evaluate(this.params, x, rows, { mean: this.mean, statistics });
        sse += r.sumSquaredError;
        l0 += r.meanL0 * rows;
        rowsSeen += rows;
        for (let t = 0; t < rows; t++) {
          for (let i = 0; i < n; i++) {
            const v = x[t * n + i];
            sum[i] += v;
            sumSquares += v * v;
          }
        }
      },
      result: () => {
        let meanNorm = 0;
        for (let i = 0; i < n; i++) meanNorm += (sum[i] / rowsSeen) ** 2;
        const variance = sumSquares - rowsSeen * meanNorm;
        let fired = 0;
        for (const f of statistics.fires) if (f > 0) fired++;
        return {
          rows: rowsSeen,
          fve: variance > 0 ? 1 - sse / variance : 0,
          meanL0: rowsSeen > 0 ? l0 / rowsSeen : 0,
          firedLatents: fired,
        };
      },
    };
  }

  /** Export order: latents that fired in the statistics window first (in training order), then the rest. */
  exportOrder(): Int32Array {
    const m = this.options.nLatents;
    const alive = (j: number) => (this.windowTokens > 0 ? this.windowFires[j] > 0 : this.lastFired[j] >= 0);
    const order: number[] = [];
    for (let j = 0; j < m; j++) if (alive(j)) order.push(j);
    for (let j = 0; j < m; j++) if (!alive(j)) order.push(j);
    return Int32Array.from(order);
  }

  /**
   * OpenAI's state dict (pre_bias, encoder.weight [nLatents, nInputs], latent_bias, decoder.weight
   * [nInputs, nLatents], latents_activation_frequency, latents_mean_square, stats_last_nonzero) for raw inputs,
   * latents in export order.
   */
  openAiStateDict(options: { weights?: "F32" | "F16" } = {}): [string, WritableTensor][] {
    const weights = options.weights ?? "F32";
    const { nInputs: n, nLatents: m } = this.options;
    const order = this.exportOrder();
    const s = this.scale;
    const p = this.params;
    const encoder = new Float32Array(m * n);
    const decoder = new Float32Array(n * m);
    const latentBias = new Float32Array(m);
    const frequency = new Float32Array(m);
    const meanSquare = new Float32Array(m);
    const lastNonzero: number[] = [];
    const windowTokens = this.windowTokens;
    order.forEach((j, newIndex) => {
      encoder.set(p.encoder.subarray(j * n, (j + 1) * n), newIndex * n);
      for (let i = 0; i < n; i++) decoder[i * m + newIndex] = p.decoder[j * n + i];
      latentBias[newIndex] = p.latentBias[j] / s;
      frequency[newIndex] = windowTokens > 0 ? this.windowFires[j] / windowTokens : 0;
      meanSquare[newIndex] = windowTokens > 0 ? this.windowSumSquares[j] / windowTokens / (s * s) : 0;
      // OpenAI counts forward passes (steps) since the latent last fired.
      const since = this.lastFired[j] < 0 ? this.tokensSeen : this.tokensSeen - this.lastFired[j];
      lastNonzero.push(Math.round(since / this.options.batchRows));
    });
    return [
      ["pre_bias", { dtype: "F32", shape: [n], data: Float32Array.from(p.preBias, (v) => v / s) }],
      ["encoder.weight", { dtype: weights, shape: [m, n], data: encoder }],
      ["latent_bias", { dtype: "F32", shape: [m], data: latentBias }],
      ["decoder.weight", { dtype: weights, shape: [n, m], data: decoder }],
      ["latents_activation_frequency", { dtype: "F32", shape: [m], data: frequency }],
      ["latents_mean_square", { dtype: "F32", shape: [m], data: meanSquare }],
      ["stats_last_nonzero", { dtype: "I64", shape: [m], data: lastNonzero }],
    ];
  }

  /**
   * Rounds the encoder and decoder weights to float16 precision in place, so that evaluating afterwards measures
   * what a file with F16 weights holds. Only once training is over.
   */
  roundWeightsToFloat16(): void {
    if (!this.finished) throw new Error("round the weights only after training");
    roundToFloat16(this.params.encoder);
    roundToFloat16(this.params.decoder);
  }

  /** The trained autoencoder for raw inputs, latents in export order. */
  toSparseAutoencoder(): SparseAutoencoder {
    const act = this.options.activation;
    return SparseAutoencoder.fromOpenAiStateDict(
      new Map(
        this.openAiStateDict().map(([name, t]) => [
          name,
          {
            shape: t.shape,
            data:
              t.data instanceof BigInt64Array ? Float32Array.from(t.data, Number) : Float32Array.from(t.data),
          },
        ]),
      ),
      act,
    );
  }

  /** Latents of raw rows [rows, nInputs] in raw units and export order, computed the way training does. */
  encode(data: Float32Array, rows: number): Float32Array {
    const { nInputs: n, nLatents: m, activation } = this.options;
    const order = this.exportOrder();
    const out = new Float32Array(rows * m);
    const pre = new Float32Array(m);
    const picked = new Int32Array(activation.kind === "topk" ? Math.min(activation.k, m) : 0);
    for (let t = 0; t < rows; t++) {
      for (let j = 0; j < m; j++) {
        let v = this.params.latentBias[j];
        for (let i = 0; i < n; i++) {
          v += (data[t * n + i] * this.scale - this.params.preBias[i]) * this.params.encoder[j * n + i];
        }
        pre[j] = v;
      }
      const z = new Float32Array(m);
      if (activation.kind === "topk") {
        selectTopKInto(pre, picked);
        for (const j of picked) z[j] = Math.max(pre[j], 0);
      } else {
        for (let j = 0; j < m; j++) z[j] = Math.max(pre[j], 0);
      }
      order.forEach((j, newIndex) => {
        out[t * m + newIndex] = z[j] / this.scale;
      });
    }
    return out;
  }

  /** Everything needed to continue exactly where training stopped, plus the caller's string metadata. */
  checkpoint(metadata: Readonly<Record<string, string>> = {}): Uint8Array {
    const { nInputs: n, nLatents: m } = this.options;
    const tensors: [string, WritableTensor][] = [];
    for (const name of PARAMETER_NAMES) {
      const shape = name === "encoder" || name === "decoder" ? [m, n] : name === "latentBias" ? [m] : [n];
      tensors.push([name, { dtype: "F32", shape, data: this.params[name] }]);
      tensors.push([`adam_m.${name}`, { dtype: "F32", shape, data: this.adamM[name] }]);
      tensors.push([`adam_v.${name}`, { dtype: "F32", shape, data: this.adamV[name] }]);
    }
    tensors.push(["mean", { dtype: "F32", shape: [n], data: this.mean }]);
    tensors.push(["last_fired", { dtype: "F64", shape: [m], data: this.lastFired }]);
    tensors.push(["window_fires", { dtype: "F64", shape: [m], data: this.windowFires }]);
    tensors.push(["window_sum_squares", { dtype: "F64", shape: [m], data: this.windowSumSquares }]);
    return serializeSafetensors(tensors, {
      ...metadata,
      kind: CHECKPOINT_KIND,
      options: JSON.stringify(this.options),
      scale: JSON.stringify(this.scale),
      step: String(this.step),
      tokens_seen: String(this.tokensSeen),
      window_tokens: String(this.windowTokens),
    });
  }

  /** Reads a checkpoint; `metadata` is everything the file's `__metadata__` holds. */
  static fromCheckpoint(
    bytes: Uint8Array,
    name = "checkpoint",
  ): { trainer: SaeTrainer; metadata: Record<string, string> } {
    const header = parseSafetensorsHeader(bytes, { name });
    const meta = header.metadata;
    if (meta.kind !== CHECKPOINT_KIND)
      throw new WeightFormatError(`${name}: not an autoencoder training checkpoint`);
    const options = JSON.parse(meta.options) as SaeTrainingOptions;
    const tensor = (key: string, count: number) => {
      const entry = header.tensors.get(key);
      if (!entry) throw new WeightFormatError(`${name}: missing tensor '${key}'`);
      const raw = rawTensorBytes(bytes, header.dataStart, entry.dataOffsets);
      const data =
        entry.dtype === "F64" ? decodeFloat64(raw) : decodeContiguous(raw, entry.dtype, count).slice();
      if (data.length !== count) throw new WeightFormatError(`${name}: tensor '${key}' has the wrong size`);
      return data;
    };
    const { nInputs: n, nLatents: m } = options;
    const trainer = new SaeTrainer(
      options,
      JSON.parse(meta.scale) as number,
      Float32Array.from(tensor("mean", n)),
    );
    for (const key of PARAMETER_NAMES) {
      const count = key === "encoder" || key === "decoder" ? m * n : key === "latentBias" ? m : n;
      trainer.params[key].set(tensor(key, count));
      trainer.adamM[key].set(tensor(`adam_m.${key}`, count));
      trainer.adamV[key].set(tensor(`adam_v.${key}`, count));
    }
    trainer.lastFired.set(tensor("last_fired", m));
    trainer.windowFires.set(tensor("window_fires", m));
    trainer.windowSumSquares.set(tensor("window_sum_squares", m));
    trainer.step = Number(meta.step);
    trainer.tokensSeen = Number(meta.tokens_seen);
    trainer.windowTokens = Number(meta.window_tokens);
    return { trainer, metadata: meta };
  }
}

function plainParameters(n: number, m: number): SaeParameters {
  return {
    encoder: new Float32Array(m * n),
    decoder: new Float32Array(m * n),
    latentBias: new Float32Array(m),
    preBias: new Float32Array(n),
  };
}

function adamUpdate(
  p: Float32Array,
  g: Float32Array,
  m: Float32Array,
  v: Float32Array,
  lr: number,
  c1: number,
  c2: number,
): void {
  for (let i = 0; i < p.length; i++) {
    const gi = g[i];
    const mi = ADAM_BETA1 * m[i] + (1 - ADAM_BETA1) * gi;
    const vi = ADAM_BETA2 * v[i] + (1 - ADAM_BETA2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] -= (lr * mi * c1) / (Math.sqrt(vi * c2) + ADAM_EPS);
  }
}

/** g_j ← g_j − (g_j·d_j) d_j for unit rows d_j: the step then does not change the row's norm to first order. */
function removeParallelComponent(grad: Float32Array, rows: Float32Array, m: number, n: number): void {
  for (let j = 0; j < m; j++) {
    const o = j * n;
    let dot = 0;
    for (let i = 0; i < n; i++) dot += grad[o + i] * rows[o + i];
    if (dot === 0) continue;
    for (let i = 0; i < n; i++) grad[o + i] -= dot * rows[o + i];
  }
}

function normalizeRow(row: Float32Array): void {
  let s = 0;
  for (let i = 0; i < row.length; i++) s += row[i] * row[i];
  if (s === 0) return;
  const f = 1 / Math.sqrt(s);
  for (let i = 0; i < row.length; i++) row[i] *= f;
}

function gaussian(rand: () => number): () => number {
  return () => {
    const u = 1 - rand();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
  };
}

/** Weiszfeld's iteration, started at `start`. */
function geometricMedian(x: Float32Array, rows: number, n: number, start: Float32Array): Float32Array {
  const y = Float64Array.from(start);
  const next = new Float64Array(n);
  for (let iteration = 0; iteration < 50; iteration++) {
    next.fill(0);
    let weights = 0;
    for (let t = 0; t < rows; t++) {
      let d = 0;
      for (let i = 0; i < n; i++) d += (x[t * n + i] - y[i]) ** 2;
      const w = 1 / Math.max(Math.sqrt(d), 1e-8);
      weights += w;
      for (let i = 0; i < n; i++) next[i] += w * x[t * n + i];
    }
    let moved = 0;
    for (let i = 0; i < n; i++) {
      const v = next[i] / weights;
      moved += (v - y[i]) ** 2;
      y[i] = v;
    }
    if (moved < 1e-10) break;
  }
  return Float32Array.from(y);
}

function selectTopKInto(pre: Float32Array, out: Int32Array): void {
  const idx = Array.from(pre.keys());
  idx.sort((a, b) => pre[b] - pre[a] || a - b);
  for (let a = 0; a < out.length; a++) out[a] = idx[a];
}
