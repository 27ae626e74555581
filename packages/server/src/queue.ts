/**
 * One model computation at a time, first come first served. Inference is synchronous CPU work, so jobs run
 * back to back on the event loop with a macrotask between them, letting cheap requests (model info, static
 * files, new arrivals joining the queue) through in the gaps.
 */
import { HttpError } from "./http.js";

interface Job {
  run: () => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
  cancelled: () => boolean;
}

/** The client went away before its job started; nothing is sent. */
export class CancelledError extends Error {
  override name = "CancelledError";
}

export class InferenceQueue {
  private readonly jobs: Job[] = [];
  private running = false;
  /** Jobs completed (or failed) since start; for logs and tests. */
  completed = 0;

  constructor(private readonly maxWaiting: number) {}

  get waiting(): number {
    return this.jobs.length;
  }

  get busy(): boolean {
    return this.running;
  }

  run<T>(job: () => T | Promise<T>, cancelled: () => boolean = () => false): Promise<T> {
    if (this.jobs.length >= this.maxWaiting) {
      return Promise.reject(
        new HttpError(
          503,
          `Server busy: ${this.jobs.length} requests are already waiting for the model; try again shortly`,
          undefined,
          { "Retry-After": "5" },
        ),
      );
    }
    return new Promise<T>((resolve, reject) => {
      this.jobs.push({ run: job, resolve: resolve as (value: unknown) => void, reject, cancelled });
      this.pump();
    });
  }

  private pump(): void {
    if (this.running) return;
    const job = this.jobs.shift();
    if (!job) return;
    this.running = true;
    setImmediate(async () => {
      try {
        if (job.cancelled()) throw new CancelledError("client disconnected before its turn");
        job.resolve(await job.run());
      } catch (error) {
        job.reject(error);
      } finally {
        this.completed++;
        this.running = false;
        this.pump();
      }
    });
  }
}
