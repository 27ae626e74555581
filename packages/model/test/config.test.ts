import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseGpt2Config } from "../src/formats/config.js";
import { ModelConfigError, UnsupportedModelError } from "../src/formats/errors.js";

const fixtureDir = new URL("../../../../shared/fixtures/tiny-gpt2/", import.meta.url);

describe("parseGpt2Config", () => {
  it("reads the tiny-gpt2 fixture", () => {
    const config = parseGpt2Config(JSON.parse(readFileSync(new URL("config.json", fixtureDir), "utf8")));
    expect(config).toEqual({
      nLayer: 2,
      nHead: 4,
      nEmbd: 64,
      nInner: 256,
      nPositions: 64,
      vocabSize: 50257,
      layerNormEpsilon: 1e-5,
      activationFunction: "gelu_new",
      activationFunctionName: "gelu_new",
      bosTokenId: 50256,
      eosTokenId: 50256,
      scaleAttnWeights: true,
      scaleAttnByInverseLayerIdx: false,
      tieWordEmbeddings: true,
    });
  });

  it("reads the openai-community/gpt2 config.json (n_inner null) with HF's defaults", () => {
    // config.json as published on the hub for gpt2 (small).
    const hubGpt2 = {
      activation_function: "gelu_new",
      architectures: ["GPT2LMHeadModel"],
      attn_pdrop: 0.1,
      bos_token_id: 50256,
      embd_pdrop: 0.1,
      eos_token_id: 50256,
      initializer_range: 0.02,
      layer_norm_epsilon: 1e-5,
      model_type: "gpt2",
      n_ctx: 1024,
      n_embd: 768,
      n_head: 12,
      n_inner: null,
      n_layer: 12,
      n_positions: 1024,
      resid_pdrop: 0.1,
      summary_activation: null,
      summary_first_dropout: 0.1,
      summary_proj_to_labels: true,
      summary_type: "cls_index",
      summary_use_proj: true,
      task_specific_params: { "text-generation": { do_sample: true, max_length: 50 } },
      vocab_size: 50257,
    };
    const config = parseGpt2Config(hubGpt2);
    expect(config.nInner).toBe(3072);
    expect(config.nLayer).toBe(12);
    expect(config.nPositions).toBe(1024);
  });

  it("applies transformers' GPT2Config defaults to missing fields", () => {
    const config = parseGpt2Config({ model_type: "gpt2" });
    expect(config).toMatchObject({
      nLayer: 12,
      nHead: 12,
      nEmbd: 768,
      nInner: 3072,
      nPositions: 1024,
      vocabSize: 50257,
      layerNormEpsilon: 1e-5,
      activationFunction: "gelu_new",
      bosTokenId: 50256,
      eosTokenId: 50256,
    });
  });

  it("accepts GPT-2 architectures without model_type, and HF's generic field names", () => {
    const config = parseGpt2Config({
      architectures: ["GPT2Model"],
      hidden_size: 32,
      num_attention_heads: 2,
      num_hidden_layers: 3,
    });
    expect(config).toMatchObject({ nEmbd: 32, nHead: 2, nLayer: 3, nInner: 128 });
  });

  it("maps activation names", () => {
    const act = (activation_function: string) =>
      parseGpt2Config({ model_type: "gpt2", activation_function }).activationFunction;
    expect(act("gelu_pytorch_tanh")).toBe("gelu_new");
    expect(act("gelu_fast")).toBe("gelu_new");
    expect(act("gelu")).toBe("gelu");
    expect(act("relu")).toBe("relu");
    expect(() => act("silu")).toThrow(ModelConfigError);
    expect(() => act("silu")).toThrow(/activation_function "silu" is not supported; supported: gelu_new/);
  });

  it("refuses other architectures, naming them", () => {
    expect(() => parseGpt2Config({ model_type: "llama", architectures: ["LlamaForCausalLM"] })).toThrow(
      UnsupportedModelError,
    );
    expect(() => parseGpt2Config({ model_type: "llama" })).toThrow(/model_type "llama" is not supported/);
    expect(() => parseGpt2Config({ architectures: ["MistralForCausalLM"] })).toThrow(
      /MistralForCausalLM.*only GPT-2/,
    );
    expect(() => parseGpt2Config({})).toThrow(/no model_type or architectures/);
  });

  it("rejects invalid fields with the field name", () => {
    const bad = (fields: Record<string, unknown>) => () =>
      parseGpt2Config({ model_type: "gpt2", ...fields }, { name: "x/config.json" });
    expect(bad({ n_layer: "12" })).toThrow(/x\/config\.json: n_layer must be a positive integer, got "12"/);
    expect(bad({ n_embd: 0 })).toThrow(/n_embd must be a positive integer/);
    expect(bad({ n_inner: 1.5 })).toThrow(/n_inner must be a positive integer/);
    expect(bad({ n_embd: 100, n_head: 12 })).toThrow(/n_embd 100 is not divisible by n_head 12/);
    expect(bad({ layer_norm_epsilon: -1 })).toThrow(/layer_norm_epsilon must be a positive number/);
    expect(bad({ bos_token_id: "x" })).toThrow(/bos_token_id must be a token id or null/);
    expect(bad({ scale_attn_weights: "yes" })).toThrow(/scale_attn_weights must be true or false/);
    expect(() => parseGpt2Config([1])).toThrow(/expected a JSON object/);
    expect(bad({ n_layer: -1 })).toThrow(ModelConfigError);
  });

  it("keeps explicit null token ids", () => {
    expect(parseGpt2Config({ model_type: "gpt2", bos_token_id: null }).bosTokenId).toBeNull();
  });
});
