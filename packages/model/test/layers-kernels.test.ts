// Layers that run as WebAssembly kernels where available, against their TypeScript loops.
import { wasmElementwise } from "@tdb/tensor";
import { describe, expect, it } from "vitest";
import {
  addBiasRows,
  attentionLogits,
  attentionSoftmax,
  attentionSoftmaxLoop,
  layerNormForward,
  layerNormForwardLoop,
  splitQkv,
} from "../src/layers.js";
import { randomValues } from "./random-values.js";

describe.skipIf(!wasmElementwise())("WebAssembly layer kernels equal the TypeScript loops", () => {
  it("layerNormForward: float64 statistics summed in another order, so within a float32 rounding of the loop", () => {
    for (const [rows, dim] of [
      [7, 37],
      [5, 768],
    ]) {
      const x = randomValues(rows * dim, 1, 3);
      const gain = randomValues(dim, 2, 3);
      const bias = randomValues(dim, 3, 3);
      const fast = layerNormForward(x, gain, bias, rows, dim, 1e-5);
      const loop = layerNormForwardLoop(x, gain, bias, rows, dim, 1e-5);
      for (const [a, b] of [
        [fast.out, loop.out],
        [fast.saved.normalized, loop.saved.normalized],
        [fast.saved.scale, loop.saved.scale],
      ]) {
        for (let i = 0; i < b.length; i++)
          expect(Math.abs(a[i] - b[i])).toBeLessThanOrEqual(1.2e-7 * Math.abs(b[i]) + 1e-12);
      }
    }
  });

  it("attentionSoftmax: within a float32 rounding of the loop, zero above the diagonal", () => {
    const shape = { tokens: 11, heads: 3, headDim: 4 };
    const logits = attentionLogits(randomValues(11 * 12, 4, 3), randomValues(11 * 12, 5, 3), shape);
    const fast = attentionSoftmax(logits, shape);
    const loop = attentionSoftmaxLoop(logits, shape);
    for (let i = 0; i < loop.length; i++)
      expect(Math.abs(fast[i] - loop[i])).toBeLessThanOrEqual(1.2e-7 * loop[i]);
    expect(fast[(0 * 11 + 5) * 3 + 1]).toBe(0);
  });

  it("attentionSoftmax: within a float32 rounding of the loop over wide logits, −∞, NaN and odd head counts", () => {
    for (const heads of [1, 5, 12]) {
      const shape = { tokens: 23, heads, headDim: 2 };
      const logits = randomValues(23 * 23 * heads, heads, 300);
      logits[(7 * 23 + 2) * heads] = Number.NEGATIVE_INFINITY;
      logits[(9 * 23 + 0) * heads + heads - 1] = -5000;
      logits[(11 * 23 + 4) * heads] = Number.NaN;
      const fast = attentionSoftmax(logits, shape);
      const loop = attentionSoftmaxLoop(logits, shape);
      for (let i = 0; i < loop.length; i++) {
        if (Number.isNaN(loop[i])) expect(fast[i], `${i}`).toBeNaN();
        else expect(Math.abs(fast[i] - loop[i]), `${i}`).toBeLessThanOrEqual(1.2e-7 * loop[i]);
      }
      expect(fast.some((p) => p > 0 && p < 1e-30)).toBe(true);
    }
  });

  it("addBiasRows: in place, for arrays inside and outside WASM memory", () => {
    const x = randomValues(5 * 6, 6, 3);
    const bias = randomValues(6, 7, 3);
    const want = x.map((v, i) => Math.fround(v + bias[i % 6]));
    addBiasRows(x, bias, 5, 6);
    expect(Array.from(x)).toEqual(Array.from(want));
  });

  it("splitQkv: q and k scaled, v copied, per token", () => {
    const [T, d] = [5, 10];
    const qkv = randomValues(T * 3 * d, 8, 3);
    const { q, k, v } = splitQkv(qkv, T, d, 0.3535533905932738);
    for (let t = 0; t < T; t++) {
      for (let i = 0; i < d; i++) {
        const o = t * 3 * d + i;
        // Within a float32 rounding of the float64 product (the kernel multiplies in float32).
        expect(Math.abs(q[t * d + i] - qkv[o] * 0.3535533905932738)).toBeLessThanOrEqual(
          1.2e-7 * Math.abs(qkv[o]),
        );
        expect(Math.abs(k[t * d + i] - qkv[o + d] * 0.3535533905932738)).toBeLessThanOrEqual(
          1.2e-7 * Math.abs(qkv[o + d]),
        );
        expect(v[t * d + i]).toBe(qkv[o + 2 * d]);
      }
    }
  });
});
