// GEMM micro-benchmarks on the built package (run `npm run build` first).
// benchGemm() resolves to one {bench, engine, gflops, median_ms} per shape; B lives in WASM memory (allocateF32), as
// model weights do, while A and C are plain Float32Arrays, as activations are. gemm-* lines use the GEMM the CLI
// picks on one thread (the native kernel where built, else WebAssembly; TDB_GEMM=wasm|native overrides);
// gemm-wasm-* lines the WebAssembly kernel whatever the pick; gemm-2t-* lines the pick over two threads (calling
// thread + 1 helper), which on a shared 2-core host swing with the other jobs' load.
import { allocateF32, referenceGemm, wasmGemm } from "../../packages/tensor/dist/index.js";
import { fastestGemm } from "../../packages/tensor/dist/node/index.js";

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
  const shape = (gemm, engine, bench, variant, m, k, n, options) => {
    const a = randomFill(new Float32Array(m * k), 1);
    const b = randomFill(allocateF32(k * n), 2);
    const c = new Float32Array(m * n);
    const result = measure(bench, 2 * m * k * n, () => gemm[variant](a, b, c, m, k, n), options);
    results.push({ bench: result.bench, engine, gflops: result.gflops, median_ms: result.median_ms });
  };
  const shapes = (gemm, engine, prefix) => {
    shape(gemm, engine, `${prefix}32x768x3072`, "nn", 32, 768, 3072);
    shape(gemm, engine, `${prefix}nt-32x3072x768`, "nt", 32, 3072, 768);
    shape(gemm, engine, `${prefix}32x768x50257`, "nt", 32, 768, 50257, { warmup: 1, minReps: 5, minMs: 300 });
  };
  const single = fastestGemm(1);
  shapes(single.gemm, single.engine, "gemm-");
  if (single.engine !== "wasm") shapes(wasmGemm(), "wasm", "gemm-wasm-");
  const two = fastestGemm(2);
  if (two.threads === 2) shapes(two.gemm, two.engine, "gemm-2t-");
  two.close();
  {
    const [m, k, n] = [32, 768, 3072];
    const a = randomFill(new Float32Array(m * k), 1);
    const b = randomFill(new Float32Array(k * n), 2);
    const c = new Float32Array(m * n);
    const result = measure(
      "gemm-reference-32x768x3072",
      2 * m * k * n,
      () => referenceGemm.nn(a, b, c, m, k, n),
      {
        warmup: 1,
        minReps: 3,
        minMs: 300,
      },
    );
    results.push({ ...result, engine: "typescript" });
  }
  return results;
}
