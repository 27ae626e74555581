import { checkGemmArgs, type Gemm } from "./gemm.js";

/** Plain TypeScript GEMM: the test oracle and the fallback where WebAssembly SIMD is unavailable. */
export const referenceGemm: Gemm = {
  nn(a, b, c, m, k, n, accumulate = false) {
    checkGemmArgs(a, b, c, m, k, n);
    for (let i = 0; i < m; i++) {
      const cRow = i * n;
      if (!accumulate) c.fill(0, cRow, cRow + n);
      for (let p = 0; p < k; p++) {
        const aip = a[i * k + p];
        const bRow = p * n;
        for (let j = 0; j < n; j++) c[cRow + j] += aip * b[bRow + j];
      }
    }
  },

  nt(a, bt, c, m, k, n, accumulate = false) {
    checkGemmArgs(a, bt, c, m, k, n);
    for (let i = 0; i < m; i++) {
      const aRow = i * k;
      for (let j = 0; j < n; j++) {
        const bRow = j * k;
        let sum = 0;
        for (let p = 0; p < k; p++) sum += a[aRow + p] * bt[bRow + p];
        c[i * n + j] = accumulate ? c[i * n + j] + sum : sum;
      }
    }
  },

  tn(at, b, c, m, k, n, accumulate = false) {
    checkGemmArgs(at, b, c, m, k, n);
    if (!accumulate) c.fill(0, 0, m * n);
    for (let p = 0; p < k; p++) {
      const bRow = p * n;
      for (let i = 0; i < m; i++) {
        const api = at[p * m + i];
        const cRow = i * n;
        for (let j = 0; j < n; j++) c[cRow + j] += api * b[bRow + j];
      }
    }
  },
};
