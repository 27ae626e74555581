// Attention's per-head products in its own layouts (N-API, AVX2 + FMA), one call for every head and sequence:
// q, k, v as [B·T, H, Dh], attention pairs as [B·T, T, H] (query, key, head). As separate GEMM calls per head these
// cost a copy of each head's block in and out and a call each (36 per layer of GPT-2 small), several times their
// arithmetic at T = 64.
//
// Each output element is one fused multiply-add chain from zero in the order a GEMM would take (over Dh for
// logits and quadratic forms, over keys for the mix), so the values equal the native GEMM's per-head products bit
// for bit.
#include "heads.h"

#include "napi-args.h"

#include <math.h>
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// Multiplies and adds stay separately rounded unless written as FMA: the softmax and GELU must repeat the
// WebAssembly kernels' operations exactly (GCC and Clang contract a·b + c into an FMA by default).
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define HEADS_X86 1
#define AVX2 __attribute__((target("avx2,fma")))
#else
#define HEADS_X86 0
#endif

#if HEADS_X86

static int headsCpuSupported(void) {
  static int known = -1;
  if (known < 0) {
    __builtin_cpu_init();
    known = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }
  return known;
}

// Query rows per register tile, and key blocks of 8 per tile (4 × 2 accumulators).
enum { LOGIT_ROWS = 4 };

// logits[b,t,u,h] = q[b,t,h,:]·k[b,u,h,:] for u ≤ t, −∞ for u > t. Keys sit in the vector lanes: each head's keys
// are transposed into kt [Dh][width] (zero past T) so a tile is 4 query rows × 16 keys, one FMA chain per entry.
AVX2 static void causalLogits(const float *q, const float *k, float *out, int B, int T, int H, int Dh, float *kt,
                              int width) {
  const size_t rowStride = (size_t)H * Dh;
  const float minusInf = -INFINITY;
  for (int b = 0; b < B; b++) {
    float *pairs = out + (size_t)b * T * T * H;
    for (int t = 0; t < T; t++) {
      float *masked = pairs + ((size_t)t * T + t + 1) * H;
      for (size_t i = 0; i < (size_t)(T - t - 1) * H; i++) masked[i] = minusInf;
    }
    const float *qb = q + (size_t)b * T * rowStride;
    const float *kb = k + (size_t)b * T * rowStride;
    for (int h = 0; h < H; h++) {
      memset(kt, 0, (size_t)Dh * width * sizeof(float));
      for (int u = 0; u < T; u++) {
        const float *row = kb + u * rowStride + (size_t)h * Dh;
        for (int i = 0; i < Dh; i++) kt[(size_t)i * width + u] = row[i];
      }
      for (int t0 = 0; t0 < T; t0 += LOGIT_ROWS) {
        const int rows = T - t0 < LOGIT_ROWS ? T - t0 : LOGIT_ROWS;
        const float *qRow[LOGIT_ROWS];
        // Rows past T read the last row again (valid memory); their results are dropped.
        for (int r = 0; r < LOGIT_ROWS; r++)
          qRow[r] = qb + (size_t)(r < rows ? t0 + r : T - 1) * rowStride + (size_t)h * Dh;
        const int keys = t0 + rows;  // keys 0 … t0 + rows − 1 are visible to some row of the tile
        for (int u0 = 0; u0 < keys; u0 += 16) {
          __m256 acc[LOGIT_ROWS][2];
          for (int r = 0; r < LOGIT_ROWS; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
          for (int i = 0; i < Dh; i++) {
            const __m256 k0 = _mm256_loadu_ps(kt + (size_t)i * width + u0);
            const __m256 k1 = _mm256_loadu_ps(kt + (size_t)i * width + u0 + 8);
            for (int r = 0; r < LOGIT_ROWS; r++) {
              const __m256 qv = _mm256_broadcast_ss(qRow[r] + i);
              acc[r][0] = _mm256_fmadd_ps(qv, k0, acc[r][0]);
              acc[r][1] = _mm256_fmadd_ps(qv, k1, acc[r][1]);
            }
          }
          for (int r = 0; r < rows; r++) {
            const int t = t0 + r;
            float lanes[16];
            _mm256_storeu_ps(lanes, acc[r][0]);
            _mm256_storeu_ps(lanes + 8, acc[r][1]);
            const int last = t - u0 < 15 ? t - u0 : 15;
            float *dst = pairs + ((size_t)t * T + u0) * H + h;
            for (int j = 0; j <= last; j++) dst[(size_t)j * H] = lanes[j];
          }
        }
      }
    }
  }
}

// out[b,t,h,:] = Σ_{u ≤ t} probs[b,t,u,h]·v[b,u,h,:]: head dimensions in the lanes, 64 at a time (8 accumulators),
// then 8 at a time, then one.
AVX2 static void causalMix(const float *probs, const float *v, float *out, int B, int T, int H, int Dh) {
  const size_t rowStride = (size_t)H * Dh;
  for (int b = 0; b < B; b++) {
    const float *pb = probs + (size_t)b * T * T * H;
    const float *vb = v + (size_t)b * T * rowStride;
    float *ob = out + (size_t)b * T * rowStride;
    for (int t = 0; t < T; t++) {
      const float *p = pb + (size_t)t * T * H;
      for (int h = 0; h < H; h++) {
        const float *vh = vb + (size_t)h * Dh;
        float *o = ob + t * rowStride + (size_t)h * Dh;
        int i = 0;
        for (; i + 64 <= Dh; i += 64) {
          __m256 acc[8];
          for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_ps();
          for (int u = 0; u <= t; u++) {
            const __m256 pu = _mm256_broadcast_ss(p + (size_t)u * H + h);
            const float *row = vh + u * rowStride + i;
            for (int j = 0; j < 8; j++) acc[j] = _mm256_fmadd_ps(pu, _mm256_loadu_ps(row + 8 * j), acc[j]);
          }
          for (int j = 0; j < 8; j++) _mm256_storeu_ps(o + i + 8 * j, acc[j]);
        }
        for (; i + 8 <= Dh; i += 8) {
          __m256 acc = _mm256_setzero_ps();
          for (int u = 0; u <= t; u++)
            acc = _mm256_fmadd_ps(_mm256_broadcast_ss(p + (size_t)u * H + h), _mm256_loadu_ps(vh + u * rowStride + i), acc);
          _mm256_storeu_ps(o + i, acc);
        }
        for (; i < Dh; i++) {
          float acc = 0;
          for (int u = 0; u <= t; u++) acc = fmaf(p[(size_t)u * H + h], vh[u * rowStride + i], acc);
          o[i] = acc;
        }
      }
    }
  }
}

// y = x[r,h,:]·grams[h] (float32 FMA chains over the rows of the gram), then sqrt(Σ y·x) summed in float64 (products
// of floats are exact there, so only the order of the sum differs from a plain loop's, at float64 rounding): the
// norm of x[r,h,:]·W[h] when grams[h] = W[h]·W[h]ᵀ. Negative sums (rounding) give 0, NaN stays NaN.
AVX2 static void quadraticNorms(const float *x, const float *grams, float *out, int R, int H, int Dh, float *y) {
  for (int r = 0; r < R; r++) {
    for (int h = 0; h < H; h++) {
      const float *xh = x + ((size_t)r * H + h) * Dh;
      const float *g = grams + (size_t)h * Dh * Dh;
      int j = 0;
      for (; j + 64 <= Dh; j += 64) {
        __m256 acc[8];
        for (int c = 0; c < 8; c++) acc[c] = _mm256_setzero_ps();
        for (int i = 0; i < Dh; i++) {
          const __m256 xi = _mm256_broadcast_ss(xh + i);
          const float *gi = g + (size_t)i * Dh + j;
          for (int c = 0; c < 8; c++) acc[c] = _mm256_fmadd_ps(xi, _mm256_loadu_ps(gi + 8 * c), acc[c]);
        }
        for (int c = 0; c < 8; c++) _mm256_storeu_ps(y + j + 8 * c, acc[c]);
      }
      for (; j + 8 <= Dh; j += 8) {
        __m256 acc = _mm256_setzero_ps();
        for (int i = 0; i < Dh; i++)
          acc = _mm256_fmadd_ps(_mm256_broadcast_ss(xh + i), _mm256_loadu_ps(g + (size_t)i * Dh + j), acc);
        _mm256_storeu_ps(y + j, acc);
      }
      for (; j < Dh; j++) {
        float acc = 0;
        for (int i = 0; i < Dh; i++) acc = fmaf(xh[i], g[(size_t)i * Dh + j], acc);
        y[j] = acc;
      }
      // Four float64 partial sums: one chain would wait on the add latency for every term (as long as y took).
      __m256d partial = _mm256_setzero_pd();
      int i = 0;
      for (; i + 4 <= Dh; i += 4)
        partial = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(y + i)), _mm256_cvtps_pd(_mm_loadu_ps(xh + i)), partial);
      double lanes[4];
      _mm256_storeu_pd(lanes, partial);
      double sq = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
      for (; i < Dh; i++) sq += (double)y[i] * (double)xh[i];
      out[(size_t)r * H + h] = (float)sqrt(sq < 0 ? 0 : sq);
    }
  }
}

// ---- Causal softmax and GELU, the same operations in the same order as the WebAssembly kernels
// (assembly/elementwise.ts), so both engines give the same bits: separate multiplies and adds (no contraction into
// FMA, hence the pragma above), lanes computed independently.

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

#else
static int headsCpuSupported(void) { return 0; }
#endif

// ---- N-API binding: shapes are positive int32s; every array must hold what the shape reads or writes.

static int positive(const int32_t *v, int n) {
  for (int i = 0; i < n; i++)
    if (v[i] < 1) return 0;
  return 1;
}

// causalLogits(q, k, out, B, T, H, Dh)
static napi_value CausalLogitsJs(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value args[7];
  int32_t v[4];
  const int which[] = {3, 4, 5, 6};
  float *q, *k, *out;
  size_t lq, lk, lo;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != 7 || !intArgs(env, args, which, 4, v) ||
      !positive(v, 4))
    return throwError(env, "causalLogits: expected (q, k, out, B, T, H, Dh) with positive B, T, H and Dh");
  if (!typedArrayOf(env, args[0], napi_float32_array, (void **)&q, &lq) ||
      !typedArrayOf(env, args[1], napi_float32_array, (void **)&k, &lk) ||
      !typedArrayOf(env, args[2], napi_float32_array, (void **)&out, &lo))
    return throwError(env, "causalLogits: q, k and out must be Float32Arrays");
  const size_t B = v[0], T = v[1], H = v[2], Dh = v[3];
  if (lq < B * T * H * Dh || lk < B * T * H * Dh || lo < B * T * T * H)
    return throwError(env, "causalLogits: an array is shorter than its shape");
#if HEADS_X86
  if (!headsCpuSupported()) return throwError(env, "causalLogits: this CPU lacks AVX2 and FMA");
  // Key blocks of 16 may reach 15 columns past T.
  const int width = (int)((T + 15) / 16 * 16);
  float *kt = malloc(Dh * (size_t)width * sizeof(float));
  if (!kt) return throwError(env, "causalLogits: out of memory");
  causalLogits(q, k, out, v[0], v[1], v[2], v[3], kt, width);
  free(kt);
  return NULL;
#else
  return throwError(env, "causalLogits: the native kernel needs an x86-64 CPU");
#endif
}

// causalMix(probs, v, out, B, T, H, Dh)
static napi_value CausalMixJs(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value args[7];
  int32_t v[4];
  const int which[] = {3, 4, 5, 6};
  float *probs, *values, *out;
  size_t lp, lv, lo;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != 7 || !intArgs(env, args, which, 4, v) ||
      !positive(v, 4))
    return throwError(env, "causalMix: expected (probs, v, out, B, T, H, Dh) with positive B, T, H and Dh");
  if (!typedArrayOf(env, args[0], napi_float32_array, (void **)&probs, &lp) ||
      !typedArrayOf(env, args[1], napi_float32_array, (void **)&values, &lv) ||
      !typedArrayOf(env, args[2], napi_float32_array, (void **)&out, &lo))
    return throwError(env, "causalMix: probs, v and out must be Float32Arrays");
  const size_t B = v[0], T = v[1], H = v[2], Dh = v[3];
  if (lp < B * T * T * H || lv < B * T * H * Dh || lo < B * T * H * Dh)
    return throwError(env, "causalMix: an array is shorter than its shape");
#if HEADS_X86
  if (!headsCpuSupported()) return throwError(env, "causalMix: this CPU lacks AVX2 and FMA");
  causalMix(probs, values, out, v[0], v[1], v[2], v[3]);
  return NULL;
#else
  return throwError(env, "causalMix: the native kernel needs an x86-64 CPU");
#endif
}

// quadraticNorms(x, grams, out, R, H, Dh)
static napi_value QuadraticNormsJs(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value args[6];
  int32_t v[3];
  const int which[] = {3, 4, 5};
  float *x, *grams, *out;
  size_t lx, lg, lo;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != 6 || !intArgs(env, args, which, 3, v) ||
      !positive(v, 3))
    return throwError(env, "quadraticNorms: expected (x, grams, out, R, H, Dh) with positive R, H and Dh");
  if (!typedArrayOf(env, args[0], napi_float32_array, (void **)&x, &lx) ||
      !typedArrayOf(env, args[1], napi_float32_array, (void **)&grams, &lg) ||
      !typedArrayOf(env, args[2], napi_float32_array, (void **)&out, &lo))
    return throwError(env, "quadraticNorms: x, grams and out must be Float32Arrays");
  const size_t R = v[0], H = v[1], Dh = v[2];
  if (lx < R * H * Dh || lg < H * Dh * Dh || lo < R * H)
    return throwError(env, "quadraticNorms: an array is shorter than its shape");
#if HEADS_X86
  if (!headsCpuSupported()) return throwError(env, "quadraticNorms: this CPU lacks AVX2 and FMA");
  float *y = malloc(Dh * sizeof(float));
  if (!y) return throwError(env, "quadraticNorms: out of memory");
  quadraticNorms(x, grams, out, v[0], v[1], v[2], y);
  free(y);
  return NULL;
#else
  return throwError(env, "quadraticNorms: the native kernel needs an x86-64 CPU");
#endif
}

// causalSoftmax(logits, probs, B, T, H)
static napi_value CausalSoftmaxJs(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value args[5];
  int32_t v[3];
  const int which[] = {2, 3, 4};
  float *logits, *probs;
  size_t ll, lp;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != 5 || !intArgs(env, args, which, 3, v) ||
      !positive(v, 3))
    return throwError(env, "causalSoftmax: expected (logits, probs, B, T, H) with positive B, T and H");
  if (!typedArrayOf(env, args[0], napi_float32_array, (void **)&logits, &ll) ||
      !typedArrayOf(env, args[1], napi_float32_array, (void **)&probs, &lp))
    return throwError(env, "causalSoftmax: logits and probs must be Float32Arrays");
  const size_t B = v[0], T = v[1], H = v[2];
  if (ll < B * T * T * H || lp < B * T * T * H)
    return throwError(env, "causalSoftmax: an array is shorter than its shape");
#if HEADS_X86
  if (!headsCpuSupported()) return throwError(env, "causalSoftmax: this CPU lacks AVX2 and FMA");
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
#if HEADS_X86
  if (!headsCpuSupported()) return throwError(env, "geluNew: this CPU lacks AVX2 and FMA");
  geluNew(x, y, lx);
  return NULL;
#else
  return throwError(env, "geluNew: the native kernel needs an x86-64 CPU");
#endif
}

void headsRegister(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"causalLogits", NULL, CausalLogitsJs, NULL, NULL, NULL, napi_default, NULL},
    {"causalMix", NULL, CausalMixJs, NULL, NULL, NULL, napi_default, NULL},
    {"quadraticNorms", NULL, QuadraticNormsJs, NULL, NULL, NULL, napi_default, NULL},
    {"causalSoftmax", NULL, CausalSoftmaxJs, NULL, NULL, NULL, napi_default, NULL},
    {"geluNew", NULL, GeluNewJs, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, 5, props);
}
