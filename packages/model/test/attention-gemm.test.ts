// The attention layers' per-head GEMM path against their plain loops (which the finite-difference tests check),
// on every GEMM engine available here.
import { type Gemm, isWasmGemmAvailable, referenceGemm, wasmGemm } from "@tdb/tensor";
import { nativeGemm, nativeGemmStatus } from "@tdb/tensor/node";
import { describe, expect, it } from "vitest";
import {
  type AttentionShape,
  attentionLogits,
  attentionLogitsBackward,
  attentionMix,
  attentionMixBackward,
  attentionSoftmax,
} from "../src/layers.js";
import { randomValues } from "./random-values.js";

function expectClose(got: Float32Array, want: Float32Array): void {
  expect(got.length).toBe(want.length);
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    if (want[i] === Number.NEGATIVE_INFINITY) expect(got[i]).toBe(Number.NEGATIVE_INFINITY);
    else worst = Math.max(worst, Math.abs(got[i] - want[i]) / (1e-6 + Math.abs(want[i])));
  }
  expect(worst).toBeLessThan(1e-4);
}

function expectNear(got: Float32Array, want: Float32Array, tolerance: number): void {
  expect(got.length).toBe(want.length);
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    if (want[i] === Number.NEGATIVE_INFINITY) expect(got[i]).toBe(Number.NEGATIVE_INFINITY);
    else worst = Math.max(worst, Math.abs(got[i] - want[i]));
  }
  expect(worst).toBeLessThan(tolerance);
}

const engines: [string, Gemm][] = [["reference", referenceGemm]];
if (isWasmGemmAvailable()) engines.push(["wasm", wasmGemm()]);
if (nativeGemmStatus().available) engines.push(["native", nativeGemm()]);

describe.each(engines)("attention as per-head products (%s GEMM)", (_name, gemm) => {
  const shape: AttentionShape = { tokens: 13, heads: 3, headDim: 5 };
  const { tokens: T, heads: H, headDim: Dh } = shape;
  const q = randomValues(T * H * Dh, 1);
  const k = randomValues(T * H * Dh, 2);
  const v = randomValues(T * H * Dh, 3);

  it("forward: logits and mixed values equal the loops", () => {
    expectClose(attentionLogits(q, k, shape, gemm), attentionLogits(q, k, shape));
    const probs = attentionSoftmax(attentionLogits(q, k, shape), shape);
    expectClose(attentionMix(probs, v, shape, gemm), attentionMix(probs, v, shape));
  });

  it("backward: dP, dv, dq and dk equal the loops, ignoring whatever lies above the diagonal", () => {
    const probs = attentionSoftmax(attentionLogits(q, k, shape), shape);
    // An edit could leave values above the diagonal; neither path may use them.
    const edited = probs.slice();
    const dLogits = randomValues(T * T * H, 5);
    for (let t = 0; t < T; t++)
      for (let u = t + 1; u < T; u++) for (let h = 0; h < H; h++) edited[(t * T + u) * H + h] = 9;
    const dOut = randomValues(T * H * Dh, 4);
    const loopMix = attentionMixBackward(dOut, edited, v, shape);
    const gemmMix = attentionMixBackward(dOut, edited, v, shape, gemm);
    expectClose(gemmMix.dProbs, loopMix.dProbs);
    expectClose(gemmMix.dv, loopMix.dv);
    expectClose(attentionMix(edited, v, shape, gemm), attentionMix(edited, v, shape));
    const loopQk = attentionLogitsBackward(dLogits, q, k, shape);
    const gemmQk = attentionLogitsBackward(dLogits, q, k, shape, gemm);
    expectClose(gemmQk.dq, loopQk.dq);
    expectClose(gemmQk.dk, loopQk.dk);
  });
});

describe.each([["loops", undefined] as [string, Gemm | undefined], ...engines])(
  "attention over several sequences at once (%s)",
  (_name, gemm) => {
    // Head sizes that take every path of the native all-heads kernels: 64-wide runs, 8-wide runs, single columns.
    for (const headDim of [5, 16, 72, 67]) {
      it(`each sequence's part equals its own pass (head size ${headDim})`, () => {
        const B = 3;
        const one: AttentionShape = { tokens: 11, heads: 3, headDim };
        const many: AttentionShape = { ...one, sequences: B };
        const { tokens: T, heads: H } = one;
        const rows = T * H * headDim;
        const pairs = T * T * H;
        const q = randomValues(B * rows, 11);
        const k = randomValues(B * rows, 12);
        const v = randomValues(B * rows, 13);
        const logits = attentionLogits(q, k, many, gemm);
        const probs = attentionSoftmax(logits, many);
        const mixed = attentionMix(probs, v, many, gemm);
        for (let b = 0; b < B; b++) {
          const at = (x: Float32Array, size: number) => x.subarray(b * size, (b + 1) * size);
          const ownLogits = attentionLogits(at(q, rows), at(k, rows), one, gemm);
          expect(at(logits, pairs)).toEqual(ownLogits);
          const ownProbs = attentionSoftmax(ownLogits, one);
          expect(at(probs, pairs)).toEqual(ownProbs);
          expect(at(mixed, rows)).toEqual(attentionMix(ownProbs, at(v, rows), one, gemm));
          // And within float32 rounding of the plain loops (which the finite-difference tests check); absolute, as
          // sums of ±1 terms may cancel to near zero.
          expectNear(ownLogits, attentionLogits(at(q, rows), at(k, rows), one), 1e-5);
          expectNear(at(mixed, rows), attentionMix(ownProbs, at(v, rows), one), 1e-5);
        }
      });
    }

    it("refuses a sequence count that is not a positive integer", () => {
      const shape: AttentionShape = { tokens: 9, heads: 2, headDim: 4, sequences: 1.5 };
      const x = randomValues(9 * 2 * 4 * 2, 1);
      expect(() => attentionLogits(x, x, shape, gemm)).toThrow(/sequences must be a positive integer/);
    });
  },
);

describe.runIf(nativeGemmStatus().available)(
  "the native all-heads kernels at GPT-2 small's attention shape",
  () => {
    it("give the native GEMM's per-head products bit for bit (one fused multiply-add chain per value, same order)", () => {
      const gemm = nativeGemm();
      expect(gemm.heads).toBeDefined();
      const shape: AttentionShape = { tokens: 64, heads: 12, headDim: 64 };
      const { tokens: T, heads: H, headDim: Dh } = shape;
      const q = randomValues(T * H * Dh, 21);
      const k = randomValues(T * H * Dh, 22);
      const v = randomValues(T * H * Dh, 23);
      const logits = attentionLogits(q, k, shape, gemm);
      const probs = attentionSoftmax(logits, shape);
      const mixed = attentionMix(probs, v, shape, gemm);
      // The per-head path: the same GEMM object without its all-heads kernels.
      const perHead: Gemm = { nn: gemm.nn, nt: gemm.nt, tn: gemm.tn };
      expect(logits).toEqual(attentionLogits(q, k, shape, perHead));
      expect(mixed).toEqual(attentionMix(probs, v, shape, perHead));
    });
  },
);
