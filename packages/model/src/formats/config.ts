/** GPT-2 hyper-parameters from a Hugging Face `config.json` (defaults as in transformers' GPT2Config). */

import { ModelConfigError, UnsupportedModelError } from "./errors.js";

/**
 * MLP activation. "gelu_new" is the tanh approximation 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))); HF's
 * "gelu_pytorch_tanh" and "gelu_fast" are the same formula and map to it. "gelu" is the exact erf form.
 */
export type Gpt2Activation = "gelu_new" | "gelu" | "relu";

export interface Gpt2Config {
  nLayer: number;
  nHead: number;
  nEmbd: number;
  /** MLP hidden width (`n_inner`, or 4·n_embd when null/absent). */
  nInner: number;
  /** Context length (number of learned positions). */
  nPositions: number;
  vocabSize: number;
  layerNormEpsilon: number;
  activationFunction: Gpt2Activation;
  /** The raw `activation_function` string from config.json. */
  activationFunctionName: string;
  bosTokenId: number | null;
  eosTokenId: number | null;
  /** Scale attention logits by 1/√head_dim (HF default true). */
  scaleAttnWeights: boolean;
  /** Additionally divide attention logits by (layer index + 1) (HF default false). */
  scaleAttnByInverseLayerIdx: boolean;
  /** Unembedding is wte (HF default true); when false the weights carry `lm_head.weight`. */
  tieWordEmbeddings: boolean;
}

const GPT2_ARCHITECTURES = new Set(["GPT2LMHeadModel", "GPT2Model", "GPT2DoubleHeadsModel"]);

const ACTIVATIONS: Readonly<Record<string, Gpt2Activation>> = {
  gelu_new: "gelu_new",
  gelu_pytorch_tanh: "gelu_new",
  gelu_fast: "gelu_new",
  gelu: "gelu",
  relu: "relu",
};

/** HF GPT2Config accepts these generic names too (its `attribute_map`). */
const ALIASES: Readonly<Record<string, string>> = {
  n_embd: "hidden_size",
  n_positions: "max_position_embeddings",
  n_head: "num_attention_heads",
  n_layer: "num_hidden_layers",
};

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function parseGpt2Config(json: unknown, options: { name?: string } = {}): Gpt2Config {
  const source = options.name ?? "config.json";
  if (!isRecord(json)) throw new ModelConfigError(`${source}: expected a JSON object`);

  const modelType = json.model_type;
  const architectures = Array.isArray(json.architectures) ? json.architectures : [];
  if (modelType !== undefined && modelType !== "gpt2") {
    throw new UnsupportedModelError(
      `${source}: model_type "${String(modelType)}" is not supported; only GPT-2 models (model_type "gpt2") are`,
    );
  }
  if (
    modelType === undefined &&
    !architectures.some((a) => typeof a === "string" && GPT2_ARCHITECTURES.has(a))
  ) {
    const found =
      architectures.length > 0
        ? `architectures ${JSON.stringify(architectures)}`
        : "no model_type or architectures";
    throw new UnsupportedModelError(`${source}: ${found}; only GPT-2 models are supported`);
  }

  const lookup = (key: string): unknown => {
    if (json[key] !== undefined) return json[key];
    const alias = ALIASES[key];
    return alias === undefined ? undefined : json[alias];
  };
  const positiveInt = (key: string, fallback: number): number => {
    const value = lookup(key) ?? fallback;
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value <= 0) {
      throw new ModelConfigError(
        `${source}: ${key} must be a positive integer, got ${JSON.stringify(value)}`,
      );
    }
    return value;
  };
  const boolean = (key: string, fallback: boolean): boolean => {
    const value = json[key] ?? fallback;
    if (typeof value !== "boolean") {
      throw new ModelConfigError(`${source}: ${key} must be true or false, got ${JSON.stringify(value)}`);
    }
    return value;
  };
  const tokenId = (key: string, fallback: number): number | null => {
    const value = json[key] === undefined ? fallback : json[key];
    if (value === null) return null;
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
      throw new ModelConfigError(
        `${source}: ${key} must be a token id or null, got ${JSON.stringify(value)}`,
      );
    }
    return value;
  };

  const nLayer = positiveInt("n_layer", 12);
  const nHead = positiveInt("n_head", 12);
  const nEmbd = positiveInt("n_embd", 768);
  const nInner = json.n_inner === null || json.n_inner === undefined ? 4 * nEmbd : positiveInt("n_inner", 0);
  const nPositions = positiveInt("n_positions", 1024);
  const vocabSize = positiveInt("vocab_size", 50257);
  if (nEmbd % nHead !== 0) {
    throw new ModelConfigError(`${source}: n_embd ${nEmbd} is not divisible by n_head ${nHead}`);
  }

  const epsilon = json.layer_norm_epsilon ?? 1e-5;
  if (typeof epsilon !== "number" || !Number.isFinite(epsilon) || epsilon <= 0) {
    throw new ModelConfigError(
      `${source}: layer_norm_epsilon must be a positive number, got ${JSON.stringify(epsilon)}`,
    );
  }

  const activationName = json.activation_function ?? "gelu_new";
  if (typeof activationName !== "string" || !Object.hasOwn(ACTIVATIONS, activationName)) {
    throw new ModelConfigError(
      `${source}: activation_function ${JSON.stringify(activationName)} is not supported; ` +
        `supported: ${Object.keys(ACTIVATIONS).join(", ")}`,
    );
  }

  return {
    nLayer,
    nHead,
    nEmbd,
    nInner,
    nPositions,
    vocabSize,
    layerNormEpsilon: epsilon,
    activationFunction: ACTIVATIONS[activationName],
    activationFunctionName: activationName,
    bosTokenId: tokenId("bos_token_id", 50256),
    eosTokenId: tokenId("eos_token_id", 50256),
    scaleAttnWeights: boolean("scale_attn_weights", true),
    scaleAttnByInverseLayerIdx: boolean("scale_attn_by_inverse_layer_idx", false),
    tieWordEmbeddings: boolean("tie_word_embeddings", true),
  };
}
