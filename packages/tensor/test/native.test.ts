import { describe, expect, it } from "vitest";
import { referenceGemm } from "../src/index.js";
import { fastestGemm, nativeGemm, nativeGemmStatus } from "../src/node/index.js";
import {
  EDGE_SHAPES,
  edgeSweep,
  placementSweep,
  randomShapesSweep,
  runCase,
  VARIANTS,
} from "./gemm-oracle.js";

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
// tiles, 8-wide k vectors, 1024-deep k blocks and 64-row A blocks, or (32+ rows, n ≤ k) 8×8 transposed packing.
const NATIVE_EDGES: [number, number, number][] = [
  [4, 8, 24],
  [3, 9, 2],
  [5, 257, 49],
  [4, 512, 48],
  [9, 70, 25],
  [260, 9, 25],
  [65, 1030, 7],
  [2, 2049, 4],
  // A·Btᵀ on packed panels (≥ 32 rows, n ≤ k): partial 8-row transpose blocks, partial 24-column strips, k tails.
  [32, 8, 8],
  [33, 41, 25],
  [70, 300, 299],
  [36, 513, 100],
];

describe.skipIf(!status.available)("nativeGemm", () => {
  const one = status.available ? nativeGemm() : referenceGemm;
  // minFlops 0: every product is split, so the chunking across threads is exercised on small shapes too.
  const split = status.available ? nativeGemm({ threads: 3, minFlops: 0 }) : referenceGemm;

  it("matches the float64 oracle on edge shapes, with and without accumulate, on 1 and 3 threads", () => {
    for (const gemm of [one, split])
      expect(edgeSweep(gemm, [...EDGE_SHAPES, ...NATIVE_EDGES])).toBeLessThan(1);
  });

  it("matches referenceGemm on random odd shapes", () => {
    expect(
      randomShapesSweep((trial) => (trial % 4 < 2 ? one : split), { m: 70, k: 600, n: 300 }, 777),
    ).toBeLessThan(1);
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
