import { availableParallelism } from "node:os";
import { setDefaultGemm } from "@tdb/tensor";
import { threadedGemm } from "@tdb/tensor/node";
import { numberFlag, UsageError } from "./main.js";

/**
 * Takes `--threads N` / `--threads=N` out of argv and makes the matching GEMM the process default: N threads
 * (1 = single-threaded); without the flag, 2 threads where 2+ cores are available. Returns the other arguments.
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
  setDefaultGemm(threads > 1 ? threadedGemm({ threads }) : null);
  return rest;
}
