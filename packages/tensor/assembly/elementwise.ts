// Elementwise WebAssembly SIMD128 kernels (AssemblyScript), compiled into the same module as gemm.ts: GPT-2's
// GELU and its derivative, and per-column statistics of a row-major matrix. Pointers are byte offsets into the
// imported memory; nothing needs alignment. Plain JavaScript runs these loops at ~10 ns per element on V8.

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
const CUBIC: f32 = 0.044715;
/** Beyond ±this the rational fit is not used (the same bound as the TypeScript tanhFloat32). */
const TANH_CLAMP: f32 = 7.905311107635498;

// The odd rational minimax fit of tanh that Eigen uses for float32 (coefficients as in tanhFloat32).
@inline
function tanhFit(u: v128): v128 {
  const u2 = f32x4.mul(u, u);
  let p = f32x4.splat(-2.76076847742355e-16);
  p = f32x4.add(f32x4.mul(p, u2), f32x4.splat(2.00018790482477e-13));
  p = f32x4.add(f32x4.mul(p, u2), f32x4.splat(-8.60467152213735e-11));
  p = f32x4.add(f32x4.mul(p, u2), f32x4.splat(5.12229709037114e-8));
  p = f32x4.add(f32x4.mul(p, u2), f32x4.splat(1.48572235717979e-5));
  p = f32x4.add(f32x4.mul(p, u2), f32x4.splat(6.37261928875436e-4));
  p = f32x4.add(f32x4.mul(p, u2), f32x4.splat(4.89352455891786e-3));
  let q = f32x4.splat(1.19825839466702e-6);
  q = f32x4.add(f32x4.mul(q, u2), f32x4.splat(1.18534705686654e-4));
  q = f32x4.add(f32x4.mul(q, u2), f32x4.splat(2.268434632439e-3));
  q = f32x4.add(f32x4.mul(q, u2), f32x4.splat(4.89352518554385e-3));
  return f32x4.div(f32x4.mul(u, p), q);
}

// tanh in the tails, exactly as 1 − 2/(e^2u + 1), so that 1 − tanh² (GELU's derivative) stays right there.
@inline
function tanhTail(u: f64): f64 {
  return u > 0 ? 1 - 2 / (Math.exp(2 * u) + 1) : 2 / (Math.exp(-2 * u) + 1) - 1;
}

// tanh of 4 lanes: the fit, with lanes past the clamp (rare) redone one by one.
@inline
function tanh4(u: v128): v128 {
  let t = tanhFit(u);
  if (v128.any_true(f32x4.gt(f32x4.abs(u), f32x4.splat(TANH_CLAMP)))) {
    for (let lane = 0; lane < 4; lane++) {
      const x = <f64>f32x4.extract_lane(u, 0);
      // extract_lane needs a constant lane: rotate instead.
      if (Math.abs(x) > <f64>TANH_CLAMP) t = f32x4.replace_lane(t, 0, <f32>tanhTail(x));
      u = i32x4.shuffle(u, u, 1, 2, 3, 0);
      t = i32x4.shuffle(t, t, 1, 2, 3, 0);
    }
  }
  return t;
}

// tanh of one value: the fit, or the exact form past the clamp (the tails of the SIMD loops).
@inline
function tanhOne(u: f64): f64 {
  return Math.abs(u) > <f64>TANH_CLAMP ? tanhTail(u) : <f64>f32x4.extract_lane(tanhFit(f32x4.splat(<f32>u)), 0);
}

@inline
function inner(v: v128): v128 {
  // √(2/π)·(v + 0.044715·v³)
  return f32x4.mul(f32x4.splat(SQRT_2_OVER_PI), f32x4.add(v, f32x4.mul(f32x4.splat(CUBIC), f32x4.mul(v, f32x4.mul(v, v)))));
}

/** y = gelu_new(x) = ½x(1 + tanh(√(2/π)(x + 0.044715x³))) for n floats. */
export function geluNew(x: usize, y: usize, n: i32): void {
  const half = f32x4.splat(0.5);
  const one = f32x4.splat(1);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const v = v128.load(x + o);
    const t = tanh4(inner(v));
    v128.store(y + o, f32x4.mul(f32x4.mul(half, v), f32x4.add(one, t)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    const v = <f64>load<f32>(x + o);
    const u = <f64>SQRT_2_OVER_PI * (v + <f64>CUBIC * v * v * v);
    const t = tanhOne(u);
    store<f32>(y + o, <f32>(0.5 * v * (1 + t)));
  }
}

/** dx = dy · gelu_new′(x) for n floats. */
export function geluNewBackward(x: usize, dy: usize, dx: usize, n: i32): void {
  const half = f32x4.splat(0.5);
  const one = f32x4.splat(1);
  const slope = f32x4.splat(3 * CUBIC);
  const scale = f32x4.splat(SQRT_2_OVER_PI);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const v = v128.load(x + o);
    const t = tanh4(inner(v));
    // ½(1 + t) + ½·v·(1 − t²)·√(2/π)(1 + 3·0.044715·v²)
    const dInner = f32x4.mul(scale, f32x4.add(one, f32x4.mul(slope, f32x4.mul(v, v))));
    // (1 − t)(1 + t) rather than 1 − t²: no cancellation where t is near ±1.
    const sech2 = f32x4.mul(f32x4.sub(one, t), f32x4.add(one, t));
    const d = f32x4.add(f32x4.mul(half, f32x4.add(one, t)), f32x4.mul(f32x4.mul(half, v), f32x4.mul(sech2, dInner)));
    v128.store(dx + o, f32x4.mul(v128.load(dy + o), d));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    const v = <f64>load<f32>(x + o);
    const u = <f64>SQRT_2_OVER_PI * (v + <f64>CUBIC * v * v * v);
    const t = tanhOne(u);
    const dInner = <f64>SQRT_2_OVER_PI * (1 + 3 * <f64>CUBIC * v * v);
    store<f32>(dx + o, <f32>(<f64>load<f32>(dy + o) * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * dInner)));
  }
}

/**
 * Per-column statistics of a row-major [rows × cols] f32 matrix: max (f32; NaN never wins, as `v > max`), sum and
 * sum of squares (f64, added row by row, so equal to a plain float64 loop in that order), and the count of
 * values > 0 (i32). Outputs are `cols` long and are overwritten.
 */
export function columnStats(values: usize, rows: i32, cols: i32, max: usize, sum: usize, sumSq: usize, positives: usize): void {
  for (let c = 0; c < cols; c++) {
    store<f32>(max + (<usize>c << 2), -Infinity);
    store<f64>(sum + (<usize>c << 3), 0);
    store<f64>(sumSq + (<usize>c << 3), 0);
    store<i32>(positives + (<usize>c << 2), 0);
  }
  const zero = f32x4.splat(0);
  for (let r = 0; r < rows; r++) {
    const row = values + ((<usize>r * <usize>cols) << 2);
    let c = 0;
    for (; c + 4 <= cols; c += 4) {
      const o4 = <usize>c << 2;
      const o8 = <usize>c << 3;
      const v = v128.load(row + o4);
      // pmax(m, v) = m < v ? v : m, like `if (v > m) m = v` (NaN never replaces m).
      v128.store(max + o4, f32x4.pmax(v128.load(max + o4), v));
      const lo = f64x2.promote_low_f32x4(v);
      const hi = f64x2.promote_low_f32x4(i32x4.shuffle(v, v, 2, 3, 0, 1));
      v128.store(sum + o8, f64x2.add(v128.load(sum + o8), lo));
      v128.store(sum + o8, f64x2.add(v128.load(sum + o8, 16), hi), 16);
      v128.store(sumSq + o8, f64x2.add(v128.load(sumSq + o8), f64x2.mul(lo, lo)));
      v128.store(sumSq + o8, f64x2.add(v128.load(sumSq + o8, 16), f64x2.mul(hi, hi)), 16);
      // The comparison's lanes are −1 where v > 0.
      v128.store(positives + o4, i32x4.sub(v128.load(positives + o4), f32x4.gt(v, zero)));
    }
    for (; c < cols; c++) {
      const v = load<f32>(row + (<usize>c << 2));
      const m = max + (<usize>c << 2);
      if (v > load<f32>(m)) store<f32>(m, v);
      const s = sum + (<usize>c << 3);
      store<f64>(s, load<f64>(s) + <f64>v);
      const q = sumSq + (<usize>c << 3);
      store<f64>(q, load<f64>(q) + <f64>v * <f64>v);
      if (v > 0) {
        const p = positives + (<usize>c << 2);
        store<i32>(p, load<i32>(p) + 1);
      }
    }
  }
}

/**
 * Largest and smallest value of each `block`-long run of values[0..n) (block a multiple of 4; the last run may be
 * shorter), NaN never counted; with masks, maxAdd[i] (0, or −∞ to leave i out) is added before the max and
 * minAdd[i] (0 or +∞) before the min. A run with nothing counted reports −∞ / +∞. Selection uses these bounds to
 * skip runs that cannot hold a top-k or bottom-k value. With sumOut (not 0), each run's float64 sum of the values
 * as they are (NaN where one is NaN or the run holds +∞ and −∞) goes there too.
 */
export function blockExtremes(values: usize, n: i32, block: i32, maxOut: usize, minOut: usize, masked: i32, maxAdd: usize, minAdd: usize, sumOut: usize): void {
  const blocks = (n + block - 1) / block;
  for (let b = 0; b < blocks; b++) {
    const start = b * block;
    const end = min(n, start + block);
    let hi = f32x4.splat(-Infinity);
    let lo = f32x4.splat(Infinity);
    let s0 = f64x2.splat(0);
    let s1 = f64x2.splat(0);
    let i = start;
    for (; i + 4 <= end; i += 4) {
      const o = <usize>i << 2;
      let v = v128.load(values + o);
      if (sumOut) {
        s0 = f64x2.add(s0, f64x2.promote_low_f32x4(v));
        s1 = f64x2.add(s1, f64x2.promote_low_f32x4(i32x4.shuffle(v, v, 2, 3, 0, 1)));
      }
      let w = v;
      if (masked) {
        v = f32x4.add(v, v128.load(maxAdd + o));
        w = f32x4.add(w, v128.load(minAdd + o));
      }
      // pmax(hi, v) = hi < v ? v : hi and pmin(lo, w) = w < lo ? w : lo: a NaN never replaces the bound.
      hi = f32x4.pmax(hi, v);
      lo = f32x4.pmin(lo, w);
    }
    let h = max(max(f32x4.extract_lane(hi, 0), f32x4.extract_lane(hi, 1)), max(f32x4.extract_lane(hi, 2), f32x4.extract_lane(hi, 3)));
    let l = min(min(f32x4.extract_lane(lo, 0), f32x4.extract_lane(lo, 1)), min(f32x4.extract_lane(lo, 2), f32x4.extract_lane(lo, 3)));
    let sum = f64x2.extract_lane(s0, 0) + f64x2.extract_lane(s0, 1) + (f64x2.extract_lane(s1, 0) + f64x2.extract_lane(s1, 1));
    for (; i < end; i++) {
      const o = <usize>i << 2;
      let v = load<f32>(values + o);
      sum += <f64>v;
      let w = v;
      if (masked) {
        v += load<f32>(maxAdd + o);
        w += load<f32>(minAdd + o);
      }
      if (v > h) h = v;
      if (w < l) l = w;
    }
    store<f32>(maxOut + (<usize>b << 2), h);
    store<f32>(minOut + (<usize>b << 2), l);
    if (sumOut) store<f64>(sumOut + (<usize>b << 3), sum);
  }
}

/** Σ over dim floats at `row` of f(value) in float64: four two-lane sums over runs of 8, then the tail in order. */
@inline
function rowSum(row: usize, dim: i32, mean: f64, square: bool): f64 {
  const m = f64x2.splat(mean);
  let a0 = f64x2.splat(0);
  let a1 = f64x2.splat(0);
  let a2 = f64x2.splat(0);
  let a3 = f64x2.splat(0);
  let i = 0;
  for (; i + 8 <= dim; i += 8) {
    const at = row + (<usize>i << 2);
    let v0 = f64x2.sub(loadPair(at), m);
    let v1 = f64x2.sub(loadPair(at + 8), m);
    let v2 = f64x2.sub(loadPair(at + 16), m);
    let v3 = f64x2.sub(loadPair(at + 24), m);
    if (square) {
      v0 = f64x2.mul(v0, v0);
      v1 = f64x2.mul(v1, v1);
      v2 = f64x2.mul(v2, v2);
      v3 = f64x2.mul(v3, v3);
    }
    a0 = f64x2.add(a0, v0);
    a1 = f64x2.add(a1, v1);
    a2 = f64x2.add(a2, v2);
    a3 = f64x2.add(a3, v3);
  }
  const a = f64x2.add(f64x2.add(a0, a1), f64x2.add(a2, a3));
  let sum = f64x2.extract_lane(a, 0) + f64x2.extract_lane(a, 1);
  for (; i < dim; i++) {
    const c = <f64>load<f32>(row + (<usize>i << 2)) - mean;
    sum += square ? c * c : c;
  }
  return sum;
}

/**
 * LayerNorm of each of `rows` rows of x [rows × dim]: mean and variance in float64 (two-lane sums, so within a
 * rounding of the TypeScript loop's sequential ones), then per value n = (x − mean)/√(var + eps) into `normalized`
 * and n·gain + bias into `out` (both f32, as the loop computes them), √(var + eps) into `scale`.
 */
export function layerNorm(x: usize, gain: usize, bias: usize, rows: i32, dim: i32, eps: f64, out: usize, normalized: usize, scale: usize): void {
  for (let r = 0; r < rows; r++) {
    const offset = (<usize>r * <usize>dim) << 2;
    const row = x + offset;
    const mean = rowSum(row, dim, 0, false) / <f64>dim;
    const s = Math.sqrt(rowSum(row, dim, mean, true) / <f64>dim + eps);
    store<f32>(scale + (<usize>r << 2), <f32>s);
    const m = f64x2.splat(mean);
    const sv = f64x2.splat(s);
    let i = 0;
    for (; i + 2 <= dim; i += 2) {
      const o = <usize>i << 2;
      const n = f64x2.div(f64x2.sub(loadPair(row + o), m), sv);
      v128.store64_lane(normalized + offset + o, f32x4.demote_f64x2_zero(n), 0);
      const y = f64x2.add(f64x2.mul(n, loadPair(gain + o)), loadPair(bias + o));
      v128.store64_lane(out + offset + o, f32x4.demote_f64x2_zero(y), 0);
    }
    for (; i < dim; i++) {
      const o = <usize>i << 2;
      const n = (<f64>load<f32>(row + o) - mean) / s;
      store<f32>(normalized + offset + o, <f32>n);
      store<f32>(out + offset + o, <f32>(n * <f64>load<f32>(gain + o) + <f64>load<f32>(bias + o)));
    }
  }
}

/** x[r, :] += bias for each of `rows` rows of x [rows × dim], in place (float32 sums, as JavaScript rounds them). */
export function addBiasRows(x: usize, bias: usize, rows: i32, dim: i32): void {
  for (let r = 0; r < rows; r++) {
    const row = x + ((<usize>r * <usize>dim) << 2);
    let i = 0;
    for (; i + 4 <= dim; i += 4) {
      const o = <usize>i << 2;
      v128.store(row + o, f32x4.add(v128.load(row + o), v128.load(bias + o)));
    }
    for (; i < dim; i++) {
      const o = <usize>i << 2;
      store<f32>(row + o, load<f32>(row + o) + load<f32>(bias + o));
    }
  }
}

/**
 * Copies columns columns[0..count) of a row-major [rows × cols] f32 matrix into `out`, one after another ([count ×
 * rows]). Runs of four adjacent columns are transposed 4×4 in registers. Returns -1, or
 * the position in `columns` of a column outside [0, cols) (then nothing is copied).
 */
export function gatherColumns(values: usize, rows: i32, cols: i32, columns: usize, count: i32, out: usize): i32 {
  for (let j = 0; j < count; j++) {
    const c = load<i32>(columns + (<usize>j << 2));
    if (c < 0 || c >= cols) return j;
  }
  const stride = <usize>cols << 2;
  const run = <usize>rows << 2;
  let j = 0;
  while (j < count) {
    const c = load<i32>(columns + (<usize>j << 2));
    if (j + 4 <= count && c + 4 <= cols && load<i32>(columns + (<usize>(j + 3) << 2)) == c + 3 && load<i32>(columns + (<usize>(j + 1) << 2)) == c + 1 && load<i32>(columns + (<usize>(j + 2) << 2)) == c + 2) {
      let src = values + (<usize>c << 2);
      const o = out + <usize>j * run;
      let r = 0;
      // 4 rows × 4 columns at a time, transposed in registers: four 16-byte stores, one per column.
      for (; r + 4 <= rows; r += 4) {
        const r0 = v128.load(src);
        const r1 = v128.load(src + stride);
        const r2 = v128.load(src + 2 * stride);
        const r3 = v128.load(src + 3 * stride);
        const t0 = i32x4.shuffle(r0, r1, 0, 4, 1, 5);
        const t1 = i32x4.shuffle(r0, r1, 2, 6, 3, 7);
        const t2 = i32x4.shuffle(r2, r3, 0, 4, 1, 5);
        const t3 = i32x4.shuffle(r2, r3, 2, 6, 3, 7);
        const at = o + (<usize>r << 2);
        v128.store(at, i32x4.shuffle(t0, t2, 0, 1, 4, 5));
        v128.store(at + run, i32x4.shuffle(t0, t2, 2, 3, 6, 7));
        v128.store(at + 2 * run, i32x4.shuffle(t1, t3, 0, 1, 4, 5));
        v128.store(at + 3 * run, i32x4.shuffle(t1, t3, 2, 3, 6, 7));
        src += 4 * stride;
      }
      for (; r < rows; r++) {
        const v = v128.load(src);
        const at = o + (<usize>r << 2);
        store<f32>(at, f32x4.extract_lane(v, 0));
        store<f32>(at + run, f32x4.extract_lane(v, 1));
        store<f32>(at + 2 * run, f32x4.extract_lane(v, 2));
        store<f32>(at + 3 * run, f32x4.extract_lane(v, 3));
        src += stride;
      }
      j += 4;
    } else {
      let src = values + (<usize>c << 2);
      const o = out + <usize>j * run;
      for (let r = 0; r < rows; r++) {
        store<f32>(o + (<usize>r << 2), load<f32>(src));
        src += stride;
      }
      j++;
    }
  }
  return -1;
}

/** out = a + b for n floats (float32 sums). */
export function add(a: usize, b: usize, out: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, f32x4.add(v128.load(a + o), v128.load(b + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, load<f32>(a + o) + load<f32>(b + o));
  }
}

const LOG2E: f64 = 1.4426950408889634;
// ln 2 split so that k·LN2_HI is exact for the k used here (fdlibm's constants).
const LN2_HI: f64 = 6.93147180369123816490e-1;
const LN2_LO: f64 = 1.90821492927058770002e-10;

/**
 * e^x in both lanes, to within ~1e-14 relative (far below the float32 rounding of a probability): x = k·ln 2 + r with
 * |r| ≤ ln 2 / 2, e^r by its Taylor series to r¹¹, 2^k put in the exponent bits. Below −708 it returns e^−708
 * (~3e-308, nothing after a division by a sum ≥ 1 and a float32 rounding); NaN stays NaN.
 */
@inline
function exp2Lanes(x: v128): v128 {
  x = f64x2.max(x, f64x2.splat(-708));
  const k = f64x2.nearest(f64x2.mul(x, f64x2.splat(LOG2E)));
  const r = f64x2.sub(f64x2.sub(x, f64x2.mul(k, f64x2.splat(LN2_HI))), f64x2.mul(k, f64x2.splat(LN2_LO)));
  let p = f64x2.splat(1.0 / 39916800.0);
  p = f64x2.add(f64x2.mul(p, r), f64x2.splat(1.0 / 3628800.0));
  p = f64x2.add(f64x2.mul(p, r), f64x2.splat(1.0 / 362880.0));
  p = f64x2.add(f64x2.mul(p, r), f64x2.splat(1.0 / 40320.0));
  p = f64x2.add(f64x2.mul(p, r), f64x2.splat(1.0 / 5040.0));
  p = f64x2.add(f64x2.mul(p, r), f64x2.splat(1.0 / 720.0));
  p = f64x2.add(f64x2.mul(p, r), f64x2.splat(1.0 / 120.0));
  p = f64x2.add(f64x2.mul(p, r), f64x2.splat(1.0 / 24.0));
  p = f64x2.add(f64x2.mul(p, r), f64x2.splat(1.0 / 6.0));
  p = f64x2.add(f64x2.mul(p, r), f64x2.splat(0.5));
  p = f64x2.add(f64x2.mul(p, r), f64x2.splat(1.0));
  p = f64x2.add(f64x2.mul(p, r), f64x2.splat(1.0));
  const twoK = i64x2.shl(i64x2.add(i64x2.extend_low_i32x4_s(i32x4.trunc_sat_f64x2_s_zero(k)), i64x2.splat(1023)), 52);
  return f64x2.mul(p, twoK);
}

/** Two adjacent floats at `ptr` as float64 lanes. */
@inline
function loadPair(ptr: usize): v128 {
  return f64x2.promote_low_f32x4(v128.load64_zero(ptr));
}

/**
 * Causal softmax of attention logits in TDB's [query t, key u, head h] layout, for `sequences` [T, T, H] blocks one
 * after another: for every (t, h) over u ≤ t, in float64 (two heads at a time, with exp2Lanes, within a float32 rounding of the TypeScript loop); entries
 * above the diagonal are 0. `exps`: scratch for 2·tokens float64 values.
 */
export function causalSoftmax(
  logits: usize,
  sequences: i32,
  tokens: i32,
  heads: i32,
  probs: usize,
  exps: usize,
): void {
  const T = tokens;
  const H = heads;
  const pairBytes = (<usize>T * <usize>T * <usize>H) << 2;
  for (let b = 0; b < sequences; b++) {
    causalSoftmaxOne(logits + <usize>b * pairBytes, T, H, probs + <usize>b * pairBytes, exps);
  }
}

function causalSoftmaxOne(logits: usize, T: i32, H: i32, probs: usize, exps: usize): void {
  const step = <usize>H << 2;
  memory.fill(probs, 0, (<usize>T * <usize>T * <usize>H) << 2);
  for (let t = 0; t < T; t++) {
    const row = (<usize>t * <usize>T * <usize>H) << 2;
    for (let h = 0; h < H; h += 2) {
      // An odd last head fills both lanes with its own logits and stores one.
      const pair = h + 1 < H;
      const first = logits + row + (<usize>h << 2);
      let max = f64x2.splat(-Infinity);
      let at = first;
      for (let u = 0; u <= t; u++, at += step) max = f64x2.max(max, pair ? loadPair(at) : f64x2.splat(<f64>load<f32>(at)));
      let sum = f64x2.splat(0);
      at = first;
      for (let u = 0; u <= t; u++, at += step) {
        const x = exp2Lanes(f64x2.sub(pair ? loadPair(at) : f64x2.splat(<f64>load<f32>(at)), max));
        v128.store(exps + (<usize>u << 4), x);
        sum = f64x2.add(sum, x);
      }
      let out = probs + row + (<usize>h << 2);
      for (let u = 0; u <= t; u++, out += step) {
        const p = f64x2.div(v128.load(exps + (<usize>u << 4)), sum);
        const f = f32x4.demote_f64x2_zero(p);
        store<f32>(out, f32x4.extract_lane(f, 0));
        if (pair) store<f32>(out + 4, f32x4.extract_lane(f, 1));
      }
    }
  }
}

/**
 * Splits fused attention inputs qkv [T × 3d] into q, k, v [T × d] each, q and k multiplied by `scale` (float32
 * products, as JavaScript rounds them).
 */
export function splitQkv(qkv: usize, tokens: i32, dim: i32, scale: f32, q: usize, k: usize, v: usize): void {
  const c = f32x4.splat(scale);
  const rowBytes = <usize>dim << 2;
  for (let t = 0; t < tokens; t++) {
    const src = qkv + <usize>t * 3 * rowBytes;
    const dst = <usize>t * rowBytes;
    let i = 0;
    for (; i + 4 <= dim; i += 4) {
      const o = <usize>i << 2;
      v128.store(q + dst + o, f32x4.mul(v128.load(src + o), c));
      v128.store(k + dst + o, f32x4.mul(v128.load(src + rowBytes + o), c));
    }
    for (; i < dim; i++) {
      const o = <usize>i << 2;
      store<f32>(q + dst + o, load<f32>(src + o) * scale);
      store<f32>(k + dst + o, load<f32>(src + rowBytes + o) * scale);
    }
    memory.copy(v + dst, src + 2 * rowBytes, rowBytes);
  }
}
