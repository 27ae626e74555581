/** The merge-exact building blocks: slot sets under a total order, and order-independent fixed-point sums. */
import { defaultGemm, setDefaultGemm } from "@tdb/tensor";
import { nativeGemm, nativeGemmStatus } from "@tdb/tensor/node";
import { describe, expect, it } from "vitest";
import { componentStatistics, GroupAccumulator, mergeStatistics, SlotSet } from "../src/index.js";

describe("slot sets", () => {
  it("keep the best k by (key, sequence) and delete only entries already written", () => {
    const set = new SlotSet(1, 2);
    const values = (entry: number) => Float32Array.of(entry);
    set.insert(0, 5, 10, 0);
    set.insert(0, 3, 11, 1);
    expect(set.accepts(0, 5, 9)).toBe(true); // same key, lower sequence wins
    expect(set.accepts(0, 5, 12)).toBe(false);
    set.insert(0, 4, 12, 2); // drops (5, 10) before it was written: no delete
    let changes = set.takeChanges(values);
    expect(changes.deletes).toEqual([]);
    expect(changes.inserts.map((e) => [e.key, e.seq, e.values[0]]).sort()).toEqual([
      [3, 11, 1],
      [4, 12, 2],
    ]);
    set.insert(0, 1, 13, 3); // drops the written (4, 12)
    set.insert(0, 0, 14, 4); // drops the written (3, 11)
    set.insert(0, -1, 15, 5); // drops (1, 13), never written
    changes = set.takeChanges(values);
    expect(changes.deletes).toEqual([
      { index: 0, seq: 12 },
      { index: 0, seq: 11 },
    ]);
    expect(changes.inserts.map((e) => [e.key, e.seq]).sort()).toEqual([
      [-1, 15],
      [0, 14],
    ]);
    expect(set.entries(0)).toEqual([
      { key: -1, seq: 15 },
      { key: 0, seq: 14 },
    ]);
  });
});

describe("slot sets against brute force", () => {
  it("hold the best k of a random stream, with ties broken by sequence, for several k", () => {
    let state = 11;
    const next = () => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return state;
    };
    for (const k of [1, 2, 5, 8]) {
      const size = 3;
      const set = new SlotSet(size, k);
      const seen: { key: number; seq: number }[][] = Array.from({ length: size }, () => []);
      for (let seq = 0; seq < 300; seq++) {
        for (let c = 0; c < size; c++) {
          // Few distinct keys, so ties (decided by the sequence) are common.
          const key = (next() % 17) - 8;
          seen[c].push({ key, seq });
          if (set.accepts(c, key, seq)) set.insert(c, key, seq, seq);
        }
        if (seq % 50 === 49) set.takeChanges(() => new Float32Array(0));
      }
      for (let c = 0; c < size; c++) {
        const best = seen[c].sort((a, b) => a.key - b.key || a.seq - b.seq).slice(0, k);
        expect(set.entries(c)).toEqual(best);
      }
    }
  });
});

describe("pending values", () => {
  it("are each accepted component's column of its sequence, across arena chunks and after a commit", () => {
    const spec = { kind: "mlp_neuron" as const, layer: 0, size: 5 };
    // Two entries of 3 positions per chunk: five components accepted per sequence span three chunks.
    const acc = new GroupAccumulator(spec, 3, 2, 2, 7, 2 * 3 * 4);
    const sequence = (seq: number) => Float32Array.from({ length: 15 }, (_, i) => seq * 100 + i);
    const column = (seq: number, c: number) => [0, 1, 2].map((p) => seq * 100 + p * 5 + c);
    const check = () => {
      const { top, random } = acc.takeChanges();
      const inserts = [...top.inserts, ...random.inserts];
      expect(inserts.length).toBeGreaterThan(0);
      for (const e of inserts) expect(Array.from(e.values)).toEqual(column(e.seq, e.index));
    };
    for (const seq of [0, 1, 2]) acc.observe(seq, sequence(seq));
    check();
    for (const seq of [3, 4]) acc.observe(seq, sequence(seq));
    check();
  });
});

describe("statistics", () => {
  it("sums do not depend on how sequences are split or ordered", () => {
    const spec = { kind: "mlp_neuron" as const, layer: 0, size: 3 };
    // Values spanning 40 orders of magnitude, where float addition is far from associative.
    const sequences = [
      Float32Array.of(1e10, 1e-30, -3, 0.1, 7e-8, 2),
      Float32Array.of(-1e10, 5, 1e-3, 0.2, 1, -0.7),
      Float32Array.of(3.3, -2.2, 1e8, 0.3, -1e8, 1e-20),
      Float32Array.of(0.1, 0.1, 0.1, -0.4, 9e5, 0),
    ];
    const run = (order: number[][]) => {
      const parts = order.map((seqs) => {
        const acc = new GroupAccumulator(spec, 2, 1, 1, 0);
        for (const s of seqs) acc.observe(s, sequences[s]);
        return acc.stats;
      });
      for (const p of parts.slice(1)) mergeStatistics(parts[0], p);
      return parts[0];
    };
    const whole = run([[0, 1, 2, 3]]);
    for (const split of [
      [
        [3, 1],
        [0, 2],
      ],
      [[2], [3], [1], [0]],
      [[1, 2, 3], [0]],
    ]) {
      const merged = run(split);
      expect([...merged.sumHi, ...merged.sumLo, ...merged.sqHi, ...merged.sqLo]).toEqual([
        ...whole.sumHi,
        ...whole.sumLo,
        ...whole.sqHi,
        ...whole.sqLo,
      ]);
      expect([...merged.max, ...merged.positives, merged.count]).toEqual([
        ...whole.max,
        ...whole.positives,
        whole.count,
      ]);
    }
    // Component 1 (values at positions 1, 4 of each [2, 3] sequence): 1e-30, 7e-8, 5, 1, -2.2, -1e8, 0.1, 9e5.
    const stats = componentStatistics(whole, 1);
    const values = [1e-30, 7e-8, 5, 1, -2.2, -1e8, 0.1, 9e5].map(Math.fround);
    expect(stats.count).toBe(8);
    expect(stats.mean).toBeCloseTo(values.reduce((a, b) => a + b) / 8, 6);
    expect(stats.max).toBe(Math.fround(9e5));
    expect(stats.activationFrequency).toBe(6 / 8);
  });
});

describe.runIf(nativeGemmStatus().available)("on the native engine's kernels", () => {
  it("statistics and kept values equal those of the WebAssembly kernels bit for bit", () => {
    const spec = { kind: "mlp_neuron" as const, layer: 0, size: 37 };
    const P = 11;
    let state = 3;
    const sequence = () =>
      Float32Array.from({ length: P * spec.size }, (_, i) => {
        state = (Math.imul(state, 1103515245) + 12345) >>> 0;
        if (i === 40) return Number.NaN;
        if (i === 41) return -0;
        return ((state / 2 ** 32 - 0.5) * 10) ** 3;
      });
    const sequences = Array.from({ length: 6 }, sequence);
    // Columns whose sums fall exactly halfway between 2^-32 units (11 rows × odd multiples of 2^-33): rounded half
    // up, −5.5 units to −5.
    for (let p = 0; p < P; p++) {
      sequences[0][p * spec.size + 5] = 2 ** -33;
      sequences[0][p * spec.size + 6] = -(2 ** -33);
      sequences[0][p * spec.size + 7] = 3 * 2 ** -33;
    }
    const run = () => {
      const acc = new GroupAccumulator(spec, P, 3, 2, 9);
      const kept: number[][] = [];
      sequences.forEach((values, seq) => {
        acc.observe(seq, values);
        const { top, random } = acc.takeChanges();
        for (const e of [...top.inserts, ...random.inserts]) kept.push([e.index, e.seq, ...e.values]);
      });
      const { stats } = acc;
      acc.dispose();
      return { kept, stats: [stats.max, stats.positives, stats.sumHi, stats.sumLo, stats.sqHi, stats.sqLo] };
    };
    const wasm = run();
    setDefaultGemm(nativeGemm());
    try {
      expect(defaultGemm().kernels).toBeDefined();
      const native = run();
      expect(native.kept).toEqual(wasm.kept);
      for (const [i, values] of native.stats.entries()) expect([...values]).toEqual([...wasm.stats[i]]);
    } finally {
      setDefaultGemm(null);
    }
  });
});
