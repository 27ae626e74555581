import { type Gemm, type HeadKernels, jobArray, jobArrayUnzeroed, wasmElementwise } from "@tdb/tensor";

/**
 * GPT-2's layers other than the weight products, as forward/backward pairs over explicit row-major buffers (llm.c
 * style). Given a GEMM, attention runs as per-head matrix products.
 * Accumulation is in float64 where it sums over a row, which keeps us within ~1e-6 of PyTorch's float32.
 */

export interface LayerNormSaved {
  /** (x - mean) / scale, [T, d] */
  normalized: Float32Array;
  /** sqrt(var + eps), [T] */
  scale: Float32Array;
}

export function layerNormForward(
  x: Float32Array,
  gain: Float32Array,
  bias: Float32Array,
  rows: number,
  dim: number,
  eps: number,
  gemm?: Gemm,
): { out: Float32Array; saved: LayerNormSaved } {
  // The same float64 arithmetic as a WebAssembly kernel where it runs (V8 makes ~8 ns a value of the loop below),
  // or the engine's kernel with the same bits.
  const native = gemm?.kernels;
  if (native) {
    const out = jobArrayUnzeroed(rows * dim);
    const normalized = jobArrayUnzeroed(rows * dim);
    const scale = jobArrayUnzeroed(rows);
    native.layerNorm(x, gain, bias, rows, dim, eps, out, normalized, scale);
    return { out, saved: { normalized, scale } };
  }
  const kernels = wasmElementwise();
  if (kernels) {
    const { out, normalized, scale } = kernels.layerNorm(x, gain, bias, rows, dim, eps);
    return { out, saved: { normalized, scale } };
  }
  return layerNormForwardLoop(x, gain, bias, rows, dim, eps);
}

/** layerNormForward in plain TypeScript. */
export function layerNormForwardLoop(
  x: Float32Array,
  gain: Float32Array,
  bias: Float32Array,
  rows: number,
  dim: number,
  eps: number,
): { out: Float32Array; saved: LayerNormSaved } {
  const out = jobArray(rows * dim);
  const normalized = jobArray(rows * dim);
  const scale = jobArray(rows);
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    let sum = 0;
    for (let i = 0; i < dim; i++) sum += x[o + i];
    const mean = sum / dim;
    let sq = 0;
    for (let i = 0; i < dim; i++) {
      const c = x[o + i] - mean;
      sq += c * c;
    }
    const s = Math.sqrt(sq / dim + eps);
    scale[r] = s;
    for (let i = 0; i < dim; i++) {
      const n = (x[o + i] - mean) / s;
      normalized[o + i] = n;
      out[o + i] = n * gain[i] + bias[i];
    }
  }
  return { out, saved: { normalized, scale } };
}

/**
 * dx from dy. With detachScale the scale sqrt(var + eps) is a constant (TDB's "ln scale detached"), so only
 * the mean subtraction is differentiated.
 */
export function layerNormBackward(
  dy: Float32Array,
  gain: Float32Array,
  saved: LayerNormSaved,
  rows: number,
  dim: number,
  detachScale: boolean,
): Float32Array {
  const dx = jobArray(rows * dim);
  const { normalized, scale } = saved;
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    let meanD = 0;
    let meanDN = 0;
    for (let i = 0; i < dim; i++) {
      const dn = dy[o + i] * gain[i];
      meanD += dn;
      meanDN += dn * normalized[o + i];
    }
    meanD /= dim;
    meanDN = detachScale ? 0 : meanDN / dim;
    const inv = 1 / scale[r];
    for (let i = 0; i < dim; i++) {
      const dn = dy[o + i] * gain[i];
      dx[o + i] = (dn - meanD - normalized[o + i] * meanDN) * inv;
    }
  }
  return dx;
}

export type Activation = "gelu_new" | "gelu" | "relu";

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

export function activationForward(kind: Activation, x: Float32Array, gemm?: Gemm): Float32Array {
  // gelu_new in float32 SIMD (as PyTorch computes it, in float32): the engine's kernel where it has one (the same
  // bits), else WebAssembly's where it runs; the loop below otherwise.
  const native = kind === "gelu_new" ? gemm?.kernels : undefined;
  if (native) {
    const y = jobArrayUnzeroed(x.length);
    native.geluNew(x, y);
    return y;
  }
  const kernels = kind === "gelu_new" ? wasmElementwise() : null;
  if (kernels) return kernels.geluNew(x);
  return activationForwardLoop(kind, x);
}

/** activationForward in plain TypeScript (float64 arithmetic, rounded once). */
export function activationForwardLoop(kind: Activation, x: Float32Array): Float32Array {
  const y = jobArray(x.length);
  switch (kind) {
    case "gelu_new":
      for (let i = 0; i < x.length; i++) {
        const v = x[i];
        y[i] = 0.5 * v * (1 + tanhFloat32(SQRT_2_OVER_PI * (v + 0.044715 * v * v * v)));
      }
      break;
    case "gelu":
      for (let i = 0; i < x.length; i++) y[i] = 0.5 * x[i] * (1 + erf(x[i] / Math.SQRT2));
      break;
    case "relu":
      for (let i = 0; i < x.length; i++) y[i] = Math.max(x[i], 0);
      break;
  }
  return y;
}

const TANH_CLAMP = 7.905311107635498;

/**
 * tanh to float32 accuracy (a few ulps; Math.tanh differs by under 1e-6 absolute), about 3× faster than Math.tanh,
 * which made GELU a tenth of GPT-2's forward. Inside [−7.9, 7.9] the odd rational minimax fit that Eigen uses for
 * float32 tanh; outside it the exact 1 − 2/(e^2x + 1), so 1 − tanh² (GELU's derivative) stays right in the tails.
 */
export function tanhFloat32(x: number): number {
  if (x > TANH_CLAMP) return 1 - 2 / (Math.exp(2 * x) + 1);
  if (x < -TANH_CLAMP) return 2 / (Math.exp(-2 * x) + 1) - 1;
  const u = x;
  const u2 = u * u;
  let p = -2.76076847742355e-16;
  p = p * u2 + 2.00018790482477e-13;
  p = p * u2 - 8.60467152213735e-11;
  p = p * u2 + 5.12229709037114e-8;
  p = p * u2 + 1.48572235717979e-5;
  p = p * u2 + 6.37261928875436e-4;
  p = p * u2 + 4.89352455891786e-3;
  let q = 1.19825839466702e-6;
  q = q * u2 + 1.18534705686654e-4;
  q = q * u2 + 2.268434632439e-3;
  q = q * u2 + 4.89352518554385e-3;
  return (u * p) / q;
}

/** dx = dy · f'(x), written into a new array. */
export function activationBackward(kind: Activation, x: Float32Array, dy: Float32Array): Float32Array {
  const kernels = kind === "gelu_new" ? wasmElementwise() : null;
  if (kernels) return kernels.geluNewBackward(x, dy);
  return activationBackwardLoop(kind, x, dy);
}

/** activationBackward in plain TypeScript. */
export function activationBackwardLoop(kind: Activation, x: Float32Array, dy: Float32Array): Float32Array {
  const dx = jobArray(x.length);
  switch (kind) {
    case "gelu_new":
      for (let i = 0; i < x.length; i++) {
        const v = x[i];
        const t = tanhFloat32(SQRT_2_OVER_PI * (v + 0.044715 * v * v * v));
        const dInner = SQRT_2_OVER_PI * (1 + 3 * 0.044715 * v * v);
        dx[i] = dy[i] * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * dInner);
      }
      break;
    case "gelu":
      for (let i = 0; i < x.length; i++) {
        const v = x[i];
        const cdf = 0.5 * (1 + erf(v / Math.SQRT2));
        const pdf = Math.exp(-0.5 * v * v) / Math.sqrt(2 * Math.PI);
        dx[i] = dy[i] * (cdf + v * pdf);
      }
      break;
    case "relu":
      for (let i = 0; i < x.length; i++) dx[i] = x[i] > 0 ? dy[i] : 0;
      break;
  }
  return dx;
}

/** erf with ~1e-15 relative error (series for small |x|, continued fraction complement otherwise). */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 2.5) {
    // Maclaurin series: converges fast enough here and is exact to double precision.
    let term = ax;
    let sum = ax;
    const x2 = ax * ax;
    for (let n = 1; n < 60; n++) {
      term *= -x2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    const r = (2 / Math.sqrt(Math.PI)) * sum;
    return x < 0 ? -r : r;
  }
  // erfc by Lentz's continued fraction.
  let f = ax;
  let c = ax;
  let d = 0;
  for (let n = 1; n < 200; n++) {
    const an = n / 2;
    d = ax + an * d;
    d = d === 0 ? 1e-300 : 1 / d;
    c = ax + an / c;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  return x < 0 ? erfc - 1 : 1 - erfc;
}

export interface AttentionShape {
  tokens: number;
  heads: number;
  headDim: number;
  /**
   * Sequences of `tokens` held one after another (default 1): values [B·T, H, Dh], pairs [B·T, T, H], attention
   * staying within each. Only the forward functions (logits, softmax, mix) take more than one.
   */
  sequences?: number;
}

/**
 * Below this many tokens the attention products stay in plain loops: per-head matrix products only pay once each
 * head's T×T block is worth a call.
 */
const ATTENTION_GEMM_MIN_TOKENS = 8;

function useGemm(gemm: Gemm | undefined, shape: AttentionShape): gemm is Gemm {
  return gemm !== undefined && shape.tokens >= ATTENTION_GEMM_MIN_TOKENS;
}

/** The GEMM's all-heads kernels where it has them and the products are large enough for a GEMM. */
function headKernels(gemm: Gemm | undefined, shape: AttentionShape): HeadKernels | undefined {
  return useGemm(gemm, shape) ? gemm.heads : undefined;
}

function sequencesOf(shape: AttentionShape): number {
  const B = shape.sequences ?? 1;
  if (!Number.isInteger(B) || B < 1)
    throw new RangeError(`attention: sequences must be a positive integer, got ${B}`);
  return B;
}

/** f on each sequence's part (a one-sequence shape), concatenated; f itself for one sequence. */
function eachSequence(
  shape: AttentionShape,
  size: number,
  f: (b: number, one: AttentionShape) => Float32Array,
): Float32Array {
  const B = sequencesOf(shape);
  const one = { tokens: shape.tokens, heads: shape.heads, headDim: shape.headDim };
  if (B === 1) return f(0, one);
  const out = jobArrayUnzeroed(B * size);
  for (let b = 0; b < B; b++) out.set(f(b, one), b * size);
  return out;
}

/** Sequence b's part of an array holding B equal parts of `size`. */
function part(x: Float32Array, size: number, b: number): Float32Array {
  return x.subarray(b * size, (b + 1) * size);
}

/** Head h of x [T, H, Dh] as a contiguous [T, Dh] block. */
function headBlock(
  x: Float32Array,
  h: number,
  { tokens: T, heads: H, headDim: Dh }: AttentionShape,
): Float32Array {
  const out = jobArrayUnzeroed(T * Dh);
  const d = H * Dh;
  // Index loops, not a subarray and set per row: those made ~100 000 short-lived view objects per collation pass.
  for (let t = 0; t < T; t++) {
    const from = t * d + h * Dh;
    const to = t * Dh;
    for (let i = 0; i < Dh; i++) out[to + i] = x[from + i];
  }
  return out;
}

/** Adds (or writes) a [T, Dh] block into head h of x [T, H, Dh]. */
function putHeadBlock(
  x: Float32Array,
  block: Float32Array,
  h: number,
  { tokens: T, heads: H, headDim: Dh }: AttentionShape,
): void {
  const d = H * Dh;
  for (let t = 0; t < T; t++) {
    const from = t * Dh;
    const to = t * d + h * Dh;
    for (let i = 0; i < Dh; i++) x[to + i] = block[from + i];
  }
}

/**
 * Head h of a [T, T, H] pair tensor as a contiguous [T, T] block (query rows, key columns), zero above the diagonal:
 * keys after the query never count, whatever an edit left there (as in the loops, which never visit them).
 */
function causalPairBlock(x: Float32Array, h: number, { tokens: T, heads: H }: AttentionShape): Float32Array {
  const out = jobArray(T * T);
  for (let t = 0; t < T; t++) for (let u = 0; u <= t; u++) out[t * T + u] = x[(t * T + u) * H + h];
  return out;
}

/**
 * Causal attention logits S[t,u,h] = q[t,h]·k[u,h] for u ≤ t, -Infinity above the diagonal.
 * q, k, v are [T, H, Dh]; the result is TDB's [query, key, head] layout. With a GEMM (and enough tokens): its
 * all-heads kernel where it has one, else one q_h·k_hᵀ product per head.
 */
export function attentionLogits(
  q: Float32Array,
  k: Float32Array,
  shape: AttentionShape,
  gemm?: Gemm,
): Float32Array {
  const { tokens: T, heads: H, headDim: Dh } = shape;
  const B = sequencesOf(shape);
  const kernel = headKernels(gemm, shape);
  if (kernel) {
    const s = jobArrayUnzeroed(B * T * T * H);
    kernel.causalLogits(q, k, s, B, T, H, Dh);
    return s;
  }
  const rows = T * H * Dh;
  return eachSequence(shape, T * T * H, (b, one) =>
    sequenceLogits(part(q, rows, b), part(k, rows, b), one, gemm),
  );
}

function sequenceLogits(q: Float32Array, k: Float32Array, shape: AttentionShape, gemm?: Gemm): Float32Array {
  const { tokens: T, heads: H, headDim: Dh } = shape;
  const d = H * Dh;
  const s = jobArrayUnzeroed(T * T * H).fill(Number.NEGATIVE_INFINITY);
  if (useGemm(gemm, shape)) {
    const block = jobArrayUnzeroed(T * T);
    for (let h = 0; h < H; h++) {
      gemm.nt(headBlock(q, h, shape), headBlock(k, h, shape), block, T, Dh, T);
      for (let t = 0; t < T; t++) for (let u = 0; u <= t; u++) s[(t * T + u) * H + h] = block[t * T + u];
    }
    return s;
  }
  for (let t = 0; t < T; t++) {
    for (let u = 0; u <= t; u++) {
      for (let h = 0; h < H; h++) {
        const qo = t * d + h * Dh;
        const ko = u * d + h * Dh;
        let acc = 0;
        for (let i = 0; i < Dh; i++) acc += q[qo + i] * k[ko + i];
        s[(t * T + u) * H + h] = acc;
      }
    }
  }
  return s;
}

/**
 * Softmax over keys u ≤ t for every (t, h): the engine's kernel where it has one, else a WebAssembly kernel where
 * it runs (both the same float64 operations, bit for bit), else the loop.
 */
export function attentionSoftmax(logits: Float32Array, shape: AttentionShape, gemm?: Gemm): Float32Array {
  const native = gemm?.heads;
  if (native) {
    const B = sequencesOf(shape);
    const probs = jobArrayUnzeroed(B * shape.tokens * shape.tokens * shape.heads);
    native.causalSoftmax(logits, probs, B, shape.tokens, shape.heads);
    return probs;
  }
  const kernels = wasmElementwise();
  if (kernels) return kernels.causalSoftmax(logits, shape.tokens, shape.heads, sequencesOf(shape));
  return attentionSoftmaxLoop(logits, shape);
}

/** attentionSoftmax in plain TypeScript. */
export function attentionSoftmaxLoop(logits: Float32Array, shape: AttentionShape): Float32Array {
  const pairs = shape.tokens * shape.tokens * shape.heads;
  return eachSequence(shape, pairs, (b, one) => sequenceSoftmax(part(logits, pairs, b), one));
}

function sequenceSoftmax(logits: Float32Array, shape: AttentionShape): Float32Array {
  const { tokens: T, heads: H } = shape;
  const p = jobArray(T * T * H);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      let max = Number.NEGATIVE_INFINITY;
      for (let u = 0; u <= t; u++) max = Math.max(max, logits[(t * T + u) * H + h]);
      let sum = 0;
      for (let u = 0; u <= t; u++) sum += Math.exp(logits[(t * T + u) * H + h] - max);
      for (let u = 0; u <= t; u++) {
        const i = (t * T + u) * H + h;
        p[i] = Math.exp(logits[i] - max) / sum;
      }
    }
  }
  return p;
}

/** vOut[t,h,:] = Σ_u P[t,u,h]·v[u,h,:] (with a GEMM: its all-heads kernel, else P_h·v_h per head). */
export function attentionMix(
  probs: Float32Array,
  v: Float32Array,
  shape: AttentionShape,
  gemm?: Gemm,
): Float32Array {
  const { tokens: T, heads: H, headDim: Dh } = shape;
  const B = sequencesOf(shape);
  const kernel = headKernels(gemm, shape);
  if (kernel) {
    const out = jobArrayUnzeroed(B * T * H * Dh);
    kernel.causalMix(probs, v, out, B, T, H, Dh);
    return out;
  }
  const pairs = T * T * H;
  const rows = T * H * Dh;
  return eachSequence(shape, rows, (b, one) =>
    sequenceMix(part(probs, pairs, b), part(v, rows, b), one, gemm),
  );
}

function sequenceMix(probs: Float32Array, v: Float32Array, shape: AttentionShape, gemm?: Gemm): Float32Array {
  const { tokens: T, heads: H, headDim: Dh } = shape;
  const d = H * Dh;
  if (useGemm(gemm, shape)) {
    const out = jobArrayUnzeroed(T * d);
    const block = jobArrayUnzeroed(T * Dh);
    for (let h = 0; h < H; h++) {
      gemm.nn(causalPairBlock(probs, h, shape), headBlock(v, h, shape), block, T, T, Dh);
      putHeadBlock(out, block, h, shape);
    }
    return out;
  }
  const out = jobArray(T * d);
  for (let t = 0; t < T; t++) {
    for (let u = 0; u <= t; u++) {
      for (let h = 0; h < H; h++) {
        const p = probs[(t * T + u) * H + h];
        if (p === 0) continue;
        const oo = t * d + h * Dh;
        const vo = u * d + h * Dh;
        for (let i = 0; i < Dh; i++) out[oo + i] += p * v[vo + i];
      }
    }
  }
  return out;
}

/** Backward of attentionMix: dP and dv from dvOut (with a GEMM: dP_h = dOut_h·v_hᵀ, dv_h = P_hᵀ·dOut_h). */
export function attentionMixBackward(
  dOut: Float32Array,
  probs: Float32Array,
  v: Float32Array,
  shape: AttentionShape,
  gemm?: Gemm,
): { dProbs: Float32Array; dv: Float32Array } {
  const { tokens: T, heads: H, headDim: Dh } = shape;
  const d = H * Dh;
  const dProbs = jobArray(T * T * H);
  const dv = jobArray(T * d);
  if (useGemm(gemm, shape)) {
    const pairs = jobArray(T * T);
    const block = jobArray(T * Dh);
    for (let h = 0; h < H; h++) {
      const dOutH = headBlock(dOut, h, shape);
      gemm.nt(dOutH, headBlock(v, h, shape), pairs, T, Dh, T);
      // Keys after the query get no gradient (they are masked in the forward pass).
      for (let t = 0; t < T; t++) for (let u = 0; u <= t; u++) dProbs[(t * T + u) * H + h] = pairs[t * T + u];
      gemm.tn(causalPairBlock(probs, h, shape), dOutH, block, T, T, Dh);
      putHeadBlock(dv, block, h, shape);
    }
    return { dProbs, dv };
  }
  for (let t = 0; t < T; t++) {
    for (let u = 0; u <= t; u++) {
      for (let h = 0; h < H; h++) {
        const oo = t * d + h * Dh;
        const vo = u * d + h * Dh;
        const p = probs[(t * T + u) * H + h];
        let acc = 0;
        for (let i = 0; i < Dh; i++) {
          acc += dOut[oo + i] * v[vo + i];
          dv[vo + i] += p * dOut[oo + i];
        }
        dProbs[(t * T + u) * H + h] = acc;
      }
    }
  }
  return { dProbs, dv };
}

/** Softmax backward: dS = P ⊙ (dP − Σ_u P·dP), over the causal part. */
export function attentionSoftmaxBackward(
  dProbs: Float32Array,
  probs: Float32Array,
  shape: AttentionShape,
): Float32Array {
  const { tokens: T, heads: H } = shape;
  const dLogits = jobArray(T * T * H);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      let dot = 0;
      for (let u = 0; u <= t; u++) {
        const i = (t * T + u) * H + h;
        dot += probs[i] * dProbs[i];
      }
      for (let u = 0; u <= t; u++) {
        const i = (t * T + u) * H + h;
        dLogits[i] = probs[i] * (dProbs[i] - dot);
      }
    }
  }
  return dLogits;
}

/** Backward of attentionLogits: dq and dk from dS (with a GEMM: dq_h = dS_h·k_h, dk_h = dS_hᵀ·q_h). */
export function attentionLogitsBackward(
  dLogits: Float32Array,
  q: Float32Array,
  k: Float32Array,
  shape: AttentionShape,
  gemm?: Gemm,
): { dq: Float32Array; dk: Float32Array } {
  const { tokens: T, heads: H, headDim: Dh } = shape;
  const d = H * Dh;
  const dq = jobArray(T * d);
  const dk = jobArray(T * d);
  if (useGemm(gemm, shape)) {
    const block = jobArray(T * Dh);
    for (let h = 0; h < H; h++) {
      const dS = causalPairBlock(dLogits, h, shape);
      gemm.nn(dS, headBlock(k, h, shape), block, T, T, Dh);
      putHeadBlock(dq, block, h, shape);
      gemm.tn(dS, headBlock(q, h, shape), block, T, T, Dh);
      putHeadBlock(dk, block, h, shape);
    }
    return { dq, dk };
  }
  for (let t = 0; t < T; t++) {
    for (let u = 0; u <= t; u++) {
      for (let h = 0; h < H; h++) {
        const g = dLogits[(t * T + u) * H + h];
        if (g === 0) continue;
        const qo = t * d + h * Dh;
        const ko = u * d + h * Dh;
        for (let i = 0; i < Dh; i++) {
          dq[qo + i] += g * k[ko + i];
          dk[ko + i] += g * q[qo + i];
        }
      }
    }
  }
  return { dq, dk };
}

/**
 * q, k, v [T × d] from the fused attention input qkv [T × 3d], q and k multiplied by `scale` (a WebAssembly
 * kernel where it runs, with float32 products; the loop multiplies by the float64 scale and rounds once).
 */
export function splitQkv(
  qkv: Float32Array,
  tokens: number,
  dim: number,
  scale: number,
): { q: Float32Array; k: Float32Array; v: Float32Array } {
  const kernels = wasmElementwise();
  if (kernels) return kernels.splitQkv(qkv, tokens, dim, scale);
  const c = scale;
  const q = jobArray(tokens * dim);
  const k = jobArray(tokens * dim);
  const v = jobArray(tokens * dim);
  for (let t = 0; t < tokens; t++) {
    const o = t * 3 * dim;
    for (let i = 0; i < dim; i++) {
      q[t * dim + i] = qkv[o + i] * c;
      k[t * dim + i] = qkv[o + dim + i] * c;
      v[t * dim + i] = qkv[o + 2 * dim + i];
    }
  }
  return { q, k, v };
}

/** a + b in a new array (float32 sums). */
export function sum(a: Float32Array, b: Float32Array): Float32Array {
  const kernels = wasmElementwise();
  if (kernels) return kernels.add(a, b);
  const out = jobArrayUnzeroed(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] + b[i];
  return out;
}

export function addInto(target: Float32Array, source: Float32Array): Float32Array {
  for (let i = 0; i < target.length; i++) target[i] += source[i];
  return target;
}

export function addBiasRows(x: Float32Array, bias: Float32Array, rows: number, dim: number): void {
  const kernels = wasmElementwise();
  if (kernels) {
    kernels.addBiasRows(x, bias, rows, dim);
    return;
  }
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    for (let i = 0; i < dim; i++) x[o + i] += bias[i];
  }
}
