/**
 * The training objective of a sparse autoencoder (OpenAI's formulation) with a hand-written backward pass.
 *
 *   pre = (x − b_pre)·W_encᵀ + b_lat,   z = TopK_k(pre)⁺ or ReLU(pre),   x̂ = z·D + b_pre
 *   loss = Σ_t ‖x_t − x̂_t‖² / Σ_t ‖x_t − μ‖²  +  λ · (1/B) Σ_t Σ_j z_tj ‖D_j‖     (the L1 term for ReLU only)
 *
 * D is kept as [nLatents, nInputs] (one row per decoder column, i.e. OpenAI's decoder.weight transposed) so the
 * sparse TopK loops read contiguous rows. For TopK only the k selected entries carry gradient, so everything
 * but the encoder product is done on those entries alone; ReLU is dense and uses the GEMM (tn for weight
 * gradients). Rows are processed in chunks to bound the scratch memory.
 */
import { allocateF32, defaultGemm, type Gemm } from "@tdb/tensor";
import { SaeSparseKernel } from "./sae-kernel.js";

export type SaeActivation = { kind: "relu" } | { kind: "topk"; k: number };

export interface SaeParameters {
  /** [nLatents, nInputs] */
  encoder: Float32Array;
  /** [nLatents, nInputs]: row j is decoder column j (OpenAI's decoder.weight is its transpose). */
  decoder: Float32Array;
  /** [nLatents] */
  latentBias: Float32Array;
  /** [nInputs] */
  preBias: Float32Array;
}

export interface SaeObjectiveConfig {
  nInputs: number;
  nLatents: number;
  activation: SaeActivation;
  /** L1 coefficient (ReLU only; ignored for TopK). */
  l1: number;
  /**
   * TopK's sparse loops: "auto" (default) runs them in the WebAssembly SIMD kernel where it can run, "javascript"
   * always in JavaScript (the two differ only in floating-point summation order).
   */
  kernel?: "auto" | "javascript";
}

/** Per-latent firing statistics to accumulate into (counts and Σz² over the rows seen). */
export interface LatentStatistics {
  fires: Float64Array;
  sumSquares: Float64Array;
}

export interface ObjectiveResult {
  loss: number;
  /** Σ_t ‖x_t − x̂_t‖² */
  sumSquaredError: number;
  /** Σ_t ‖x_t − μ‖² (the normaliser) */
  sumSquaredDeviation: number;
  /** 1 − sumSquaredError / sumSquaredDeviation */
  fve: number;
  /** Mean number of non-zero latents per row. */
  meanL0: number;
  /** Mean Σ_j z_j ‖D_j‖ per row. */
  meanL1: number;
}

export interface ObjectiveOptions {
  /** μ in the normaliser; default: the batch's own mean. */
  mean?: Float32Array;
  /** Filled with the gradients of the loss (overwritten, same shapes as the parameters). */
  gradients?: SaeParameters;
  /** Accumulates how often each latent fired (z > 0) and its Σz². */
  statistics?: LatentStatistics;
}

/** Rows per chunk: bounds the scratch memory ([chunk, nLatents] pre-activations). */
export const SAE_CHUNK_ROWS = 512;
const CHUNK_ROWS = SAE_CHUNK_ROWS;

/**
 * Zeroed parameters (or gradients). Arrays the GEMM reads or writes live in WebAssembly memory; TopK's decoder
 * and gradients are only touched by JavaScript loops, which run faster on plain arrays.
 */
export function allocateSaeParameters(
  nInputs: number,
  nLatents: number,
  use: { activation: SaeActivation; gradients?: boolean } = { activation: { kind: "relu" } },
): SaeParameters {
  const dense = use.activation.kind === "relu";
  const wasm = (size: number) => allocateF32(size);
  const plain = (size: number) => new Float32Array(size);
  return {
    encoder: (dense || !use.gradients ? wasm : plain)(nLatents * nInputs),
    decoder: (dense ? wasm : plain)(nLatents * nInputs),
    latentBias: new Float32Array(nLatents),
    preBias: new Float32Array(nInputs),
  };
}

/** Writes into `out` the indices of the k largest values (ties: the lower index wins), largest first. */
export function selectTopK(
  values: Float32Array,
  offset: number,
  length: number,
  k: number,
  out: Int32Array,
): void {
  // A min-heap of the best k so far, rooted at the worst (smallest value; on ties the higher index).
  let size = 0;
  const worse = (a: number, b: number) => {
    const va = values[offset + a];
    const vb = values[offset + b];
    return va < vb || (va === vb && a > b);
  };
  const siftDown = (start: number) => {
    let i = start;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= size) return;
      const r = l + 1;
      const c = r < size && worse(out[r], out[l]) ? r : l;
      if (!worse(out[c], out[i])) return;
      const t = out[c];
      out[c] = out[i];
      out[i] = t;
      i = c;
    }
  };
  for (let j = 0; j < length; j++) {
    if (size < k) {
      let i = size++;
      out[i] = j;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (!worse(out[i], out[p])) break;
        const t = out[p];
        out[p] = out[i];
        out[i] = t;
        i = p;
      }
    } else if (values[offset + j] > values[offset + out[0]]) {
      out[0] = j;
      siftDown(0);
    }
  }
  // Heap-sort in place: repeatedly move the worst to the end.
  for (let end = size - 1; end > 0; end--) {
    const t = out[0];
    out[0] = out[end];
    out[end] = t;
    size = end;
    siftDown(0);
  }
}

/**
 * Reused plain buffers. JavaScript loops read plain arrays about twice as fast as WebAssembly's shared memory;
 * the GEMM copies such operands in and out, which costs little next to the product itself.
 */
class Scratch {
  private readonly arrays = new Map<string, Float32Array>();
  get(name: string, length: number): Float32Array {
    let a = this.arrays.get(name);
    if (!a || a.length < length) {
      a = new Float32Array(length);
      this.arrays.set(name, a);
    }
    return a;
  }
}

/** Computes the loss (and optionally its gradients) on `rows` inputs x [rows, nInputs]. */
export class SaeObjective {
  readonly config: SaeObjectiveConfig;
  private readonly gemm: Gemm;
  private readonly scratch = new Scratch();
  private kernel: SaeSparseKernel | null | undefined;

  /** `kernel`: a TopK kernel instance to use (sized for this config and SAE_CHUNK_ROWS rows). */
  constructor(config: SaeObjectiveConfig, gemm: Gemm = defaultGemm(), kernel?: SaeSparseKernel) {
    const { nInputs, nLatents, activation } = config;
    if (!(Number.isInteger(nInputs) && nInputs > 0 && Number.isInteger(nLatents) && nLatents > 0)) {
      throw new RangeError(`autoencoder sizes must be positive whole numbers, got ${nInputs}×${nLatents}`);
    }
    if (activation.kind === "topk" && !(Number.isInteger(activation.k) && activation.k > 0)) {
      throw new RangeError(`TopK needs a positive whole k, got ${activation.k}`);
    }
    this.config = config;
    this.gemm = gemm;
    if (kernel) {
      if (
        kernel.nInputs !== nInputs ||
        kernel.nLatents !== nLatents ||
        activation.kind !== "topk" ||
        kernel.k !== Math.min(activation.k, nLatents) ||
        kernel.maxRows !== CHUNK_ROWS
      ) {
        throw new RangeError("the kernel instance does not match the objective's sizes");
      }
      this.kernel = kernel;
    }
  }

  evaluate(
    params: SaeParameters,
    x: Float32Array,
    rows: number,
    options: ObjectiveOptions = {},
  ): ObjectiveResult {
    const { nInputs: n, nLatents: m, activation } = this.config;
    if (x.length < rows * n) throw new RangeError(`${x.length} inputs for ${rows} rows of ${n}`);
    if (rows === 0) throw new RangeError("an empty batch has no loss");
    const mean = options.mean ?? rowMean(x, rows, n);
    let sumSquaredDeviation = 0;
    for (let t = 0; t < rows; t++) {
      for (let i = 0; i < n; i++) {
        const d = x[t * n + i] - mean[i];
        sumSquaredDeviation += d * d;
      }
    }
    // A constant input has nothing to explain; keep the loss finite.
    const denominator = sumSquaredDeviation > 0 ? sumSquaredDeviation : 1;
    const grads = options.gradients;
    const kernel = activation.kind === "topk" ? this.sparseKernel(Math.min(activation.k, m)) : null;
    if (grads && !kernel) {
      grads.encoder.fill(0);
      grads.decoder.fill(0);
      grads.latentBias.fill(0);
      grads.preBias.fill(0);
    }
    const norms = new Float64Array(activation.kind === "relu" ? m : 0);
    for (let j = 0; j < norms.length; j++) {
      let s = 0;
      for (let i = 0; i < n; i++) s += params.decoder[j * n + i] ** 2;
      norms[j] = Math.sqrt(s);
    }
    // Σ_t dL/dpre_t: b_pre's gradient through the encoder is −(this)·W_enc.
    const preGradSum = new Float64Array(m);
    const totals = {
      sse: 0,
      l0: 0,
      l1: 0,
      zColumnSums: new Float64Array(grads && activation.kind === "relu" ? m : 0),
    };
    if (kernel) this.topKWithKernel(kernel, params, x, rows, denominator, totals, preGradSum, options);
    for (let start = 0; !kernel && start < rows; start += CHUNK_ROWS) {
      const r = Math.min(CHUNK_ROWS, rows - start);
      const xChunk = x.subarray(start * n, (start + r) * n);
      const xc = this.scratch.get("xc", CHUNK_ROWS * n);
      for (let t = 0; t < r; t++) {
        for (let i = 0; i < n; i++) xc[t * n + i] = xChunk[t * n + i] - params.preBias[i];
      }
      const pre = this.scratch.get("pre", CHUNK_ROWS * m);
      this.gemm.nt(xc, params.encoder, pre, r, n, m);
      for (let t = 0; t < r; t++) {
        for (let j = 0; j < m; j++) pre[t * m + j] += params.latentBias[j];
      }
      if (activation.kind === "topk") {
        this.topKChunk(
          params,
          xChunk,
          xc,
          pre,
          r,
          Math.min(activation.k, m),
          denominator,
          totals,
          preGradSum,
          options,
        );
      } else {
        this.reluChunk(params, xChunk, xc, pre, r, norms, rows, denominator, totals, preGradSum, options);
      }
    }
    if (grads) {
      if (activation.kind === "relu" && this.config.l1 !== 0) {
        // d/dD_j of λ/B Σ_t z_tj ‖D_j‖ = λ/B (Σ_t z_tj) D_j / ‖D_j‖
        for (let j = 0; j < m; j++) {
          if (norms[j] === 0 || totals.zColumnSums[j] === 0) continue;
          const c = (this.config.l1 / rows) * (totals.zColumnSums[j] / norms[j]);
          for (let i = 0; i < n; i++) grads.decoder[j * n + i] += c * params.decoder[j * n + i];
        }
      }
      for (let j = 0; j < m; j++) {
        const s = preGradSum[j];
        if (s === 0) continue;
        for (let i = 0; i < n; i++) grads.preBias[i] -= s * params.encoder[j * n + i];
      }
    }
    const l1Weight = activation.kind === "relu" ? this.config.l1 : 0;
    return {
      loss: totals.sse / denominator + (l1Weight * totals.l1) / rows,
      sumSquaredError: totals.sse,
      sumSquaredDeviation,
      fve: sumSquaredDeviation > 0 ? 1 - totals.sse / sumSquaredDeviation : 0,
      meanL0: totals.l0 / rows,
      meanL1: totals.l1 / rows,
    };
  }

  private sparseKernel(k: number): SaeSparseKernel | null {
    if (this.config.kernel === "javascript") return null;
    if (this.kernel === undefined) {
      this.kernel = SaeSparseKernel.create(this.config.nInputs, this.config.nLatents, k, CHUNK_ROWS);
    }
    return this.kernel;
  }

  /** TopK over all rows with the WebAssembly kernel; same results as topKChunk up to summation order. */
  private topKWithKernel(
    K: SaeSparseKernel,
    params: SaeParameters,
    x: Float32Array,
    rows: number,
    denominator: number,
    totals: { sse: number; l0: number; l1: number },
    preGradSum: Float64Array,
    options: ObjectiveOptions,
  ): void {
    const { nInputs: n, nLatents: m } = this.config;
    const k = K.k;
    const ops = K.exports;
    const at = K.at;
    const grads = options.gradients;
    const stats = options.statistics;
    // Parameters and gradients may already live in the kernel (the trainer puts them there); else copy.
    if (params.decoder !== K.D) K.D.set(params.decoder);
    K.preBias.set(params.preBias);
    K.latentBias.set(params.latentBias);
    if (grads) {
      K.gD.fill(0);
      K.gE.fill(0);
      K.gLat.fill(0);
      K.gPre.fill(0);
    }
    const cursor = new Int32Array(m);
    const { pre, sel, counts, byRow, byValue, xhat } = K;
    for (let start = 0; start < rows; start += CHUNK_ROWS) {
      const r = Math.min(CHUNK_ROWS, rows - start);
      K.x.set(x.subarray(start * n, (start + r) * n));
      ops.subtractRows(at.x, at.preBias, at.xc, r, n);
      this.gemm.nt(K.xc.subarray(0, r * n), params.encoder, pre.subarray(0, r * m), r, n, m);
      ops.addRows(at.pre, at.latentBias, r, m);
      ops.selectTopK(at.pre, r, m, k, at.sel);
      // Group the firing (row, latent) pairs by latent.
      counts.fill(0);
      for (let t = 0; t < r; t++) {
        for (let a = 0; a < k; a++) {
          const j = sel[t * k + a];
          const v = pre[t * m + j];
          if (!(v > 0)) {
            sel[t * k + a] = -1;
            continue;
          }
          counts[j + 1]++;
          totals.l0++;
          totals.l1 += v;
          if (stats) {
            stats.fires[j]++;
            stats.sumSquares[j] += v * v;
          }
        }
      }
      for (let j = 0; j < m; j++) counts[j + 1] += counts[j];
      cursor.set(counts.subarray(0, m));
      for (let t = 0; t < r; t++) {
        for (let a = 0; a < k; a++) {
          const j = sel[t * k + a];
          if (j < 0) continue;
          const p = cursor[j]++;
          byRow[p] = t;
          byValue[p] = pre[t * m + j];
        }
      }
      for (let t = 0; t < r; t++) xhat.set(K.preBias, t * n);
      ops.decode(at.D, at.counts, at.byRow, at.byValue, m, n, at.xhat);
      totals.sse += ops.residual(at.xhat, at.x, r * n, 2 / denominator);
      if (!grads) continue;
      ops.columnSums(at.xhat, r, n, at.gPre);
      ops.backward(at.D, at.gD, at.gE, at.gLat, at.counts, at.byRow, at.byValue, at.xhat, at.xc, m, n);
    }
    if (!grads) return;
    if (grads.decoder !== K.gD) grads.decoder.set(K.gD);
    if (grads.encoder !== K.gE) grads.encoder.set(K.gE);
    for (let j = 0; j < m; j++) grads.latentBias[j] = K.gLat[j];
    if (params.encoder === K.training?.E) {
      // b_pre's gradient through the encoder, −Σ_j (Σ_t dz_tj)·W_enc[j], in the kernel.
      ops.subtractWeightedRows(at.gLat, at.E, m, n, at.gPre);
    } else {
      preGradSum.set(K.gLat);
    }
    for (let i = 0; i < n; i++) grads.preBias[i] = K.gPre[i];
  }

  private topKChunk(
    params: SaeParameters,
    x: Float32Array,
    xc: Float32Array,
    pre: Float32Array,
    r: number,
    k: number,
    denominator: number,
    totals: { sse: number; l0: number; l1: number },
    preGradSum: Float64Array,
    options: ObjectiveOptions,
  ): void {
    const { nInputs: n, nLatents: m } = this.config;
    const D = params.decoder;
    const preBias = params.preBias;
    const grads = options.gradients;
    const stats = options.statistics;
    // The (row, latent, value) pairs with z > 0, grouped by latent (counting sort) so each decoder row and its
    // gradient rows stay in cache while the rows that use them stream past.
    const selected = new Int32Array(k);
    const pairLatent = new Int32Array(r * k);
    const pairRow = new Int32Array(r * k);
    const pairValue = new Float32Array(r * k);
    const counts = new Int32Array(m + 1);
    let pairs = 0;
    for (let t = 0; t < r; t++) {
      selectTopK(pre, t * m, m, k, selected);
      for (let a = 0; a < k; a++) {
        const j = selected[a];
        const v = pre[t * m + j];
        if (!(v > 0)) continue;
        pairLatent[pairs] = j;
        pairRow[pairs] = t;
        pairValue[pairs] = v;
        counts[j + 1]++;
        pairs++;
        totals.l1 += v;
        if (stats) {
          stats.fires[j]++;
          stats.sumSquares[j] += v * v;
        }
      }
    }
    totals.l0 += pairs;
    for (let j = 0; j < m; j++) counts[j + 1] += counts[j];
    const byLatentRow = new Int32Array(pairs);
    const byLatentValue = new Float32Array(pairs);
    const cursor = counts.slice(0, m);
    for (let p = 0; p < pairs; p++) {
      const at = cursor[pairLatent[p]]++;
      byLatentRow[at] = pairRow[p];
      byLatentValue[at] = pairValue[p];
    }

    const xhat = this.scratch.get("xhat", r * n);
    for (let t = 0; t < r; t++) xhat.set(preBias, t * n);
    for (let j = 0; j < m; j++) {
      const o = j * n;
      for (let p = counts[j]; p < counts[j + 1]; p++) {
        const xo = byLatentRow[p] * n;
        const v = byLatentValue[p];
        for (let i = 0; i < n; i++) xhat[xo + i] += v * D[o + i];
      }
    }
    const g = this.scratch.get("g", r * n);
    const gScale = 2 / denominator;
    let sse = 0;
    for (let q = 0; q < r * n; q++) {
      const e = xhat[q] - x[q];
      sse += e * e;
      g[q] = gScale * e;
    }
    totals.sse += sse;
    if (!grads) return;
    const gPre = grads.preBias;
    for (let t = 0; t < r; t++) for (let i = 0; i < n; i++) gPre[i] += g[t * n + i];
    const gDec = grads.decoder;
    const gEnc = grads.encoder;
    const gLat = grads.latentBias;
    for (let j = 0; j < m; j++) {
      const begin = counts[j];
      const end = counts[j + 1];
      if (begin === end) continue;
      const o = j * n;
      let dzSum = 0;
      for (let p = begin; p < end; p++) {
        const xo = byLatentRow[p] * n;
        const v = byLatentValue[p];
        let dz = 0;
        for (let i = 0; i < n; i++) {
          const gi = g[xo + i];
          dz += gi * D[o + i];
          gDec[o + i] += v * gi;
        }
        for (let i = 0; i < n; i++) gEnc[o + i] += dz * xc[xo + i];
        dzSum += dz;
      }
      gLat[j] += dzSum;
      preGradSum[j] += dzSum;
    }
  }

  private reluChunk(
    params: SaeParameters,
    x: Float32Array,
    xc: Float32Array,
    pre: Float32Array,
    r: number,
    norms: Float64Array,
    batchRows: number,
    denominator: number,
    totals: { sse: number; l0: number; l1: number; zColumnSums: Float64Array },
    preGradSum: Float64Array,
    options: ObjectiveOptions,
  ): void {
    const { nInputs: n, nLatents: m, l1 } = this.config;
    const grads = options.gradients;
    const stats = options.statistics;
    const z = this.scratch.get("z", CHUNK_ROWS * m);
    for (let t = 0; t < r; t++) {
      for (let j = 0; j < m; j++) {
        const v = pre[t * m + j];
        if (v > 0) {
          z[t * m + j] = v;
          totals.l0++;
          totals.l1 += v * norms[j];
          if (stats) {
            stats.fires[j]++;
            stats.sumSquares[j] += v * v;
          }
        } else {
          z[t * m + j] = 0;
        }
      }
    }
    const xhat = this.scratch.get("xhat", CHUNK_ROWS * n);
    this.gemm.nn(z, params.decoder, xhat, r, m, n);
    const g = this.scratch.get("g", CHUNK_ROWS * n);
    for (let t = 0; t < r; t++) {
      for (let i = 0; i < n; i++) {
        const e = xhat[t * n + i] + params.preBias[i] - x[t * n + i];
        totals.sse += e * e;
        g[t * n + i] = (2 * e) / denominator;
      }
    }
    if (!grads) return;
    for (let t = 0; t < r; t++) for (let i = 0; i < n; i++) grads.preBias[i] += g[t * n + i];
    const dPre = this.scratch.get("dpre", CHUNK_ROWS * m);
    this.gemm.nt(g, params.decoder, dPre, r, n, m);
    const l1PerRow = l1 / batchRows;
    for (let t = 0; t < r; t++) {
      for (let j = 0; j < m; j++) {
        const zi = z[t * m + j];
        if (zi > 0) {
          const d = dPre[t * m + j] + l1PerRow * norms[j];
          dPre[t * m + j] = d;
          grads.latentBias[j] += d;
          preGradSum[j] += d;
          totals.zColumnSums[j] += zi;
        } else {
          dPre[t * m + j] = 0;
        }
      }
    }
    this.gemm.tn(z, g, grads.decoder, m, r, n, true);
    this.gemm.tn(dPre, xc, grads.encoder, m, r, n, true);
  }
}

function rowMean(x: Float32Array, rows: number, n: number): Float32Array {
  const sums = new Float64Array(n);
  for (let t = 0; t < rows; t++) for (let i = 0; i < n; i++) sums[i] += x[t * n + i];
  return Float32Array.from(sums, (s) => s / rows);
}
