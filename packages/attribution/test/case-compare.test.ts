import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { diffAgainstRecorded, expectMatchesRecorded } from "./case-compare.js";

const casesDir = new URL("../../../../shared/fixtures/tdb-cases/", import.meta.url);

interface NodeIndex {
  nodeType: string;
  tensorIndices: number[];
  layerIndex: number | null;
  passType: string;
}
interface TopK {
  activationsByGroupId: Record<string, number[]>;
  nodeIndices: NodeIndex[];
  vocabTokenStringsForIndices: string[] | null;
}
interface TokenAndScalar {
  token: string;
  scalar: number;
  normalizedScalar: number;
}
interface SubResponse {
  inferenceResponse: { inferenceAndTokenData: Record<string, unknown> };
  processingResponseDataByName: Record<string, Record<string, unknown>>;
}
interface Batched {
  inferenceSubResponses: SubResponse[];
}

function load(name: string): Batched {
  return JSON.parse(readFileSync(new URL(`${name}.json`, casesDir), "utf8")).response as Batched;
}

const baseline = load("tdb_ioi_baseline");
const copy = (): Batched => structuredClone(baseline);
const specs = (response: Batched) => response.inferenceSubResponses[0].processingResponseDataByName;
const topK = (response: Batched) => specs(response).topKComponents as unknown as TopK;
const nodeLists = (response: Batched) =>
  Object.values(specs(response)).filter(
    (spec) => Array.isArray(spec.nodeIndices) && spec !== specs(response).topOutputTokenLogits,
  );
const findNode = (response: Batched, type: string, layer: number | null, indices: number[]) =>
  topK(response).nodeIndices.findIndex(
    (node) =>
      node.nodeType === type && node.layerIndex === layer && node.tensorIndices.join() === indices.join(),
  );

/** Applies `edit` to every list parallel to topKComponents.nodeIndices (groups, scored tokens, token pairs). */
function editParallel(response: Batched, edit: <T>(list: T[]) => void): void {
  for (const spec of nodeLists(response)) {
    if (spec === specs(response).componentSumsForTokenDisplay) continue;
    for (const value of Object.values(spec)) if (Array.isArray(value)) edit(value);
    const groups = spec.activationsByGroupId as Record<string, number[]> | undefined;
    if (groups) for (const values of Object.values(groups)) edit(values);
  }
}

describe("case comparison", () => {
  it("accepts every recorded case against itself (which also checks TDB's node order)", () => {
    for (const name of [
      "tdb_ioi_baseline",
      "tdb_ioi_compare_prompts",
      "tdb_ablate_attention_head",
      "tdb_ae_trace_latent",
      "tdb_trace_attention_head_v",
      "tdb_error_multitoken_target",
    ]) {
      const response = load(name);
      expect(diffAgainstRecorded(response, response), name).toEqual([]);
    }
  });

  it("matches two independent TDB recordings of the same computation despite their tie choices", () => {
    // The autoencoder server in neuron mode computes what the plain server computes.
    expect(diffAgainstRecorded(load("tdb_ae_neurons"), baseline)).toEqual([]);
  });

  it("ignores timing, memory and log fields; tolerates 1e-4 abs + 1e-3 rel", () => {
    const actual = copy();
    const data = actual.inferenceSubResponses[0].inferenceResponse.inferenceAndTokenData;
    data.inferenceTime = 123;
    data.memoryUsedBefore = 5;
    data.log = "anything";
    topK(actual).activationsByGroupId.write_norm[0] *= 1 + 5e-4;
    expectMatchesRecorded(actual, baseline);
  });

  it("reports numbers beyond tolerance, with their path", () => {
    const actual = copy();
    (actual.inferenceSubResponses[0].inferenceResponse.inferenceAndTokenData.loss as number) += 0.01;
    topK(actual).activationsByGroupId.activation[3] += 0.01;
    const diffs = diffAgainstRecorded(actual, baseline);
    expect(diffs.some((d) => d.includes("inferenceAndTokenData.loss"))).toBe(true);
    expect(diffs.some((d) => d.includes("activationsByGroupId.activation @ layer L- [6,0]"))).toBe(true);
    expect(() => expectMatchesRecorded(actual, baseline)).toThrow(/difference/);
  });

  it("accepts reordering nodes whose values tie", () => {
    // Attention from token 0 is exactly 1 for every head: the activation top block lists them in any order.
    const a = findNode(baseline, "attention_head", 0, [0, 0, 3]);
    const b = findNode(baseline, "attention_head", 1, [0, 0, 3]);
    expect(a).toBeGreaterThanOrEqual(0);
    expect(b).toBeGreaterThanOrEqual(0);
    const actual = copy();
    editParallel(actual, (list) => {
      [list[a], list[b]] = [list[b], list[a]];
    });
    expect(diffAgainstRecorded(actual, baseline)).toEqual([]);
  });

  it("rejects reordering nodes TDB orders (group blocks, top before bottom, values descending)", () => {
    const actual = copy();
    editParallel(actual, (list) => {
      [list[0], list[20]] = [list[20], list[0]];
    });
    expect(diffAgainstRecorded(actual, baseline).join("\n")).toMatch(/comes after/);
  });

  it("rejects a node swapped without its values", () => {
    const actual = copy();
    const nodes = topK(actual).nodeIndices;
    [nodes[20], nodes[21]] = [nodes[21], nodes[20]];
    expect(diffAgainstRecorded(actual, baseline).length).toBeGreaterThan(0);
  });

  it("accepts another node picked among ties at the k-th value, in every parallel list", () => {
    // The write_norm bottom-k of attention heads ties at 0 (masked pairs u > t); TDB picked [0,3,1] at layer 1.
    const picked = findNode(baseline, "attention_head", 1, [0, 3, 1]);
    expect(picked).toBeGreaterThanOrEqual(0);
    expect(findNode(baseline, "attention_head", 0, [2, 9, 0])).toBe(-1);
    const actual = copy();
    for (const spec of nodeLists(actual)) {
      if (spec === specs(actual).componentSumsForTokenDisplay) continue;
      (spec.nodeIndices as NodeIndex[])[picked] = {
        nodeType: "attention_head",
        tensorIndices: [2, 9, 0],
        layerIndex: 0,
        passType: "forward",
      };
    }
    expect(diffAgainstRecorded(actual, baseline)).toEqual([]);

    const inconsistent = copy();
    (topK(inconsistent).nodeIndices as NodeIndex[])[picked] = {
      nodeType: "attention_head",
      tensorIndices: [2, 9, 0],
      layerIndex: 0,
      passType: "forward",
    };
    expect(diffAgainstRecorded(inconsistent, baseline).join("\n")).toMatch(/upvotedOutputTokens.nodeIndices/);
  });

  it("rejects a missing node that the values force into the top k", () => {
    const actual = copy();
    const target = findNode(actual, "mlp_neuron", 0, [13, 158]);
    editParallel(actual, (list) => {
      list.splice(target, 1);
    });
    expect(diffAgainstRecorded(actual, baseline).join("\n")).toMatch(/missing node mlp_neuron L0 \[13,158\]/);
  });

  it("rejects an extra node that is in no top/bottom k", () => {
    const actual = copy();
    const source = findNode(actual, "mlp_neuron", 0, [13, 158]);
    editParallel(actual, (list) => {
      list.push(structuredClone(list[source]));
    });
    const nodes = topK(actual).nodeIndices;
    for (const spec of nodeLists(actual)) {
      if (spec === specs(actual).componentSumsForTokenDisplay) continue;
      const list = spec.nodeIndices as NodeIndex[];
      list[list.length - 1] = { ...nodes[source], tensorIndices: [12, 7] };
    }
    // Same values as a top-k node, so this node would have to be in the recording.
    expect(diffAgainstRecorded(actual, baseline).join("\n")).toMatch(
      /unexpected node mlp_neuron L0 \[12,7\]/,
    );
    const groups = topK(actual).activationsByGroupId;
    for (const values of Object.values(groups)) values[values.length - 1] = 0.001;
    expect(diffAgainstRecorded(actual, baseline).join("\n")).toMatch(/\[12,7\] is in no top\/bottom k/);
  });

  it("compares ranked token lists up to permutations among tied values", () => {
    const tokensOf = (response: Batched) =>
      (specs(response).upvotedOutputTokens.topTokensList as Array<{ top: TokenAndScalar[] } | null>)[0]
        ?.top ?? [];
    const actual = copy();
    const top = tokensOf(actual);
    [top[0].token, top[1].token] = [top[1].token, top[0].token];
    expect(diffAgainstRecorded(actual, baseline).join("\n")).toMatch(
      /upvotedOutputTokens.topTokensList @ layer/,
    );

    // All-zero writes (an ablated node) tie everywhere: any tokens are fine.
    const ablated = load("tdb_ablate_mlp_neuron");
    const flat = structuredClone(ablated);
    const index = (specs(flat).topKComponents.nodeIndices as NodeIndex[]).findIndex(
      (node) => node.nodeType === "mlp_neuron" && node.tensorIndices.join() === "13,158",
    );
    const zeros = (specs(flat).upvotedOutputTokens.topTokensList as Array<{ top: TokenAndScalar[] }>)[index]
      .top;
    expect(zeros.every((entry) => entry.scalar === 0)).toBe(true);
    zeros.reverse();
    zeros[0].token = "anything";
    expect(diffAgainstRecorded(flat, ablated)).toEqual([]);
  });

  it("reports structural differences", () => {
    const actual = copy() as unknown as { inferenceSubResponses: Array<Record<string, unknown>> };
    actual.inferenceSubResponses[0].extra = 1;
    delete (specs(actual as unknown as Batched) as Record<string, unknown>).tokenPairAttribution;
    const diffs = diffAgainstRecorded(actual, baseline);
    expect(diffs.some((d) => d.endsWith("extra: unexpected key (value 1)"))).toBe(true);
    expect(diffs.some((d) => d.includes("tokenPairAttribution: missing"))).toBe(true);
    expect(diffAgainstRecorded({ message: "a" }, { message: "b" })).toEqual([
      '$.message: "a" vs recorded "b"',
    ]);
  });
});
