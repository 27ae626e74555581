import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  allocateF32,
  defaultGemm,
  freeF32,
  isWasmGemmAvailable,
  setDefaultGemm,
  wasmGemm,
} from "../src/index.js";
import { threadedGemm } from "../src/node/index.js";
import { leaveChunksToWorkers } from "../src/node/threaded.js";
import { EDGE_SHAPES, placementSweep, random, runCase, VARIANTS } from "./gemm-oracle.js";

const wasm = isWasmGemmAvailable();

describe.skipIf(!wasm).each([
  { mode: "the worker does every chunk", workersOnly: true },
  { mode: "caller and worker share the chunks", workersOnly: false },
])("threadedGemm: $mode", ({ workersOnly }) => {
  // minFlops 0 and adaptive false split every product that has more than one 8-column chunk.
  const gemm = threadedGemm({ threads: 2, minFlops: 0, adaptive: false });
  beforeAll(() => leaveChunksToWorkers(workersOnly));
  afterAll(() => {
    leaveChunksToWorkers(false);
    gemm.close();
  });

  it("starts one worker", () => {
    expect(gemm.threads).toBe(2);
  });

  it("matches the float64 oracle on edge shapes, with and without accumulate", () => {
    const before = gemm.workerColumns;
    let worst = 0;
    for (const [m, k, n] of EDGE_SHAPES) {
      for (const variant of VARIANTS) {
        for (const accumulate of [false, true]) {
          worst = Math.max(worst, runCase(gemm, variant, m, k, n, accumulate, m * 1000 + k * 10 + n));
        }
      }
    }
    expect(worst).toBeLessThan(1);
    // Only products with n > 8 are split; in workers-only mode each of their columns is the worker's.
    const splitColumns = EDGE_SHAPES.filter(([, , n]) => n > 8).reduce((sum, [, , n]) => sum + 6 * n, 0);
    if (workersOnly) expect(gemm.workerColumns - before).toBe(splitColumns);
  });

  it("gives the single-thread kernel's results bit for bit (each column is one thread's work)", () => {
    for (const [m, k, n] of [
      [7, 1029, 133],
      [33, 300, 50],
      [32, 64, 777],
    ]) {
      for (const variant of VARIANTS) {
        const a = random(m * k, m);
        const b = random(k * n, n);
        const c0 = random(m * n, k);
        for (const accumulate of [false, true]) {
          const split = c0.slice();
          const single = c0.slice();
          gemm[variant](a, b, split, m, k, n, accumulate);
          wasmGemm()[variant](a, b, single, m, k, n, accumulate);
          expect(split.filter((v, i) => !Object.is(v, single[i])).length).toBe(0);
        }
      }
    }
  });

  it("uses operands inside WASM memory in place, at any alignment", () => {
    expect(placementSweep(gemm)).toBeLessThan(1);
  });

  it("reads operands placed in memory grown after the worker started", () => {
    // 64 MiB of filler pushes the operands into pages that did not exist when the worker was started.
    const filler = allocateF32(16 * 1024 * 1024);
    const placement: Placement = { a: "wasm", b: "wasm", c: "wasm" };
    try {
      expect(runCase(gemm, "nn", 8, 30, 100, true, 11, placement)).toBeLessThan(1);
      expect(runCase(gemm, "nt", 8, 30, 100, false, 12, placement)).toBeLessThan(1);
    } finally {
      freeF32(filler);
    }
  });

  it("handles a vocabulary-sized n and a product above the default threshold", () => {
    let worst = 0;
    const byDefault = threadedGemm({ threads: 2 });
    try {
      for (const variant of VARIANTS) {
        worst = Math.max(
          worst,
          runCase(gemm, variant, 2, 8, 50257, false, 1, { a: "js", b: "wasm", c: "js" }),
        );
        worst = Math.max(worst, runCase(byDefault, variant, 32, 96, 1000, true, 2));
      }
    } finally {
      byDefault.close();
    }
    expect(worst).toBeLessThan(1);
  });

  it("serves several instances used in turn, and keeps working after one is closed", () => {
    const other = threadedGemm({ threads: 2, minFlops: 0, adaptive: false });
    let worst = 0;
    for (let round = 0; round < 6; round++) {
      const user = round % 2 === 0 ? gemm : other;
      const variant = VARIANTS[round % 3];
      worst = Math.max(
        worst,
        runCase(user, variant, 9 + round, 40 + round, 70 + 9 * round, round > 2, round),
      );
    }
    other.close();
    expect(other.threads).toBe(1);
    expect(gemm.threads).toBe(2);
    worst = Math.max(worst, runCase(gemm, "nt", 12, 33, 90, false, 7));
    worst = Math.max(worst, runCase(other, "nn", 12, 33, 90, true, 8));
    expect(worst).toBeLessThan(1);
  });

  it("can be the process default after models have captured defaultGemm()", () => {
    const captured = defaultGemm();
    try {
      setDefaultGemm(gemm);
      expect(runCase(captured, "nn", 16, 50, 64, false, 3)).toBeLessThan(1);
    } finally {
      setDefaultGemm(null);
    }
  });

  it("with threads: 1 starts no worker; rejects a bad thread count", () => {
    const one = threadedGemm({ threads: 1, minFlops: 0 });
    expect(one.threads).toBe(1);
    expect(runCase(one, "tn", 8, 20, 40, true, 4)).toBeLessThan(1);
    one.close();
    expect(() => threadedGemm({ threads: 0 })).toThrow(RangeError);
    expect(() => threadedGemm({ threads: 1.5 })).toThrow(RangeError);
  });
});

/** The package sources as plain JavaScript in a temporary folder, so a child Node process can load them. */
function transpileSources(): string {
  const srcDir = fileURLToPath(new URL("../src", import.meta.url));
  const outDir = mkdtempSync(join(tmpdir(), "tensor-threaded-"));
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith(".ts")) {
        const { outputText } = ts.transpileModule(readFileSync(path, "utf8"), {
          compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
        });
        const target = join(outDir, relative(srcDir, path)).replace(/\.ts$/, ".js");
        mkdirSync(dirname(target), { recursive: true });
        writeFileSync(target, outputText);
      }
    }
  };
  walk(srcDir);
  writeFileSync(join(outDir, "package.json"), '{"type":"module"}');
  return outDir;
}

describe.skipIf(!wasm)("a process using threadedGemm", () => {
  it("exits by itself, with or without close()", () => {
    const dir = transpileSources();
    try {
      for (const close of [false, true]) {
        const script = `
          import { setDefaultGemm, defaultGemm } from "./index.js";
          import { threadedGemm } from "./node/index.js";
          const gemm = threadedGemm({ threads: 2, minFlops: 0, adaptive: false });
          setDefaultGemm(gemm);
          // [1 2; 3 4]·[5 6; 7 8] with 16 columns: B repeated 8 times side by side.
          const b = new Float32Array(32);
          for (let j = 0; j < 16; j++) { b[j] = j % 2 ? 6 : 5; b[16 + j] = j % 2 ? 8 : 7; }
          const c = new Float32Array(32);
          defaultGemm().nn(Float32Array.of(1, 2, 3, 4), b, c, 2, 2, 16);
          console.log(gemm.threads, c[14], c[15], c[30], c[31]);
          ${close ? "gemm.close();" : ""}
        `;
        writeFileSync(join(dir, "main.mjs"), script);
        // The timeout only guards against a hang.
        const out = execFileSync(process.execPath, [join(dir, "main.mjs")], {
          encoding: "utf8",
          timeout: 60_000,
        });
        expect(out.trim()).toBe("2 19 22 43 50");
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
