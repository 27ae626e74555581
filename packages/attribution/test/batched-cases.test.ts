/**
 * /batched reproduces the recorded /batched_tdb answers: each recorded TdbRequestSpec is turned into the
 * InferenceSubRequest TDB builds internally (docs/tdb-maths.md §3.2–§3.4, written out here by hand), sent
 * through handleBatched, and the whole answer is compared with the recording (case-compare.ts: numbers within
 * 1e-4 abs + 1e-3 rel, node sets equal up to ties). Also: every request the original viewer sent
 * (page_captured_requests.json) goes through the same conversion and gives the loss TDB reported.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  type BatchedContext,
  type BatchedRequest,
  BatchedRequestSchema,
  BatchedTdbRequestSchema,
  handleBatched,
  TdbRequestError,
} from "../src/index.js";
import { expectMatchesRecorded } from "./case-compare.js";
import { loadTinyMlpAutoencoder, loadTinyModel, SHARED } from "./fixture-model.js";

const casesDir = new URL("fixtures/tdb-cases/", SHARED);
const { model, tokenizer } = loadTinyModel();
const plain: BatchedContext = { model, tokenizer, modelName: "tiny-gpt2" };
const withAutoencoder: BatchedContext = { ...plain, mlpAutoencoder: loadTinyMlpAutoencoder() };

interface TdbNode {
  nodeType: string;
  tensorIndices: number[];
  layerIndex: number | null;
  passType: string;
}
interface TdbSpec {
  prompt: string;
  targetTokens: string[];
  distractorTokens: string[];
  componentTypeForMlp: "neuron" | "autoencoder_latent";
  componentTypeForAttention: "attention_head" | "autoencoder_latent";
  topAndBottomKForNodeTable: number;
  nodeAblations?: { nodeIndex: TdbNode; value: number }[];
  upstreamNodeToTrace?: { nodeIndex: TdbNode; attentionTraceType?: string | null } | null;
}

/** §3.4: the DSTs of each group, one per node type (embedding, MLP choice, attention choice). */
function groups(mlp: TdbSpec["componentTypeForMlp"], attention: TdbSpec["componentTypeForAttention"]) {
  const m = mlp === "neuron";
  const a = attention === "attention_head";
  return {
    write_norm: [
      "resid_post_embedding_norm",
      m ? "mlp_write_norm" : "online_mlp_autoencoder_write_norm",
      a ? "unflattened_attn_write_norm" : "online_attention_autoencoder_write_norm",
    ],
    act_times_grad: [
      "token_attribution",
      m ? "mlp_act_times_grad" : "online_mlp_autoencoder_act_times_grad",
      a ? "unflattened_attn_act_times_grad" : "online_attention_autoencoder_act_times_grad",
    ],
    direction_write: [
      "resid_post_embedding_proj_to_final_residual_grad",
      m ? "mlp_write_to_final_residual_grad" : "online_mlp_autoencoder_write_to_final_residual_grad",
      a
        ? "unflattened_attn_write_to_final_residual_grad"
        : "online_attention_autoencoder_write_to_final_residual_grad",
    ],
    activation: [
      "always_one",
      m ? "mlp_post_act" : "online_mlp_autoencoder_latent",
      a ? "attn_qk_probs" : "online_attention_autoencoder_latent",
    ],
  };
}

const ABLATION_LOCATION: Record<string, string> = {
  mlp_neuron: "mlp.post_act",
  attention_head: "attn.qk_probs",
  mlp_autoencoder_latent: "online_mlp_autoencoder_latent",
  attention_autoencoder_latent: "online_attention_autoencoder_latent",
  autoencoder_latent: "online_autoencoder_latent",
};

/** §3.2 + §3.3: what TDB's tdb_conversions.py makes of one TdbRequestSpec. */
function tdbSpecToSubRequest(spec: TdbSpec): unknown {
  const trace = spec.upstreamNodeToTrace ?? null;
  const traceType = trace?.attentionTraceType ?? null;
  const ablationSpecs: unknown[] = (spec.nodeAblations ?? []).map(({ nodeIndex, value }) => ({
    index: {
      activationLocationType: ABLATION_LOCATION[nodeIndex.nodeType],
      tensorIndices:
        nodeIndex.nodeType === "attention_head"
          ? [nodeIndex.tensorIndices[0], "All", nodeIndex.tensorIndices[2]]
          : nodeIndex.tensorIndices,
      layerIndex: nodeIndex.layerIndex,
      passType: "forward",
    },
    value,
  }));
  ablationSpecs.push({
    index: {
      activationLocationType: "resid.ln_f.scale",
      tensorIndices: ["All", "All"],
      layerIndex: null,
      passType: "backward",
    },
    value: 0,
  });
  const tokenIndex = trace ? trace.nodeIndex.tensorIndices[0] : -1;
  const topK = (dstListByGroupId: unknown, k: number, index: number | null) => ({
    specType: "multiple_top_k_derived_scalars_request_spec",
    dstListByGroupId,
    tokenIndex: index,
    topAndBottomK: k,
    passType: "forward",
    dimensionsToKeepForIntermediateSum: ["sequence_tokens", "attended_to_sequence_tokens"],
  });
  const scored = (tokenScoringType: string) => ({
    specType: "scored_tokens_request_spec",
    tokenScoringType,
    numTokens: 10,
    dependsOnSpecName: "topKComponents",
  });
  return {
    inferenceRequestSpec: {
      prompt: spec.prompt,
      ablationSpecs,
      lossFnConfig:
        trace && traceType !== "V"
          ? null
          : { name: "logit_diff", targetTokens: spec.targetTokens, distractorTokens: spec.distractorTokens },
      traceConfig: trace
        ? {
            nodeIndex: trace.nodeIndex,
            preOrPostAct: "pre",
            detachLayerNormScale: true,
            attentionTraceType: traceType,
            downstreamTraceConfig: null,
          }
        : null,
    },
    processingRequestSpecByName: {
      topKComponents: topK(
        groups(spec.componentTypeForMlp, spec.componentTypeForAttention),
        spec.topAndBottomKForNodeTable,
        null,
      ),
      componentSumsForTokenDisplay: topK(groups("neuron", "attention_head"), 1, null),
      upvotedOutputTokens: scored("upvoted_output_tokens"),
      inputTokensThatUpvoteMlp: scored("input_tokens_that_upvote_mlp"),
      inputTokensThatUpvoteAttnQ: scored("input_tokens_that_upvote_attn_q"),
      inputTokensThatUpvoteAttnK: scored("input_tokens_that_upvote_attn_k"),
      tokenPairAttribution: {
        specType: "token_pair_attribution_request_spec",
        numTokensAttendedTo: 3,
        dependsOnSpecName: "topKComponents",
      },
      topOutputTokenLogits: topK({ logits: ["logits"] }, 100, tokenIndex),
    },
  };
}

function toBatched(subRequests: TdbSpec[]): BatchedRequest {
  return BatchedRequestSchema.parse({ inferenceSubRequests: subRequests.map(tdbSpecToSubRequest) });
}

interface RecordedCase {
  status: number;
  request: { subRequests: TdbSpec[] };
  response: unknown;
  server: { mlpAutoencoderName: string | null };
}

const load = (name: string): RecordedCase =>
  JSON.parse(readFileSync(new URL(`${name}.json`, casesDir), "utf8"));

// A spread of the recorded cases (the full set runs through /batched_tdb in tdb-cases.test.ts).
const CASES = [
  "tdb_ioi_baseline",
  "tdb_ioi_compare_prompts",
  "tdb_ablate_attention_head",
  "tdb_ae_ablate_latent",
  "tdb_trace_attention_head_v",
  "tdb_trace_attention_head_k",
  "tdb_ae_trace_latent",
  "tdb_error_multitoken_target",
];

describe("/batched with the sub-requests /batched_tdb builds gives the recorded TDB answers", () => {
  for (const name of CASES) {
    it(name, () => {
      const c = load(name);
      const ctx = c.server.mlpAutoencoderName ? withAutoencoder : plain;
      BatchedTdbRequestSchema.parse(c.request);
      const request = toBatched(c.request.subRequests);
      if (c.status !== 200) {
        let error: unknown;
        try {
          handleBatched(ctx, request);
        } catch (e) {
          error = e;
        }
        expect(error).toBeInstanceOf(TdbRequestError);
        expect({ message: (error as Error).message }).toEqual(c.response);
        return;
      }
      const response = handleBatched(ctx, request);
      const k = c.request.subRequests[0].topAndBottomKForNodeTable;
      expectMatchesRecorded(JSON.parse(JSON.stringify(response)), c.response, "$", {
        topAndBottomK: (_path, spec) =>
          spec === "topOutputTokenLogits" ? 100 : spec === "componentSumsForTokenDisplay" ? 1 : k,
      });
    });
  }
});

describe("requests the original viewer sent (page_captured_requests.json)", () => {
  const captured: {
    scenarios: {
      scenario: string;
      backend: string;
      endpointsCalled: string[];
      batchedTdbRequests: { subRequests: TdbSpec[] }[];
      firstBatchedTdbResponseLoss: number | null;
    }[];
  } = JSON.parse(readFileSync(new URL("page_captured_requests.json", casesDir), "utf8"));

  it("are all /batched_tdb (the TDB page sends no /batched or derived-scalar requests)", () => {
    const inference = captured.scenarios.flatMap((s) =>
      s.endpointsCalled.filter((e) => /batched|derived|top_k|scored|token_pair/.test(e)),
    );
    expect(new Set(inference.map((e) => e.split(" ->")[0]))).toEqual(new Set(["POST /batched_tdb"]));
  });

  for (const scenario of captured.scenarios) {
    it(`${scenario.scenario}: the equivalent /batched request gives TDB's loss`, () => {
      const ctx = scenario.backend === "TDB_AE_URL" ? withAutoencoder : plain;
      const [first] = scenario.batchedTdbRequests;
      // Only the loss is checked here: keep the node table small.
      const request = toBatched(first.subRequests.map((s) => ({ ...s, topAndBottomKForNodeTable: 1 })));
      const loss = handleBatched(ctx, request).inferenceSubResponses[0].inferenceResponse
        .inferenceAndTokenData.loss;
      if (scenario.firstBatchedTdbResponseLoss === null) expect(loss).toBeNull();
      else expect(loss).toBeCloseTo(scenario.firstBatchedTdbResponseLoss, 5);
    });
  }
});
