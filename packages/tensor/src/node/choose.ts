// Picks the process-wide GEMM for Node programs (the CLI, benchmarks): the native kernel where it was built and the
// CPU supports it, else the WebAssembly kernel (split over worker threads when asked for more than one thread).
import type { Gemm } from "../gemm.js";
import { referenceGemm } from "../reference.js";
import { isWasmGemmAvailable, wasmGemm } from "../wasm.js";
import { DEFAULT_PREPACK_BYTES, nativeGemm, nativeGemmStatus } from "./native.js";
import { threadedGemm } from "./threaded.js";

export interface ChosenGemm {
  gemm: Gemm;
  /** Which kernel, for logs and benchmark lines ("wasm" also where only the TypeScript fallback runs). */
  engine: "native" | "wasm";
  threads: number;
  /** Lets worker threads go (WebAssembly split only). */
  close(): void;
}

/**
 * The fastest GEMM over `threads` threads. The environment variable TDB_GEMM chooses instead: "wasm" for the
 * WebAssembly kernel, "native" to insist on the native one (an error says why it is unavailable); unset or "auto"
 * picks native where available. TDB_PREPACK_MB caps the memory the native GEMM may spend on prepacked copies of
 * model weights (default DEFAULT_PREPACK_BYTES, 1024 MB; 0 turns prepacking off).
 */
export function fastestGemm(
  threads: number,
  env: Record<string, string | undefined> = process.env,
): ChosenGemm {
  const wanted = env.TDB_GEMM ?? "auto";
  if (!["auto", "native", "wasm"].includes(wanted))
    throw new Error(`TDB_GEMM must be auto, native or wasm (got "${wanted}")`);
  const status = nativeGemmStatus();
  if (wanted === "native" && !status.available)
    throw new Error(`TDB_GEMM=native, but the native GEMM is unavailable: ${status.reason}`);
  if (wanted !== "wasm" && status.available) {
    const prepackBytes = prepackBudget(env.TDB_PREPACK_MB);
    return { gemm: nativeGemm({ threads, prepackBytes }), engine: "native", threads, close: () => {} };
  }
  if (threads <= 1) {
    const gemm = isWasmGemmAvailable() ? wasmGemm() : referenceGemm;
    return { gemm, engine: "wasm", threads: 1, close: () => {} };
  }
  const threaded = threadedGemm({ threads });
  return { gemm: threaded, engine: "wasm", threads: threaded.threads, close: () => threaded.close() };
}

function prepackBudget(megabytes: string | undefined): number {
  if (megabytes === undefined || megabytes === "") return DEFAULT_PREPACK_BYTES;
  const value = Number(megabytes);
  if (!Number.isFinite(value) || value < 0)
    throw new Error(`TDB_PREPACK_MB must be a non-negative number of megabytes (got "${megabytes}")`);
  return value * 1024 * 1024;
}
