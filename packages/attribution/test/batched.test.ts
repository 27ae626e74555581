/**
 * /batched and the derived-scalar routes against independent values: PyTorch references (shared
 * tiny-gpt2/reference.json; golden/batched-reference.json from tools/golden/make_batched_reference.py), finite
 * differences of the loss through the residual stream, and the request shapes the original node pages send.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  type BatchedContext,
  BatchedRequestSchema,
  type BatchedResponse,
  BatchedResponseSchema,
  DerivedAttentionScalarsRequestSchema,
  DerivedAttentionScalarsResponseSchema,
  DerivedScalarsRequestSchema,
  DerivedScalarsResponseSchema,
  handleBatched,
  handleDerivedAttentionScalars,
  handleDerivedScalars,
  handleMultipleTopKDerivedScalars,
  handleScoredTokens,
  MultipleTopKDerivedScalarsRequestSchema,
  type MultipleTopKDerivedScalarsResponseData,
  ScoredTokensRequestSchema,
  TdbRequestError,
  type TokenAndScalar,
} from "../src/index.js";
import {
  L3_SAE,
  loadAutoencoderFamily,
  loadGpt2Tokenizer,
  loadModelFolder,
  loadTinyMlpAutoencoder,
  loadTinyModel,
  TINY,
} from "./fixture-model.js";

const { model, tokenizer } = loadTinyModel();
const plain: BatchedContext = { model, tokenizer, modelName: "tiny-gpt2" };
const withMlpAe: BatchedContext = { ...plain, mlpAutoencoder: loadTinyMlpAutoencoder() };

interface Ranked {
  topIds: number[];
  topScalars: number[];
  bottomIds: number[];
  bottomScalars: number[];
}
type PerLayer<T> = T[];
interface Golden {
  ioi: {
    tokens: number[];
    loss: number;
    attnQkLogits: PerLayer<number[][][]>;
    attnWriteNormPerSequenceToken: PerLayer<number[][]>;
    attnWriteToFinalResidualGradPerSequenceToken: PerLayer<number[][]>;
    attnActTimesGradPerSequenceToken: PerLayer<number[][]>;
    residPostMlpNorm: PerLayer<number[]>;
    residPostAttnNorm: PerLayer<number[]>;
    mlpLayerWriteNorm: PerLayer<number[]>;
    attnLayerWriteNorm: PerLayer<number[]>;
    residPostMlpProjToFinalResidualGrad: PerLayer<number[]>;
    residPostAttnProjToFinalResidualGrad: PerLayer<number[]>;
    mlpLayerWriteToFinalResidualGrad: PerLayer<number[]>;
    attnLayerWriteToFinalResidualGrad: PerLayer<number[]>;
    attnInputLayerNormScale: PerLayer<number[]>;
    mlpInputLayerNormScale: PerLayer<number[]>;
    finalLayerNormScale: number[];
    logitRowSums: number[];
    losses: {
      target: string;
      logit_minus_mean: { value: number; mlpActTimesGradByToken: number[] };
      probs: { value: number; mlpActTimesGradByToken: number[] };
    };
  };
  logitLens: {
    outputNeuron: Ranked & { layer: number; neuron: number };
    outputLatent: Ranked & { layer: number; latent: number };
    inputNeuron: Ranked & { layer: number; neuron: number };
    inputLatent: Ranked & { layer: number; latent: number };
    inputNeuronScoreOfToken0: number;
    negativeNeuron: Ranked & { layer: number; neuron: number; activation0: number; activations: number[] };
  };
  attentionHead: {
    layer: number;
    head: number;
    tokens: number[];
    alone: Record<string, number | number[]>[];
    recordSequences: number[][][];
    withRecord: Record<string, number | number[]>[];
  };
  l3SaeAttentionLatent: {
    layer: number;
    latent: number;
    tokens: number[];
    activeTokens: number[];
    latentValues: number[];
    attnWriteToLatentSummedOverHeads: number[][];
    tokenPairAttribution: Record<string, { tokenIndices: number[]; attributions: number[] }>;
    outputLatent: Ranked;
  };
}
const golden: Golden = JSON.parse(
  readFileSync(new URL("golden/batched-reference.json", import.meta.url), "utf8"),
);
interface Reference {
  tokens: number[];
  mlpPreAct: number[][][];
  mlpPostAct: number[][][];
  logits: { lastTokenTop100: [number, number][] };
  tdbNodeTable: { finalResidualGrad: number[][] };
  autoencoder: { nonzeroLatents: [number, number, number, number][] };
  ablations: Record<string, { logitDiff: number }>;
}
const reference: Reference = JSON.parse(readFileSync(new URL("reference.json", TINY), "utf8"));

const IOI = "When Mary and John went to the store, John gave a drink to";
const IOI_LOSS = { name: "logit_diff", targetTokens: [" Mary"], distractorTokens: [" John"] };
const LN_F_DETACH = {
  index: {
    activationLocationType: "resid.ln_f.scale",
    tensorIndices: ["All", "All"],
    layerIndex: null,
    passType: "backward",
  },
  value: 0,
};

/** Parses like the server does, then answers; the response must satisfy the strict wire schema. */
function batched(ctx: BatchedContext, body: unknown): BatchedResponse {
  const response = handleBatched(ctx, BatchedRequestSchema.parse(body));
  return BatchedResponseSchema.parse(JSON.parse(JSON.stringify(response)));
}

function close(actual: number, expected: number, abs = 1e-4, rel = 1e-4): boolean {
  return Math.abs(actual - expected) <= abs + rel * Math.abs(expected);
}

function expectClose(actual: number, expected: number, what: string, abs = 1e-4, rel = 1e-4): void {
  if (!close(actual, expected, abs, rel)) throw new Error(`${what}: ${actual} vs expected ${expected}`);
}

/**
 * A ranked token list against the golden ranking (which keeps 10 more entries than compared): the scalars in
 * order, each token one the golden list holds at that score (ties may swap tokens), normalisation by the
 * larger of |top[0]| and |bottom[0]|.
 */
function expectRanked(
  actual: { top: TokenAndScalar[]; bottom: TokenAndScalar[] } | null,
  gold: Ranked,
  count: number,
): void {
  expect(actual).not.toBeNull();
  const scale = Math.max(Math.abs(gold.topScalars[0]), Math.abs(gold.bottomScalars[0]));
  for (const [list, ids, scalars] of [
    [actual!.top, gold.topIds, gold.topScalars],
    [actual!.bottom, gold.bottomIds, gold.bottomScalars],
  ] as const) {
    expect(list).toHaveLength(count);
    const byToken = new Map<string, number[]>();
    ids.forEach((id, i) => {
      const s = tokenizer.tokenString(id);
      byToken.set(s, [...(byToken.get(s) ?? []), scalars[i]]);
    });
    list.forEach((entry, i) => {
      expectClose(entry.scalar, scalars[i], `rank ${i} scalar`);
      expect(
        (byToken.get(entry.token) ?? []).some((s) => close(s, entry.scalar)),
        `token ${JSON.stringify(entry.token)} at rank ${i}`,
      ).toBe(true);
      expectClose(entry.normalizedScalar, entry.scalar / scale, `rank ${i} normalizedScalar`, 1e-6);
    });
  }
}

/** The two sub-requests LogitLens sends for a node (panes/logitLens.tsx), as JSON on the wire. */
function logitLensRequest(
  location: string,
  layer: number,
  index: number,
  outputDst: string,
  parts: ("input" | "output")[] = ["input", "output"],
): unknown {
  const subRequests = [];
  if (parts.includes("input")) {
    subRequests.push({
      inferenceRequestSpec: {
        prompt: "a",
        ablationSpecs: [
          {
            index: {
              activationLocationType: location,
              tensorIndices: [0, index],
              layerIndex: layer,
              passType: "backward",
            },
            value: 1.0,
          },
        ],
        lossFnConfig: { name: "zero" },
      },
      processingRequestSpecByName: {
        singleton: { dst: "vocab_token_write_to_input_direction", activationIndex: 0, numTopTokens: 100 },
      },
    });
  }
  if (parts.includes("output")) {
    subRequests.push({
      inferenceRequestSpec: {
        prompt: "a",
        ablationSpecs: [
          {
            index: {
              activationLocationType: location,
              tensorIndices: [0, index],
              layerIndex: layer,
              passType: "forward",
            },
            value: 1.0,
          },
        ],
      },
      processingRequestSpecByName: {
        singleton: { dst: outputDst, layerIndex: layer, activationIndex: index, numTopTokens: 100 },
      },
    });
  }
  // JSON round trip: `layerIndex: undefined` in the viewer's input spec is simply absent on the wire.
  return JSON.parse(JSON.stringify({ inferenceSubRequests: subRequests }));
}

function derived(response: BatchedResponse, i: number, name = "singleton") {
  const data = response.inferenceSubResponses[i].processingResponseDataByName[name];
  if (data.responseDataType !== "derived_scalars_response_data") throw new Error(data.responseDataType);
  return data;
}

function topK(response: BatchedResponse, name: string, i = 0): MultipleTopKDerivedScalarsResponseData {
  const data = response.inferenceSubResponses[i].processingResponseDataByName[name];
  if (data.responseDataType !== "multiple_top_k_derived_scalars_response_data")
    throw new Error(data.responseDataType);
  return data;
}

const l3 = (() => {
  const l3Model = loadModelFolder(L3_SAE);
  const layers = [0, 1, 2];
  const ctx: BatchedContext = {
    model: l3Model,
    tokenizer: loadGpt2Tokenizer(),
    modelName: "l3-sae",
    mlpAutoencoder: loadAutoencoderFamily(
      new URL("autoencoders/mlp_post_act/", L3_SAE),
      "mlp_post_act",
      layers,
    ),
    attentionAutoencoder: loadAutoencoderFamily(
      new URL("autoencoders/resid_delta_attn/", L3_SAE),
      "resid_delta_attn",
      layers,
    ),
  };
  return ctx;
})();

describe("LogitLens pane: the node page's /batched request (tdb-spec §2.3.3)", () => {
  it("MLP neuron: input tokens (vocab_token_write_to_input_direction) and output tokens", () => {
    const { inputNeuron, outputNeuron } = golden.logitLens;
    expect([inputNeuron.layer, inputNeuron.neuron]).toEqual([outputNeuron.layer, outputNeuron.neuron]);
    const response = batched(
      plain,
      logitLensRequest("mlp.post_act", inputNeuron.layer, inputNeuron.neuron, "mlp_post_act"),
    );
    expect(response.inferenceSubResponses).toHaveLength(2);
    const input = derived(response, 0);
    expectRanked(input.topTokens, inputNeuron, 100);
    // activations: the score of vocabulary id activationIndex (0) at each prompt token.
    expect(input.activations).toHaveLength(1);
    expectClose(input.activations[0], golden.logitLens.inputNeuronScoreOfToken0, "input activation");
    expect(input.nodeIndices).toEqual([
      { nodeType: "vocab_token", tensorIndices: [0, 0], layerIndex: null, passType: "forward" },
    ]);
    expect(input.normalizedActivations).toBeNull();
    const output = derived(response, 1);
    expect(output.activations).toEqual([1]); // the forward ablation forces the neuron to 1
    expectRanked(output.topTokens, outputNeuron, 100);
    expect(output.nodeIndices[0]).toEqual({
      nodeType: "mlp_neuron",
      tensorIndices: [0, outputNeuron.neuron],
      layerIndex: outputNeuron.layer,
      passType: "forward",
    });
    for (const sub of response.inferenceSubResponses) {
      expect(sub.inferenceResponse.inferenceAndTokenData.tokensAsStrings).toEqual(["a"]);
    }
    expect(response.inferenceSubResponses[0].inferenceResponse.inferenceAndTokenData.loss).toBe(0);
    expect(response.inferenceSubResponses[1].inferenceResponse.inferenceAndTokenData.loss).toBeNull();
  });

  it("MLP autoencoder latent: input and output tokens", () => {
    const { inputLatent, outputLatent } = golden.logitLens;
    const response = batched(
      withMlpAe,
      logitLensRequest(
        "online_mlp_autoencoder_latent",
        inputLatent.layer,
        inputLatent.latent,
        "online_mlp_autoencoder_latent",
      ),
    );
    expectRanked(derived(response, 0).topTokens, inputLatent, 100);
    const output = derived(response, 1);
    expect(output.activations).toEqual([1]);
    expectRanked(output.topTokens, outputLatent, 100);
    expect(output.nodeIndices[0].nodeType).toBe("mlp_autoencoder_latent");
  });

  it("attention autoencoder latent (output tokens only, l3-sae fixture)", () => {
    const g = golden.l3SaeAttentionLatent;
    const response = batched(
      l3,
      logitLensRequest(
        "online_attention_autoencoder_latent",
        g.layer,
        g.latent,
        "online_attention_autoencoder_latent",
        ["output"],
      ),
    );
    const output = derived(response, 0);
    expect(output.activations).toEqual([1]);
    expectRanked(output.topTokens, g.outputLatent, 100);
  });
});

describe("/derived_scalars: ActivationsForPrompt (tdb-spec §2.3.1)", () => {
  const request = (dst: string, layerIndex: number, activationIndex: number, extra: object = {}) =>
    DerivedScalarsRequestSchema.parse({
      inferenceRequestSpec: { prompt: IOI },
      derivedScalarsRequestSpec: {
        dst,
        layerIndex,
        activationIndex,
        normalizeActivationsUsingNeuronRecord: { dst, layerIndex, activationIndex, datasets: ["tiny-gpt2"] },
        ...extra,
      },
    });

  it("MLP neuron: per-token activations; normalisation by the record's max activation", () => {
    const [L, n] = [0, 158];
    const body = request("mlp_post_act", L, n);
    const seen: unknown[] = [];
    const ctx: BatchedContext = {
      ...plain,
      normalizationRecord: (id) => {
        seen.push(id);
        return { maxActivation: 2 };
      },
    };
    const response = DerivedScalarsResponseSchema.parse(handleDerivedScalars(ctx, body));
    const data = response.derivedScalarsResponseData;
    const expected = reference.mlpPostAct[L].map((row) => row[n]);
    data.activations.forEach((a, t) => {
      expectClose(a, expected[t], `token ${t}`);
    });
    data.normalizedActivations!.forEach((x, t) => {
      expectClose(x, Math.max(expected[t], 0) / 2, `norm ${t}`);
    });
    expect(seen).toEqual([
      { dst: "mlp_post_act", layerIndex: L, activationIndex: n, datasets: ["tiny-gpt2"] },
    ]);
    expect(data.nodeIndices[3]).toEqual({
      nodeType: "mlp_neuron",
      tensorIndices: [3, n],
      layerIndex: L,
      passType: "forward",
    });
    expect(data.topTokens).toBeNull();
    expect(response.inferenceAndTokenData.tokensAsInts).toEqual(reference.tokens);
    expect(response.inferenceAndTokenData.loss).toBeNull();
    // No dataset source: the request is still answered, without normalisation.
    expect(handleDerivedScalars(plain, body).derivedScalarsResponseData.normalizedActivations).toBeNull();
  });

  it("MLP autoencoder latent: per-token latent activations; no output tokens when token 0 is inactive", () => {
    const body = request("online_mlp_autoencoder_latent", 0, 120, { numTopTokens: 10 });
    const data = handleDerivedScalars(withMlpAe, body).derivedScalarsResponseData;
    const expected = new Array(reference.tokens.length).fill(0);
    for (const [t, l, a] of reference.autoencoder.nonzeroLatents) if (l === 120) expected[t] = a;
    data.activations.forEach((a, t) => {
      expectClose(a, expected[t], `token ${t}`);
    });
    expect(data.activations[0]).toBe(0);
    expect(data.topTokens).toBeNull();
  });

  it("numTopTokens with a negative activation at token 0: up- and downvoted lists swap", () => {
    const g = golden.logitLens.negativeNeuron;
    expect(g.activation0).toBeLessThan(0);
    const body = request("mlp_post_act", g.layer, g.neuron, { numTopTokens: 100 });
    const data = handleDerivedScalars(plain, body).derivedScalarsResponseData;
    data.activations.forEach((a, t) => {
      expectClose(a, g.activations[t], `token ${t}`);
    });
    expectRanked(data.topTokens, g, 100);
    expect(data.topTokens!.top[0].scalar).toBeLessThan(0);
  });

  it("residual stream channel page: resid_post_mlp per token", () => {
    const data = handleDerivedScalars(plain, request("resid_post_mlp", 1, 7)).derivedScalarsResponseData;
    expect(data.nodeIndices[0].nodeType).toBe("residual_stream_channel");
    // Every channel (a top-k spec listing all elements): per token, the norm over channels is PyTorch's.
    const all = topK(
      batched(plain, {
        inferenceSubRequests: [
          {
            inferenceRequestSpec: { prompt: IOI },
            processingRequestSpecByName: {
              x: { dstListByGroupId: { singleton: ["resid_post_mlp"] }, topAndBottomK: null },
            },
          },
        ],
      }),
      "x",
    );
    const squares = new Array(data.activations.length).fill(0);
    all.nodeIndices.forEach((node, i) => {
      const [t, channel] = node.tensorIndices as number[];
      const x = all.activationsByGroupId.singleton![i];
      if (node.layerIndex !== 1) return;
      squares[t] += x * x;
      if (channel === 7) expect(x).toBe(data.activations[t]);
    });
    squares.forEach((s, t) => {
      expectClose(Math.sqrt(s), golden.ioi.residPostMlpNorm[1][t], `token ${t}`);
    });
  });
});

describe("/derived_attention_scalars: TokenHeatmap2d data (tdb-spec §2.3.4, §3.2)", () => {
  const g = golden.attentionHead;
  const body = DerivedAttentionScalarsRequestSchema.parse({
    inferenceRequestSpec: { prompt: IOI },
    derivedAttentionScalarsRequestSpec: {
      specType: "derived_attention_scalars_request_spec",
      dst: "unflattened_attn_write_norm",
      layerIndex: g.layer,
      activationIndex: g.head,
      normalizeActivationsUsingNeuronRecord: {
        dst: "attn_write_norm",
        layerIndex: g.layer,
        activationIndex: g.head,
        datasets: ["tiny-gpt2"],
      },
    },
  });
  const compare = (actual: Record<string, unknown>[], expected: Record<string, number | number[]>[]) => {
    expect(actual).toHaveLength(expected.length);
    actual.forEach((entry, i) => {
      for (const [key, value] of Object.entries(expected[i])) {
        const got = entry[key] as number | number[];
        if (Array.isArray(value)) {
          expect((got as number[]).length).toBe(value.length);
          value.forEach((v, j) => {
            expectClose((got as number[])[j], v, `token ${i} ${key}[${j}]`);
          });
        } else expectClose(got as number, value, `token ${i} ${key}`);
      }
    });
  };

  it("a head's write norms per token pair with TDB's in/out statistics", () => {
    const response = DerivedAttentionScalarsResponseSchema.parse(handleDerivedAttentionScalars(plain, body));
    const list = response.derivedAttentionScalarsResponseData.tokenAndAttentionScalarsList;
    compare(list, g.alone);
    expect(list.map((e) => e.token)).toEqual(tokenizer.tokenStrings(g.tokens));
  });

  it("the neuron record's top sequences enter the normalisation maxima", () => {
    const ctx: BatchedContext = {
      ...plain,
      normalizationRecord: () => ({ maxActivation: 1, attentionSequences: g.recordSequences }),
    };
    compare(
      handleDerivedAttentionScalars(ctx, body).derivedAttentionScalarsResponseData
        .tokenAndAttentionScalarsList,
      g.withRecord,
    );
  });

  it("attention-latent node: attn_write_to_latent_summed_over_heads (l3-sae, TopK resid_delta_attn)", () => {
    const a = golden.l3SaeAttentionLatent;
    const response = handleDerivedAttentionScalars(
      l3,
      DerivedAttentionScalarsRequestSchema.parse({
        inferenceRequestSpec: {
          prompt: IOI,
          activationIndexForWithinLayerGrad: {
            layerIndex: a.layer,
            // As the node page sends it (readRequests.getActivationIndexForWithinLayerGrad), with both
            // autoencoders loaded.
            activationLocationType: "online_autoencoder_latent",
            tensorIndices: ["All", a.latent],
            passType: "forward",
          },
        },
        derivedAttentionScalarsRequestSpec: {
          specType: "derived_attention_scalars_request_spec",
          dst: "attn_write_to_latent_summed_over_heads",
          layerIndex: a.layer,
          activationIndex: a.latent,
        },
      }),
    );
    const list = response.derivedAttentionScalarsResponseData.tokenAndAttentionScalarsList;
    list.forEach((entry, t) => {
      expect(entry.scalars).toHaveLength(t + 1);
      entry.scalars.forEach((s, u) => {
        expectClose(s, a.attnWriteToLatentSummedOverHeads[t][u], `[${t}, ${u}]`);
      });
    });
    // Inactive query tokens contribute nothing.
    for (let t = 0; t < list.length; t++) {
      if (!a.activeTokens.includes(t)) expect(list[t].scalars.every((s) => s === 0)).toBe(true);
    }
  });
});

describe("multiple top-k over further DSTs (tdb-spec §4.4) against PyTorch", () => {
  const single = (dst: string) => ({
    specType: "multiple_top_k_derived_scalars_request_spec",
    dstListByGroupId: { singleton: [dst] },
    tokenIndex: null,
    topAndBottomK: null,
    dimensionsToKeepForIntermediateSum: ["sequence_tokens"],
  });
  const DSTS: Record<string, (L: number | null, idx: number[]) => number> = {
    mlp_pre_act: (L, [t, n]) => reference.mlpPreAct[L!][t][n],
    attn_qk_logits: (L, [t, u, h]) => golden.ioi.attnQkLogits[L!][t][u][h],
    attn_write_norm_per_sequence_token: (L, [t, h]) => golden.ioi.attnWriteNormPerSequenceToken[L!][t][h],
    attn_write_to_final_residual_grad_per_sequence_token: (L, [t, h]) =>
      golden.ioi.attnWriteToFinalResidualGradPerSequenceToken[L!][t][h],
    attn_act_times_grad_per_sequence_token: (L, [t, h]) =>
      golden.ioi.attnActTimesGradPerSequenceToken[L!][t][h],
    resid_post_mlp_norm: (L, [t]) => golden.ioi.residPostMlpNorm[L!][t],
    resid_post_attn_norm: (L, [t]) => golden.ioi.residPostAttnNorm[L!][t],
    mlp_layer_write_norm: (L, [t]) => golden.ioi.mlpLayerWriteNorm[L!][t],
    attn_layer_write_norm: (L, [t]) => golden.ioi.attnLayerWriteNorm[L!][t],
    resid_post_mlp_proj_to_final_residual_grad: (L, [t]) =>
      golden.ioi.residPostMlpProjToFinalResidualGrad[L!][t],
    resid_post_attn_proj_to_final_residual_grad: (L, [t]) =>
      golden.ioi.residPostAttnProjToFinalResidualGrad[L!][t],
    mlp_layer_write_to_final_residual_grad: (L, [t]) => golden.ioi.mlpLayerWriteToFinalResidualGrad[L!][t],
    attn_layer_write_to_final_residual_grad: (L, [t]) => golden.ioi.attnLayerWriteToFinalResidualGrad[L!][t],
    attn_input_layer_norm_scale: (L, [t]) => golden.ioi.attnInputLayerNormScale[L!][t],
    mlp_input_layer_norm_scale: (L, [t]) => golden.ioi.mlpInputLayerNormScale[L!][t],
    resid_final_layer_norm_scale: (_L, [t]) => golden.ioi.finalLayerNormScale[t],
  };
  const response = batched(plain, {
    inferenceSubRequests: [
      {
        inferenceRequestSpec: { prompt: IOI, ablationSpecs: [LN_F_DETACH], lossFnConfig: IOI_LOSS },
        processingRequestSpecByName: {
          ...Object.fromEntries(Object.keys(DSTS).map((dst) => [dst, single(dst)])),
          logitSums: { ...single("logits"), topAndBottomK: 1 },
        },
      },
    ],
  });
  const T = reference.tokens.length;

  for (const [dst, expected] of Object.entries(DSTS)) {
    it(dst, () => {
      const data = topK(response, dst);
      const values = data.activationsByGroupId.singleton!;
      expect(values).toHaveLength(data.nodeIndices.length);
      const layered = dst !== "resid_final_layer_norm_scale";
      const layers = layered ? 2 : 1;
      const perLayer = data.nodeIndices.filter((n) => n.layerIndex === (layered ? 0 : null)).length;
      // Every element is listed (topAndBottomK null) except masked attention pairs (−∞, never selected).
      const expectedPerLayer =
        { attn_qk_logits: ((T * (T + 1)) / 2) * 4, mlp_pre_act: T * 256 }[dst] ??
        T * (dst.includes("per_sequence_token") ? 4 : 1);
      expect(perLayer).toBe(expectedPerLayer);
      expect(data.nodeIndices.length).toBe(expectedPerLayer * layers);
      data.nodeIndices.forEach((node, i) => {
        const idx = node.tensorIndices as number[];
        expectClose(
          values[i],
          expected(node.layerIndex, idx),
          `${dst} L${node.layerIndex} [${idx.join(", ")}]`,
        );
      });
      // Intermediate sums keep the token dimension: Σ over layers and the rest.
      const sums = data.intermediateSumActivationsByDstByGroupId.singleton![dst as "mlp_pre_act"]!;
      expect(sums.tensorType).toBe("tensor_1d");
      const byToken = new Array(T).fill(0);
      if (dst !== "attn_qk_logits") {
        data.nodeIndices.forEach((node, i) => {
          byToken[(node.tensorIndices as number[])[0]] += expected(
            node.layerIndex,
            node.tensorIndices as number[],
          );
          void i;
        });
        (sums.value as number[]).forEach((s, t) => {
          expectClose(s, byToken[t], `sum ${t}`, 1e-3);
        });
      } else {
        // Masked pairs are −∞ in every row but the last: their sums are sent as −999.
        expect((sums.value as number[]).slice(0, T - 1).every((s) => s === -999)).toBe(true);
      }
    });
  }

  it("logits: row sums over the vocabulary, one top and one bottom node", () => {
    const data = topK(response, "logitSums");
    const sums = data.intermediateSumActivationsByDstByGroupId.logits;
    expect(sums).toBeUndefined(); // the group is named "singleton"
    const row = data.intermediateSumActivationsByDstByGroupId.singleton!.logits!;
    (row.value as number[]).forEach((s, t) => {
      expectClose(s, golden.ioi.logitRowSums[t], `row ${t}`, 1e-2, 1e-4);
    });
    expect(data.vocabTokenStringsForIndices).toHaveLength(2);
    expect(data.nodeIndices.every((n) => n.nodeType === "vocab_token")).toBe(true);
  });
});

describe("loss functions (tdb-spec §4.2)", () => {
  const { losses } = golden.ioi;
  const run = (lossFnConfig: object) =>
    batched(plain, {
      inferenceSubRequests: [
        {
          inferenceRequestSpec: { prompt: IOI, ablationSpecs: [LN_F_DETACH], lossFnConfig },
          processingRequestSpecByName: {
            atg: {
              dstListByGroupId: { act_times_grad: ["mlp_act_times_grad"] },
              topAndBottomK: 1,
              dimensionsToKeepForIntermediateSum: ["sequence_tokens"],
            },
          },
        },
      ],
    });
  const sums = (r: BatchedResponse) =>
    topK(r, "atg").intermediateSumActivationsByDstByGroupId.act_times_grad!.mlp_act_times_grad!
      .value as number[];

  for (const name of ["logit_minus_mean", "probs"] as const) {
    it(name, () => {
      const r = run({ name, targetTokens: [losses.target] });
      expectClose(
        r.inferenceSubResponses[0].inferenceResponse.inferenceAndTokenData.loss!,
        losses[name].value,
        "loss",
      );
      sums(r).forEach((s, t) => {
        expectClose(s, losses[name].mlpActTimesGradByToken[t], `token ${t}`, 1e-4, 1e-3);
      });
    });
  }

  it("logit_diff (the TDB page's loss) and zero", () => {
    const r = run(IOI_LOSS);
    expectClose(
      r.inferenceSubResponses[0].inferenceResponse.inferenceAndTokenData.loss!,
      golden.ioi.loss,
      "loss",
    );
    const zero = run({ name: "zero" });
    expect(zero.inferenceSubResponses[0].inferenceResponse.inferenceAndTokenData.loss).toBe(0);
    expect(sums(zero).every((s) => s === 0)).toBe(true);
  });
});

describe("ablation specs (the forward-pass edits of tdb-maths §5)", () => {
  const lossWith = (ctx: BatchedContext, ablationSpecs: object[]) =>
    batched(ctx, {
      inferenceSubRequests: [
        {
          inferenceRequestSpec: {
            prompt: IOI,
            ablationSpecs: [...ablationSpecs, LN_F_DETACH],
            lossFnConfig: IOI_LOSS,
          },
          processingRequestSpecByName: {},
        },
      ],
    }).inferenceSubResponses[0].inferenceResponse.inferenceAndTokenData.loss!;
  const at = (activationLocationType: string, tensorIndices: (number | "All")[], value = 0) => ({
    index: { activationLocationType, tensorIndices, layerIndex: 0, passType: "forward" },
    value,
  });

  it("neuron, head row and latent ablations give PyTorch's losses (reference.json)", () => {
    const { ablations } = reference;
    expectClose(
      lossWith(plain, [at("mlp.post_act", [13, 158])]),
      ablations.tdb_ablate_mlp_neuron.logitDiff,
      "neuron",
    );
    expectClose(
      lossWith(plain, [at("attn.qk_probs", [13, "All", 2])]),
      ablations.tdb_ablate_attention_head.logitDiff,
      "head",
    );
    expectClose(
      lossWith(withMlpAe, [at("online_mlp_autoencoder_latent", [13, 120])]),
      ablations.tdb_ae_ablate_latent.logitDiff,
      "latent",
    );
  });

  it('"All" stands for every position of that dimension', () => {
    const perToken = Array.from({ length: reference.tokens.length }, (_, t) =>
      at("attn.qk_probs", [t, "All", 1]),
    );
    expect(lossWith(plain, [at("attn.qk_probs", ["All", "All", 1])])).toBe(lossWith(plain, perToken));
    const everyNeuron = Array.from({ length: 256 }, (_, n) => at("mlp.post_act", [13, n], 0.5));
    expect(lossWith(plain, [at("mlp.post_act", [13, "All"], 0.5)])).toBe(lossWith(plain, everyNeuron));
  });
});

describe("tokenIndex slicing", () => {
  const response = batched(plain, {
    inferenceSubRequests: [
      {
        inferenceRequestSpec: { prompt: IOI, ablationSpecs: [LN_F_DETACH], lossFnConfig: IOI_LOSS },
        processingRequestSpecByName: {
          last: { dstListByGroupId: { logits: ["logits"] }, tokenIndex: -1, topAndBottomK: 5 },
          thirteen: { dstListByGroupId: { logits: ["logits"] }, tokenIndex: 13, topAndBottomK: 5 },
          first: { dstListByGroupId: { activation: ["mlp_post_act"] }, tokenIndex: 0, topAndBottomK: 3 },
        },
      },
    ],
  });

  it("logits at token −1 (as the TDB page asks) and at 13 (the same row)", () => {
    const top5 = reference.logits.lastTokenTop100.slice(0, 5);
    for (const [name, index] of [
      ["last", -1],
      ["thirteen", 13],
    ] as const) {
      const data = topK(response, name);
      expect(data.nodeIndices.slice(0, 5).map((n) => n.tensorIndices)).toEqual(
        top5.map(([id]) => [index, id]),
      );
      data.activationsByGroupId.logits!.slice(0, 5).forEach((v, i) => {
        expectClose(v, top5[i][1], `logit ${i}`);
      });
      expect(data.vocabTokenStringsForIndices!.slice(0, 5)).toEqual(
        top5.map(([id]) => tokenizer.tokenString(id)),
      );
    }
  });

  it("MLP activations at token 0 only", () => {
    const data = topK(response, "first");
    expect(data.nodeIndices.every((n) => n.tensorIndices[0] === 0)).toBe(true);
    const all = reference.mlpPostAct.flatMap((layer, L) => layer[0].map((a, n) => ({ a, L, n })));
    all.sort((x, y) => y.a - x.a);
    const values = data.activationsByGroupId.activation!;
    values.slice(0, 3).forEach((v, i) => {
      expectClose(v, all[i].a, `top ${i}`);
    });
    expect(data.nodeIndices[0]).toMatchObject({ layerIndex: all[0].L, tensorIndices: [0, all[0].n] });
  });
});

describe("finite differences: act×grad / activation = g · ∂x_final/∂activation", () => {
  // TDB's gradient detaches only the final LayerNorm scale; up to x_final every path is differentiated. So
  // the derivative of the (ablation-perturbed) final residual at the last token, projected on PyTorch's
  // final-residual gradient g, must equal the act×grad the server reports divided by the activation.
  const T = reference.tokens.length;
  const g = reference.tdbNodeTable.finalResidualGrad[T - 1];
  const eps = 1e-2;

  function finalResidual(ctx: BatchedContext, ablation: object): number[] {
    const r = batched(ctx, {
      inferenceSubRequests: [
        {
          inferenceRequestSpec: { prompt: IOI, ablationSpecs: [ablation] },
          processingRequestSpecByName: {
            x: { dstListByGroupId: { singleton: ["resid_post_mlp"] }, tokenIndex: -1, topAndBottomK: null },
          },
        },
      ],
    });
    const data = topK(r, "x");
    const x = new Array(g.length).fill(0);
    data.nodeIndices.forEach((n, i) => {
      if (n.layerIndex === 1) x[n.tensorIndices[1] as number] = data.activationsByGroupId.singleton![i];
    });
    return x;
  }

  function reported(ctx: BatchedContext, dsts: [string, string], node: number[], layer: number) {
    const r = batched(ctx, {
      inferenceSubRequests: [
        {
          inferenceRequestSpec: { prompt: IOI, ablationSpecs: [LN_F_DETACH], lossFnConfig: IOI_LOSS },
          processingRequestSpecByName: {
            all: {
              dstListByGroupId: { activation: [dsts[0]], act_times_grad: [dsts[1]] },
              topAndBottomK: null,
            },
          },
        },
      ],
    });
    const data = topK(r, "all");
    const i = data.nodeIndices.findIndex(
      (n) => n.layerIndex === layer && n.tensorIndices.join() === node.join(),
    );
    return {
      activation: data.activationsByGroupId.activation![i],
      atg: data.activationsByGroupId.act_times_grad![i],
    };
  }

  const cases = [
    {
      name: "MLP neuron at the last token",
      ctx: plain,
      location: "mlp.post_act",
      layer: 0,
      node: [13, 158],
      dsts: ["mlp_post_act", "mlp_act_times_grad"] as [string, string],
    },
    {
      name: "MLP neuron at an earlier token",
      ctx: plain,
      location: "mlp.post_act",
      layer: 0,
      node: [5, 3],
      dsts: ["mlp_post_act", "mlp_act_times_grad"] as [string, string],
    },
    {
      name: "autoencoder latent",
      ctx: withMlpAe,
      location: "online_mlp_autoencoder_latent",
      layer: 0,
      node: [11, 120],
      dsts: ["online_mlp_autoencoder_latent", "online_mlp_autoencoder_act_times_grad"] as [string, string],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const { activation, atg } = reported(c.ctx, c.dsts, c.node, c.layer);
      expect(Math.abs(activation)).toBeGreaterThan(0.1);
      const at = (value: number) =>
        finalResidual(c.ctx, {
          index: {
            activationLocationType: c.location,
            tensorIndices: c.node,
            layerIndex: c.layer,
            passType: "forward",
          },
          value,
        });
      const plus = at(activation + eps);
      const minus = at(activation - eps);
      let fd = 0;
      for (let i = 0; i < g.length; i++) fd += (g[i] * (plus[i] - minus[i])) / (2 * eps);
      expectClose(atg / activation, fd, "d loss / d activation", 1e-5, 5e-3);
      expect(Math.abs(fd)).toBeGreaterThan(1e-3);
    });
  }
});

describe("token-pair attribution and scored tokens through /batched (l3-sae)", () => {
  it("top attended-to tokens of the active attention-write latents", () => {
    const a = golden.l3SaeAttentionLatent;
    const response = batched(l3, {
      inferenceSubRequests: [
        {
          inferenceRequestSpec: { prompt: IOI, ablationSpecs: [LN_F_DETACH], lossFnConfig: IOI_LOSS },
          processingRequestSpecByName: {
            latents: {
              dstListByGroupId: { activation: ["online_attention_autoencoder_latent"] },
              topAndBottomK: null,
            },
            pairs: {
              specType: "token_pair_attribution_request_spec",
              numTokensAttendedTo: 3,
              dependsOnSpecName: "latents",
            },
            few: {
              dstListByGroupId: { activation: ["online_attention_autoencoder_latent"] },
              topAndBottomK: 2,
            },
            outputs: {
              specType: "scored_tokens_request_spec",
              tokenScoringType: "upvoted_output_tokens",
              numTokens: 5,
              dependsOnSpecName: "few",
            },
          },
        },
      ],
    });
    const latents = topK(response, "latents");
    const pairs = response.inferenceSubResponses[0].processingResponseDataByName.pairs;
    if (pairs.responseDataType !== "token_pair_attribution_response_data")
      throw new Error(pairs.responseDataType);
    expect(pairs.nodeIndices).toEqual(latents.nodeIndices);
    let checked = 0;
    pairs.nodeIndices.forEach((node, i) => {
      const [t, l] = node.tensorIndices as number[];
      const entry = pairs.topTokensAttendedToList[i];
      if (node.layerIndex !== a.layer || l !== a.latent) return;
      const expected = a.tokenPairAttribution[String(t)];
      if (!expected) {
        expect(entry).toBeNull();
        return;
      }
      checked++;
      expect(entry!.tokenIndices).toEqual(expected.tokenIndices);
      entry!.attributions.forEach((x, j) => {
        expectClose(x, expected.attributions[j], `t${t} #${j}`);
      });
    });
    expect(checked).toBe(a.activeTokens.length);
    const outputs = response.inferenceSubResponses[0].processingResponseDataByName.outputs;
    if (outputs.responseDataType !== "scored_tokens_response_data") throw new Error(outputs.responseDataType);
    expect(outputs.nodeIndices).toEqual(topK(response, "few").nodeIndices);
    expect(outputs.topTokensList.every((x) => x !== null && x.top.length === 5)).toBe(true);
  });
});

describe("route wrappers", () => {
  it("/multiple_top_k_derived_scalars equals the /batched sub-response", () => {
    const spec = {
      dstListByGroupId: { write_norm: ["mlp_write_norm", "unflattened_attn_write_norm"] },
      topAndBottomK: 2,
    };
    const inferenceRequestSpec = { prompt: IOI };
    const routed = handleMultipleTopKDerivedScalars(
      plain,
      MultipleTopKDerivedScalarsRequestSchema.parse({
        inferenceRequestSpec,
        multipleTopKDerivedScalarsRequestSpec: spec,
      }),
    );
    const viaBatched = batched(plain, {
      inferenceSubRequests: [{ inferenceRequestSpec, processingRequestSpecByName: { s: spec } }],
    });
    expect(routed.multipleTopKDerivedScalarsResponseData).toEqual(topK(viaBatched, "s"));
    expect(routed.multipleTopKDerivedScalarsResponseData.nodeIndices).toHaveLength(8);
  });

  it("/scored_tokens alone has no spec to depend on", () => {
    const body = ScoredTokensRequestSchema.parse({
      inferenceRequestSpec: { prompt: IOI },
      scoredTokensRequestSpec: {
        tokenScoringType: "upvoted_output_tokens",
        numTokens: 5,
        dependsOnSpecName: "x",
      },
    });
    expect(() => handleScoredTokens(plain, body)).toThrow(
      /dependsOnSpecName "x" names no multiple-top-k spec/,
    );
  });
});

describe("errors name what is wrong", () => {
  const sub = (inferenceRequestSpec: object, processingRequestSpecByName: object) => ({
    inferenceSubRequests: [
      { inferenceRequestSpec: { prompt: IOI, ...inferenceRequestSpec }, processingRequestSpecByName },
    ],
  });
  const fails = (ctx: BatchedContext, body: unknown, message: RegExp) => {
    let error: unknown;
    try {
      handleBatched(ctx, BatchedRequestSchema.parse(body));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(TdbRequestError);
    expect((error as Error).message).toMatch(message);
  };
  const mlpSpec = (extra: object = {}) => ({
    s: { dst: "mlp_post_act", layerIndex: 0, activationIndex: 3, ...extra },
  });

  it("unknown DST: rejected by the wire schema; a DST this server does not compute: listed alternatives", () => {
    expect(
      BatchedRequestSchema.safeParse(sub({}, { s: { dst: "no_such_dst", activationIndex: 0 } })).success,
    ).toBe(false);
    fails(
      plain,
      sub({}, { s: { dstListByGroupId: { write_norm: ["attn_write"] } } }),
      /"attn_write" is not supported.*supported: .*mlp_write_norm/,
    );
    fails(
      plain,
      sub({}, mlpSpec({ dst: "unflattened_attn_write_norm" })),
      /derived_attention_scalars_request_spec/,
    );
    fails(
      plain,
      sub(
        {},
        {
          s: {
            specType: "derived_attention_scalars_request_spec",
            dst: "mlp_post_act",
            layerIndex: 0,
            activationIndex: 0,
          },
        },
      ),
      /supports dst unflattened_attn_write_norm/,
    );
  });

  it("bad indices", () => {
    fails(plain, sub({}, mlpSpec({ activationIndex: 256 })), /activationIndex 256 is outside \[0, 256\)/);
    fails(plain, sub({}, mlpSpec({ layerIndex: 2 })), /has values at layers \[0, 1\]; got layerIndex 2/);
    fails(plain, sub({}, mlpSpec({ layerIndex: null })), /got layerIndex null/);
    fails(
      plain,
      sub(
        {
          ablationSpecs: [
            {
              index: {
                activationLocationType: "mlp.post_act",
                tensorIndices: [14, 0],
                layerIndex: 0,
                passType: "forward",
              },
              value: 0,
            },
          ],
        },
        mlpSpec(),
      ),
      /ablationSpecs\[0\]: token index 14 is outside \[0, 14\)/,
    );
    fails(
      plain,
      sub(
        {
          ablationSpecs: [
            {
              index: {
                activationLocationType: "mlp.post_act",
                tensorIndices: [0, 0],
                layerIndex: 5,
                passType: "forward",
              },
              value: 0,
            },
          ],
        },
        mlpSpec(),
      ),
      /layerIndex 5 is outside \[0, 2\)/,
    );
    fails(
      plain,
      sub({}, { s: { dstListByGroupId: { logits: ["logits"] }, tokenIndex: 20 } }),
      /tokenIndex 20 is outside the prompt's 14 tokens/,
    );
  });

  it("ablations this server does not support", () => {
    const ablate = (
      activationLocationType: string,
      tensorIndices: (number | "All")[],
      passType: string,
      value = 0,
    ) =>
      sub(
        {
          ablationSpecs: [
            { index: { activationLocationType, tensorIndices, layerIndex: 0, passType }, value },
          ],
          lossFnConfig: IOI_LOSS,
        },
        mlpSpec(),
      );
    fails(
      plain,
      ablate("attn.qk_probs", [0, "All", 0], "backward"),
      /backward-pass ablations at attn\.qk_probs are not supported/,
    );
    fails(
      plain,
      ablate("resid.post_attn", [0, 0], "backward"),
      /backward-pass ablations at resid\.post_attn/,
    );
    fails(
      plain,
      ablate("online_mlp_autoencoder_error", [0, 0], "forward"),
      /forward-pass ablations at online_mlp_autoencoder_error are not supported/,
    );
    fails(
      plain,
      ablate("mlp_ln.scale", [0], "forward"),
      /mlp_ln\.scale cannot be ablated in the forward pass/,
    );
    fails(plain, ablate("online_mlp_autoencoder_latent", [0, 0], "forward"), /needs an MLP autoencoder/);
    fails(
      plain,
      sub({ ablationSpecs: [{ ...LN_F_DETACH, value: 1 }] }, mlpSpec()),
      /resid\.ln_f\.scale must have value 0/,
    );
  });

  it("gradients without a backward target, and with a fake-gradient ablation", () => {
    fails(
      plain,
      sub({}, { s: { dstListByGroupId: { act_times_grad: ["mlp_act_times_grad"] } } }),
      /mlp_act_times_grad needs a backward pass: give lossFnConfig or traceConfig/,
    );
    fails(plain, sub({}, mlpSpec({ passType: "backward" })), /needs a backward pass/);
    fails(
      plain,
      sub(
        {
          ablationSpecs: [
            {
              index: {
                activationLocationType: "mlp.post_act",
                tensorIndices: [0, 1],
                layerIndex: 0,
                passType: "backward",
              },
              value: 1,
            },
          ],
          lossFnConfig: { name: "zero" },
        },
        { s: { dstListByGroupId: { act_times_grad: ["mlp_act_times_grad"] } } },
      ),
      /"fake gradient"/,
    );
    fails(
      plain,
      sub({}, { s: { dst: "vocab_token_write_to_input_direction", activationIndex: 0, numTopTokens: 5 } }),
      /needs exactly one ablation spec/,
    );
  });

  it("traces and losses", () => {
    const node = {
      nodeType: "attention_head",
      tensorIndices: [13, 8, 3],
      layerIndex: 1,
      passType: "forward",
    };
    const trace = (extra: object) =>
      sub(
        {
          traceConfig: {
            nodeIndex: node,
            preOrPostAct: "pre",
            detachLayerNormScale: true,
            attentionTraceType: "Q",
            ...extra,
          },
        },
        mlpSpec(),
      );
    fails(plain, trace({ preOrPostAct: "post" }), /only preOrPostAct "pre"/);
    fails(plain, trace({ detachLayerNormScale: false }), /detachLayerNormScale true/);
    fails(
      plain,
      sub(
        {
          lossFnConfig: IOI_LOSS,
          traceConfig: {
            nodeIndex: node,
            preOrPostAct: "pre",
            detachLayerNormScale: true,
            attentionTraceType: "V",
            downstreamTraceConfig: {
              nodeIndex: { ...node, nodeType: "mlp_neuron", tensorIndices: [13, 1] },
              preOrPostAct: "post",
              detachLayerNormScale: true,
            },
          },
        },
        mlpSpec(),
      ),
      /traceConfig\.downstreamTraceConfig: only preOrPostAct "pre"/,
    );
    fails(
      plain,
      sub(
        { lossFnConfig: { name: "logit_diff", targetTokens: [" Maryxyz"], distractorTokens: [" John"] } },
        mlpSpec(),
      ),
      /^' Maryxyz' decoded to \[5335, 5431, 89\]; wanted exactly 1 token$/,
    );
  });

  it("top-k specs: prompt lengths, group node types, numTopTokens", () => {
    const topk = { s: { dstListByGroupId: { activation: ["mlp_post_act"] } } };
    fails(
      plain,
      {
        inferenceSubRequests: [
          sub({}, topk).inferenceSubRequests[0],
          { inferenceRequestSpec: { prompt: "a b" }, processingRequestSpecByName: topk },
        ],
      },
      /^All prompts must have the same length for batched top-k requests/,
    );
    // Different lengths are fine without top-k specs.
    const ok = handleBatched(
      plain,
      BatchedRequestSchema.parse({
        inferenceSubRequests: [
          sub({}, mlpSpec()).inferenceSubRequests[0],
          { inferenceRequestSpec: { prompt: "a b" }, processingRequestSpecByName: mlpSpec() },
        ],
      }),
    );
    expect(ok.inferenceSubResponses).toHaveLength(2);
    fails(
      plain,
      sub({}, { s: { dstListByGroupId: { activation: ["mlp_post_act", "mlp_pre_act"] } } }),
      /two DSTs of the same node type/,
    );
    fails(
      plain,
      sub({}, { s: { dstListByGroupId: { activation: ["mlp_post_act"], write_norm: ["attn_qk_probs"] } } }),
      /same node types/,
    );
    fails(
      plain,
      sub({}, mlpSpec({ dst: "mlp_write_norm", numTopTokens: 5 })),
      /numTopTokens is available for dst mlp_post_act/,
    );
    fails(
      plain,
      sub({}, { s: { dst: "online_mlp_autoencoder_latent", layerIndex: 0, activationIndex: 0 } }),
      /needs an MLP autoencoder/,
    );
  });
});
