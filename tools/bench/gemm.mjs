// GEMM micro-benchmarks on the built package (run `npx tsc -b packages/tensor` first).
// benchGemm() resolves to one {bench, gflops, median_ms} per shape; B lives in WASM memory (allocateF32), as model
// weights do, while A and C are plain Float32Arrays, as activations are. gemm-2t-* lines use the two-thread GEMM
// (calling thread + 1 worker); on a shared 2-core host they swing with the other jobs' load.
import { allocateF32, referenceGemm, wasmGemm } from "../../packages/tensor/dist/index.js";
import { threadedGemm } from "../../packages/tensor/dist/node/index.js";

function randomFill(array, seed) {
  let state = seed >>> 0 || 1;
  for (let i = 0; i < array.length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    array[i] = (state >>> 0) / 4294967296 - 0.5;
  }
  return array;
}

function measure(bench, flops, run, { warmup = 2, minReps = 7, minMs = 400 } = {}) {
  for (let i = 0; i < warmup; i++) run();
  const times = [];
  const start = performance.now();
  while (times.length < minReps || performance.now() - start < minMs) {
    const t0 = performance.now();
    run();
    times.push(performance.now() - t0);
  }
  times.sort((x, y) => x - y);
  const median = times[Math.floor(times.length / 2)];
  return { bench, gflops: Number((flops / median / 1e6).toFixed(2)), median_ms: Number(median.toFixed(3)) };
}

export async function benchGemm() {
  const results = [];
  const shape = (gemm, bench, variant, m, k, n, options) => {
    const a = randomFill(new Float32Array(m * k), 1);
    const b = randomFill(allocateF32(k * n), 2);
    const c = new Float32Array(m * n);
    results.push(measure(bench, 2 * m * k * n, () => gemm[variant](a, b, c, m, k, n), options));
  };
  const single = wasmGemm();
  shape(single, "gemm-32x768x3072", "nn", 32, 768, 3072);
  shape(single, "gemm-nt-32x3072x768", "nt", 32, 3072, 768);
  shape(single, "gemm-32x768x50257", "nt", 32, 768, 50257, { warmup: 1, minReps: 5, minMs: 300 });
  const threaded = threadedGemm({ threads: 2 });
  if (threaded.threads === 2) {
    shape(threaded, "gemm-2t-32x768x3072", "nn", 32, 768, 3072);
    shape(threaded, "gemm-2t-nt-32x3072x768", "nt", 32, 3072, 768);
    shape(threaded, "gemm-2t-32x768x50257", "nt", 32, 768, 50257, { warmup: 1, minReps: 5, minMs: 300 });
  }
  threaded.close();
  {
    const [m, k, n] = [32, 768, 3072];
    const a = randomFill(new Float32Array(m * k), 1);
    const b = randomFill(new Float32Array(k * n), 2);
    const c = new Float32Array(m * n);
    results.push(
      measure("gemm-reference-32x768x3072", 2 * m * k * n, () => referenceGemm.nn(a, b, c, m, k, n), {
        warmup: 1,
        minReps: 3,
        minMs: 300,
      }),
    );
  }
  return results;
}
