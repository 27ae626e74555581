// Elementwise kernels for Node (N-API, AVX2): the WebAssembly kernels of assembly/elementwise.ts at 4 to 8 lanes
// with the same operations in the same order, so both engines give the same bits — causal softmax, GELU, LayerNorm,
// per-column statistics and column gathering. Multiplies and adds stay separately rounded (no contraction into
// FMA: see the pragma), and lanes are computed independently.
#include "elementwise.h"

#include "napi-args.h"

#include <math.h>
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// GCC and Clang contract a·b + c into an FMA by default, which would round differently from WebAssembly.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define ELEMENTWISE_X86 1
#define AVX2 __attribute__((target("avx2,fma")))
#else
#define ELEMENTWISE_X86 0
#endif

#if ELEMENTWISE_X86

static int elementwiseCpuSupported(void) {
  static int known = -1;
  if (known < 0) {
    __builtin_cpu_init();
    known = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }
  return known;
}

static const double LOG2E = 1.4426950408889634;
static const double LN2_HI = 6.93147180369123816490e-1;
static const double LN2_LO = 1.90821492927058770002e-10;

// e^x per lane as the WebAssembly exp2Lanes: clamp at −708, x = k·ln 2 + r, Taylor to r¹¹, 2^k in the exponent.
AVX2 static inline __m256d expLanes(__m256d x) {
  x = _mm256_max_pd(_mm256_set1_pd(-708), x);  // max_pd returns its second operand for NaN: NaN stays NaN
  const __m256d k = _mm256_round_pd(_mm256_mul_pd(x, _mm256_set1_pd(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256d r = _mm256_sub_pd(_mm256_sub_pd(x, _mm256_mul_pd(k, _mm256_set1_pd(LN2_HI))),
                                  _mm256_mul_pd(k, _mm256_set1_pd(LN2_LO)));
  static const double taylor[] = {1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0,
                                  1.0 / 120.0,     1.0 / 24.0,      1.0 / 6.0,     0.5,          1.0, 1.0};
  __m256d p = _mm256_set1_pd(1.0 / 39916800.0);
  for (int i = 0; i < 11; i++) p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(taylor[i]));
  const __m256i biased = _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_cvttpd_epi32(k)), _mm256_set1_epi64x(1023));
  return _mm256_mul_pd(p, _mm256_castsi256_pd(_mm256_slli_epi64(biased, 52)));
}

// max with NaN winning, as WebAssembly's f64x2.max.
AVX2 static inline __m256d maxNaN(__m256d a, __m256d b) {
  return _mm256_or_pd(_mm256_max_pd(a, b), _mm256_cmp_pd(a, b, _CMP_UNORD_Q));
}

// Up to 4 heads' floats from `at` as float64 lanes; missing lanes repeat the first (computed, never stored).
AVX2 static inline __m256d loadHeads(const float *at, int count) {
  if (count == 4) return _mm256_cvtps_pd(_mm_loadu_ps(at));
  float lanes[4];
  for (int j = 0; j < 4; j++) lanes[j] = at[j < count ? j : 0];
  return _mm256_cvtps_pd(_mm_loadu_ps(lanes));
}

// probs[b,t,u,h] = softmax over u ≤ t of logits[b,t,·,h] in float64, four heads at a time; 0 above the diagonal.
AVX2 static void causalSoftmax(const float *logits, float *probs, int B, int T, int H, __m256d *exps) {
  for (int b = 0; b < B; b++) {
    const float *lb = logits + (size_t)b * T * T * H;
    float *pb = probs + (size_t)b * T * T * H;
    for (int t = 0; t < T; t++) {
      const size_t row = (size_t)t * T * H;
      memset(pb + row + (size_t)(t + 1) * H, 0, (size_t)(T - t - 1) * H * sizeof(float));
      for (int h = 0; h < H; h += 4) {
        const int count = H - h < 4 ? H - h : 4;
        const float *first = lb + row + h;
        __m256d max = _mm256_set1_pd(-INFINITY);
        for (int u = 0; u <= t; u++) max = maxNaN(max, loadHeads(first + (size_t)u * H, count));
        __m256d sum = _mm256_setzero_pd();
        for (int u = 0; u <= t; u++) {
          const __m256d e = expLanes(_mm256_sub_pd(loadHeads(first + (size_t)u * H, count), max));
          exps[u] = e;
          sum = _mm256_add_pd(sum, e);
        }
        float *out = pb + row + h;
        for (int u = 0; u <= t; u++) {
          const __m128 p = _mm256_cvtpd_ps(_mm256_div_pd(exps[u], sum));
          if (count == 4) _mm_storeu_ps(out + (size_t)u * H, p);
          else {
            float lanes[4];
            _mm_storeu_ps(lanes, p);
            for (int j = 0; j < count; j++) out[(size_t)u * H + j] = lanes[j];
          }
        }
      }
    }
  }
}

// Constants as the WebAssembly kernel has them: float32 values of these float64 literals.
#define F32(x) ((float)(x))
static const float SQRT_2_OVER_PI = F32(0.7978845608028654);
static const float CUBIC = F32(0.044715);
static const float TANH_CLAMP = F32(7.905311107635498);
static const float TANH_P[] = {F32(-2.76076847742355e-16), F32(2.00018790482477e-13), F32(-8.60467152213735e-11),
                               F32(5.12229709037114e-8),   F32(1.48572235717979e-5),  F32(6.37261928875436e-4),
                               F32(4.89352455891786e-3)};
static const float TANH_Q[] = {F32(1.19825839466702e-6), F32(1.18534705686654e-4), F32(2.268434632439e-3),
                               F32(4.89352518554385e-3)};

// tanh in the tails, exactly, as the WebAssembly tanhTail.
static double tanhTail(double u) { return u > 0 ? 1 - 2 / (exp(2 * u) + 1) : 2 / (exp(-2 * u) + 1) - 1; }

// Eigen's odd rational fit of tanh in float32 (the WebAssembly tanhFit), 8 lanes.
AVX2 static inline __m256 tanhFit(__m256 u) {
  const __m256 u2 = _mm256_mul_ps(u, u);
  __m256 p = _mm256_set1_ps(TANH_P[0]);
  for (int i = 1; i < 7; i++) p = _mm256_add_ps(_mm256_mul_ps(p, u2), _mm256_set1_ps(TANH_P[i]));
  __m256 q = _mm256_set1_ps(TANH_Q[0]);
  for (int i = 1; i < 4; i++) q = _mm256_add_ps(_mm256_mul_ps(q, u2), _mm256_set1_ps(TANH_Q[i]));
  return _mm256_div_ps(_mm256_mul_ps(u, p), q);
}

// gelu_new of 8 lanes: ½v·(1 + tanh(√(2/π)(v + 0.044715·v³))), lanes past the fit's clamp redone in float64.
AVX2 static inline __m256 gelu8(__m256 v) {
  const __m256 cube = _mm256_mul_ps(v, _mm256_mul_ps(v, v));
  const __m256 u = _mm256_mul_ps(_mm256_set1_ps(SQRT_2_OVER_PI), _mm256_add_ps(v, _mm256_mul_ps(_mm256_set1_ps(CUBIC), cube)));
  __m256 t = tanhFit(u);
  const __m256 absU = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), u);
  if (_mm256_movemask_ps(_mm256_cmp_ps(absU, _mm256_set1_ps(TANH_CLAMP), _CMP_GT_OQ))) {
    float us[8], ts[8];
    _mm256_storeu_ps(us, u);
    _mm256_storeu_ps(ts, t);
    for (int j = 0; j < 8; j++)
      if (fabs((double)us[j]) > (double)TANH_CLAMP) ts[j] = (float)tanhTail(us[j]);
    t = _mm256_loadu_ps(ts);
  }
  return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), v), _mm256_add_ps(_mm256_set1_ps(1), t));
}

// y = gelu_new(x) for n floats: 8 lanes at a time, a last run of 4 to 7 through the same lanes, then (as the
// WebAssembly kernel's scalar tail) up to 3 values in float64 around the float32 fit.
AVX2 static void geluNew(const float *x, float *y, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, gelu8(_mm256_loadu_ps(x + i)));
  if (i + 4 <= n) {
    const size_t take = (n - i) / 4 * 4;
    float in[8] = {0}, out[8];
    memcpy(in, x + i, take * sizeof(float));
    _mm256_storeu_ps(out, gelu8(_mm256_loadu_ps(in)));
    memcpy(y + i, out, take * sizeof(float));
    i += take;
  }
  for (; i < n; i++) {
    const double v = x[i];
    const double u = (double)SQRT_2_OVER_PI * (v + (double)CUBIC * v * v * v);
    double t;
    if (fabs(u) > (double)TANH_CLAMP) t = tanhTail(u);
    else {
      float lanes[8];
      _mm256_storeu_ps(lanes, tanhFit(_mm256_set1_ps((float)u)));
      t = lanes[0];
    }
    y[i] = (float)(0.5 * v * (1 + t));
  }
}


// Σ f(x − mean) over a row in float64 as the WebAssembly rowSum: two-lane sums a0…a3 over runs of 8 (here a0, a1
// in one vector and a2, a3 in another), added (a0 + a1) + (a2 + a3), lanes added, then the tail in order.
AVX2 static inline double rowSum(const float *row, int dim, double mean, int square) {
  const __m256d m = _mm256_set1_pd(mean);
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  int i = 0;
  for (; i + 8 <= dim; i += 8) {
    __m256d v0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(row + i)), m);
    __m256d v1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(row + i + 4)), m);
    if (square) {
      v0 = _mm256_mul_pd(v0, v0);
      v1 = _mm256_mul_pd(v1, v1);
    }
    lo = _mm256_add_pd(lo, v0);
    hi = _mm256_add_pd(hi, v1);
  }
  const __m128d a01 = _mm_add_pd(_mm256_castpd256_pd128(lo), _mm256_extractf128_pd(lo, 1));
  const __m128d a23 = _mm_add_pd(_mm256_castpd256_pd128(hi), _mm256_extractf128_pd(hi, 1));
  const __m128d a = _mm_add_pd(a01, a23);
  double sum = _mm_cvtsd_f64(a) + _mm_cvtsd_f64(_mm_unpackhi_pd(a, a));
  for (; i < dim; i++) {
    const double c = (double)row[i] - mean;
    sum += square ? c * c : c;
  }
  return sum;
}

// LayerNorm per row as the WebAssembly layerNorm: mean and variance by rowSum, n = (x − mean)/s and n·gain + bias in
// float64, stored as float32.
AVX2 static void layerNorm(const float *x, const float *gain, const float *bias, int rows, int dim, double eps,
                           float *out, float *normalized, float *scale) {
  for (int r = 0; r < rows; r++) {
    const size_t offset = (size_t)r * dim;
    const float *row = x + offset;
    const double mean = rowSum(row, dim, 0, 0) / (double)dim;
    const double s = sqrt(rowSum(row, dim, mean, 1) / (double)dim + eps);
    scale[r] = (float)s;
    const __m256d m = _mm256_set1_pd(mean), sv = _mm256_set1_pd(s);
    int i = 0;
    for (; i + 4 <= dim; i += 4) {
      const __m256d n = _mm256_div_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(row + i)), m), sv);
      _mm_storeu_ps(normalized + offset + i, _mm256_cvtpd_ps(n));
      const __m256d y = _mm256_add_pd(_mm256_mul_pd(n, _mm256_cvtps_pd(_mm_loadu_ps(gain + i))),
                                      _mm256_cvtps_pd(_mm_loadu_ps(bias + i)));
      _mm_storeu_ps(out + offset + i, _mm256_cvtpd_ps(y));
    }
    for (; i < dim; i++) {
      const double n = ((double)row[i] - mean) / s;
      normalized[offset + i] = (float)n;
      out[offset + i] = (float)(n * (double)gain[i] + (double)bias[i]);
    }
  }
}

// Per-column max (a NaN never wins), float64 sum and sum of squares (row by row, as a plain loop adds them) and count
// of values > 0, 16 columns at a time held in registers down the rows.
AVX2 static void columnStatistics(const float *values, int rows, int cols, float *max, double *sum, double *sumSq,
                                  int32_t *positives) {
  const size_t stride = (size_t)cols;
  int c = 0;
  for (; c + 16 <= cols; c += 16) {
    __m256 mx0 = _mm256_set1_ps(-INFINITY), mx1 = mx0;
    __m256d s0 = _mm256_setzero_pd(), s1 = s0, s2 = s0, s3 = s0, q0 = s0, q1 = s0, q2 = s0, q3 = s0;
    __m256i p0 = _mm256_setzero_si256(), p1 = p0;
    const __m256 zero = _mm256_setzero_ps();
    const float *at = values + c;
    for (int r = 0; r < rows; r++, at += stride) {
      const __m256 v0 = _mm256_loadu_ps(at), v1 = _mm256_loadu_ps(at + 8);
      // max_ps(v, m) = v > m ? v : m: NaN and equal values keep m, like `if (v > m) m = v`.
      mx0 = _mm256_max_ps(v0, mx0);
      mx1 = _mm256_max_ps(v1, mx1);
      const __m256d d0 = _mm256_cvtps_pd(_mm256_castps256_ps128(v0)), d1 = _mm256_cvtps_pd(_mm256_extractf128_ps(v0, 1));
      const __m256d d2 = _mm256_cvtps_pd(_mm256_castps256_ps128(v1)), d3 = _mm256_cvtps_pd(_mm256_extractf128_ps(v1, 1));
      s0 = _mm256_add_pd(s0, d0);
      s1 = _mm256_add_pd(s1, d1);
      s2 = _mm256_add_pd(s2, d2);
      s3 = _mm256_add_pd(s3, d3);
      q0 = _mm256_add_pd(q0, _mm256_mul_pd(d0, d0));
      q1 = _mm256_add_pd(q1, _mm256_mul_pd(d1, d1));
      q2 = _mm256_add_pd(q2, _mm256_mul_pd(d2, d2));
      q3 = _mm256_add_pd(q3, _mm256_mul_pd(d3, d3));
      // The comparison's lanes are −1 where v > 0.
      p0 = _mm256_sub_epi32(p0, _mm256_castps_si256(_mm256_cmp_ps(v0, zero, _CMP_GT_OQ)));
      p1 = _mm256_sub_epi32(p1, _mm256_castps_si256(_mm256_cmp_ps(v1, zero, _CMP_GT_OQ)));
    }
    _mm256_storeu_ps(max + c, mx0);
    _mm256_storeu_ps(max + c + 8, mx1);
    _mm256_storeu_pd(sum + c, s0);
    _mm256_storeu_pd(sum + c + 4, s1);
    _mm256_storeu_pd(sum + c + 8, s2);
    _mm256_storeu_pd(sum + c + 12, s3);
    _mm256_storeu_pd(sumSq + c, q0);
    _mm256_storeu_pd(sumSq + c + 4, q1);
    _mm256_storeu_pd(sumSq + c + 8, q2);
    _mm256_storeu_pd(sumSq + c + 12, q3);
    _mm256_storeu_si256((__m256i *)(positives + c), p0);
    _mm256_storeu_si256((__m256i *)(positives + c + 8), p1);
  }
  for (; c < cols; c++) {
    float m = -INFINITY;
    double s = 0, q = 0;
    int32_t p = 0;
    for (int r = 0; r < rows; r++) {
      const float v = values[(size_t)r * stride + c];
      if (v > m) m = v;
      s += (double)v;
      q += (double)v * (double)v;
      if (v > 0) p++;
    }
    max[c] = m;
    sum[c] = s;
    sumSq[c] = q;
    positives[c] = p;
  }
}

// 2^32: fixed-point units per 1.0 of the running sums.
static const double FIX = 4294967296.0;

// (hi, lo) += value in 2^-32 fixed point, as the TypeScript addFixed does it, operation for operation: q =
// Math.round(value·2^32) (halves up), split into whole units and a remainder in [0, 2^32). Non-finite values are
// skipped. Every operation is exact but the final hi + whole, so the result does not depend on the order of values.
static inline void addFixed(double *hi, double *lo, double value) {
  if (!isfinite(value)) return;
  const double x = value * FIX;
  double q = floor(x);
  if (x - q >= 0.5) q += 1;  // Math.round: x − floor(x) is exact
  const double whole = floor(q / FIX);
  double l = *lo + (q - whole * FIX);
  double h = *hi + whole;
  if (l >= FIX) {
    l -= FIX;
    h += 1;
  }
  *hi = h;
  *lo = l;
}

// One sequence's values [rows × cols] folded into running per-column statistics: each column's max over the rows
// into seqMax, and into the running max (a NaN never wins), count of values > 0, and float64 sum and sum of squares
// added to the running fixed-point sums. `scratch` holds 3·cols doubles (sums, sums of squares, and the counts).
AVX2 static void foldColumnStatistics(const float *values, int rows, int cols, float *seqMax, float *runMax,
                                      double *runPositives, double *sumHi, double *sumLo, double *sqHi, double *sqLo,
                                      double *scratch) {
  double *sum = scratch, *sumSq = scratch + cols;
  int32_t *positives = (int32_t *)(scratch + 2 * cols);
  columnStatistics(values, rows, cols, seqMax, sum, sumSq, positives);
  for (int c = 0; c < cols; c++) {
    if (seqMax[c] > runMax[c]) runMax[c] = seqMax[c];
    runPositives[c] += positives[c];
    addFixed(&sumHi[c], &sumLo[c], sum[c]);
    addFixed(&sqHi[c], &sqLo[c], sumSq[c]);
  }
}

// 8×8 block transpose in registers (rows r0…r7 in, columns out in place).
AVX2 static inline void transpose8(__m256 *r) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// out[j·rows + r] = values[r·cols + columns[j]]. Columns are taken in windows: the next columns, increasing, that
// lie within 8 of the first; each 8 rows of the window's 8 columns are loaded and transposed in registers and the
// wanted columns stored (accepted columns are often dense, 40 % or more, rarely adjacent). Windows reaching past
// the last column go one value at a time. Columns were checked to lie in [0, cols).
AVX2 static void gatherColumns(const float *values, int rows, int cols, const int32_t *columns, int count, float *out) {
  const size_t stride = (size_t)cols;
  int j = 0;
  while (j < count) {
    const int c0 = columns[j];
    if (c0 + 8 > cols) {
      float *o = out + (size_t)j * rows;
      for (int r = 0; r < rows; r++) o[r] = values[(size_t)r * stride + c0];
      j++;
      continue;
    }
    int offsets[8];
    int m = 0;
    while (m < 8 && j + m < count && columns[j + m] - c0 < 8 && (m == 0 || columns[j + m] > columns[j + m - 1])) {
      offsets[m] = columns[j + m] - c0;
      m++;
    }
    float *o = out + (size_t)j * rows;
    int r = 0;
    for (; r + 8 <= rows; r += 8) {
      __m256 block[8];
      for (int i = 0; i < 8; i++) block[i] = _mm256_loadu_ps(values + (size_t)(r + i) * stride + c0);
      transpose8(block);
      for (int i = 0; i < m; i++) _mm256_storeu_ps(o + (size_t)i * rows + r, block[offsets[i]]);
    }
    for (; r < rows; r++)
      for (int i = 0; i < m; i++) o[(size_t)i * rows + r] = values[(size_t)r * stride + c0 + offsets[i]];
    j += m;
  }
}

#else
static int elementwiseCpuSupported(void) { return 0; }
#endif

// ---- N-API binding.

// causalSoftmax(logits, probs, B, T, H)
static napi_value CausalSoftmaxJs(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value args[5];
  int32_t v[3];
  const int which[] = {2, 3, 4};
  float *logits, *probs;
  size_t ll, lp;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != 5 || !intArgs(env, args, which, 3, v) ||
      !allPositive(v, 3))
    return throwError(env, "causalSoftmax: expected (logits, probs, B, T, H) with positive B, T and H");
  if (!typedArrayOf(env, args[0], napi_float32_array, (void **)&logits, &ll) ||
      !typedArrayOf(env, args[1], napi_float32_array, (void **)&probs, &lp))
    return throwError(env, "causalSoftmax: logits and probs must be Float32Arrays");
  const size_t B = v[0], T = v[1], H = v[2];
  if (ll < B * T * T * H || lp < B * T * T * H)
    return throwError(env, "causalSoftmax: an array is shorter than its shape");
#if ELEMENTWISE_X86
  if (!elementwiseCpuSupported()) return throwError(env, "causalSoftmax: this CPU lacks AVX2 and FMA");
  __m256d *exps = aligned_alloc(32, ((T * sizeof(__m256d) + 31) / 32) * 32);
  if (!exps) return throwError(env, "causalSoftmax: out of memory");
  causalSoftmax(logits, probs, v[0], v[1], v[2], exps);
  free(exps);
  return NULL;
#else
  return throwError(env, "causalSoftmax: the native kernel needs an x86-64 CPU");
#endif
}

// geluNew(x, y): y = gelu_new(x) elementwise, over x's length (y at least as long).
static napi_value GeluNewJs(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2];
  float *x, *y;
  size_t lx, ly;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != 2 ||
      !typedArrayOf(env, args[0], napi_float32_array, (void **)&x, &lx) ||
      !typedArrayOf(env, args[1], napi_float32_array, (void **)&y, &ly))
    return throwError(env, "geluNew: expected (x, y), two Float32Arrays");
  if (ly < lx) return throwError(env, "geluNew: y is shorter than x");
#if ELEMENTWISE_X86
  if (!elementwiseCpuSupported()) return throwError(env, "geluNew: this CPU lacks AVX2 and FMA");
  geluNew(x, y, lx);
  return NULL;
#else
  return throwError(env, "geluNew: the native kernel needs an x86-64 CPU");
#endif
}


// layerNorm(x, gain, bias, rows, dim, eps, out, normalized, scale)
static napi_value LayerNormJs(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value args[9];
  int32_t v[2];
  const int which[] = {3, 4};
  double eps;
  float *x, *gain, *bias, *out, *normalized, *scale;
  size_t lx, lg, lb, lo, ln, ls;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != 9 || !intArgs(env, args, which, 2, v) ||
      v[0] < 0 || v[1] < 1 || napi_get_value_double(env, args[5], &eps) != napi_ok)
    return throwError(env, "layerNorm: expected (x, gain, bias, rows, dim, eps, out, normalized, scale)");
  if (!typedArrayOf(env, args[0], napi_float32_array, (void **)&x, &lx) ||
      !typedArrayOf(env, args[1], napi_float32_array, (void **)&gain, &lg) ||
      !typedArrayOf(env, args[2], napi_float32_array, (void **)&bias, &lb) ||
      !typedArrayOf(env, args[6], napi_float32_array, (void **)&out, &lo) ||
      !typedArrayOf(env, args[7], napi_float32_array, (void **)&normalized, &ln) ||
      !typedArrayOf(env, args[8], napi_float32_array, (void **)&scale, &ls))
    return throwError(env, "layerNorm: the arrays must be Float32Arrays");
  const size_t n = (size_t)v[0] * v[1];
  if (lx < n || lo < n || ln < n || lg < (size_t)v[1] || lb < (size_t)v[1] || ls < (size_t)v[0])
    return throwError(env, "layerNorm: an array is shorter than its shape");
#if ELEMENTWISE_X86
  if (!elementwiseCpuSupported()) return throwError(env, "layerNorm: this CPU lacks AVX2");
  layerNorm(x, gain, bias, v[0], v[1], eps, out, normalized, scale);
  return NULL;
#else
  return throwError(env, "layerNorm: the native kernel needs an x86-64 CPU");
#endif
}

// gatherColumns(values, rows, cols, columns, out, outOffset): returns −1, or the position in `columns` of a column
// outside [0, cols) (then nothing is copied).
static napi_value GatherColumnsJs(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value args[6];
  int32_t v[3];
  const int which[] = {1, 2, 5};
  float *values, *out;
  int32_t *columns;
  size_t lv, lc, lo;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != 6 || !intArgs(env, args, which, 3, v) ||
      v[0] < 0 || v[1] < 0 || v[2] < 0)
    return throwError(env, "gatherColumns: expected (values, rows, cols, columns, out, outOffset)");
  if (!typedArrayOf(env, args[0], napi_float32_array, (void **)&values, &lv) ||
      !typedArrayOf(env, args[3], napi_int32_array, (void **)&columns, &lc) ||
      !typedArrayOf(env, args[4], napi_float32_array, (void **)&out, &lo))
    return throwError(env, "gatherColumns: values and out must be Float32Arrays, columns an Int32Array");
  const size_t rows = v[0];
  if (lv < rows * v[1] || lo < (size_t)v[2] + lc * rows)
    return throwError(env, "gatherColumns: an array is shorter than its shape");
  napi_value result;
  for (size_t j = 0; j < lc; j++) {
    if (columns[j] < 0 || columns[j] >= v[1]) {
      napi_create_int32(env, (int32_t)j, &result);
      return result;
    }
  }
#if ELEMENTWISE_X86
  if (!elementwiseCpuSupported()) return throwError(env, "gatherColumns: this CPU lacks AVX2");
  gatherColumns(values, v[0], v[1], columns, (int)lc, out + v[2]);
  napi_create_int32(env, -1, &result);
  return result;
#else
  return throwError(env, "gatherColumns: the native kernel needs an x86-64 CPU");
#endif
}

// foldColumnStatistics(values, rows, cols, seqMax, max, positives, sumHi, sumLo, sqHi, sqLo)
static napi_value FoldColumnStatisticsJs(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value args[10];
  int32_t v[2];
  const int which[] = {1, 2};
  float *values, *seqMax, *runMax;
  double *wide[5];  // positives, sumHi, sumLo, sqHi, sqLo
  size_t lv, lm, lr, lw[5];
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != 10 || !intArgs(env, args, which, 2, v) ||
      v[0] < 0 || v[1] < 0)
    return throwError(env, "foldColumnStatistics: expected (values, rows, cols, seqMax, max, positives, sumHi, sumLo, sqHi, sqLo)");
  int typed = typedArrayOf(env, args[0], napi_float32_array, (void **)&values, &lv) &&
              typedArrayOf(env, args[3], napi_float32_array, (void **)&seqMax, &lm) &&
              typedArrayOf(env, args[4], napi_float32_array, (void **)&runMax, &lr);
  for (int i = 0; i < 5; i++) typed = typed && typedArrayOf(env, args[5 + i], napi_float64_array, (void **)&wide[i], &lw[i]);
  if (!typed)
    return throwError(env, "foldColumnStatistics: values, seqMax and max must be Float32Arrays, the others Float64Arrays");
  const size_t cols = v[1];
  int shortArray = lv < (size_t)v[0] * cols || lm < cols || lr < cols;
  for (int i = 0; i < 5; i++) shortArray = shortArray || lw[i] < cols;
  if (shortArray) return throwError(env, "foldColumnStatistics: an array is shorter than its shape");
#if ELEMENTWISE_X86
  if (!elementwiseCpuSupported()) return throwError(env, "foldColumnStatistics: this CPU lacks AVX2");
  double *scratch = malloc((3 * cols + 1) * sizeof(double));
  if (!scratch) return throwError(env, "foldColumnStatistics: out of memory");
  foldColumnStatistics(values, v[0], v[1], seqMax, runMax, wide[0], wide[1], wide[2], wide[3], wide[4], scratch);
  free(scratch);
  return NULL;
#else
  return throwError(env, "foldColumnStatistics: the native kernel needs an x86-64 CPU");
#endif
}

void elementwiseRegister(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"causalSoftmax", NULL, CausalSoftmaxJs, NULL, NULL, NULL, napi_default, NULL},
    {"geluNew", NULL, GeluNewJs, NULL, NULL, NULL, napi_default, NULL},
    {"layerNorm", NULL, LayerNormJs, NULL, NULL, NULL, napi_default, NULL},
    {"gatherColumns", NULL, GatherColumnsJs, NULL, NULL, NULL, napi_default, NULL},
    {"foldColumnStatistics", NULL, FoldColumnStatisticsJs, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, 5, props);
}
