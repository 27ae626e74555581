import { availableParallelism } from "node:os";
import { currentDefaultGemm, setDefaultGemm, wasmGemm } from "@tdb/tensor";
import { fastestGemm, type ThreadedGemm } from "@tdb/tensor/node";
import { afterEach, describe, expect, it } from "vitest";
import { UsageError } from "../src/main.js";
import { applyThreadsFlag } from "../src/threads.js";

const installed = () => currentDefaultGemm() as Partial<ThreadedGemm>;
/** Whether the CLI picks the native GEMM here (built, supported, and TDB_GEMM does not ask for wasm). */
const nativePicked = fastestGemm(1).engine === "native";

afterEach(() => {
  installed().close?.();
  setDefaultGemm(null);
});

describe("applyThreadsFlag", () => {
  it("takes --threads N out of the arguments and installs an N-thread GEMM", () => {
    expect(applyThreadsFlag(["--model", "gpt2", "--threads", "2", "--port", "9"])).toEqual([
      "--model",
      "gpt2",
      "--port",
      "9",
    ]);
    expect(installed().threads).toBe(2);
  });

  it("--threads=1 installs a single-thread GEMM (native where built); arguments after -- are left alone", () => {
    expect(applyThreadsFlag(["--threads=1", "--prompt", "hi", "--", "--threads", "3"])).toEqual([
      "--prompt",
      "hi",
      "--",
      "--threads",
      "3",
    ]);
    if (nativePicked) expect(installed().threads).toBe(1);
    else expect(currentDefaultGemm()).toBe(wasmGemm());
  });

  it("defaults to two threads where two cores are available", () => {
    expect(applyThreadsFlag([])).toEqual([]);
    if (availableParallelism() >= 2) expect(installed().threads).toBe(2);
    else if (nativePicked) expect(installed().threads).toBe(1);
    else expect(currentDefaultGemm()).toBe(wasmGemm());
  });

  it("rejects a missing, zero or fractional count", () => {
    for (const argv of [
      ["--threads"],
      ["--threads", "0"],
      ["--threads=1.5"],
      ["--threads="],
      ["--threads", "x"],
    ]) {
      expect(() => applyThreadsFlag(argv)).toThrow(UsageError);
    }
  });
});
