import type { ElementwiseKernels } from "./wasm.js";

/**
 * Candidates for the largest and smallest entries of each row of a product, each with its exact value (see
 * Gemm.ntExtremes).
 */
export interface RowExtremes {
  /** [2m + 1]: row r's top candidates are entries offsets[2r] … offsets[2r+1] − 1, its bottom ones follow. */
  offsets: Int32Array;
  /** [m]: 1 where the row was screened; 0 where the caller must compute that row in full. */
  screened: Uint8Array;
  /** Column indices, ascending within each list. */
  index: Int32Array;
  /** The entries' exact float32 values. */
  value: Float32Array;
}

/** Row-major, contiguous f32 matrix products. Shapes are C[m×n], with inner dimension k. */
export interface Gemm {
  /** C[m×n] = A[m×k]·B[k×n] (or C += … when accumulate). Row-major, contiguous. */
  nn(
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    m: number,
    k: number,
    n: number,
    accumulate?: boolean,
  ): void;
  /** C[m×n] = A[m×k]·Bt[n×k]ᵀ (or +=). */
  nt(
    a: Float32Array,
    bt: Float32Array,
    c: Float32Array,
    m: number,
    k: number,
    n: number,
    accumulate?: boolean,
  ): void;
  /** C[m×n] = At[k×m]ᵀ·B[k×n] (or +=). Used for weight gradients; may be slower. */
  tn(
    at: Float32Array,
    b: Float32Array,
    c: Float32Array,
    m: number,
    k: number,
    n: number,
    accumulate?: boolean,
  ): void;
  /**
   * Optional: for each row of A[m×k]·Bt[n×k]ᵀ, a superset of its `count` largest and `count` smallest entries
   * (columns with skip[j] = 1 left out) with their exact values, found without forming the product; null where the
   * engine cannot. Bt must not change between calls: an engine may keep a prepared copy of it, found by the array
   * object (pass the same array each time, not a fresh view).
   */
  ntExtremes?(
    a: Float32Array,
    bt: Float32Array,
    m: number,
    k: number,
    n: number,
    count: number,
    skip: Uint8Array | null,
  ): RowExtremes | null;
  /** Optional: attention's per-head kernels in its own layouts, every head and sequence in one call. */
  heads?: HeadKernels;
  /**
   * Optional: elementwise kernels that give the WebAssembly ones' results bit for bit, faster, writing into arrays
   * the caller provides.
   */
  kernels?: EngineKernels;
}

/** Running per-column statistics (see EngineKernels.foldColumnStatistics); every array `cols` long or more. */
export interface RunningColumnStatistics {
  max: Float32Array;
  positives: Float64Array;
  sumHi: Float64Array;
  sumLo: Float64Array;
  sqHi: Float64Array;
  sqLo: Float64Array;
}

/**
 * Results equal those of the same-named WebAssembly kernels (ElementwiseKernels) bit for bit, or of the TypeScript
 * loops they replace.
 */
export interface EngineKernels extends Pick<ElementwiseKernels, "gatherColumns"> {
  /** out = gelu_new(x) elementwise (x.length values; out at least as long). */
  geluNew(x: Float32Array, out: Float32Array): void;
  /** LayerNorm of `rows` rows of x [rows × dim] into out and normalized [rows × dim] and scale [rows]. */
  layerNorm(
    x: Float32Array,
    gain: Float32Array,
    bias: Float32Array,
    rows: number,
    dim: number,
    eps: number,
    out: Float32Array,
    normalized: Float32Array,
    scale: Float32Array,
  ): void;
  /**
   * One sequence's values [rows × cols] folded into running per-column statistics (the WebAssembly
   * columnStatistics, then the folds): each column's max into seqMax, and into `running` its max (a NaN never wins), count of values > 0, and float64 sum and sum of squares
   * added in 2^-32 fixed point, (whole units, remainder in [0, 2^32)) pairs, so that the order of sequences cannot
   * change a bit (values rounded half up to a unit; non-finite sums skipped).
   */
  foldColumnStatistics(
    values: Float32Array,
    rows: number,
    cols: number,
    seqMax: Float32Array,
    running: RunningColumnStatistics,
  ): void;
}

/**
 * Attention's per-head kernels over B sequences of T tokens, H heads of Dh dimensions: q, k, v and mixed values
 * are [B·T, H, Dh] (one sequence after another), attention pairs [B·T, T, H] (query, key, head). Every array must
 * hold what its shape says.
 */
export interface HeadKernels {
  /** out[b,t,u,h] = q[b,t,h,:]·k[b,u,h,:] for keys u ≤ t, −∞ for u > t. */
  causalLogits(
    q: Float32Array,
    k: Float32Array,
    out: Float32Array,
    sequences: number,
    tokens: number,
    heads: number,
    headDim: number,
  ): void;
  /**
   * out[b,t,·,h] = softmax of logits[b,t,u,h] over keys u ≤ t, 0 above the diagonal: float64 arithmetic, the same
   * operations as the WebAssembly causalSoftmax kernel, bit for bit.
   */
  causalSoftmax(
    logits: Float32Array,
    out: Float32Array,
    sequences: number,
    tokens: number,
    heads: number,
  ): void;
  /** out[b,t,h,:] = Σ_{u ≤ t} probs[b,t,u,h]·v[b,u,h,:] (entries above the diagonal are never read). */
  causalMix(
    probs: Float32Array,
    v: Float32Array,
    out: Float32Array,
    sequences: number,
    tokens: number,
    heads: number,
    headDim: number,
  ): void;
  /**
   * out[r,h] = √(x[r,h,:]·G_h·x[r,h,:]ᵀ) for x [R, H, Dh] and grams [H, Dh, Dh] (0 where rounding makes the form
   * negative): with G_h = W_h·W_hᵀ, the norm of x[r,h,:]·W_h without forming it.
   */
  quadraticNorms(
    x: Float32Array,
    grams: Float32Array,
    out: Float32Array,
    rows: number,
    heads: number,
    headDim: number,
  ): void;
}

const constantOperands = new WeakSet<Float32Array>();

/**
 * Declares matrices that will not change again (a model's weights). An engine may then keep a copy of such an
 * operand laid out for its kernel, found by the array object, and use it in every later product that passes the same
 * array as B or Bt; writing into a declared array afterwards would leave that copy stale.
 */
export function declareConstant(...arrays: Float32Array[]): void {
  for (const array of arrays) constantOperands.add(array);
}

/** Whether `array` was passed to declareConstant. */
export function isDeclaredConstant(array: Float32Array): boolean {
  return constantOperands.has(array);
}

/**
 * Throws unless `values` holds a row-major [rows × cols] matrix whose size fits an int32 (the kernels' indices), for
 * every engine's kernels.
 */
export function checkMatrix(kernel: string, values: Float32Array, rows: number, cols: number): void {
  if (!(Number.isInteger(rows) && Number.isInteger(cols) && rows >= 0 && cols >= 0 && rows * cols < 2 ** 31))
    throw new RangeError(`${kernel}: ${rows} × ${cols} is not a matrix shape`);
  if (values.length < rows * cols)
    throw new RangeError(`${kernel}: ${values.length} values cannot be ${rows} × ${cols}`);
}

function checkDim(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 0)
    throw new RangeError(`gemm: ${name} must be a non-negative integer`);
}

function checkLength(name: string, array: Float32Array, needed: number): void {
  if (array.length < needed)
    throw new RangeError(`gemm: ${name} has ${array.length} elements, needs ${needed}`);
}

/** Throws a RangeError unless the dimensions are valid and each operand holds enough elements. */
export function checkGemmArgs(
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
  m: number,
  k: number,
  n: number,
): void {
  checkDim("m", m);
  checkDim("k", k);
  checkDim("n", n);
  checkLength("A", a, m * k);
  checkLength("B", b, k * n);
  checkLength("C", c, m * n);
}

/** One product with its variant given as flags: transA (A given as At[k×m]) and transB (B given as Bt[n×k]). */
export type GemmOp = (
  transA: 0 | 1,
  transB: 0 | 1,
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
  m: number,
  k: number,
  n: number,
  accumulate: boolean,
) => void;

/** The Gemm whose nn, nt and tn call `op` with the matching flags, after checking the arguments. */
export function gemmFromOp(op: GemmOp): Gemm {
  const run: GemmOp = (transA, transB, a, b, c, m, k, n, accumulate) => {
    checkGemmArgs(a, b, c, m, k, n);
    op(transA, transB, a, b, c, m, k, n, accumulate);
  };
  return {
    nn: (a, b, c, m, k, n, accumulate = false) => run(0, 0, a, b, c, m, k, n, accumulate),
    nt: (a, bt, c, m, k, n, accumulate = false) => run(0, 1, a, bt, c, m, k, n, accumulate),
    tn: (at, b, c, m, k, n, accumulate = false) => run(1, 0, at, b, c, m, k, n, accumulate),
  };
}
