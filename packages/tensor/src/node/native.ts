// The optional native GEMM (native/gemm.c, an N-API addon with AVX2/FMA kernels), behind the same Gemm interface.
// It is built from source by scripts/build-native.mjs during `npm run build`; where that failed, or on a CPU
// without AVX2/FMA, nativeGemmStatus() says why and the WebAssembly kernel stays in use. Node-only.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import {
  checkMatrix,
  type EngineKernels,
  type Gemm,
  gemmFromOp,
  type HeadKernels,
  isDeclaredConstant,
  type RowExtremes,
} from "../gemm.js";
import { DEFAULT_MIN_FLOPS } from "./threaded.js";

/**
 * The addon's functions. Those of the attention kernels, geluNew and layerNorm take exactly the arguments of
 * HeadKernels and EngineKernels (after the checks in headKernels and engineKernels).
 */
interface Addon extends HeadKernels, Pick<EngineKernels, "geluNew" | "layerNorm"> {
  /** transB: 0 for B [k×n], 1 for Bt [n×k], 2 for op(B) as prepack wrote it. */
  gemm(
    transA: number,
    transB: number,
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    m: number,
    k: number,
    n: number,
    accumulate: number,
    threads: number,
  ): void;
  supported(): boolean;
  prepackedLength(k: number, n: number): number;
  /** Fills `out` (prepackedLength + 16 floats) from its first 64-byte boundary; returns that offset. */
  prepack(b: Float32Array, transB: number, k: number, n: number, out: Float32Array): number;
  screenSupported(): boolean;
  screenSizes(rows: number, depth: number): { packedBytes: number; infoFloats: number };
  screenPrepare(
    bt: Float32Array,
    rows: number,
    depth: number,
    packed: Uint8Array,
    info: Float32Array,
  ): boolean;
  screenExtremes(
    a: Float32Array,
    m: number,
    depth: number,
    bt: Float32Array,
    rows: number,
    packed: Uint8Array,
    info: Float32Array,
    count: number,
    skip: Uint8Array | null,
    threads: number,
  ): RowExtremes | null;
  foldColumnStatistics(
    values: Float32Array,
    rows: number,
    cols: number,
    seqMax: Float32Array,
    max: Float32Array,
    positives: Float64Array,
    sumHi: Float64Array,
    sumLo: Float64Array,
    sqHi: Float64Array,
    sqLo: Float64Array,
  ): void;
  /** −1, or the position in `columns` of a column outside [0, cols) (nothing copied then). */
  gatherColumns(
    values: Float32Array,
    rows: number,
    cols: number,
    columns: Int32Array,
    out: Float32Array,
    outOffset: number,
  ): number;
}

/** Where build-native.mjs leaves the addon (the same path from src/node and dist/node). */
export const NATIVE_ADDON_PATH = fileURLToPath(
  new URL("../../native/build/Release/tdb_gemm.node", import.meta.url),
);

let addon: Addon | null | undefined;
let unavailableReason = "";

function loadAddon(): Addon | null {
  if (addon !== undefined) return addon;
  addon = null;
  if (!existsSync(NATIVE_ADDON_PATH)) {
    unavailableReason = `not built (no ${NATIVE_ADDON_PATH}; run npm run build)`;
    return addon;
  }
  try {
    const loaded = createRequire(import.meta.url)(NATIVE_ADDON_PATH) as Addon;
    if (!loaded.supported()) unavailableReason = "this CPU lacks AVX2/FMA";
    else addon = loaded;
  } catch (error) {
    unavailableReason = `failed to load: ${error instanceof Error ? error.message : String(error)}`;
  }
  return addon;
}

/** Whether the native GEMM can run here, and if not, why. */
export function nativeGemmStatus(): { available: true } | { available: false; reason: string } {
  return loadAddon() ? { available: true } : { available: false, reason: unavailableReason };
}

export interface NativeGemmOptions {
  /** Threads a large product is split over, the calling one included (default 1). */
  threads?: number;
  /** Products of fewer FLOPs (2·m·k·n) stay on the calling thread (default DEFAULT_MIN_FLOPS). */
  minFlops?: number;
  /**
   * Bytes this GEMM may add to the prepacked copies of declared-constant operands that all native GEMMs share
   * (default DEFAULT_PREPACK_BYTES; 0: never prepack). Past it, products pack those operands per call as others.
   */
  prepackBytes?: number;
}

/** GPT-2 small's block weights in both orientations (2 × 340 MB) fit. */
export const DEFAULT_PREPACK_BYTES = 1024 * 1024 * 1024;

export interface NativeGemm extends Gemm {
  readonly threads: number;
}

/**
 * The native GEMM: C = op(A)·op(B) with 256-bit FMA kernels, over `threads` threads for large products. Any
 * Float32Arrays work (plain, or allocateF32's views into the WebAssembly memory); nothing is copied. Results differ
 * from the WebAssembly kernel's in the last bits (fused multiply-add, another summation order). Throws where
 * nativeGemmStatus() says it is unavailable.
 */
export function nativeGemm(options: NativeGemmOptions = {}): NativeGemm {
  const native = loadAddon();
  if (!native) throw new Error(`native GEMM unavailable: ${unavailableReason}`);
  const threads = options.threads ?? 1;
  if (!Number.isInteger(threads) || threads < 1)
    throw new RangeError("nativeGemm: threads must be a positive integer");
  const minFlops = options.minFlops ?? DEFAULT_MIN_FLOPS;
  const prepackBytes = options.prepackBytes ?? DEFAULT_PREPACK_BYTES;
  if (!(prepackBytes >= 0)) throw new RangeError("nativeGemm: prepackBytes must be a non-negative number");
  const gemm = gemmFromOp((transA, transB, a, b, c, m, k, n, accumulate) => {
    const split = threads > 1 && 2 * m * k * n >= minFlops ? threads : 1;
    const packed =
      transA === 0 && isDeclaredConstant(b) ? prepackedOperand(native, b, transB, k, n, prepackBytes) : null;
    if (packed) native.gemm(0, 2, a, packed, c, m, k, n, accumulate ? 1 : 0, split);
    else native.gemm(transA, transB, a, b, c, m, k, n, accumulate ? 1 : 0, split);
  });
  return {
    nn: gemm.nn,
    nt: gemm.nt,
    tn: gemm.tn,
    ntExtremes: native.screenSupported()
      ? (a, bt, m, k, n, count, skip) => {
          const split = threads > 1 && 2 * m * k * n >= minFlops ? threads : 1;
          return screenedExtremes(native, a, bt, m, k, n, count, skip, split);
        }
      : undefined,
    heads: headKernels(native),
    kernels: engineKernels(native),
    threads,
  };
}

/** Attention's per-head kernels (native/heads.c), on the calling thread: one layer's are ~10⁷ FLOPs. */
function headKernels(native: Addon): HeadKernels {
  const checkShape = (kernel: string, dims: readonly number[]) => {
    if (!dims.every((n) => Number.isInteger(n) && n >= 1 && n < 2 ** 31))
      throw new RangeError(`${kernel}: shape ${dims.join(" × ")} must be positive integers`);
  };
  const checkLength = (kernel: string, name: string, array: Float32Array, needed: number) => {
    if (array.length < needed)
      throw new RangeError(`${kernel}: ${name} has ${array.length} values, its shape needs ${needed}`);
  };
  return {
    causalLogits(q, k, out, B, T, H, Dh) {
      checkShape("causalLogits", [B, T, H, Dh]);
      checkLength("causalLogits", "q", q, B * T * H * Dh);
      checkLength("causalLogits", "k", k, B * T * H * Dh);
      checkLength("causalLogits", "out", out, B * T * T * H);
      native.causalLogits(q, k, out, B, T, H, Dh);
    },
    causalSoftmax(logits, out, B, T, H) {
      checkShape("causalSoftmax", [B, T, H]);
      checkLength("causalSoftmax", "logits", logits, B * T * T * H);
      checkLength("causalSoftmax", "out", out, B * T * T * H);
      native.causalSoftmax(logits, out, B, T, H);
    },
    causalMix(probs, v, out, B, T, H, Dh) {
      checkShape("causalMix", [B, T, H, Dh]);
      checkLength("causalMix", "probs", probs, B * T * T * H);
      checkLength("causalMix", "v", v, B * T * H * Dh);
      checkLength("causalMix", "out", out, B * T * H * Dh);
      native.causalMix(probs, v, out, B, T, H, Dh);
    },
    quadraticNorms(x, grams, out, R, H, Dh) {
      checkShape("quadraticNorms", [R, H, Dh]);
      checkLength("quadraticNorms", "x", x, R * H * Dh);
      checkLength("quadraticNorms", "grams", grams, H * Dh * Dh);
      checkLength("quadraticNorms", "out", out, R * H);
      native.quadraticNorms(x, grams, out, R, H, Dh);
    },
  };
}

/** A declared-constant operand's prepacked copies, by orientation. */
interface PrepackedCopies {
  nn?: { k: number; n: number; data: Float32Array };
  nt?: { k: number; n: number; data: Float32Array };
}
const prepackedCopies = new WeakMap<Float32Array, PrepackedCopies>();
let prepackedTotal = 0;
const prepackedReleased = new FinalizationRegistry<number>((bytes) => {
  prepackedTotal -= bytes;
});

/**
 * op(B)[k×n] prepacked (native prepack), made on first use and kept while `b` lives, or null where it would take
 * the prepacked total past `budget` bytes (then the operand is packed per call, as any other).
 */
function prepackedOperand(
  native: Addon,
  b: Float32Array,
  transB: 0 | 1,
  k: number,
  n: number,
  budget: number,
): Float32Array | null {
  let copies = prepackedCopies.get(b);
  if (!copies) {
    copies = {};
    prepackedCopies.set(b, copies);
  }
  const key = transB ? "nt" : "nn";
  const existing = copies[key];
  if (existing) return existing.k === k && existing.n === n ? existing.data : null;
  // Past the budget nothing is recorded: a GEMM with a larger budget, or this one once copies are dropped, may pack.
  const length = native.prepackedLength(k, n);
  if (prepackedTotal + 4 * length > budget) return null;
  const buffer = new Float32Array(length + 16);
  const offset = native.prepack(b, transB, k, n, buffer);
  const data = buffer.subarray(offset, offset + length);
  copies[key] = { k, n, data };
  prepackedTotal += 4 * length;
  prepackedReleased.register(b, 4 * length);
  return data;
}

/** Bytes held by the prepacked copies of declared-constant operands (all native GEMMs together). */
export function prepackedBytes(): number {
  return prepackedTotal;
}

/** Bt's int8 copy for screening, by matrix (null: Bt is not finite, so it is never screened). */
interface Prepared {
  rows: number;
  depth: number;
  packed: Uint8Array;
  info: Float32Array;
}
const prepared = new WeakMap<Float32Array, Prepared | null>();

/** Below this many rows of Bt the full product is as cheap as screening. */
const SCREEN_MIN_ROWS = 4096;

/**
 * Gemm.ntExtremes by int8 screening with exact re-scoring (native/screen.c), Bt's rows split over `threads`
 * (started per call; the GEMM's threads where the work passes its minFlops). Bt's quantised copy (n·k bytes) is
 * made on first use and kept while that array object lives.
 */
function screenedExtremes(
  native: Addon,
  a: Float32Array,
  bt: Float32Array,
  m: number,
  k: number,
  n: number,
  count: number,
  skip: Uint8Array | null,
  threads: number,
): RowExtremes | null {
  if (m < 1 || k < 1 || n < SCREEN_MIN_ROWS || count < 1) return null;
  if (a.length < m * k || bt.length < n * k) throw new RangeError("ntExtremes: an operand is too short");
  if (skip !== null && skip.length < n) throw new RangeError("ntExtremes: skip is shorter than Bt's rows");
  let entry = prepared.get(bt);
  if (entry === undefined || (entry !== null && (entry.rows !== n || entry.depth !== k))) {
    const sizes = native.screenSizes(n, k);
    const packed = new Uint8Array(sizes.packedBytes);
    const info = new Float32Array(sizes.infoFloats);
    entry = native.screenPrepare(bt, n, k, packed, info) ? { rows: n, depth: k, packed, info } : null;
    prepared.set(bt, entry);
  }
  if (entry === null) return null;
  return native.screenExtremes(a, m, k, bt, n, entry.packed, entry.info, count, skip, threads);
}

/** Elementwise kernels (native/elementwise.c, the WebAssembly kernels' operations at 4 to 8 lanes). */
function engineKernels(native: Addon): EngineKernels {
  return {
    geluNew(x, out) {
      if (out.length < x.length)
        throw new RangeError(`geluNew: out has ${out.length} values, x has ${x.length}`);
      native.geluNew(x, out);
    },
    layerNorm(x, gain, bias, rows, dim, eps, out, normalized, scale) {
      checkMatrix("layerNorm", x, rows, dim);
      if (dim < 1) throw new RangeError("layerNorm: dim must be at least 1");
      const n = rows * dim;
      if (
        gain.length < dim ||
        bias.length < dim ||
        out.length < n ||
        normalized.length < n ||
        scale.length < rows
      )
        throw new RangeError(`layerNorm: operands too short for ${rows} × ${dim}`);
      native.layerNorm(x, gain, bias, rows, dim, eps, out, normalized, scale);
    },
    foldColumnStatistics(values, rows, cols, seqMax, running) {
      checkMatrix("foldColumnStatistics", values, rows, cols);
      const { max, positives, sumHi, sumLo, sqHi, sqLo } = running;
      if ([seqMax, max, positives, sumHi, sumLo, sqHi, sqLo].some((a) => a.length < cols))
        throw new RangeError(`foldColumnStatistics: an output holds fewer than ${cols} values`);
      native.foldColumnStatistics(values, rows, cols, seqMax, max, positives, sumHi, sumLo, sqHi, sqLo);
    },
    gatherColumns(values, rows, cols, columns, out, outOffset) {
      checkMatrix("gatherColumns", values, rows, cols);
      const n = columns.length * rows;
      if (!Number.isInteger(outOffset) || outOffset < 0 || outOffset + n > out.length)
        throw new RangeError(`gatherColumns: ${n} values do not fit in ${out.length} from ${outOffset}`);
      const bad = native.gatherColumns(values, rows, cols, columns, out, outOffset);
      if (bad >= 0) throw new RangeError(`gatherColumns: column ${columns[bad]} is outside [0, ${cols})`);
    },
  };
}
