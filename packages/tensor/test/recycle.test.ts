import { describe, expect, it } from "vitest";
import {
  ArrayRecycler,
  allocateF32,
  freeF32,
  isWasmGemmAvailable,
  isWasmResident,
  jobArray,
  jobArrayUnzeroed,
  jobCopy,
  recyclingArrays,
  wasmArrayRecycler,
  withJobArrays,
} from "../src/index.js";

describe("recycled job arrays", () => {
  it("are fresh outside a job, and recycled from one job to the next, zeroed (jobArray) or overwritten (jobCopy)", () => {
    const outside = jobArray(2048);
    expect(outside.every((x) => x === 0)).toBe(true);
    const recycler = new ArrayRecycler();
    const first = recyclingArrays(recycler, () => {
      const a = jobArray(2048);
      a.fill(5);
      const b = jobCopy(Float32Array.from({ length: 4096 }, (_, i) => i));
      return [a, b];
    });
    expect(recycler.bytesHeld).toBe(4 * (2048 + 4096));
    recyclingArrays(recycler, () => {
      const a = jobArray(2048);
      expect(a).toBe(first[0]);
      expect(a.every((x) => x === 0)).toBe(true);
      const source = Float32Array.from({ length: 4096 }, (_, i) => -i);
      const b = jobCopy(source);
      expect(b).toBe(first[1]);
      expect(b).toEqual(source);
      // Nothing else of that length is held, so a second one is fresh.
      expect(jobArray(2048)).not.toBe(first[0]);
      expect(recycler.bytesHeld).toBe(0);
    });
    expect(recycler.bytesHeld).toBe(4 * (2 * 2048 + 4096));
  });

  it("leaves small arrays to the collector and holds no more than its cap", () => {
    const recycler = new ArrayRecycler(4 * 3000);
    recyclingArrays(recycler, () => {
      jobArray(100);
      jobArray(2000);
      jobArray(2000);
    });
    // 100 floats are below the recycling size; the second 2000-float array would pass the 12 000-byte cap.
    expect(recycler.bytesHeld).toBe(8000);
    recycler.clear();
    expect(recycler.bytesHeld).toBe(0);
  });

  it("takes a job's arrays back when it throws, and an inner job's when the inner job ends", () => {
    const outer = new ArrayRecycler();
    const inner = new ArrayRecycler();
    expect(() =>
      recyclingArrays(outer, () => {
        jobArray(1024);
        recyclingArrays(inner, () => jobArray(1500));
        expect(inner.bytesHeld).toBe(6000);
        expect(outer.bytesHeld).toBe(0);
        jobArray(1024);
        throw new Error("job failed");
      }),
    ).toThrow("job failed");
    expect(outer.bytesHeld).toBe(8192);
    // After the jobs, jobArray is plain allocation again.
    const after = jobArray(1024);
    expect(outer.bytesHeld).toBe(8192);
    expect(after.every((x) => x === 0)).toBe(true);
  });

  it("withJobArrays hands a job's arrays to the caller, who gives them back when done; a throwing job gives them back", () => {
    const recycler = new ArrayRecycler();
    const { result, arrays } = withJobArrays(recycler, () => {
      const a = jobArray(3000);
      a[0] = 1;
      return a;
    });
    expect(arrays).toEqual([result]);
    expect(recycler.bytesHeld).toBe(0);
    recycler.give(arrays);
    expect(recycler.bytesHeld).toBe(12000);
    expect(() =>
      withJobArrays(recycler, () => {
        expect(jobArray(3000)).toBe(result);
        jobArray(5000);
        throw new Error("pass failed");
      }),
    ).toThrow("pass failed");
    expect(recycler.bytesHeld).toBe(32000);
  });
});

describe.skipIf(!isWasmGemmAvailable())("wasmArrayRecycler", () => {
  it("hands out arrays inside the WebAssembly memory, recycled by length, unzeroed only when asked", () => {
    const recycler = wasmArrayRecycler();
    const first = recyclingArrays(recycler, () => {
      const a = jobArray(2048);
      const b = jobArrayUnzeroed(4096);
      expect(isWasmResident(a)).toBe(true);
      expect(isWasmResident(b)).toBe(true);
      a.fill(3);
      b.fill(7);
      return [a, b];
    });
    recyclingArrays(recycler, () => {
      const a = jobArray(2048);
      const b = jobArrayUnzeroed(4096);
      expect(a).toBe(first[0]);
      expect(a.every((x) => x === 0)).toBe(true);
      expect(b).toBe(first[1]);
      // What the last job left is still there: the caller writes every element.
      expect(b.every((x) => x === 7)).toBe(true);
    });
    recycler.clear();
  });

  it("returns what it drops or clears to the WebAssembly allocator, so the memory is reused", () => {
    const recycler = wasmArrayRecycler(4 * 3000);
    const [kept, dropped] = recyclingArrays(recycler, () => [jobArray(2000), jobArray(2000)]);
    expect(recycler.bytesHeld).toBe(8000);
    // The dropped array's block is free again: the next allocation of that size takes it.
    const reused = allocateF32(2000);
    expect(reused.byteOffset).toBe(dropped.byteOffset);
    expect(freeF32(reused)).toBe(true);
    recycler.clear();
    expect(recycler.bytesHeld).toBe(0);
    const again = allocateF32(2000);
    expect([kept.byteOffset, dropped.byteOffset]).toContain(again.byteOffset);
    freeF32(again);
  });
});
