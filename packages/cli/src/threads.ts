import { availableParallelism } from "node:os";
import { setDefaultGemm } from "@tdb/tensor";
import { fastestGemm } from "@tdb/tensor/node";
import { numberFlag, UsageError } from "./main.js";

/**
 * Takes `--threads N` / `--threads=N` out of argv and makes the fastest GEMM over N threads the process default
 * (the native kernel where built, else WebAssembly; TDB_GEMM=wasm|native overrides): 1 = single-threaded; without
 * the flag, 2 threads where 2+ cores are available. Returns the other arguments.
 */
export function applyThreadsFlag(argv: string[]): string[] {
  const rest: string[] = [];
  let value: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") {
      rest.push(...argv.slice(i));
      break;
    }
    if (arg === "--threads") {
      value = argv[++i];
      if (value === undefined) throw new UsageError("--threads expects a whole number");
    } else if (arg.startsWith("--threads=")) value = arg.slice("--threads=".length);
    else rest.push(arg);
  }
  const threads = numberFlag("threads", value, Math.min(availableParallelism(), 2), true);
  if (threads < 1) throw new UsageError("--threads must be ≥ 1");
  setDefaultGemm(fastestGemm(threads).gemm);
  return rest;
}
