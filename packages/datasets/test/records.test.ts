/**
 * TDB's record normalisation (read_routes.py: normalize_token_scalars, normalize_attention_token_scalars), checked
 * on small records whose expected values were worked out by hand from that code.
 */
import { describe, expect, it } from "vitest";
import { attendedToLengths, toAttentionHeadRecordResponse, toNeuronRecordResponse } from "../src/index.js";

const record = (top: [string[], number[]][], random: [string[], number[]][]) => ({
  layerIndex: 0,
  neuronIndex: 0,
  mostPositiveActivationRecords: top.map(([tokens, activations]) => ({ tokens, activations })),
  randomSample: random.map(([tokens, activations]) => ({ tokens, activations })),
});

describe("neuron records", () => {
  it("scale by the largest relu'd value over top and random, minus 1e-5", () => {
    const r = toNeuronRecordResponse(
      record(
        [
          [
            ["a", "b"],
            [2, -1],
          ],
        ],
        [[["c"], [0.5]]],
      ),
      "ds",
    );
    expect(r.dataset).toBe("ds");
    expect(r.maxActivation).toBe(2);
    expect(r.topActivations).toEqual([
      [
        { token: "a", scalar: 2, normalizedScalar: 2 / 1.99999 },
        { token: "b", scalar: -1, normalizedScalar: 0 },
      ],
    ]);
    expect(r.randomSample[0][0].normalizedScalar).toBeCloseTo(0.25000125000625, 14);
  });

  it("keeps TDB's quirk when nothing is positive (the divisor is −1e-5)", () => {
    const r = toNeuronRecordResponse(
      record(
        [
          [
            ["a", "b"],
            [-1, -2],
          ],
        ],
        [],
      ),
      "ds",
    );
    expect(r.maxActivation).toBe(-1);
    expect(r.topActivations[0].map((t) => t.normalizedScalar)).toEqual(
      [100000, 200000].map((x) => expect.closeTo(x, 6)),
    );
  });
});

describe("attention-head records", () => {
  it("split the lower triangle per token and summarise rows (in) and columns (out)", () => {
    const r = toAttentionHeadRecordResponse(
      record(
        [
          [
            ["x", "y", "z"],
            [1, 2, 3, 4, 5, 6],
          ],
        ],
        [
          [
            ["p", "q"],
            [0.5, -1, 2],
          ],
        ],
      ),
      "heads",
    );
    expect(r.maxAttentionActivation).toBe(6);
    const [top] = r.mostPositiveTokenSequences;
    expect(top.map((t) => t.scalars)).toEqual([[1], [2, 3], [4, 5, 6]]);
    expect(top.map((t) => t.totalScalarIn)).toEqual([1, 5, 15]);
    expect(top.map((t) => t.maxScalarIn)).toEqual([1, 3, 6]);
    expect(top.map((t) => t.totalScalarOut)).toEqual([7, 8, 6]);
    expect(top.map((t) => t.maxScalarOut)).toEqual([4, 5, 6]);
    // Scales: scalars by 6, total in by 15, max in by 6, total out by 8, max out by 6 (each minus 1e-5).
    expect(top[2].normalizedScalars).toEqual([4 / 5.99999, 5 / 5.99999, 6 / 5.99999]);
    expect(top[1].normalizedTotalScalarIn).toBe(5 / 14.99999);
    expect(top[1].normalizedMaxScalarIn).toBe(3 / 5.99999);
    expect(top[0].normalizedTotalScalarOut).toBe(7 / 7.99999);
    expect(top[0].normalizedMaxScalarOut).toBe(4 / 5.99999);
    const [random] = r.randomTokenSequences;
    expect(random.map((t) => t.scalars)).toEqual([[0.5], [-1, 2]]);
    expect(random.map((t) => t.totalScalarIn)).toEqual([0.5, 1]);
    expect(random.map((t) => t.totalScalarOut)).toEqual([-0.5, 2]);
    expect(random.map((t) => t.maxScalarOut)).toEqual([0.5, 2]);
    expect(random[0].normalizedTotalScalarOut).toBe(0);
    expect(random[1].normalizedScalars).toEqual([0, 2 / 5.99999]);
  });

  it("recovers row lengths of capped attended-to windows", () => {
    expect(attendedToLengths(3, 6)).toEqual([1, 2, 3]);
    expect(attendedToLengths(4, 7)).toEqual([1, 2, 2, 2]);
    expect(attendedToLengths(5, 5)).toEqual([1, 1, 1, 1, 1]);
    expect(attendedToLengths(3, 5)).toEqual([1, 2, 2]);
    expect(() => attendedToLengths(3, 4)).toThrow(/lower triangle/);
  });
});
