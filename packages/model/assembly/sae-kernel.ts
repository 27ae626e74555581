// WebAssembly SIMD128 kernels for sparse-autoencoder training with TopK (AssemblyScript).
//
// The dense encoder product runs on @tdb/tensor's GEMM; these are the loops around it that JavaScript runs slowly:
// top-k selection, the sparse decode and the sparse backward pass. All pointers are byte offsets into this module's
// own memory; f32 matrices are row-major. The caller groups the (row, latent, value) pairs by latent
// (counts[j]..counts[j+1] index byRow/byValue), so one decoder row and its gradient rows stay in cache while the
// rows that use that latent stream past.

@inline
function worse(row: usize, a: i32, b: i32): bool {
  const va = load<f32>(row + (<usize>a << 2));
  const vb = load<f32>(row + (<usize>b << 2));
  return va < vb || (va == vb && a > b);
}

@inline
function swap(heap: usize, i: i32, j: i32): void {
  const pi = heap + (<usize>i << 2);
  const pj = heap + (<usize>j << 2);
  const t = load<i32>(pi);
  store<i32>(pi, load<i32>(pj));
  store<i32>(pj, t);
}

function siftDown(row: usize, heap: usize, size: i32): void {
  let i = 0;
  for (;;) {
    const l = 2 * i + 1;
    if (l >= size) return;
    const r = l + 1;
    let c = l;
    if (r < size && worse(row, load<i32>(heap + (<usize>r << 2)), load<i32>(heap + (<usize>l << 2)))) c = r;
    if (!worse(row, load<i32>(heap + (<usize>c << 2)), load<i32>(heap + (<usize>i << 2)))) return;
    swap(heap, c, i);
    i = c;
  }
}

/** For each of `rows` rows of pre [rows, m]: the indices of the k largest values (ties: lower index) into sel [rows, k]. */
export function selectTopK(pre: usize, rows: i32, m: i32, k: i32, sel: usize): void {
  for (let t = 0; t < rows; t++) {
    const row = pre + <usize>t * <usize>m * 4;
    const heap = sel + <usize>t * <usize>k * 4;
    let size = 0;
    let rootValue: f32 = 0;
    for (let j = 0; j < m; j++) {
      if (size < k) {
        let i = size++;
        store<i32>(heap + (<usize>i << 2), j);
        while (i > 0) {
          const p = (i - 1) >> 1;
          if (!worse(row, load<i32>(heap + (<usize>i << 2)), load<i32>(heap + (<usize>p << 2)))) break;
          swap(heap, i, p);
          i = p;
        }
        if (size == k) rootValue = load<f32>(row + (<usize>load<i32>(heap) << 2));
      } else {
        const v = load<f32>(row + (<usize>j << 2));
        if (v > rootValue) {
          store<i32>(heap, j);
          siftDown(row, heap, size);
          rootValue = load<f32>(row + (<usize>load<i32>(heap) << 2));
        }
      }
    }
  }
}

/** x[rows, n] += bias[n] on every row. */
export function addRows(x: usize, bias: usize, rows: i32, n: i32): void {
  const n4 = n & ~3;
  for (let t = 0; t < rows; t++) {
    const row = x + <usize>t * <usize>n * 4;
    let i = 0;
    for (; i < n4; i += 4) {
      const o = <usize>i << 2;
      v128.store(row + o, f32x4.add(v128.load(row + o), v128.load(bias + o)));
    }
    for (; i < n; i++) {
      const o = <usize>i << 2;
      store<f32>(row + o, load<f32>(row + o) + load<f32>(bias + o));
    }
  }
}

/** out[rows, n] = x[rows, n] − bias[n]. */
export function subtractRows(x: usize, bias: usize, out: usize, rows: i32, n: i32): void {
  const n4 = n & ~3;
  for (let t = 0; t < rows; t++) {
    const offset = <usize>t * <usize>n * 4;
    let i = 0;
    for (; i < n4; i += 4) {
      const o = <usize>i << 2;
      v128.store(out + offset + o, f32x4.sub(v128.load(x + offset + o), v128.load(bias + o)));
    }
    for (; i < n; i++) {
      const o = <usize>i << 2;
      store<f32>(out + offset + o, load<f32>(x + offset + o) - load<f32>(bias + o));
    }
  }
}

/** y += a·x over n floats. */
@inline
function axpy(y: usize, a: f32, x: usize, n: i32): void {
  const n4 = n & ~3;
  const av = f32x4.splat(a);
  let i = 0;
  for (; i < n4; i += 4) {
    const o = <usize>i << 2;
    v128.store(y + o, f32x4.add(v128.load(y + o), f32x4.mul(av, v128.load(x + o))));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(y + o, load<f32>(y + o) + a * load<f32>(x + o));
  }
}

/** xhat[row] += value · D[latent] for every grouped pair. */
export function decode(
  D: usize,
  counts: usize,
  byRow: usize,
  byValue: usize,
  m: i32,
  n: i32,
  xhat: usize,
): void {
  const rowBytes = <usize>n * 4;
  for (let j = 0; j < m; j++) {
    const begin = load<i32>(counts + (<usize>j << 2));
    const end = load<i32>(counts + (<usize>(j + 1) << 2));
    const d = D + <usize>j * rowBytes;
    for (let p = begin; p < end; p++) {
      axpy(xhat + <usize>load<i32>(byRow + (<usize>p << 2)) * rowBytes, load<f32>(byValue + (<usize>p << 2)), d, n);
    }
  }
}

/** xhat := scale·(xhat − x) over `count` floats (the loss gradient); returns Σ(xhat − x)². */
export function residual(xhat: usize, x: usize, count: i32, scale: f32): f64 {
  const c4 = count & ~3;
  const s = f32x4.splat(scale);
  let total: f64 = 0;
  let i = 0;
  // Partial sums in f32 lanes, flushed to f64 every 1024 floats.
  while (i < c4) {
    const stop = min(c4, i + 1024);
    let acc = f32x4.splat(0);
    for (; i < stop; i += 4) {
      const o = <usize>i << 2;
      const e = f32x4.sub(v128.load(xhat + o), v128.load(x + o));
      acc = f32x4.add(acc, f32x4.mul(e, e));
      v128.store(xhat + o, f32x4.mul(s, e));
    }
    total +=
      <f64>f32x4.extract_lane(acc, 0) +
      <f64>f32x4.extract_lane(acc, 1) +
      <f64>f32x4.extract_lane(acc, 2) +
      <f64>f32x4.extract_lane(acc, 3);
  }
  for (; i < count; i++) {
    const o = <usize>i << 2;
    const e = load<f32>(xhat + o) - load<f32>(x + o);
    total += <f64>(e * e);
    store<f32>(xhat + o, scale * e);
  }
  return total;
}

/** out[n] (f64) += Σ_t g[t, :] */
export function columnSums(g: usize, rows: i32, n: i32, out: usize): void {
  for (let i = 0; i < n; i++) {
    let s: f64 = 0;
    for (let t = 0; t < rows; t++) s += <f64>load<f32>(g + ((<usize>t * <usize>n + <usize>i) << 2));
    const o = out + (<usize>i << 3);
    store<f64>(o, load<f64>(o) + s);
  }
}

/**
 * For every grouped pair (row t, latent j, value v): dz = g_t·D_j; gD_j += v·g_t; gE_j += dz·xc_t; and per latent
 * gLat[j] (f64) += Σ dz.
 */
export function backward(
  D: usize,
  gD: usize,
  gE: usize,
  gLat: usize,
  counts: usize,
  byRow: usize,
  byValue: usize,
  g: usize,
  xc: usize,
  m: i32,
  n: i32,
): void {
  const rowBytes = <usize>n * 4;
  const n4 = n & ~3;
  for (let j = 0; j < m; j++) {
    const begin = load<i32>(counts + (<usize>j << 2));
    const end = load<i32>(counts + (<usize>(j + 1) << 2));
    if (begin == end) continue;
    const d = D + <usize>j * rowBytes;
    const gd = gD + <usize>j * rowBytes;
    const ge = gE + <usize>j * rowBytes;
    let dzSum: f64 = 0;
    for (let p = begin; p < end; p++) {
      const rowOffset = <usize>load<i32>(byRow + (<usize>p << 2)) * rowBytes;
      const gt = g + rowOffset;
      const v = load<f32>(byValue + (<usize>p << 2));
      const vv = f32x4.splat(v);
      let acc = f32x4.splat(0);
      let i = 0;
      for (; i < n4; i += 4) {
        const o = <usize>i << 2;
        const gi = v128.load(gt + o);
        acc = f32x4.add(acc, f32x4.mul(gi, v128.load(d + o)));
        v128.store(gd + o, f32x4.add(v128.load(gd + o), f32x4.mul(vv, gi)));
      }
      let dz: f32 =
        f32x4.extract_lane(acc, 0) + f32x4.extract_lane(acc, 1) + f32x4.extract_lane(acc, 2) + f32x4.extract_lane(acc, 3);
      for (; i < n; i++) {
        const o = <usize>i << 2;
        const gi = load<f32>(gt + o);
        dz += gi * load<f32>(d + o);
        store<f32>(gd + o, load<f32>(gd + o) + v * gi);
      }
      axpy(ge, dz, xc + rowOffset, n);
      dzSum += <f64>dz;
    }
    const o = gLat + (<usize>j << 3);
    store<f64>(o, load<f64>(o) + dzSum);
  }
}

/** Horizontal sum of a dot product of two n-float rows. */
@inline
function dot(a: usize, b: usize, n: i32): f32 {
  const n4 = n & ~3;
  let acc = f32x4.splat(0);
  let i = 0;
  for (; i < n4; i += 4) {
    const o = <usize>i << 2;
    acc = f32x4.add(acc, f32x4.mul(v128.load(a + o), v128.load(b + o)));
  }
  let s: f32 =
    f32x4.extract_lane(acc, 0) + f32x4.extract_lane(acc, 1) + f32x4.extract_lane(acc, 2) + f32x4.extract_lane(acc, 3);
  for (; i < n; i++) s += load<f32>(a + (<usize>i << 2)) * load<f32>(b + (<usize>i << 2));
  return s;
}

/** g_j −= (g_j·d_j)·d_j for each of m rows (d_j unit): the step then keeps |d_j| to first order. */
export function removeParallel(g: usize, D: usize, m: i32, n: i32): void {
  const rowBytes = <usize>n * 4;
  for (let j = 0; j < m; j++) {
    const gj = g + <usize>j * rowBytes;
    const dj = D + <usize>j * rowBytes;
    const c = dot(gj, dj, n);
    if (c != 0) axpy(gj, -c, dj, n);
  }
}

/** Scales each of m rows to unit norm (rows of zeros stay zero). */
export function normalizeRows(D: usize, m: i32, n: i32): void {
  const rowBytes = <usize>n * 4;
  const n4 = n & ~3;
  for (let j = 0; j < m; j++) {
    const dj = D + <usize>j * rowBytes;
    let s: f64 = 0;
    for (let i = 0; i < n; i++) {
      const v = <f64>load<f32>(dj + (<usize>i << 2));
      s += v * v;
    }
    if (s == 0) continue;
    const f = <f32>(1 / Math.sqrt(s));
    const fv = f32x4.splat(f);
    let i = 0;
    for (; i < n4; i += 4) {
      const o = <usize>i << 2;
      v128.store(dj + o, f32x4.mul(fv, v128.load(dj + o)));
    }
    for (; i < n; i++) {
      const o = <usize>i << 2;
      store<f32>(dj + o, f * load<f32>(dj + o));
    }
  }
}

/**
 * One Adam step over `count` floats: m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²; p −= lr·(m·c1)/(√(v·c2) + ε),
 * c1 and c2 being the bias corrections 1/(1 − βᵗ).
 */
export function adam(
  p: usize,
  g: usize,
  m: usize,
  v: usize,
  count: i32,
  lr: f32,
  c1: f32,
  c2: f32,
  beta1: f32,
  beta2: f32,
  eps: f32,
): void {
  const c4 = count & ~3;
  const b1 = f32x4.splat(beta1);
  const b2 = f32x4.splat(beta2);
  const ob1 = f32x4.splat(1 - beta1);
  const ob2 = f32x4.splat(1 - beta2);
  const step = f32x4.splat(lr * c1);
  const cc2 = f32x4.splat(c2);
  const e = f32x4.splat(eps);
  let i = 0;
  for (; i < c4; i += 4) {
    const o = <usize>i << 2;
    const gi = v128.load(g + o);
    const mi = f32x4.add(f32x4.mul(b1, v128.load(m + o)), f32x4.mul(ob1, gi));
    const vi = f32x4.add(f32x4.mul(b2, v128.load(v + o)), f32x4.mul(ob2, f32x4.mul(gi, gi)));
    v128.store(m + o, mi);
    v128.store(v + o, vi);
    const update = f32x4.div(f32x4.mul(step, mi), f32x4.add(f32x4.sqrt(f32x4.mul(vi, cc2)), e));
    v128.store(p + o, f32x4.sub(v128.load(p + o), update));
  }
  for (; i < count; i++) {
    const o = <usize>i << 2;
    const gi = load<f32>(g + o);
    const mi = beta1 * load<f32>(m + o) + (1 - beta1) * gi;
    const vi = beta2 * load<f32>(v + o) + (1 - beta2) * gi * gi;
    store<f32>(m + o, mi);
    store<f32>(v + o, vi);
    store<f32>(p + o, load<f32>(p + o) - (lr * c1 * mi) / (<f32>Math.sqrt(<f64>(vi * c2)) + eps));
  }
}

/** out[n] (f64) −= Σ_j w[j] (f64) · E[j, :] over m rows of E [m, n]. */
export function subtractWeightedRows(w: usize, E: usize, m: i32, n: i32, out: usize): void {
  const rowBytes = <usize>n * 4;
  for (let j = 0; j < m; j++) {
    const c = load<f64>(w + (<usize>j << 3));
    if (c == 0) continue;
    const row = E + <usize>j * rowBytes;
    for (let i = 0; i < n; i++) {
      const o = out + (<usize>i << 3);
      store<f64>(o, load<f64>(o) - c * <f64>load<f32>(row + (<usize>i << 2)));
    }
  }
}
