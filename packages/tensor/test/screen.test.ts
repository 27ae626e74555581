// Gemm.ntExtremes on the native engine (int8 screening + exact re-scoring): the `count` largest and smallest
// entries picked from its candidates must equal those of an independent float64 product, on shapes and data that
// stress the bound (rows of very different norms, outlier columns, ties, skipped rows, zero and non-finite inputs).
import { describe, expect, it } from "vitest";
import type { Gemm, RowExtremes } from "../src/index.js";
import { nativeGemm, nativeGemmStatus } from "../src/node/index.js";
import { random } from "./gemm-oracle.js";

const status = nativeGemmStatus();
const screening = status.available && nativeGemm().ntExtremes !== undefined;
// One thread, and Bt's rows split over three (minFlops 0: even these small products are split).
const engines = status.available
  ? [
      { name: "one thread", gemm: nativeGemm() },
      { name: "three threads", gemm: nativeGemm({ threads: 3, minFlops: 0 }) },
    ]
  : [];

/** Float64 scores of each row of `a` against every row of `bt`, with Σ|a·b| (bounds float32 rounding). */
function oracleScores(a: Float32Array, bt: Float32Array, m: number, k: number, n: number) {
  const value = new Float64Array(m * n);
  const magnitude = new Float64Array(m * n);
  for (let r = 0; r < m; r++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      let abs = 0;
      for (let i = 0; i < k; i++) {
        const p = a[r * k + i] * bt[j * k + i];
        s += p;
        abs += Math.abs(p);
      }
      value[r * n + j] = s;
      magnitude[r * n + j] = abs;
    }
  return { value, magnitude };
}

/** The `count` best (ids, values) among entries, by value then lower id: sign 1 for largest, −1 for smallest. */
function best(ids: ArrayLike<number>, values: ArrayLike<number>, count: number, sign: 1 | -1) {
  const order = Array.from({ length: ids.length }, (_, i) => i).sort(
    (x, y) => sign * (values[y] - values[x]) || ids[x] - ids[y],
  );
  return order.slice(0, count).map((i) => ({ id: ids[i], value: values[i] }));
}

/**
 * Checks every screened row: candidates are never skipped, their values are exact (float32 rounding of the
 * float64 score), and the `count` best candidates have the same values as the `count` best entries of the full
 * row (ids may differ only between values equal within rounding). Returns how many rows were screened.
 */
function checkExtremes(
  result: RowExtremes,
  a: Float32Array,
  bt: Float32Array,
  m: number,
  k: number,
  n: number,
  count: number,
  skip: Uint8Array | null,
): number {
  const { value, magnitude } = oracleScores(a, bt, m, k, n);
  const kept = Array.from({ length: n }, (_, j) => j).filter((j) => !skip?.[j]);
  let screened = 0;
  for (let r = 0; r < m; r++) {
    if (result.screened[r] !== 1) continue;
    screened++;
    const tol = (j: number) => 1e-6 * magnitude[r * n + j] + 1e-30;
    for (const [list, sign] of [
      [0, 1],
      [1, -1],
    ] as const) {
      const from = result.offsets[2 * r + list];
      const to = result.offsets[2 * r + list + 1];
      const ids = result.index.subarray(from, to);
      const values = result.value.subarray(from, to);
      for (let i = 0; i < ids.length; i++) {
        expect(skip?.[ids[i]] ?? 0).toBe(0);
        if (i > 0) expect(ids[i]).toBeGreaterThan(ids[i - 1]);
        expect(Math.abs(values[i] - value[r * n + ids[i]])).toBeLessThanOrEqual(tol(ids[i]));
      }
      const picked = best(ids, values, count, sign);
      const truth = best(
        kept,
        kept.map((j) => value[r * n + j]),
        count,
        sign,
      );
      expect(picked.length).toBe(truth.length);
      picked.forEach((p, i) => {
        expect(Math.abs(p.value - truth[i].value)).toBeLessThanOrEqual(2 * tol(truth[i].id));
        // The same id, unless another entry's score equals it within rounding.
        if (p.id !== truth[i].id)
          expect(Math.abs(value[r * n + p.id] - truth[i].value)).toBeLessThanOrEqual(2 * tol(truth[i].id));
      });
    }
  }
  return screened;
}

describe.skipIf(!screening).each(engines)(
  "native ntExtremes (int8 screening, exact re-scoring), $name",
  ({ gemm }) => {
    // ntExtremes, where a screened result is expected.
    const extremes = (...args: Parameters<NonNullable<Gemm["ntExtremes"]>>): RowExtremes => {
      const result = gemm.ntExtremes!(...args);
      if (result === null) throw new Error("expected a screened result");
      return result;
    };

    it("finds the exact top and bottom entries of random rows, skipping flagged columns", () => {
      // k = 101: not a multiple of the kernels' 4-byte groups or 16-lane dot products; m = 29: a partial tile.
      const [m, k, n, count] = [29, 101, 6007, 10];
      const a = random(m * k, 1);
      const bt = random(n * k, 2);
      const skip = new Uint8Array(n);
      for (let j = 0; j < n; j += 7) skip[j] = 1;
      const result = extremes(a, bt, m, k, n, count, skip);
      expect(checkExtremes(result, a, bt, m, k, n, count, skip)).toBe(m);
      // The point of screening: a few candidates per row, not the whole vocabulary.
      expect(result.value.length / m).toBeLessThan(n / 10);
    });

    it("holds where rows differ in norm by 10⁶, some are zero, and one column is an outlier", () => {
      const [m, k, n, count] = [12, 64, 5000, 25];
      const a = random(m * k, 3);
      const bt = random(n * k, 4);
      const scale = random(n, 5);
      for (let j = 0; j < n; j++) {
        const s = j % 97 === 0 ? 0 : 10 ** (3 * scale[j]);
        for (let i = 0; i < k; i++) bt[j * k + i] *= i === 17 ? 100 * s : s;
      }
      for (let i = 0; i < k; i++) a[5 * k + i] *= i === 17 ? 1000 : 1e-3; // a direction along the outlier
      const result = extremes(a, bt, m, k, n, count, null);
      expect(checkExtremes(result, a, bt, m, k, n, count, null)).toBe(m);
    });

    it("keeps a row whose rounding errors all point along the direction (the bound is reached)", () => {
      // Direction: all ones (exact in int8). Row 10 rounds 0.49 down to 0 in 100 places: its int8 score is 127, its
      // exact one 176, as far off as the bound allows. Row 20's 175 is exact. Only the full bound keeps row 10.
      const [k, n] = [101, 4096];
      const a = new Float32Array(k).fill(1);
      const bt = random(n * k, 22).map((v) => v * 0.01);
      bt.fill(0.49, 10 * k, 11 * k);
      bt.fill(0, 20 * k, 21 * k);
      bt.fill(1, 20 * k, 20 * k + 49);
      bt[10 * k] = 127;
      bt[20 * k] = 127;
      const result = extremes(a, bt, 1, k, n, 1, null);
      const ids = result.index.subarray(result.offsets[0], result.offsets[1]);
      expect([...ids]).toContain(10);
      expect(best(ids, result.value.subarray(result.offsets[0], result.offsets[1]), 1, 1)[0].id).toBe(10);
    });

    it("keeps every tied candidate, so the lower id wins as in a full scan", () => {
      const [m, k, n, count] = [2, 32, 4096, 3];
      const bt = random(n * k, 6);
      const a = random(m * k, 7);
      // Rows 4000, 100 and 2500 are copies of the best row for direction 0: four equal top scores.
      const { value } = oracleScores(a, bt, 1, k, n);
      const top = best(
        Array.from({ length: n }, (_, j) => j),
        value,
        1,
        1,
      )[0].id;
      for (const copy of [4000, 100, 2500]) bt.copyWithin(copy * k, top * k, (top + 1) * k);
      const result = extremes(a, bt, m, k, n, count, null);
      expect(checkExtremes(result, a, bt, m, k, n, count, null)).toBe(m);
      const ids = result.index.subarray(result.offsets[0], result.offsets[1]);
      const values = result.value.subarray(result.offsets[0], result.offsets[1]);
      const picked = best(ids, values, count, 1).map((p) => p.id);
      expect(picked).toEqual([...new Set([100, top, 2500, 4000])].sort((x, y) => x - y).slice(0, count));
    });

    it("lists the first rows not skipped for a zero direction, and leaves non-finite ones to the caller", () => {
      const [m, k, n, count] = [3, 16, 5000, 4];
      const a = random(m * k, 8);
      a.fill(0, 0, k);
      a[k + 3] = Number.NaN;
      const bt = random(n * k, 9);
      const skip = new Uint8Array(n);
      skip[0] = 1;
      skip[2] = 1;
      const result = extremes(a, bt, m, k, n, count, skip);
      expect([...result.screened]).toEqual([1, 0, 1]);
      for (const list of [0, 1]) {
        const from = result.offsets[list];
        const to = result.offsets[list + 1];
        expect([...result.index.subarray(from, to)]).toEqual([1, 3, 4, 5]);
        expect([...result.value.subarray(from, to)]).toEqual([0, 0, 0, 0]);
      }
      expect(result.offsets[3]).toBe(result.offsets[4]); // the NaN row has no candidates
      expect(checkExtremes(result, a, bt, m, k, n, count, skip)).toBe(2);
      // Nothing left for the kernel: only a zero and a NaN direction.
      const none = extremes(a.subarray(0, 2 * k), bt, 2, k, n, count, skip);
      expect([...none.screened]).toEqual([1, 0]);
      expect([...none.index]).toEqual([1, 3, 4, 5, 1, 3, 4, 5]);
    });

    it("leaves a row to the caller when more than 8192 rows tie within the bound", () => {
      // Every row of Bt equal: every score ties, so every row stays a candidate for both lists.
      const [k, n] = [16, 10000];
      const row = random(k, 23);
      const bt = new Float32Array(n * k);
      for (let j = 0; j < n; j++) bt.set(row, j * k);
      const a = random(2 * k, 24);
      a.fill(0, k); // the second direction is zero: still answered
      const result = extremes(a, bt, 2, k, n, 5, null);
      expect([...result.screened]).toEqual([0, 1]);
      expect(result.offsets[1]).toBe(0);
      expect([...result.index.subarray(result.offsets[2], result.offsets[3])]).toEqual([0, 1, 2, 3, 4]);
    });

    it("returns every row when fewer than `count` are not skipped", () => {
      const [m, k, n, count] = [4, 8, 4100, 10];
      const skip = new Uint8Array(n).fill(1);
      for (const j of [7, 4099, 2000]) skip[j] = 0;
      const a = random(m * k, 10);
      const bt = random(n * k, 11);
      const result = extremes(a, bt, m, k, n, count, skip);
      for (let r = 0; r < m; r++) {
        expect([...result.index.subarray(result.offsets[2 * r], result.offsets[2 * r + 1])]).toEqual([
          7, 2000, 4099,
        ]);
      }
      expect(checkExtremes(result, a, bt, m, k, n, count, skip)).toBe(m);
    });

    it("declines what it cannot screen and rejects bad operands", () => {
      const k = 8;
      const small = random(100 * k, 12);
      expect(gemm.ntExtremes!(random(k, 13), small, 1, k, 100, 5, null)).toBeNull(); // small: full product is cheap
      const withInfinity = random(5000 * k, 14);
      withInfinity[77] = Number.POSITIVE_INFINITY;
      expect(gemm.ntExtremes!(random(k, 15), withInfinity, 1, k, 5000, 5, null)).toBeNull();
      expect(gemm.ntExtremes!(random(k, 16), random(5000 * k, 17), 1, k, 5000, 1000, null)).toBeNull(); // count
      expect(() => gemm.ntExtremes!(random(k, 18), random(100, 19), 1, k, 5000, 5, null)).toThrow(
        /too short/,
      );
      expect(() =>
        gemm.ntExtremes!(random(k, 20), random(5000 * k, 21), 1, k, 5000, 5, new Uint8Array(10)),
      ).toThrow(/skip/);
    });
  },
);
