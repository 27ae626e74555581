import { describe, expect, it } from "vitest";
import { seededRandom, topIndices } from "../src/index.js";

/** The obvious definition: sort every index by value (descending), ties to the lower index. */
function bySorting(values: Float32Array, k: number): number[] {
  const idx = Array.from({ length: values.length }, (_, i) => i);
  idx.sort((a, b) => values[b] - values[a] || a - b);
  return idx.slice(0, k);
}

describe("TopK latent selection", () => {
  it("selects the same set as sorting, with ties to the lower index", () => {
    const rand = seededRandom(5);
    for (let trial = 0; trial < 300; trial++) {
      const m = 1 + Math.floor(rand() * 200);
      const k = 1 + Math.floor(rand() * 40);
      // Coarse values make many ties.
      const values = Float32Array.from({ length: m }, () => Math.round((rand() * 2 - 1) * 6) / 2);
      const got = topIndices(values, k).sort((a, b) => a - b);
      const expected = bySorting(values, k).sort((a, b) => a - b);
      expect(got).toEqual(expected);
    }
  });

  it("handles k ≥ m and k = 0", () => {
    expect(topIndices(Float32Array.of(1, 3, 2), 5).sort()).toEqual([0, 1, 2]);
    expect(topIndices(Float32Array.of(1, 3, 2), 0)).toEqual([]);
  });
});
