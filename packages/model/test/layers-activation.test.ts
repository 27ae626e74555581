import { wasmElementwise } from "@tdb/tensor";
import { describe, expect, it } from "vitest";
import {
  activationBackward,
  activationBackwardLoop,
  activationForward,
  activationForwardLoop,
  tanhFloat32,
} from "../src/layers.js";

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const exactGeluNew = (v: number) => 0.5 * v * (1 + Math.tanh(SQRT_2_OVER_PI * (v + 0.044715 * v * v * v)));

describe("tanhFloat32", () => {
  it("stays within float32 rounding of Math.tanh over the whole line", () => {
    let worstAbs = 0;
    let worstRel = 0;
    for (let i = -400_000; i <= 400_000; i++) {
      const x = i / 20_000; // [-20, 20] in steps of 5e-5
      const exact = Math.tanh(x);
      const err = Math.abs(tanhFloat32(x) - exact);
      worstAbs = Math.max(worstAbs, err);
      if (exact !== 0) worstRel = Math.max(worstRel, err / Math.abs(exact));
    }
    // 2^-23 ≈ 1.19e-7 is float32's unit roundoff: a few of those, relative, near 0 and absolute near ±1.
    expect(worstAbs).toBeLessThan(5e-7);
    expect(worstRel).toBeLessThan(5e-7);
  });

  it("is odd, exact at 0 and saturates to ±1", () => {
    for (const x of [1e-30, 1e-8, 0.3, 2.5, 7.9, 8, 50]) expect(tanhFloat32(-x)).toBe(-tanhFloat32(x));
    expect(tanhFloat32(0)).toBe(0);
    expect(tanhFloat32(1e6)).toBe(1);
    expect(tanhFloat32(-Number.MAX_VALUE)).toBe(-1);
  });
});

// The TypeScript loops (float64 arithmetic, tanhFloat32) and, where WebAssembly runs, the float32 SIMD kernels that
// activationForward/Backward use instead. In float32, 1 − tanh² near saturation carries ~1e-6 absolute error (as
// in PyTorch's float32 GELU backward), hence the looser derivative bound for the kernel.
const paths = [
  { name: "TypeScript loops", forward: activationForwardLoop, backward: activationBackwardLoop, slope: 2e-6 },
  ...(wasmElementwise()
    ? [{ name: "WebAssembly kernels", forward: activationForward, backward: activationBackward, slope: 4e-6 }]
    : []),
];

describe.each(paths)("gelu_new ($name)", ({ forward, backward, slope }) => {
  const x = Float32Array.from({ length: 20_001 }, (_, i) => (i - 10_000) / 1000); // [-10, 10]

  it("matches the Math.tanh formula to float32 rounding", () => {
    const y = forward("gelu_new", x);
    for (let i = 0; i < x.length; i++) {
      const want = Math.fround(exactGeluNew(x[i]));
      expect(Math.abs(y[i] - want)).toBeLessThanOrEqual(4e-7 * Math.max(1, Math.abs(x[i])));
    }
  });

  it("backward agrees with central differences of the exact formula", () => {
    const dy = new Float32Array(x.length).fill(1);
    const dx = backward("gelu_new", x, dy);
    const h = 1e-4;
    for (let i = 0; i < x.length; i += 37) {
      const v = x[i];
      const fd = (exactGeluNew(v + h) - exactGeluNew(v - h)) / (2 * h);
      expect(Math.abs(dx[i] - fd)).toBeLessThan(slope);
    }
  });

  it("scales dy and handles lengths that are not a multiple of 4, and the far tails", () => {
    const xs = Float32Array.of(-60, -9, -0.5, 0, 0.5, 9, 60);
    const dy = Float32Array.of(2, 2, 2, 2, 2, 2, 2);
    const dx = backward("gelu_new", xs, dy);
    const y = forward("gelu_new", xs);
    xs.forEach((v, i) => {
      expect(Math.abs(y[i] - Math.fround(exactGeluNew(v)))).toBeLessThanOrEqual(
        4e-7 * Math.max(1, Math.abs(v)),
      );
      const h = 1e-4;
      const fd = (exactGeluNew(v + h) - exactGeluNew(v - h)) / (2 * h);
      expect(Math.abs(dx[i] - 2 * fd)).toBeLessThan(2 * slope);
    });
  });
});
