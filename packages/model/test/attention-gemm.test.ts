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
