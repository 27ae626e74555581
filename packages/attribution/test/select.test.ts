import { describe, expect, it } from "vitest";
import {
  largest,
  largestAndSmallest,
  type Picked,
  RUN,
  smallest,
  summarize,
  topAndBottom,
} from "../src/select.js";

// Small integer values make ties common; the reference is a full sort with TDB's tie rule (earlier position wins).
function randomArrays(seed: number, count: number, length: () => number): Float32Array[] {
  let s = seed;
  const next = () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
  return Array.from({ length: count }, () =>
    Float32Array.from({ length: length() }, () => Math.floor(next() * 21) - 10 + (next() < 0.3 ? 0.5 : 0)),
  );
}

function reference(arrays: readonly Float32Array[], k: number): { top: Picked[]; bottom: Picked[] } {
  const all: Picked[] = [];
  arrays.forEach((values, source) => {
    values.forEach((value, index) => {
      if (!Number.isNaN(value)) all.push({ source, index, value });
    });
  });
  const position = (a: Picked, b: Picked) => a.source - b.source || a.index - b.index;
  const desc = (a: Picked, b: Picked) => b.value - a.value || position(a, b);
  const top = [...all].sort(desc).slice(0, k);
  const bottom = [...all]
    .sort((a, b) => a.value - b.value || position(a, b))
    .slice(0, k)
    .sort(desc);
  return { top, bottom };
}

/**
 * The n largest (descending, earlier index first among ties) and n smallest (ascending; among equal values the
 * later index comes first — TDB's reversed block) of the kept indices, by full sorts.
 */
function sortedExtremes(
  values: Float32Array,
  kept: number[],
  n: number,
): { wantTop: number[]; wantBottom: number[] } {
  const wantTop = [...kept].sort((a, b) => values[b] - values[a] || a - b).slice(0, n);
  const wantBottom = [...kept]
    .sort((a, b) => values[a] - values[b] || a - b)
    .slice(0, n)
    .sort((a, b) => values[a] - values[b] || b - a);
  return { wantTop, wantBottom };
}

describe("topAndBottom", () => {
  it("equals a full sort, ties going to the earlier position, for every k", () => {
    for (let seed = 1; seed <= 30; seed++) {
      const arrays = randomArrays(seed, 1 + (seed % 4), () => (seed * 7) % 40);
      for (const k of [0, 1, 2, 5, 17, 200]) expect(topAndBottom(arrays, k)).toEqual(reference(arrays, k));
    }
  });

  it("never picks NaN and keeps infinities in order", () => {
    const values = Float32Array.from([
      Number.NaN,
      3,
      Number.POSITIVE_INFINITY,
      -1,
      Number.NaN,
      Number.NEGATIVE_INFINITY,
    ]);
    const { top, bottom } = topAndBottom([values], 3);
    expect(top.map((p) => p.index)).toEqual([2, 1, 3]);
    expect(bottom.map((p) => p.index)).toEqual([1, 3, 5]);
    expect(topAndBottom([values], 10).top).toHaveLength(4);
  });
});

describe("largest / smallest", () => {
  it("equal a full sort without the excluded indices", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const [values] = randomArrays(seed, 1, () => 500);
      const excluded = new Set(Array.from({ length: 60 }, (_, i) => (i * 37 + seed) % 500));
      const kept = [...values.keys()].filter((i) => !excluded.has(i));
      for (const n of [1, 10, 100]) {
        const { wantTop, wantBottom } = sortedExtremes(values, kept, n);
        expect(largest(values, n, excluded)).toEqual(wantTop);
        expect(smallest(values, n, excluded)).toEqual(wantBottom);
        expect(largestAndSmallest(values, n, excluded)).toEqual({ largest: wantTop, smallest: wantBottom });
      }
    }
  });

  it("returns fewer entries than asked when too few are left", () => {
    const values = Float32Array.from([5, 4, 3]);
    expect(largest(values, 10, new Set([1]))).toEqual([0, 2]);
    expect(smallest(values, 10)).toEqual([2, 1, 0]);
  });
});

// Arrays long enough (≥ 8192 values in all) for the SIMD pre-pass that skips runs which cannot hold a top or
// bottom value; the answers must equal the full sort exactly, ties, NaN, infinities and exclusions included.
describe("selection over long arrays (SIMD pre-pass)", () => {
  it("topAndBottom equals a full sort across several arrays", () => {
    for (let seed = 1; seed <= 6; seed++) {
      const arrays = randomArrays(seed, 1 + (seed % 3), () => 4000 + seed * 1111);
      arrays[0][5] = Number.NaN;
      arrays[arrays.length - 1][700] = Number.POSITIVE_INFINITY;
      arrays[0][3000] = Number.NEGATIVE_INFINITY;
      for (const k of [1, 10, 100, 1000]) expect(topAndBottom(arrays, k)).toEqual(reference(arrays, k));
    }
  });

  it("largestAndSmallest equals a full sort without the excluded indices (excluded extremes included)", () => {
    for (let seed = 1; seed <= 6; seed++) {
      const [values] = randomArrays(seed, 1, () => 50257);
      // Excluded indices hold the most extreme values: a pre-pass that counted them would skip real answers.
      const excluded = new Set(Array.from({ length: 300 }, (_, i) => (i * 163 + seed) % values.length));
      for (const i of excluded) values[i] = i % 2 === 0 ? 1000 : -1000;
      values[17] = Number.NaN;
      const kept = [...values.keys()].filter((i) => !excluded.has(i) && !Number.isNaN(values[i]));
      for (const n of [1, 10, 100]) {
        const { wantTop, wantBottom } = sortedExtremes(values, kept, n);
        expect(largestAndSmallest(values, n, excluded)).toEqual({ largest: wantTop, smallest: wantBottom });
      }
    }
  });
});

describe("summarize (row sums, finiteness and run bounds taken in one pass)", () => {
  // Below and above the size where the SIMD kernel takes over; rows of whole runs and rows of 12 values.
  const shapes: [number, number][] = [
    [40, 12],
    [32, 3072],
    [1000, 12],
    [3, 64 * 5],
  ];
  it.each(shapes)(
    "%i rows of %i values: equal to plain loops, and selection with it equals one without",
    (rows, width) => {
      const values = Float32Array.from(
        { length: rows * width },
        (_, i) => (Math.sin(i * 12.9898) * 43758.5453) % 1,
      );
      const s = summarize(values, width);
      expect(s.finite).toBe(true);
      for (let r = 0; r < rows; r++) {
        let sum = 0;
        let magnitude = 0;
        for (let i = r * width; i < (r + 1) * width; i++) {
          sum += values[i];
          magnitude += Math.abs(values[i]);
        }
        expect(Math.abs(s.rowSums[r] - sum)).toBeLessThanOrEqual(1e-12 * magnitude);
      }
      for (let run = 0; run * RUN < values.length; run++) {
        const slice = values.subarray(run * RUN, (run + 1) * RUN);
        expect(s.runMax[run]).toBe(Math.max(...slice));
        expect(s.runMin[run]).toBe(Math.min(...slice));
      }
      const k = 7;
      expect(topAndBottom([values, values.subarray(5)], k, [s, undefined])).toEqual(
        topAndBottom([values, values.subarray(5)], k),
      );
    },
  );

  it("reports NaN and infinities as not finite, on both sizes", () => {
    for (const n of [100, 20000]) {
      for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
        const values = new Float32Array(n).fill(0.5);
        values[n - 3] = bad;
        expect(summarize(values, n / 4).finite).toBe(false);
      }
      expect(summarize(new Float32Array(n).fill(-2), n / 4).finite).toBe(true);
    }
  });
});
