/**
 * The TDB page's URL state and request builder against what TDB's own UI sent for the same URLs
 * (page_captured_requests.json: requests captured from the original neuron_viewer).
 */
import { readFileSync } from "node:fs";
import type { BatchedTdbRequest } from "@tdb/attribution";
import { describe, expect, it } from "vitest";
import {
  buildBatchedTdbRequest,
  defaultState,
  pairingMode,
  promptWarnings,
  searchFromState,
  stateFromSearch,
  withAblation,
  withDownstreamTrace,
  withTrace,
} from "../src/tdb/state.js";

const CASES = new URL("../../../../shared/fixtures/tdb-cases/", import.meta.url);
const readCase = (name: string) => JSON.parse(readFileSync(new URL(name, CASES), "utf8"));

interface Scenario {
  scenario: string;
  pageUrl: string;
  batchedTdbRequests: BatchedTdbRequest[];
}
const captured: Scenario[] = readCase("page_captured_requests.json").scenarios;

/** TDB's UI never sent specType (the server defaults it). */
const withoutSpecType = (request: BatchedTdbRequest) => ({
  subRequests: request.subRequests.map(({ specType: _specType, ...rest }) => rest),
});

describe("request builder vs TDB's UI", () => {
  it.each(captured.map((s) => [s.scenario, s] as const))(
    "%s: same /batched_tdb body as TDB sent",
    (_name, s) => {
      const search = new URL(s.pageUrl.replace("<VIEWER_URL>", "http://x")).search;
      const request = buildBatchedTdbRequest(stateFromSearch(search));
      expect(withoutSpecType(request)).toEqual(s.batchedTdbRequests[0]);
    },
  );

  it("pairs an ablated request with its un-ablated baseline, as the recorded ablation case", () => {
    const recorded = readCase("tdb_ablate_attention_head.json").request as BatchedTdbRequest;
    let state = stateFromSearch(
      `?prompt=${encodeURIComponent(recorded.subRequests[0].prompt)}&targetTokens=${encodeURIComponent('[" Mary"]')}&distractorTokens=${encodeURIComponent('[" John"]')}`,
    );
    state = withAblation(state, {
      nodeType: "attention_head",
      tensorIndices: [13, 7, 2],
      layerIndex: 0,
      passType: "forward",
    });
    expect(pairingMode(state)).toBe("baseline");
    expect(withoutSpecType(buildBatchedTdbRequest(state))).toEqual(recorded);
  });

  it("sends both prompts in compare mode, as the recorded comparison case", () => {
    const recorded = readCase("tdb_ioi_compare_prompts.json").request as BatchedTdbRequest;
    const [a, b] = recorded.subRequests;
    const state = {
      ...defaultState(),
      left: { prompt: a.prompt, targetTokens: a.targetTokens, distractorTokens: a.distractorTokens },
      right: { prompt: b.prompt, targetTokens: b.targetTokens, distractorTokens: b.distractorTokens },
    };
    expect(pairingMode(state)).toBe("compare");
    expect(withoutSpecType(buildBatchedTdbRequest(state))).toEqual(recorded);
  });

  it("builds the recorded V trace request", () => {
    const recorded = readCase("tdb_trace_attention_head_v.json").request as BatchedTdbRequest;
    const spec = recorded.subRequests[0];
    const base = {
      ...defaultState(),
      left: { prompt: spec.prompt, targetTokens: spec.targetTokens, distractorTokens: spec.distractorTokens },
    };
    const state = withTrace(
      base,
      { nodeType: "attention_head", tensorIndices: [13, 8, 3], layerIndex: 1, passType: "forward" },
      "V",
    );
    expect(withoutSpecType(buildBatchedTdbRequest(state))).toEqual(recorded);
  });
});

describe("V trace into a downstream node (TDB kept it in state, never sent it)", () => {
  const head = {
    nodeType: "attention_head",
    tensorIndices: [13, 8, 3],
    layerIndex: 1,
    passType: "forward",
  } as const;
  const neuron = {
    nodeType: "mlp_neuron",
    tensorIndices: [13, 56],
    layerIndex: 1,
    passType: "forward",
  } as const;
  const laterHead = { ...head, tensorIndices: [13, 4, 0], layerIndex: 1 } as const;

  it("sends downstreamNodeToTrace beside the V trace, in both prompts, and keeps it in the URL", () => {
    let state = withTrace(defaultState(), head, "V");
    state = withDownstreamTrace(state, neuron);
    state = { ...state, right: { prompt: "other", targetTokens: [" z"], distractorTokens: [] } };
    const request = buildBatchedTdbRequest(state);
    expect(request.subRequests).toHaveLength(2);
    for (const sub of request.subRequests) {
      expect(sub.upstreamNodeToTrace).toEqual({ nodeIndex: head, attentionTraceType: "V" });
      expect(sub.downstreamNodeToTrace).toEqual({ nodeIndex: neuron });
    }
    expect(
      JSON.parse(new URLSearchParams(searchFromState(state)).get("downstreamNodeToTrace") ?? "null"),
    ).toEqual({
      nodeIndex: neuron,
    });
    expect(stateFromSearch(searchFromState(state))).toEqual(state);
  });

  it("traces into an attention head through its query·key logit", () => {
    const state = withDownstreamTrace(withTrace(defaultState(), head, "V"), laterHead);
    expect(state.downstreamNodeToTrace).toEqual({ nodeIndex: laterHead, attentionTraceType: "QK" });
  });

  it("needs a V trace: ignored otherwise, cleared by a new trace, dropped from URLs without one", () => {
    expect(withDownstreamTrace(defaultState(), neuron).downstreamNodeToTrace).toBeNull();
    const qTrace = withTrace(defaultState(), head, "Q");
    expect(withDownstreamTrace(qTrace, neuron)).toBe(qTrace);
    const traced = withDownstreamTrace(withTrace(defaultState(), head, "V"), neuron);
    expect(withTrace(traced, head, "K").downstreamNodeToTrace).toBeNull();
    const search = `?upstreamNodeToTrace=${encodeURIComponent(JSON.stringify({ nodeIndex: head, attentionTraceType: "Q" }))}&downstreamNodeToTrace=${encodeURIComponent(JSON.stringify({ nodeIndex: neuron }))}`;
    expect(stateFromSearch(search).downstreamNodeToTrace).toBeNull();
    expect(
      buildBatchedTdbRequest(stateFromSearch(search)).subRequests[0].downstreamNodeToTrace,
    ).toBeUndefined();
  });
});

describe("URL state", () => {
  it("round-trips every field, including the viewer's own", () => {
    let state = defaultState();
    state = {
      ...state,
      left: { prompt: "a ߷ b & c?\n", targetTokens: [" x", " y"], distractorTokens: [] },
      right: { prompt: "other", targetTokens: [" z"], distractorTokens: [" w"] },
      componentTypeForMlp: "autoencoder_latent",
      componentTypeForAttention: "autoencoder_latent",
      topAndBottomKForNodeTable: 25,
      hideEarlyLayersWhenAblating: false,
      display: { logits: false, tokenEffect: true, nodeTable: true },
      sort: { column: "act_times_grad.diff", descending: false },
      filter: "attn L1",
      attentionHead: { layer: 1, head: 3 },
      lensToken: 4,
    };
    state = withAblation(state, {
      nodeType: "mlp_neuron",
      tensorIndices: [3, 7],
      layerIndex: 1,
      passType: "forward",
    });
    state = withTrace(
      state,
      { nodeType: "attention_head", tensorIndices: [5, 2, 1], layerIndex: 1, passType: "forward" },
      "QK",
    );
    expect(stateFromSearch(searchFromState(state))).toEqual(state);
  });

  it("leaves defaults out of the URL", () => {
    expect(searchFromState(defaultState())).toBe("");
  });

  it("ignores malformed values instead of failing", () => {
    const state = stateFromSearch(
      "?targetTokens=notjson&topAndBottomKForNodeTable=-3&nodeAblations=[1]&sort=:",
    );
    expect(state.left.targetTokens).toEqual([" Canada"]);
    expect(state.topAndBottomKForNodeTable).toBe(10);
    expect(state.nodeAblations).toEqual([]);
    expect(state.sort).toEqual(defaultState().sort);
  });

  it("accepts TDB's legacy componentTypeForMlp=autoencoder", () => {
    expect(stateFromSearch("?componentTypeForMlp=autoencoder").componentTypeForMlp).toBe(
      "autoencoder_latent",
    );
  });

  it("does not add the same ablation twice", () => {
    const node = {
      nodeType: "mlp_neuron" as const,
      tensorIndices: [1, 2],
      layerIndex: 0,
      passType: "forward" as const,
    };
    const once = withAblation(defaultState(), node);
    expect(withAblation(once, node).nodeAblations).toHaveLength(1);
  });
});

describe("prompt warnings (T1)", () => {
  it("warns like TDB about a trailing space and tokens without a leading space", () => {
    const warnings = promptWarnings({
      prompt: "Hello ",
      targetTokens: ["Mary"],
      distractorTokens: [" John"],
    });
    expect(warnings).toEqual([
      "Prompt ends with a space (the next token usually carries it).",
      'Token "Mary" does not start with a space.',
    ]);
  });
});
