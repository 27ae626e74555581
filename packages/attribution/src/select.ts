/** Top-k / bottom-k selection over several arrays at once (e.g. one metric across layers). */
import { wasmElementwise } from "@tdb/tensor";

/** Values per run in the pre-pass that bounds runs of values (a multiple of 4). */
export const RUN = 64;
/** Below this many values in all, the pre-pass does not pay. */
const PREPASS_MIN_VALUES = 8192;

/** The k-th largest of `values` (k ≤ length; NaN never counts), by insertion into a short sorted list. */
function kthLargest(values: Float32Array, k: number): number {
  const best = new Float64Array(k).fill(Number.NEGATIVE_INFINITY); // descending
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!(v > best[k - 1])) continue;
    let j = k - 1;
    while (j > 0 && best[j - 1] < v) {
      best[j] = best[j - 1];
      j--;
    }
    best[j] = v;
  }
  return best[k - 1];
}

/**
 * What later passes need to know about an array of values, gathered in one pass while it is still in cache: sums of
 * its rows, whether every value is finite, and the bounds of each run of RUN values (for the selection's pre-pass).
 */
export interface ValueSummary {
  /** Sum (float64) of each row of `rowLength` consecutive values. */
  rowSums: Float64Array;
  finite: boolean;
  /** Maximum and minimum of each run of RUN consecutive values (NaN left out). */
  runMax: Float32Array;
  runMin: Float32Array;
}

/** ValueSummary of `values` (length a multiple of rowLength): one SIMD pass where WebAssembly runs. */
export function summarize(values: Float32Array, rowLength: number): ValueSummary {
  const n = values.length;
  const rows = rowLength > 0 ? Math.floor(n / rowLength) : 0;
  const kernels = wasmElementwise();
  if (kernels && n >= PREPASS_MIN_VALUES) {
    const { max, min, sum } = kernels.runSummary(values, RUN);
    let finite = true;
    for (let r = 0; r < sum.length; r++) if (!Number.isFinite(sum[r])) finite = false;
    // Rows made of whole runs add up their runs' sums; other shapes (e.g. heads, 12 values a row) are summed here.
    const rowSums =
      rowLength % RUN === 0 ? sumGroups(sum, rowLength / RUN, rows) : rowSumsOf(values, rowLength, rows);
    return { rowSums, finite, runMax: max, runMin: min };
  }
  const runs = Math.ceil(n / RUN);
  const runMax = new Float32Array(runs);
  const runMin = new Float32Array(runs);
  let nan = false;
  let finite = true;
  for (let r = 0; r < runs; r++) {
    let high = Number.NEGATIVE_INFINITY;
    let low = Number.POSITIVE_INFINITY;
    const end = Math.min(n, (r + 1) * RUN);
    for (let i = r * RUN; i < end; i++) {
      const v = values[i];
      if (v > high) high = v;
      if (v < low) low = v;
      if (Number.isNaN(v)) nan = true;
    }
    runMax[r] = high;
    runMin[r] = low;
    if (high === Number.POSITIVE_INFINITY || low === Number.NEGATIVE_INFINITY) finite = false;
  }
  return { rowSums: rowSumsOf(values, rowLength, rows), finite: finite && !nan, runMax, runMin };
}

function sumGroups(values: Float64Array, size: number, groups: number): Float64Array {
  const out = new Float64Array(groups);
  for (let g = 0; g < groups; g++) {
    let s = 0;
    for (let i = g * size; i < (g + 1) * size; i++) s += values[i];
    out[g] = s;
  }
  return out;
}

function rowSumsOf(values: Float32Array, rowLength: number, rows: number): Float64Array {
  const rowSums = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    // Four independent float64 sums: the adds do not wait on each other.
    let a0 = 0;
    let a1 = 0;
    let a2 = 0;
    let a3 = 0;
    const end = (r + 1) * rowLength;
    let i = r * rowLength;
    for (; i + 4 <= end; i += 4) {
      a0 += values[i];
      a1 += values[i + 1];
      a2 += values[i + 2];
      a3 += values[i + 3];
    }
    for (; i < end; i++) a0 += values[i];
    rowSums[r] = a0 + a1 + (a2 + a3);
  }
  return rowSums;
}

/**
 * Start indices of the runs (RUN values each) that can hold one of the k largest or k smallest values, per array,
 * from bounds of every run (a summary's, else one SIMD pass); null when every value must be scanned (no
 * WebAssembly and no summaries, few values, or fewer than k runs). At least k runs have a maximum ≥ the k-th
 * largest run maximum, so the k-th largest value is ≥ it too: runs below that bound (and above the matching bound
 * for the smallest) cannot contribute. Candidate runs are scanned in order, so ties resolve exactly as in a full
 * scan.
 */
function candidateRuns(
  arrays: readonly Float32Array[],
  k: number,
  excluded?: Uint8Array,
  summaries?: readonly (ValueSummary | undefined)[],
): Int32Array[] | null {
  const kernels = wasmElementwise();
  let total = 0;
  for (const a of arrays) total += a.length;
  if (total < PREPASS_MIN_VALUES) return null;
  const known = (i: number) => (excluded ? undefined : summaries?.[i]);
  if (!kernels && !arrays.every((_, i) => known(i))) return null;
  const bounds = arrays.map((a, i) => {
    const summary = known(i);
    if (summary) return { max: summary.runMax, min: summary.runMin };
    return kernels!.blockExtremes(a, RUN, excluded);
  });
  let runs = 0;
  for (const b of bounds) runs += b.max.length;
  if (runs <= k) return null;
  const maxima = new Float32Array(runs);
  const minima = new Float32Array(runs);
  let at = 0;
  for (const b of bounds) {
    maxima.set(b.max, at);
    minima.set(b.min, at);
    at += b.max.length;
  }
  const high = kthLargest(maxima, k);
  const low = -kthLargest(
    minima.map((v) => -v),
    k,
  );
  return bounds.map(({ max, min }) => {
    const starts: number[] = [];
    for (let r = 0; r < max.length; r++) if (max[r] >= high || min[r] <= low) starts.push(r * RUN);
    return Int32Array.from(starts);
  });
}

export interface Picked {
  /** Which array the value came from. */
  source: number;
  index: number;
  value: number;
}

/**
 * The k largest and the k smallest entries over all arrays, each list sorted by value descending (TDB sorts
 * the bottom block descending too). Ties are broken by position (earlier array, then earlier index, wins), which
 * is as good as torch.topk's choice. NaN entries are never picked. `summaries` (optional, one per array) spare the
 * pass that bounds runs of values.
 */
export function topAndBottom(
  arrays: readonly Float32Array[],
  k: number,
  summaries?: readonly (ValueSummary | undefined)[],
): { top: Picked[]; bottom: Picked[] } {
  const top = new BoundedHeap(k, 1);
  const bottom = new BoundedHeap(k, -1);
  if (k > 0) {
    const runs = candidateRuns(arrays, k, undefined, summaries);
    // The heaps' current k-th values, in locals (field reads in the hot loop cost ~3× as much).
    let high = top.worst;
    let low = -bottom.worst;
    const scan = (source: number, values: Float32Array, from: number, to: number) => {
      for (let index = from; index < to; index++) {
        const value = values[index];
        // Most values lose to both heaps' current k-th entries: one comparison each, no call.
        if (value < high && value > low) continue;
        if (Number.isNaN(value)) continue;
        top.offer(source, index, value);
        bottom.offer(source, index, value);
        high = top.worst;
        low = -bottom.worst;
      }
    };
    for (let source = 0; source < arrays.length; source++) {
      const values = arrays[source];
      if (runs === null) scan(source, values, 0, values.length);
      else
        for (const start of runs[source]) scan(source, values, start, Math.min(values.length, start + RUN));
    }
  }
  const desc = (a: Picked, b: Picked) => b.value - a.value || a.source - b.source || a.index - b.index;
  return { top: top.items().sort(desc), bottom: bottom.items().sort(desc) };
}

/**
 * Keeps the k best entries by key = sign·value (sign 1: largest values, −1: smallest); among equal keys the earlier
 * (source, index) is better. A min-heap on key in parallel typed arrays: the root is the worst kept entry, and
 * `worst` is its key while full (−∞ before), so a candidate that cannot enter is rejected by one comparison.
 */
class BoundedHeap {
  private readonly keys: Float64Array;
  private readonly sources: Int32Array;
  private readonly indices: Int32Array;
  private size = 0;
  worst = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly k: number,
    private readonly sign: 1 | -1,
  ) {
    const n = Math.max(0, k);
    this.keys = new Float64Array(n);
    this.sources = new Int32Array(n);
    this.indices = new Int32Array(n);
  }

  offer(source: number, index: number, value: number): void {
    const key = this.sign * value;
    let i: number;
    if (this.size < this.k) {
      // Sift up: the new entry rises while its parent is better than it (the root holds the worst).
      i = this.size++;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (this.worseAt(p, key, source, index)) break;
        this.move(p, i);
        i = p;
      }
    } else {
      // Full: the candidate must beat the root (equal keys: only an earlier position), then sifts down.
      if (!this.worseAt(0, key, source, index)) return;
      i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= this.size) break;
        const r = l + 1;
        const m = r < this.size && this.worseAt(r, this.keys[l], this.sources[l], this.indices[l]) ? r : l;
        if (!this.worseAt(m, key, source, index)) break;
        this.move(m, i);
        i = m;
      }
    }
    this.keys[i] = key;
    this.sources[i] = source;
    this.indices[i] = index;
    if (this.size === this.k) this.worst = this.keys[0];
  }

  items(): Picked[] {
    const out: Picked[] = [];
    for (let i = 0; i < this.size; i++) {
      out.push({ source: this.sources[i], index: this.indices[i], value: this.sign * this.keys[i] });
    }
    return out;
  }

  /** Is the entry at slot j worse than (key, source, index)? Lower key, or equal key and later position. */
  private worseAt(j: number, key: number, source: number, index: number): boolean {
    const kj = this.keys[j];
    if (kj !== key) return kj < key;
    const sj = this.sources[j];
    return sj !== source ? sj > source : this.indices[j] > index;
  }

  private move(from: number, to: number): void {
    this.keys[to] = this.keys[from];
    this.sources[to] = this.sources[from];
    this.indices[to] = this.indices[from];
  }
}

/** Indices of the n largest values (descending), skipping excluded indices. */
export function largest(values: Float32Array, n: number, excluded?: ReadonlySet<number>): number[] {
  return pickOne(values, n, excluded, 1).map((p) => p.index);
}

/** Indices of the n smallest values (ascending), skipping excluded indices. */
export function smallest(values: Float32Array, n: number, excluded?: ReadonlySet<number>): number[] {
  return pickOne(values, n, excluded, -1)
    .map((p) => p.index)
    .reverse();
}

/** largest() and smallest() in one pass over the values. */
export function largestAndSmallest(
  values: Float32Array,
  n: number,
  excluded?: ReadonlySet<number>,
): { largest: number[]; smallest: number[] } {
  const top = new BoundedHeap(n, 1);
  const bottom = new BoundedHeap(n, -1);
  if (n > 0) {
    const skip = excluded && excluded.size > 0 ? exclusionMask(excluded, values.length) : null;
    const runs = candidateRuns([values], n, skip ?? undefined);
    let high = top.worst;
    let low = -bottom.worst;
    const scan = (from: number, to: number) => {
      for (let index = from; index < to; index++) {
        const value = values[index];
        if ((value < high && value > low) || Number.isNaN(value)) continue;
        if (skip !== null && skip[index] === 1) continue;
        top.offer(0, index, value);
        bottom.offer(0, index, value);
        high = top.worst;
        low = -bottom.worst;
      }
    };
    if (runs === null) scan(0, values.length);
    else for (const start of runs[0]) scan(start, Math.min(values.length, start + RUN));
  }
  const desc = (a: Picked, b: Picked) => b.value - a.value || a.index - b.index;
  return {
    largest: top
      .items()
      .sort(desc)
      .map((p) => p.index),
    smallest: bottom
      .items()
      .sort(desc)
      .map((p) => p.index)
      .reverse(),
  };
}

/** One heap over one array; excluded indices are skipped through a cached bitmap rather than Set lookups. */
function pickOne(
  values: Float32Array,
  n: number,
  excluded: ReadonlySet<number> | undefined,
  sign: 1 | -1,
): Picked[] {
  const heap = new BoundedHeap(n, sign);
  if (n > 0) {
    const skip = excluded && excluded.size > 0 ? exclusionMask(excluded, values.length) : null;
    for (let index = 0; index < values.length; index++) {
      const key = sign * values[index];
      if (key < heap.worst || Number.isNaN(key)) continue;
      if (skip !== null && skip[index] === 1) continue;
      heap.offer(0, index, values[index]);
    }
  }
  const desc = (a: Picked, b: Picked) => b.value - a.value || a.index - b.index;
  return heap.items().sort(desc);
}

const masks = new WeakMap<ReadonlySet<number>, Uint8Array>();
/** A bitmap (1 = excluded) of at least `length` entries, made once per set. */
export function exclusionMask(excluded: ReadonlySet<number>, length: number): Uint8Array {
  let mask = masks.get(excluded);
  if (!mask || mask.length < length) {
    mask = new Uint8Array(length);
    for (const i of excluded) if (i >= 0 && i < length) mask[i] = 1;
    masks.set(excluded, mask);
  }
  return mask;
}
