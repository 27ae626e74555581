// Exact row extremes of A·Btᵀ without forming the product (N-API, AVX-512 VNNI): for each direction a (a row of
// A), a superset of the `count` largest and `count` smallest scores a·bt[j] over the rows j of Bt, each with its
// exact float32 score. Built for scoring directions against a vocabulary (Bt = the [V×d] embedding matrix), where a
// full float32 product is most of a TDB request and only the top and bottom few scores are kept.
//
// Method: Bt's rows and each direction are quantised to int8 (one scale per row), the int8 products run at four
// times the float32 FMA rate (vpdpbusd), and every approximate score ã_j comes with a rigorous bound E_j on its
// distance from the exact float32 score s_j:
//   |s_j − ã_j| ≤ ‖b_j − b̃_j‖·‖a‖ + ‖b̃_j‖·‖a − ã‖ + (float32 rounding of s_j and of ã_j).
// L = the count-th largest lower bound ã_j − E_j; any j among the count largest s_j has ã_j + E_j ≥ L, so the rows
// with upper bound ≥ L (a few dozen of 50 257, typically) are re-scored exactly and hold the true top `count`;
// likewise for the bottom. Rows flagged in `skip` are never candidates. Where a direction is not finite, is zero,
// or leaves too many candidates, its row is reported as not screened and the caller takes the full product.
#include "screen.h"

#include "napi-args.h"

#include <math.h>
#include <node_api.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define SCREEN_X86 1
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")))
#else
#define SCREEN_X86 0
#endif

// Rows of Bt per block (two 16-lane registers) and directions per register tile (12 × 2 = 24 accumulators).
enum { BLOCK = 32, TILE_DIRS = 12, MAX_COUNT = 256, MAX_CANDIDATES = 8192, MAX_THREADS = 16 };

static size_t roundUp(size_t x, size_t m) { return (x + m - 1) / m * m; }

static int screenSupported(void) {
#if SCREEN_X86
  static int known = -1;
  if (known < 0) {
    __builtin_cpu_init();
    known = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
            __builtin_cpu_supports("avx512vnni");
  }
  return known;
#else
  return 0;
#endif
}

static size_t screenPackedBytes(int rows, int depth) {
  return roundUp((size_t)rows, BLOCK) * roundUp((size_t)depth, 4);
}

static size_t screenInfoFloats(int rows) { return 3 * roundUp((size_t)rows, BLOCK); }

#if SCREEN_X86
// A row of Bt or a direction to int8 (one scale, max|b|/127, round to nearest even, as lrintf), with Σ(b − s·q)²
// and Σq² in float64; 0 if it is not finite. 16 values per step (a scalar loop took ~200 ms for GPT-2's embedding).
AVX512 static int quantiseRow(const float *b, int depth, int8_t *q, float *scaleOut, double *err2Out, double *q2Out) {
  __m512 maxAbs = _mm512_setzero_ps();
  __mmask16 bad = 0;
  for (int k = 0; k < depth; k += 16) {
    const __mmask16 m = depth - k >= 16 ? 0xFFFF : (__mmask16)((1u << (depth - k)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(m, b + k);
    bad |= _mm512_fpclass_ps_mask(v, 0x99);  // NaN, +∞, −∞
    maxAbs = _mm512_max_ps(maxAbs, _mm512_abs_ps(v));
  }
  if (bad) return 0;
  const float s = (float)((double)_mm512_reduce_max_ps(maxAbs) / 127.0);
  __m512d err2 = _mm512_setzero_pd(), q2 = _mm512_setzero_pd();
  const __m512 sv = _mm512_set1_ps(s), lim = _mm512_set1_ps(127);
  const __m512d sd = _mm512_set1_pd((double)s);
  for (int k = 0; k < depth; k += 16) {
    const __mmask16 m = depth - k >= 16 ? 0xFFFF : (__mmask16)((1u << (depth - k)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(m, b + k);
    __m512 qf = _mm512_setzero_ps();
    if (s > 0) {
      qf = _mm512_roundscale_ps(_mm512_div_ps(v, sv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      qf = _mm512_max_ps(_mm512_min_ps(qf, lim), _mm512_sub_ps(_mm512_setzero_ps(), lim));
    }
    _mm_mask_storeu_epi8(q + k, m, _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(qf)));
    for (int half = 0; half < 2; half++) {
      const __m512d vd = _mm512_cvtps_pd(half ? _mm512_extractf32x8_ps(v, 1) : _mm512_castps512_ps256(v));
      const __m512d qd = _mm512_cvtps_pd(half ? _mm512_extractf32x8_ps(qf, 1) : _mm512_castps512_ps256(qf));
      const __m512d e = _mm512_fnmadd_pd(sd, qd, vd);  // b − s·q, one rounding
      err2 = _mm512_fmadd_pd(e, e, err2);
      q2 = _mm512_fmadd_pd(qd, qd, q2);
    }
  }
  *scaleOut = s;
  *err2Out = _mm512_reduce_add_pd(err2);
  *q2Out = _mm512_reduce_add_pd(q2);
  return 1;
}
#else
static int quantiseRow(const float *b, int depth, int8_t *q, float *scaleOut, double *err2Out, double *q2Out) {
  return 0;
}
#endif

// Quantises Bt [rows×depth] into `packed` (u8 = q + 128, blocks of 32 rows × 4 depths × …, the vpdpbusd layout)
// and `info` (planar per row: scale, bound factor α = ‖b − b̃‖ + ‖b‖·rounding, ‖b̃‖). Returns 0 if Bt is not finite.
static int screenPrepare(const float *bt, int rows, int depth, uint8_t *packed, float *info) {
  if (!screenSupported()) return 0;  // its kernels need AVX-512 VNNI
  const size_t rowsPad = roundUp((size_t)rows, BLOCK), depthPad = roundUp((size_t)depth, 4);
  const size_t groups = depthPad / 4;
  float *scale = info, *alpha = info + rowsPad, *qnorm = info + 2 * rowsPad;
  memset(packed, 128, rowsPad * depthPad);
  memset(info, 0, 3 * rowsPad * sizeof(float));
  // Float32 rounding of an exact re-score in any summation order: ≤ (depth + 8)·2⁻²⁴·‖b‖·‖a‖.
  const double rounding = (depth + 8) * 0x1p-24;
  int8_t *q = malloc(depthPad);
  if (!q) return 0;
  memset(q, 0, depthPad);
  for (size_t j = 0; j < (size_t)rows; j++) {
    float s;
    double err2, q2;
    if (!quantiseRow(bt + j * depth, depth, q, &s, &err2, &q2)) {
      free(q);
      return 0;
    }
    // Bt's bytes as u8 (q + 128), four depths of one row at a time: the vpdpbusd layout.
    uint8_t *dst = packed + ((j / BLOCK) * groups * BLOCK + j % BLOCK) * 4;
    for (size_t g = 0; g < groups; g++)
      for (int i = 0; i < 4; i++) dst[g * BLOCK * 4 + i] = (uint8_t)((uint8_t)q[g * 4 + i] ^ 0x80);
    const double errNorm = sqrt(err2), qn = (double)s * sqrt(q2);
    scale[j] = s;
    // Rounded up, with a margin for the float32 evaluation of the bound itself.
    alpha[j] = (float)((errNorm + (qn + errNorm) * rounding) * (1 + 0x1p-12));
    qnorm[j] = (float)(qn * (1 + 0x1p-12));
  }
  free(q);
  return 1;
}

typedef struct {
  int32_t *offsets;  // [2m + 1]: row r's top candidates are [offsets[2r], offsets[2r+1]), its bottom ones follow
  uint8_t *screened;  // [m]: 0 where the caller must take the full product
  int32_t *index;
  float *value;
  int32_t total;
} ScreenResult;

static void screenFree(ScreenResult *result);

#if SCREEN_X86

typedef struct {
  int32_t *index;
  float *bound;  // the candidate's upper (top list) or lower (bottom list) bound
  int size, capacity, overflow;
} Candidates;

static void push(Candidates *c, int32_t index, float bound) {
  if (c->overflow) return;
  if (c->size == c->capacity) {
    if (c->capacity >= MAX_CANDIDATES) {
      c->overflow = 1;
      return;
    }
    const int grown = c->capacity ? 2 * c->capacity : 64;
    int32_t *index2 = realloc(c->index, (size_t)grown * sizeof(int32_t));
    if (index2) c->index = index2;
    float *bound2 = realloc(c->bound, (size_t)grown * sizeof(float));
    if (bound2) c->bound = bound2;
    if (!index2 || !bound2) {
      c->overflow = 1;
      return;
    }
    c->capacity = grown;
  }
  c->index[c->size] = index;
  c->bound[c->size] = bound;
  c->size++;
}

typedef struct {
  // The quantised direction's scale, 128·Σq (what Bt's u8 offset adds to each product) and the bound's norms.
  float scale, norm, errTerm;
  int32_t offset;
  int screened, zero;  // zero: every score is exactly 0, so the first `count` rows not skipped are the extremes
  // The `count` best lower bounds (descending) and the `count` best upper bounds (ascending) seen so far.
  float *topBounds, *bottomBounds;
  int topFilled, bottomFilled;
  float topThreshold, bottomThreshold;
  Candidates top, bottom;
} Direction;

// Inserts v into a list of at most `count` kept sorted (descending: largest first, else smallest first), which v
// must belong in; returns the list's count-th value once full, else `threshold` unchanged.
static float insertSorted(float *list, int *filled, int count, float v, int descending, float threshold) {
  int i = *filled < count ? (*filled)++ : count - 1;
  while (i > 0 && (descending ? list[i - 1] < v : list[i - 1] > v)) {
    list[i] = list[i - 1];
    i--;
  }
  list[i] = v;
  if (*filled < count) return threshold;
  return list[count - 1];
}

// Quantises one direction into dst (depthPad int8 values); 0 where it cannot be screened (not finite).
static int quantiseDirection(const float *a, int depth, int8_t *dst, Direction *dir) {
  float s;
  double err2, q2, norm2 = 0;
  if (!quantiseRow(a, depth, dst, &s, &err2, &q2)) return 0;  // the same quantisation as Bt's rows
  int32_t sum = 0;
  for (int k = 0; k < depth; k++) {
    norm2 += (double)a[k] * a[k];
    sum += dst[k];
  }
  if (norm2 == 0) {
    dir->zero = 1;
    return 1;
  }
  dir->scale = s;
  dir->offset = 128 * sum;
  dir->norm = (float)(sqrt(norm2) * (1 + 0x1p-12));
  // ‖a − ã‖, plus the float32 rounding of ã_j (two products) and of its bounds, as a multiple of ‖b̃_j‖.
  dir->errTerm = (float)((sqrt(err2) + (double)s * sqrt(q2) * 0x1p-20) * (1 + 0x1p-12));
  return 1;
}

// Exact float32 score a·b (16 lanes, fused multiply-add).
AVX512 static float dot(const float *a, const float *b, int depth) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int k = 0;
  for (; k + 32 <= depth; k += 32) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k), _mm512_loadu_ps(b + k), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k + 16), _mm512_loadu_ps(b + k + 16), acc1);
  }
  for (; k < depth; k += 16) {
    const __mmask16 m = depth - k >= 16 ? 0xFFFF : (__mmask16)((1u << (depth - k)) - 1);
    acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + k), _mm512_maskz_loadu_ps(m, b + k), acc0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

// Screens one 16-row group of approximate scores for one direction.
AVX512 static void screenLanes(Direction *dir, __m512i acc, const float *info, size_t rowsPad, size_t base,
                               int rows, const uint8_t *skip, int count) {
  const __m512 approx = _mm512_mul_ps(
      _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc, _mm512_set1_epi32(dir->offset))),
                    _mm512_loadu_ps(info + base)),
      _mm512_set1_ps(dir->scale));
  const __m512 bound = _mm512_fmadd_ps(_mm512_loadu_ps(info + rowsPad + base), _mm512_set1_ps(dir->norm),
                                       _mm512_mul_ps(_mm512_loadu_ps(info + 2 * rowsPad + base),
                                                     _mm512_set1_ps(dir->errTerm)));
  const __m512 upper = _mm512_add_ps(approx, bound), lower = _mm512_sub_ps(approx, bound);
  __mmask16 hits = _mm512_cmp_ps_mask(upper, _mm512_set1_ps(dir->topThreshold), _CMP_GE_OQ) |
                   _mm512_cmp_ps_mask(lower, _mm512_set1_ps(dir->bottomThreshold), _CMP_LE_OQ);
  if (!hits) return;
  float up[16], low[16];
  _mm512_storeu_ps(up, upper);
  _mm512_storeu_ps(low, lower);
  while (hits) {
    const int lane = __builtin_ctz(hits);
    hits &= hits - 1;
    const size_t j = base + lane;
    if (j >= (size_t)rows || (skip && skip[j])) continue;
    if (up[lane] >= dir->topThreshold) {
      push(&dir->top, (int32_t)j, up[lane]);
      if (low[lane] > dir->topThreshold)
        dir->topThreshold =
            insertSorted(dir->topBounds, &dir->topFilled, count, low[lane], 1, dir->topThreshold);
    }
    if (low[lane] <= dir->bottomThreshold) {
      push(&dir->bottom, (int32_t)j, low[lane]);
      if (up[lane] < dir->bottomThreshold)
        dir->bottomThreshold =
            insertSorted(dir->bottomBounds, &dir->bottomFilled, count, up[lane], 0, dir->bottomThreshold);
    }
  }
}

// One block of 32 rows of Bt against TILE_DIRS quantised directions.
AVX512 static void screenBlock(const uint8_t *block, const int8_t *dirs, size_t depthPad, Direction *dir,
                               const float *info, size_t rowsPad, size_t base, int rows, const uint8_t *skip,
                               int count) {
  // Named accumulators (an array here gets spilled to the stack on every step by GCC).
#define ACC(i) __m512i a##i##0 = _mm512_setzero_si512(), a##i##1 = _mm512_setzero_si512();
  ACC(0) ACC(1) ACC(2) ACC(3) ACC(4) ACC(5) ACC(6) ACC(7) ACC(8) ACC(9) ACC(10) ACC(11)
#undef ACC
  const size_t groups = depthPad / 4;
  const int8_t *d0 = dirs;
  for (size_t g = 0; g < groups; g++, d0 += 4) {
    const __m512i w0 = _mm512_loadu_si512(block + g * 128), w1 = _mm512_loadu_si512(block + g * 128 + 64);
#define STEP(i)                                                                 \
  {                                                                             \
    int32_t four;                                                               \
    memcpy(&four, d0 + (i) * depthPad, 4);                                      \
    const __m512i b = _mm512_set1_epi32(four);                                  \
    a##i##0 = _mm512_dpbusd_epi32(a##i##0, w0, b);                              \
    a##i##1 = _mm512_dpbusd_epi32(a##i##1, w1, b);                              \
  }
    STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7) STEP(8) STEP(9) STEP(10) STEP(11)
#undef STEP
  }
  const __m512i acc[TILE_DIRS][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}, {a40, a41}, {a50, a51},
                                     {a60, a61}, {a70, a71}, {a80, a81}, {a90, a91}, {a100, a101}, {a110, a111}};
  for (int i = 0; i < TILE_DIRS; i++) {
    if (!dir[i].screened || dir[i].zero) continue;
    screenLanes(&dir[i], acc[i][0], info, rowsPad, base, rows, skip, count);
    screenLanes(&dir[i], acc[i][1], info, rowsPad, base + 16, rows, skip, count);
  }
}

// Keeps the candidates whose bound passes the final threshold and scores them exactly, in row order.
AVX512 static int finish(const Candidates *c, float threshold, int top, const float *a, const float *bt,
                         int depth, int32_t *outIndex, float *outValue) {
  // The kept rows are scattered over Bt (3 KB each for GPT-2): the next one is fetched while this one is scored, or
  // every row would start with a full memory latency.
  const size_t rowBytes = (size_t)depth * sizeof(float);
  int n = 0, next = 0;
  const int keep = top ? 1 : 0;
#define PASSES(i) (keep ? c->bound[i] >= threshold : c->bound[i] <= threshold)
  while (next < c->size && !PASSES(next)) next++;
  while (next < c->size) {
    const int i = next++;
    while (next < c->size && !PASSES(next)) next++;
    if (next < c->size) {
      const char *row = (const char *)(bt + (size_t)c->index[next] * depth);
      for (size_t b = 0; b < rowBytes; b += 64) _mm_prefetch(row + b, _MM_HINT_T0);
    }
    const int32_t j = c->index[i];
    outIndex[n] = j;
    outValue[n] = dot(a, bt + (size_t)j * depth, depth);
    n++;
  }
#undef PASSES
  return n;
}

// A zero direction's extremes: every score is 0, so ties resolve to the first `count` rows not skipped.
static int firstRows(int rows, const uint8_t *skip, int count, int32_t *outIndex, float *outValue) {
  int n = 0;
  for (int j = 0; j < rows && n < count; j++) {
    if (skip && skip[j]) continue;
    outIndex[n] = j;
    outValue[n] = 0;
    n++;
  }
  return n;
}

// One thread's share of the screening: blocks [from, to) of Bt's rows, with its own per-direction state.
typedef struct {
  const uint8_t *packed;
  const int8_t *dirs;
  Direction *dir;
  const float *info;
  const uint8_t *skip;
  size_t depthPad, mPad, rowsPad, from, to;
  int rows, count;
} Part;

static void *screenPart(void *arg) {
  const Part *p = arg;
  for (size_t base = p->from; base < p->to; base += BLOCK) {
    const uint8_t *block = p->packed + base * p->depthPad;
    for (size_t r = 0; r < p->mPad; r += TILE_DIRS)
      screenBlock(block, p->dirs + r * p->depthPad, p->depthPad, p->dir + r, p->info, p->rowsPad, base, p->rows,
                  p->skip, p->count);
  }
  return NULL;
}

// The count-th best of the parts' best-bound lists (descending: largest, else smallest); ∓∞ if fewer.
static float mergedThreshold(Direction *const *parts, int threads, int count, int top) {
  float best[MAX_COUNT];
  int filled = 0;
  float threshold = top ? -INFINITY : INFINITY;
  for (int t = 0; t < threads; t++) {
    const Direction *d = parts[t];
    const float *list = top ? d->topBounds : d->bottomBounds;
    const int n = top ? d->topFilled : d->bottomFilled;
    for (int i = 0; i < n; i++)
      if (filled < count || (top ? list[i] > threshold : list[i] < threshold))
        threshold = insertSorted(best, &filled, count, list[i], top, threshold);
  }
  return filled < count ? (top ? -INFINITY : INFINITY) : best[count - 1];
}

// Keeps the parts' candidates whose bound passes the merged threshold and scores them exactly; the parts cover
// consecutive row ranges, so the output stays in row order.
AVX512 static int finishMerged(Direction *const *parts, int threads, int count, int top, const float *a,
                               const float *bt, int depth, int32_t *outIndex, float *outValue) {
  const float threshold = mergedThreshold(parts, threads, count, top);
  int n = 0;
  for (int t = 0; t < threads; t++)
    n += finish(top ? &parts[t]->top : &parts[t]->bottom, threshold, top, a, bt, depth, outIndex + n, outValue + n);
  return n;
}

static int screenExtremes(const float *a, int m, int depth, const float *bt, int rows, const uint8_t *packed,
                          const float *info, int count, const uint8_t *skip, int threads, ScreenResult *result) {
  memset(result, 0, sizeof *result);
  if (count < 1 || count > MAX_COUNT || m < 1 || rows < 1 || !screenSupported()) return -1;
  const size_t rowsPad = roundUp((size_t)rows, BLOCK), depthPad = roundUp((size_t)depth, 4);
  const size_t blocks = rowsPad / BLOCK;
  if (threads > MAX_THREADS) threads = MAX_THREADS;
  if ((size_t)threads > blocks) threads = (int)blocks;
  if (threads < 1) threads = 1;
  // Directions that need the kernel (finite, not zero) come first, in order, so that no tile computes the others.
  Direction *all = calloc((size_t)m, sizeof(Direction));
  int8_t *quantised = calloc((size_t)m, depthPad);  // zero padding: it meets Bt's padding in the products
  int *order = malloc((size_t)m * sizeof(int));
  int active = 0;
  if (all && quantised && order)
    for (int r = 0; r < m; r++) {
      all[r].screened = quantiseDirection(a + (size_t)r * depth, depth, quantised + (size_t)r * depthPad, &all[r]);
      if (all[r].screened && !all[r].zero) order[active++] = r;
    }
  const size_t mPad = roundUp((size_t)(active > 0 ? active : 1), TILE_DIRS);
  int8_t *dirs = aligned_alloc(64, roundUp(mPad * depthPad, 64));
  Direction *dir = calloc(mPad * threads, sizeof(Direction));  // [thread][active direction]
  float *lists = malloc(mPad * threads * 2 * count * sizeof(float));
  int status = all && quantised && order && dirs && dir && lists ? 0 : -1;
  if (status == 0) {
    memset(dirs, 0, mPad * depthPad);
    for (int i = 0; i < active; i++) {
      dir[i] = all[order[i]];
      memcpy(dirs + (size_t)i * depthPad, quantised + (size_t)order[i] * depthPad, depthPad);
    }
    for (int t = 0; t < threads; t++)
      for (size_t r = 0; r < mPad; r++) {
        Direction *d = &dir[t * mPad + r];
        if (t > 0) *d = dir[r];  // the quantisation; the bounds and candidates below are each thread's own
        d->topBounds = lists + (t * mPad + r) * 2 * count;
        d->bottomBounds = d->topBounds + count;
        d->topThreshold = -INFINITY;
        d->bottomThreshold = INFINITY;
      }
    Part parts[MAX_THREADS];
    pthread_t helpers[MAX_THREADS];
    int started = 0;
    for (int t = 0; t < threads; t++) {
      parts[t] = (Part){.packed = packed, .dirs = dirs, .dir = dir + t * mPad, .info = info, .skip = skip,
                        .depthPad = depthPad, .mPad = mPad, .rowsPad = rowsPad,
                        .from = blocks * t / threads * BLOCK, .to = blocks * (t + 1) / threads * BLOCK,
                        .rows = rows, .count = count};
    }
    if (active > 0) {  // else every direction is zero or not finite: nothing to screen
      for (int t = 1; t < threads; t++) {
        if (pthread_create(&helpers[t], NULL, screenPart, &parts[t]) != 0) break;
        started = t;
      }
      screenPart(&parts[0]);
      for (int t = 1; t <= started; t++) pthread_join(helpers[t], NULL);
      for (int t = started + 1; t < threads; t++) screenPart(&parts[t]);  // helpers that could not start
    }
    // Output: per row, the top candidates then the bottom ones; unscreened rows get none and screened[r] = 0.
    // Too many candidates (in any part, or in all parts together) leave the row to the caller, as on one thread.
    for (int i = 0; i < active; i++) {
      size_t top = 0, bottom = 0;
      for (int t = 0; t < threads; t++) {
        const Direction *d = &dir[t * mPad + i];
        if (d->top.overflow || d->bottom.overflow) all[order[i]].screened = 0;
        top += (size_t)d->top.size;
        bottom += (size_t)d->bottom.size;
      }
      if (top > MAX_CANDIDATES || bottom > MAX_CANDIDATES) all[order[i]].screened = 0;
    }
    size_t total = 0;
    for (int r = 0; r < m; r++)
      if (all[r].zero) total += 2 * (size_t)count;
    for (int i = 0; i < active; i++)
      if (all[order[i]].screened)
        for (int t = 0; t < threads; t++) total += (size_t)dir[t * mPad + i].top.size + dir[t * mPad + i].bottom.size;
    result->offsets = malloc((2 * (size_t)m + 1) * sizeof(int32_t));
    result->screened = malloc((size_t)m);
    result->index = malloc((total ? total : 1) * sizeof(int32_t));
    result->value = malloc((total ? total : 1) * sizeof(float));
    if (!result->offsets || !result->screened || !result->index || !result->value) status = -1;
    else {
      int32_t n = 0;
      result->offsets[0] = 0;
      for (int r = 0, i = 0; r < m; r++) {
        const Direction *d = &all[r];
        const int slot = i < active && order[i] == r ? i++ : -1;
        Direction *byThread[MAX_THREADS];
        if (slot >= 0)
          for (int t = 0; t < threads; t++) byThread[t] = &dir[t * mPad + slot];
        result->screened[r] = (uint8_t)d->screened;
        for (int list = 0; list < 2; list++) {
          if (d->zero) n += firstRows(rows, skip, count, result->index + n, result->value + n);
          else if (d->screened && slot >= 0)
            n += finishMerged(byThread, threads, count, list == 0, a + (size_t)r * depth, bt, depth,
                              result->index + n, result->value + n);
          result->offsets[2 * r + 1 + list] = n;
        }
      }
      result->total = n;
    }
  }
  if (dir)
    for (size_t r = 0; r < mPad * threads; r++) {
      free(dir[r].top.index);
      free(dir[r].top.bound);
      free(dir[r].bottom.index);
      free(dir[r].bottom.bound);
    }
  free(all);
  free(quantised);
  free(order);
  free(dirs);
  free(dir);
  free(lists);
  if (status != 0) screenFree(result);
  return status;
}

#else

static int screenExtremes(const float *a, int m, int depth, const float *bt, int rows, const uint8_t *packed,
                          const float *info, int count, const uint8_t *skip, int threads, ScreenResult *result) {
  memset(result, 0, sizeof *result);
  return -1;
}

#endif

static void screenFree(ScreenResult *result) {
  free(result->offsets);
  free(result->screened);
  free(result->index);
  free(result->value);
  memset(result, 0, sizeof *result);
}

// ---- N-API: screenSupported(), screenSizes(rows, depth), screenPrepare(bt, rows, depth, packed, info),
// screenExtremes(a, m, depth, bt, rows, packed, info, count, skip | null, threads). Lengths are checked here too, so a bad
// call throws instead of reading past an array.

static napi_value SupportedJs(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  napi_get_boolean(env, screenSupported(), &result);
  return result;
}

static napi_value SizesJs(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2];
  int32_t dims[2];
  const int which[] = {0, 1};
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != 2 || !intArgs(env, args, which, 2, dims) ||
      dims[0] < 1 || dims[1] < 1)
    return throwError(env, "screenSizes: expected (rows, depth), positive integers");
  napi_value result, packed, infoFloats;
  napi_create_object(env, &result);
  napi_create_double(env, (double)screenPackedBytes(dims[0], dims[1]), &packed);
  napi_create_double(env, (double)screenInfoFloats(dims[0]), &infoFloats);
  napi_set_named_property(env, result, "packedBytes", packed);
  napi_set_named_property(env, result, "infoFloats", infoFloats);
  return result;
}

static napi_value PrepareJs(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value args[5];
  int32_t dims[2];
  const int which[] = {1, 2};
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != 5 || !intArgs(env, args, which, 2, dims) ||
      dims[0] < 1 || dims[1] < 1)
    return throwError(env, "screenPrepare: expected (bt, rows, depth, packed, info)");
  void *bt, *packed, *infoArray;
  size_t lbt, lpacked, linfo;
  if (!typedArrayOf(env, args[0], napi_float32_array, &bt, &lbt) ||
      !typedArrayOf(env, args[3], napi_uint8_array, &packed, &lpacked) ||
      !typedArrayOf(env, args[4], napi_float32_array, &infoArray, &linfo))
    return throwError(env, "screenPrepare: bt must be a Float32Array, packed a Uint8Array, info a Float32Array");
  if (lbt < (size_t)dims[0] * dims[1] || lpacked < screenPackedBytes(dims[0], dims[1]) ||
      linfo < screenInfoFloats(dims[0]))
    return throwError(env, "screenPrepare: an array is too short");
  napi_value result;
  napi_get_boolean(env, screenPrepare(bt, dims[0], dims[1], packed, infoArray), &result);
  return result;
}

static napi_value copyOut(napi_env env, napi_typedarray_type type, const void *data, size_t length, size_t bytes) {
  void *raw;
  napi_value buffer, array;
  if (napi_create_arraybuffer(env, length * bytes, &raw, &buffer) != napi_ok) return NULL;
  if (length) memcpy(raw, data, length * bytes);
  if (napi_create_typedarray(env, type, length, buffer, 0, &array) != napi_ok) return NULL;
  return array;
}

static napi_value ExtremesJs(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value args[10];
  int32_t dims[5];  // m, depth, rows, count, threads
  const int which[] = {1, 2, 4, 7, 9};
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != 10 || !intArgs(env, args, which, 5, dims))
    return throwError(env, "screenExtremes: expected (a, m, depth, bt, rows, packed, info, count, skip, threads)");
  const int32_t m = dims[0], depth = dims[1], rows = dims[2], count = dims[3], threads = dims[4];
  if (m < 1 || depth < 1 || rows < 1 || count < 1) return throwError(env, "screenExtremes: bad dimensions");
  void *a, *bt, *packed, *infoArray, *skip = NULL;
  size_t la, lbt, lpacked, linfo, lskip = 0;
  if (!typedArrayOf(env, args[0], napi_float32_array, &a, &la) || !typedArrayOf(env, args[3], napi_float32_array, &bt, &lbt) ||
      !typedArrayOf(env, args[5], napi_uint8_array, &packed, &lpacked) ||
      !typedArrayOf(env, args[6], napi_float32_array, &infoArray, &linfo))
    return throwError(env, "screenExtremes: a and bt must be Float32Arrays, packed a Uint8Array, info a Float32Array");
  napi_valuetype skipType;
  napi_typeof(env, args[8], &skipType);
  if (skipType != napi_null && !typedArrayOf(env, args[8], napi_uint8_array, &skip, &lskip))
    return throwError(env, "screenExtremes: skip must be a Uint8Array or null");
  if (la < (size_t)m * depth || lbt < (size_t)rows * depth || lpacked < screenPackedBytes(rows, depth) ||
      linfo < screenInfoFloats(rows) || (skip && lskip < (size_t)rows))
    return throwError(env, "screenExtremes: an array is too short");
  ScreenResult result;
  napi_value out;
  if (screenExtremes(a, m, depth, bt, rows, packed, infoArray, count, skip, threads, &result) != 0) {
    napi_get_null(env, &out);
    return out;
  }
  napi_create_object(env, &out);
  napi_value offsets = copyOut(env, napi_int32_array, result.offsets, 2 * (size_t)m + 1, 4);
  napi_value screened = copyOut(env, napi_uint8_array, result.screened, (size_t)m, 1);
  napi_value index = copyOut(env, napi_int32_array, result.index, (size_t)result.total, 4);
  napi_value value = copyOut(env, napi_float32_array, result.value, (size_t)result.total, 4);
  screenFree(&result);
  if (!offsets || !screened || !index || !value) return throwError(env, "screenExtremes: out of memory");
  napi_set_named_property(env, out, "offsets", offsets);
  napi_set_named_property(env, out, "screened", screened);
  napi_set_named_property(env, out, "index", index);
  napi_set_named_property(env, out, "value", value);
  return out;
}

void screenRegister(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"screenSupported", NULL, SupportedJs, NULL, NULL, NULL, napi_default, NULL},
    {"screenSizes", NULL, SizesJs, NULL, NULL, NULL, napi_default, NULL},
    {"screenPrepare", NULL, PrepareJs, NULL, NULL, NULL, napi_default, NULL},
    {"screenExtremes", NULL, ExtremesJs, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, 4, props);
}
