/**
 * The autoencoder objective's hand-written gradients against central finite differences of an independent,
 * naive float64 implementation of the same loss (written out below from the formulas, no shared code).
 */
import { describe, expect, it } from "vitest";
import {
  allocateSaeParameters,
  type SaeActivation,
  SaeObjective,
  type SaeParameters,
  SaeSparseKernel,
  seededRandom,
  selectTopK,
} from "../src/index.js";

interface Params64 {
  encoder: number[];
  decoder: number[];
  latentBias: number[];
  preBias: number[];
}

/** loss = Σ‖x − x̂‖² / Σ‖x − μ‖² + λ/B Σ_t Σ_j z_tj ‖D_j‖ (λ only for ReLU), D_j = row j of `decoder`. */
function referenceLoss(
  p: Params64,
  x: number[],
  rows: number,
  n: number,
  m: number,
  activation: SaeActivation,
  l1: number,
  mean: number[],
): number {
  let sse = 0;
  let dev = 0;
  let l1Sum = 0;
  const norms = Array.from({ length: m }, (_, j) => {
    let s = 0;
    for (let i = 0; i < n; i++) s += p.decoder[j * n + i] ** 2;
    return Math.sqrt(s);
  });
  for (let t = 0; t < rows; t++) {
    const pre: number[] = [];
    for (let j = 0; j < m; j++) {
      let v = p.latentBias[j];
      for (let i = 0; i < n; i++) v += (x[t * n + i] - p.preBias[i]) * p.encoder[j * n + i];
      pre.push(v);
    }
    const z = new Array<number>(m).fill(0);
    if (activation.kind === "relu") {
      for (let j = 0; j < m; j++) z[j] = Math.max(pre[j], 0);
    } else {
      const order = [...pre.keys()].sort((a, b) => pre[b] - pre[a]);
      for (const j of order.slice(0, activation.k)) z[j] = Math.max(pre[j], 0);
    }
    for (let i = 0; i < n; i++) {
      let xhat = p.preBias[i];
      for (let j = 0; j < m; j++) xhat += z[j] * p.decoder[j * n + i];
      sse += (x[t * n + i] - xhat) ** 2;
      dev += (x[t * n + i] - mean[i]) ** 2;
    }
    for (let j = 0; j < m; j++) l1Sum += z[j] * norms[j];
  }
  return sse / dev + (activation.kind === "relu" ? (l1 * l1Sum) / rows : 0);
}

function randomCase(seed: number, n: number, m: number, rows: number) {
  const rand = seededRandom(seed);
  const u = (scale: number) => (rand() * 2 - 1) * scale;
  const params = allocateSaeParameters(n, m);
  for (let i = 0; i < m * n; i++) {
    params.encoder[i] = u(0.6);
    params.decoder[i] = u(0.6); // rows deliberately not unit-norm: the L1 term's norm gradient is exercised
  }
  for (let j = 0; j < m; j++) params.latentBias[j] = u(0.4);
  for (let i = 0; i < n; i++) params.preBias[i] = u(0.3);
  const x = Float32Array.from({ length: rows * n }, () => u(1) + 0.2);
  const mean = Float32Array.from({ length: n }, () => u(0.1));
  return { params, x, mean };
}

function toParams64(p: SaeParameters): Params64 {
  return {
    encoder: Array.from(p.encoder),
    decoder: Array.from(p.decoder),
    latentBias: Array.from(p.latentBias),
    preBias: Array.from(p.preBias),
  };
}

const NAMES = ["encoder", "decoder", "latentBias", "preBias"] as const;

function checkGradients(
  activation: SaeActivation,
  l1: number,
  seed: number,
  kernel: "auto" | "javascript" = "auto",
) {
  const n = 6;
  const m = 11;
  const rows = 9;
  const { params, x, mean } = randomCase(seed, n, m, rows);
  const objective = new SaeObjective({ nInputs: n, nLatents: m, activation, l1, kernel });
  const grads = allocateSaeParameters(n, m);
  const result = objective.evaluate(params, x, rows, { mean, gradients: grads });

  const p64 = toParams64(params);
  const x64 = Array.from(x);
  const mean64 = Array.from(mean);
  const loss = () => referenceLoss(p64, x64, rows, n, m, activation, l1, mean64);
  expect(result.loss).toBeCloseTo(loss(), 5);

  const h = 1e-5;
  let worst = 0;
  let nonzero = 0;
  for (const name of NAMES) {
    for (let i = 0; i < p64[name].length; i++) {
      const keep = p64[name][i];
      p64[name][i] = keep + h;
      const up = loss();
      p64[name][i] = keep - h;
      const down = loss();
      p64[name][i] = keep;
      const fd = (up - down) / (2 * h);
      const analytic = grads[name][i];
      if (fd !== 0) nonzero++;
      worst = Math.max(worst, Math.abs(analytic - fd) / (1e-4 + Math.abs(fd)));
    }
  }
  expect(worst).toBeLessThan(2e-3);
  return { nonzero, meanL0: result.meanL0 };
}

describe("SaeObjective gradients against finite differences", () => {
  it("ReLU with an L1 penalty on decoder-norm-weighted latents", () => {
    for (const seed of [1, 2, 3]) {
      const { nonzero, meanL0 } = checkGradients({ kind: "relu" }, 0.05, seed);
      expect(meanL0).toBeGreaterThan(0);
      expect(nonzero).toBeGreaterThan(50);
    }
  });

  it("ReLU without L1", () => {
    checkGradients({ kind: "relu" }, 0, 4);
  });

  for (const kernel of ["auto", "javascript"] as const) {
    it(`TopK (only the k selected latents carry gradient), ${kernel} kernel`, () => {
      for (const seed of [5, 6, 7]) {
        const { meanL0 } = checkGradients({ kind: "topk", k: 3 }, 0.05, seed, kernel);
        expect(meanL0).toBeGreaterThan(0);
        expect(meanL0).toBeLessThanOrEqual(3);
      }
    });

    it(`TopK where some selected pre-activations are negative (ReLU after TopK), ${kernel} kernel`, () => {
      // Random latent biases push some of the top k below zero.
      const { meanL0 } = checkGradients({ kind: "topk", k: 6 }, 0, 8, kernel);
      expect(meanL0).toBeLessThan(6);
    });
  }

  it("the WebAssembly and JavaScript TopK paths agree on a larger case (several chunks, widths not multiples of 4)", () => {
    const n = 37;
    const m = 70;
    const rows = 1300;
    const { params, x, mean } = randomCase(12, n, m, rows);
    const activation: SaeActivation = { kind: "topk", k: 5 };
    const run = (kernel: "auto" | "javascript") => {
      const objective = new SaeObjective({ nInputs: n, nLatents: m, activation, l1: 0, kernel });
      const gradients = allocateSaeParameters(n, m);
      const statistics = { fires: new Float64Array(m), sumSquares: new Float64Array(m) };
      const result = objective.evaluate(params, x, rows, { mean, gradients, statistics });
      return { result, gradients, statistics };
    };
    expect(SaeSparseKernel.create(n, m, 5, 16)).not.toBeNull(); // Node has WebAssembly SIMD: "auto" is the kernel
    const wasm = run("auto");
    const js = run("javascript");
    expect(wasm.result.loss).toBeCloseTo(js.result.loss, 6);
    expect(wasm.result.meanL0).toBe(js.result.meanL0);
    expect(wasm.statistics.fires).toEqual(js.statistics.fires);
    for (const name of NAMES) {
      const a = wasm.gradients[name];
      const b = js.gradients[name];
      const scale = Math.max(...b.map(Math.abs));
      for (let i = 0; i < a.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThan(1e-5 * scale);
    }
  });

  it("chunked rows give the same result as one chunk (more rows than a chunk)", () => {
    const n = 4;
    const m = 5;
    const rows = 1100;
    const { params, x, mean } = randomCase(9, n, m, rows);
    const objective = new SaeObjective({
      nInputs: n,
      nLatents: m,
      activation: { kind: "topk", k: 2 },
      l1: 0,
    });
    const grads = allocateSaeParameters(n, m);
    const result = objective.evaluate(params, x, rows, { mean, gradients: grads });
    const reference = referenceLoss(
      toParams64(params),
      Array.from(x),
      rows,
      n,
      m,
      { kind: "topk", k: 2 },
      0,
      [...mean],
    );
    expect(result.loss).toBeCloseTo(reference, 5);
  });
});

describe("selectTopK", () => {
  it("matches a full sort (ties: lower index first) on random data with repeated values", () => {
    const rand = seededRandom(11);
    for (let trial = 0; trial < 200; trial++) {
      const length = 1 + Math.floor(rand() * 40);
      const k = 1 + Math.floor(rand() * length);
      const values = Float32Array.from({ length: length + 3 }, () => Math.floor(rand() * 7) - 3);
      const out = new Int32Array(k);
      selectTopK(values, 3, length, k, out);
      const expected = [...Array(length).keys()]
        .sort((a, b) => values[3 + b] - values[3 + a] || a - b)
        .slice(0, k);
      expect([...out]).toEqual(expected);
    }
  });
});
