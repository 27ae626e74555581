import type { Gemm } from "./gemm.js";
import { referenceGemm } from "./reference.js";
import { isWasmGemmAvailable, wasmGemm } from "./wasm.js";

export {
  declareConstant,
  type EngineKernels,
  type Gemm,
  type HeadKernels,
  isDeclaredConstant,
  type RowExtremes,
  type RunningColumnStatistics,
} from "./gemm.js";
export {
  ArrayRecycler,
  type ArrayStore,
  jobArray,
  jobArrayUnzeroed,
  jobCopy,
  recyclingArrays,
  withJobArrays,
} from "./recycle.js";
export { referenceGemm } from "./reference.js";
export {
  allocateF32,
  type ColumnStatistics,
  type ElementwiseKernels,
  freeF32,
  isWasmGemmAvailable,
  isWasmResident,
  wasmArrayRecycler,
  wasmArrayStore,
  wasmElementwise,
  wasmGemm,
} from "./wasm.js";

let chosenGemm: Gemm | null = null;
let builtinGemm: Gemm | undefined;

/** The GEMM that defaultGemm() currently forwards to. */
export function currentDefaultGemm(): Gemm {
  if (chosenGemm) return chosenGemm;
  builtinGemm ??= isWasmGemmAvailable() ? wasmGemm() : referenceGemm;
  return builtinGemm;
}

// Models and modules keep the object defaultGemm() returned when they were built, so it forwards every call:
// setDefaultGemm then takes effect everywhere, whenever it is called.
const forwardingGemm: Gemm = {
  nn: (a, b, c, m, k, n, accumulate) => currentDefaultGemm().nn(a, b, c, m, k, n, accumulate),
  nt: (a, bt, c, m, k, n, accumulate) => currentDefaultGemm().nt(a, bt, c, m, k, n, accumulate),
  tn: (at, b, c, m, k, n, accumulate) => currentDefaultGemm().tn(at, b, c, m, k, n, accumulate),
  ntExtremes: (a, bt, m, k, n, count, skip) =>
    currentDefaultGemm().ntExtremes?.(a, bt, m, k, n, count, skip) ?? null,
  get heads() {
    return currentDefaultGemm().heads;
  },
  get kernels() {
    return currentDefaultGemm().kernels;
  },
};

/**
 * The process-wide GEMM: a stable object that forwards each call to the GEMM chosen with setDefaultGemm, else to
 * the WebAssembly SIMD GEMM where it can run, else to the plain TypeScript one.
 */
export function defaultGemm(): Gemm {
  return forwardingGemm;
}

/** Makes `gemm` the one defaultGemm() forwards to, from the next call on (null restores the built-in choice). */
export function setDefaultGemm(gemm: Gemm | null): void {
  chosenGemm = gemm === forwardingGemm ? null : gemm;
}
