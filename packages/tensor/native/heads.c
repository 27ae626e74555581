// Attention's per-head products in its own layouts (N-API, AVX2 + FMA), one call for every head and sequence:
// q, k, v as [B·T, H, Dh], attention pairs as [B·T, T, H] (query, key, head). As separate GEMM calls per head these
// cost a copy of each head's block in and out and a call each (36 per layer of GPT-2 small), several times their
// arithmetic at T = 64.
//
// Each product is one fused multiply-add chain from zero in the order a GEMM would take (over Dh for logits and
// for the quadratic forms' x·G, over keys for the mix), so logits and mix equal the native GEMM's per-head products
// bit for bit where it takes its packed path (GPT-2 small's shape: a test checks it).
#include "heads.h"

#include "napi-args.h"

#include <math.h>
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

// Query rows per register tile; each tile covers 16 keys (6 × 2 accumulators of 8 lanes).
enum { LOGIT_ROWS = 6 };

// logits[b,t,u,h] = q[b,t,h,:]·k[b,u,h,:] for u ≤ t, −∞ for u > t. Keys sit in the vector lanes: each head's keys
// are transposed into kt [Dh][width] (zero past T) so a tile is LOGIT_ROWS query rows × 16 keys, one FMA chain per
// entry.
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
          // All rows out with constant indices first: indexing acc by a variable row would keep it in memory,
          // stored at every step of the loop above.
          float tile[LOGIT_ROWS][16];
          for (int r = 0; r < LOGIT_ROWS; r++) {
            _mm256_storeu_ps(tile[r], acc[r][0]);
            _mm256_storeu_ps(tile[r] + 8, acc[r][1]);
          }
          for (int r = 0; r < rows; r++) {
            const int t = t0 + r;
            const int last = t - u0 < 15 ? t - u0 : 15;
            float *dst = pairs + ((size_t)t * T + u0) * H + h;
            for (int j = 0; j <= last; j++) dst[(size_t)j * H] = tile[r][j];
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
// x[r,h,:]·grams[h]·x[r,h,:]ᵀ summed as quadraticNorms does, from y (Dh floats).
AVX2 static inline float normFrom(const float *y, const float *xh, int Dh) {
  // Four float64 partial sums: one chain would wait on the add latency for every term (as long as y took).
  __m256d partial = _mm256_setzero_pd();
  int i = 0;
  for (; i + 4 <= Dh; i += 4)
    partial = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(y + i)), _mm256_cvtps_pd(_mm_loadu_ps(xh + i)), partial);
  double lanes[4];
  _mm256_storeu_pd(lanes, partial);
  double sq = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  for (; i < Dh; i++) sq += (double)y[i] * (double)xh[i];
  return (float)sqrt(sq < 0 ? 0 : sq);
}

// Three rows at a time, 32 columns of y per pass (12 accumulators): the gram's rows are loaded once for three
// products, and twelve independent chains keep both FMA pipes busy (eight, one row at a time, waited on loads).
AVX2 static void quadraticNorms3(const float *x, const float *grams, float *out, int r, int H, int h, int Dh, float *y) {
  const float *xr[3];
  for (int k = 0; k < 3; k++) xr[k] = x + ((size_t)(r + k) * H + h) * Dh;
  const float *g = grams + (size_t)h * Dh * Dh;
  for (int j = 0; j < Dh; j += 32) {
    __m256 acc[3][4];
    for (int k = 0; k < 3; k++)
      for (int c = 0; c < 4; c++) acc[k][c] = _mm256_setzero_ps();
    for (int i = 0; i < Dh; i++) {
      const float *gi = g + (size_t)i * Dh + j;
      const __m256 g0 = _mm256_loadu_ps(gi), g1 = _mm256_loadu_ps(gi + 8), g2 = _mm256_loadu_ps(gi + 16),
                   g3 = _mm256_loadu_ps(gi + 24);
      for (int k = 0; k < 3; k++) {
        const __m256 xi = _mm256_broadcast_ss(xr[k] + i);
        acc[k][0] = _mm256_fmadd_ps(xi, g0, acc[k][0]);
        acc[k][1] = _mm256_fmadd_ps(xi, g1, acc[k][1]);
        acc[k][2] = _mm256_fmadd_ps(xi, g2, acc[k][2]);
        acc[k][3] = _mm256_fmadd_ps(xi, g3, acc[k][3]);
      }
    }
    for (int k = 0; k < 3; k++)
      for (int c = 0; c < 4; c++) _mm256_storeu_ps(y + (size_t)k * Dh + j + 8 * c, acc[k][c]);
  }
  for (int k = 0; k < 3; k++) out[(size_t)(r + k) * H + h] = normFrom(y + (size_t)k * Dh, xr[k], Dh);
}

AVX2 static void quadraticNorms(const float *x, const float *grams, float *out, int R, int H, int Dh, float *y) {
  int r0 = 0;
  if (Dh % 32 == 0) {
    for (int h = 0; h < H; h++)
      for (int r = 0; r + 3 <= R; r += 3) quadraticNorms3(x, grams, out, r, H, h, Dh, y);
    r0 = R / 3 * 3;
  }
  for (int r = r0; r < R; r++) {
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
      out[(size_t)r * H + h] = normFrom(y, xh, Dh);
    }
  }
}

#else
static int headsCpuSupported(void) { return 0; }
#endif

// ---- N-API binding: shapes are positive int32s; every array must hold what the shape reads or writes.

// causalLogits(q, k, out, B, T, H, Dh)
static napi_value CausalLogitsJs(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value args[7];
  int32_t v[4];
  const int which[] = {3, 4, 5, 6};
  float *q, *k, *out;
  size_t lq, lk, lo;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != 7 || !intArgs(env, args, which, 4, v) ||
      !allPositive(v, 4))
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
      !allPositive(v, 4))
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
      !allPositive(v, 3))
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
  float *y = malloc(3 * Dh * sizeof(float));
  if (!y) return throwError(env, "quadraticNorms: out of memory");
  quadraticNorms(x, grams, out, v[0], v[1], v[2], y);
  free(y);
  return NULL;
#else
  return throwError(env, "quadraticNorms: the native kernel needs an x86-64 CPU");
#endif
}

void headsRegister(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"causalLogits", NULL, CausalLogitsJs, NULL, NULL, NULL, napi_default, NULL},
    {"causalMix", NULL, CausalMixJs, NULL, NULL, NULL, napi_default, NULL},
    {"quadraticNorms", NULL, QuadraticNormsJs, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, 3, props);
}
