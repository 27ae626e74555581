/** Top-k / bottom-k selection over several arrays at once (e.g. one metric across layers). */

export interface Picked {
  /** Which array the value came from. */
  source: number;
  index: number;
  value: number;
}

/**
 * The k largest and the k smallest entries over all arrays, each list sorted by value descending (TDB sorts
 * the bottom block descending too). Ties are broken by position, which is as good as torch.topk's choice.
 */
export function topAndBottom(
  arrays: readonly Float32Array[],
  k: number,
): { top: Picked[]; bottom: Picked[] } {
  const top = new BoundedHeap(k, (a, b) => a.value < b.value || (a.value === b.value && later(a, b)));
  const bottom = new BoundedHeap(k, (a, b) => a.value > b.value || (a.value === b.value && later(a, b)));
  arrays.forEach((values, source) => {
    for (let index = 0; index < values.length; index++) {
      const value = values[index];
      // Most values lose to both heaps' current k-th entries; skip them without allocating.
      if (top.full && value < top.worstValue && bottom.full && value > bottom.worstValue) continue;
      top.offer(source, index, value);
      bottom.offer(source, index, value);
    }
  });
  const desc = (a: Picked, b: Picked) => b.value - a.value || a.source - b.source || a.index - b.index;
  return { top: top.items().sort(desc), bottom: bottom.items().sort(desc) };
}

function later(a: Picked, b: Picked): boolean {
  return a.source > b.source || (a.source === b.source && a.index > b.index);
}

/** Keeps the k "best" items; `worse(a, b)` says a ranks below b (the root holds the worst kept item). */
class BoundedHeap {
  private readonly heap: Picked[] = [];
  constructor(
    private readonly k: number,
    private readonly worse: (a: Picked, b: Picked) => boolean,
  ) {}

  get full(): boolean {
    return this.heap.length >= this.k;
  }

  /** Value of the worst kept item (NaN while empty). */
  get worstValue(): number {
    return this.heap.length > 0 ? this.heap[0].value : Number.NaN;
  }

  offer(source: number, index: number, value: number): void {
    if (this.k <= 0) return;
    const h = this.heap;
    if (h.length < this.k) {
      h.push({ source, index, value });
      this.up(h.length - 1);
      return;
    }
    const candidate = { source, index, value };
    if (!this.worse(h[0], candidate)) return;
    h[0] = candidate;
    this.down(0);
  }

  items(): Picked[] {
    return [...this.heap];
  }

  private up(i: number): void {
    const h = this.heap;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.worse(h[i], h[p])) break;
      [h[i], h[p]] = [h[p], h[i]];
      i = p;
    }
  }

  private down(i: number): void {
    const h = this.heap;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && this.worse(h[l], h[m])) m = l;
      if (r < h.length && this.worse(h[r], h[m])) m = r;
      if (m === i) return;
      [h[i], h[m]] = [h[m], h[i]];
      i = m;
    }
  }
}

/** Indices of the n largest values (descending), skipping excluded indices. */
export function largest(values: Float32Array, n: number, excluded?: ReadonlySet<number>): number[] {
  const picked = topAndBottom([maskOut(values, excluded, Number.NEGATIVE_INFINITY)], n).top;
  return picked.map((p) => p.index);
}

/** Indices of the n smallest values (ascending), skipping excluded indices. */
export function smallest(values: Float32Array, n: number, excluded?: ReadonlySet<number>): number[] {
  const picked = topAndBottom([maskOut(values, excluded, Number.POSITIVE_INFINITY)], n).bottom;
  return picked.map((p) => p.index).reverse();
}

function maskOut(
  values: Float32Array,
  excluded: ReadonlySet<number> | undefined,
  fill: number,
): Float32Array {
  if (!excluded || excluded.size === 0) return values;
  const copy = Float32Array.from(values);
  for (const i of excluded) if (i < copy.length) copy[i] = fill;
  return copy;
}
