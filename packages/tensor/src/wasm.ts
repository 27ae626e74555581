import { decodeBase64 } from "./base64.js";
import { checkMatrix, type Gemm, gemmFromOp } from "./gemm.js";
import { gemmWasmBase64 } from "./gemm-wasm.generated.js";
import { ArrayRecycler, type ArrayStore, jobArrayUnzeroed } from "./recycle.js";

// The WebAssembly API is reached through globalThis with local types, so this package needs neither the DOM lib
// nor global declarations that could clash with a consumer's.
interface WasmMemory {
  readonly buffer: ArrayBufferLike;
  grow(pages: number): number;
}
interface WasmApi {
  Memory: new (descriptor: { initial: number; maximum: number; shared: boolean }) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
  validate(bytes: Uint8Array): boolean;
}

interface KernelExports {
  gemm(
    transA: number,
    transB: number,
    a: number,
    b: number,
    c: number,
    m: number,
    k: number,
    n: number,
    j0: number,
    j1: number,
    accumulate: number,
    packA: number,
    packB: number,
    tmp: number,
  ): void;
  packASize(m: number, k: number): number;
  packBSize(k: number): number;
  geluNew(x: number, y: number, n: number): void;
  geluNewBackward(x: number, dy: number, dx: number, n: number): void;
  columnStats(
    values: number,
    rows: number,
    cols: number,
    max: number,
    sum: number,
    sumSq: number,
    positives: number,
  ): void;
  blockExtremes(
    values: number,
    n: number,
    block: number,
    maxOut: number,
    minOut: number,
    masked: number,
    maxAdd: number,
    minAdd: number,
    sumOut: number,
  ): void;
  layerNorm(
    x: number,
    gain: number,
    bias: number,
    rows: number,
    dim: number,
    eps: number,
    out: number,
    normalized: number,
    scale: number,
  ): void;
  addBiasRows(x: number, bias: number, rows: number, dim: number): void;
  add(a: number, b: number, out: number, n: number): void;
  gatherColumns(
    values: number,
    rows: number,
    cols: number,
    columns: number,
    count: number,
    out: number,
  ): number;
  causalSoftmax(
    logits: number,
    sequences: number,
    tokens: number,
    heads: number,
    probs: number,
    exps: number,
  ): void;
  splitQkv(qkv: number, tokens: number, dim: number, scale: number, q: number, k: number, v: number): void;
}

const PAGE_BYTES = 65536;
const MAX_PAGES = 65536; // 4 GiB, the wasm32 limit
const ALIGN = 64;
/**
 * Page 0 is never handed out: it keeps address 0 unused and holds the GEMM's tile buffers (from TILE_TMP, 256 bytes
 * per thread) and, from 32 KiB, the module's static data (build-wasm.mjs --memoryBase), which must not meet.
 */
const HEAP_START = PAGE_BYTES;
const TILE_TMP = 1024;
/** Operand copies larger than this are released after each call instead of being kept as scratch. */
const KEEP_SCRATCH_BYTES = 32 * 1024 * 1024;

class WasmEngine {
  readonly kernel: KernelExports;
  readonly memory: WasmMemory;
  readonly module: object;
  /** Every buffer object memory.buffer has returned; growing replaces the object but not the storage. */
  private readonly buffers = new WeakSet<ArrayBufferLike>();
  private top = HEAP_START;
  /** Nothing at or above this address has been handed out yet, so it still holds the zeros memory.grow gave it. */
  private untouched = HEAP_START;
  /** Free blocks, sorted by address, adjacent blocks merged. */
  private free: { ptr: number; bytes: number }[] = [];
  private readonly sizes = new Map<number, number>();
  private readonly scratch = new Map<string, { ptr: number; bytes: number }>();

  constructor(api: WasmApi, bytes: Uint8Array) {
    this.memory = new api.Memory({ initial: 16, maximum: MAX_PAGES, shared: true });
    this.module = new api.Module(bytes);
    const instance = new api.Instance(this.module, { env: { memory: this.memory } });
    this.kernel = instance.exports as unknown as KernelExports;
  }

  buffer(): ArrayBufferLike {
    const buffer = this.memory.buffer;
    this.buffers.add(buffer);
    return buffer;
  }

  contains(array: Float32Array): boolean {
    return this.buffers.has(array.buffer);
  }

  view(ptr: number, length: number): Float32Array {
    return new Float32Array(this.buffer(), ptr, length);
  }

  /** Like allocate(), but the block reads as zeros; fresh memory from growing already does, so it isn't filled. */
  allocateZeroed(bytes: number): number {
    const untouched = this.untouched;
    const ptr = this.allocate(bytes);
    if (ptr < untouched) new Uint8Array(this.buffer(), ptr, Math.min(bytes, untouched - ptr)).fill(0);
    return ptr;
  }

  /** Returns the byte address of a fresh block of at least `bytes` bytes. */
  allocate(bytes: number): number {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    const index = this.free.findIndex((block) => block.bytes >= size);
    let ptr: number;
    if (index >= 0) {
      const block = this.free[index];
      ptr = block.ptr;
      if (block.bytes === size) this.free.splice(index, 1);
      else {
        block.ptr += size;
        block.bytes -= size;
      }
    } else {
      ptr = this.top;
      this.ensureCapacity(ptr + size);
      this.top = ptr + size;
    }
    this.untouched = Math.max(this.untouched, ptr + size);
    this.sizes.set(ptr, size);
    return ptr;
  }

  release(ptr: number): boolean {
    const size = this.sizes.get(ptr);
    if (size === undefined) return false;
    this.sizes.delete(ptr);
    let index = this.free.findIndex((block) => block.ptr > ptr);
    if (index < 0) index = this.free.length;
    this.free.splice(index, 0, { ptr, bytes: size });
    const next = this.free[index + 1];
    if (next && ptr + size === next.ptr) {
      this.free[index].bytes += next.bytes;
      this.free.splice(index + 1, 1);
    }
    const previous = this.free[index - 1];
    if (previous && previous.ptr + previous.bytes === ptr) {
      previous.bytes += this.free[index].bytes;
      this.free.splice(index, 1);
      index--;
    }
    const last = this.free[this.free.length - 1];
    if (last && last.ptr + last.bytes === this.top) {
      this.top = last.ptr;
      this.free.pop();
    }
    return true;
  }

  /** A named scratch block of at least `bytes` bytes, kept between calls and grown on demand. */
  scratchBlock(name: string, bytes: number): number {
    const current = this.scratch.get(name);
    if (current && current.bytes >= bytes) return current.ptr;
    if (current) this.release(current.ptr);
    const ptr = this.allocate(bytes);
    this.scratch.set(name, { ptr, bytes });
    return ptr;
  }

  /**
   * The byte address of `length` floats of `array` inside the WASM memory: the array itself where it lives there,
   * else the scratch block `name`, filled with a copy unless copyIn is false.
   */
  place(name: string, array: Float32Array, length: number, copyIn = true): number {
    if (this.contains(array)) return array.byteOffset;
    const ptr = this.scratchBlock(name, length * 4);
    if (copyIn) this.view(ptr, length).set(array.subarray(0, length));
    return ptr;
  }

  trimScratch(name: string): void {
    const current = this.scratch.get(name);
    if (current && current.bytes > KEEP_SCRATCH_BYTES) {
      this.release(current.ptr);
      this.scratch.delete(name);
    }
  }

  private ensureCapacity(end: number): void {
    const have = this.memory.buffer.byteLength;
    if (end <= have) return;
    const pages = Math.ceil((end - have) / PAGE_BYTES);
    if (have / PAGE_BYTES + pages > MAX_PAGES) {
      throw new RangeError(`WebAssembly memory exhausted: ${end} bytes requested, the limit is 4 GiB`);
    }
    this.memory.grow(pages);
  }
}

let engine: WasmEngine | null | undefined;
let engineError: unknown;

function getEngine(): WasmEngine | null {
  if (engine !== undefined) return engine;
  try {
    const api = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;
    if (!api) throw new Error("WebAssembly is not available");
    const bytes = decodeBase64(gemmWasmBase64);
    if (!api.validate(bytes))
      throw new Error("this WebAssembly engine lacks SIMD128 or threads (shared memory)");
    engine = new WasmEngine(api, bytes);
  } catch (error) {
    engine = null;
    engineError = error;
  }
  return engine;
}

/** Whether the WebAssembly SIMD kernel can run here (it needs SIMD128 and shared memory). */
export function isWasmGemmAvailable(): boolean {
  return getEngine() !== null;
}

/**
 * A Float32Array of n elements (zeroed) living inside the WASM memory, so GEMM uses it without copying.
 * Use it for large, long-lived operands (model weights). Falls back to a plain Float32Array if WASM is unavailable.
 */
export function allocateF32(n: number): Float32Array {
  if (!Number.isInteger(n) || n < 0) throw new RangeError("allocateF32: n must be a non-negative integer");
  const e = getEngine();
  if (!e) return new Float32Array(n);
  const ptr = e.allocateZeroed(n * 4);
  return e.view(ptr, n);
}

/**
 * Returns the block behind an array from allocateF32 to the allocator; the array (and views of it) must not be used
 * afterwards. Arrays that do not start such a block (plain ones, inner subarrays) are ignored. Returns whether a
 * block was freed.
 */
export function freeF32(array: Float32Array): boolean {
  const e = getEngine();
  if (!e?.contains(array)) return false;
  return e.release(array.byteOffset);
}

/** Whether the array lives in the WASM memory (GEMM then uses it in place). */
export function isWasmResident(array: Float32Array): boolean {
  return getEngine()?.contains(array) ?? false;
}

/**
 * A recycler whose arrays live in the WASM memory (plain arrays where WebAssembly is unavailable): the elementwise
 * kernels then read and write a job's arrays in place instead of copying them in and out of scratch blocks. Arrays
 * it drops or clears go back to the WASM allocator, so call clear() when the jobs are over.
 */
export function wasmArrayRecycler(maxHeldBytes?: number): ArrayRecycler {
  return new ArrayRecycler(maxHeldBytes, wasmArrayStore());
}

/**
 * Arrays in the WebAssembly memory while it has room (its limit is 4 GiB), plain ones after that or where
 * WebAssembly is unavailable; release() frees the former and ignores the latter. With `zeroed: false` a reused block
 * keeps its old contents (for arrays whose every element is written before it is read).
 */
export function wasmArrayStore({ zeroed = true }: { zeroed?: boolean } = {}): ArrayStore {
  return {
    allocate(length) {
      try {
        const e = zeroed ? null : getEngine();
        return e ? e.view(e.allocate(length * 4), length) : allocateF32(length);
      } catch (error) {
        if (error instanceof RangeError) return new Float32Array(length);
        throw error;
      }
    },
    release: (array) => void freeF32(array),
  };
}

/** One kernel call with every operand already inside the WASM memory (byte addresses). */
export interface KernelJob {
  transA: number;
  transB: number;
  a: number;
  b: number;
  c: number;
  m: number;
  k: number;
  n: number;
  accumulate: number;
}

/** Where thread `index` keeps the kernel's 32-float tile buffer (page 0, 256 bytes apart). */
export function tileScratch(index: number): number {
  return TILE_TMP + 256 * index;
}

function createWasmGemm(e: WasmEngine, execute: (job: KernelJob) => void): Gemm {
  return gemmFromOp((transA, transB, a, b, c, m, k, n, accumulate) => {
    if (m === 0 || n === 0) return;
    if (k === 0) {
      if (!accumulate) c.fill(0, 0, m * n);
      return;
    }
    // Operands outside the WASM memory are copied into named scratch blocks; C is copied back afterwards.
    const aPtr = e.place("a", a, m * k);
    const bPtr = e.place("b", b, k * n);
    const cPtr = e.place("c", c, m * n, accumulate);
    execute({ transA, transB, a: aPtr, b: bPtr, c: cPtr, m, k, n, accumulate: accumulate ? 1 : 0 });
    if (!e.contains(c)) c.set(e.view(cPtr, m * n));
    for (const name of ["a", "b", "c"]) e.trimScratch(name);
  });
}

/** Runs columns [j0, j1) of a job on the calling thread, with scratch blocks named after `thread`. */
function runColumns(e: WasmEngine, job: KernelJob, j0: number, j1: number, thread: number): void {
  const { kernel } = e;
  const suffix = thread === 0 ? "" : `.${thread}`;
  const packA = e.scratchBlock(`packA${suffix}`, kernel.packASize(job.m, job.k) * 4);
  const packB = e.scratchBlock(`packB${suffix}`, kernel.packBSize(job.k) * 4);
  const { transA, transB, a, b, c, m, k, n, accumulate } = job;
  kernel.gemm(transA, transB, a, b, c, m, k, n, j0, j1, accumulate, packA, packB, tileScratch(thread));
}

/**
 * Internal to this package (used by the Node-only threaded GEMM, not exported from the package root): the shared
 * memory and compiled module, so other threads can instantiate the same kernel on the same memory.
 */
export interface WasmHost {
  /** The shared WebAssembly.Memory every allocateF32 array lives in. */
  readonly memory: unknown;
  /** The compiled kernel (a WebAssembly.Module). */
  readonly module: unknown;
  /** A scratch block kept between calls; the same name always names the same block until it has to grow. */
  scratchBlock(name: string, bytes: number): number;
  packASize(m: number, k: number): number;
  packBSize(k: number): number;
  /** The calling thread's share of a job: columns [j0, j1), with thread 0's scratch. */
  runColumns(job: KernelJob, j0: number, j1: number): void;
  /** A GEMM that checks arguments and places operands, then hands the kernel call to `execute`. */
  createGemm(execute: (job: KernelJob) => void): Gemm;
}

export function wasmHost(): WasmHost | null {
  const e = getEngine();
  if (!e) return null;
  return {
    memory: e.memory,
    module: e.module,
    scratchBlock: (name, bytes) => e.scratchBlock(name, bytes),
    packASize: (m, k) => e.kernel.packASize(m, k),
    packBSize: (k) => e.kernel.packBSize(k),
    runColumns: (job, j0, j1) => runColumns(e, job, j0, j1, 0),
    createGemm: (execute) => createWasmGemm(e, execute),
  };
}

let wasmGemmInstance: Gemm | undefined;

/** The WebAssembly SIMD128 GEMM (instantiated on first use). Throws where WebAssembly SIMD is unavailable. */
export function wasmGemm(): Gemm {
  if (wasmGemmInstance) return wasmGemmInstance;
  const e = getEngine();
  if (!e) throw new Error(`WebAssembly GEMM unavailable: ${String(engineError)}`);
  wasmGemmInstance = createWasmGemm(e, (job) => runColumns(e, job, 0, job.n, 0));
  return wasmGemmInstance;
}

/** Per-column statistics of a row-major [rows × cols] matrix. */
export interface ColumnStatistics {
  /** Largest value per column (−∞ for none; NaN never wins). */
  max: Float32Array;
  /** Sum and sum of squares, in float64, added row by row. */
  sum: Float64Array;
  sumSq: Float64Array;
  /** How many values are > 0. */
  positives: Int32Array;
}

/** Elementwise loops as WebAssembly SIMD kernels: ~10× what V8 makes of the same loops in JavaScript. */
export interface ElementwiseKernels {
  /** gelu_new(x) (GPT-2's tanh GELU) in float32, into a new array. */
  geluNew(x: Float32Array): Float32Array;
  /** dy · gelu_new′(x), into a new array. */
  geluNewBackward(x: Float32Array, dy: Float32Array): Float32Array;
  /** Into new arrays, or into `into`'s arrays (each at least `cols` long) when given. */
  columnStatistics(
    values: Float32Array,
    rows: number,
    cols: number,
    into?: ColumnStatistics,
  ): ColumnStatistics;
  /**
   * The largest and smallest value of each run of `block` values (block a multiple of 4; the last run may be
   * shorter). NaN never counts, nor does index i where excluded[i] = 1; a run with nothing counted reports −∞ / +∞.
   * (Each `excluded` array is turned into WASM-side masks once and kept: pass long-lived arrays.)
   */
  blockExtremes(
    values: Float32Array,
    block: number,
    excluded?: Uint8Array,
  ): { max: Float32Array; min: Float32Array };
  /**
   * Per block of `block` values (a multiple of 4): maximum and minimum (NaN never a bound) and the float64 sum (not
   * finite where a value is not), in new arrays.
   */
  runSummary(
    values: Float32Array,
    block: number,
  ): { max: Float32Array; min: Float32Array; sum: Float64Array };
  /**
   * LayerNorm over the rows of x [rows × dim] (float64 mean and variance, as the model's TypeScript loop): the output,
   * the normalized values and each row's √(var + eps), in new arrays.
   */
  layerNorm(
    x: Float32Array,
    gain: Float32Array,
    bias: Float32Array,
    rows: number,
    dim: number,
    eps: number,
  ): { out: Float32Array; normalized: Float32Array; scale: Float32Array };
  /** x[r, :] += bias for every row of x [rows × dim], in place. */
  addBiasRows(x: Float32Array, bias: Float32Array, rows: number, dim: number): void;
  /** a + b (float32 sums, as JavaScript rounds them), into a new array. */
  add(a: Float32Array, b: Float32Array): Float32Array;
  /**
   * Columns `columns` of a row-major [rows × cols] matrix, one after another ([columns.length × rows]), written into
   * `out` from `outOffset`.
   */
  gatherColumns(
    values: Float32Array,
    rows: number,
    cols: number,
    columns: Int32Array,
    out: Float32Array,
    outOffset: number,
  ): void;
  /**
   * Causal softmax of [T, T, H] attention logits over keys u ≤ t (0 above the diagonal), into a new array; with
   * `sequences`, that many such blocks one after another ([B·T, T, H]).
   */
  causalSoftmax(logits: Float32Array, tokens: number, heads: number, sequences?: number): Float32Array;
  /** q, k, v [T × d] from fused qkv [T × 3d], q and k times `scale` (float32 products), in new arrays. */
  splitQkv(
    qkv: Float32Array,
    tokens: number,
    dim: number,
    scale: number,
  ): { q: Float32Array; k: Float32Array; v: Float32Array };
}

let elementwise: ElementwiseKernels | null | undefined;

/** The elementwise kernels, or null where WebAssembly SIMD is unavailable (callers then run their own loops). */
export function wasmElementwise(): ElementwiseKernels | null {
  if (elementwise !== undefined) return elementwise;
  const e = getEngine();
  if (!e) {
    elementwise = null;
    return null;
  }
  // Operands outside the WASM memory are copied into named scratch blocks (e.place; released again when large).
  const done = (...names: string[]) => {
    for (const name of names) e.trimScratch(name);
  };
  const k = e.kernel;
  /**
   * A job array of n floats for a kernel to write, and the address it writes to: the array itself where it lives in
   * the WASM memory (from wasmArrayRecycler), else scratch block `name`, which `finish` copies into the array.
   */
  const output = (name: string, n: number) => {
    const array = jobArrayUnzeroed(n);
    if (e.contains(array)) return { array, ptr: array.byteOffset, finish: () => array };
    const ptr = e.scratchBlock(name, Math.max(n, 1) * 4);
    return { array, ptr, finish: () => array.set(e.view(ptr, n)) };
  };
  /** Runs a kernel that writes n floats at `out` and returns them in a new array. */
  const intoNew = (n: number, run: (out: number) => void): Float32Array => {
    const out = output("ew.out", n);
    run(out.ptr);
    out.finish();
    done("ew.x", "ew.dy", "ew.out");
    return out.array;
  };
  // Additive masks per exclusion array: 0 or −∞ (before the max), 0 or +∞ (before the min).
  const masks = new WeakMap<Uint8Array, { maxAdd: number; minAdd: number; length: number }>();
  const maskFor = (excluded: Uint8Array, length: number) => {
    const known = masks.get(excluded);
    if (known && known.length >= length) return known;
    const maxAdd = e.allocate(length * 4);
    const minAdd = e.allocate(length * 4);
    const hi = e.view(maxAdd, length);
    const lo = e.view(minAdd, length);
    for (let i = 0; i < length; i++) {
      const out = i < excluded.length && excluded[i] === 1;
      hi[i] = out ? Number.NEGATIVE_INFINITY : 0;
      lo[i] = out ? Number.POSITIVE_INFINITY : 0;
    }
    const entry = { maxAdd, minAdd, length };
    masks.set(excluded, entry);
    return entry;
  };
  elementwise = {
    geluNew: (x) => intoNew(x.length, (out) => k.geluNew(e.place("ew.x", x, x.length), out, x.length)),
    geluNewBackward(x, dy) {
      const n = x.length;
      if (dy.length < n) throw new RangeError(`geluNewBackward: dy has ${dy.length} elements, needs ${n}`);
      return intoNew(n, (out) => k.geluNewBackward(e.place("ew.x", x, n), e.place("ew.dy", dy, n), out, n));
    },
    columnStatistics(values, rows, cols, into) {
      checkMatrix("columnStatistics", values, rows, cols);
      // One block for the outputs: max and positives (4 bytes each), sum and sumSq (8 bytes each), 8-aligned.
      const stats = e.scratchBlock("ew.stats", cols * 24 + 8);
      const sum = stats;
      const sumSq = stats + cols * 8;
      const max = stats + cols * 16;
      const positives = max + cols * 4;
      k.columnStats(e.place("ew.x", values, rows * cols), rows, cols, max, sum, sumSq, positives);
      const buffer = e.buffer();
      const computed = {
        max: new Float32Array(buffer, max, cols),
        sum: new Float64Array(buffer, sum, cols),
        sumSq: new Float64Array(buffer, sumSq, cols),
        positives: new Int32Array(buffer, positives, cols),
      };
      let result: ColumnStatistics;
      if (into) {
        into.max.set(computed.max);
        into.sum.set(computed.sum);
        into.sumSq.set(computed.sumSq);
        into.positives.set(computed.positives);
        result = into;
      } else {
        result = {
          max: computed.max.slice(),
          sum: computed.sum.slice(),
          sumSq: computed.sumSq.slice(),
          positives: computed.positives.slice(),
        };
      }
      done("ew.x");
      return result;
    },
    layerNorm(x, gain, bias, rows, dim, eps) {
      const n = rows * dim;
      if (x.length < n || gain.length < dim || bias.length < dim)
        throw new RangeError(`layerNorm: operands too short for ${rows} × ${dim}`);
      const out = output("ew.ln.out", n);
      const normalized = output("ew.ln.normalized", n);
      const scale = output("ew.ln.scale", rows);
      k.layerNorm(
        e.place("ew.x", x, n),
        e.place("ew.g", gain, dim),
        e.place("ew.b", bias, dim),
        rows,
        dim,
        eps,
        out.ptr,
        normalized.ptr,
        scale.ptr,
      );
      out.finish();
      normalized.finish();
      scale.finish();
      done("ew.x", "ew.ln.out", "ew.ln.normalized", "ew.ln.scale");
      return { out: out.array, normalized: normalized.array, scale: scale.array };
    },
    addBiasRows(x, bias, rows, dim) {
      const n = rows * dim;
      if (x.length < n || bias.length < dim)
        throw new RangeError(`addBiasRows: operands too short for ${rows} × ${dim}`);
      const ptr = e.place("ew.x", x, n);
      k.addBiasRows(ptr, e.place("ew.b", bias, dim), rows, dim);
      if (!e.contains(x)) x.set(e.view(ptr, n));
      done("ew.x");
    },
    add(a, b) {
      const n = a.length;
      if (b.length !== n) throw new RangeError(`add: ${n} and ${b.length} values`);
      return intoNew(n, (out) => k.add(e.place("ew.x", a, n), e.place("ew.dy", b, n), out, n));
    },
    gatherColumns(values, rows, cols, columns, out, outOffset) {
      const count = columns.length;
      const n = count * rows;
      checkMatrix("gatherColumns", values, rows, cols);
      if (!Number.isInteger(outOffset) || outOffset < 0 || outOffset + n > out.length)
        throw new RangeError(`gatherColumns: ${n} values do not fit in ${out.length} from ${outOffset}`);
      if (n === 0) return;
      const list = e.scratchBlock("ew.columns", count * 4);
      new Int32Array(e.buffer(), list, count).set(columns);
      const target = out.subarray(outOffset, outOffset + n);
      const direct = e.contains(target);
      const at = direct ? target.byteOffset : e.scratchBlock("ew.out", n * 4);
      const bad = k.gatherColumns(e.place("ew.x", values, rows * cols), rows, cols, list, count, at);
      if (!direct) target.set(e.view(at, n));
      done("ew.x", "ew.out");
      if (bad >= 0) throw new RangeError(`gatherColumns: column ${columns[bad]} is outside [0, ${cols})`);
    },
    causalSoftmax(logits, tokens, heads, sequences = 1) {
      if (!Number.isInteger(sequences) || sequences < 1)
        throw new RangeError(`causalSoftmax: sequences must be a positive integer, got ${sequences}`);
      const n = sequences * tokens * tokens * heads;
      if (logits.length < n) throw new RangeError(`causalSoftmax: ${logits.length} logits, needs ${n}`);
      return intoNew(n, (out) =>
        k.causalSoftmax(
          e.place("ew.x", logits, n),
          sequences,
          tokens,
          heads,
          out,
          e.scratchBlock("ew.exps", tokens * 16),
        ),
      );
    },
    splitQkv(qkv, tokens, dim, scale) {
      const n = tokens * dim;
      if (qkv.length < 3 * n) throw new RangeError(`splitQkv: ${qkv.length} values, needs ${3 * n}`);
      const q = output("ew.q", n);
      const kOut = output("ew.k", n);
      const v = output("ew.v", n);
      k.splitQkv(e.place("ew.x", qkv, 3 * n), tokens, dim, Math.fround(scale), q.ptr, kOut.ptr, v.ptr);
      q.finish();
      kOut.finish();
      v.finish();
      done("ew.x", "ew.q", "ew.k", "ew.v");
      return { q: q.array, k: kOut.array, v: v.array };
    },
    blockExtremes(values, block, excluded) {
      if (!Number.isInteger(block) || block < 4 || block % 4 !== 0)
        throw new RangeError(`blockExtremes: block must be a positive multiple of 4, got ${block}`);
      const n = values.length;
      const blocks = Math.ceil(n / block);
      const mask = excluded ? maskFor(excluded, n) : null;
      const out = e.scratchBlock("ew.extremes", Math.max(1, blocks) * 8);
      k.blockExtremes(
        e.place("ew.x", values, n),
        n,
        block,
        out,
        out + blocks * 4,
        mask ? 1 : 0,
        mask?.maxAdd ?? 0,
        mask?.minAdd ?? 0,
        0,
      );
      const result = { max: e.view(out, blocks).slice(), min: e.view(out + blocks * 4, blocks).slice() };
      done("ew.x");
      return result;
    },
    runSummary(values, block) {
      if (!Number.isInteger(block) || block < 4 || block % 4 !== 0)
        throw new RangeError(`runSummary: block must be a positive multiple of 4, got ${block}`);
      const n = values.length;
      const blocks = Math.ceil(n / block);
      // One block for the outputs: sums first (8-byte aligned), then maxima and minima.
      const out = e.scratchBlock("ew.summary", Math.max(1, blocks) * 16);
      k.blockExtremes(
        e.place("ew.x", values, n),
        n,
        block,
        out + blocks * 8,
        out + blocks * 12,
        0,
        0,
        0,
        out,
      );
      const sum = new Float64Array(e.buffer(), out, blocks).slice();
      const max = e.view(out + blocks * 8, blocks).slice();
      const min = e.view(out + blocks * 12, blocks).slice();
      done("ew.x");
      return { max, min, sum };
    },
  };
  return elementwise;
}
