// A GEMM that splits the columns of large products over the calling thread and worker threads. Every thread runs
// its own instance of the same kernel on the same shared WebAssembly.Memory, so operands are placed once (by the
// calling thread) and workers read and write them in place. Node-only: the portable core stays free of
// worker_threads.
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import type { Gemm } from "../gemm.js";
import { referenceGemm } from "../reference.js";
import { type KernelJob, tileScratch, type WasmHost, wasmHost } from "../wasm.js";

export interface ThreadedGemmOptions {
  /** Threads in all, the calling one included (default: the available cores, at most 4; 1 = no workers). */
  threads?: number;
  /** Products of fewer FLOPs (2·m·k·n) run on the calling thread alone: waking a worker would cost more. */
  minFlops?: number;
  /**
   * Measure each split product and stop splitting for a while when it stops paying, as when other jobs keep the
   * other cores busy and a descheduled worker holds up the join (default true).
   */
  adaptive?: boolean;
}

export interface ThreadedGemm extends Gemm {
  /** Threads a large product is split over now (1 once closed, or if no worker could be started). */
  readonly threads: number;
  /** Columns of C computed by worker threads so far (by all ThreadedGemms of this thread; for diagnostics). */
  readonly workerColumns: number;
  /** Lets the workers go (they end once no ThreadedGemm uses them); later calls run on the calling thread. */
  close(): void;
}

/**
 * Products below this many FLOPs stay on the calling thread. On the shared 2-core host the per-head 32×64×768
 * products (3 MFLOP) were slower split (waking the worker and joining cost tens of µs, more under load), while
 * 32×768×768 (38 MFLOP) and up gain; 8 MFLOP keeps a margin on both sides.
 */
export const DEFAULT_MIN_FLOPS = 8_000_000;
const MAX_THREADS = 64;
/** Column chunks per thread: threads claim chunks as they go, so a late or slowed worker costs little. */
const CHUNKS_PER_THREAD = 2;
/** Adaptive mode: below this smoothed speed-up, products run on the calling thread alone for PAUSE_MS. */
const MIN_SPEEDUP = 1.2;
const PAUSE_MS = 500;
const SPEEDUP_SMOOTHING = 0.25;

// Control block (Int32Array over a SharedArrayBuffer).
const SEQ = 0; // job number, bumped (and notified) to post a job
const OPEN = 1; // the job number while workers may still join it, else 0
const NEXT = 2; // next unclaimed column chunk
const ACTIVE = 3; // workers inside the current job
const STOP = 4;
const FAILED = 5;
const HELPERS = 6; // workers 1..HELPERS may join
const WORKER_COLUMNS = 7; // columns computed by workers so far
const JOB = 8; // transA, transB, a, b, c, m, k, n, accumulate, chunk columns, chunk count
const SCRATCH = 19; // per thread: packA, packB, tile buffer
const CONTROL_INTS = SCRATCH + 3 * MAX_THREADS;

// The worker, as CommonJS source (an eval worker needs no file, so it runs the same from src under Vitest and from
// dist). It joins a job only while OPEN still names it, after counting itself in ACTIVE, so the poster never waits
// for a worker that has not claimed any work.
const WORKER_SOURCE = `"use strict";
const { workerData } = require("node:worker_threads");
const { memory, module, control, index } = workerData;
const ctl = new Int32Array(control);
const { gemm } = new WebAssembly.Instance(module, { env: { memory } }).exports;
function work() {
  const [transA, transB, a, b, c, m, k, n, accumulate, chunk, chunks] = ctl.subarray(${JOB}, ${JOB + 11});
  const s = ${SCRATCH} + 3 * index;
  for (;;) {
    const q = Atomics.add(ctl, ${NEXT}, 1);
    if (q >= chunks) return;
    const j0 = q * chunk;
    const j1 = Math.min(n, j0 + chunk);
    gemm(transA, transB, a, b, c, m, k, n, j0, j1, accumulate, ctl[s], ctl[s + 1], ctl[s + 2]);
    Atomics.add(ctl, ${WORKER_COLUMNS}, j1 - j0);
  }
}
let seen = 0;
for (;;) {
  if (Atomics.load(ctl, ${STOP}) !== 0) break;
  const seq = Atomics.load(ctl, ${SEQ});
  if (seq === seen) {
    Atomics.wait(ctl, ${SEQ}, seq);
    continue;
  }
  seen = seq;
  if (index > Atomics.load(ctl, ${HELPERS})) continue;
  Atomics.add(ctl, ${ACTIVE}, 1);
  try {
    if (Atomics.load(ctl, ${OPEN}) === seq) work();
  } catch {
    Atomics.store(ctl, ${FAILED}, 1);
  } finally {
    Atomics.sub(ctl, ${ACTIVE}, 1);
    Atomics.notify(ctl, ${ACTIVE});
  }
}
`;

let callerClaimsChunks = true;

/** For tests: with false, the calling thread leaves every chunk to the workers, so their path is always taken. */
export function leaveChunksToWorkers(on: boolean): void {
  callerClaimsChunks = !on;
}

class WorkerPool {
  private readonly control = new Int32Array(new SharedArrayBuffer(CONTROL_INTS * 4));
  private readonly workers: Worker[] = [];
  private alive = 0;
  private seq = 0;
  private broken = false;
  users = 0;

  constructor(private readonly host: WasmHost) {}

  /** Workers that can take part in a job. */
  get helpers(): number {
    return this.broken ? 0 : this.alive;
  }

  /** Starts workers until there are `count`; a worker that cannot be started leaves the pool smaller. */
  ensureWorkers(count: number): void {
    while (this.workers.length < count) {
      let worker: Worker;
      try {
        worker = new Worker(WORKER_SOURCE, {
          eval: true,
          workerData: {
            memory: this.host.memory,
            module: this.host.module,
            control: this.control.buffer,
            index: this.workers.length + 1,
          },
        });
      } catch {
        return;
      }
      // Idle workers sit in Atomics.wait; they must not keep the process alive.
      worker.unref();
      this.alive++;
      let gone = false;
      const lost = () => {
        if (!gone) this.alive--;
        gone = true;
      };
      // A worker that fails to start just never joins a job; the caller's thread does the work.
      worker.on("error", lost);
      worker.on("exit", lost);
      this.workers.push(worker);
    }
  }

  /**
   * Runs `job` over the calling thread and up to `helpers` workers; returns when every column is done, with the
   * estimated speed-up over the calling thread alone (NaN if the caller computed no column).
   */
  run(job: KernelJob, helpers: number): number {
    const { host, control } = this;
    const used = Math.min(helpers, this.helpers);
    const chunk = Math.ceil(job.n / ((used + 1) * CHUNKS_PER_THREAD) / 8) * 8;
    const chunks = Math.ceil(job.n / chunk);
    const packABytes = host.packASize(job.m, job.k) * 4;
    const packBBytes = host.packBSize(job.k) * 4;
    for (let t = 1; t <= used; t++) {
      const s = SCRATCH + 3 * t;
      control[s] = host.scratchBlock(`packA.${t}`, packABytes) | 0;
      control[s + 1] = host.scratchBlock(`packB.${t}`, packBBytes) | 0;
      control[s + 2] = tileScratch(t);
    }
    control.set(
      [
        job.transA,
        job.transB,
        job.a | 0,
        job.b | 0,
        job.c | 0,
        job.m,
        job.k,
        job.n,
        job.accumulate,
        chunk,
        chunks,
      ],
      JOB,
    );
    Atomics.store(control, NEXT, 0);
    Atomics.store(control, HELPERS, used);
    this.seq = (this.seq % 0x7fffffff) + 1;
    Atomics.store(control, OPEN, this.seq);
    Atomics.store(control, SEQ, this.seq);
    Atomics.notify(control, SEQ);
    while (!callerClaimsChunks && Atomics.load(control, NEXT) < chunks) Atomics.wait(control, STOP, 0, 1);
    const start = performance.now();
    let mine = 0;
    for (;;) {
      const q = Atomics.add(control, NEXT, 1);
      if (q >= chunks) break;
      const j0 = q * chunk;
      const j1 = Math.min(job.n, j0 + chunk);
      host.runColumns(job, j0, j1);
      mine += j1 - j0;
    }
    const computed = performance.now();
    // Close the job to latecomers, then wait for the workers still inside it.
    Atomics.store(control, OPEN, 0);
    for (let active = Atomics.load(control, ACTIVE); active !== 0; active = Atomics.load(control, ACTIVE)) {
      Atomics.wait(control, ACTIVE, active);
    }
    if (Atomics.load(control, FAILED) !== 0) {
      this.broken = true;
      throw new Error("threaded GEMM: a worker failed; later products run on one thread");
    }
    // The caller alone would have taken its own time scaled to all columns.
    const alone = ((computed - start) * job.n) / mine;
    return alone / (performance.now() - start);
  }

  get workerColumns(): number {
    return Atomics.load(this.control, WORKER_COLUMNS) >>> 0;
  }

  close(): void {
    Atomics.store(this.control, STOP, 1);
    Atomics.add(this.control, SEQ, 1);
    Atomics.notify(this.control, SEQ);
    this.broken = true;
  }
}

let sharedPool: WorkerPool | null = null;

function defaultThreads(): number {
  return Math.min(availableParallelism(), 4);
}

/**
 * A GEMM that runs products of at least `minFlops` over `threads` threads (the calling one and workers, shared by
 * every ThreadedGemm of this thread), smaller ones on the calling thread. Results equal the single-thread WASM
 * GEMM's bit for bit: each column is computed by one thread with the same kernel. Falls back to one thread if no
 * worker can be started, and to the TypeScript GEMM where WebAssembly SIMD is unavailable.
 * To make it the process-wide GEMM: setDefaultGemm(threadedGemm()) from @tdb/tensor.
 */
export function threadedGemm(options: ThreadedGemmOptions = {}): ThreadedGemm {
  const requested = options.threads ?? defaultThreads();
  if (!Number.isInteger(requested) || requested < 1)
    throw new RangeError("threadedGemm: threads must be a positive integer");
  const minFlops = options.minFlops ?? DEFAULT_MIN_FLOPS;
  const adaptive = options.adaptive ?? true;
  const helpersWanted = Math.min(requested, MAX_THREADS) - 1;
  const host = wasmHost();
  if (!host) return { ...referenceGemm, threads: 1, workerColumns: 0, close: () => {} };

  let pool: WorkerPool | null = null;
  if (helpersWanted > 0) {
    sharedPool ??= new WorkerPool(host);
    pool = sharedPool;
    pool.users++;
    pool.ensureWorkers(helpersWanted);
  }
  let speedup = 2;
  let pausedUntil = 0;
  const gemm = host.createGemm((job) => {
    // Fewer than two 8-column chunks cannot be split.
    const split =
      pool !== null &&
      pool.helpers > 0 &&
      job.n > 8 &&
      2 * job.m * job.k * job.n >= minFlops &&
      (!adaptive || performance.now() >= pausedUntil);
    if (!split || !pool) {
      host.runColumns(job, 0, job.n);
      return;
    }
    const measured = pool.run(job, helpersWanted);
    if (!adaptive || !Number.isFinite(measured)) return;
    speedup += SPEEDUP_SMOOTHING * (measured - speedup);
    if (speedup < MIN_SPEEDUP) {
      pausedUntil = performance.now() + PAUSE_MS;
      // Neutral again after the pause, so a few good or bad products decide.
      speedup = 1.5;
    }
  });
  return {
    nn: gemm.nn,
    nt: gemm.nt,
    tn: gemm.tn,
    get threads() {
      return 1 + Math.min(helpersWanted, pool?.helpers ?? 0);
    },
    get workerColumns() {
      return pool?.workerColumns ?? 0;
    },
    close() {
      if (!pool) return;
      pool.users--;
      if (pool.users === 0) {
        pool.close();
        if (sharedPool === pool) sharedPool = null;
      }
      pool = null;
    },
  };
}
