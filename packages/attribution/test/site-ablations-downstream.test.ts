/**
 * Forward-pass ablations at any hook point and V traces into a downstream node, through /batched and
 * /batched_tdb, against independent values: Hugging Face's hidden states (the residual-stream logit lens of the
 * viewer, golden/batched-reference.json) and PyTorch autograd on the l3-sae fixture (golden/l3-sae-reference.json,
 * scenarios in tools/golden/scenarios/l3-sae-scenarios.json).
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  type BatchedContext,
  BatchedRequestSchema,
  type BatchedResponse,
  BatchedResponseSchema,
  BatchedTdbRequestSchema,
  handleBatched,
  handleBatchedTdb,
  type TdbContext,
} from "../src/index.js";
import { L3_SAE, loadGpt2Tokenizer, loadModelFolder, loadTinyModel } from "./fixture-model.js";

interface LensGolden {
  prompt: string;
  tokens: number[];
  token: number;
  depths: { ids: number[]; logits: number[] }[];
}
interface ScenarioGolden {
  name: string;
  loss: number | null;
  activationValueForBackwardPass: number | null;
  layers: { mlpActTimesGrad: number[][] }[];
}
const lens: LensGolden = JSON.parse(
  readFileSync(new URL("golden/batched-reference.json", import.meta.url), "utf8"),
).residualLens;
const l3Golden: ScenarioGolden[] = JSON.parse(
  readFileSync(new URL("golden/l3-sae-reference.json", import.meta.url), "utf8"),
).scenarios;
const scenario = (name: string): ScenarioGolden => {
  const found = l3Golden.find((s) => s.name === name);
  if (!found) throw new Error(`no golden scenario ${name}`);
  return found;
};

const tiny = loadTinyModel();
const plain: BatchedContext = { model: tiny.model, tokenizer: tiny.tokenizer, modelName: "tiny-gpt2" };
const l3: BatchedContext & TdbContext = {
  model: loadModelFolder(L3_SAE),
  tokenizer: loadGpt2Tokenizer(),
  modelName: "l3-sae",
};

const IOI = "When Mary and John went to the store, John gave a drink to";
const L3_LOSS = { name: "logit_diff", targetTokens: [" Mary", " Anna"], distractorTokens: [" John", " Tom"] };

function batched(ctx: BatchedContext, body: unknown): BatchedResponse {
  const response = handleBatched(ctx, BatchedRequestSchema.parse(body));
  return BatchedResponseSchema.parse(JSON.parse(JSON.stringify(response)));
}

function expectClose(actual: number | null, expected: number, what: string, abs = 1e-4, rel = 1e-3): void {
  expect(actual, what).not.toBeNull();
  expect(Math.abs(actual! - expected), `${what}: ${actual} vs ${expected}`).toBeLessThanOrEqual(
    abs + rel * Math.abs(expected),
  );
}

const siteAblation = (
  location: string,
  layer: number | null,
  tensorIndices: (number | "All")[],
  value = 0,
) => ({
  index: { activationLocationType: location, tensorIndices, layerIndex: layer, passType: "forward" },
  value,
});

/** mlp_act_times_grad of one neuron at every token, as /batched's derived_scalars spec returns it. */
const actTimesGradSpec = (layer: number, neuron: number) => ({
  dst: "mlp_act_times_grad",
  layerIndex: layer,
  activationIndex: neuron,
});

/** The neurons of a golden layer with the largest |act×grad| anywhere (the informative ones). */
function strongestNeurons(layer: number[][], count: number): number[] {
  const width = layer[0].length;
  const peak = Array.from({ length: width }, (_, n) => Math.max(...layer.map((row) => Math.abs(row[n]))));
  return peak
    .map((p, n) => [p, n] as const)
    .sort((a, b) => b[0] - a[0])
    .slice(0, count)
    .map(([, n]) => n);
}

describe("residual-stream logit lens (the viewer's /batched request)", () => {
  // Exactly what packages/viewer/src/tdb/LogitLensCard.tsx sends: one sub-request per depth, each zero-ablating
  // the attention and MLP writes of the later layers at the chosen token.
  const nLayers = tiny.model.config.nLayer;
  const request = {
    inferenceSubRequests: Array.from({ length: nLayers + 1 }, (_, kept) => ({
      inferenceRequestSpec: {
        prompt: lens.prompt,
        ablationSpecs: Array.from({ length: nLayers - kept }, (_, i) => kept + i).flatMap((layer) => [
          siteAblation("resid.delta_attn", layer, [lens.token, "All"]),
          siteAblation("resid.delta_mlp", layer, [lens.token, "All"]),
        ]),
      },
      processingRequestSpecByName: {
        lens: {
          specType: "multiple_top_k_derived_scalars_request_spec",
          dstListByGroupId: { logits: ["logits"] },
          tokenIndex: lens.token,
          topAndBottomK: 8,
          passType: "forward",
          dimensionsToKeepForIntermediateSum: ["sequence_tokens", "attended_to_sequence_tokens"],
        },
      },
    })),
  };

  it("each depth's top logits are ln_f + unembedding of Hugging Face's hidden state after that layer", () => {
    const response = batched(plain, request);
    expect(response.inferenceSubResponses).toHaveLength(nLayers + 1);
    response.inferenceSubResponses.forEach((sub, kept) => {
      expect(sub.inferenceResponse.inferenceAndTokenData.tokensAsInts).toEqual(lens.tokens);
      const data = sub.processingResponseDataByName.lens;
      if (data.responseDataType !== "multiple_top_k_derived_scalars_response_data") throw new Error("type");
      // The node list is the union over depths; this depth's own values rank its own top tokens.
      const values = data.activationsByGroupId.logits ?? [];
      const ranked = data.nodeIndices
        .map((node, i) => ({ id: node.tensorIndices[1], value: values[i] }))
        .sort((a, b) => b.value - a.value)
        .slice(0, 8);
      const gold = lens.depths[kept];
      ranked.forEach((entry, r) => {
        expectClose(entry.value, gold.logits[r], `depth ${kept} rank ${r} logit`);
        // Near ties (within the tolerance) may swap neighbours.
        const at = gold.ids.indexOf(entry.id as number);
        expect(
          at,
          `depth ${kept} rank ${r}: token ${entry.id} in the golden top list`,
        ).toBeGreaterThanOrEqual(0);
        expectClose(entry.value, gold.logits[at], `depth ${kept} token ${entry.id}`);
      });
      for (const node of data.nodeIndices) expect(node.tensorIndices[0]).toBe(lens.token);
    });
  });
});

describe("forward-pass ablations at any hook point (/batched ablationSpecs)", () => {
  it("zeroed layer writes at one token: loss and MLP act×grad as PyTorch autograd (l3-sae)", () => {
    const gold = scenario("ioi/no-ae/logit-lens-after-layer-0");
    const neurons = strongestNeurons(gold.layers[0].mlpActTimesGrad, 3);
    const response = batched(l3, {
      inferenceSubRequests: [
        {
          inferenceRequestSpec: {
            prompt: IOI,
            ablationSpecs: [1, 2].flatMap((layer) => [
              siteAblation("resid.delta_attn", layer, [13, "All"]),
              siteAblation("resid.delta_mlp", layer, [13, "All"]),
            ]),
            lossFnConfig: L3_LOSS,
          },
          processingRequestSpecByName: Object.fromEntries(
            neurons.map((n) => [`n${n}`, actTimesGradSpec(0, n)]),
          ),
        },
      ],
    });
    const sub = response.inferenceSubResponses[0];
    expectClose(sub.inferenceResponse.inferenceAndTokenData.loss, gold.loss!, "loss");
    for (const n of neurons) {
      const data = sub.processingResponseDataByName[`n${n}`];
      if (data.responseDataType !== "derived_scalars_response_data") throw new Error(data.responseDataType);
      data.activations.forEach((v, t) => {
        expectClose(v, gold.layers[0].mlpActTimesGrad[t][n], `L0 neuron ${n} token ${t}`);
      });
    }
  });

  it("refuses LayerNorm scales, wrong ranks, indices out of range and layers on global points", () => {
    const fails = (ablation: object, message: RegExp) =>
      expect(() =>
        handleBatched(
          l3,
          BatchedRequestSchema.parse({
            inferenceSubRequests: [
              {
                inferenceRequestSpec: { prompt: IOI, ablationSpecs: [ablation], lossFnConfig: L3_LOSS },
                processingRequestSpecByName: { s: actTimesGradSpec(0, 0) },
              },
            ],
          }),
        ),
      ).toThrow(message);
    fails(siteAblation("attn_ln.scale", 0, [3]), /attn_ln\.scale cannot be ablated in the forward pass/);
    fails(siteAblation("resid.delta_mlp", 0, [3]), /resid\.delta_mlp takes 2 tensor indices/);
    fails(
      siteAblation("attn.v", 0, [3, 4, 0]),
      /tensor index \(dimension 1\) 4 is outside \[0, 4\) at attn\.v/,
    );
    fails(siteAblation("resid.post_emb", 0, [3, "All"]), /resid\.post_emb has no layer/);
    fails(siteAblation("mlp.pre_act", 3, [3, 0]), /layerIndex 3 is outside \[0, 3\)/);
    fails(
      siteAblation("resid.delta_attn", 0, [14, "All"]),
      /token index 14 is outside \[0, 14\) at resid\.delta_attn/,
    );
  });
});

describe("V traces into a downstream node (tdb-spec §4.5)", () => {
  const gold = scenario("ioi/no-ae/trace-head-v-into-mlp-neuron");
  const upstream = {
    nodeType: "attention_head",
    tensorIndices: [13, 6, 1],
    layerIndex: 1,
    passType: "forward",
  };
  const downstream = { nodeType: "mlp_neuron", tensorIndices: [13, 56], layerIndex: 2, passType: "forward" };

  it("/batched traceConfig.downstreamTraceConfig: traced scalar and MLP act×grad as PyTorch autograd", () => {
    const neurons = strongestNeurons(gold.layers[0].mlpActTimesGrad, 3);
    const response = batched(l3, {
      inferenceSubRequests: [
        {
          inferenceRequestSpec: {
            prompt: IOI,
            ablationSpecs: [siteAblation("attn.qk_probs", 0, [13, "All", 2])],
            traceConfig: {
              nodeIndex: upstream,
              preOrPostAct: "pre",
              detachLayerNormScale: true,
              attentionTraceType: "V",
              downstreamTraceConfig: {
                nodeIndex: downstream,
                preOrPostAct: "pre",
                detachLayerNormScale: true,
              },
            },
          },
          processingRequestSpecByName: Object.fromEntries(
            neurons.map((n) => [`n${n}`, actTimesGradSpec(0, n)]),
          ),
        },
      ],
    });
    const sub = response.inferenceSubResponses[0];
    const data = sub.inferenceResponse.inferenceAndTokenData;
    expect(data.loss).toBeNull();
    expectClose(data.activationValueForBackwardPass, gold.activationValueForBackwardPass!, "traced value");
    for (const n of neurons) {
      const d = sub.processingResponseDataByName[`n${n}`];
      if (d.responseDataType !== "derived_scalars_response_data") throw new Error(d.responseDataType);
      d.activations.forEach((v, t) => {
        expectClose(v, gold.layers[0].mlpActTimesGrad[t][n], `L0 neuron ${n} token ${t}`);
      });
    }
  });

  it("/batched_tdb downstreamNodeToTrace: no loss, the traced scalar, node-table act×grad", () => {
    const response = handleBatchedTdb(
      l3,
      BatchedTdbRequestSchema.parse({
        subRequests: [
          {
            prompt: IOI,
            targetTokens: [" Mary"],
            distractorTokens: [" John"],
            componentTypeForMlp: "neuron",
            componentTypeForAttention: "attention_head",
            topAndBottomKForNodeTable: 10,
            hideEarlyLayersWhenAblating: false,
            nodeAblations: [
              {
                nodeIndex: {
                  nodeType: "attention_head",
                  tensorIndices: [13, 0, 2],
                  layerIndex: 0,
                  passType: "forward",
                },
                value: 0,
              },
            ],
            upstreamNodeToTrace: { nodeIndex: upstream, attentionTraceType: "V" },
            downstreamNodeToTrace: { nodeIndex: downstream },
          },
        ],
      }),
    );
    const sub = response.inferenceSubResponses[0];
    const data = sub.inferenceResponse.inferenceAndTokenData;
    expect(data.loss).toBeNull();
    expectClose(data.activationValueForBackwardPass, gold.activationValueForBackwardPass!, "traced value");
    const table = sub.processingResponseDataByName.topKComponents;
    if (table.responseDataType !== "multiple_top_k_derived_scalars_response_data") throw new Error("type");
    const atg = table.activationsByGroupId.act_times_grad ?? [];
    let checked = 0;
    table.nodeIndices.forEach((node, i) => {
      if (node.nodeType !== "mlp_neuron") return;
      const [t, n] = node.tensorIndices as number[];
      const expected = node.layerIndex === 0 ? gold.layers[0].mlpActTimesGrad[t][n] : 0;
      expectClose(atg[i], expected, `mlp L${node.layerIndex} [${t}, ${n}] act×grad`);
      checked += 1;
    });
    expect(checked).toBeGreaterThan(10);
    // The logits card shows the upstream node's token.
    const logits = sub.processingResponseDataByName.topOutputTokenLogits;
    if (logits.responseDataType !== "multiple_top_k_derived_scalars_response_data") throw new Error("type");
    expect(logits.nodeIndices[0].tensorIndices[0]).toBe(13);
  });

  it("refuses a downstream node without a V trace upstream", () => {
    expect(() =>
      handleBatchedTdb(l3, {
        subRequests: [
          {
            specType: "tdb_request_spec",
            prompt: IOI,
            targetTokens: [" Mary"],
            distractorTokens: [" John"],
            componentTypeForMlp: "neuron",
            componentTypeForAttention: "attention_head",
            topAndBottomKForNodeTable: 10,
            hideEarlyLayersWhenAblating: false,
            upstreamNodeToTrace: { nodeIndex: upstream, attentionTraceType: "Q" },
            downstreamNodeToTrace: { nodeIndex: downstream },
          },
        ],
      }),
    ).toThrow(/downstreamNodeToTrace needs an upstream attention node traced through "V"/);
  });
});
