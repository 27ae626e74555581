/**
 * Node-table, logits and token-effect views of recorded /batched_tdb responses, checked against what the
 * original TDB page showed for the same response (fixtures/tdb-screenshots/tdb-screenshot-full.png) and the
 * checked numbers of docs/tdb-maths.md.
 */
import { readFileSync } from "node:fs";
import type { BatchedResponse } from "@tdb/attribution";
import { describe, expect, it } from "vitest";
import { errorMessageFromBody } from "../src/api.js";
import { formatNumber, formatToken } from "../src/format.js";
import { matchRoute } from "../src/routes.js";
import { unflattenLowerTriangle } from "../src/tdb/AttentionPatternCard.js";
import {
  buildLogits,
  buildNodeRows,
  buildTokenEffect,
  describeTrace,
  filterRows,
  nodeName,
  sortRows,
  topTokenSides,
} from "../src/tdb/results.js";
import { DEFAULT_SORT } from "../src/tdb/state.js";

const CASES = new URL("../../../../shared/fixtures/tdb-cases/", import.meta.url);
const response = (name: string): BatchedResponse =>
  JSON.parse(readFileSync(new URL(`${name}.json`, CASES), "utf8")).response;
const IOI = {
  prompt: "When Mary and John went to the store, John gave a drink to",
  targetTokens: [" Mary"],
  distractorTokens: [" John"],
};

describe("node table rows", () => {
  const ioi = response("tdb_ioi_baseline").inferenceSubResponses[0];
  const rows = buildNodeRows(ioi, null);
  const tokens = ioi.inferenceResponse.inferenceAndTokenData.tokensAsStrings;

  it("has one row per node of topKComponents (TDB's page: 236 grid rows = 118 nodes × 2)", () => {
    expect(rows).toHaveLength(118);
  });

  it("sorted by direct effect, shows what TDB's page showed for the IOI prompt", () => {
    const top = sortRows(rows, DEFAULT_SORT, tokens).slice(0, 5);
    // Name, attended to, attended from, activation, write magnitude, direct effect, estimated total effect,
    // read off the original TDB screenshot.
    const shown = top.map((r) => [
      r.name,
      r.to === null ? null : `${formatToken(tokens[r.to])} (${r.to})`,
      `${formatToken(tokens[r.from])} (${r.from})`,
      formatNumber(r.metrics.activation.left),
      formatNumber(r.metrics.write_norm.left),
      formatNumber(r.metrics.direction_write.left),
      formatNumber(r.metrics.act_times_grad.left),
    ]);
    expect(shown).toEqual([
      ["attn_L1_3", ", (8)", "·to (13)", "0.67", "1.32", "1.33", "0.75"],
      ["mlp_L0_191", null, "·to (13)", "2.55", "1.09", "1.04", "0.83"],
      ["mlp_L0_122", null, "·to (13)", "2.50", "0.94", "1.02", "0.24"],
      ["attn_L0_1", "·and (2)", "·to (13)", "0.53", "1.24", "0.99", "1.29"],
      ["mlp_L0_88", null, "·to (13)", "2.60", "1.06", "0.89", "0.74"],
    ]);
    expect(top[0].upvoted[0]?.top.slice(0, 4).map((t) => formatToken(t.token))).toEqual([
      "·bead",
      "·Olsen",
      "prising",
      "Phoenix",
    ]);
  });

  it("carries the checked metric values of docs/tdb-maths.md §4.3", () => {
    const neuron = rows.find((r) => r.name === "mlp_L0_158" && r.from === 13);
    expect(neuron?.metrics.write_norm.left).toBeCloseTo(1.16913, 4);
    expect(neuron?.metrics.direction_write.left).toBeCloseTo(-1.3694, 4);
    const embedding = rows.find((r) => r.name === "embedding" && r.from === 4);
    expect(embedding?.metrics.write_norm.left).toBeCloseTo(5.3798, 4);
  });

  it("sorts ascending and by name, and filters by words", () => {
    const asc = sortRows(rows, { column: "direction_write.left", descending: false }, tokens);
    for (let i = 1; i < asc.length; i++) {
      expect(asc[i].metrics.direction_write.left).toBeGreaterThanOrEqual(
        asc[i - 1].metrics.direction_write.left,
      );
    }
    const byName = sortRows(rows, { column: "name", descending: false }, tokens).map((r) => r.name);
    expect(byName.indexOf("mlp_L0_11")).toBeLessThan(byName.indexOf("mlp_L0_105"));
    const attnL1 = filterRows(rows, "attn L1", tokens);
    expect(attnL1.length).toBeGreaterThan(0);
    expect(attnL1.every((r) => r.name.startsWith("attn_L1_"))).toBe(true);
  });

  it("pairs the ablated run with its baseline: the ablated head's row reads 0 on the left", () => {
    const [ablated, baseline] = response("tdb_ablate_attention_head").inferenceSubResponses;
    const paired = buildNodeRows(ablated, baseline);
    const row = paired.find((r) => r.name === "attn_L0_2" && r.from === 13 && r.to === 7);
    expect(row?.metrics.activation.left).toBe(0);
    expect(row?.metrics.activation.right).toBeGreaterThan(0);
    expect(row?.metrics.activation.diff).toBeCloseTo(-(row?.metrics.activation.right ?? 0), 12);
  });
});

describe("logits card", () => {
  it("lists the top and bottom 100 in TDB's order and says the tokens of interest are outside them", () => {
    const ioi = response("tdb_ioi_baseline").inferenceSubResponses[0];
    const view = buildLogits(ioi, null, IOI, null);
    expect(view.rows).toHaveLength(200);
    const sorted = [...view.rows].sort((a, b) => (b.left ?? 0) - (a.left ?? 0));
    expect(sorted.slice(0, 4).map((r) => [formatToken(r.token), formatNumber(r.left)])).toEqual([
      ["·shade", "16.54"],
      ["itans", "15.94"],
      ["adays", "15.89"],
      ["fund", "15.66"],
    ]);
    expect(view.pinned).toEqual([]);
    expect(view.missing).toEqual([
      { token: " Mary", pin: "target" },
      { token: " John", pin: "distractor" },
    ]);
  });

  it("labels pinned tokens per side when the two prompts' tokens differ", () => {
    const [a, b] = response("tdb_ioi_compare_prompts").inferenceSubResponses;
    const right = { ...IOI, targetTokens: [" John"], distractorTokens: [" Mary"] };
    const view = buildLogits(a, b, IOI, right);
    expect(view.missing.map((m) => m.pin)).toEqual(["left target", "left distractor"]);
    for (const row of view.rows) {
      if (row.left !== null && row.right !== null) expect(row.diff).toBeCloseTo(row.left - row.right, 12);
    }
  });
});

describe("token effect display", () => {
  it("shows the four act×grad rows of componentSumsForTokenDisplay", () => {
    const ioi = response("tdb_ioi_baseline").inferenceSubResponses[0];
    const rows = buildTokenEffect(ioi);
    expect(rows.map((r) => r.label)).toEqual([
      "Embeddings",
      "MLP layers",
      "Attention, attended from",
      "Attention, attended to",
    ]);
    expect(rows.every((r) => r.values.length === 14)).toBe(true);
    // tdb-maths §4.3: the embedding act×grad at token 13.
    expect(rows[0].values[13]).toBeCloseTo(0.382897, 5);
    // Both attention rows sum the same matrix.
    const total = (v: number[]) => v.reduce((x, y) => x + y, 0);
    expect(total(rows[2].values)).toBeCloseTo(total(rows[3].values), 4);
  });
});

describe("small helpers", () => {
  it("names nodes like TDB", () => {
    expect(nodeName({ nodeType: "attention_head", layerIndex: 1, tensorIndices: [13, 8, 3] })).toBe(
      "attn_L1_3",
    );
    expect(nodeName({ nodeType: "mlp_autoencoder_latent", layerIndex: 0, tensorIndices: [13, 120] })).toBe(
      "mlp_ae_L0_120",
    );
    expect(nodeName({ nodeType: "layer", layerIndex: null, tensorIndices: [4, 0] })).toBe("embedding");
  });

  it("describes traces", () => {
    const tokens =
      response("tdb_ioi_baseline").inferenceSubResponses[0].inferenceResponse.inferenceAndTokenData
        .tokensAsStrings;
    const text = (t: Parameters<typeof describeTrace>[0]) =>
      describeTrace(t, tokens)
        .parts.map((p) => p.text)
        .join("");
    expect(
      text({
        nodeIndex: { nodeType: "mlp_neuron", layerIndex: 1, tensorIndices: [13, 169], passType: "forward" },
      }),
    ).toBe("What caused mlp_L1_169 activation at ·to (13)?");
    expect(
      text({
        nodeIndex: {
          nodeType: "attention_head",
          layerIndex: 1,
          tensorIndices: [13, 8, 3],
          passType: "forward",
        },
        attentionTraceType: "QK",
      }),
    ).toBe("What caused attn_L1_3 attention from ·to (13) to , (8)? Tracing through query and key.");
    const vTrace = {
      nodeIndex: {
        nodeType: "attention_head" as const,
        layerIndex: 0,
        tensorIndices: [13, 8, 0],
        passType: "forward" as const,
      },
      attentionTraceType: "V" as const,
    };
    expect(text(vTrace)).toBe(
      "Why did attn_L0_0 attention from ·to (13) to , (8) increase the direction of interest? Tracing through value.",
    );
    const into = describeTrace(vTrace, tokens, {
      nodeIndex: { nodeType: "mlp_neuron", layerIndex: 1, tensorIndices: [13, 169], passType: "forward" },
    });
    expect(into.parts.map((p) => p.text).join("")).toBe(
      "Why did attn_L0_0 attention from ·to (13) to , (8) increase mlp_L1_169 at ·to (13) (its pre-activation)? Tracing through value.",
    );
  });

  it("chooses top-token sides by TDB's rule", () => {
    const t = (scalar: number, token = "a") => ({
      top: [{ token, scalar, normalizedScalar: 1 }],
      bottom: [],
    });
    expect(topTokenSides("single", [t(1), null])).toEqual([0]);
    expect(topTokenSides("compare", [t(0.001), t(2)])).toEqual([1]);
    expect(topTokenSides("compare", [t(1), t(2)])).toEqual([1]);
    expect(topTokenSides("compare", [t(1, "a"), t(2, "b")])).toEqual([0, 1]);
  });

  it("unflattens the lower triangle of flattened_attn_post_softmax", () => {
    expect(unflattenLowerTriangle([1, 0.7, 0.3, 0.5, 0.2, 0.3])).toEqual([[1], [0.7, 0.3], [0.5, 0.2, 0.3]]);
  });

  it("matches TDB's routes", () => {
    expect(matchRoute("/")).toEqual({ page: "welcome" });
    expect(matchRoute("/gpt2-small_ae-x/tdb_alpha")).toEqual({ page: "tdb", model: "gpt2-small_ae-x" });
    expect(matchRoute("/tiny-gpt2/attention_head/1/3")).toEqual({
      page: "node",
      model: "tiny-gpt2",
      nodeType: "attention_head",
      layer: 1,
      index: 3,
    });
    expect(matchRoute("/a/b/c")).toEqual({ page: "notFound" });
  });

  it("turns server error bodies into one readable line", () => {
    const recorded = JSON.parse(readFileSync(new URL("tdb_error_multitoken_target.json", CASES), "utf8"));
    expect(errorMessageFromBody(recorded.status, recorded.response, "")).toBe(
      "' Maryxyz' decoded to [5335, 5431, 89]; wanted exactly 1 token",
    );
    expect(
      errorMessageFromBody(
        422,
        { detail: [{ loc: ["body", "subRequests", 0, "prompt"], msg: "field required" }] },
        "",
      ),
    ).toBe("body.subRequests.0.prompt: field required");
  });
});
