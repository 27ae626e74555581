import { readdirSync, readFileSync } from "node:fs";
import { getEncoding } from "js-tiktoken";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { LEAST_COMMON_GPT2_TOKEN_IDS, LEAST_COMMON_GPT2_TOKEN_STRS } from "../src/least-common-tokens.js";
import * as wire from "../src/wire.js";

const casesDir = new URL("../../../../shared/fixtures/tdb-cases/", import.meta.url);

interface RecordedCase {
  name: string;
  endpoint: string;
  request: unknown;
  status: number;
  response: unknown;
}

const cases: RecordedCase[] = readdirSync(casesDir)
  .filter((file) => file.endsWith(".json") && file !== "page_captured_requests.json")
  .map((file) => JSON.parse(readFileSync(new URL(file, casesDir), "utf8")) as RecordedCase);

function firstIssue(schema: z.ZodType, value: unknown): string {
  const result = schema.safeParse(value);
  if (result.success) return "";
  return result.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`).join("; ");
}

const ioiSubRequest = {
  prompt: "When Mary and John went to the store, John gave a drink to",
  targetTokens: [" Mary"],
  distractorTokens: [" John"],
  componentTypeForMlp: "neuron",
  componentTypeForAttention: "attention_head",
  topAndBottomKForNodeTable: 10,
  hideEarlyLayersWhenAblating: true,
  nodeAblations: [],
};

describe("recorded TDB cases parse", () => {
  it("found the 17 recorded cases", () => {
    expect(cases.length).toBe(17);
  });

  for (const recorded of cases) {
    it(recorded.name, () => {
      if (recorded.endpoint === "/batched_tdb") {
        expect(firstIssue(wire.BatchedTdbRequestSchema, recorded.request)).toBe("");
        const responseSchema =
          recorded.status === 200 ? wire.BatchedResponseSchema : wire.ErrorResponseSchema;
        expect(firstIssue(responseSchema, recorded.response)).toBe("");
      } else {
        expect(recorded.endpoint).toBe("/model_info");
        expect(recorded.request).toBeNull();
        expect(firstIssue(wire.ModelInfoResponseSchema, recorded.response)).toBe("");
      }
    });
  }

  it("requests captured from the real TDB page parse", () => {
    const captured = JSON.parse(readFileSync(new URL("page_captured_requests.json", casesDir), "utf8")) as {
      scenarios: Array<{ batchedTdbRequests: unknown[] }>;
    };
    const requests = captured.scenarios.flatMap((scenario) => scenario.batchedTdbRequests);
    expect(requests.length).toBeGreaterThan(0);
    for (const request of requests) expect(firstIssue(wire.BatchedTdbRequestSchema, request)).toBe("");
  });

  it("fills TDB's defaults", () => {
    const parsed = wire.BatchedTdbRequestSchema.parse({ subRequests: [ioiSubRequest] });
    const spec = parsed.subRequests[0];
    expect(spec.specType).toBe("tdb_request_spec");
    expect(spec.upstreamNodeToTrace).toBeUndefined();
  });
});

describe("request aliases and validation", () => {
  it("accepts snake_case field names like pydantic, camelCase winning", () => {
    const snake = {
      sub_requests: [
        {
          prompt: "a b",
          target_tokens: [" Mary"],
          distractor_tokens: [],
          component_type_for_mlp: "autoencoder_latent",
          component_type_for_attention: "attention_head",
          top_and_bottom_k_for_node_table: 5,
          hide_early_layers_when_ablating: false,
          node_ablations: [
            {
              node_index: {
                node_type: "mlp_neuron",
                tensor_indices: [1, 2],
                layer_index: 0,
                pass_type: "forward",
              },
              value: 0,
            },
          ],
          upstream_node_to_trace: {
            node_index: {
              node_type: "attention_head",
              tensor_indices: [1, 0, 3],
              layer_index: 1,
              pass_type: "forward",
            },
            attention_trace_type: "V",
          },
        },
      ],
    };
    const parsed = wire.BatchedTdbRequestSchema.parse(snake);
    const spec = parsed.subRequests[0];
    expect(spec.topAndBottomKForNodeTable).toBe(5);
    expect(spec.nodeAblations?.[0].nodeIndex.tensorIndices).toEqual([1, 2]);
    expect(spec.upstreamNodeToTrace?.attentionTraceType).toBe("V");
    const both = wire.TdbRequestSpecSchema.parse({ ...ioiSubRequest, top_and_bottom_k_for_node_table: 3 });
    expect(both.topAndBottomKForNodeTable).toBe(10);
  });

  it("never renames dictionary keys (group ids, spec names)", () => {
    const parsed = wire.ProcessingRequestSpecSchema.parse({
      dst_list_by_group_id: { act_times_grad: ["mlp_act_times_grad"], write_norm: ["mlp_write_norm"] },
      token_index: null,
      top_and_bottom_k: 3,
    });
    expect(parsed.specType).toBe("multiple_top_k_derived_scalars_request_spec");
    if (parsed.specType !== "multiple_top_k_derived_scalars_request_spec") throw new Error("unreachable");
    expect(Object.keys(parsed.dstListByGroupId)).toEqual(["act_times_grad", "write_norm"]);
    expect(parsed.dimensionsToKeepForIntermediateSum).toEqual([
      "sequence_tokens",
      "attended_to_sequence_tokens",
    ]);
  });

  it("infers a missing specType the way pydantic's union does", () => {
    const kinds = [
      [{ dst: "mlp_post_act", layerIndex: 0, activationIndex: 3 }, "derived_scalars_request_spec"],
      [
        { tokenScoringType: "upvoted_output_tokens", numTokens: 10, dependsOnSpecName: "a" },
        "scored_tokens_request_spec",
      ],
      [{ numTokensAttendedTo: 3, dependsOnSpecName: "a" }, "token_pair_attribution_request_spec"],
      [
        {
          specType: "derived_attention_scalars_request_spec",
          dst: "unflattened_attn_write_norm",
          activationIndex: 1,
        },
        "derived_attention_scalars_request_spec",
      ],
    ] as const;
    for (const [spec, specType] of kinds)
      expect(wire.ProcessingRequestSpecSchema.parse(spec).specType).toBe(specType);
    expect(firstIssue(wire.ProcessingRequestSpecSchema, { foo: 1 })).toMatch(/specType/);
  });

  it("accepts the BatchedRequest /batched_tdb expands to, and checks dependsOnSpecName", () => {
    const groups = {
      write_norm: ["resid_post_embedding_norm", "mlp_write_norm", "unflattened_attn_write_norm"],
      act_times_grad: ["token_attribution", "mlp_act_times_grad", "unflattened_attn_act_times_grad"],
    };
    const request = {
      inferenceSubRequests: [
        {
          inferenceRequestSpec: {
            prompt: ioiSubRequest.prompt,
            lossFnConfig: { name: "logit_diff", targetTokens: [" Mary"], distractorTokens: [" John"] },
            ablationSpecs: [
              {
                index: {
                  activationLocationType: "resid.ln_f.scale",
                  tensorIndices: ["All", "All"],
                  layerIndex: null,
                  passType: "backward",
                },
                value: 0,
              },
            ],
          },
          processingRequestSpecByName: {
            topKComponents: {
              specType: "multiple_top_k_derived_scalars_request_spec",
              dstListByGroupId: groups,
              tokenIndex: null,
              topAndBottomK: 10,
            },
            upvotedOutputTokens: {
              specType: "scored_tokens_request_spec",
              tokenScoringType: "upvoted_output_tokens",
              numTokens: 10,
              dependsOnSpecName: "topKComponents",
            },
            topOutputTokenLogits: {
              specType: "multiple_top_k_derived_scalars_request_spec",
              dstListByGroupId: { logits: ["logits"] },
              tokenIndex: -1,
              topAndBottomK: 100,
            },
          },
        },
      ],
    };
    expect(firstIssue(wire.BatchedRequestSchema, request)).toBe("");
    const broken = structuredClone(request);
    broken.inferenceSubRequests[0].processingRequestSpecByName.upvotedOutputTokens.dependsOnSpecName = "nope";
    expect(firstIssue(wire.BatchedRequestSchema, broken)).toMatch(/dependsOnSpecName.*"nope"/);
  });

  const withAblation = (nodeIndex: unknown, value: unknown = 0) => ({
    subRequests: [{ ...ioiSubRequest, nodeAblations: [{ nodeIndex, value }] }],
  });
  const mlpNode = { nodeType: "mlp_neuron", tensorIndices: [13, 158], layerIndex: 0, passType: "forward" };

  it("rejects non-finite numbers", () => {
    expect(firstIssue(wire.BatchedTdbRequestSchema, withAblation(mlpNode, Number.NaN))).toMatch(
      /value.*finite/,
    );
    expect(firstIssue(wire.BatchedTdbRequestSchema, withAblation(mlpNode, Number.POSITIVE_INFINITY))).toMatch(
      /value.*finite/,
    );
    expect(firstIssue(wire.BatchedTdbRequestSchema, withAblation(mlpNode, "0"))).toMatch(/value/);
  });

  it("rejects negative, fractional and missing indices", () => {
    expect(
      firstIssue(wire.BatchedTdbRequestSchema, withAblation({ ...mlpNode, tensorIndices: [-1, 158] })),
    ).toMatch(/tensorIndices.*non-negative/);
    expect(
      firstIssue(wire.BatchedTdbRequestSchema, withAblation({ ...mlpNode, tensorIndices: [1.5, 158] })),
    ).toMatch(/tensorIndices.*integer/);
    expect(firstIssue(wire.BatchedTdbRequestSchema, withAblation({ ...mlpNode, layerIndex: -2 }))).toMatch(
      /layerIndex/,
    );
    expect(
      firstIssue(wire.BatchedTdbRequestSchema, withAblation({ ...mlpNode, tensorIndices: [null, 158] })),
    ).toMatch(/token index/);
    const badK = { subRequests: [{ ...ioiSubRequest, topAndBottomKForNodeTable: 0 }] };
    expect(firstIssue(wire.BatchedTdbRequestSchema, badK)).toMatch(/topAndBottomKForNodeTable.*at least 1/);
  });

  it("rejects ablating or tracing nodes TDB cannot handle", () => {
    const embedding = { nodeType: "layer", tensorIndices: [3, 0], layerIndex: null, passType: "forward" };
    expect(firstIssue(wire.BatchedTdbRequestSchema, withAblation(embedding))).toMatch(
      /cannot ablate a layer node/,
    );
    const traceEmbedding = {
      subRequests: [{ ...ioiSubRequest, upstreamNodeToTrace: { nodeIndex: embedding } }],
    };
    expect(firstIssue(wire.BatchedTdbRequestSchema, traceEmbedding)).toMatch(
      /cannot trace from a layer node/,
    );
    const head = {
      nodeType: "attention_head",
      tensorIndices: [13, 8, 3],
      layerIndex: 1,
      passType: "forward",
    };
    const noTraceType = { subRequests: [{ ...ioiSubRequest, upstreamNodeToTrace: { nodeIndex: head } }] };
    expect(firstIssue(wire.BatchedTdbRequestSchema, noTraceType)).toMatch(/attentionTraceType/);
    const downstreamWithoutV = {
      subRequests: [
        {
          ...ioiSubRequest,
          upstreamNodeToTrace: { nodeIndex: head, attentionTraceType: "Q" },
          downstreamNodeToTrace: { nodeIndex: mlpNode },
        },
      ],
    };
    expect(firstIssue(wire.BatchedTdbRequestSchema, downstreamWithoutV)).toMatch(/"V"/);
  });

  it("rejects bad prompts and token lists", () => {
    expect(firstIssue(wire.TdbRequestSpecSchema, { ...ioiSubRequest, prompt: "" })).toMatch(/prompt/);
    expect(firstIssue(wire.TdbRequestSpecSchema, { ...ioiSubRequest, targetTokens: [] })).toMatch(
      /targetTokens/,
    );
    const { prompt: _prompt, ...noPrompt } = ioiSubRequest;
    expect(firstIssue(wire.TdbRequestSpecSchema, noPrompt)).toMatch(/prompt/);
    expect(
      firstIssue(wire.TdbRequestSpecSchema, { ...ioiSubRequest, componentTypeForMlp: "neurons" }),
    ).toMatch(/componentTypeForMlp/);
  });

  it("checks loss configs and explanation requests", () => {
    expect(
      firstIssue(wire.LossFnConfigSchema, { name: "probs", targetTokens: [" a"], distractorTokens: [" b"] }),
    ).toMatch(/distractorTokens/);
    expect(firstIssue(wire.LossFnConfigSchema, { name: "zero" })).toBe("");
    const base = { dst: "mlp_post_act", layer_index: 0, activation_index: 5 };
    expect(firstIssue(wire.ExistingExplanationsRequestSchema, { ...base, explanation_datasets: [] })).toMatch(
      /Exactly one/,
    );
    expect(
      firstIssue(wire.ExistingExplanationsRequestSchema, {
        ...base,
        explanation_datasets: [],
        neuron_dataset: "gpt2-small",
      }),
    ).toBe("");
  });
});

describe("response schemas", () => {
  const topK = {
    responseDataType: "multiple_top_k_derived_scalars_response_data",
    activationsByGroupId: { activation: [1, 2] },
    nodeIndices: [{ nodeType: "layer", tensorIndices: [0, 0], layerIndex: null, passType: "forward" }],
    vocabTokenStringsForIndices: null,
    intermediateSumActivationsByDstByGroupId: {},
  };

  it("checks parallel arrays and exact field names", () => {
    expect(firstIssue(wire.ProcessingResponseDataSchema, topK)).toMatch(
      /activationsByGroupId.activation has 2/,
    );
    const typo = { ...topK, activationsByGroupId: { activation: [1] }, nodeIndex: [] };
    expect(firstIssue(wire.ProcessingResponseDataSchema, typo)).toMatch(/nodeIndex/);
  });
});

describe("enums and data tables", () => {
  it("has TDB's 106 derived scalar types, all distinct", () => {
    expect(wire.DERIVED_SCALAR_TYPES.length).toBe(106);
    expect(new Set(wire.DERIVED_SCALAR_TYPES).size).toBe(106);
  });

  it("least-common tokens: every string is one GPT-2 token with the listed id (js-tiktoken)", () => {
    // TDB's list has 596 strings (586 double-quoted + 10 single-quoted in the Python source).
    expect(LEAST_COMMON_GPT2_TOKEN_STRS.length).toBe(596);
    expect(LEAST_COMMON_GPT2_TOKEN_IDS.length).toBe(596);
    const encoding = getEncoding("gpt2");
    const ids = LEAST_COMMON_GPT2_TOKEN_STRS.map((token) => encoding.encode(token));
    expect(ids.every((tokenIds) => tokenIds.length === 1)).toBe(true);
    expect(ids.map((tokenIds) => tokenIds[0])).toEqual(LEAST_COMMON_GPT2_TOKEN_IDS);
    expect(new Set(LEAST_COMMON_GPT2_TOKEN_IDS).size).toBe(596);
  });
});

describe("JSON schema", () => {
  it("every exported schema converts with z.toJSONSchema (input and output)", () => {
    const schemas = Object.entries(wire).filter(
      ([name, value]) => name.endsWith("Schema") && value instanceof z.ZodType,
    );
    expect(schemas.length).toBeGreaterThan(60);
    for (const [name, schema] of schemas) {
      for (const io of ["input", "output"] as const) {
        expect(() => z.toJSONSchema(schema as z.ZodType, { io }), `${name} (${io})`).not.toThrow();
      }
    }
    const tdb = z.toJSONSchema(wire.TdbRequestSpecSchema, { io: "input" }) as {
      properties: Record<string, unknown>;
    };
    expect(Object.keys(tdb.properties)).toContain("topAndBottomKForNodeTable");
    const trace = JSON.stringify(z.toJSONSchema(wire.NodeToTraceSchema, { io: "input" }));
    expect(trace).toContain("downstreamTraceConfig");
  });
});
