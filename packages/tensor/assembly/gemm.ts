// WebAssembly SIMD128 GEMM kernel (AssemblyScript); design notes in docs/engine-notes.md, appendix A.
//
// C[m×n] (=|+=) op(A)·op(B), row-major f32; pointers are byte offsets into the imported memory, unaligned is fine.
// K is processed in blocks of KB; within a block A is packed once, in 4-row groups.
//  * A·B and Atᵀ·B: 4×8 register tiles. A groups are laid out [kc][4]; B is packed one 8-column strip ([kc][8]) at
//    a time by the first row tile, which computes with the strip while copying it, and the remaining row tiles
//    then read the strip from L1.
//  * A·Btᵀ: dot products of A rows with Bt rows, both contiguous in k, so Bt (usually a large weight matrix) is
//    read in place with no packing pass; A groups are laid out [kc/4][4 rows][4 k].
// Rows and columns past the matrix edge are packed as zeros and never stored.

const KB: i32 = 1024;

/** Floats of packA scratch needed for an m×k product (4-row groups × one K block). */
export function packASize(m: i32, k: i32): i32 {
  return ((m + 3) >> 2) * 4 * min(k, KB);
}

/** Floats of packB scratch needed for a k-deep product (one 8-column strip × one K block). */
export function packBSize(k: i32): i32 {
  return 8 * min(k, KB);
}

// Copies a [kc × cols] block whose rows are `ld` bytes apart into [kc][w] (w = 4 or 8), zero-padding cols..w.
@inline
function packRows(src: usize, ld: usize, cols: i32, w: i32, kc: i32, dst: usize): void {
  const wb = <usize>(w << 2);
  if (cols == w) {
    if (w == 8) {
      for (let p = 0; p < kc; p++) {
        v128.store(dst, v128.load(src));
        v128.store(dst, v128.load(src, 16), 16);
        src += ld;
        dst += wb;
      }
    } else {
      for (let p = 0; p < kc; p++) {
        v128.store(dst, v128.load(src));
        src += ld;
        dst += wb;
      }
    }
    return;
  }
  for (let p = 0; p < kc; p++) {
    let q = 0;
    for (; q < cols; q++) store<f32>(dst + (<usize>q << 2), load<f32>(src + (<usize>q << 2)));
    for (; q < w; q++) store<f32>(dst + (<usize>q << 2), 0);
    src += ld;
    dst += wb;
  }
}

// Packs `rows` ≤ 4 rows of A (each `ld` bytes apart, kc contiguous floats) transposed into [kc][4], zero-padding
// rows..4. A full group uses 4×4 SIMD transposes.
@inline
function packATransposed(src: usize, ld: usize, rows: i32, kc: i32, dst: usize): void {
  if (rows == 4) {
    const s1 = src + ld;
    const s2 = s1 + ld;
    const s3 = s2 + ld;
    let p = 0;
    for (; p + 4 <= kc; p += 4) {
      const o = <usize>p << 2;
      const r0 = v128.load(src + o);
      const r1 = v128.load(s1 + o);
      const r2 = v128.load(s2 + o);
      const r3 = v128.load(s3 + o);
      const t0 = i32x4.shuffle(r0, r1, 0, 4, 1, 5);
      const t1 = i32x4.shuffle(r2, r3, 0, 4, 1, 5);
      const t2 = i32x4.shuffle(r0, r1, 2, 6, 3, 7);
      const t3 = i32x4.shuffle(r2, r3, 2, 6, 3, 7);
      const out = dst + (<usize>p << 4);
      v128.store(out, i64x2.shuffle(t0, t1, 0, 2));
      v128.store(out, i64x2.shuffle(t0, t1, 1, 3), 16);
      v128.store(out, i64x2.shuffle(t2, t3, 0, 2), 32);
      v128.store(out, i64x2.shuffle(t2, t3, 1, 3), 48);
    }
    for (; p < kc; p++) {
      const o = <usize>p << 2;
      const out = dst + (<usize>p << 4);
      store<f32>(out, load<f32>(src + o));
      store<f32>(out, load<f32>(s1 + o), 4);
      store<f32>(out, load<f32>(s2 + o), 8);
      store<f32>(out, load<f32>(s3 + o), 12);
    }
    return;
  }
  for (let p = 0; p < kc; p++) {
    const o = <usize>p << 2;
    const out = dst + (<usize>p << 4);
    for (let r = 0; r < 4; r++) {
      store<f32>(out + (<usize>r << 2), r < rows ? load<f32>(src + <usize>r * ld + o) : 0);
    }
  }
}

// Writes (or adds) a 4×8 accumulator tile into C[mr×nr]; partial tiles go through `tmp` (32 floats).
@inline
function storeTile(
  c: usize,
  ldc: usize,
  mr: i32,
  nr: i32,
  add: bool,
  tmp: usize,
  c00: v128,
  c01: v128,
  c10: v128,
  c11: v128,
  c20: v128,
  c21: v128,
  c30: v128,
  c31: v128,
): void {
  if (mr == 4 && nr == 8) {
    const c1 = c + ldc;
    const c2 = c1 + ldc;
    const c3 = c2 + ldc;
    if (add) {
      c00 = f32x4.add(c00, v128.load(c));
      c01 = f32x4.add(c01, v128.load(c, 16));
      c10 = f32x4.add(c10, v128.load(c1));
      c11 = f32x4.add(c11, v128.load(c1, 16));
      c20 = f32x4.add(c20, v128.load(c2));
      c21 = f32x4.add(c21, v128.load(c2, 16));
      c30 = f32x4.add(c30, v128.load(c3));
      c31 = f32x4.add(c31, v128.load(c3, 16));
    }
    v128.store(c, c00);
    v128.store(c, c01, 16);
    v128.store(c1, c10);
    v128.store(c1, c11, 16);
    v128.store(c2, c20);
    v128.store(c2, c21, 16);
    v128.store(c3, c30);
    v128.store(c3, c31, 16);
    return;
  }
  v128.store(tmp, c00);
  v128.store(tmp, c01, 16);
  v128.store(tmp, c10, 32);
  v128.store(tmp, c11, 48);
  v128.store(tmp, c20, 64);
  v128.store(tmp, c21, 80);
  v128.store(tmp, c30, 96);
  v128.store(tmp, c31, 112);
  for (let r = 0; r < mr; r++) {
    const row = c + <usize>r * ldc;
    const t = tmp + (<usize>r << 5);
    for (let q = 0; q < nr; q++) {
      const o = <usize>q << 2;
      const v = load<f32>(t + o);
      store<f32>(row + o, add ? load<f32>(row + o) + v : v);
    }
  }
}

// 4×8 tile: C[mr×nr] (=|+=) packedA[kc][4] · packedB[kc][8].
// The loop is a pointer-compare do/while (kc ≥ 1): V8 then spends only two adds and a branch per step on it.
@inline
function tile(ap: usize, bp: usize, kc: i32, c: usize, ldc: usize, mr: i32, nr: i32, add: bool, tmp: usize): void {
  let c00 = f32x4.splat(0);
  let c01 = f32x4.splat(0);
  let c10 = f32x4.splat(0);
  let c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0);
  let c21 = f32x4.splat(0);
  let c30 = f32x4.splat(0);
  let c31 = f32x4.splat(0);
  const apEnd = ap + (<usize>kc << 4);
  do {
    const b0 = v128.load(bp);
    const b1 = v128.load(bp, 16);
    let a = v128.load32_splat(ap);
    c00 = f32x4.add(c00, f32x4.mul(a, b0));
    c01 = f32x4.add(c01, f32x4.mul(a, b1));
    a = v128.load32_splat(ap, 4);
    c10 = f32x4.add(c10, f32x4.mul(a, b0));
    c11 = f32x4.add(c11, f32x4.mul(a, b1));
    a = v128.load32_splat(ap, 8);
    c20 = f32x4.add(c20, f32x4.mul(a, b0));
    c21 = f32x4.add(c21, f32x4.mul(a, b1));
    a = v128.load32_splat(ap, 12);
    c30 = f32x4.add(c30, f32x4.mul(a, b0));
    c31 = f32x4.add(c31, f32x4.mul(a, b1));
    ap += 16;
    bp += 32;
  } while (ap < apEnd);
  storeTile(c, ldc, mr, nr, add, tmp, c00, c01, c10, c11, c20, c21, c30, c31);
}

// Same as tile() for a full 8-column strip of row-major B read in place (rows `ld` bytes apart), which it also
// copies into the packed strip at `bp` for the row tiles that follow: packing rides along with the first tile
// instead of costing a separate pass over B.
@inline
function tilePacking(ap: usize, src: usize, ld: usize, bp: usize, kc: i32, c: usize, ldc: usize, mr: i32, add: bool, tmp: usize): void {
  let c00 = f32x4.splat(0);
  let c01 = f32x4.splat(0);
  let c10 = f32x4.splat(0);
  let c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0);
  let c21 = f32x4.splat(0);
  let c30 = f32x4.splat(0);
  let c31 = f32x4.splat(0);
  const apEnd = ap + (<usize>kc << 4);
  do {
    const b0 = v128.load(src);
    const b1 = v128.load(src, 16);
    v128.store(bp, b0);
    v128.store(bp, b1, 16);
    let a = v128.load32_splat(ap);
    c00 = f32x4.add(c00, f32x4.mul(a, b0));
    c01 = f32x4.add(c01, f32x4.mul(a, b1));
    a = v128.load32_splat(ap, 4);
    c10 = f32x4.add(c10, f32x4.mul(a, b0));
    c11 = f32x4.add(c11, f32x4.mul(a, b1));
    a = v128.load32_splat(ap, 8);
    c20 = f32x4.add(c20, f32x4.mul(a, b0));
    c21 = f32x4.add(c21, f32x4.mul(a, b1));
    a = v128.load32_splat(ap, 12);
    c30 = f32x4.add(c30, f32x4.mul(a, b0));
    c31 = f32x4.add(c31, f32x4.mul(a, b1));
    ap += 16;
    bp += 32;
    src += ld;
  } while (ap < apEnd);
  storeTile(c, ldc, mr, 8, add, tmp, c00, c01, c10, c11, c20, c21, c30, c31);
}

// ---- A·Btᵀ as dot products. A is packed per 4-row group as [kc/4][4 rows][4 k], followed by the
// kc % 4 leftover k values as [rem][4 rows]; rows past m are zeros.

@inline
function packADot(src: usize, ld: usize, rows: i32, kc: i32, dst: usize): void {
  const chunks = kc >> 2;
  for (let q = 0; q < chunks; q++) {
    const s = src + (<usize>q << 4);
    const d = dst + (<usize>q << 6);
    for (let r = 0; r < 4; r++) {
      v128.store(d + (<usize>r << 4), r < rows ? v128.load(s + <usize>r * ld) : i32x4.splat(0));
    }
  }
  const rest = dst + (<usize>chunks << 6);
  for (let t = 0; t < (kc & 3); t++) {
    const o = <usize>((chunks << 2) + t) << 2;
    for (let r = 0; r < 4; r++) {
      store<f32>(rest + (<usize>((t << 2) + r) << 2), r < rows ? load<f32>(src + <usize>r * ld + o) : 0);
    }
  }
}

// [Σx0, Σx1, Σx2, Σx3]
@inline
function sum4(x0: v128, x1: v128, x2: v128, x3: v128): v128 {
  const t0 = f32x4.add(i32x4.shuffle(x0, x1, 0, 4, 1, 5), i32x4.shuffle(x0, x1, 2, 6, 3, 7));
  const t1 = f32x4.add(i32x4.shuffle(x2, x3, 0, 4, 1, 5), i32x4.shuffle(x2, x3, 2, 6, 3, 7));
  return f32x4.add(i64x2.shuffle(t0, t1, 0, 2), i64x2.shuffle(t0, t1, 1, 3));
}

// C[mr×nr] (=|+=) A[4 rows, packed] · [Bt row j, Bt row j+1]ᵀ over kc (nr = 1 or 2; for nr = 1 pass bt1 = bt0).
@inline
function dotTile(ap: usize, bt0: usize, bt1: usize, kc: i32, c: usize, ldc: usize, mr: i32, nr: i32, add: bool, tmp: usize): void {
  let s00 = f32x4.splat(0);
  let s01 = f32x4.splat(0);
  let s10 = f32x4.splat(0);
  let s11 = f32x4.splat(0);
  let s20 = f32x4.splat(0);
  let s21 = f32x4.splat(0);
  let s30 = f32x4.splat(0);
  let s31 = f32x4.splat(0);
  const chunks = kc >> 2;
  if (chunks > 0) {
    const apEnd = ap + (<usize>chunks << 6);
    do {
      const x0 = v128.load(bt0);
      const x1 = v128.load(bt1);
      let a = v128.load(ap);
      s00 = f32x4.add(s00, f32x4.mul(a, x0));
      s01 = f32x4.add(s01, f32x4.mul(a, x1));
      a = v128.load(ap, 16);
      s10 = f32x4.add(s10, f32x4.mul(a, x0));
      s11 = f32x4.add(s11, f32x4.mul(a, x1));
      a = v128.load(ap, 32);
      s20 = f32x4.add(s20, f32x4.mul(a, x0));
      s21 = f32x4.add(s21, f32x4.mul(a, x1));
      a = v128.load(ap, 48);
      s30 = f32x4.add(s30, f32x4.mul(a, x0));
      s31 = f32x4.add(s31, f32x4.mul(a, x1));
      ap += 64;
      bt0 += 16;
      bt1 += 16;
    } while (ap < apEnd);
  }
  let v0 = sum4(s00, s10, s20, s30);
  let v1 = sum4(s01, s11, s21, s31);
  for (let t = 0; t < (kc & 3); t++) {
    const a = v128.load(ap + (<usize>t << 4));
    v0 = f32x4.add(v0, f32x4.mul(a, v128.load32_splat(bt0 + (<usize>t << 2))));
    v1 = f32x4.add(v1, f32x4.mul(a, v128.load32_splat(bt1 + (<usize>t << 2))));
  }
  if (mr == 4 && nr == 2) {
    // Rows 0,1 and rows 2,3 as (j, j+1) pairs.
    let lo = i32x4.shuffle(v0, v1, 0, 4, 1, 5);
    let hi = i32x4.shuffle(v0, v1, 2, 6, 3, 7);
    const c1 = c + ldc;
    const c2 = c1 + ldc;
    const c3 = c2 + ldc;
    if (add) {
      lo = f32x4.add(lo, v128.load64_lane(c1, v128.load64_zero(c), 1));
      hi = f32x4.add(hi, v128.load64_lane(c3, v128.load64_zero(c2), 1));
    }
    v128.store64_lane(c, lo, 0);
    v128.store64_lane(c1, lo, 1);
    v128.store64_lane(c2, hi, 0);
    v128.store64_lane(c3, hi, 1);
    return;
  }
  v128.store(tmp, v0);
  v128.store(tmp, v1, 16);
  for (let r = 0; r < mr; r++) {
    const row = c + <usize>r * ldc;
    for (let q = 0; q < nr; q++) {
      const o = <usize>q << 2;
      const v = load<f32>(tmp + (<usize>((q << 2) + r) << 2));
      store<f32>(row + o, add ? load<f32>(row + o) + v : v);
    }
  }
}

/** Rows of A per pass over Bt in the dot-product path: bounds the packed A block that each Bt row pair meets. */
const MB_DOT: i32 = 64;

function gemmNT(a: usize, b: usize, c: usize, m: i32, k: i32, n: i32, j0: i32, j1: i32, accumulate: i32, packA: usize, tmp: usize): void {
  const ldc = <usize>n << 2;
  const ld = <usize>k << 2;
  for (let k0 = 0; k0 < k; k0 += KB) {
    const kc = min(KB, k - k0);
    const add = accumulate != 0 || k0 > 0;
    const groupA = <usize>kc << 4;
    for (let i0 = 0; i0 < m; i0 += 4) {
      packADot(a + ((<usize>i0 * <usize>k + <usize>k0) << 2), ld, min(4, m - i0), kc, packA + <usize>(i0 >> 2) * groupA);
    }
    for (let ib = 0; ib < m; ib += MB_DOT) {
      const iEnd = min(m, ib + MB_DOT);
      for (let j = j0; j < j1; j += 2) {
        const nr = min(2, j1 - j);
        const bt0 = b + ((<usize>j * <usize>k + <usize>k0) << 2);
        const bt1 = nr == 2 ? bt0 + ld : bt0;
        for (let i0 = ib; i0 < iEnd; i0 += 4) {
          const ap = packA + <usize>(i0 >> 2) * groupA;
          dotTile(ap, bt0, bt1, kc, c + <usize>i0 * ldc + (<usize>j << 2), ldc, min(4, m - i0), nr, add, tmp);
        }
      }
    }
  }
}

// ---- A·B and Atᵀ·B: 4×8 register tiles over packed A groups and packed B strips.

function gemmNN(transA: i32, a: usize, b: usize, c: usize, m: i32, k: i32, n: i32, j0: i32, j1: i32, accumulate: i32, packA: usize, packB: usize, tmp: usize): void {
  const ldc = <usize>n << 2;
  const ldb = <usize>n << 2;
  for (let k0 = 0; k0 < k; k0 += KB) {
    const kc = min(KB, k - k0);
    const add = accumulate != 0 || k0 > 0;
    const groupA = <usize>kc << 4;
    for (let i0 = 0; i0 < m; i0 += 4) {
      const mr = min(4, m - i0);
      const dst = packA + <usize>(i0 >> 2) * groupA;
      if (transA) packRows(a + ((<usize>k0 * <usize>m + <usize>i0) << 2), <usize>m << 2, mr, 4, kc, dst);
      else packATransposed(a + ((<usize>i0 * <usize>k + <usize>k0) << 2), <usize>k << 2, mr, kc, dst);
    }
    // Strip by strip: row tile 0 packs the strip while using it, the other row tiles then find it in L1.
    const src = b + ((<usize>k0 * <usize>n) << 2);
    const mr0 = min(4, m);
    for (let j = j0; j < j1; j += 8) {
      const nr = min(8, j1 - j);
      const cj = c + (<usize>j << 2);
      if (nr == 8) {
        tilePacking(packA, src + (<usize>j << 2), ldb, packB, kc, cj, ldc, mr0, add, tmp);
      } else {
        packRows(src + (<usize>j << 2), ldb, nr, 8, kc, packB);
        tile(packA, packB, kc, cj, ldc, mr0, nr, add, tmp);
      }
      for (let i0 = 4; i0 < m; i0 += 4) {
        tile(packA + <usize>(i0 >> 2) * groupA, packB, kc, cj + <usize>i0 * ldc, ldc, min(4, m - i0), nr, add, tmp);
      }
    }
  }
}

/**
 * C[m×n] (=|+=) op(A)·op(B) for columns j0..j1 of C only (so threads can split the columns).
 * transA = 0: A is [m×k]; 1: A is given as At[k×m]. transB = 0: B is [k×n]; 1: B is given as Bt[n×k]
 * (transA and transB together are not supported). Pointers are byte offsets; nothing needs alignment.
 * Scratch: packA ≥ packASize(m, k) floats, packB ≥ packBSize(k) floats, tmp ≥ 32 floats (none may overlap).
 */
export function gemm(
  transA: i32,
  transB: i32,
  a: usize,
  b: usize,
  c: usize,
  m: i32,
  k: i32,
  n: i32,
  j0: i32,
  j1: i32,
  accumulate: i32,
  packA: usize,
  packB: usize,
  tmp: usize,
): void {
  if (m <= 0 || j1 <= j0) return;
  if (k <= 0) {
    if (!accumulate) {
      const ldc = <usize>n << 2;
      for (let i = 0; i < m; i++) memory.fill(c + <usize>i * ldc + (<usize>j0 << 2), 0, <usize>(j1 - j0) << 2);
    }
    return;
  }
  if (transB) gemmNT(a, b, c, m, k, n, j0, j1, accumulate, packA, tmp);
  else gemmNN(transA, a, b, c, m, k, n, j0, j1, accumulate, packA, packB, tmp);
}
