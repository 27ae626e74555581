import type { Gemm } from "./gemm.js";
import { referenceGemm } from "./reference.js";
import { isWasmGemmAvailable, wasmGemm } from "./wasm.js";

export type { Gemm } from "./gemm.js";
export { referenceGemm } from "./reference.js";
export { allocateF32, freeF32, isWasmGemmAvailable, isWasmResident, wasmGemm } from "./wasm.js";

/** The WebAssembly SIMD GEMM where it can run, else the plain TypeScript one. */
export function defaultGemm(): Gemm {
  return isWasmGemmAvailable() ? wasmGemm() : referenceGemm;
}
