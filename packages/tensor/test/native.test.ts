import { describe, expect, it } from "vitest";
import { referenceGemm } from "../src/index.js";
import { fastestGemm, nativeGemm, nativeGemmStatus } from "../src/node/index.js";
import { EDGE_SHAPES, oracle, placementSweep, random, runCase, VARIANTS } from "./gemm-oracle.js";

const status = nativeGemmStatus();

describe("native GEMM availability", () => {
  it("is built where the build was required (CI sets TDB_REQUIRE_NATIVE_GEMM=1)", () => {
    if (process.env.TDB_REQUIRE_NATIVE_GEMM === "1") expect(status).toEqual({ available: true });
    else expect(typeof status.available).toBe("boolean");
  });

  it("fastestGemm follows TDB_GEMM and rejects unknown values", () => {
    expect(fastestGemm(1, { TDB_GEMM: "wasm" }).engine).toBe("wasm");
    expect(fastestGemm(1, {}).engine).toBe(status.available ? "native" : "wasm");
    expect(() => fastestGemm(1, { TDB_GEMM: "blas" })).toThrow(/TDB_GEMM must be auto, native or wasm/);
    if (status.available) expect(fastestGemm(2, { TDB_GEMM: "native" }).threads).toBe(2);
    else expect(() => fastestGemm(1, { TDB_GEMM: "native" })).toThrow(/unavailable/);
  });
});

// Around the native blocking edges: 4-row × 24-column tiles, 256-deep k blocks, 256-row A blocks; for A·Btᵀ 3-row Bt
// tiles, 8-wide k vectors, 1024-deep k blocks and 64-row A blocks.
const NATIVE_EDGES: [number, number, number][] = [
  [4, 8, 24],
  [3, 9, 2],
  [5, 257, 49],
  [4, 512, 48],
  [9, 70, 25],
  [260, 9, 25],
  [65, 1030, 7],
  [2, 2049, 4],
];

describe.skipIf(!status.available)("nativeGemm", () => {
  const one = status.available ? nativeGemm() : referenceGemm;
  // minFlops 0: every product is split, so the chunking across threads is exercised on small shapes too.
  const split = status.available ? nativeGemm({ threads: 3, minFlops: 0 }) : referenceGemm;

  it("matches the float64 oracle on edge shapes, with and without accumulate, on 1 and 3 threads", () => {
    let worst = 0;
    for (const gemm of [one, split]) {
      for (const [m, k, n] of [...EDGE_SHAPES, ...NATIVE_EDGES]) {
        for (const variant of VARIANTS) {
          for (const accumulate of [false, true]) {
            worst = Math.max(worst, runCase(gemm, variant, m, k, n, accumulate, m * 1000 + k * 10 + n));
          }
        }
      }
    }
    expect(worst).toBeLessThan(1);
  });

  it("matches referenceGemm on random odd shapes", () => {
    let seed = 777;
    const next = (limit: number) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return 1 + (seed % limit);
    };
    let worst = 0;
    for (let trial = 0; trial < 60; trial++) {
      const [m, k, n] = [next(70), next(600), next(300)];
      const variant = VARIANTS[trial % 3];
      const accumulate = trial % 2 === 1;
      const a = random(m * k, trial);
      const b = random(k * n, trial + 1);
      const c0 = random(m * n, trial + 2);
      const got = c0.slice();
      const want = c0.slice();
      (trial % 4 < 2 ? one : split)[variant](a, b, got, m, k, n, accumulate);
      referenceGemm[variant](a, b, want, m, k, n, accumulate);
      const { magnitude } = oracle(variant, a, b, accumulate ? c0 : null, m, k, n);
      for (let i = 0; i < m * n; i++) {
        // Both sides carry float32 rounding error, so allow twice the bound.
        const bound = 2 * (k + 2) * 2 ** -24 * magnitude[i] + 1e-30;
        worst = Math.max(worst, Math.abs(got[i] - want[i]) / bound);
      }
    }
    expect(worst).toBeLessThan(1);
  });

  it("reads and writes operands in WASM memory and plain arrays, at any offset", () => {
    expect(placementSweep(one)).toBeLessThan(1);
    expect(placementSweep(split)).toBeLessThan(1);
  });

  it("handles a vocabulary-sized n on two threads", () => {
    let worst = 0;
    const two = nativeGemm({ threads: 2, minFlops: 0 });
    for (const variant of VARIANTS) {
      worst = Math.max(worst, runCase(two, variant, 3, 20, 50257, true, 5, { a: "js", b: "wasm", c: "js" }));
    }
    expect(worst).toBeLessThan(1);
  });

  it("sets C to zero for k = 0, keeps it with accumulate, and rejects bad operands with an error", () => {
    const empty = new Float32Array(0);
    const c = Float32Array.of(1, 2, 3, 4, 5, 6, 9);
    one.nt(empty, empty, c, 2, 0, 3, true);
    expect(Array.from(c)).toEqual([1, 2, 3, 4, 5, 6, 9]);
    one.nn(empty, empty, c, 2, 0, 3);
    expect(Array.from(c)).toEqual([0, 0, 0, 0, 0, 0, 9]);
    expect(() => one.nn(new Float32Array(5), new Float32Array(6), new Float32Array(6), 2, 3, 2)).toThrow(
      RangeError,
    );
    // A Float64Array of the right length passes the length check; the addon itself must refuse it.
    const wrongType = new Float64Array(6) as unknown as Float32Array;
    expect(() => one.nn(wrongType, new Float32Array(6), new Float32Array(4), 2, 3, 2)).toThrow(
      /must be Float32Arrays/,
    );
    expect(() => nativeGemm({ threads: 0 })).toThrow(RangeError);
  });

  it("propagates NaN and infinity from the operands", () => {
    const a = Float32Array.of(1, Number.NaN, 2, 3);
    const b = Float32Array.of(1, 1, Number.POSITIVE_INFINITY, 1);
    const c = new Float32Array(4);
    one.nn(a, b, c, 2, 2, 2);
    expect(Number.isNaN(c[0]) && Number.isNaN(c[1])).toBe(true);
    expect(c[2]).toBe(Number.POSITIVE_INFINITY);
    expect(c[3]).toBe(5);
  });
});
