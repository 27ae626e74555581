// Optional native GEMM for Node (N-API, plain C, AVX2 + FMA): the same C[m×n] (=|+=) op(A)·op(B) contract as the
// WebAssembly kernel, at the 256-bit FMA rate that WebAssembly's 128-bit SIMD cannot reach. Built from source by
// scripts/build-native.mjs (node-gyp, no download); where it is missing or the CPU lacks AVX2/FMA the WebAssembly
// kernel is used instead.
//
//  * A·B and Atᵀ·B: packed panels (B strips [kc][24], A groups [kc][4]) and a 4×24 register tile (12 ymm
//    accumulators). Blocks: KC deep, MC rows of A per packed block, PANEL columns of B (whole rows, up to 4608)
//    packed at a time.
//  * A·Btᵀ with 32 rows or more and n ≤ k: the same kernel, Bt transposed 8×8 block by block while it is packed.
//  * Other A·Btᵀ: dot products of A rows with Bt rows (both contiguous in k), 4×3 register tile, no
//    packing: Bt is usually a large weight matrix read once, in place.
//  * Prepacked operands (model weights, packed once by `prepack` in either orientation): the same kernel on strips
//    read straight from the prepacked copy, PREPACK_DEPTH deep, so no product pays for packing B again.
#include <node_api.h>
#include <pthread.h>

#include "elementwise.h"
#include "heads.h"
#include "napi-args.h"
#include "screen.h"
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#define TDB_X86 1
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma")))
#else
#define TDB_X86 0
#endif

// PANEL: columns of B packed at a time, 192 strips. Packing whole rows of B (every column up to 4608, which covers
// GPT-2's widths) reads it sequentially; narrow panels read short runs 12 KB apart, and with row strides that are
// multiples of 4 KB those runs fall into a few cache sets and evict one another (−15 % at 32 rows).
enum { MR = 4, NR = 24, PANEL = 192 * NR, KC = 256, MC = 256, KC_DOT = 1024, MC_DOT = 64 };
// A·Btᵀ with at least this many rows of A, and no more columns than its depth (n ≤ k: the backward products
// through GPT-2's weights but the one through W_proj), runs on packed panels, Bt transposed while packed: +7 % to
// +25 % at 32 rows. Wide products at depth 768 (W_proj, the 50 257-token vocabulary) and few rows (TDB's one logit
// row) are faster as dot products that read Bt in place (measured here, one thread).
enum { PACKED_T_MIN_ROWS = 32 };
// Depth of a prepacked block: GPT-2's 768-deep products in one pass (C written once, A packed once), 3072-deep ones
// in four; a 72 KB strip is read from L2 by each row tile (+3 to +6 % over 256-deep blocks at 32 to 256 rows).
enum { PREPACK_DEPTH = 768 };

typedef struct {
  int transA, transB, m, k, n, accumulate;
  const float *a, *b;
  float *c;
  const float *prepacked;  // op(B) prepacked (then b and transB are unused), or NULL
} Job;

typedef struct {
  float *ptr;
  size_t floats;
} Scratch;

// Grows a scratch buffer (64-byte aligned) to at least `floats`; returns NULL if memory is exhausted.
static float *scratch(Scratch *s, size_t floats) {
  if (s->floats >= floats) return s->ptr;
  free(s->ptr);
  size_t bytes = (floats * sizeof(float) + 63) & ~(size_t)63;
  s->ptr = aligned_alloc(64, bytes);
  s->floats = s->ptr ? floats : 0;
  return s->ptr;
}

// Floats of op(B)[k×n] prepacked: k rows of n columns rounded up to whole strips. PREPACK_SLACK more floats let the
// copy start on a 64-byte boundary wherever its buffer starts.
enum { PREPACK_SLACK = 16 };
static size_t stripWidth(int n) { return (size_t)((n + NR - 1) / NR) * NR; }
static size_t prepackedFloats(int k, int n) { return (size_t)k * stripWidth(n); }

// Per thread: helper threads and any JS threads (worker_threads) calling in each pack into their own.
static _Thread_local Scratch packA = {0}, packB = {0};

#if TDB_X86

// Writes (or adds) a 4×24 tile held in a row-major buffer into C[mr×nr].
static void storeEdge(const float *tile, float *c, size_t ldc, int mr, int nr, int add) {
  for (int r = 0; r < mr; r++) {
    float *row = c + (size_t)r * ldc;
    for (int q = 0; q < nr; q++) row[q] = add ? row[q] + tile[r * NR + q] : tile[r * NR + q];
  }
}

// C[mr×nr] (=|+=) Ap[kc][4] · Bp[kc][24]. `next` (or NULL): the unpacked rows (`ldn` apart) of the strip packed
// next, fetched into cache meanwhile so that packing it does not wait on memory row by row.
AVX2 static void kernel4x24(int kc, const float *ap, const float *bp, const float *next, size_t ldn, float *c, size_t ldc, int mr, int nr, int add) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c02 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps(), c12 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(), c22 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps(), c32 = _mm256_setzero_ps();
  for (int p = 0; p < kc; p++) {
    if (next) {
      _mm_prefetch((const char *)next, _MM_HINT_T0);
      _mm_prefetch((const char *)(next + 16), _MM_HINT_T0);
      next += ldn;
    }
    const __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8), b2 = _mm256_load_ps(bp + 16);
    __m256 a = _mm256_broadcast_ss(ap);
    c00 = _mm256_fmadd_ps(a, b0, c00);
    c01 = _mm256_fmadd_ps(a, b1, c01);
    c02 = _mm256_fmadd_ps(a, b2, c02);
    a = _mm256_broadcast_ss(ap + 1);
    c10 = _mm256_fmadd_ps(a, b0, c10);
    c11 = _mm256_fmadd_ps(a, b1, c11);
    c12 = _mm256_fmadd_ps(a, b2, c12);
    a = _mm256_broadcast_ss(ap + 2);
    c20 = _mm256_fmadd_ps(a, b0, c20);
    c21 = _mm256_fmadd_ps(a, b1, c21);
    c22 = _mm256_fmadd_ps(a, b2, c22);
    a = _mm256_broadcast_ss(ap + 3);
    c30 = _mm256_fmadd_ps(a, b0, c30);
    c31 = _mm256_fmadd_ps(a, b1, c31);
    c32 = _mm256_fmadd_ps(a, b2, c32);
    ap += MR;
    bp += NR;
  }
  if (mr == MR && nr == NR) {
    float *r0 = c, *r1 = c + ldc, *r2 = r1 + ldc, *r3 = r2 + ldc;
    if (add) {
      c00 = _mm256_add_ps(c00, _mm256_loadu_ps(r0));
      c01 = _mm256_add_ps(c01, _mm256_loadu_ps(r0 + 8));
      c02 = _mm256_add_ps(c02, _mm256_loadu_ps(r0 + 16));
      c10 = _mm256_add_ps(c10, _mm256_loadu_ps(r1));
      c11 = _mm256_add_ps(c11, _mm256_loadu_ps(r1 + 8));
      c12 = _mm256_add_ps(c12, _mm256_loadu_ps(r1 + 16));
      c20 = _mm256_add_ps(c20, _mm256_loadu_ps(r2));
      c21 = _mm256_add_ps(c21, _mm256_loadu_ps(r2 + 8));
      c22 = _mm256_add_ps(c22, _mm256_loadu_ps(r2 + 16));
      c30 = _mm256_add_ps(c30, _mm256_loadu_ps(r3));
      c31 = _mm256_add_ps(c31, _mm256_loadu_ps(r3 + 8));
      c32 = _mm256_add_ps(c32, _mm256_loadu_ps(r3 + 16));
    }
    _mm256_storeu_ps(r0, c00);
    _mm256_storeu_ps(r0 + 8, c01);
    _mm256_storeu_ps(r0 + 16, c02);
    _mm256_storeu_ps(r1, c10);
    _mm256_storeu_ps(r1 + 8, c11);
    _mm256_storeu_ps(r1 + 16, c12);
    _mm256_storeu_ps(r2, c20);
    _mm256_storeu_ps(r2 + 8, c21);
    _mm256_storeu_ps(r2 + 16, c22);
    _mm256_storeu_ps(r3, c30);
    _mm256_storeu_ps(r3 + 8, c31);
    _mm256_storeu_ps(r3 + 16, c32);
    return;
  }
  float tile[MR * NR] __attribute__((aligned(32)));
  _mm256_store_ps(tile, c00);
  _mm256_store_ps(tile + 8, c01);
  _mm256_store_ps(tile + 16, c02);
  _mm256_store_ps(tile + 24, c10);
  _mm256_store_ps(tile + 32, c11);
  _mm256_store_ps(tile + 40, c12);
  _mm256_store_ps(tile + 48, c20);
  _mm256_store_ps(tile + 56, c21);
  _mm256_store_ps(tile + 64, c22);
  _mm256_store_ps(tile + 72, c30);
  _mm256_store_ps(tile + 80, c31);
  _mm256_store_ps(tile + 88, c32);
  storeEdge(tile, c, ldc, mr, nr, add);
}

// Packs B[kc × nc] (element (p, j) at b[p*rsb + j], nc ≤ PANEL) into 24-column strips [kc][24], zero-padding the
// last strip. Row by row, so each row's PANEL columns are read as one contiguous run of whole cache lines.
AVX2 static void packPanel(const float *b, size_t rsb, int kc, int nc, float *dst) {
  const int full = nc / NR;
  const int rest = nc - full * NR;
  const size_t strip = (size_t)kc * NR;
  for (int p = 0; p < kc; p++, b += rsb) {
    float *row = dst + (size_t)p * NR;
    for (int s = 0; s < full; s++) {
      const float *src = b + s * NR;
      float *out = row + s * strip;
      _mm256_store_ps(out, _mm256_loadu_ps(src));
      _mm256_store_ps(out + 8, _mm256_loadu_ps(src + 8));
      _mm256_store_ps(out + 16, _mm256_loadu_ps(src + 16));
    }
    if (rest > 0) {
      const float *src = b + full * NR;
      float *out = row + full * strip;
      int q = 0;
      for (; q < rest; q++) out[q] = src[q];
      for (; q < NR; q++) out[q] = 0;
    }
  }
}

// Packs A[mc × kc] (element (i, p) at a[i*rsa + p*csa]) into 4-row groups [kc][4], zero-padding the last group.
static void packGroups(const float *a, size_t rsa, size_t csa, int mc, int kc, float *dst) {
  for (int i0 = 0; i0 < mc; i0 += MR) {
    const int h = mc - i0 < MR ? mc - i0 : MR;
    const float *src = a + (size_t)i0 * rsa;
    if (h == MR && csa == 1) {
      const float *s0 = src, *s1 = s0 + rsa, *s2 = s1 + rsa, *s3 = s2 + rsa;
      for (int p = 0; p < kc; p++, dst += MR) {
        dst[0] = s0[p];
        dst[1] = s1[p];
        dst[2] = s2[p];
        dst[3] = s3[p];
      }
    } else {
      for (int p = 0; p < kc; p++, dst += MR) {
        for (int r = 0; r < MR; r++) dst[r] = r < h ? src[(size_t)r * rsa + (size_t)p * csa] : 0;
      }
    }
  }
}

// Packs Bᵀ's block Bt[nc × kc] (row j, element p at bt[j*ldt + p], nc ≤ PANEL) into 24-column strips [kc][24]:
// the layout packPanel makes from B, so A·Btᵀ runs on kernel4x24 too. 8×8 blocks are transposed in registers; the
// eight rows of a block are read together, one cache line each, so rows a multiple of 4 KB apart still fit a set.
AVX2 static void packPanelT(const float *bt, size_t ldt, int kc, int nc, float *dst) {
  const size_t strip = (size_t)kc * NR;
  for (int j0 = 0; j0 < nc; j0 += 8) {
    const int rows = nc - j0 < 8 ? nc - j0 : 8;
    float *out = dst + (size_t)(j0 / NR) * strip + j0 % NR;
    const float *src[8];
    for (int r = 0; r < 8; r++) src[r] = bt + (size_t)(j0 + (r < rows ? r : 0)) * ldt;
    int p = 0;
    for (; p + 8 <= kc; p += 8) {
      __m256 r0 = _mm256_loadu_ps(src[0] + p), r1 = _mm256_loadu_ps(src[1] + p), r2 = _mm256_loadu_ps(src[2] + p),
             r3 = _mm256_loadu_ps(src[3] + p), r4 = _mm256_loadu_ps(src[4] + p), r5 = _mm256_loadu_ps(src[5] + p),
             r6 = _mm256_loadu_ps(src[6] + p), r7 = _mm256_loadu_ps(src[7] + p);
      const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
                   t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
                   t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
      const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
                   u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
                   u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
                   u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
      r0 = _mm256_permute2f128_ps(u0, u4, 0x20);
      r1 = _mm256_permute2f128_ps(u1, u5, 0x20);
      r2 = _mm256_permute2f128_ps(u2, u6, 0x20);
      r3 = _mm256_permute2f128_ps(u3, u7, 0x20);
      r4 = _mm256_permute2f128_ps(u0, u4, 0x31);
      r5 = _mm256_permute2f128_ps(u1, u5, 0x31);
      r6 = _mm256_permute2f128_ps(u2, u6, 0x31);
      r7 = _mm256_permute2f128_ps(u3, u7, 0x31);
      // Row q of the transposed block is element p + q of the eight Bt rows: packed row p + q, columns j0 … j0 + 7.
      _mm256_storeu_ps(out + (size_t)(p + 0) * NR, r0);
      _mm256_storeu_ps(out + (size_t)(p + 1) * NR, r1);
      _mm256_storeu_ps(out + (size_t)(p + 2) * NR, r2);
      _mm256_storeu_ps(out + (size_t)(p + 3) * NR, r3);
      _mm256_storeu_ps(out + (size_t)(p + 4) * NR, r4);
      _mm256_storeu_ps(out + (size_t)(p + 5) * NR, r5);
      _mm256_storeu_ps(out + (size_t)(p + 6) * NR, r6);
      _mm256_storeu_ps(out + (size_t)(p + 7) * NR, r7);
    }
    for (; p < kc; p++)
      for (int r = 0; r < 8; r++) out[(size_t)p * NR + r] = src[r][p];
    if (rows < 8)  // the rows past nc repeated row j0; zero them as packPanel zero-pads
      for (int q = 0; q < kc; q++)
        for (int r = rows; r < 8; r++) out[(size_t)q * NR + r] = 0;
  }
  // Columns past nc in the last strip (nc not a multiple of 8 leaves them to the loop above; whole missing groups
  // of 8 here).
  const int padFrom = (nc + 7) / 8 * 8, padTo = (nc + NR - 1) / NR * NR;
  for (int j = padFrom; j < padTo; j++) {
    float *out = dst + (size_t)(j / NR) * strip + j % NR;
    for (int q = 0; q < kc; q++) out[(size_t)q * NR] = 0;
  }
}

// Columns [j0, j1) of C (=|+=) A·op(B), A element (i, p) at a[i*rsa + p*csa]; B row-major [k×n], or with transB
// given as Bt [n×k]; 0 on success, -1 out of memory. B is packed a panel (PANEL columns) at a time, just before the
// row tiles that use it, so the panel is still in cache for them; without transB the first row tile of each strip
// fetches the same strip of the next panel meanwhile.
AVX2 static int gemmPacked(const float *a, size_t rsa, size_t csa, const float *b, int transB, float *c, int m, int k, int n, int j0, int j1, int accumulate) {
  const size_t ldc = (size_t)n;
  float *bp = scratch(&packB, (size_t)KC * PANEL);
  float *ap = scratch(&packA, (size_t)KC * MC);
  if (!bp || !ap) return -1;
  for (int pc = 0; pc < k; pc += KC) {
    const int kc = k - pc < KC ? k - pc : KC;
    const int add = accumulate || pc > 0;
    const float *bRows = transB ? NULL : b + (size_t)pc * n;
    for (int ic = 0; ic < m; ic += MC) {
      const int mc = m - ic < MC ? m - ic : MC;
      packGroups(a + (size_t)ic * rsa + (size_t)pc * csa, rsa, csa, mc, kc, ap);
      for (int jp = j0; jp < j1; jp += PANEL) {
        const int np = j1 - jp < PANEL ? j1 - jp : PANEL;
        if (transB) packPanelT(b + (size_t)jp * k + pc, (size_t)k, kc, np, bp);
        else packPanel(bRows + jp, (size_t)n, kc, np, bp);
        const int nextPanel = jp + PANEL;
        for (int jr = 0; jr < np; jr += NR) {
          const int nr = np - jr < NR ? np - jr : NR;
          const float *strip = bp + (size_t)jr * kc;
          const float *next = !transB && nextPanel + jr + NR <= j1 ? bRows + nextPanel + jr : NULL;
          for (int ir = 0; ir < mc; ir += MR) {
            const int mr = mc - ir < MR ? mc - ir : MR;
            kernel4x24(kc, ap + (size_t)ir * kc, strip, ir == 0 ? next : NULL, (size_t)n, c + (size_t)(ic + ir) * ldc + jp + jr, ldc, mr, nr, add);
          }
        }
      }
    }
  }
  return 0;
}

// Prepacks op(B)[k×n] (B row-major [k×n], or with transB given as Bt [n×k]): blocks of PREPACK_DEPTH rows one after
// another, each holding its strips [kc][24] in column order, the last strip zero-padded.
AVX2 static void prepack(const float *b, int transB, int k, int n, float *out) {
  const size_t width = stripWidth(n);
  for (int pc = 0; pc < k; pc += PREPACK_DEPTH) {
    const int kc = k - pc < PREPACK_DEPTH ? k - pc : PREPACK_DEPTH;
    float *block = out + (size_t)pc * width;
    for (int jp = 0; jp < n; jp += PANEL) {
      const int np = n - jp < PANEL ? n - jp : PANEL;
      float *strips = block + (size_t)jp * kc;  // strip jp / NR of the block
      if (transB) packPanelT(b + (size_t)jp * k + pc, (size_t)k, kc, np, strips);
      else packPanel(b + (size_t)pc * n + jp, (size_t)n, kc, np, strips);
    }
  }
}

// Columns [j0, j1) of C (=|+=) A·op(B) with op(B) prepacked; j0 a multiple of NR. 0 on success, -1 out of memory.
AVX2 static int gemmPrepacked(const float *a, size_t rsa, size_t csa, const float *bp, float *c, int m, int k, int n, int j0, int j1, int accumulate) {
  const size_t ldc = (size_t)n, width = stripWidth(n);
  const int mcMax = m < MC ? m : MC;
  float *ap = scratch(&packA, (size_t)PREPACK_DEPTH * (size_t)((mcMax + MR - 1) / MR * MR));
  if (!ap) return -1;
  for (int pc = 0; pc < k; pc += PREPACK_DEPTH) {
    const int kc = k - pc < PREPACK_DEPTH ? k - pc : PREPACK_DEPTH;
    const int add = accumulate || pc > 0;
    const float *block = bp + (size_t)pc * width;
    for (int ic = 0; ic < m; ic += MC) {
      const int mc = m - ic < MC ? m - ic : MC;
      packGroups(a + (size_t)ic * rsa + (size_t)pc * csa, rsa, csa, mc, kc, ap);
      for (int jr = j0; jr < j1; jr += NR) {
        const int nr = j1 - jr < NR ? j1 - jr : NR;
        const float *strip = block + (size_t)jr * kc;
        for (int ir = 0; ir < mc; ir += MR) {
          const int mr = mc - ir < MR ? mc - ir : MR;
          kernel4x24(kc, ap + (size_t)ir * kc, strip, NULL, 0, c + (size_t)(ic + ir) * ldc + jr, ldc, mr, nr, add);
        }
      }
    }
  }
  return 0;
}

// [Σx0, Σx1, Σx2, Σx3]
AVX2 static __m128 sum4(__m256 x0, __m256 x1, __m256 x2, __m256 x3) {
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(x0, x1), _mm256_hadd_ps(x2, x3));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

// C[mr×nr] (=|+=) rows a0..a3 · rows b0..b2 over kc (missing rows repeat a real one and are not stored).
// `next` (or NULL): the first of the three Bt rows that come next, fetched into cache meanwhile, since Bt is
// usually streamed from memory once and three streams alone do not keep the hardware prefetcher busy enough.
AVX2 static void dot4x3(int kc, const float *a0, size_t lda, const float *b0, size_t ldb, const float *next, float *c, size_t ldc, int mr, int nr, int add) {
  const float *a1 = mr > 1 ? a0 + lda : a0, *a2 = mr > 2 ? a0 + 2 * lda : a0, *a3 = mr > 3 ? a0 + 3 * lda : a0;
  const float *b1 = nr > 1 ? b0 + ldb : b0, *b2 = nr > 2 ? b0 + 2 * ldb : b0;
  __m256 s00 = _mm256_setzero_ps(), s01 = _mm256_setzero_ps(), s02 = _mm256_setzero_ps();
  __m256 s10 = _mm256_setzero_ps(), s11 = _mm256_setzero_ps(), s12 = _mm256_setzero_ps();
  __m256 s20 = _mm256_setzero_ps(), s21 = _mm256_setzero_ps(), s22 = _mm256_setzero_ps();
  __m256 s30 = _mm256_setzero_ps(), s31 = _mm256_setzero_ps(), s32 = _mm256_setzero_ps();
  int p = 0;
  for (; p + 8 <= kc; p += 8) {
    if (next && (p & 15) == 0) {
      _mm_prefetch((const char *)(next + p), _MM_HINT_T0);
      _mm_prefetch((const char *)(next + ldb + p), _MM_HINT_T0);
      _mm_prefetch((const char *)(next + 2 * ldb + p), _MM_HINT_T0);
    }
    const __m256 x0 = _mm256_loadu_ps(b0 + p), x1 = _mm256_loadu_ps(b1 + p), x2 = _mm256_loadu_ps(b2 + p);
    __m256 a = _mm256_loadu_ps(a0 + p);
    s00 = _mm256_fmadd_ps(a, x0, s00);
    s01 = _mm256_fmadd_ps(a, x1, s01);
    s02 = _mm256_fmadd_ps(a, x2, s02);
    a = _mm256_loadu_ps(a1 + p);
    s10 = _mm256_fmadd_ps(a, x0, s10);
    s11 = _mm256_fmadd_ps(a, x1, s11);
    s12 = _mm256_fmadd_ps(a, x2, s12);
    a = _mm256_loadu_ps(a2 + p);
    s20 = _mm256_fmadd_ps(a, x0, s20);
    s21 = _mm256_fmadd_ps(a, x1, s21);
    s22 = _mm256_fmadd_ps(a, x2, s22);
    a = _mm256_loadu_ps(a3 + p);
    s30 = _mm256_fmadd_ps(a, x0, s30);
    s31 = _mm256_fmadd_ps(a, x1, s31);
    s32 = _mm256_fmadd_ps(a, x2, s32);
  }
  float out[3][4] __attribute__((aligned(16)));
  _mm_store_ps(out[0], sum4(s00, s10, s20, s30));
  _mm_store_ps(out[1], sum4(s01, s11, s21, s31));
  _mm_store_ps(out[2], sum4(s02, s12, s22, s32));
  for (; p < kc; p++) {
    const float av[4] = {a0[p], a1[p], a2[p], a3[p]}, bv[3] = {b0[p], b1[p], b2[p]};
    for (int q = 0; q < 3; q++)
      for (int r = 0; r < 4; r++) out[q][r] += av[r] * bv[q];
  }
  for (int r = 0; r < mr; r++) {
    float *row = c + (size_t)r * ldc;
    for (int q = 0; q < nr; q++) row[q] = add ? row[q] + out[q][r] : out[q][r];
  }
}

// Columns [j0, j1) of C (=|+=) A·Btᵀ.
AVX2 static void gemmDot(const float *a, const float *bt, float *c, int m, int k, int n, int j0, int j1, int accumulate) {
  const size_t ld = (size_t)k, ldc = (size_t)n;
  const int streamed = (size_t)n * ld > ((size_t)1 << 20);  // Bt larger than 4 MB: from memory, not cache
  for (int k0 = 0; k0 < k; k0 += KC_DOT) {
    const int kc = k - k0 < KC_DOT ? k - k0 : KC_DOT;
    const int add = accumulate || k0 > 0;
    for (int ib = 0; ib < m; ib += MC_DOT) {
      const int iEnd = m - ib < MC_DOT ? m : ib + MC_DOT;
      for (int j = j0; j < j1; j += 3) {
        const int nr = j1 - j < 3 ? j1 - j : 3;
        const float *b0 = bt + (size_t)j * ld + k0;
        const float *next = streamed && j1 - j >= 6 ? b0 + 3 * ld : NULL;
        for (int i = ib; i < iEnd; i += MR) {
          const int mr = iEnd - i < MR ? iEnd - i : MR;
          dot4x3(kc, a + (size_t)i * ld + k0, ld, b0, ld, i == ib ? next : NULL, c + (size_t)i * ldc + j, ldc, mr, nr, add);
        }
      }
    }
  }
}

// Does A·Btᵀ run on packed panels (see PACKED_T_MIN_ROWS)?
static int packedT(const Job *job) { return job->m >= PACKED_T_MIN_ROWS && job->n <= job->k; }

// Columns [j0, j1) of a job on the calling thread; 0 on success, -1 out of memory.
static int runColumns(const Job *job, int j0, int j1) {
  if (j1 <= j0) return 0;
  const size_t rsa = job->transA ? 1 : (size_t)job->k, csa = job->transA ? (size_t)job->m : 1;
  if (job->prepacked)
    return gemmPrepacked(job->a, rsa, csa, job->prepacked, job->c, job->m, job->k, job->n, j0, j1, job->accumulate);
  if (job->transB) {
    if (packedT(job))
      return gemmPacked(job->a, (size_t)job->k, 1, job->b, 1, job->c, job->m, job->k, job->n, j0, j1, job->accumulate);
    gemmDot(job->a, job->b, job->c, job->m, job->k, job->n, j0, j1, job->accumulate);
    return 0;
  }
  // A is [m×k] (rows k apart) or given as At[k×m] (rows 1 apart, k values m apart).
  return gemmPacked(job->a, rsa, csa, job->b, 0, job->c, job->m, job->k, job->n, j0, j1, job->accumulate);
}

// ---- Helper threads: a call splits C's columns into chunks that the calling thread and up to MAX_THREADS - 1
// helpers claim one at a time (so a helper descheduled by other jobs on the machine holds up little); helpers wait
// on a condition variable between calls. One call at a time uses them: a call that finds them busy (another JS
// thread of the same process) runs on its own thread.

enum { MAX_THREADS = 16, CHUNKS_PER_THREAD = 4 };

static pthread_mutex_t poolLock = PTHREAD_MUTEX_INITIALIZER;  // held by the call using the helpers
static pthread_mutex_t stateLock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER, done = PTHREAD_COND_INITIALIZER;
static int helpersStarted = 0;
static Job sharedJob;
static int chunkWidth, chunkCount, invited, working, failed;
static unsigned long generation = 0;
static _Atomic int nextChunk;

static int claimChunks(void) {
  int status = 0;
  for (int q; (q = nextChunk++) < chunkCount;) {
    const int j0 = q * chunkWidth;
    const int j1 = j0 + chunkWidth < sharedJob.n ? j0 + chunkWidth : sharedJob.n;
    if (runColumns(&sharedJob, j0, j1) != 0) status = -1;
  }
  return status;
}

static void *helperMain(void *arg) {
  const int index = (int)(intptr_t)arg;
  unsigned long seen = 0;
  pthread_mutex_lock(&stateLock);
  for (;;) {
    while (generation == seen) pthread_cond_wait(&wake, &stateLock);
    seen = generation;
    if (index >= invited) continue;
    working++;
    pthread_mutex_unlock(&stateLock);
    const int status = claimChunks();
    pthread_mutex_lock(&stateLock);
    if (status != 0) failed = 1;
    if (--working == 0) pthread_cond_signal(&done);
  }
  return NULL;
}

// Runs a job over up to `threads` threads (the calling one included); 0 on success, -1 out of memory.
static int runSplit(const Job *job, int threads) {
  const int unit = job->transB && !job->prepacked && !packedT(job) ? 3 : NR;
  const int units = (job->n + unit - 1) / unit;
  if (threads > MAX_THREADS) threads = MAX_THREADS;
  if (threads > units) threads = units;
  if (threads <= 1 || pthread_mutex_trylock(&poolLock) != 0) return runColumns(job, 0, job->n);
  pthread_mutex_lock(&stateLock);
  while (helpersStarted < threads - 1) {
    pthread_t thread;
    if (pthread_create(&thread, NULL, helperMain, (void *)(intptr_t)helpersStarted) != 0) break;
    pthread_detach(thread);
    helpersStarted++;
  }
  sharedJob = *job;
  const int parts = helpersStarted + 1 < threads ? helpersStarted + 1 : threads;
  const int wanted = parts * CHUNKS_PER_THREAD < units ? parts * CHUNKS_PER_THREAD : units;
  chunkWidth = ((units + wanted - 1) / wanted) * unit;
  chunkCount = (job->n + chunkWidth - 1) / chunkWidth;
  nextChunk = 0;
  invited = parts - 1;
  failed = 0;
  generation++;
  pthread_cond_broadcast(&wake);
  pthread_mutex_unlock(&stateLock);
  int status = claimChunks();
  pthread_mutex_lock(&stateLock);
  // Helpers that had not woken yet find no chunk left; wait only for those inside claimChunks.
  invited = 0;
  while (working > 0) pthread_cond_wait(&done, &stateLock);
  if (failed) status = -1;
  pthread_mutex_unlock(&stateLock);
  pthread_mutex_unlock(&poolLock);
  return status;
}

static int cpuSupported(void) {
  static int known = -1;
  if (known < 0) {
    __builtin_cpu_init();
    known = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }
  return known;
}

#else
static int cpuSupported(void) { return 0; }
#endif

// ---- N-API binding. Lengths are checked by the caller (checkGemmArgs, native.ts); here only the types and the
// lengths again, so a bad call throws instead of reading past an array.

// gemm(transA, transB, a, b, c, m, k, n, accumulate, threads): transB 0 takes B [k×n], 1 takes Bt [n×k], 2 takes
// op(B) as prepack wrote it (then b must start on a 64-byte boundary).
static napi_value Gemm(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value args[10];
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != 10)
    return throwError(env, "gemm: expected 10 arguments (transA, transB, a, b, c, m, k, n, accumulate, threads)");
  int32_t v[7];  // transA, transB, m, k, n, accumulate, threads
  const int which[] = {0, 1, 5, 6, 7, 8, 9};
  if (!intArgs(env, args, which, 7, v))
    return throwError(env, "gemm: transA, transB, m, k, n, accumulate and threads must be numbers");
  float *a, *b, *c;
  size_t la, lb, lc;
  if (!typedArrayOf(env, args[2], napi_float32_array, (void **)&a, &la) ||
      !typedArrayOf(env, args[3], napi_float32_array, (void **)&b, &lb) ||
      !typedArrayOf(env, args[4], napi_float32_array, (void **)&c, &lc))
    return throwError(env, "gemm: a, b and c must be Float32Arrays");
  const int prepacked = v[1] == 2;
  const Job job = {.transA = v[0] != 0, .transB = v[1] == 1, .m = v[2], .k = v[3], .n = v[4],
                   .accumulate = v[5] != 0, .a = a, .b = b, .c = c, .prepacked = prepacked ? b : NULL};
  if (job.m < 0 || job.k < 0 || job.n < 0) return throwError(env, "gemm: negative dimension");
  const size_t bNeeds = prepacked ? prepackedFloats(job.k, job.n) : (size_t)job.k * job.n;
  if (v[1] < 0 || v[1] > 2 || (job.transA && job.transB) || la < (size_t)job.m * job.k || lb < bNeeds ||
      lc < (size_t)job.m * job.n)
    return throwError(env, "gemm: bad operands");
  if (prepacked && (uintptr_t)b % 64 != 0) return throwError(env, "gemm: a prepacked B must start on a 64-byte boundary");
  if (job.m == 0 || job.n == 0) return NULL;
  if (job.k == 0) {
    if (!job.accumulate) memset(c, 0, (size_t)job.m * job.n * sizeof(float));
    return NULL;
  }
#if TDB_X86
  if (!cpuSupported()) return throwError(env, "gemm: this CPU lacks AVX2 and FMA");
  if (runSplit(&job, v[6]) != 0) return throwError(env, "gemm: out of memory for packing buffers");
  return NULL;
#else
  return throwError(env, "gemm: the native kernel needs an x86-64 CPU");
#endif
}

// prepackedLength(k, n): the floats prepack writes for op(B)[k×n].
static napi_value PrepackedLength(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2];
  int32_t dims[2];
  const int which[] = {0, 1};
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != 2 || !intArgs(env, args, which, 2, dims) ||
      dims[0] < 0 || dims[1] < 0)
    return throwError(env, "prepackedLength: expected (k, n), non-negative numbers");
  napi_value result;
  napi_create_double(env, (double)prepackedFloats(dims[0], dims[1]), &result);
  return result;
}

// prepack(b, transB, k, n, out): writes op(B) prepacked into `out` (prepackedLength(k, n) + 16 floats) from its
// first 64-byte boundary on, since the kernel's loads are aligned; returns that offset in floats.
static napi_value Prepack(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value args[5];
  int32_t v[3];  // transB, k, n
  const int which[] = {1, 2, 3};
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != 5 || !intArgs(env, args, which, 3, v))
    return throwError(env, "prepack: expected (b, transB, k, n, out) with numbers for transB, k and n");
  float *b, *out;
  size_t lb, lo;
  if (!typedArrayOf(env, args[0], napi_float32_array, (void **)&b, &lb) ||
      !typedArrayOf(env, args[4], napi_float32_array, (void **)&out, &lo))
    return throwError(env, "prepack: b and out must be Float32Arrays");
  const int k = v[1], n = v[2];
  if (k < 0 || n < 0 || lb < (size_t)k * n || lo < prepackedFloats(k, n) + PREPACK_SLACK)
    return throwError(env, "prepack: bad operands");
  const size_t offset = ((64 - (uintptr_t)out % 64) % 64) / sizeof(float);
  if ((uintptr_t)out % sizeof(float) != 0) return throwError(env, "prepack: out is not float-aligned");
#if TDB_X86
  if (!cpuSupported()) return throwError(env, "prepack: this CPU lacks AVX2 and FMA");
  prepack(b, v[0] != 0, k, n, out + offset);
  napi_value result;
  napi_create_uint32(env, (uint32_t)offset, &result);
  return result;
#else
  return throwError(env, "prepack: the native kernel needs an x86-64 CPU");
#endif
}

static napi_value Supported(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  napi_get_boolean(env, cpuSupported(), &result);
  return result;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"gemm", NULL, Gemm, NULL, NULL, NULL, napi_default, NULL},
    {"supported", NULL, Supported, NULL, NULL, NULL, napi_default, NULL},
    {"prepackedLength", NULL, PrepackedLength, NULL, NULL, NULL, napi_default, NULL},
    {"prepack", NULL, Prepack, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, 4, props);
  screenRegister(env, exports);
  headsRegister(env, exports);
  elementwiseRegister(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
