// Float32Arrays recycled from one job to the next. A TDB request on GPT-2 small makes ~90 MB of short-lived arrays
// (activations, gradients, node metrics); fresh ones cost page faults, zeroing and, above all, V8's full
// collections, which external-memory pressure triggers several times per request (−26 ms of ~290 when recycled).
// Inside `recyclingArrays(recycler, job)`, `jobArray(n)` hands out zeroed arrays from the recycler; when the job
// returns or throws, every array it was handed goes back for the next job. Outside a job `jobArray` is plain
// `new Float32Array(n)`, so code that uses it works the same everywhere. A recycler's new arrays come from its
// store: plain arrays by default, the WebAssembly memory with wasmArrayRecycler (kernels then work in place).
//
// The contract: an array from jobArray must not be used after its job ends. A job's results that outlive it are
// copied out (TDB's responses are plain JSON values), and nothing caches such an array or keys a cache by it.

/** Arrays shorter than this come from V8 cheaply (and often on its heap): they are not recycled. */
const MIN_RECYCLED_LENGTH = 1024;

/** Where a recycler's arrays come from when it holds none of the length asked for, and go when it drops them. */
export interface ArrayStore {
  /** An array of `length`: zeroed, unless the store says otherwise. */
  allocate(length: number): Float32Array;
  release(array: Float32Array): void;
}

/** Free arrays by length, for the jobs run with it. */
export class ArrayRecycler {
  private readonly free = new Map<number, Float32Array[]>();
  private heldBytes = 0;

  /**
   * `maxHeldBytes`: what may wait between jobs (default 512 MB); arrays past it go back to the store. `store`: where
   * new arrays come from (default: plain Float32Arrays, dropped to the garbage collector).
   */
  constructor(
    readonly maxHeldBytes = 512 * 1024 * 1024,
    private readonly store: ArrayStore | null = null,
  ) {}

  /** A new zeroed array of `length` from the store. */
  allocate(length: number): Float32Array {
    return this.store ? this.store.allocate(length) : new Float32Array(length);
  }

  /** Bytes held between jobs. */
  get bytesHeld(): number {
    return this.heldBytes;
  }

  /** A held array of `length` (its old contents left in it), or undefined. */
  take(length: number): Float32Array | undefined {
    const array = this.free.get(length)?.pop();
    if (array) this.heldBytes -= array.byteLength;
    return array;
  }

  give(arrays: readonly Float32Array[]): void {
    for (const array of arrays) {
      if (this.heldBytes + array.byteLength > this.maxHeldBytes) {
        this.store?.release(array);
        continue;
      }
      let list = this.free.get(array.length);
      if (!list) {
        list = [];
        this.free.set(array.length, list);
      }
      list.push(array);
      this.heldBytes += array.byteLength;
    }
  }

  /** Drops every held array (back to the store). */
  clear(): void {
    if (this.store)
      for (const list of this.free.values()) for (const array of list) this.store.release(array);
    this.free.clear();
    this.heldBytes = 0;
  }
}

interface Job {
  recycler: ArrayRecycler;
  handedOut: Float32Array[];
}

let current: Job | null = null;

/** A Float32Array of `length`, recycled inside a job (see recyclingArrays), else fresh; `zeroed`: filled with 0. */
function handOut(length: number, zeroed: boolean): Float32Array {
  if (!current || length < MIN_RECYCLED_LENGTH) return new Float32Array(length);
  let array = current.recycler.take(length);
  if (!array) array = current.recycler.allocate(length);
  else if (zeroed) array.fill(0);
  current.handedOut.push(array);
  return array;
}

/** A zeroed Float32Array of `length`: recycled inside a job (see recyclingArrays), else fresh. */
export function jobArray(length: number): Float32Array {
  return handOut(length, true);
}

/**
 * Like jobArray, but a recycled array keeps what its last job left in it: for outputs whose every element is then
 * written (a product with accumulate off, a kernel's result).
 */
export function jobArrayUnzeroed(length: number): Float32Array {
  return handOut(length, false);
}

/** A copy of `source` in an array from the job (as jobArray, without zeroing it first). */
export function jobCopy(source: ArrayLike<number>): Float32Array {
  const out = handOut(source.length, false);
  out.set(source);
  return out;
}

/**
 * Runs `job`; the arrays jobArray hands out meanwhile go back to `recycler` when it returns or throws. Jobs nest:
 * an inner job's arrays go back when the inner job ends.
 */
export function recyclingArrays<T>(recycler: ArrayRecycler, job: () => T): T {
  const { result, arrays } = withJobArrays(recycler, job);
  recycler.give(arrays);
  return result;
}

/**
 * Runs `job` like recyclingArrays but hands its arrays to the caller instead of giving them back: for results used
 * after the job (the caller gives the arrays back with recycler.give once it is done with them). A job that throws
 * gives its arrays back itself.
 */
export function withJobArrays<T>(
  recycler: ArrayRecycler,
  job: () => T,
): { result: T; arrays: Float32Array[] } {
  const outer = current;
  const mine: Job = { recycler, handedOut: [] };
  current = mine;
  try {
    return { result: job(), arrays: mine.handedOut };
  } catch (error) {
    recycler.give(mine.handedOut);
    throw error;
  } finally {
    current = outer;
  }
}
