/**
 * TDB activation-server wire protocol (tdb-spec §3.2) as zod schemas.
 *
 * Field names are the camelCase aliases TDB's pydantic models put on the wire. Request-side schemas
 * also accept the snake_case field names (pydantic's `allow_population_by_field_name`), ignore unknown
 * keys (pydantic v1 default) and reject inputs on which TDB would crash (non-finite numbers, negative or
 * fractional indices, ablations of non-ablatable nodes, …) with a message naming the field.
 * Response-side schemas are strict: every field TDB emits must be present, with nothing extra.
 *
 * All schemas stay JSON-schema representable (`z.toJSONSchema(schema, { io: "input" })`).
 */
import { z } from "zod";

// ---------------------------------------------------------------------------------------------
// snake_case aliases

/** pydantic's `to_camel`: `top_and_bottom_k` → `topAndBottomK`. */
export function snakeToCamel(key: string): string {
  return key
    .split("_")
    .map((word, i) => (i === 0 ? word : word.charAt(0).toUpperCase() + word.slice(1).toLowerCase()))
    .join("");
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Renames the snake_case keys whose camelCase form is a field of the schema. Only known fields are
 * renamed, so dictionary keys such as group ids or spec names are never touched. The camelCase key wins
 * when both are given (pydantic reads the alias first).
 */
function aliasKeys(knownKeys: ReadonlySet<string>): (value: unknown) => unknown {
  return (value) => {
    if (!isPlainObject(value)) return value;
    const out: Record<string, unknown> = {};
    for (const [key, entry] of Object.entries(value)) {
      if (knownKeys.has(key)) {
        out[key] = entry;
        continue;
      }
      const camel = snakeToCamel(key);
      if (camel !== key && knownKeys.has(camel)) {
        if (!(camel in value)) out[camel] = entry;
      } else {
        out[key] = entry;
      }
    }
    return out;
  };
}

/** A request-side object: snake_case aliases accepted, unknown keys dropped. */
function wireInput<Shape extends z.ZodRawShape>(shape: Shape) {
  return z.preprocess(aliasKeys(new Set(Object.keys(shape))), z.object(shape));
}

// ---------------------------------------------------------------------------------------------
// scalars

const finite = (what: string) =>
  z.number({
    error: (issue) => (issue.input === undefined ? `${what} is required` : `${what} must be a finite number`),
  });
const index = (what: string) =>
  z
    .int({ error: `${what} must be an integer` })
    .nonnegative({ error: `${what} must be a non-negative integer` });
const positiveInt = (what: string) =>
  z.int({ error: `${what} must be an integer` }).positive({ error: `${what} must be at least 1` });
/** `LayerIndex` = int | None; null means "no layer" (embedding, ln_f, logits). */
const layerIndexInput = index("layerIndex").nullable().default(null);
/** A token string (TDB resolves each to exactly one GPT-2 token server-side). */
const tokenString = z.string({ error: "token strings must be strings" });
const promptString = z
  .string({ error: "prompt must be a string" })
  .min(1, { error: "prompt must not be empty (TDB cannot run an empty token sequence)" });

// ---------------------------------------------------------------------------------------------
// enums

/** All 106 members of TDB's `DerivedScalarType` (value = lowercase name). */
export const DERIVED_SCALAR_TYPES = [
  "logits",
  "resid_post_embedding",
  "mlp_pre_act",
  "mlp_post_act",
  "resid_delta_mlp",
  "resid_post_mlp",
  "attn_query",
  "attn_key",
  "attn_value",
  "attn_qk_logits",
  "attn_qk_probs",
  "attn_weighted_sum_of_values",
  "resid_delta_attn",
  "resid_post_attn",
  "resid_final_layer_norm_scale",
  "attn_input_layer_norm_scale",
  "mlp_input_layer_norm_scale",
  "online_autoencoder_latent",
  "attn_write_norm",
  "flattened_attn_post_softmax",
  "attn_act_times_grad",
  "resid_delta_mlp_from_mlp_post_act",
  "mlp_write_norm",
  "mlp_act_times_grad",
  "autoencoder_latent",
  "autoencoder_write_norm",
  "mlp_write_to_final_residual_grad",
  "attn_write_norm_per_sequence_token",
  "attn_write_to_final_residual_grad_per_sequence_token",
  "attn_act_times_grad_per_sequence_token",
  "resid_post_embedding_norm",
  "resid_post_mlp_norm",
  "mlp_layer_write_norm",
  "resid_post_attn_norm",
  "attn_layer_write_norm",
  "resid_post_embedding_proj_to_final_residual_grad",
  "resid_post_mlp_proj_to_final_residual_grad",
  "mlp_layer_write_to_final_residual_grad",
  "resid_post_attn_proj_to_final_residual_grad",
  "attn_layer_write_to_final_residual_grad",
  "unflattened_attn_act_times_grad",
  "unflattened_attn_write_norm",
  "unflattened_attn_write_to_final_residual_grad",
  "attn_write_to_final_residual_grad",
  "online_autoencoder_act_times_grad",
  "online_autoencoder_write_norm",
  "online_autoencoder_write_to_final_residual_grad",
  "online_mlp_autoencoder_error",
  "online_residual_mlp_autoencoder_error",
  "online_residual_attention_autoencoder_error",
  "online_mlp_autoencoder_error_act_times_grad",
  "online_mlp_autoencoder_error_write_norm",
  "online_mlp_autoencoder_error_write_to_final_residual_grad",
  "attn_write",
  "attn_write_sum_heads",
  "mlp_write",
  "online_autoencoder_write",
  "attn_weighted_value",
  "previous_layer_resid_post_mlp",
  "mlp_write_to_final_activation_residual_grad",
  "unflattened_attn_write_to_final_activation_residual_grad",
  "online_autoencoder_write_to_final_activation_residual_grad",
  "resid_post_embedding_proj_to_final_activation_residual_grad",
  "autoencoder_latent_grad_wrt_residual_input",
  "autoencoder_latent_grad_wrt_mlp_post_act_input",
  "attn_write_to_latent",
  "attn_write_to_latent_summed_over_heads",
  "flattened_attn_write_to_latent_summed_over_heads",
  "flattened_attn_write_to_latent_summed_over_heads_batched",
  "attn_write_to_latent_per_sequence_token",
  "attn_write_to_latent_per_sequence_token_batched",
  "token_attribution",
  "single_node_write",
  "grad_of_single_subnode_attribution",
  "attn_out_edge_attribution",
  "mlp_out_edge_attribution",
  "online_autoencoder_out_edge_attribution",
  "attn_query_in_edge_attribution",
  "attn_key_in_edge_attribution",
  "attn_value_in_edge_attribution",
  "mlp_in_edge_attribution",
  "online_autoencoder_in_edge_attribution",
  "token_out_edge_attribution",
  "single_node_write_to_final_residual_grad",
  "vocab_token_write_to_input_direction",
  "always_one",
  "attn_query_in_edge_activation",
  "attn_key_in_edge_activation",
  "mlp_in_edge_activation",
  "online_autoencoder_in_edge_activation",
  "mlp_autoencoder_latent",
  "mlp_autoencoder_write_norm",
  "online_mlp_autoencoder_latent",
  "online_mlp_autoencoder_write",
  "online_mlp_autoencoder_write_norm",
  "online_mlp_autoencoder_act_times_grad",
  "online_mlp_autoencoder_write_to_final_residual_grad",
  "online_mlp_autoencoder_write_to_final_activation_residual_grad",
  "attention_autoencoder_latent",
  "attention_autoencoder_write_norm",
  "online_attention_autoencoder_latent",
  "online_attention_autoencoder_write",
  "online_attention_autoencoder_write_norm",
  "online_attention_autoencoder_act_times_grad",
  "online_attention_autoencoder_write_to_final_residual_grad",
  "online_attention_autoencoder_write_to_final_activation_residual_grad",
] as const;
export const DerivedScalarTypeSchema = z.enum(DERIVED_SCALAR_TYPES);
export type DerivedScalarType = z.infer<typeof DerivedScalarTypeSchema>;

export const NODE_TYPES = [
  "attention_head",
  "qk_channel",
  "v_channel",
  "mlp_neuron",
  "autoencoder_latent",
  "mlp_autoencoder_latent",
  "attention_autoencoder_latent",
  "autoencoder_latent_by_token_pair",
  "layer",
  "residual_stream_channel",
  "vocab_token",
] as const;
export const NodeTypeSchema = z.enum(NODE_TYPES);
export type NodeType = z.infer<typeof NodeTypeSchema>;

export const ACTIVATION_LOCATION_TYPES = [
  "resid.post_emb",
  "resid.delta_attn",
  "resid.post_attn",
  "resid.delta_mlp",
  "resid.post_mlp",
  "resid.post_mlp_ln",
  "resid.post_attn_ln",
  "resid.post_ln_f",
  "mlp_ln.scale",
  "attn_ln.scale",
  "resid.ln_f.scale",
  "attn.q",
  "attn.k",
  "attn.v",
  "attn.qk_logits",
  "attn.qk_probs",
  "attn.v_out",
  "mlp.pre_act",
  "mlp.post_act",
  "logits",
  "online_autoencoder_latent",
  "online_mlp_autoencoder_latent",
  "online_attention_autoencoder_latent",
  "online_mlp_autoencoder_error",
  "online_residual_mlp_autoencoder_error",
  "online_residual_attention_autoencoder_error",
] as const;
export const ActivationLocationTypeSchema = z.enum(ACTIVATION_LOCATION_TYPES);
export type ActivationLocationType = z.infer<typeof ActivationLocationTypeSchema>;

export const PassTypeSchema = z.enum(["forward", "backward"]);
export type PassType = z.infer<typeof PassTypeSchema>;

export const GROUP_IDS = [
  "act_times_grad",
  "activation",
  "direct_write_to_grad",
  "direction_write",
  "logits",
  "mlp_layer_write",
  "singleton",
  "token_write",
  "token_read",
  "write_norm",
  "token_pair_attribution",
] as const;
export const GroupIdSchema = z.enum(GROUP_IDS);
export type GroupId = z.infer<typeof GroupIdSchema>;

export const DIMENSIONS = [
  "sequence_tokens",
  "attended_to_sequence_tokens",
  "max_context_length",
  "residual_stream_channels",
  "vocab_size",
  "attn_heads",
  "query_and_key_channels",
  "value_channels",
  "mlp_acts",
  "layers",
  "singleton",
  "autoencoder_latents",
  "autoencoder_latents_by_token_pair",
] as const;
export const DimensionSchema = z.enum(DIMENSIONS);
export type Dimension = z.infer<typeof DimensionSchema>;

export const LossFnNameSchema = z.enum(["logit_diff", "logit_minus_mean", "probs", "zero"]);
export type LossFnName = z.infer<typeof LossFnNameSchema>;

export const SpecTypeSchema = z.enum([
  "activations_request_spec",
  "derived_scalars_request_spec",
  "derived_attention_scalars_request_spec",
  "multiple_top_k_derived_scalars_request_spec",
  "scored_tokens_request_spec",
  "tdb_request_spec",
  "token_pair_attribution_request_spec",
]);
export type SpecType = z.infer<typeof SpecTypeSchema>;

export const ProcessingResponseDataTypeSchema = z.enum([
  "derived_scalars_response_data",
  "derived_attention_scalars_response_data",
  "multiple_top_k_derived_scalars_response_data",
  "scored_tokens_response_data",
  "token_pair_attribution_response_data",
]);
export type ProcessingResponseDataType = z.infer<typeof ProcessingResponseDataTypeSchema>;

export const TensorTypeSchema = z.enum(["tensor_0d", "tensor_1d", "tensor_2d", "tensor_3d"]);
export type TensorType = z.infer<typeof TensorTypeSchema>;

export const TokenScoringTypeSchema = z.enum([
  "upvoted_output_tokens",
  "input_tokens_that_upvote_mlp",
  "input_tokens_that_upvote_attn_q",
  "input_tokens_that_upvote_attn_k",
]);
export type TokenScoringType = z.infer<typeof TokenScoringTypeSchema>;

export const ComponentTypeForMlpSchema = z.enum(["neuron", "autoencoder_latent"]);
export type ComponentTypeForMlp = z.infer<typeof ComponentTypeForMlpSchema>;
export const ComponentTypeForAttentionSchema = z.enum(["attention_head", "autoencoder_latent"]);
export type ComponentTypeForAttention = z.infer<typeof ComponentTypeForAttentionSchema>;

export const AttentionTraceTypeSchema = z.enum(["Q", "K", "QK", "V"]);
export type AttentionTraceType = z.infer<typeof AttentionTraceTypeSchema>;
export const PreOrPostActSchema = z.enum(["pre", "post"]);
export type PreOrPostAct = z.infer<typeof PreOrPostActSchema>;

// ---------------------------------------------------------------------------------------------
// indices, ablations, traces (request side)

/** Node types TDB can zero-ablate (`tdb_conversions.node_ablation_to_ablation_spec`). */
export const ABLATABLE_NODE_TYPES: readonly NodeType[] = [
  "attention_head",
  "mlp_neuron",
  "autoencoder_latent",
  "mlp_autoencoder_latent",
  "attention_autoencoder_latent",
];
/** Node types TDB can trace from, with the number of tensor indices each needs. */
export const TRACEABLE_NODE_TENSOR_RANK: Readonly<Partial<Record<NodeType, number>>> = {
  attention_head: 3,
  mlp_neuron: 2,
  autoencoder_latent: 2,
  mlp_autoencoder_latent: 2,
  attention_autoencoder_latent: 2,
};

export const MirroredActivationIndexSchema = wireInput({
  activationLocationType: ActivationLocationTypeSchema,
  /** One entry per dimension of the activation (after batch); "All" = a whole slice. */
  tensorIndices: z.array(z.union([index("tensorIndices entries"), z.literal("All")]), {
    error: 'tensorIndices must be an array of non-negative integers or "All"',
  }),
  layerIndex: layerIndexInput,
  passType: PassTypeSchema,
});
export type MirroredActivationIndex = z.infer<typeof MirroredActivationIndexSchema>;

/** A node index as a client sends it (null = every position along that dimension). */
export const MirroredNodeIndexSchema = wireInput({
  nodeType: NodeTypeSchema,
  tensorIndices: z.array(index("tensorIndices entries").nullable(), {
    error: "tensorIndices must be an array of non-negative integers or nulls",
  }),
  layerIndex: layerIndexInput,
  passType: PassTypeSchema,
});
export type MirroredNodeIndex = z.infer<typeof MirroredNodeIndexSchema>;

export const AblationSpecSchema = wireInput({
  index: MirroredActivationIndexSchema,
  value: finite("value"),
});
export type AblationSpec = z.infer<typeof AblationSpecSchema>;

export const NodeAblationSchema = wireInput({
  nodeIndex: MirroredNodeIndexSchema,
  value: finite("value"),
}).superRefine((ablation, ctx) => {
  const { nodeType, tensorIndices } = ablation.nodeIndex;
  if (!ABLATABLE_NODE_TYPES.includes(nodeType)) {
    ctx.addIssue({
      code: "custom",
      path: ["nodeIndex", "nodeType"],
      message: `cannot ablate a ${nodeType} node; ablatable node types: ${ABLATABLE_NODE_TYPES.join(", ")}`,
    });
    return;
  }
  const first = tensorIndices[0];
  const last = tensorIndices[tensorIndices.length - 1];
  if (first === undefined || first === null || last === undefined || last === null) {
    ctx.addIssue({
      code: "custom",
      path: ["nodeIndex", "tensorIndices"],
      message: "an ablated node needs an integer token index (first) and component index (last)",
    });
  }
});
export type NodeAblation = z.infer<typeof NodeAblationSchema>;

interface TraceTarget {
  nodeIndex: MirroredNodeIndex;
  attentionTraceType?: AttentionTraceType | null | undefined;
  downstreamTraceConfig?: MirroredTraceConfig | null | undefined;
}

/** The checks of TDB's `TraceConfig.__post_init__` and the reconstituters, as messages. */
function checkTraceTarget(target: TraceTarget, ctx: z.RefinementCtx): void {
  const { nodeType, tensorIndices, layerIndex } = target.nodeIndex;
  const rank = TRACEABLE_NODE_TENSOR_RANK[nodeType];
  if (rank === undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["nodeIndex", "nodeType"],
      message: `cannot trace from a ${nodeType} node; traceable node types: ${Object.keys(TRACEABLE_NODE_TENSOR_RANK).join(", ")}`,
    });
    return;
  }
  if (tensorIndices.length !== rank || tensorIndices.some((entry) => entry === null)) {
    ctx.addIssue({
      code: "custom",
      path: ["nodeIndex", "tensorIndices"],
      message: `a traced ${nodeType} node needs exactly ${rank} integer tensorIndices`,
    });
  }
  if (layerIndex === null) {
    ctx.addIssue({
      code: "custom",
      path: ["nodeIndex", "layerIndex"],
      message: "a traced node needs a layerIndex",
    });
  }
  const traceType = target.attentionTraceType ?? null;
  if (nodeType === "attention_head" && traceType === null) {
    ctx.addIssue({
      code: "custom",
      path: ["attentionTraceType"],
      message: 'tracing an attention head needs attentionTraceType "Q", "K", "QK" or "V"',
    });
  }
  if (nodeType !== "attention_head" && traceType !== null) {
    ctx.addIssue({
      code: "custom",
      path: ["attentionTraceType"],
      message: "attentionTraceType applies only to attention_head nodes",
    });
  }
  const downstream = target.downstreamTraceConfig ?? null;
  if (downstream !== null) {
    if (traceType !== "V") {
      ctx.addIssue({
        code: "custom",
        path: ["downstreamTraceConfig"],
        message: 'a downstream node can only be given when tracing attention through "V"',
      });
    } else if (downstream.attentionTraceType === "V") {
      ctx.addIssue({
        code: "custom",
        path: ["downstreamTraceConfig", "attentionTraceType"],
        message: 'the downstream node of a "V" trace cannot itself be traced through "V"',
      });
    }
  }
}

export interface MirroredTraceConfig {
  nodeIndex: MirroredNodeIndex;
  preOrPostAct: PreOrPostAct;
  detachLayerNormScale: boolean;
  attentionTraceType?: AttentionTraceType | null | undefined;
  downstreamTraceConfig?: MirroredTraceConfig | null | undefined;
}

export const MirroredTraceConfigSchema: z.ZodType<MirroredTraceConfig> = wireInput({
  nodeIndex: MirroredNodeIndexSchema,
  preOrPostAct: PreOrPostActSchema,
  detachLayerNormScale: z.boolean({ error: "detachLayerNormScale must be a boolean" }),
  attentionTraceType: AttentionTraceTypeSchema.nullish(),
  get downstreamTraceConfig() {
    return MirroredTraceConfigSchema.nullish();
  },
}).superRefine(checkTraceTarget);

export const NodeToTraceSchema = wireInput({
  nodeIndex: MirroredNodeIndexSchema,
  attentionTraceType: AttentionTraceTypeSchema.nullish(),
  downstreamTraceConfig: MirroredTraceConfigSchema.nullish(),
}).superRefine(checkTraceTarget);
export type NodeToTrace = z.infer<typeof NodeToTraceSchema>;

export const LossFnConfigSchema = wireInput({
  name: LossFnNameSchema,
  targetTokens: z.array(tokenString).nullish(),
  distractorTokens: z.array(tokenString).nullish(),
}).superRefine((config, ctx) => {
  if (config.name === "zero") return;
  if (!config.targetTokens || config.targetTokens.length === 0) {
    ctx.addIssue({
      code: "custom",
      path: ["targetTokens"],
      message: `loss ${config.name} needs targetTokens`,
    });
  }
  if (config.name !== "logit_diff" && config.distractorTokens != null) {
    ctx.addIssue({
      code: "custom",
      path: ["distractorTokens"],
      message: `loss ${config.name} takes no distractorTokens`,
    });
  }
});
export type LossFnConfig = z.infer<typeof LossFnConfigSchema>;

export const InferenceRequestSpecSchema = wireInput({
  prompt: promptString,
  ablationSpecs: z.array(AblationSpecSchema).nullish(),
  /** Mutually exclusive with traceConfig, except for a "V" trace without a downstream node. */
  lossFnConfig: LossFnConfigSchema.nullish(),
  traceConfig: MirroredTraceConfigSchema.nullish(),
  activationIndexForWithinLayerGrad: MirroredActivationIndexSchema.nullish(),
}).superRefine((spec, ctx) => {
  const trace = spec.traceConfig;
  if (trace && trace.attentionTraceType === "V" && !trace.downstreamTraceConfig && !spec.lossFnConfig) {
    ctx.addIssue({
      code: "custom",
      path: ["lossFnConfig"],
      message: 'a "V" trace without a downstream node needs a lossFnConfig',
    });
  }
});
export type InferenceRequestSpec = z.infer<typeof InferenceRequestSpecSchema>;

export const InferenceRequestSchema = wireInput({ inferenceRequestSpec: InferenceRequestSpecSchema });
export type InferenceRequest = z.infer<typeof InferenceRequestSchema>;

// ---------------------------------------------------------------------------------------------
// read / explainer requests

export const NodeIdAndDatasetsSchema = wireInput({
  dst: DerivedScalarTypeSchema,
  layerIndex: index("layerIndex"),
  activationIndex: index("activationIndex"),
  /** Short names (e.g. "gpt2-small") or https:// paths, tried in order. */
  datasets: z.array(z.string(), { error: "datasets must be an array of strings" }),
});
export type NodeIdAndDatasets = z.infer<typeof NodeIdAndDatasetsSchema>;

export const ScoreRequestSchema = wireInput({
  dst: DerivedScalarTypeSchema,
  layerIndex: index("layerIndex"),
  activationIndex: index("activationIndex"),
  datasets: z.array(z.string(), { error: "datasets must be an array of strings" }),
  explanation: z.string({ error: "explanation must be a string" }),
  maxSequences: positiveInt("maxSequences").nullish(),
});
export type ScoreRequest = z.infer<typeof ScoreRequestSchema>;

export const ExistingExplanationsRequestSchema = wireInput({
  dst: DerivedScalarTypeSchema,
  layerIndex: index("layerIndex"),
  activationIndex: index("activationIndex"),
  explanationDatasets: z.array(z.string(), { error: "explanationDatasets must be an array of strings" }),
  neuronDataset: z.string().nullish(),
}).superRefine((request, ctx) => {
  const hasExplanationDatasets = request.explanationDatasets.length > 0;
  const hasNeuronDataset = request.neuronDataset != null;
  if (hasExplanationDatasets === hasNeuronDataset) {
    ctx.addIssue({
      code: "custom",
      path: ["explanationDatasets"],
      message: "Exactly one of explanation_datasets and neuron_dataset must be specified.",
    });
  }
});
export type ExistingExplanationsRequest = z.infer<typeof ExistingExplanationsRequestSchema>;

// ---------------------------------------------------------------------------------------------
// processing request specs

const derivedScalarsRequestSpecShape = {
  specType: z.literal("derived_scalars_request_spec").default("derived_scalars_request_spec"),
  dst: DerivedScalarTypeSchema,
  layerIndex: layerIndexInput,
  activationIndex: index("activationIndex"),
  normalizeActivationsUsingNeuronRecord: NodeIdAndDatasetsSchema.nullish(),
  passType: PassTypeSchema.default("forward"),
  numTopTokens: positiveInt("numTopTokens").nullish(),
};
const derivedAttentionScalarsRequestSpecShape = {
  specType: z
    .literal("derived_attention_scalars_request_spec")
    .default("derived_attention_scalars_request_spec"),
  /** TDB implements only unflattened_attn_write_norm and attn_write_to_latent_summed_over_heads here. */
  dst: DerivedScalarTypeSchema,
  layerIndex: layerIndexInput,
  activationIndex: index("activationIndex"),
  normalizeActivationsUsingNeuronRecord: NodeIdAndDatasetsSchema.nullish(),
};
const multipleTopKDerivedScalarsRequestSpecShape = {
  specType: z
    .literal("multiple_top_k_derived_scalars_request_spec")
    .default("multiple_top_k_derived_scalars_request_spec"),
  dstListByGroupId: z.partialRecord(GroupIdSchema, z.array(DerivedScalarTypeSchema).min(1)),
  /** Python-style: negative counts from the end (TDB itself uses -1 for "last token"). */
  tokenIndex: z.int({ error: "tokenIndex must be an integer or null" }).nullable().default(null),
  /** null = every element. */
  topAndBottomK: positiveInt("topAndBottomK").nullish(),
  passType: PassTypeSchema.default("forward"),
  dimensionsToKeepForIntermediateSum: z
    .array(DimensionSchema)
    .default(["sequence_tokens", "attended_to_sequence_tokens"]),
};
const scoredTokensRequestSpecShape = {
  specType: z.literal("scored_tokens_request_spec").default("scored_tokens_request_spec"),
  tokenScoringType: TokenScoringTypeSchema,
  /** 10 means 10 top and 10 bottom tokens. */
  numTokens: positiveInt("numTokens"),
  dependsOnSpecName: z.string({ error: "dependsOnSpecName must be a string" }),
};
const tokenPairAttributionRequestSpecShape = {
  specType: z.literal("token_pair_attribution_request_spec").default("token_pair_attribution_request_spec"),
  numTokensAttendedTo: positiveInt("numTokensAttendedTo"),
  dependsOnSpecName: z.string({ error: "dependsOnSpecName must be a string" }),
};

export const DerivedScalarsRequestSpecSchema = wireInput(derivedScalarsRequestSpecShape);
export type DerivedScalarsRequestSpec = z.infer<typeof DerivedScalarsRequestSpecSchema>;
export const DerivedAttentionScalarsRequestSpecSchema = wireInput(derivedAttentionScalarsRequestSpecShape);
export type DerivedAttentionScalarsRequestSpec = z.infer<typeof DerivedAttentionScalarsRequestSpecSchema>;
export const MultipleTopKDerivedScalarsRequestSpecSchema = wireInput(
  multipleTopKDerivedScalarsRequestSpecShape,
);
export type MultipleTopKDerivedScalarsRequestSpec = z.infer<
  typeof MultipleTopKDerivedScalarsRequestSpecSchema
>;
export const ScoredTokensRequestSpecSchema = wireInput(scoredTokensRequestSpecShape);
export type ScoredTokensRequestSpec = z.infer<typeof ScoredTokensRequestSpecSchema>;
export const TokenPairAttributionRequestSpecSchema = wireInput(tokenPairAttributionRequestSpecShape);
export type TokenPairAttributionRequestSpec = z.infer<typeof TokenPairAttributionRequestSpecSchema>;

const processingSpecShapes = [
  multipleTopKDerivedScalarsRequestSpecShape,
  derivedScalarsRequestSpecShape,
  derivedAttentionScalarsRequestSpecShape,
  scoredTokensRequestSpecShape,
  tokenPairAttributionRequestSpecShape,
];
const processingSpecKeys = new Set(processingSpecShapes.flatMap((shape) => Object.keys(shape)));

/**
 * pydantic tries the spec classes in this order when `specType` is absent; the first whose required
 * fields are present wins (a spec with `dst` is always a derived-scalars spec).
 */
function inferSpecType(value: unknown): unknown {
  const aliased = aliasKeys(processingSpecKeys)(value);
  if (!isPlainObject(aliased) || aliased.specType !== undefined) return aliased;
  const specType =
    "dstListByGroupId" in aliased
      ? "multiple_top_k_derived_scalars_request_spec"
      : "dst" in aliased
        ? "derived_scalars_request_spec"
        : "tokenScoringType" in aliased
          ? "scored_tokens_request_spec"
          : "numTokensAttendedTo" in aliased
            ? "token_pair_attribution_request_spec"
            : undefined;
  return specType === undefined ? aliased : { ...aliased, specType };
}

export const ProcessingRequestSpecSchema = z.preprocess(
  inferSpecType,
  z.discriminatedUnion(
    "specType",
    [
      z.object(multipleTopKDerivedScalarsRequestSpecShape),
      z.object(derivedScalarsRequestSpecShape),
      z.object(derivedAttentionScalarsRequestSpecShape),
      z.object(scoredTokensRequestSpecShape),
      z.object(tokenPairAttributionRequestSpecShape),
    ],
    { error: "unknown specType (or no fields identifying a processing spec)" },
  ),
);
export type ProcessingRequestSpec = z.infer<typeof ProcessingRequestSpecSchema>;

export const InferenceSubRequestSchema = wireInput({
  inferenceRequestSpec: InferenceRequestSpecSchema,
  /** Processed in key order; scored-token and token-pair specs must follow the spec they depend on. */
  processingRequestSpecByName: z.record(z.string(), ProcessingRequestSpecSchema).default({}),
}).superRefine((request, ctx) => {
  const seenTopK = new Set<string>();
  for (const [name, spec] of Object.entries(request.processingRequestSpecByName)) {
    if (spec.specType === "multiple_top_k_derived_scalars_request_spec") seenTopK.add(name);
    if (
      (spec.specType === "scored_tokens_request_spec" ||
        spec.specType === "token_pair_attribution_request_spec") &&
      !seenTopK.has(spec.dependsOnSpecName)
    ) {
      ctx.addIssue({
        code: "custom",
        path: ["processingRequestSpecByName", name, "dependsOnSpecName"],
        message: `"${spec.dependsOnSpecName}" must name a multiple-top-k spec listed before "${name}"`,
      });
    }
  }
});
export type InferenceSubRequest = z.infer<typeof InferenceSubRequestSchema>;

export const BatchedRequestSchema = wireInput({
  inferenceSubRequests: z.array(InferenceSubRequestSchema, {
    error: "inferenceSubRequests must be an array",
  }),
});
export type BatchedRequest = z.infer<typeof BatchedRequestSchema>;

export const DerivedScalarsRequestSchema = wireInput({
  inferenceRequestSpec: InferenceRequestSpecSchema,
  derivedScalarsRequestSpec: DerivedScalarsRequestSpecSchema,
});
export type DerivedScalarsRequest = z.infer<typeof DerivedScalarsRequestSchema>;
export const DerivedAttentionScalarsRequestSchema = wireInput({
  inferenceRequestSpec: InferenceRequestSpecSchema,
  derivedAttentionScalarsRequestSpec: DerivedAttentionScalarsRequestSpecSchema,
});
export type DerivedAttentionScalarsRequest = z.infer<typeof DerivedAttentionScalarsRequestSchema>;
export const MultipleTopKDerivedScalarsRequestSchema = wireInput({
  inferenceRequestSpec: InferenceRequestSpecSchema,
  multipleTopKDerivedScalarsRequestSpec: MultipleTopKDerivedScalarsRequestSpecSchema,
});
export type MultipleTopKDerivedScalarsRequest = z.infer<typeof MultipleTopKDerivedScalarsRequestSchema>;
export const ScoredTokensRequestSchema = wireInput({
  inferenceRequestSpec: InferenceRequestSpecSchema,
  scoredTokensRequestSpec: ScoredTokensRequestSpecSchema,
});
export type ScoredTokensRequest = z.infer<typeof ScoredTokensRequestSchema>;
export const TokenPairAttributionRequestSchema = wireInput({
  inferenceRequestSpec: InferenceRequestSpecSchema,
  tokenPairAttributionRequestSpec: TokenPairAttributionRequestSpecSchema,
});
export type TokenPairAttributionRequest = z.infer<typeof TokenPairAttributionRequestSchema>;

// ---------------------------------------------------------------------------------------------
// TDB requests

export const TdbRequestSpecSchema = wireInput({
  specType: z.literal("tdb_request_spec").default("tdb_request_spec"),
  prompt: promptString,
  targetTokens: z.array(tokenString).min(1, { error: "targetTokens needs at least one token" }),
  /** May be empty: the direction of interest is then the mean target logit. */
  distractorTokens: z.array(tokenString),
  componentTypeForMlp: ComponentTypeForMlpSchema,
  componentTypeForAttention: ComponentTypeForAttentionSchema,
  topAndBottomKForNodeTable: positiveInt("topAndBottomKForNodeTable"),
  /** Sent by the UI, ignored by TDB's server. */
  hideEarlyLayersWhenAblating: z.boolean({ error: "hideEarlyLayersWhenAblating must be a boolean" }),
  nodeAblations: z.array(NodeAblationSchema).nullish(),
  upstreamNodeToTrace: NodeToTraceSchema.nullish(),
  /** Only with an upstream attention node traced through "V" (never sent by TDB's UI). */
  downstreamNodeToTrace: NodeToTraceSchema.nullish(),
}).superRefine((spec, ctx) => {
  if (spec.downstreamNodeToTrace) {
    if (!spec.upstreamNodeToTrace) {
      ctx.addIssue({
        code: "custom",
        path: ["downstreamNodeToTrace"],
        message: "downstreamNodeToTrace needs an upstreamNodeToTrace",
      });
    } else if (spec.upstreamNodeToTrace.attentionTraceType !== "V") {
      ctx.addIssue({
        code: "custom",
        path: ["downstreamNodeToTrace"],
        message: 'downstreamNodeToTrace needs an upstream attention node traced through "V"',
      });
    }
    if (spec.downstreamNodeToTrace.attentionTraceType === "V") {
      ctx.addIssue({
        code: "custom",
        path: ["downstreamNodeToTrace", "attentionTraceType"],
        message: 'the downstream node cannot itself be traced through "V"',
      });
    }
  }
});
export type TdbRequestSpec = z.infer<typeof TdbRequestSpecSchema>;

export const BatchedTdbRequestSchema = wireInput({
  subRequests: z.array(TdbRequestSpecSchema, { error: "subRequests must be an array" }),
});
export type BatchedTdbRequest = z.infer<typeof BatchedTdbRequestSchema>;

// ---------------------------------------------------------------------------------------------
// responses (strict: exactly the fields TDB emits)

const wireNumber = z.number();
const wireInt = z.int();

/** A node index as the server emits it; topOutputTokenLogits nodes carry token index -1 when not tracing. */
export const MirroredNodeIndexOutSchema = z.strictObject({
  nodeType: NodeTypeSchema,
  tensorIndices: z.array(wireInt.nullable()),
  layerIndex: wireInt.nullable(),
  passType: PassTypeSchema,
});
export type MirroredNodeIndexOut = z.infer<typeof MirroredNodeIndexOutSchema>;

/** Non-finite values are sent as -999 (`dst_helpers._float_tensor_to_list`). */
export const TensorNDSchema = z.discriminatedUnion("tensorType", [
  z.strictObject({ tensorType: z.literal("tensor_0d"), value: wireNumber }),
  z.strictObject({ tensorType: z.literal("tensor_1d"), value: z.array(wireNumber) }),
  z.strictObject({ tensorType: z.literal("tensor_2d"), value: z.array(z.array(wireNumber)) }),
  z.strictObject({ tensorType: z.literal("tensor_3d"), value: z.array(z.array(z.array(wireNumber))) }),
]);
export type TensorND = z.infer<typeof TensorNDSchema>;

export const TokenAndScalarSchema = z.strictObject({
  token: z.string(),
  scalar: wireNumber,
  normalizedScalar: wireNumber,
});
export type TokenAndScalar = z.infer<typeof TokenAndScalarSchema>;

/** `top` descending, `bottom` ascending; normalizedScalar = scalar / max(|top[0]|, |bottom[0]|). */
export const TopTokensSchema = z.strictObject({
  top: z.array(TokenAndScalarSchema),
  bottom: z.array(TokenAndScalarSchema),
});
export type TopTokens = z.infer<typeof TopTokensSchema>;

export const TopTokensAttendedToSchema = z.strictObject({
  tokenIndices: z.array(wireInt),
  attributions: z.array(wireNumber),
});
export type TopTokensAttendedTo = z.infer<typeof TopTokensAttendedToSchema>;

export const TokenAndAttentionScalarsSchema = z.strictObject({
  token: z.string(),
  /** Values for attending from this token to tokens 0..i. */
  scalars: z.array(wireNumber),
  normalizedScalars: z.array(wireNumber),
  totalScalarIn: wireNumber,
  normalizedTotalScalarIn: wireNumber,
  maxScalarIn: wireNumber,
  normalizedMaxScalarIn: wireNumber,
  totalScalarOut: wireNumber,
  normalizedTotalScalarOut: wireNumber,
  maxScalarOut: wireNumber,
  normalizedMaxScalarOut: wireNumber,
});
export type TokenAndAttentionScalars = z.infer<typeof TokenAndAttentionScalarsSchema>;

export const InferenceAndTokenDataSchema = z.strictObject({
  inferenceTime: wireNumber,
  memoryUsedBefore: wireNumber.nullable(),
  memoryUsedAfter: wireNumber.nullable(),
  log: z.string().nullable(),
  /** null when no loss was computed (traces other than "V") or when it was NaN. */
  loss: wireNumber.nullable(),
  /** The traced scalar when tracing, else null. */
  activationValueForBackwardPass: wireNumber.nullable(),
  tokensAsInts: z.array(wireInt),
  tokensAsStrings: z.array(z.string()),
});
export type InferenceAndTokenData = z.infer<typeof InferenceAndTokenDataSchema>;

export const InferenceResponseSchema = z.strictObject({ inferenceAndTokenData: InferenceAndTokenDataSchema });
export type InferenceResponse = z.infer<typeof InferenceResponseSchema>;

const sameLengthAsNodes = (
  data: { nodeIndices: unknown[] },
  lists: Array<[string, unknown[] | null]>,
  ctx: z.RefinementCtx,
) => {
  for (const [name, list] of lists) {
    if (list !== null && list.length !== data.nodeIndices.length) {
      ctx.addIssue({
        code: "custom",
        path: [name],
        message: `${name} has ${list.length} entries but nodeIndices has ${data.nodeIndices.length}`,
      });
    }
  }
};

const multipleTopKDerivedScalarsResponseDataShape = {
  responseDataType: z.literal("multiple_top_k_derived_scalars_response_data"),
  /** Parallel to nodeIndices, one list per group. */
  activationsByGroupId: z.partialRecord(GroupIdSchema, z.array(wireNumber)),
  nodeIndices: z.array(MirroredNodeIndexOutSchema),
  /** Parallel to nodeIndices; null unless some node is a vocab_token. */
  vocabTokenStringsForIndices: z.array(z.string().nullable()).nullable(),
  /** Sums over every element (not just the top k), keeping only the token dimensions. */
  intermediateSumActivationsByDstByGroupId: z.partialRecord(
    GroupIdSchema,
    z.partialRecord(DerivedScalarTypeSchema, TensorNDSchema),
  ),
};
const derivedScalarsResponseDataShape = {
  responseDataType: z.literal("derived_scalars_response_data"),
  activations: z.array(wireNumber),
  normalizedActivations: z.array(wireNumber).nullable(),
  nodeIndices: z.array(MirroredNodeIndexOutSchema),
  topTokens: TopTokensSchema.nullable(),
};
const derivedAttentionScalarsResponseDataShape = {
  responseDataType: z.literal("derived_attention_scalars_response_data"),
  tokenAndAttentionScalarsList: z.array(TokenAndAttentionScalarsSchema),
};
const scoredTokensResponseDataShape = {
  responseDataType: z.literal("scored_tokens_response_data"),
  nodeIndices: z.array(MirroredNodeIndexOutSchema),
  /** null where the scoring type does not apply to the node. */
  topTokensList: z.array(TopTokensSchema.nullable()),
};
const tokenPairAttributionResponseDataShape = {
  responseDataType: z.literal("token_pair_attribution_response_data"),
  nodeIndices: z.array(MirroredNodeIndexOutSchema),
  topTokensAttendedToList: z.array(TopTokensAttendedToSchema.nullable()),
};

function checkMultipleTopK(
  data: z.infer<z.ZodObject<typeof multipleTopKDerivedScalarsResponseDataShape>>,
  ctx: z.RefinementCtx,
) {
  sameLengthAsNodes(
    data,
    [
      ...Object.entries(data.activationsByGroupId).map(
        ([group, values]) => [`activationsByGroupId.${group}`, values ?? null] as [string, unknown[] | null],
      ),
      ["vocabTokenStringsForIndices", data.vocabTokenStringsForIndices],
    ],
    ctx,
  );
}

export const MultipleTopKDerivedScalarsResponseDataSchema = z
  .strictObject(multipleTopKDerivedScalarsResponseDataShape)
  .superRefine(checkMultipleTopK);
export type MultipleTopKDerivedScalarsResponseData = z.infer<
  typeof MultipleTopKDerivedScalarsResponseDataSchema
>;
export const DerivedScalarsResponseDataSchema = z.strictObject(derivedScalarsResponseDataShape);
export type DerivedScalarsResponseData = z.infer<typeof DerivedScalarsResponseDataSchema>;
export const DerivedAttentionScalarsResponseDataSchema = z.strictObject(
  derivedAttentionScalarsResponseDataShape,
);
export type DerivedAttentionScalarsResponseData = z.infer<typeof DerivedAttentionScalarsResponseDataSchema>;
export const ScoredTokensResponseDataSchema = z
  .strictObject(scoredTokensResponseDataShape)
  .superRefine((data, ctx) => sameLengthAsNodes(data, [["topTokensList", data.topTokensList]], ctx));
export type ScoredTokensResponseData = z.infer<typeof ScoredTokensResponseDataSchema>;
export const TokenPairAttributionResponseDataSchema = z
  .strictObject(tokenPairAttributionResponseDataShape)
  .superRefine((data, ctx) =>
    sameLengthAsNodes(data, [["topTokensAttendedToList", data.topTokensAttendedToList]], ctx),
  );
export type TokenPairAttributionResponseData = z.infer<typeof TokenPairAttributionResponseDataSchema>;

export const ProcessingResponseDataSchema = z.discriminatedUnion("responseDataType", [
  MultipleTopKDerivedScalarsResponseDataSchema,
  DerivedScalarsResponseDataSchema,
  DerivedAttentionScalarsResponseDataSchema,
  ScoredTokensResponseDataSchema,
  TokenPairAttributionResponseDataSchema,
]);
export type ProcessingResponseData = z.infer<typeof ProcessingResponseDataSchema>;

export const InferenceResponseAndResponseDictSchema = z.strictObject({
  inferenceResponse: InferenceResponseSchema,
  processingResponseDataByName: z.record(z.string(), ProcessingResponseDataSchema),
});
export type InferenceResponseAndResponseDict = z.infer<typeof InferenceResponseAndResponseDictSchema>;

/** The response of /batched and /batched_tdb. */
export const BatchedResponseSchema = z.strictObject({
  inferenceSubResponses: z.array(InferenceResponseAndResponseDictSchema),
});
export type BatchedResponse = z.infer<typeof BatchedResponseSchema>;

export const DerivedScalarsResponseSchema = z.strictObject({
  inferenceAndTokenData: InferenceAndTokenDataSchema,
  derivedScalarsResponseData: DerivedScalarsResponseDataSchema,
});
export type DerivedScalarsResponse = z.infer<typeof DerivedScalarsResponseSchema>;
export const DerivedAttentionScalarsResponseSchema = z.strictObject({
  inferenceAndTokenData: InferenceAndTokenDataSchema,
  derivedAttentionScalarsResponseData: DerivedAttentionScalarsResponseDataSchema,
});
export type DerivedAttentionScalarsResponse = z.infer<typeof DerivedAttentionScalarsResponseSchema>;
export const MultipleTopKDerivedScalarsResponseSchema = z.strictObject({
  inferenceAndTokenData: InferenceAndTokenDataSchema,
  multipleTopKDerivedScalarsResponseData: MultipleTopKDerivedScalarsResponseDataSchema,
});
export type MultipleTopKDerivedScalarsResponse = z.infer<typeof MultipleTopKDerivedScalarsResponseSchema>;
export const ScoredTokensResponseSchema = z.strictObject({
  inferenceAndTokenData: InferenceAndTokenDataSchema,
  scoredTokensResponseData: ScoredTokensResponseDataSchema,
});
export type ScoredTokensResponse = z.infer<typeof ScoredTokensResponseSchema>;
export const TokenPairAttributionResponseSchema = z.strictObject({
  inferenceAndTokenData: InferenceAndTokenDataSchema,
  tokenPairAttributionResponseData: TokenPairAttributionResponseDataSchema,
});
export type TokenPairAttributionResponse = z.infer<typeof TokenPairAttributionResponseSchema>;

export const ModelInfoResponseSchema = z.strictObject({
  modelName: z.string().nullable(),
  hasMlpAutoencoder: z.boolean(),
  mlpAutoencoderName: z.string().nullable(),
  hasAttentionAutoencoder: z.boolean(),
  attentionAutoencoderName: z.string().nullable(),
  nLayers: wireInt,
});
export type ModelInfoResponse = z.infer<typeof ModelInfoResponseSchema>;

export const NeuronDatasetMetadataSchema = z.strictObject({
  shortName: z.string(),
  derivedScalarType: z.string(),
  userVisibleName: z.string(),
  neuronDatasetPath: z.string(),
});
export type NeuronDatasetMetadata = z.infer<typeof NeuronDatasetMetadataSchema>;

export const NeuronRecordResponseSchema = z.strictObject({
  dataset: z.string(),
  maxActivation: wireNumber,
  topActivations: z.array(z.array(TokenAndScalarSchema)),
  randomSample: z.array(z.array(TokenAndScalarSchema)),
});
export type NeuronRecordResponse = z.infer<typeof NeuronRecordResponseSchema>;

export const AttentionHeadRecordResponseSchema = z.strictObject({
  dataset: z.string(),
  maxAttentionActivation: wireNumber,
  mostPositiveTokenSequences: z.array(z.array(TokenAndAttentionScalarsSchema)),
  randomTokenSequences: z.array(z.array(TokenAndAttentionScalarsSchema)),
});
export type AttentionHeadRecordResponse = z.infer<typeof AttentionHeadRecordResponseSchema>;

export const ExplanationResultSchema = z.strictObject({
  explanations: z.array(z.string()),
  dataset: z.string(),
});
export type ExplanationResult = z.infer<typeof ExplanationResultSchema>;

export const ScoreResultSchema = z.strictObject({
  score: wireNumber,
  datasetPath: z.string(),
});
export type ScoreResult = z.infer<typeof ScoreResultSchema>;

export const AttributedScoredExplanationSchema = z.strictObject({
  explanation: z.string(),
  /** null when the score is undefined (e.g. the neuron never fires). */
  score: wireNumber.nullable(),
  /** Last path component of the explanation dataset. */
  datasetName: z.string(),
});
export type AttributedScoredExplanation = z.infer<typeof AttributedScoredExplanationSchema>;

/** TDB's error body for HTTPException (400/404/500): `{"message": detail}`. */
export const ErrorResponseSchema = z.strictObject({ message: z.string() });
export type ErrorResponse = z.infer<typeof ErrorResponseSchema>;
