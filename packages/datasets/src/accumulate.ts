/**
 * Running per-component state of a collation: top-k sequences by maximum value, a hash-chosen random sample, and
 * statistics. Everything here merges exactly across shards:
 * - top-k and random sets are the k best under a strict total order on (key, sequence index), so the best k of a
 *   union of shards' best k are the best k overall;
 * - random sequences are those with the k smallest hashes of (seed, component, sequence), not a stream sampler;
 * - sums are folded per sequence into a 2^-32 fixed-point integer held in two doubles, so adding them is exact and
 *   the order of sequences (or shards) cannot change a bit.
 */
import {
  type ColumnStatistics,
  defaultGemm,
  type RunningColumnStatistics,
  wasmArrayStore,
  wasmElementwise,
} from "@tdb/tensor";
import { type GroupSpec, KIND_ID, positionsPerSequence } from "./components.js";

/** Size of one chunk of pending values (see GroupAccumulator.arena). */
const ARENA_CHUNK_BYTES = 4 * 2 ** 20;

/**
 * Arena chunks live in the WebAssembly memory (where the column-gathering kernel writes them in place); an entry is
 * written before it is read, so a chunk need not be zeroed.
 */
const arenaStore = wasmArrayStore({ zeroed: false });
/** Frees the chunks of an accumulator dropped without dispose(). */
const arenaReclaimer = new FinalizationRegistry<Float32Array[]>((chunks) => {
  for (const chunk of chunks) arenaStore.release(chunk);
});

/** One unit of the fixed-point sums, 2^32 per 1.0. */
const FIX = 2 ** 32;

/** A copy of `list` twice as long. */
function grown(list: Int32Array<ArrayBuffer>): Int32Array<ArrayBuffer> {
  const out = new Int32Array(2 * list.length);
  out.set(list);
  return out;
}

/** a is better than b: smaller key, then smaller sequence index. */
function better(keyA: number, seqA: number, keyB: number, seqB: number): boolean {
  return keyA < keyB || (keyA === keyB && seqA < seqB);
}

export interface ExampleInsert {
  index: number;
  seq: number;
  key: number;
  values: Float32Array;
}

export interface ExampleDelete {
  index: number;
  seq: number;
}

/** The best `capacity` (key, sequence) pairs of each of `size` components; smaller keys are better. */
export class SlotSet {
  readonly keys: Float64Array;
  readonly seqs: Int32Array;
  readonly fill: Int32Array;
  /**
   * Per component, its filled slots (0..capacity-1) as a binary heap, worst entry first: replacing the worst of a
   * full set costs ~log₂ k comparisons instead of a scan of all k.
   */
  private readonly heap: Int32Array;
  /** Per slot: the arena entry holding its values while not yet written, else -1. */
  private readonly pendingEntry: Int32Array;
  /**
   * Slots that became pending since the last takeChanges() (may repeat; pendingEntry decides): a typed list, since
   * tens of thousands a sequence kept until a commit would slow every young-generation collection as plain arrays.
   */
  private pendingSlots = new Int32Array(1024);
  private pendingCount = 0;
  /** Written entries dropped since the last takeChanges(), as (component, sequence) pairs: typed, as above. */
  private deleted = new Int32Array(1024);
  private deletedCount = 0;

  constructor(
    readonly size: number,
    readonly capacity: number,
  ) {
    this.keys = new Float64Array(size * capacity);
    this.seqs = new Int32Array(size * capacity).fill(-1);
    this.fill = new Int32Array(size);
    this.heap = new Int32Array(size * capacity);
    this.pendingEntry = new Int32Array(size * capacity).fill(-1);
  }

  accepts(index: number, key: number, seq: number): boolean {
    const k = this.capacity;
    if (k === 0) return false;
    if (this.fill[index] < k) return true;
    const w = index * k + this.heap[index * k];
    return better(key, seq, this.keys[w], this.seqs[w]);
  }

  /** Adds an entry `accepts` allowed, its values in arena entry `entry` (-1: already stored, when resuming). */
  insert(index: number, key: number, seq: number, entry: number): void {
    const k = this.capacity;
    const base = index * k;
    let slot: number;
    let filling = false;
    if (this.fill[index] < k) {
      filling = true;
      slot = base + this.fill[index]++;
    } else {
      slot = base + this.heap[base];
      // An entry dropped before it was written needs no delete.
      if (this.pendingEntry[slot] < 0) {
        if (2 * this.deletedCount === this.deleted.length) this.deleted = grown(this.deleted);
        this.deleted[2 * this.deletedCount] = index;
        this.deleted[2 * this.deletedCount + 1] = this.seqs[slot];
        this.deletedCount++;
      }
    }
    this.keys[slot] = key;
    this.seqs[slot] = seq;
    this.pendingEntry[slot] = entry;
    if (entry >= 0) {
      if (this.pendingCount === this.pendingSlots.length) this.pendingSlots = grown(this.pendingSlots);
      this.pendingSlots[this.pendingCount++] = slot;
    }
    if (filling) this.siftUp(base, this.fill[index] - 1, slot - base);
    else this.siftDown(base, this.fill[index]);
  }

  /** Slot a of the component at `base` holds a worse entry than slot b. */
  private worse(base: number, a: number, b: number): boolean {
    return better(this.keys[base + b], this.seqs[base + b], this.keys[base + a], this.seqs[base + a]);
  }

  /** Puts slot `slot` at heap position `at` and moves it up past better parents. */
  private siftUp(base: number, at: number, slot: number): void {
    const heap = this.heap;
    let p = at;
    while (p > 0) {
      const parent = (p - 1) >> 1;
      if (!this.worse(base, slot, heap[base + parent])) break;
      heap[base + p] = heap[base + parent];
      p = parent;
    }
    heap[base + p] = slot;
  }

  /** Moves the root (just given a new entry) down past worse children, in a heap of `count` slots. */
  private siftDown(base: number, count: number): void {
    const heap = this.heap;
    const slot = heap[base];
    let p = 0;
    for (;;) {
      let child = 2 * p + 1;
      if (child >= count) break;
      if (child + 1 < count && this.worse(base, heap[base + child + 1], heap[base + child])) child++;
      if (!this.worse(base, heap[base + child], slot)) break;
      heap[base + p] = heap[base + child];
      p = child;
    }
    heap[base + p] = slot;
  }

  /** Entries accepted and entries dropped since the last call (only those already written are deleted). */
  takeChanges(valuesOf: (entry: number) => Float32Array): {
    inserts: ExampleInsert[];
    deletes: ExampleDelete[];
  } {
    const k = this.capacity;
    const inserts: ExampleInsert[] = [];
    for (let i = 0; i < this.pendingCount; i++) {
      const slot = this.pendingSlots[i];
      const entry = this.pendingEntry[slot];
      if (entry < 0) continue;
      this.pendingEntry[slot] = -1;
      inserts.push({
        index: Math.floor(slot / k),
        seq: this.seqs[slot],
        key: this.keys[slot],
        values: valuesOf(entry),
      });
    }
    const deletes: ExampleDelete[] = [];
    for (let i = 0; i < this.deletedCount; i++)
      deletes.push({ index: this.deleted[2 * i], seq: this.deleted[2 * i + 1] });
    this.pendingCount = 0;
    this.deletedCount = 0;
    return { inserts, deletes };
  }

  /** The entries of one component, best first. */
  entries(index: number): { key: number; seq: number }[] {
    const k = this.capacity;
    const out: { key: number; seq: number }[] = [];
    for (let j = 0; j < this.fill[index]; j++)
      out.push({ key: this.keys[index * k + j], seq: this.seqs[index * k + j] });
    return out.sort((a, b) => (better(a.key, a.seq, b.key, b.seq) ? -1 : 1));
  }
}

/**
 * Statistics of every component of a group: max, count of positive values, and sums and sums of squares in exact
 * fixed point (see the module comment) as (whole units, remainder) pairs — the engine kernels' running statistics.
 */
export interface GroupStatistics extends RunningColumnStatistics {
  /** Values observed per component (tokens, or token pairs for heads). */
  count: number;
}

export function emptyStatistics(size: number): GroupStatistics {
  return {
    count: 0,
    max: new Float32Array(size).fill(Number.NEGATIVE_INFINITY),
    positives: new Float64Array(size),
    sumHi: new Float64Array(size),
    sumLo: new Float64Array(size),
    sqHi: new Float64Array(size),
    sqLo: new Float64Array(size),
  };
}

function addFixed(hi: Float64Array, lo: Float64Array, i: number, value: number): void {
  if (!Number.isFinite(value)) return;
  // q is an integer-valued double (exact), split into whole units and a remainder in [0, 2^32).
  const q = Math.round(value * FIX);
  const whole = Math.floor(q / FIX);
  let l = lo[i] + (q - whole * FIX);
  let h = hi[i] + whole;
  if (l >= FIX) {
    l -= FIX;
    h += 1;
  }
  hi[i] = h;
  lo[i] = l;
}

/** a += b, elementwise, exactly. */
export function mergeStatistics(a: GroupStatistics, b: GroupStatistics): void {
  a.count += b.count;
  for (let i = 0; i < a.max.length; i++) {
    if (b.max[i] > a.max[i]) a.max[i] = b.max[i];
    a.positives[i] += b.positives[i];
    for (const [hi, lo, bHi, bLo] of [
      [a.sumHi, a.sumLo, b.sumHi, b.sumLo],
      [a.sqHi, a.sqLo, b.sqHi, b.sqLo],
    ]) {
      let l = lo[i] + bLo[i];
      let h = hi[i] + bHi[i];
      if (l >= FIX) {
        l -= FIX;
        h += 1;
      }
      hi[i] = h;
      lo[i] = l;
    }
  }
}

export interface ComponentStatistics {
  /** Values observed (tokens, or token pairs for attention heads). */
  count: number;
  mean: number;
  variance: number;
  max: number;
  /** Share of values > 0. */
  activationFrequency: number;
}

export function componentStatistics(stats: GroupStatistics, index: number): ComponentStatistics {
  const n = stats.count;
  const sum = stats.sumHi[index] + stats.sumLo[index] / FIX;
  const sq = stats.sqHi[index] + stats.sqLo[index] / FIX;
  const mean = n > 0 ? sum / n : 0;
  return {
    count: n,
    mean,
    variance: n > 0 ? Math.max(sq / n - mean * mean, 0) : 0,
    max: n > 0 ? stats.max[index] : 0,
    activationFrequency: n > 0 ? stats.positives[index] / n : 0,
  };
}

function fmix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Per-component part of the random-sample hash. */
export function componentHashBase(seed: number, kindId: number, layer: number, index: number): number {
  let h = fmix32(seed ^ 0x5bd1e995);
  h = fmix32(h ^ Math.imul(kindId, 0x9e3779b1));
  h = fmix32(h ^ Math.imul(layer + 1, 0x85ebca77));
  return fmix32(h ^ Math.imul(index + 1, 0xc2b2ae3d));
}

/** Per-sequence part; both parts are bijections, so one component never sees two equal hashes. */
export function sequenceHashMix(seq: number): number {
  return fmix32(Math.imul(seq + 1, 0x27d4eb2f) ^ 0x165667b1);
}

export function sampleHash(base: number, seqMix: number): number {
  return fmix32(base ^ seqMix);
}

export class GroupAccumulator {
  readonly size: number;
  readonly positions: number;
  readonly stats: GroupStatistics;
  /** Keys are −max, so the largest maxima are the smallest keys. */
  readonly top: SlotSet;
  /** Keys are sample hashes. */
  readonly random: SlotSet;
  private readonly hashBase: Uint32Array;
  /** Per-column statistics of the sequence being observed (scratch for observe). */
  private readonly sequence: ColumnStatistics;
  /** Components accepted by the sequence being observed (scratch for observe). */
  private readonly accepted: Int32Array;
  /**
   * Values of accepted, not yet written entries, `positions` floats each, in chunks of ARENA_CHUNK_BYTES: a separate
   * small array per entry would leave the garbage collector hundreds of thousands of live objects to trace, and one
   * growing buffer would be copied (into fresh memory) at every growth. Chunks are kept and refilled after a commit,
   * until dispose().
   */
  private readonly arena: Float32Array[] = [];
  private readonly entriesPerChunk: number;
  private arenaEntries = 0;

  constructor(
    readonly spec: GroupSpec,
    seqLen: number,
    topK: number,
    randomCount: number,
    seed: number,
    arenaChunkBytes = ARENA_CHUNK_BYTES,
  ) {
    const n = spec.size;
    this.size = n;
    this.positions = positionsPerSequence(spec.kind, seqLen);
    this.stats = emptyStatistics(n);
    this.top = new SlotSet(n, topK);
    this.random = new SlotSet(n, randomCount);
    this.hashBase = new Uint32Array(n);
    for (let i = 0; i < n; i++) this.hashBase[i] = componentHashBase(seed, KIND_ID[spec.kind], spec.layer, i);
    this.sequence = {
      max: new Float32Array(n),
      sum: new Float64Array(n),
      sumSq: new Float64Array(n),
      positives: new Int32Array(n),
    };
    this.accepted = new Int32Array(n);
    this.entriesPerChunk = Math.max(1, Math.floor(arenaChunkBytes / 4 / this.positions));
    arenaReclaimer.register(this, this.arena, this);
  }

  /** Frees the arena (pending values are lost); the accumulator must not observe again. */
  dispose(): void {
    arenaReclaimer.unregister(this);
    for (const chunk of this.arena) arenaStore.release(chunk);
    this.arena.length = 0;
    this.arenaEntries = 0;
  }

  /** Bytes held for values not yet written. */
  get pendingBytes(): number {
    return this.arenaEntries * this.positions * 4;
  }

  /**
   * Both sets' changes since the last call; the values are views into the arena, valid until the next observe().
   */
  takeChanges(): {
    top: { inserts: ExampleInsert[]; deletes: ExampleDelete[] };
    random: { inserts: ExampleInsert[]; deletes: ExampleDelete[] };
  } {
    const P = this.positions;
    const E = this.entriesPerChunk;
    const valuesOf = (entry: number) => {
      const offset = (entry % E) * P;
      return this.arena[Math.floor(entry / E)].subarray(offset, offset + P);
    };
    const changes = { top: this.top.takeChanges(valuesOf), random: this.random.takeChanges(valuesOf) };
    this.arenaEntries = 0;
    return changes;
  }

  /**
   * Copies the values of `count` components (columns of [positions, size]) into arena entries arenaEntries onwards,
   * in that order.
   */
  private stash(values: Float32Array, columns: Int32Array, count: number): void {
    const P = this.positions;
    const n = this.size;
    const E = this.entriesPerChunk;
    // The engine's gathering kernel where it has one, else WebAssembly's (the same copy), else the loop.
    const kernels = defaultGemm().kernels ?? wasmElementwise();
    let j = 0;
    while (j < count) {
      const entry = this.arenaEntries;
      const chunk = Math.floor(entry / E);
      if (chunk === this.arena.length) this.arena.push(arenaStore.allocate(E * P));
      const out = this.arena[chunk];
      const first = entry - chunk * E;
      const take = Math.min(count - j, E - first);
      if (kernels) kernels.gatherColumns(values, P, n, columns.subarray(j, j + take), out, first * P);
      else {
        for (let i = 0; i < take; i++) {
          const c = columns[j + i];
          const base = (first + i) * P;
          for (let p = 0; p < P; p++) out[base + p] = values[p * n + c];
        }
      }
      this.arenaEntries += take;
      j += take;
    }
  }

  /** foldColumnStatistics of the engine kernels, here: per-column statistics of one sequence, then the folds. */
  private foldStatistics(values: Float32Array): void {
    const n = this.size;
    const P = this.positions;
    const { max: smax, sum: ssum, sumSq: ssq, positives: spos } = this.sequence;
    const kernels = wasmElementwise();
    // The same sums in the same order as the loop below, as a SIMD kernel (the loop is ~10 ns per value on V8).
    if (kernels) kernels.columnStatistics(values, P, n, this.sequence);
    else {
      smax.fill(Number.NEGATIVE_INFINITY);
      ssum.fill(0);
      ssq.fill(0);
      spos.fill(0);
      for (let p = 0; p < P; p++) {
        const row = p * n;
        for (let c = 0; c < n; c++) {
          const v = values[row + c];
          if (v > smax[c]) smax[c] = v;
          ssum[c] += v;
          ssq[c] += v * v;
          if (v > 0) spos[c]++;
        }
      }
    }
    const st = this.stats;
    for (let c = 0; c < n; c++) {
      if (smax[c] > st.max[c]) st.max[c] = smax[c];
      st.positives[c] += spos[c];
      addFixed(st.sumHi, st.sumLo, c, ssum[c]);
      addFixed(st.sqHi, st.sqLo, c, ssq[c]);
    }
  }

  /** Folds in one sequence: `values` is [positions, size], position-major. */
  observe(seq: number, values: Float32Array): void {
    const n = this.size;
    const P = this.positions;
    if (values.length !== P * n) {
      throw new RangeError(
        `${this.spec.kind}@${this.spec.layer}: got ${values.length} values, expected ${P}×${n}`,
      );
    }
    const st = this.stats;
    st.count += P;
    const smax = this.sequence.max;
    const native = defaultGemm().kernels;
    // Maxima, counts and sums of this sequence folded into the running statistics (see addFixed): the engine's
    // kernel where it has one (the same bits), else here.
    if (native) native.foldColumnStatistics(values, P, n, smax, st);
    else this.foldStatistics(values);
    const seqMix = sequenceHashMix(seq);
    // Accepted components take arena entries in column order; their values are copied after the loop, in one go.
    const accepted = this.accepted;
    let count = 0;
    for (let c = 0; c < n; c++) {
      const topKey = -smax[c];
      const h = sampleHash(this.hashBase[c], seqMix);
      const inTop = this.top.accepts(c, topKey, seq);
      const inRandom = this.random.accepts(c, h, seq);
      if (inTop || inRandom) {
        // One copy serves both sets: pending values are only read, at commit.
        const entry = this.arenaEntries + count;
        accepted[count++] = c;
        if (inTop) this.top.insert(c, topKey, seq, entry);
        if (inRandom) this.random.insert(c, h, seq, entry);
      }
    }
    this.stash(values, accepted, count);
  }
}
