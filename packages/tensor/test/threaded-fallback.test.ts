import { describe, expect, it, vi } from "vitest";
import { isWasmGemmAvailable } from "../src/index.js";
import { threadedGemm } from "../src/node/index.js";
import { runCase, VARIANTS } from "./gemm-oracle.js";

// A platform where threads cannot be started.
vi.mock("node:worker_threads", () => ({
  Worker: class {
    constructor() {
      throw new Error("no threads here");
    }
  },
}));

describe.skipIf(!isWasmGemmAvailable())("threadedGemm without worker threads", () => {
  it("runs every product on the calling thread", () => {
    const gemm = threadedGemm({ threads: 2, minFlops: 0 });
    expect(gemm.threads).toBe(1);
    let worst = 0;
    for (const variant of VARIANTS) worst = Math.max(worst, runCase(gemm, variant, 13, 70, 300, true, 9));
    expect(worst).toBeLessThan(1);
    gemm.close();
  });
});
