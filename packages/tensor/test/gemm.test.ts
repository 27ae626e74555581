import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { decodeBase64 } from "../src/base64.js";
import {
  allocateF32,
  currentDefaultGemm,
  defaultGemm,
  freeF32,
  type Gemm,
  isWasmGemmAvailable,
  isWasmResident,
  referenceGemm,
  setDefaultGemm,
  wasmGemm,
} from "../src/index.js";
import {
  EDGE_SHAPES,
  edgeSweep,
  oracle,
  placementSweep,
  random,
  randomShapesSweep,
  runCase,
  VARIANTS,
} from "./gemm-oracle.js";

describe("referenceGemm", () => {
  it("computes a small product exactly", () => {
    // [1 2 3; 4 5 6] · [7 8; 9 10; 11 12] = [58 64; 139 154]
    const a = Float32Array.of(1, 2, 3, 4, 5, 6);
    const b = Float32Array.of(7, 8, 9, 10, 11, 12);
    const bt = Float32Array.of(7, 9, 11, 8, 10, 12);
    const at = Float32Array.of(1, 4, 2, 5, 3, 6);
    const c = new Float32Array(4);
    referenceGemm.nn(a, b, c, 2, 3, 2);
    expect(Array.from(c)).toEqual([58, 64, 139, 154]);
    referenceGemm.nt(a, bt, c, 2, 3, 2);
    expect(Array.from(c)).toEqual([58, 64, 139, 154]);
    referenceGemm.tn(at, b, c, 2, 3, 2, true);
    expect(Array.from(c)).toEqual([116, 128, 278, 308]);
  });

  it("matches a float64 triple loop within the float32 error bound", () => {
    expect(edgeSweep(referenceGemm, EDGE_SHAPES)).toBeLessThan(1);
  });

  it("rejects operands that are too short and bad dimensions", () => {
    const x = new Float32Array(6);
    expect(() => referenceGemm.nn(x, x, x, 2, 3, 3)).toThrow(RangeError);
    expect(() => referenceGemm.nn(x, x, x, -1, 1, 1)).toThrow(RangeError);
    expect(() => referenceGemm.nt(x, x, x, 1.5, 1, 1)).toThrow(RangeError);
  });
});

describe.skipIf(!isWasmGemmAvailable())("wasmGemm", () => {
  const gemm = isWasmGemmAvailable() ? wasmGemm() : referenceGemm;

  it("is what defaultGemm forwards to unless another GEMM is set", () => {
    expect(currentDefaultGemm()).toBe(gemm);
    const captured = defaultGemm();
    const calls: string[] = [];
    const counting: Gemm = {
      nn: (...args) => {
        calls.push("nn");
        gemm.nn(...args);
      },
      nt: (...args) => {
        calls.push("nt");
        gemm.nt(...args);
      },
      tn: (...args) => {
        calls.push("tn");
        gemm.tn(...args);
      },
    };
    // [1 2; 3 4]·[5 6; 7 8] = [19 22; 43 50]
    const a = Float32Array.of(1, 2, 3, 4);
    const b = Float32Array.of(5, 6, 7, 8);
    const c = new Float32Array(4);
    try {
      setDefaultGemm(counting);
      expect(defaultGemm()).toBe(captured);
      captured.nn(a, b, c, 2, 2, 2);
      captured.tn(a, b, c, 2, 2, 2, true);
      expect(calls).toEqual(["nn", "tn"]);
      // Aᵀ·B = [26 30; 38 44], added to A·B.
      expect(Array.from(c)).toEqual([45, 52, 81, 94]);
      setDefaultGemm(null);
      captured.nt(a, b, c, 2, 2, 2);
      expect(calls).toEqual(["nn", "tn"]);
      expect(Array.from(c)).toEqual([17, 23, 39, 53]);
      // Setting the forwarding object itself must not make it forward to itself.
      setDefaultGemm(captured);
      expect(currentDefaultGemm()).toBe(gemm);
    } finally {
      setDefaultGemm(null);
    }
  });

  it("matches the float64 oracle on edge shapes, with and without accumulate", () => {
    expect(edgeSweep(gemm, EDGE_SHAPES)).toBeLessThan(1);
  });

  it("matches referenceGemm on random odd shapes", () => {
    expect(randomShapesSweep(() => gemm, { m: 40, k: 300, n: 300 }, 12345)).toBeLessThan(1);
  });

  it("uses operands inside WASM memory in place, at any alignment", () => {
    expect(placementSweep(gemm)).toBeLessThan(1);
    expect(isWasmResident(allocateF32(4))).toBe(true);
    expect(isWasmResident(allocateF32(4).subarray(1))).toBe(true);
    expect(isWasmResident(new Float32Array(4))).toBe(false);
  });

  it("handles a vocabulary-sized n (the tied unembedding) and m = 1", () => {
    let worst = 0;
    for (const variant of VARIANTS) {
      worst = Math.max(worst, runCase(gemm, variant, 2, 8, 50257, false, 1, { a: "js", b: "wasm", c: "js" }));
      worst = Math.max(worst, runCase(gemm, variant, 1, 40, 50257, true, 2));
    }
    expect(worst).toBeLessThan(1);
  });

  it("sets C to zero for k = 0 and leaves it alone with accumulate; m = 0 or n = 0 do nothing", () => {
    const empty = new Float32Array(0);
    for (const variant of VARIANTS) {
      const c = Float32Array.of(1, 2, 3, 4, 5, 6, 9);
      gemm[variant](empty, empty, c, 2, 0, 3, true);
      expect(Array.from(c)).toEqual([1, 2, 3, 4, 5, 6, 9]);
      gemm[variant](empty, empty, c, 2, 0, 3);
      expect(Array.from(c)).toEqual([0, 0, 0, 0, 0, 0, 9]);
      const inWasm = allocateF32(3);
      inWasm.set([4, 5, 6]);
      gemm[variant](empty, empty, inWasm, 1, 0, 3);
      expect(Array.from(inWasm)).toEqual([0, 0, 0]);
      gemm[variant](empty, random(5, 1), c, 0, 1, 5);
      gemm[variant](random(5, 1), empty, c, 5, 1, 0);
      expect(Array.from(c)).toEqual([0, 0, 0, 0, 0, 0, 9]);
    }
    expect(() => gemm.nn(new Float32Array(5), new Float32Array(6), new Float32Array(6), 2, 3, 2)).toThrow(
      RangeError,
    );
  });

  it("propagates NaN and infinity from the operands", () => {
    const a = Float32Array.of(1, Number.NaN, 2, 3);
    const b = Float32Array.of(1, 1, Number.POSITIVE_INFINITY, 1);
    const c = new Float32Array(4);
    gemm.nn(a, b, c, 2, 2, 2);
    expect(Number.isNaN(c[0]) && Number.isNaN(c[1])).toBe(true);
    expect(c[2]).toBe(Number.POSITIVE_INFINITY);
    expect(c[3]).toBe(5);
  });
});

describe.skipIf(!isWasmGemmAvailable())("allocateF32", () => {
  it("returns zeroed arrays that stay valid while the memory grows", () => {
    const first = allocateF32(1000);
    expect(first.every((v) => v === 0)).toBe(true);
    first.set(random(1000, 5));
    const copy = first.slice();
    // 96 MiB forces the memory to grow; the earlier view must keep its storage.
    const big = allocateF32(24 * 1024 * 1024);
    big[big.length - 1] = 3;
    expect(first.length).toBe(1000);
    expect(Array.from(first)).toEqual(Array.from(copy));
    expect(isWasmResident(first)).toBe(true);
    const c = new Float32Array(1);
    wasmGemm().nt(first, first, c, 1, 1000, 1);
    const { expected } = oracle("nt", copy, copy, null, 1, 1000, 1);
    expect(Math.abs(c[0] - expected[0])).toBeLessThan(1e-3);
    expect(freeF32(big)).toBe(true);
    expect(freeF32(big)).toBe(false);
    expect(freeF32(new Float32Array(3))).toBe(false);
  });

  it("reuses freed blocks without overlapping live ones", () => {
    const blocks = [allocateF32(100), allocateF32(200), allocateF32(300)];
    blocks.forEach((block, i) => {
      block.fill(i + 1);
    });
    freeF32(blocks[1]);
    const again = allocateF32(150);
    expect(again.every((v) => v === 0)).toBe(true);
    again.fill(9);
    expect(blocks[0].every((v) => v === 1)).toBe(true);
    expect(blocks[2].every((v) => v === 3)).toBe(true);
    expect(() => allocateF32(-1)).toThrow(RangeError);
    expect(allocateF32(0).length).toBe(0);
  });
});

describe("decodeBase64", () => {
  it("agrees with Node's decoder", () => {
    for (const length of [0, 1, 2, 3, 4, 5, 100, 1001]) {
      const bytes = new Uint8Array(random(length, length).map((v) => Math.floor((v + 1) * 128)));
      const text = Buffer.from(bytes).toString("base64");
      expect(Array.from(decodeBase64(text))).toEqual(Array.from(bytes));
    }
  });
});

const packageDir = fileURLToPath(new URL("..", import.meta.url));
const ascInstalled = (() => {
  try {
    createRequire(import.meta.url).resolve("assemblyscript/package.json");
    return true;
  } catch {
    return false;
  }
})();

describe("gemm-wasm.generated.ts", () => {
  const name = ascInstalled
    ? "matches a fresh compile of assembly/gemm.ts (if not: npm run build:wasm -w @tdb/tensor)"
    : "matches a fresh compile of assembly/gemm.ts: SKIPPED, assemblyscript is not installed";
  it.skipIf(!ascInstalled)(name, () => {
    const outDir = mkdtempSync(join(tmpdir(), "tensor-wasm-test-"));
    try {
      execFileSync(process.execPath, [join(packageDir, "scripts/build-wasm.mjs"), "--out-dir", outDir], {
        stdio: "pipe",
      });
      const fresh = readFileSync(join(outDir, "gemm-wasm.generated.ts"), "utf8");
      const committed = readFileSync(join(packageDir, "src/gemm-wasm.generated.ts"), "utf8");
      expect(committed).toBe(fresh);
    } finally {
      rmSync(outDir, { recursive: true, force: true });
    }
  });
});
