// Shared by the GEMM tests: deterministic inputs, an independent float64 oracle and the operand placements.
import { expect } from "vitest";
import { allocateF32, type Gemm, referenceGemm } from "../src/index.js";

export type Variant = "nn" | "nt" | "tn";
export const VARIANTS: Variant[] = ["nn", "nt", "tn"];

/** Deterministic uniform values in [-1, 1). */
export function random(length: number, seed: number): Float32Array {
  let state = (seed * 2654435761) >>> 0 || 1;
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    out[i] = (state >>> 0) / 2147483648 - 1;
  }
  return out;
}

/**
 * Independent oracle: float64 triple loop straight from the definition, indexing each layout explicitly.
 * Returns the expected C and, per element, Σ|a·b| (which bounds the float32 rounding error).
 */
export function oracle(
  variant: Variant,
  a: Float32Array,
  b: Float32Array,
  c0: Float32Array | null,
  m: number,
  k: number,
  n: number,
): { expected: Float64Array; magnitude: Float64Array } {
  const expected = new Float64Array(m * n);
  const magnitude = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let sum = c0 ? c0[i * n + j] : 0;
      let mag = Math.abs(sum);
      for (let p = 0; p < k; p++) {
        const aip = variant === "tn" ? a[p * m + i] : a[i * k + p];
        const bpj = variant === "nt" ? b[j * k + p] : b[p * n + j];
        sum += aip * bpj;
        mag += Math.abs(aip * bpj);
      }
      expected[i * n + j] = sum;
      magnitude[i * n + j] = mag;
    }
  }
  return { expected, magnitude };
}

/** Largest |got - expected| / bound, where bound is the float32 accumulation error bound (k+2)·ε·Σ|a·b|. */
export function worstError(
  got: Float32Array,
  expected: Float64Array,
  magnitude: Float64Array,
  k: number,
): number {
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const bound = (k + 2) * 2 ** -24 * magnitude[i] + 1e-30;
    worst = Math.max(worst, Math.abs(got[i] - expected[i]) / bound);
  }
  return worst;
}

export interface Placement {
  /** Where each operand lives: plain JS array, allocateF32 block, or a view at an odd offset inside WASM memory. */
  a: "js" | "wasm" | "wasm-offset";
  b: "js" | "wasm" | "wasm-offset";
  c: "js" | "wasm" | "wasm-offset";
}

export function place(values: Float32Array, where: Placement["a"], extra = 0): Float32Array {
  if (where === "js") {
    const out = new Float32Array(values.length + extra);
    out.set(values);
    return out;
  }
  // One float of offset makes the view 4-byte but not 16-byte aligned.
  const offset = where === "wasm-offset" ? 1 : 0;
  const block = allocateF32(values.length + offset + extra);
  const view = block.subarray(offset);
  view.set(values);
  return view;
}

export function runCase(
  gemm: Gemm,
  variant: Variant,
  m: number,
  k: number,
  n: number,
  accumulate: boolean,
  seed: number,
  placement: Placement = { a: "js", b: "js", c: "js" },
): number {
  const aValues = random(m * k, seed);
  const bValues = random(k * n, seed + 1);
  const cValues = random(m * n, seed + 2);
  const a = place(aValues, placement.a);
  const b = place(bValues, placement.b);
  // C gets 3 spare elements that must stay untouched.
  const c = place(cValues, placement.c, 3);
  c.fill(7, m * n);
  gemm[variant](a, b, c, m, k, n, accumulate);
  const { expected, magnitude } = oracle(variant, aValues, bValues, accumulate ? cValues : null, m, k, n);
  expect(Array.from(c.subarray(m * n))).toEqual([7, 7, 7]);
  return worstError(c, expected, magnitude, k);
}

// Shapes around every blocking edge: 4-row and 8-column tiles, 2-column dot tiles, 4-wide k chunks, the 256-column
// panel, the 1024-deep k block and the 64-row block of the transposed path.
export const EDGE_SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [1, 7, 1],
  [2, 3, 5],
  [3, 4, 8],
  [4, 8, 8],
  [5, 5, 9],
  [7, 13, 11],
  [8, 16, 16],
  [9, 2, 17],
  [1, 64, 257],
  [13, 3, 255],
  [33, 17, 263],
  [4, 1029, 9],
  [6, 2051, 3],
  [67, 21, 13],
  [70, 9, 6],
];

/** Worst error ratio over operands placed inside and outside WASM memory, at odd alignments, every variant. */
export function placementSweep(gemm: Gemm): number {
  const placements: Placement[] = [
    { a: "wasm", b: "wasm", c: "wasm" },
    { a: "js", b: "wasm", c: "js" },
    { a: "wasm-offset", b: "wasm-offset", c: "wasm-offset" },
    { a: "wasm", b: "js", c: "wasm-offset" },
  ];
  let worst = 0;
  for (const placement of placements) {
    for (const [m, k, n] of [
      [5, 19, 23],
      [32, 64, 40],
    ]) {
      for (const variant of VARIANTS) {
        for (const accumulate of [false, true]) {
          worst = Math.max(worst, runCase(gemm, variant, m, k, n, accumulate, m + k + n, placement));
        }
      }
    }
  }
  return worst;
}

/** Worst error ratio against every variant over `shapes` (from EDGE_SHAPES and the like), with and without accumulate. */
export function edgeSweep(gemm: Gemm, shapes: readonly (readonly [number, number, number])[]): number {
  let worst = 0;
  for (const [m, k, n] of shapes) {
    for (const variant of VARIANTS) {
      for (const accumulate of [false, true]) {
        worst = Math.max(worst, runCase(gemm, variant, m, k, n, accumulate, m * 1000 + k * 10 + n));
      }
    }
  }
  return worst;
}

/**
 * Worst error ratio against referenceGemm over `trials` random shapes up to the given limits (both sides carry
 * float32 rounding error, so the bound is twice the oracle's). `pick` chooses the GEMM per trial.
 */
export function randomShapesSweep(
  pick: (trial: number) => Gemm,
  limits: { m: number; k: number; n: number },
  seed: number,
  trials = 60,
): number {
  let state = seed;
  const next = (limit: number) => {
    state = (state * 1103515245 + 12345) >>> 0;
    return 1 + (state % limit);
  };
  let worst = 0;
  for (let trial = 0; trial < trials; trial++) {
    const [m, k, n] = [next(limits.m), next(limits.k), next(limits.n)];
    const variant = VARIANTS[trial % 3];
    const accumulate = trial % 2 === 1;
    const a = random(m * k, trial);
    const b = random(k * n, trial + 1);
    const c0 = random(m * n, trial + 2);
    const got = c0.slice();
    const want = c0.slice();
    pick(trial)[variant](a, b, got, m, k, n, accumulate);
    referenceGemm[variant](a, b, want, m, k, n, accumulate);
    const { magnitude } = oracle(variant, a, b, accumulate ? c0 : null, m, k, n);
    for (let i = 0; i < m * n; i++) {
      const bound = 2 * (k + 2) * 2 ** -24 * magnitude[i] + 1e-30;
      worst = Math.max(worst, Math.abs(got[i] - want[i]) / bound);
    }
  }
  return worst;
}
