import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import { declareConstant, referenceGemm, wasmElementwise } from "../src/index.js";
import {
  fastestGemm,
  NATIVE_ADDON_PATH,
  nativeGemm,
  nativeGemmStatus,
  prepackedBytes,
} from "../src/node/index.js";
import {
  EDGE_SHAPES,
  edgeSweep,
  oracle,
  place,
  placementSweep,
  random,
  randomShapesSweep,
  runCase,
  VARIANTS,
  worstError,
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

// Declared-constant operands are prepacked once per orientation (768-deep blocks of 24-column strips) and read from
// there: shapes around those edges, more rows than one 256-row A block, B inside WebAssembly memory at an odd offset.
const PREPACK_SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [4, 768, 24],
  [5, 769, 49],
  [32, 1537, 25],
  [3, 2304, 770],
  [33, 300, 250],
  [260, 770, 47],
  [2, 5000, 1],
];

describe.skipIf(!status.available)("nativeGemm on declared-constant operands", () => {
  const one = status.available ? nativeGemm() : referenceGemm;
  const split = status.available ? nativeGemm({ threads: 3, minFlops: 0 }) : referenceGemm;

  /** Worst error ratio of `gemm` with B (nn) or Bt (nt) declared constant, with and without accumulate. */
  function sweep(
    gemm: typeof one,
    variant: "nn" | "nt",
    m: number,
    k: number,
    n: number,
    seed: number,
  ): number {
    const a = random(m * k, seed);
    const bValues = random(k * n, seed + 1);
    const b = place(bValues, "wasm-offset");
    declareConstant(b);
    let worst = 0;
    for (const accumulate of [false, true]) {
      const c0 = random(m * n, seed + 2);
      const c = c0.slice();
      gemm[variant](a, b, c, m, k, n, accumulate);
      const { expected, magnitude } = oracle(variant, a, bValues, accumulate ? c0 : null, m, k, n);
      worst = Math.max(worst, worstError(c, expected, magnitude, k));
    }
    return worst;
  }

  it("matches the float64 oracle around the prepacked layout's edges, on 1 and 3 threads, and keeps one copy per orientation", () => {
    for (const [m, k, n] of PREPACK_SHAPES) {
      for (const variant of ["nn", "nt"] as const) {
        const before = prepackedBytes();
        expect(sweep(one, variant, m, k, n, m + k + n)).toBeLessThan(1);
        // One copy, k rows of whole 24-column strips, made by the first product and reused by the second.
        expect(prepackedBytes() - before).toBe(4 * k * Math.ceil(n / 24) * 24);
        expect(sweep(split, variant, m, k, n, 7 * m + k)).toBeLessThan(1);
      }
    }
  });

  it("falls back to per-call packing for another shape of the same array and past the byte budget", () => {
    const b = random(600 * 40, 3);
    declareConstant(b);
    const a = random(9 * 600, 4);
    const c = new Float32Array(9 * 40);
    one.nn(a, b, c, 9, 600, 40);
    const held = prepackedBytes();
    // The same 24 000 floats read as [40×600]: not the prepacked shape, so the plain path runs (and stays right).
    const a2 = random(9 * 40, 5);
    const c2 = new Float32Array(9 * 600);
    one.nn(a2, b, c2, 9, 40, 600);
    expect(prepackedBytes()).toBe(held);
    const { expected, magnitude } = oracle("nn", a2, b, null, 9, 40, 600);
    expect(worstError(c2, expected, magnitude, 40)).toBeLessThan(1);
    // A GEMM with no budget never prepacks, and its products are as right.
    const unpacked = nativeGemm({ prepackBytes: 0 });
    const fresh = random(700 * 30, 6);
    declareConstant(fresh);
    const c3 = new Float32Array(9 * 30);
    const a3 = random(9 * 700, 7);
    unpacked.nn(a3, fresh, c3, 9, 700, 30);
    expect(prepackedBytes()).toBe(held);
    const three = oracle("nn", a3, fresh, null, 9, 700, 30);
    expect(worstError(c3, three.expected, three.magnitude, 700)).toBeLessThan(1);
    // That refusal is not remembered: a GEMM with a budget prepacks the same operand.
    one.nn(a3, fresh, c3, 9, 700, 30);
    expect(prepackedBytes()).toBe(held + 4 * 700 * 48);
    expect(() => nativeGemm({ prepackBytes: -1 })).toThrow(RangeError);
    expect(() => fastestGemm(1, { TDB_PREPACK_MB: "lots" })).toThrow(/TDB_PREPACK_MB/);
  });

  it("the addon refuses an unknown B layout and a prepacked B off a 64-byte boundary", () => {
    const addon = createRequire(import.meta.url)(NATIVE_ADDON_PATH) as {
      gemm: (...args: unknown[]) => void;
      prepackedLength: (k: number, n: number) => number;
    };
    const c = new Float32Array(4);
    expect(() => addon.gemm(0, 3, new Float32Array(4), new Float32Array(4), c, 2, 2, 2, 0, 1)).toThrow(
      /bad operands/,
    );
    const packed = new Float32Array(addon.prepackedLength(2, 2) + 16);
    // Backing stores start at least 16-byte aligned, so a view one float in is never on a 64-byte boundary.
    const view = packed.subarray(1);
    expect(() => addon.gemm(0, 2, new Float32Array(4), view, c, 2, 2, 2, 0, 1)).toThrow(/64-byte boundary/);
  });

  it("propagates NaN and infinity from a prepacked operand", () => {
    // B = [[1, NaN], [∞, 2]], A = [[2, 0], [0, 1], [1, 1]]: 0·∞ and NaN terms give NaN, 1·∞ + 1 gives ∞.
    const b = Float32Array.of(1, Number.NaN, Number.POSITIVE_INFINITY, 2);
    declareConstant(b);
    const a = Float32Array.of(2, 0, 0, 1, 1, 1);
    const c = new Float32Array(6);
    one.nn(a, b, c, 3, 2, 2);
    const expected = [0, 1, 2].flatMap((i) => [0, 1].map((j) => a[2 * i] * b[j] + a[2 * i + 1] * b[2 + j]));
    expect(Array.from(c)).toEqual(expected);
    expect(expected.filter(Number.isNaN).length).toBe(4);
    expect(expected.filter((x) => x === Number.POSITIVE_INFINITY).length).toBe(2);
  });
});

describe.skipIf(!status.available)("nativeGemm's all-heads kernels", () => {
  const heads = () => {
    const kernels = nativeGemm().heads;
    if (!kernels) throw new Error("the native GEMM has no all-heads kernels");
    return kernels;
  };

  it("quadraticNorms: √(x·G·xᵀ) per row and head within float32 rounding of float64, at every head size path", () => {
    for (const Dh of [3, 8, 64, 75]) {
      const R = 5;
      const H = 2;
      const x = Float32Array.from({ length: R * H * Dh }, () => random() * 2 - 1);
      // G = W·Wᵀ (positive semi-definite), so the form is ‖x·W‖².
      const W = Float32Array.from({ length: H * Dh * 7 }, () => random() * 2 - 1);
      const grams = new Float32Array(H * Dh * Dh);
      for (let h = 0; h < H; h++)
        for (let i = 0; i < Dh; i++)
          for (let j = 0; j < Dh; j++) {
            let s = 0;
            for (let c = 0; c < 7; c++) s += W[(h * Dh + i) * 7 + c] * W[(h * Dh + j) * 7 + c];
            grams[(h * Dh + i) * Dh + j] = s;
          }
      const out = new Float32Array(R * H);
      heads().quadraticNorms(x, grams, out, R, H, Dh);
      for (let r = 0; r < R; r++)
        for (let h = 0; h < H; h++) {
          let sq = 0;
          for (let c = 0; c < 7; c++) {
            let y = 0;
            for (let i = 0; i < Dh; i++) y += x[(r * H + h) * Dh + i] * W[(h * Dh + i) * 7 + c];
            sq += y * y;
          }
          expect(out[r * H + h]).toBeCloseTo(Math.sqrt(sq), 4);
        }
    }
  });

  it("quadraticNorms: a negative form gives 0 and NaN stays NaN", () => {
    const Dh = 4;
    const grams = new Float32Array(2 * Dh * Dh);
    for (let i = 0; i < Dh; i++) {
      grams[i * Dh + i] = -1; // head 0: −I
      grams[Dh * Dh + i * Dh + i] = 1; // head 1: I
    }
    const x = Float32Array.from([1, 2, 3, 4, Number.NaN, 0, 0, 0]);
    const out = new Float32Array(2);
    heads().quadraticNorms(x, grams, out, 1, 2, Dh);
    expect(out[0]).toBe(0);
    expect(out[1]).toBeNaN();
  });

  it("causalLogits and causalMix never read above the diagonal and fill it with −∞ (logits)", () => {
    const [T, H, Dh] = [9, 2, 3];
    const q = Float32Array.from({ length: T * H * Dh }, () => random());
    const k = q.slice();
    const out = new Float32Array(T * T * H).fill(7);
    heads().causalLogits(q, k, out, 1, T, H, Dh);
    for (let t = 0; t < T; t++)
      for (let u = 0; u < T; u++)
        for (let h = 0; h < H; h++) {
          const value = out[(t * T + u) * H + h];
          if (u > t) expect(value).toBe(Number.NEGATIVE_INFINITY);
          else {
            let s = 0;
            for (let i = 0; i < Dh; i++) s += q[(t * H + h) * Dh + i] * k[(u * H + h) * Dh + i];
            expect(value).toBeCloseTo(s, 5);
          }
        }
    // Probabilities above the diagonal are NaN here: a kernel that read them would spread NaN.
    const probs = new Float32Array(T * T * H).fill(Number.NaN);
    for (let t = 0; t < T; t++)
      for (let u = 0; u <= t; u++) for (let h = 0; h < H; h++) probs[(t * T + u) * H + h] = 1;
    const mixed = new Float32Array(T * H * Dh);
    heads().causalMix(probs, q, mixed, 1, T, H, Dh);
    expect(mixed.every(Number.isFinite)).toBe(true);
    // Row t is the sum of v over keys 0…t.
    for (let h = 0; h < H; h++)
      for (let i = 0; i < Dh; i++) {
        let s = 0;
        for (let t = 0; t < T; t++) {
          s += q[(t * H + h) * Dh + i];
          expect(mixed[(t * H + h) * Dh + i]).toBeCloseTo(s, 5);
        }
      }
  });

  it("refuse shapes that are not positive integers and arrays shorter than their shape, in TypeScript and in the addon", () => {
    const x = new Float32Array(64);
    expect(() => heads().causalLogits(x, x, x, 1, 0, 1, 1)).toThrow(/must be positive integers/);
    expect(() => heads().causalMix(x, x, x, 1, 2.5, 1, 1)).toThrow(/must be positive integers/);
    expect(() => heads().causalLogits(x, x, new Float32Array(10), 1, 4, 1, 1)).toThrow(
      /out has 10 values, its shape needs 16/,
    );
    expect(() => heads().quadraticNorms(x, new Float32Array(3), x, 1, 1, 2)).toThrow(/grams has 3 values/);
    const addon = createRequire(import.meta.url)(NATIVE_ADDON_PATH) as {
      causalLogits(...args: unknown[]): void;
      causalMix(...args: unknown[]): void;
      quadraticNorms(...args: unknown[]): void;
    };
    expect(() => addon.causalLogits(x, x, new Float32Array(10), 1, 4, 1, 1)).toThrow(
      /shorter than its shape/,
    );
    expect(() => addon.causalMix(x, x, x, 1, -4, 1, 1)).toThrow(/positive B, T, H and Dh/);
    expect(() => addon.quadraticNorms(x, [1, 2], x, 1, 1, 1)).toThrow(/must be Float32Arrays/);
    expect(() => addon.causalMix(x, x, x)).toThrow(/expected \(probs, v, out, B, T, H, Dh\)/);
  });
});

describe.skipIf(!status.available)("nativeGemm's softmax and GELU: the WebAssembly kernels' bits", () => {
  const kernels = wasmElementwise();

  it.runIf(kernels !== null)(
    "causalSoftmax equals the WebAssembly kernel bit for bit, NaN, −∞ and wide logits included",
    () => {
      const native = nativeGemm().heads!;
      for (const [B, T, H] of [
        [1, 64, 12],
        [3, 13, 5],
        [2, 7, 3],
        [1, 9, 1],
      ]) {
        const logits = Float32Array.from({ length: B * T * T * H }, () => (random() - 0.5) * 600);
        logits[H] = Number.NaN; // row 1, key 0
        logits[2 * T * H + 1] = Number.NEGATIVE_INFINITY;
        logits[2 * T * H + H] = -5000;
        const out = new Float32Array(B * T * T * H).fill(9);
        native.causalSoftmax(logits, out, B, T, H);
        const want = kernels!.causalSoftmax(logits, T, H, B);
        for (let i = 0; i < want.length; i++)
          if (!Object.is(out[i], want[i])) expect([i, out[i]]).toEqual([i, want[i]]);
      }
    },
  );

  it.runIf(kernels !== null)(
    "geluNew equals the WebAssembly kernel bit for bit, in the tails and at every length",
    () => {
      const native = nativeGemm().kernels!;
      for (const n of [1, 3, 4, 7, 8, 13, 3072]) {
        const x = Float32Array.from({ length: n }, () => (random() - 0.5) * 40);
        if (n > 3) x.set([15, -12, Number.NaN]);
        const out = new Float32Array(n);
        native.geluNew(x, out);
        const want = kernels!.geluNew(x);
        for (let i = 0; i < n; i++)
          if (!Object.is(out[i], want[i])) expect([n, i, out[i]]).toEqual([n, i, want[i]]);
      }
      expect(() => native.geluNew(new Float32Array(4), new Float32Array(3))).toThrow(
        /out has 3 values, x has 4/,
      );
    },
  );
});

describe.skipIf(!status.available)(
  "nativeGemm's LayerNorm, column statistics and gathering: the WebAssembly kernels' bits",
  () => {
    const kernels = wasmElementwise();
    const native = () => nativeGemm().kernels!;
    const same = (got: ArrayLike<number>, want: ArrayLike<number>) => {
      expect(got.length).toBe(want.length);
      for (let i = 0; i < want.length; i++)
        if (!Object.is(got[i], want[i])) expect([i, got[i]]).toEqual([i, want[i]]);
    };

    it.runIf(kernels !== null)("layerNorm at widths with and without runs of 8", () => {
      for (const [rows, dim] of [
        [6, 768],
        [5, 37],
        [3, 8],
        [2, 1],
      ]) {
        const x = Float32Array.from({ length: rows * dim }, () => random() * 20 - 7);
        const gain = Float32Array.from({ length: dim }, () => random() - 0.5);
        const bias = Float32Array.from({ length: dim }, () => random() - 0.5);
        const want = kernels!.layerNorm(x, gain, bias, rows, dim, 1e-5);
        const out = new Float32Array(rows * dim);
        const normalized = new Float32Array(rows * dim);
        const scale = new Float32Array(rows);
        native().layerNorm(x, gain, bias, rows, dim, 1e-5, out, normalized, scale);
        same(out, want.out);
        same(normalized, want.normalized);
        same(scale, want.scale);
      }
      expect(() =>
        native().layerNorm(
          new Float32Array(8),
          new Float32Array(4),
          new Float32Array(4),
          2,
          4,
          1e-5,
          new Float32Array(8),
          new Float32Array(7),
          new Float32Array(2),
        ),
      ).toThrow(/operands too short/);
    });

    it.runIf(kernels !== null)(
      "foldColumnStatistics: the WebAssembly columnStatistics' maxima and counts, its sums in fixed point, with NaN, ±∞ and −0, at 16-column blocks and odd widths",
      () => {
        for (const [rows, cols] of [
          [64, 48],
          [9, 37],
          [3, 5],
        ]) {
          const values = Float32Array.from({ length: rows * cols }, () => (random() - 0.5) * 100);
          values.set([Number.NaN, Number.POSITIVE_INFINITY, -0, Number.NEGATIVE_INFINITY], 1);
          values[cols + 1] = 3;
          // A NaN in the last row too: a max that let NaN in would not recover from it.
          values[(rows - 1) * cols + 2] = Number.NaN;
          const want = kernels!.columnStatistics(values, rows, cols);
          const seqMax = new Float32Array(cols);
          const running = {
            max: new Float32Array(cols).fill(Number.NEGATIVE_INFINITY),
            positives: new Float64Array(cols),
            sumHi: new Float64Array(cols),
            sumLo: new Float64Array(cols),
            sqHi: new Float64Array(cols),
            sqLo: new Float64Array(cols),
          };
          native().foldColumnStatistics(values, rows, cols, seqMax, running);
          same(seqMax, want.max);
          same(running.max, want.max);
          same(running.positives, want.positives);
          for (let c = 0; c < cols; c++) {
            // Whole units and a remainder in [0, 2^32): the sum to the nearest 2^-32; non-finite sums are skipped.
            for (const [hi, lo, sum] of [
              [running.sumHi[c], running.sumLo[c], want.sum[c]],
              [running.sqHi[c], running.sqLo[c], want.sumSq[c]],
            ]) {
              expect(lo >= 0 && lo < 2 ** 32 && Number.isInteger(lo) && Number.isInteger(hi)).toBe(true);
              if (Number.isFinite(sum))
                expect(Math.abs(hi + lo / 2 ** 32 - sum)).toBeLessThanOrEqual(2 ** -32);
              else expect([hi, lo]).toEqual([0, 0]);
            }
          }
        }
        const running = {
          max: new Float32Array(3),
          positives: new Float64Array(3),
          sumHi: new Float64Array(2),
          sumLo: new Float64Array(3),
          sqHi: new Float64Array(3),
          sqLo: new Float64Array(3),
        };
        expect(() =>
          native().foldColumnStatistics(new Float32Array(6), 2, 3, new Float32Array(3), running),
        ).toThrow(/fewer than 3 values/);
      },
    );

    it.runIf(kernels !== null)(
      "gatherColumns: runs of 8, repeats, singles, any row count; bad columns copy nothing",
      () => {
        for (const rows of [1, 8, 13]) {
          const cols = 40;
          const values = Float32Array.from({ length: rows * cols }, () => random());
          const columns = Int32Array.from([
            8, 9, 10, 11, 12, 13, 14, 15, 3, 3, 39, 0, 1, 2, 3, 4, 5, 6, 7, 20, 22,
          ]);
          const want = new Float32Array(columns.length * rows + 3).fill(-1);
          kernels!.gatherColumns(values, rows, cols, columns, want, 3);
          const got = new Float32Array(columns.length * rows + 3).fill(-1);
          native().gatherColumns(values, rows, cols, columns, got, 3);
          same(got, want);
        }
        const out = new Float32Array(8).fill(5);
        expect(() => native().gatherColumns(new Float32Array(8), 2, 4, Int32Array.of(1, 4), out, 0)).toThrow(
          /column 4 is outside \[0, 4\)/,
        );
        expect([...out]).toEqual(new Array(8).fill(5));
        expect(() => native().gatherColumns(new Float32Array(8), 2, 4, Int32Array.of(1), out, 7)).toThrow(
          /do not fit/,
        );
      },
    );
  },
);
