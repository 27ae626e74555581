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
  it("layerNormForward: the same float64 arithmetic, bit for bit", () => {
    const [rows, dim] = [7, 37];
    const x = randomValues(rows * dim, 1, 3);
    const gain = randomValues(dim, 2, 3);
    const bias = randomValues(dim, 3, 3);
    const fast = layerNormForward(x, gain, bias, rows, dim, 1e-5);
    const loop = layerNormForwardLoop(x, gain, bias, rows, dim, 1e-5);
    expect(Array.from(fast.out)).toEqual(Array.from(loop.out));
    expect(Array.from(fast.saved.normalized)).toEqual(Array.from(loop.saved.normalized));
    expect(Array.from(fast.saved.scale)).toEqual(Array.from(loop.saved.scale));
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
