import { describe, expect, it } from "vitest";
import {
  allocateF32,
  isWasmResident,
  recyclingArrays,
  wasmArrayRecycler,
  wasmElementwise,
  wasmGemm,
} from "../src/index.js";
import { random } from "./gemm-oracle.js";

const kernels = wasmElementwise();

/** The plain float64 loop that columnStatistics replaces (the collator's original code). */
function loopStatistics(values: Float32Array, rows: number, cols: number) {
  const max = new Float32Array(cols).fill(Number.NEGATIVE_INFINITY);
  const sum = new Float64Array(cols);
  const sumSq = new Float64Array(cols);
  const positives = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const v = values[r * cols + c];
      if (v > max[c]) max[c] = v;
      sum[c] += v;
      sumSq[c] += v * v;
      if (v > 0) positives[c]++;
    }
  }
  return { max, sum, sumSq, positives };
}

describe.skipIf(!kernels)("wasmElementwise().columnStatistics", () => {
  it("equals the float64 loop bit for bit, NaN, infinities and ragged widths included", () => {
    for (const [rows, cols] of [
      [1, 1],
      [3, 5],
      [64, 3075],
      [7, 8],
    ]) {
      const values = random(rows * cols, rows + cols);
      values[0] = Number.NaN;
      if (values.length > 2) values[2] = Number.POSITIVE_INFINITY;
      if (values.length > 3) values[3] = -0;
      const got = kernels!.columnStatistics(values, rows, cols);
      const want = loopStatistics(values, rows, cols);
      expect(Array.from(got.max)).toEqual(Array.from(want.max));
      expect(Array.from(got.sum)).toEqual(Array.from(want.sum));
      expect(Array.from(got.sumSq)).toEqual(Array.from(want.sumSq));
      expect(Array.from(got.positives)).toEqual(Array.from(want.positives));
    }
  });

  it("reads values inside WASM memory in place and rejects a shape the values cannot fill", () => {
    const values = allocateF32(6);
    values.set([1, -2, 3, 4, 5, -6]);
    const got = kernels!.columnStatistics(values.subarray(0, 6), 2, 3);
    expect(Array.from(got.max)).toEqual([4, 5, 3]);
    expect(Array.from(got.positives)).toEqual([2, 1, 1]);
    expect(() => kernels!.columnStatistics(values, 4, 3)).toThrow(RangeError);
    expect(() => kernels!.columnStatistics(values, 1.5, 2)).toThrow(RangeError);
  });

  it("geluNewBackward rejects a dy shorter than x", () => {
    expect(() => kernels!.geluNewBackward(new Float32Array(4), new Float32Array(3))).toThrow(RangeError);
  });

  it("blockExtremes bounds every run like a plain loop, skipping NaN and excluded indices", () => {
    for (const n of [1, 5, 64, 1000, 50257]) {
      const values = random(n, n);
      values[n - 1] = Number.NaN;
      if (n > 3) values[2] = Number.POSITIVE_INFINITY;
      const excluded = new Uint8Array(n);
      for (let i = 0; i < n; i += 7) excluded[i] = 1;
      for (const mask of [undefined, excluded]) {
        const got = kernels!.blockExtremes(values, 64, mask);
        const runs = Math.ceil(n / 64);
        expect(got.max.length).toBe(runs);
        for (let r = 0; r < runs; r++) {
          let hi = Number.NEGATIVE_INFINITY;
          let lo = Number.POSITIVE_INFINITY;
          for (let i = r * 64; i < Math.min(n, (r + 1) * 64); i++) {
            if (mask?.[i] === 1 || Number.isNaN(values[i])) continue;
            hi = Math.max(hi, values[i]);
            lo = Math.min(lo, values[i]);
          }
          expect(got.max[r]).toBe(hi);
          expect(got.min[r]).toBe(lo);
        }
      }
    }
    expect(() => kernels!.blockExtremes(new Float32Array(8), 6)).toThrow(RangeError);
  });

  it("runSummary bounds and sums every run like a plain float64 loop; a NaN or ∞ shows in its run's sum", () => {
    for (const n of [1, 5, 64, 130, 50257]) {
      const values = random(n, n + 1);
      if (n > 3) values[2] = Number.POSITIVE_INFINITY;
      if (n > 100) values[100] = Number.NaN;
      const got = kernels!.runSummary(values, 64);
      const runs = Math.ceil(n / 64);
      expect([got.max.length, got.min.length, got.sum.length]).toEqual([runs, runs, runs]);
      for (let r = 0; r < runs; r++) {
        let hi = Number.NEGATIVE_INFINITY;
        let lo = Number.POSITIVE_INFINITY;
        let sum = 0;
        let magnitude = 0;
        for (let i = r * 64; i < Math.min(n, (r + 1) * 64); i++) {
          sum += values[i];
          magnitude += Math.abs(values[i]);
          if (Number.isNaN(values[i])) continue;
          hi = Math.max(hi, values[i]);
          lo = Math.min(lo, values[i]);
        }
        expect(got.max[r]).toBe(hi);
        expect(got.min[r]).toBe(lo);
        if (Number.isFinite(sum)) expect(Math.abs(got.sum[r] - sum)).toBeLessThanOrEqual(1e-12 * magnitude);
        else expect(got.sum[r]).toBe(sum); // +∞ stays +∞, NaN stays NaN
      }
    }
    expect(() => kernels!.runSummary(new Float32Array(8), 6)).toThrow(RangeError);
  });

  it("causalSoftmax stays right after GEMM edge tiles used their buffers (static data kept clear of them)", () => {
    // Partial 4×8 tiles go through the tile buffers in page 0; the kernel module's Math.exp table lives there too.
    const c = new Float32Array(3 * 5);
    wasmGemm().nn(random(3 * 7, 1), random(7 * 5, 2), c, 3, 7, 5);
    const [T, H] = [6, 2];
    const logits = random(T * T * H, 3);
    const probs = kernels!.causalSoftmax(logits, T, H);
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < H; h++) {
        let max = Number.NEGATIVE_INFINITY;
        for (let u = 0; u <= t; u++) max = Math.max(max, logits[(t * T + u) * H + h]);
        let sum = 0;
        for (let u = 0; u <= t; u++) sum += Math.exp(logits[(t * T + u) * H + h] - max);
        for (let u = 0; u < T; u++) {
          const want = u <= t ? Math.exp(logits[(t * T + u) * H + h] - max) / sum : 0;
          expect(Math.abs(probs[(t * T + u) * H + h] - want)).toBeLessThanOrEqual(1e-7);
        }
      }
    }
  });

  it("add: float32 sums, the same whether the operands and result live in WASM memory or not", () => {
    const a = random(1031, 4);
    const b = random(1031, 5);
    const sum = kernels!.add(a, b);
    expect(Array.from(sum)).toEqual(Array.from(a, (v, i) => Math.fround(v + b[i])));
    expect(() => kernels!.add(a, b.subarray(1))).toThrow(RangeError);
  });

  it("write their results straight into a job's WASM-resident arrays, with the values of the copying path", () => {
    const [T, H, dim] = [40, 3, 48];
    const x = random(T * dim, 6);
    const gain = random(dim, 7);
    const bias = random(dim, 8);
    const logits = random(T * T * H, 9);
    const qkv = random(T * 3 * dim, 10);
    const all = () => {
      const ln = kernels!.layerNorm(x, gain, bias, T, dim, 1e-5);
      const { q, k, v } = kernels!.splitQkv(qkv, T, dim, 0.125);
      return [
        kernels!.geluNew(x),
        kernels!.geluNewBackward(x, qkv),
        kernels!.causalSoftmax(logits, T, H),
        kernels!.add(x, qkv.subarray(0, T * dim)),
        ln.out,
        ln.normalized,
        ln.scale,
        q,
        k,
        v,
      ];
    };
    const copied = all();
    expect(copied.some(isWasmResident)).toBe(false);
    const recycler = wasmArrayRecycler();
    for (let round = 0; round < 2; round++) {
      // The second round gets the first round's arrays back, old values in them.
      recyclingArrays(recycler, () => {
        const direct = all();
        // All but the T-float scale (too short to recycle) live in WASM memory.
        expect(direct.filter(isWasmResident).length).toBe(direct.length - 1);
        direct.forEach((array, i) => {
          expect(Array.from(array)).toEqual(Array.from(copied[i]));
        });
      });
    }
    recycler.clear();
  });

  it("gatherColumns copies any columns, in the order given, runs of four and odd row counts included", () => {
    for (const [rows, cols] of [
      [1, 1],
      [7, 12],
      [64, 3075],
      [2079, 12],
    ]) {
      const values = random(rows * cols, rows + cols);
      // Runs of four adjacent columns, a run broken by a gap, repeats, a descending pair, the last column.
      const picks = [0, 1, 2, 3, 4, 6, 7, 8, 10, 9, 2, cols - 1].filter((c) => c < cols);
      const columns = Int32Array.from(picks);
      for (const out of [new Float32Array(3 + picks.length * rows), allocateF32(3 + picks.length * rows)]) {
        out.fill(-7);
        kernels!.gatherColumns(values, rows, cols, columns, out, 3);
        expect(Array.from(out.subarray(0, 3))).toEqual([-7, -7, -7]);
        picks.forEach((c, j) => {
          const want = Array.from({ length: rows }, (_, r) => values[r * cols + c]);
          expect(Array.from(out.subarray(3 + j * rows, 3 + (j + 1) * rows))).toEqual(want);
        });
      }
    }
    const values = random(4 * 5, 1);
    const out = new Float32Array(8);
    expect(() => kernels!.gatherColumns(values, 4, 5, Int32Array.of(1, 5), out, 0)).toThrow(/column 5/);
    expect(() => kernels!.gatherColumns(values, 4, 5, Int32Array.of(-1), out, 0)).toThrow(/column -1/);
    expect(() => kernels!.gatherColumns(values, 4, 5, Int32Array.of(1, 2, 3), out, 0)).toThrow(/do not fit/);
  });
});
