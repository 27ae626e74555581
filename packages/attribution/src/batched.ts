/**
 * TDB's generic /batched entry point and the single-spec routes built on it (/derived_scalars,
 * /derived_attention_scalars, /multiple_top_k_derived_scalars, /scored_tokens, /token_pair_attribution):
 * each sub-request's InferenceRequestSpec becomes one forward/backward pass, then its processing specs run in
 * order against a cache of derived scalars (DSTs). Multiple-top-k node lists are unioned across sub-requests
 * by spec name, as /batched_tdb does (docs/tdb-maths.md §8); scored-token and token-pair specs reuse the list
 * of the spec they depend on. Semantics: tdb-spec §3, §4 and TDB's interactive_model.py.
 */
import { type Gpt2Model, type HookPoint, hookKey, isHookPoint, type SparseAutoencoder } from "@tdb/model";
import { defaultGemm } from "@tdb/tensor";
import {
  attentionHeadMetrics,
  embeddingMetrics,
  type LayerMetrics,
  latentMetrics,
  type MetricGroup,
  mlpNeuronMetrics,
  precedes,
} from "./derived.js";
import {
  type Ablation,
  type AutoencoderFamily,
  checkSiteAblation,
  type InferenceResult,
  type LossSpec,
  type ResidualLocation,
  runInference,
  type SiteAblation,
  TdbRequestError,
  type TraceSpec,
} from "./inference.js";
import {
  attentionWriteToLatentByKey,
  checkContextWindow,
  checkTopKPromptLengths,
  componentOf,
  defaultExcludedTokenIds,
  encodeSingleToken,
  finiteOr999,
  inputTokensThatUpvoteMlp,
  logitRowSums,
  type NodeRef,
  now,
  outputTokenScores,
  type SelectionSource,
  selectTopAndBottomNodes,
  type TdbContext,
  tokenPairAttribution,
  topTokens,
  unflatten,
  unionNodes,
  upvotedOutputTokens,
} from "./tdb.js";
import type {
  BatchedRequest,
  BatchedResponse,
  DerivedAttentionScalarsRequest,
  DerivedAttentionScalarsResponse,
  DerivedAttentionScalarsResponseData,
  DerivedScalarsRequest,
  DerivedScalarsResponse,
  DerivedScalarsResponseData,
  DerivedScalarType,
  Dimension,
  InferenceAndTokenData,
  InferenceRequestSpec,
  InferenceSubRequest,
  MirroredActivationIndex,
  MirroredNodeIndexOut,
  MirroredTraceConfig,
  MultipleTopKDerivedScalarsRequest,
  MultipleTopKDerivedScalarsResponse,
  MultipleTopKDerivedScalarsResponseData,
  NodeIdAndDatasets,
  NodeType,
  PassType,
  ProcessingRequestSpec,
  ProcessingResponseData,
  ScoredTokensRequest,
  ScoredTokensResponse,
  ScoredTokensResponseData,
  TensorND,
  TokenAndAttentionScalars,
  TokenPairAttributionRequest,
  TokenPairAttributionResponse,
  TokenPairAttributionResponseData,
  TopTokens,
} from "./wire.js";

/** What a node's dataset record contributes to normalising its activations on a prompt. */
export interface NormalizationRecord {
  /** The record's max activation: per-token activations are normalised as max(a, 0) / maxActivation. */
  maxActivation: number;
  /**
   * Token-pair nodes: the record's most positive sequences, each as per-token rows of attention scalars
   * (row i = attending from token i to tokens 0..i); they enter the maxima of the normalisation.
   */
  attentionSequences?: readonly (readonly (readonly number[])[])[];
}

export interface BatchedContext extends TdbContext {
  /** TDB reads the neuron record named by normalizeActivationsUsingNeuronRecord; null = none available. */
  normalizationRecord?: (node: NodeIdAndDatasets) => NormalizationRecord | null;
}

type Spec<K extends ProcessingRequestSpec["specType"]> = Extract<ProcessingRequestSpec, { specType: K }>;
type TopKSpec = Spec<"multiple_top_k_derived_scalars_request_spec">;
type DerivedScalarsSpec = Spec<"derived_scalars_request_spec">;
type DerivedAttentionSpec = Spec<"derived_attention_scalars_request_spec">;
type ScoredTokensSpec = Spec<"scored_tokens_request_spec">;
type TokenPairSpec = Spec<"token_pair_attribution_request_spec">;

// ---------------------------------------------------------------------------------------------------------
// The DSTs this server computes

/** Where a residual-stream quantity sits within a layer (TDB's LocationWithinLayer, for the precedence rule). */
const LOCATION = { endOfPreviousLayer: 1, attention: 2, residPostAttn: 3, mlp: 4, residPostMlp: 5 } as const;

/** One DST over all its layers: row-major values of shape `shape` (per layer), named by `dims`. */
interface DstTensor {
  dst: DerivedScalarType;
  nodeType: NodeType;
  dims: readonly Dimension[];
  layers: { layer: number | null; shape: number[]; values: Float32Array }[];
}

type Family = "mlp" | "attention" | "single";

interface DstInfo {
  nodeType: NodeType;
  dims: readonly Dimension[];
  /** Uses dy/d(something): needs a loss or a trace, and is unavailable with a "fake gradient" ablation. */
  gradient: boolean;
  /** A raw hook value: passType "backward" gives its gradient. */
  raw?: boolean;
  /** The autoencoder family it needs. */
  family?: Family;
}

const SEQ: Dimension = "sequence_tokens";
const KEYS: Dimension = "attended_to_sequence_tokens";
const HEADS: Dimension = "attn_heads";
const MLP: Dimension = "mlp_acts";
const RESID: Dimension = "residual_stream_channels";
const ONE: Dimension = "singleton";
const LATENTS: Dimension = "autoencoder_latents";

const info = (
  nodeType: NodeType,
  dims: readonly Dimension[],
  gradient: boolean,
  extra: Partial<DstInfo> = {},
): DstInfo => ({ nodeType, dims, gradient, ...extra });

/** Node-table DSTs (docs/tdb-maths.md §3.4) and their metric group, per node kind. */
const METRIC_DSTS: Partial<Record<DerivedScalarType, { kind: MetricKind; group: MetricGroup }>> = {
  resid_post_embedding_norm: { kind: "embedding", group: "write_norm" },
  token_attribution: { kind: "embedding", group: "act_times_grad" },
  resid_post_embedding_proj_to_final_residual_grad: { kind: "embedding", group: "direction_write" },
  always_one: { kind: "embedding", group: "activation" },
  mlp_write_norm: { kind: "mlp_neuron", group: "write_norm" },
  mlp_act_times_grad: { kind: "mlp_neuron", group: "act_times_grad" },
  mlp_write_to_final_residual_grad: { kind: "mlp_neuron", group: "direction_write" },
  mlp_post_act: { kind: "mlp_neuron", group: "activation" },
  unflattened_attn_write_norm: { kind: "attention_head", group: "write_norm" },
  unflattened_attn_act_times_grad: { kind: "attention_head", group: "act_times_grad" },
  unflattened_attn_write_to_final_residual_grad: { kind: "attention_head", group: "direction_write" },
  attn_qk_probs: { kind: "attention_head", group: "activation" },
  online_mlp_autoencoder_write_norm: { kind: "mlp", group: "write_norm" },
  online_mlp_autoencoder_act_times_grad: { kind: "mlp", group: "act_times_grad" },
  online_mlp_autoencoder_write_to_final_residual_grad: { kind: "mlp", group: "direction_write" },
  online_mlp_autoencoder_latent: { kind: "mlp", group: "activation" },
  online_attention_autoencoder_write_norm: { kind: "attention", group: "write_norm" },
  online_attention_autoencoder_act_times_grad: { kind: "attention", group: "act_times_grad" },
  online_attention_autoencoder_write_to_final_residual_grad: { kind: "attention", group: "direction_write" },
  online_attention_autoencoder_latent: { kind: "attention", group: "activation" },
  online_autoencoder_write_norm: { kind: "single", group: "write_norm" },
  online_autoencoder_act_times_grad: { kind: "single", group: "act_times_grad" },
  online_autoencoder_write_to_final_residual_grad: { kind: "single", group: "direction_write" },
  online_autoencoder_latent: { kind: "single", group: "activation" },
};
type MetricKind = "embedding" | "mlp_neuron" | "attention_head" | Family;

const LATENT_NODE_TYPE: Record<Family, NodeType> = {
  mlp: "mlp_autoencoder_latent",
  attention: "attention_autoencoder_latent",
  single: "autoencoder_latent",
};

function metricInfo(kind: MetricKind, group: MetricGroup): DstInfo {
  const gradient = group === "act_times_grad" || group === "direction_write";
  const raw = group === "activation" && kind !== "embedding";
  switch (kind) {
    case "embedding":
      return info("layer", [SEQ, ONE], gradient);
    case "mlp_neuron":
      return info("mlp_neuron", [SEQ, MLP], gradient, { raw });
    case "attention_head":
      return info("attention_head", [SEQ, KEYS, HEADS], gradient, { raw });
    default:
      return info(LATENT_NODE_TYPE[kind], [SEQ, LATENTS], gradient, { raw, family: kind });
  }
}

/** Raw hook values: DST → hook point (layer-less points carry layer null). */
const RAW_DSTS: Partial<Record<DerivedScalarType, { point: HookPoint; info: DstInfo }>> = {
  mlp_pre_act: { point: "mlp.pre_act", info: info("mlp_neuron", [SEQ, MLP], false, { raw: true }) },
  attn_qk_logits: {
    point: "attn.qk_logits",
    info: info("attention_head", [SEQ, KEYS, HEADS], false, { raw: true }),
  },
  attn_query: {
    point: "attn.q",
    info: info("qk_channel", [SEQ, HEADS, "query_and_key_channels"], false, { raw: true }),
  },
  attn_key: {
    point: "attn.k",
    info: info("qk_channel", [KEYS, HEADS, "query_and_key_channels"], false, { raw: true }),
  },
  attn_value: {
    point: "attn.v",
    info: info("v_channel", [KEYS, HEADS, "value_channels"], false, { raw: true }),
  },
  attn_weighted_sum_of_values: {
    point: "attn.v_out",
    info: info("v_channel", [SEQ, HEADS, "value_channels"], false, { raw: true }),
  },
  resid_post_embedding: {
    point: "resid.post_emb",
    info: info("residual_stream_channel", [SEQ, RESID], false, { raw: true }),
  },
  resid_post_attn: {
    point: "resid.post_attn",
    info: info("residual_stream_channel", [SEQ, RESID], false, { raw: true }),
  },
  resid_post_mlp: {
    point: "resid.post_mlp",
    info: info("residual_stream_channel", [SEQ, RESID], false, { raw: true }),
  },
  resid_delta_attn: {
    point: "resid.delta_attn",
    info: info("residual_stream_channel", [SEQ, RESID], false, { raw: true }),
  },
  resid_delta_mlp: {
    point: "resid.delta_mlp",
    info: info("residual_stream_channel", [SEQ, RESID], false, { raw: true }),
  },
  resid_final_layer_norm_scale: {
    point: "resid.ln_f.scale",
    info: info("layer", [SEQ, ONE], false, { raw: true }),
  },
  attn_input_layer_norm_scale: {
    point: "attn_ln.scale",
    info: info("layer", [SEQ, ONE], false, { raw: true }),
  },
  mlp_input_layer_norm_scale: {
    point: "mlp_ln.scale",
    info: info("layer", [SEQ, ONE], false, { raw: true }),
  },
};

/** Per-layer residual quantities: the norm of x[t], or x[t]·g[t] (with the precedence rule). */
const RESIDUAL_DSTS: Partial<
  Record<DerivedScalarType, { point: HookPoint; location: number; projection: boolean }>
> = {
  resid_post_mlp_norm: { point: "resid.post_mlp", location: LOCATION.residPostMlp, projection: false },
  resid_post_attn_norm: { point: "resid.post_attn", location: LOCATION.residPostAttn, projection: false },
  mlp_layer_write_norm: { point: "resid.delta_mlp", location: LOCATION.mlp, projection: false },
  attn_layer_write_norm: { point: "resid.delta_attn", location: LOCATION.attention, projection: false },
  resid_post_mlp_proj_to_final_residual_grad: {
    point: "resid.post_mlp",
    location: LOCATION.residPostMlp,
    projection: true,
  },
  resid_post_attn_proj_to_final_residual_grad: {
    point: "resid.post_attn",
    location: LOCATION.residPostAttn,
    projection: true,
  },
  mlp_layer_write_to_final_residual_grad: {
    point: "resid.delta_mlp",
    location: LOCATION.mlp,
    projection: true,
  },
  attn_layer_write_to_final_residual_grad: {
    point: "resid.delta_attn",
    location: LOCATION.attention,
    projection: true,
  },
};

/** Attention DSTs per (query token, head), and the flattened lower-triangle forms of [t, u, h] ones. */
const OTHER_DSTS: Partial<Record<DerivedScalarType, DstInfo>> = {
  attn_write_norm_per_sequence_token: info("attention_head", [SEQ, HEADS], false),
  attn_act_times_grad_per_sequence_token: info("attention_head", [SEQ, HEADS], true),
  attn_write_to_final_residual_grad_per_sequence_token: info("attention_head", [SEQ, HEADS], true),
  attn_write_norm: info("attention_head", [SEQ, HEADS], false),
  flattened_attn_post_softmax: info("attention_head", [SEQ, HEADS], false),
  attn_act_times_grad: info("attention_head", [SEQ, HEADS], true),
  attn_write_to_final_residual_grad: info("attention_head", [SEQ, HEADS], true),
  previous_layer_resid_post_mlp: info("residual_stream_channel", [SEQ, RESID], false),
  resid_delta_mlp_from_mlp_post_act: info("residual_stream_channel", [SEQ, RESID], false),
  logits: info("vocab_token", [SEQ, "vocab_size"], false),
  vocab_token_write_to_input_direction: info("vocab_token", [SEQ, "vocab_size"], false),
  attn_write_to_latent_summed_over_heads: info("layer", [SEQ, KEYS, ONE], false),
  flattened_attn_write_to_latent_summed_over_heads: info("layer", [SEQ, ONE], false),
};

/** Flattened DST → the [t, u, h] DST whose lower triangle it lists. */
const FLATTENED_FROM: Partial<Record<DerivedScalarType, DerivedScalarType>> = {
  attn_write_norm: "unflattened_attn_write_norm",
  flattened_attn_post_softmax: "attn_qk_probs",
  attn_act_times_grad: "unflattened_attn_act_times_grad",
  attn_write_to_final_residual_grad: "unflattened_attn_write_to_final_residual_grad",
  flattened_attn_write_to_latent_summed_over_heads: "attn_write_to_latent_summed_over_heads",
};

function dstInfo(dst: DerivedScalarType): DstInfo | null {
  const metric = METRIC_DSTS[dst];
  if (metric) return metricInfo(metric.kind, metric.group);
  const raw = RAW_DSTS[dst];
  if (raw) return raw.info;
  const residual = RESIDUAL_DSTS[dst];
  if (residual) return info("layer", [SEQ, ONE], residual.projection);
  return OTHER_DSTS[dst] ?? null;
}

/** Every DST name this server computes, for error messages and documentation. */
export const SUPPORTED_DSTS: readonly DerivedScalarType[] = [
  ...Object.keys(METRIC_DSTS),
  ...Object.keys(RAW_DSTS),
  ...Object.keys(RESIDUAL_DSTS),
  ...Object.keys(OTHER_DSTS),
] as DerivedScalarType[];

function requireDst(dst: DerivedScalarType, where: string): DstInfo {
  const found = dstInfo(dst);
  if (!found) {
    throw new TdbRequestError(
      `${where}: derived scalar type "${dst}" is not supported by this server; supported: ${SUPPORTED_DSTS.join(", ")}`,
    );
  }
  return found;
}

// ---------------------------------------------------------------------------------------------------------
// Inference request → one inference

interface SubState {
  ctx: BatchedContext;
  where: string;
  request: InferenceSubRequest;
  tokens: number[];
  ablations: Ablation[];
  /** Backward-pass ablations that inject a gradient (the LogitLens "input tokens" request). */
  fakeGradient: MirroredActivationIndex[];
  trace: TraceSpec | null;
  run: InferenceResult | null;
  /** Rows of logits computed by the forward pass ("all" when some spec needs every row). */
  logitRows: "all" | Set<number>;
  cache: Map<string, DstTensor>;
  metrics: Map<string, LayerMetrics>;
}

const LATENT_LOCATIONS = [
  "online_autoencoder_latent",
  "online_mlp_autoencoder_latent",
  "online_attention_autoencoder_latent",
] as const;

/** The autoencoder family an online-latent activation location names (the generic one: the only one loaded). */
function latentKindOf(
  ctx: BatchedContext,
  location: string,
  where: string,
): { kind: "mlp_latent" | "attention_latent"; family: AutoencoderFamily } {
  let kind: "mlp_latent" | "attention_latent";
  if (location === "online_mlp_autoencoder_latent") kind = "mlp_latent";
  else if (location === "online_attention_autoencoder_latent") kind = "attention_latent";
  else {
    const mlp = Boolean(ctx.mlpAutoencoder);
    if (mlp === Boolean(ctx.attentionAutoencoder)) {
      throw new TdbRequestError(
        `${where}: "${location}" names the autoencoder only when exactly one is loaded; use online_mlp_autoencoder_latent or online_attention_autoencoder_latent`,
      );
    }
    kind = mlp ? "mlp_latent" : "attention_latent";
  }
  const family = kind === "mlp_latent" ? ctx.mlpAutoencoder : ctx.attentionAutoencoder;
  if (!family) {
    throw new TdbRequestError(
      `${where}: ${location} needs an ${kind === "mlp_latent" ? "MLP" : "attention"} autoencoder, and the server has none`,
    );
  }
  return { kind, family };
}

function familyOf(ctx: BatchedContext, family: Family, where: string): AutoencoderFamily {
  const location = family === "single" ? "online_autoencoder_latent" : `online_${family}_autoencoder_latent`;
  return latentKindOf(ctx, location, where).family;
}

function checkLayer(ctx: BatchedContext, layer: number | null | undefined, where: string): number {
  const n = ctx.model.config.nLayer;
  if (layer === null || layer === undefined) throw new TdbRequestError(`${where}: layerIndex is required`);
  if (layer < 0 || layer >= n)
    throw new TdbRequestError(`${where}: layerIndex ${layer} is outside [0, ${n})`);
  return layer;
}

/** Integer positions an index entry stands for ("All" = every position below `size`). */
function positions(entry: number | "All", size: number, what: string, where: string): number[] {
  if (entry === "All") return Array.from({ length: size }, (_, i) => i);
  if (entry >= size) throw new TdbRequestError(`${where}: ${what} ${entry} is outside [0, ${size})`);
  return [entry];
}

function convertAblations(ctx: BatchedContext, spec: InferenceRequestSpec, T: number, where: string) {
  const ablations: Ablation[] = [];
  const fakeGradient: MirroredActivationIndex[] = [];
  (spec.ablationSpecs ?? []).forEach(({ index, value }, i) => {
    const at = `${where}: ablationSpecs[${i}]`;
    const location = index.activationLocationType;
    const ti = index.tensorIndices;
    if (index.passType === "backward") {
      if (location === "resid.ln_f.scale") {
        // TDB's /batched_tdb always sends this (final LayerNorm scale gets no gradient); runInference always applies it.
        if (value !== 0) {
          throw new TdbRequestError(
            `${at}: a backward-pass ablation of resid.ln_f.scale must have value 0 (detaching the final LayerNorm scale); got ${value}`,
          );
        }
        return;
      }
      if (
        location === "mlp.post_act" ||
        location === "online_autoencoder_latent" ||
        location === "online_mlp_autoencoder_latent"
      ) {
        if (ti.length !== 2 || ti.some((x) => x === "All")) {
          throw new TdbRequestError(
            `${at}: a backward-pass ablation at ${location} needs [token, index] integers`,
          );
        }
        fakeGradient.push(index);
        return;
      }
      throw new TdbRequestError(
        `${at}: backward-pass ablations at ${location} are not supported; supported: resid.ln_f.scale (value 0, the final LayerNorm detach) and mlp.post_act / online_autoencoder_latent / online_mlp_autoencoder_latent as the node of vocab_token_write_to_input_direction`,
      );
    }
    if (isHookPoint(location)) {
      // Any activation of the model (TDB's hook points): the addressed entries are set to value.
      const site: SiteAblation = {
        kind: "site",
        point: location,
        layer: index.layerIndex ?? null,
        indices: ti,
        value,
      };
      checkSiteAblation(ctx.model.config, site, T, at);
      ablations.push(site);
      return;
    }
    if (!(LATENT_LOCATIONS as readonly string[]).includes(location)) {
      throw new TdbRequestError(
        `${at}: forward-pass ablations at ${location} are not supported; supported: the model's activation locations (resid.*, attn.*, mlp.*, logits; not the LayerNorm scales) and online_*autoencoder_latent [t, latent]`,
      );
    }
    const layer = checkLayer(ctx, index.layerIndex, at);
    if (ti.length !== 2) throw new TdbRequestError(`${at}: ${location} takes [token, index]`);
    const { kind, family } = latentKindOf(ctx, location, at);
    const ae = family.byLayer.get(layer);
    if (!ae) throw new TdbRequestError(`${at}: the ${family.name} autoencoder has no layer ${layer}`);
    for (const token of positions(ti[0], T, "token index", at))
      for (const idx of positions(ti[1], ae.nLatents, "latent index", at))
        ablations.push({ kind, layer, token, index: idx, value });
  });
  return { ablations, fakeGradient };
}

function convertTrace(ctx: BatchedContext, spec: InferenceRequestSpec, where: string): TraceSpec | null {
  const trace = spec.traceConfig;
  if (!trace) return null;
  const upstream = convertTraceConfig(ctx, trace, `${where}: traceConfig`);
  if (trace.downstreamTraceConfig) {
    const at = `${where}: traceConfig.downstreamTraceConfig`;
    if (upstream.attentionTraceType !== "V") {
      throw new TdbRequestError(
        `${at}: a downstream node can only be given when tracing attention through "V"`,
      );
    }
    if (trace.downstreamTraceConfig.downstreamTraceConfig) {
      throw new TdbRequestError(`${at}: the downstream node cannot have a downstream node of its own`);
    }
    upstream.downstream = convertTraceConfig(ctx, trace.downstreamTraceConfig, at);
    if (upstream.downstream.attentionTraceType === "V") {
      throw new TdbRequestError(
        `${at}: the downstream node of a "V" trace cannot itself be traced through "V"`,
      );
    }
  }
  return upstream;
}

function convertTraceConfig(ctx: BatchedContext, trace: MirroredTraceConfig, at: string): TraceSpec {
  if (trace.preOrPostAct !== "pre") {
    throw new TdbRequestError(`${at}: only preOrPostAct "pre" is supported (TDB traces pre-activations)`);
  }
  if (!trace.detachLayerNormScale) {
    throw new TdbRequestError(
      `${at}: only detachLayerNormScale true is supported (the traced block's LayerNorm scale is detached)`,
    );
  }
  const c = componentOf(ctx, trace.nodeIndex, at);
  const type = trace.attentionTraceType ?? undefined;
  if (c.kind === "attention_head") {
    if (!type) throw new TdbRequestError(`${at}: tracing an attention head needs attentionTraceType`);
    if (c.keyToken !== undefined && c.keyToken > c.token) {
      throw new TdbRequestError(
        `${at}: key token ${c.keyToken} comes after query token ${c.token} (masked pair)`,
      );
    }
  }
  return { ...c, attentionTraceType: c.kind === "attention_head" ? type : undefined };
}

function convertLoss(ctx: BatchedContext, spec: InferenceRequestSpec): LossSpec | null {
  const config = spec.lossFnConfig;
  if (!config) return null;
  const encode = (list: readonly string[] | null | undefined) =>
    (list ?? []).map((s) => encodeSingleToken(ctx.tokenizer, s));
  const targets = encode(config.targetTokens);
  const distractors = config.distractorTokens == null ? null : encode(config.distractorTokens);
  return { name: config.name, targets, distractors };
}

// ---------------------------------------------------------------------------------------------------------
// Static checks of the processing specs (before any inference, as TDB does)

function specWhere(where: string, name: string): string {
  return `${where}: processingRequestSpecByName["${name}"]`;
}

function checkDstAvailable(
  ctx: BatchedContext,
  dst: DerivedScalarType,
  passType: PassType,
  at: string,
): DstInfo {
  const found = requireDst(dst, at);
  if (found.family) familyOf(ctx, found.family, `${at}: ${dst}`);
  if (passType === "backward" && !found.raw) {
    throw new TdbRequestError(
      `${at}: passType "backward" (the gradient of the DST) is supported only for raw activations such as mlp_post_act, attn_qk_probs, resid_post_mlp and online latents; not for ${dst}`,
    );
  }
  return found;
}

function checkTopKSpec(ctx: BatchedContext, spec: TopKSpec, at: string): void {
  const groups = Object.entries(spec.dstListByGroupId);
  if (groups.length === 0) throw new TdbRequestError(`${at}: dstListByGroupId has no groups`);
  let nodeTypes: string | null = null;
  for (const [group, dsts] of groups) {
    const types = (dsts ?? []).map(
      (dst) => checkDstAvailable(ctx, dst, spec.passType, `${at}.${group}`).nodeType,
    );
    if (new Set(types).size !== types.length) {
      throw new TdbRequestError(
        `${at}: group "${group}" has two DSTs of the same node type (${types.join(", ")}); each group takes one DST per node type`,
      );
    }
    const signature = [...types].sort().join(", ");
    if (nodeTypes !== null && signature !== nodeTypes) {
      throw new TdbRequestError(
        `${at}: every group must cover the same node types; "${group}" has [${signature}], an earlier group [${nodeTypes}]`,
      );
    }
    nodeTypes = signature;
    for (const dst of dsts ?? []) {
      const kept = requireDst(dst, at).dims.filter((d) =>
        spec.dimensionsToKeepForIntermediateSum.includes(d),
      );
      if (kept.length > 3) throw new TdbRequestError(`${at}: intermediate sums keep at most 3 dimensions`);
    }
  }
}

function checkSpec(ctx: BatchedContext, spec: ProcessingRequestSpec, at: string): void {
  switch (spec.specType) {
    case "multiple_top_k_derived_scalars_request_spec":
      checkTopKSpec(ctx, spec, at);
      return;
    case "derived_scalars_request_spec": {
      const found = checkDstAvailable(ctx, spec.dst, spec.passType, at);
      if (spec.numTopTokens != null) checkTopTokensDst(spec, at);
      if (found.dims.length !== 2) {
        throw new TdbRequestError(
          `${at}: derived_scalars_request_spec needs a DST with one value per token and component; ${spec.dst} has dimensions [${found.dims.join(", ")}] (use derived_attention_scalars_request_spec for token pairs)`,
        );
      }
      return;
    }
    case "derived_attention_scalars_request_spec":
      if (
        spec.dst !== "unflattened_attn_write_norm" &&
        spec.dst !== "attn_write_to_latent_summed_over_heads"
      ) {
        throw new TdbRequestError(
          `${at}: derived_attention_scalars_request_spec supports dst unflattened_attn_write_norm and attn_write_to_latent_summed_over_heads; got ${spec.dst}`,
        );
      }
      return;
    case "scored_tokens_request_spec":
    case "token_pair_attribution_request_spec":
      return;
  }
}

// ---------------------------------------------------------------------------------------------------------
// DST values of one inference

function runOf(state: SubState): InferenceResult {
  if (!state.run) throw new Error("inference has not run");
  return state.run;
}

function activation(state: SubState, point: HookPoint, layer: number | null): Float32Array {
  const value = runOf(state).forward.activations.get(hookKey(point, layer));
  if (!value) throw new Error(`activation ${hookKey(point, layer)} missing from the cache`);
  return value;
}

function gradientAt(state: SubState, point: HookPoint, layer: number | null, size: number): Float32Array {
  return runOf(state).gradients.get(hookKey(point, layer)) ?? new Float32Array(size);
}

function layerMetrics(state: SubState, kind: MetricKind, layer: number | null): LayerMetrics {
  const key = `${kind}|${layer}`;
  const cached = state.metrics.get(key);
  if (cached) return cached;
  const { ctx } = state;
  const run = runOf(state);
  let m: LayerMetrics;
  if (kind === "embedding") m = embeddingMetrics(ctx, run);
  else if (kind === "mlp_neuron") m = mlpNeuronMetrics(ctx.model, run, layer!);
  else if (kind === "attention_head") m = attentionHeadMetrics(ctx.model, run, layer!);
  else {
    const family = familyOf(ctx, kind, state.where);
    const latentKind = family === ctx.mlpAutoencoder ? "mlp_latent" : "attention_latent";
    m = latentMetrics(ctx.model, run, family, layer!, latentKind);
  }
  state.metrics.set(key, m);
  return m;
}

function layerList(model: Gpt2Model): number[] {
  return Array.from({ length: model.config.nLayer }, (_, l) => l);
}

/** Where the final residual of direct effects sits, as (layer, location) for TDB's precedence rule. */
function finalPosition(model: Gpt2Model, final: ResidualLocation | null): [number, number] {
  if (final === null) return [model.config.nLayer - 1, LOCATION.residPostMlp];
  return [final.layer, final.block === "attention" ? LOCATION.endOfPreviousLayer : LOCATION.residPostAttn];
}

function residualPrecedes(
  model: Gpt2Model,
  layer: number,
  location: number,
  final: ResidualLocation | null,
): boolean {
  const [fl, floc] = finalPosition(model, final);
  return layer < fl || (layer === fl && location < floc);
}

function needsGradient(state: SubState, dst: DerivedScalarType, passType: PassType, at: string): void {
  const found = requireDst(dst, at);
  if (!found.gradient && passType === "forward") return;
  const spec = state.request.inferenceRequestSpec;
  if (state.fakeGradient.length > 0) {
    throw new TdbRequestError(
      `${at}: ${dst} needs a real backward pass; a backward-pass ablation at ${state.fakeGradient[0].activationLocationType} (a "fake gradient") is supported only with vocab_token_write_to_input_direction`,
    );
  }
  if (!spec.lossFnConfig && !spec.traceConfig) {
    throw new TdbRequestError(
      `${at}: ${dst}${passType === "backward" ? " (backward pass)" : ""} needs a backward pass: give lossFnConfig or traceConfig`,
    );
  }
}

/** Before any inference: every requested DST that needs gradients has a backward target. */
function checkGradients(state: SubState): void {
  for (const [name, spec] of Object.entries(state.request.processingRequestSpecByName)) {
    const at = specWhere(state.where, name);
    if (spec.specType === "derived_scalars_request_spec") needsGradient(state, spec.dst, spec.passType, at);
    if (spec.specType !== "multiple_top_k_derived_scalars_request_spec") continue;
    for (const dsts of Object.values(spec.dstListByGroupId)) {
      for (const dst of dsts ?? []) needsGradient(state, dst, spec.passType, at);
    }
  }
}

function getDst(state: SubState, dst: DerivedScalarType, passType: PassType, at: string): DstTensor {
  const key = `${dst}|${passType}`;
  const cached = state.cache.get(key);
  if (cached) return cached;
  needsGradient(state, dst, passType, at);
  const tensor = computeDst(state, dst, passType, at);
  state.cache.set(key, tensor);
  return tensor;
}

function computeDst(state: SubState, dst: DerivedScalarType, passType: PassType, at: string): DstTensor {
  const { ctx } = state;
  const { model } = ctx;
  const found = requireDst(dst, at);
  const T = state.tokens.length;
  const { nEmbd: d, nHead: H } = model.config;
  const Dh = d / H;
  const out = (layers: DstTensor["layers"]): DstTensor => ({
    dst,
    nodeType: found.nodeType,
    dims: found.dims,
    layers,
  });
  const backward = passType === "backward";

  const metric = METRIC_DSTS[dst];
  if (metric) {
    const layers: (number | null)[] =
      metric.kind === "embedding"
        ? [null]
        : metric.kind === "mlp_neuron" || metric.kind === "attention_head"
          ? layerList(model)
          : [...familyOf(ctx, metric.kind, at).byLayer.keys()].sort((a, b) => a - b);
    return out(
      layers.map((layer) => {
        const m = layerMetrics(state, metric.kind, layer);
        let values = m.metrics[metric.group];
        if (backward) values = rawGradient(state, metric.kind, layer, values.length);
        return { layer, shape: [...m.shape], values };
      }),
    );
  }

  const raw = RAW_DSTS[dst];
  if (raw) {
    const layerless = raw.point === "resid.post_emb" || raw.point === "resid.ln_f.scale";
    const layers: (number | null)[] = layerless ? [null] : layerList(model);
    const shapeOf = (): number[] => {
      switch (raw.point) {
        case "mlp.pre_act":
          return [T, model.config.nInner];
        case "attn.qk_logits":
          return [T, T, H];
        case "attn.q":
        case "attn.k":
        case "attn.v":
        case "attn.v_out":
          return [T, H, Dh];
        case "resid.ln_f.scale":
        case "attn_ln.scale":
        case "mlp_ln.scale":
          return [T, 1];
        default:
          return [T, d];
      }
    };
    const shape = shapeOf();
    const size = shape.reduce((a, b) => a * b, 1);
    return out(
      layers.map((layer) => ({
        layer,
        shape,
        values: backward ? gradientAt(state, raw.point, layer, size) : activation(state, raw.point, layer),
      })),
    );
  }

  const residual = RESIDUAL_DSTS[dst];
  if (residual) {
    const run = runOf(state);
    const g = run.finalResidualGradient;
    return out(
      layerList(model).map((layer) => {
        const x = activation(state, residual.point, layer);
        const values = new Float32Array(T);
        const live =
          !residual.projection || residualPrecedes(model, layer, residual.location, run.finalLocation);
        for (let t = 0; t < T && live; t++) {
          let acc = 0;
          for (let i = 0; i < d; i++) {
            const v = x[t * d + i];
            acc += residual.projection ? v * g[t * d + i] : v * v;
          }
          values[t] = residual.projection ? acc : Math.sqrt(acc);
        }
        return { layer, shape: [T, 1], values };
      }),
    );
  }

  const flattenedFrom = FLATTENED_FROM[dst];
  if (flattenedFrom) {
    const source = getDst(state, flattenedFrom, "forward", at);
    return out(
      source.layers.map(({ layer, shape, values }) => {
        const last = shape[2];
        const flat = new Float32Array(((T * (T + 1)) / 2) * last);
        let k = 0;
        for (let t = 0; t < T; t++) {
          for (let u = 0; u <= t; u++) {
            for (let h = 0; h < last; h++) flat[k++] = values[(t * T + u) * last + h];
          }
        }
        return { layer, shape: [(T * (T + 1)) / 2, last], values: flat };
      }),
    );
  }

  switch (dst) {
    case "attn_write_norm_per_sequence_token":
    case "attn_write_to_final_residual_grad_per_sequence_token": {
      const run = runOf(state);
      const projection = dst === "attn_write_to_final_residual_grad_per_sequence_token";
      return out(
        layerList(model).map((layer) => {
          const vOut = activation(state, "attn.v_out", layer);
          const wO = model.weights.layers[layer].attnOutWeight;
          const live = !projection || precedes(layer, "attention", run.finalLocation);
          const values = new Float32Array(T * H);
          const write = new Float32Array(d);
          for (let t = 0; t < T && live; t++) {
            for (let h = 0; h < H; h++) {
              write.fill(0);
              for (let i = 0; i < Dh; i++) {
                const c = vOut[t * d + h * Dh + i];
                const row = (h * Dh + i) * d;
                for (let j = 0; j < d; j++) write[j] += c * wO[row + j];
              }
              let acc = 0;
              for (let j = 0; j < d; j++)
                acc += projection ? write[j] * run.finalResidualGradient[t * d + j] : write[j] ** 2;
              values[t * H + h] = projection ? acc : Math.sqrt(acc);
            }
          }
          return { layer, shape: [T, H], values };
        }),
      );
    }
    case "attn_act_times_grad_per_sequence_token": {
      const source = getDst(state, "unflattened_attn_act_times_grad", "forward", at);
      return out(
        source.layers.map(({ layer, values }) => {
          const summed = new Float32Array(T * H);
          for (let t = 0; t < T; t++) {
            for (let u = 0; u <= t; u++)
              for (let h = 0; h < H; h++) summed[t * H + h] += values[(t * T + u) * H + h];
          }
          return { layer, shape: [T, H], values: summed };
        }),
      );
    }
    case "previous_layer_resid_post_mlp":
      return out(
        layerList(model).map((layer) => ({
          layer,
          shape: [T, d],
          values:
            layer === 0
              ? activation(state, "resid.post_emb", null)
              : activation(state, "resid.post_mlp", layer - 1),
        })),
      );
    case "resid_delta_mlp_from_mlp_post_act":
      return out(
        layerList(model).map((layer) => {
          const F = model.config.nInner;
          const a = activation(state, "mlp.post_act", layer);
          const w = model.weights.layers[layer].projWeight;
          const values = new Float32Array(T * d);
          for (let t = 0; t < T; t++) {
            for (let n = 0; n < F; n++) {
              const c = a[t * F + n];
              if (c === 0) continue;
              for (let j = 0; j < d; j++) values[t * d + j] += c * w[n * d + j];
            }
          }
          return { layer, shape: [T, d], values };
        }),
      );
    case "logits": {
      const { vocabSize: V } = model.config;
      const forward = runOf(state).forward;
      if (forward.logitRows.length !== T) throw new Error("logits of every token were not computed");
      return out([{ layer: null, shape: [T, V], values: forward.logits }]);
    }
    case "vocab_token_write_to_input_direction": {
      const row = vocabTokenWriteToInputDirection(state, at);
      const V = row.length;
      const values = new Float32Array(T * V);
      for (let t = 0; t < T; t++) values.set(row, t * V);
      return out([{ layer: null, shape: [T, V], values }]);
    }
    case "attn_write_to_latent_summed_over_heads": {
      const { layer, latent } = withinLayerLatent(state, at);
      const ae = ctx.attentionAutoencoder!.byLayer.get(layer)!;
      const record = runOf(state).attentionLatents.get(layer)!;
      // TDB differentiates encode() of the saved (un-ablated) attention write: active latents pass gradient.
      const active = ae.activate(record.preActivations, T);
      const values = new Float32Array(T * T);
      for (let t = 0; t < T; t++) {
        if (!(active[t * ae.nLatents + latent] > 0)) continue;
        values.set(attentionWriteToLatentByKey(ctx, runOf(state), layer, latent, t), t * T);
      }
      return out([{ layer, shape: [T, T, 1], values }]);
    }
    default:
      throw new TdbRequestError(`${at}: derived scalar type "${dst}" is not supported by this server`);
  }
}

/** The gradient at a metric DST's own hook (TDB's backward pass of a raw activation). */
function rawGradient(state: SubState, kind: MetricKind, layer: number | null, size: number): Float32Array {
  if (kind === "mlp_neuron") return gradientAt(state, "mlp.post_act", layer, size);
  if (kind === "attention_head") return gradientAt(state, "attn.qk_probs", layer, size);
  const family = familyOf(state.ctx, kind as Family, state.where);
  const records =
    family === state.ctx.mlpAutoencoder ? runOf(state).mlpLatents : runOf(state).attentionLatents;
  return records.get(layer!)?.gradient ?? new Float32Array(size);
}

/** activationIndexForWithinLayerGrad: ["All", latent] of the attention autoencoder at a layer. */
function withinLayerLatent(state: SubState, at: string): { layer: number; latent: number } {
  const index = state.request.inferenceRequestSpec.activationIndexForWithinLayerGrad;
  if (!index) {
    throw new TdbRequestError(
      `${at}: attn_write_to_latent_summed_over_heads needs activationIndexForWithinLayerGrad naming the attention latent ({activationLocationType: "online_attention_autoencoder_latent", tensorIndices: ["All", latent], layerIndex})`,
    );
  }
  const { ctx } = state;
  const where = `${state.where}: activationIndexForWithinLayerGrad`;
  const location = index.activationLocationType;
  if (location !== "online_autoencoder_latent" && location !== "online_attention_autoencoder_latent") {
    throw new TdbRequestError(`${where}: must name an attention autoencoder latent, got ${location}`);
  }
  // The node page sends the generic location even with both autoencoders loaded: the DST names the family.
  const family = ctx.attentionAutoencoder;
  if (family?.site !== "resid_delta_attn") {
    throw new TdbRequestError(
      `${where}: needs an attention-write (resid_delta_attn) autoencoder, and the server has none`,
    );
  }
  const layer = checkLayer(ctx, index.layerIndex, where);
  const ae = family.byLayer.get(layer);
  if (!ae) throw new TdbRequestError(`${where}: the ${family.name} autoencoder has no layer ${layer}`);
  const [first, latent] = index.tensorIndices;
  if (index.tensorIndices.length !== 2 || first !== "All" || latent === "All" || latent === undefined) {
    throw new TdbRequestError(`${where}: tensorIndices must be ["All", latent]`);
  }
  if (latent >= ae.nLatents)
    throw new TdbRequestError(`${where}: latent ${latent} is outside [0, ${ae.nLatents})`);
  return { layer, latent };
}

// ---------------------------------------------------------------------------------------------------------
// vocab_token_write_to_input_direction: the node's pre-activation with the raw token embedding as its input

function mlpActivation(model: Gpt2Model, x: number): number {
  switch (model.activation) {
    case "gelu_new":
      return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
    case "gelu":
      return 0.5 * x * (1 + erf(x / Math.SQRT2));
    case "relu":
      return Math.max(x, 0);
  }
}

/** Numerical Recipes' erfc Chebyshev fit (|error| < 1.2e-7), enough for float32 activations. */
const ERFC_COEFFICIENTS = [
  -1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398, 1.48851587,
  -0.82215223, 0.17087277,
];

function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  let poly = 0;
  for (let i = ERFC_COEFFICIENTS.length - 1; i >= 0; i--) poly = ERFC_COEFFICIENTS[i] + t * poly;
  const erfc = t * Math.exp(-z * z + poly);
  return x >= 0 ? 1 - erfc : erfc - 1;
}

const vocabRowCache = new WeakMap<Gpt2Model, Map<string, Float32Array>>();

/** [V] scores of every vocabulary token for the node named by the request's single ablation spec. */
function vocabTokenWriteToInputDirection(state: SubState, at: string): Float32Array {
  const { ctx } = state;
  const { model } = ctx;
  const specs = state.request.inferenceRequestSpec.ablationSpecs ?? [];
  if (specs.length !== 1) {
    throw new TdbRequestError(
      `${at}: vocab_token_write_to_input_direction needs exactly one ablation spec naming the node (mlp.post_act or an online MLP autoencoder latent, [token, index]); got ${specs.length}`,
    );
  }
  const { index } = specs[0];
  const location = index.activationLocationType;
  const where = `${at}: vocab_token_write_to_input_direction: ablationSpecs[0]`;
  if (
    location !== "mlp.post_act" &&
    location !== "online_autoencoder_latent" &&
    location !== "online_mlp_autoencoder_latent"
  ) {
    throw new TdbRequestError(
      `${where}: the node must be mlp.post_act or an online MLP autoencoder latent, got ${location}`,
    );
  }
  const layer = checkLayer(ctx, index.layerIndex, where);
  const component = index.tensorIndices[1];
  if (typeof component !== "number")
    throw new TdbRequestError(`${where}: tensorIndices[1] must be an integer`);
  let family: AutoencoderFamily | null = null;
  if (location !== "mlp.post_act") {
    const found = latentKindOf(ctx, location, where);
    if (found.kind !== "mlp_latent") throw new TdbRequestError(`${where}: needs an MLP autoencoder latent`);
    family = found.family;
    const ae = family.byLayer.get(layer);
    if (!ae) throw new TdbRequestError(`${where}: the ${family.name} autoencoder has no layer ${layer}`);
    if (component >= ae.nLatents)
      throw new TdbRequestError(`${where}: latent ${component} is outside [0, ${ae.nLatents})`);
  } else if (component >= model.config.nInner) {
    throw new TdbRequestError(`${where}: neuron ${component} is outside [0, ${model.config.nInner})`);
  }
  const key = `${family ? `latent:${family.name}` : "neuron"}|${layer}|${component}`;
  let perModel = vocabRowCache.get(model);
  if (!perModel) {
    perModel = new Map();
    vocabRowCache.set(model, perModel);
  }
  const cached = perModel.get(key);
  if (cached) return cached;
  const row = family
    ? latentInputScores(model, family, layer, component)
    : neuronInputScores(model, layer, component);
  perModel.set(key, row);
  return row;
}

/** (LN2(W_tok[v])·W_in + b_in)[n] for every token v (no position embedding). */
function neuronInputScores(model: Gpt2Model, layer: number, neuron: number): Float32Array {
  const { nEmbd: d, nInner: F, vocabSize: V, layerNormEpsilon: eps } = model.config;
  const lw = model.weights.layers[layer];
  const emb = model.weights.tokenEmbedding;
  const gw = new Float64Array(d);
  let bias = lw.fcBias[neuron];
  for (let i = 0; i < d; i++) {
    const w = lw.fcWeight[i * F + neuron];
    gw[i] = lw.ln2Gain[i] * w;
    bias += lw.ln2Bias[i] * w;
  }
  const out = new Float32Array(V);
  for (let v = 0; v < V; v++) {
    const x = emb.subarray(v * d, (v + 1) * d);
    let mean = 0;
    for (let i = 0; i < d; i++) mean += x[i];
    mean /= d;
    let variance = 0;
    let dot = 0;
    for (let i = 0; i < d; i++) {
      const c = x[i] - mean;
      variance += c * c;
      dot += c * gw[i];
    }
    out[v] = dot / Math.sqrt(variance / d + eps) + bias;
  }
  return out;
}

/**
 * The latent's encoder pre-activation when the MLP block (or its post-activation) is fed the raw token
 * embedding: mlp_post_act autoencoders encode GELU(W_in·LN2(W_tok[v]) + b_in); resid_delta_mlp ones encode
 * the block's output including b_out.
 */
function latentInputScores(
  model: Gpt2Model,
  family: AutoencoderFamily,
  layer: number,
  latent: number,
): Float32Array {
  const { nEmbd: d, nInner: F, vocabSize: V, layerNormEpsilon: eps } = model.config;
  const lw = model.weights.layers[layer];
  const ae: SparseAutoencoder = family.byLayer.get(layer)!;
  const enc = ae.encoderRow(latent);
  // Collapse what follows the activation into one vector over the F neurons plus a constant.
  const readout = new Float64Array(F);
  let constant = ae.latentBias[latent];
  if (family.site === "mlp_post_act") {
    for (let n = 0; n < F; n++) readout[n] = enc[n];
    for (let n = 0; n < F; n++) constant -= ae.inputBias[n] * enc[n];
  } else if (family.site === "resid_delta_mlp") {
    for (let n = 0; n < F; n++) {
      let acc = 0;
      for (let j = 0; j < d; j++) acc += lw.projWeight[n * d + j] * enc[j];
      readout[n] = acc;
    }
    for (let j = 0; j < d; j++) constant += (lw.projBias[j] - ae.inputBias[j]) * enc[j];
  } else {
    throw new TdbRequestError("vocab_token_write_to_input_direction is defined for MLP autoencoders only");
  }
  const out = new Float32Array(V);
  const chunk = 256;
  const h = new Float32Array(chunk * d);
  const pre = new Float32Array(chunk * F);
  for (let start = 0; start < V; start += chunk) {
    const rows = Math.min(chunk, V - start);
    for (let r = 0; r < rows; r++) {
      const x = model.weights.tokenEmbedding.subarray((start + r) * d, (start + r + 1) * d);
      let mean = 0;
      for (let i = 0; i < d; i++) mean += x[i];
      mean /= d;
      let variance = 0;
      for (let i = 0; i < d; i++) variance += (x[i] - mean) ** 2;
      const scale = Math.sqrt(variance / d + eps);
      for (let i = 0; i < d; i++) h[r * d + i] = ((x[i] - mean) / scale) * lw.ln2Gain[i] + lw.ln2Bias[i];
    }
    defaultGemm().nn(h.subarray(0, rows * d), lw.fcWeight, pre.subarray(0, rows * F), rows, d, F);
    for (let r = 0; r < rows; r++) {
      let acc = constant;
      for (let n = 0; n < F; n++) acc += mlpActivation(model, pre[r * F + n] + lw.fcBias[n]) * readout[n];
      out[start + r] = acc;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Nodes on the wire

interface WireNode {
  nodeType: NodeType;
  layer: number | null;
  tensorIndices: number[];
  passType: PassType;
}

const wireNodeKey = (n: WireNode): string =>
  `${n.nodeType}|${n.layer}|${n.tensorIndices.join(",")}|${n.passType}`;

const toWireIndex = (n: WireNode): MirroredNodeIndexOut => ({
  nodeType: n.nodeType,
  tensorIndices: n.tensorIndices,
  layerIndex: n.layer,
  passType: n.passType,
});

/** The node-table node a wire node names (negative token indices count from the end), or null. */
function toNodeRef(ctx: BatchedContext, node: WireNode, T: number): NodeRef | null {
  const ti = node.tensorIndices.map((x, i) => (i === 0 && x < 0 ? x + T : x));
  switch (node.nodeType) {
    case "layer":
      return node.layer === null && ti.length === 2
        ? { kind: "embedding", layer: null, tensorIndices: ti }
        : null;
    case "mlp_neuron":
      return ti.length === 2 ? { kind: "mlp_neuron", layer: node.layer, tensorIndices: ti } : null;
    case "attention_head":
      return ti.length === 3 ? { kind: "attention_head", layer: node.layer, tensorIndices: ti } : null;
    case "mlp_autoencoder_latent":
      return { kind: "mlp_latent", layer: node.layer, tensorIndices: ti };
    case "attention_autoencoder_latent":
      return { kind: "attention_latent", layer: node.layer, tensorIndices: ti };
    case "autoencoder_latent":
      if (Boolean(ctx.mlpAutoencoder) === Boolean(ctx.attentionAutoencoder)) return null;
      return {
        kind: ctx.mlpAutoencoder ? "mlp_latent" : "attention_latent",
        layer: node.layer,
        tensorIndices: ti,
      };
    default:
      return null;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Multiple top-k

/** Python-style token index (−1 = last token), checked against the prompt. */
function resolveTokenIndex(tokenIndex: number, T: number, at: string): number {
  const t = tokenIndex < 0 ? tokenIndex + T : tokenIndex;
  if (t < 0 || t >= T)
    throw new TdbRequestError(`${at}: tokenIndex ${tokenIndex} is outside the prompt's ${T} tokens`);
  return t;
}

/** The values of one token row of a DST layer (the first dimension sliced at t). */
function rowOf(entry: DstTensor["layers"][number], t: number): Float32Array {
  const width = entry.values.length / entry.shape[0];
  return entry.values.subarray(t * width, (t + 1) * width);
}

/** The logits row of one token, computed by the forward pass. */
function logitsRow(state: SubState, t: number): Float32Array {
  const forward = runOf(state).forward;
  const V = state.ctx.model.config.vocabSize;
  const i = forward.logitRows.indexOf(t);
  if (i < 0) throw new Error(`logits of token ${t} were not computed`);
  return forward.logits.subarray(i * V, (i + 1) * V);
}

function selectTopK(state: SubState, spec: TopKSpec, at: string): WireNode[] {
  const T = state.tokens.length;
  const t = spec.tokenIndex === null ? null : resolveTokenIndex(spec.tokenIndex, T, at);
  const groups = Object.entries(spec.dstListByGroupId).map(([, dsts]) =>
    (dsts ?? []).map((dst): SelectionSource<WireNode> => {
      const found = requireDst(dst, at);
      if (dst === "logits" && t !== null) {
        return {
          arrays: [logitsRow(state, t)],
          node: (_source, index) => ({
            nodeType: found.nodeType,
            layer: null,
            tensorIndices: [spec.tokenIndex!, index],
            passType: spec.passType,
          }),
        };
      }
      const tensor = getDst(state, dst, spec.passType, at);
      return {
        arrays: tensor.layers.map((entry) => (t === null ? entry.values : rowOf(entry, t))),
        node: (source, index) => {
          const entry = tensor.layers[source];
          const tensorIndices =
            t === null
              ? unflatten(index, entry.shape)
              : [spec.tokenIndex!, ...unflatten(index, entry.shape.slice(1))];
          return { nodeType: tensor.nodeType, layer: entry.layer, tensorIndices, passType: spec.passType };
        },
      };
    }),
  );
  return selectTopAndBottomNodes(groups, spec.topAndBottomK ?? null, wireNodeKey);
}

function nodeValue(
  state: SubState,
  dsts: readonly DerivedScalarType[],
  spec: TopKSpec,
  node: WireNode,
  at: string,
): number {
  const T = state.tokens.length;
  for (const dst of dsts) {
    const found = requireDst(dst, at);
    if (found.nodeType !== node.nodeType) continue;
    const [first, ...rest] = node.tensorIndices;
    const t = first < 0 ? first + T : first;
    if (dst === "logits" && spec.tokenIndex !== null) {
      // A row another sub-request's spec of this name asked for, absent here, has no value (0).
      const computed = runOf(state).forward.logitRows.includes(t);
      return computed ? finiteOr999(logitsRow(state, t)[rest[0]]) : 0;
    }
    const tensor = getDst(state, dst, spec.passType, at);
    const entry = tensor.layers.find((e) => e.layer === node.layer);
    if (!entry || node.tensorIndices.length !== entry.shape.length) return 0;
    const indices = [t, ...rest];
    if (indices.some((x, i) => x < 0 || x >= entry.shape[i])) return 0;
    let flat = 0;
    for (let i = 0; i < indices.length; i++) flat = flat * entry.shape[i] + indices[i];
    // TDB asserts finite activations; masked attention logits (−∞) are sent as −999 like TensorND values.
    return finiteOr999(entry.values[flat]);
  }
  return 0;
}

function toTensorND(values: Float64Array, shape: readonly number[]): TensorND {
  const f = (i: number) => finiteOr999(values[i]);
  switch (shape.length) {
    case 0:
      return { tensorType: "tensor_0d", value: f(0) };
    case 1:
      return { tensorType: "tensor_1d", value: Array.from({ length: shape[0] }, (_, i) => f(i)) };
    case 2:
      return {
        tensorType: "tensor_2d",
        value: Array.from({ length: shape[0] }, (_, i) =>
          Array.from({ length: shape[1] }, (_, j) => f(i * shape[1] + j)),
        ),
      };
    default:
      return {
        tensorType: "tensor_3d",
        value: Array.from({ length: shape[0] }, (_, i) =>
          Array.from({ length: shape[1] }, (_, j) =>
            Array.from({ length: shape[2] }, (_, k) => f((i * shape[1] + j) * shape[2] + k)),
          ),
        ),
      };
  }
}

/** Sum over all layers and over every dimension not kept (TDB's intermediate sums). */
function intermediateSum(state: SubState, dst: DerivedScalarType, spec: TopKSpec, at: string): TensorND {
  const found = requireDst(dst, at);
  const keep = spec.dimensionsToKeepForIntermediateSum;
  const keptAxes = found.dims.flatMap((dim, axis) => (keep.includes(dim) ? [axis] : []));
  if (dst === "logits" && !keptAxes.includes(1)) {
    // Σ_v logits[t, v] = ln_f(x)[t] · Σ_v W_U[v]: exact, and needs no row of logits to be computed.
    const rows = logitRowSums(state.ctx, runOf(state));
    if (keptAxes.length === 0)
      return { tensorType: "tensor_0d", value: finiteOr999(rows.reduce((a, b) => a + b, 0)) };
    return toTensorND(rows, [rows.length]);
  }
  const tensor = getDst(state, dst, spec.passType, at);
  const shape = keptAxes.map((axis) => tensor.layers[0].shape[axis]);
  const total = new Float64Array(shape.reduce((a, b) => a * b, 1));
  for (const entry of tensor.layers) {
    const { shape: full, values } = entry;
    const strides = full.map((_, axis) => full.slice(axis + 1).reduce((a, b) => a * b, 1));
    for (let flat = 0; flat < values.length; flat++) {
      let target = 0;
      for (const axis of keptAxes)
        target = target * full[axis] + (Math.floor(flat / strides[axis]) % full[axis]);
      total[target] += values[flat];
    }
  }
  return toTensorND(total, shape);
}

function topKResponse(
  state: SubState,
  spec: TopKSpec,
  nodes: readonly WireNode[],
  at: string,
): MultipleTopKDerivedScalarsResponseData {
  const activationsByGroupId: Record<string, number[]> = {};
  const intermediateSumActivationsByDstByGroupId: Record<string, Record<string, TensorND>> = {};
  for (const [group, dsts] of Object.entries(spec.dstListByGroupId)) {
    const list = dsts ?? [];
    activationsByGroupId[group] = nodes.map((n) => nodeValue(state, list, spec, n, at));
    const sums: Record<string, TensorND> = {};
    for (const dst of list) sums[dst] = intermediateSum(state, dst, spec, at);
    intermediateSumActivationsByDstByGroupId[group] = sums;
  }
  const V = state.ctx.model.config.vocabSize;
  const vocab = nodes.some((n) => n.nodeType === "vocab_token")
    ? nodes.map((n) => {
        const id = n.tensorIndices[n.tensorIndices.length - 1];
        return n.nodeType === "vocab_token" && id < V ? state.ctx.tokenizer.tokenString(id) : null;
      })
    : null;
  return {
    responseDataType: "multiple_top_k_derived_scalars_response_data",
    activationsByGroupId,
    nodeIndices: nodes.map(toWireIndex),
    vocabTokenStringsForIndices: vocab,
    intermediateSumActivationsByDstByGroupId,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Scored tokens and token-pair attribution (over the node list of the spec they depend on)

function scoredTokensResponse(
  state: SubState,
  spec: ScoredTokensSpec,
  nodes: readonly WireNode[],
  at: string,
): ScoredTokensResponseData {
  const { ctx } = state;
  const T = state.tokens.length;
  const excluded = ctx.excludedTokenIds ?? defaultExcludedTokenIds(ctx.tokenizer);
  const refs = nodes.map((n) => toNodeRef(ctx, n, T));
  let topTokensList: (TopTokens | null)[];
  switch (spec.tokenScoringType) {
    case "upvoted_output_tokens": {
      refs.forEach((ref, i) => {
        if (!ref) {
          const n = nodes[i];
          throw new TdbRequestError(
            `${at}: upvoted_output_tokens cannot score ${n.nodeType} node [${n.tensorIndices.join(", ")}]${n.layer === null ? "" : ` at layer ${n.layer}`}; it scores embeddings (layer nodes without a layer), MLP neurons, attention heads [t, u, h] and autoencoder latents`,
          );
        }
      });
      topTokensList = upvotedOutputTokens(ctx, runOf(state), refs as NodeRef[], excluded, spec.numTokens);
      break;
    }
    case "input_tokens_that_upvote_mlp": {
      const eligible = refs.map((r) =>
        r && (r.kind === "mlp_neuron" || r.kind === "mlp_latent") ? r : null,
      );
      const scored = inputTokensThatUpvoteMlp(
        ctx,
        runOf(state),
        eligible.filter((r): r is NodeRef => r !== null),
        excluded,
        spec.numTokens,
      );
      let next = 0;
      topTokensList = eligible.map((r) => (r ? scored[next++] : null));
      break;
    }
    default:
      // TDB disables the attention Q/K token reads: every node gets null.
      topTokensList = nodes.map(() => null);
  }
  return {
    responseDataType: "scored_tokens_response_data",
    nodeIndices: nodes.map(toWireIndex),
    topTokensList,
  };
}

function tokenPairResponse(
  state: SubState,
  spec: TokenPairSpec,
  nodes: readonly WireNode[],
): TokenPairAttributionResponseData {
  const T = state.tokens.length;
  const refs = nodes.map((n) => toNodeRef(state.ctx, n, T));
  const placeholder: NodeRef = { kind: "embedding", layer: null, tensorIndices: [0, 0] };
  const list = tokenPairAttribution(
    state.ctx,
    runOf(state),
    refs.map((r) => r ?? placeholder),
    spec.numTokensAttendedTo,
  );
  return {
    responseDataType: "token_pair_attribution_response_data",
    nodeIndices: nodes.map(toWireIndex),
    topTokensAttendedToList: list,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Single-DST specs of the node pages

function derivedScalarsResponse(
  state: SubState,
  spec: DerivedScalarsSpec,
  at: string,
): DerivedScalarsResponseData {
  const { ctx } = state;
  const tensor = getDst(state, spec.dst, spec.passType, at);
  const layerless = tensor.layers.length === 1 && tensor.layers[0].layer === null;
  if (layerless && spec.layerIndex !== null) {
    throw new TdbRequestError(
      `${at}: ${spec.dst} has no layers; layerIndex must be null, got ${spec.layerIndex}`,
    );
  }
  const entry = tensor.layers.find((e) => e.layer === spec.layerIndex);
  if (!entry) {
    throw new TdbRequestError(
      `${at}: ${spec.dst} has values at layers [${tensor.layers.map((e) => e.layer).join(", ")}]; got layerIndex ${spec.layerIndex}`,
    );
  }
  const width = entry.shape[1];
  if (spec.activationIndex >= width) {
    throw new TdbRequestError(
      `${at}: activationIndex ${spec.activationIndex} is outside [0, ${width}) for ${spec.dst}`,
    );
  }
  const rows = entry.shape[0];
  const activations = Array.from({ length: rows }, (_, t) => entry.values[t * width + spec.activationIndex]);
  const nodeIndices = activations.map(
    (_, t): MirroredNodeIndexOut => ({
      nodeType: tensor.nodeType,
      tensorIndices: [t, spec.activationIndex],
      layerIndex: spec.layerIndex,
      passType: spec.passType,
    }),
  );
  let normalizedActivations: number[] | null = null;
  const recordId = spec.normalizeActivationsUsingNeuronRecord;
  if (recordId && ctx.normalizationRecord) {
    const record = ctx.normalizationRecord(recordId);
    if (record && record.maxActivation > 0) {
      normalizedActivations = activations.map((a) => Math.max(a, 0) / record.maxActivation);
    }
  }
  let topTokensData: TopTokens | null = null;
  if (spec.numTopTokens != null) {
    const excluded = ctx.excludedTokenIds ?? defaultExcludedTokenIds(ctx.tokenizer);
    if (spec.dst === "vocab_token_write_to_input_direction") {
      // Input tokens: the same score row at every token; no flipping (TDB forces a positive read direction).
      const row = rowOf(entry, 0);
      topTokensData = row.every((v) => v === 0) ? null : topTokens(ctx, row, excluded, spec.numTopTokens);
    } else {
      const node = topTokensNode(state, spec, at);
      const first = activations[0];
      if (first !== 0) {
        const [scores] = outputTokenScores(ctx, runOf(state), [node]);
        const listed = topTokens(ctx, scores, excluded, spec.numTopTokens);
        // A negative activation writes the opposite direction: TDB swaps the lists (scalars unchanged).
        topTokensData = first < 0 ? { top: listed.bottom, bottom: listed.top } : listed;
      }
    }
  }
  return {
    responseDataType: "derived_scalars_response_data",
    activations,
    normalizedActivations,
    nodeIndices,
    topTokens: topTokensData,
  };
}

/** Output tokens come from a component's write: an MLP neuron's or a latent's activation DST. */
function topTokensFamily(spec: DerivedScalarsSpec): "neuron" | Family | null {
  if (spec.passType !== "forward") return null;
  if (spec.dst === "mlp_post_act") return "neuron";
  const metric = METRIC_DSTS[spec.dst];
  if (metric?.group !== "activation") return null;
  return metric.kind === "mlp" || metric.kind === "attention" || metric.kind === "single"
    ? metric.kind
    : null;
}

function checkTopTokensDst(spec: DerivedScalarsSpec, at: string): void {
  if (spec.dst === "vocab_token_write_to_input_direction" || topTokensFamily(spec) !== null) return;
  throw new TdbRequestError(
    `${at}: numTopTokens is available for dst mlp_post_act, online_*autoencoder_latent (output tokens) and vocab_token_write_to_input_direction (input tokens); got ${spec.dst}${spec.passType === "backward" ? " (backward pass)" : ""}`,
  );
}

/** The component whose write vector gives /derived_scalars' output tokens: the node at token 0. */
function topTokensNode(state: SubState, spec: DerivedScalarsSpec, at: string): NodeRef {
  const layer = spec.layerIndex;
  const tensorIndices = [0, spec.activationIndex];
  const family = topTokensFamily(spec);
  if (family === null) {
    checkTopTokensDst(spec, at);
    throw new Error(`no output tokens for ${spec.dst}`);
  }
  if (family === "neuron") return { kind: "mlp_neuron", layer, tensorIndices };
  const autoencoders = familyOf(state.ctx, family, at);
  return {
    kind: autoencoders === state.ctx.mlpAutoencoder ? "mlp_latent" : "attention_latent",
    layer,
    tensorIndices,
  };
}

function derivedAttentionResponse(
  state: SubState,
  spec: DerivedAttentionSpec,
  at: string,
): DerivedAttentionScalarsResponseData {
  const { ctx } = state;
  const T = state.tokens.length;
  let matrix: Float32Array;
  let width: number;
  let column: number;
  if (spec.dst === "unflattened_attn_write_norm") {
    const layer = checkLayer(ctx, spec.layerIndex, at);
    const H = ctx.model.config.nHead;
    if (spec.activationIndex >= H)
      throw new TdbRequestError(`${at}: head ${spec.activationIndex} is outside [0, ${H})`);
    matrix = layerMetrics(state, "attention_head", layer).metrics.write_norm;
    width = H;
    column = spec.activationIndex;
  } else {
    const { layer } = withinLayerLatent(state, at);
    if (spec.layerIndex !== null && spec.layerIndex !== layer) {
      throw new TdbRequestError(
        `${at}: layerIndex ${spec.layerIndex} differs from activationIndexForWithinLayerGrad's layer ${layer}`,
      );
    }
    matrix = getDst(state, spec.dst, "forward", at).layers[0].values;
    width = 1;
    column = 0;
  }
  const rows = Array.from({ length: T }, (_, t) =>
    Array.from({ length: t + 1 }, (_, u) => matrix[(t * T + u) * width + column]),
  );
  const sequences: (readonly (readonly number[])[])[] = [rows];
  const recordId = spec.normalizeActivationsUsingNeuronRecord;
  if (recordId && ctx.normalizationRecord) {
    const record = ctx.normalizationRecord(recordId);
    if (record?.attentionSequences) sequences.push(...record.attentionSequences);
  }
  const tokens = ctx.tokenizer.tokenStrings(state.tokens);
  return {
    responseDataType: "derived_attention_scalars_response_data",
    tokenAndAttentionScalarsList: normalizeAttentionTokenScalars(sequences)[0].map((stats, i) => ({
      token: tokens[i],
      ...stats,
    })),
  };
}

/**
 * TDB's normalize_attention_token_scalars: per token j, the sum and max of its own row ("in": j attending to
 * 0..j) and of entry j of rows i ≥ j ("out": later tokens attending to j). The raw scalars and each statistic
 * are scaled by max(x / (M − 1e-5), 0), M = the largest relu'd value of that quantity over all sequences
 * (TDB's formula; when every value is ≤ 0, M = 0 and negative values scale to |x|·1e5, as in TDB).
 */
export function normalizeAttentionTokenScalars(
  sequences: readonly (readonly (readonly number[])[])[],
): Omit<TokenAndAttentionScalars, "token">[][] {
  const scale = (max: number) => (x: number) => Math.max(x / (max - 1e-5), 0);
  const maxRelu = (values: Iterable<number>) => {
    let m = 0;
    for (const v of values) m = Math.max(m, v);
    return m;
  };
  const stats = sequences.map((rows) => {
    const n = rows.length;
    const totalIn = rows.map((r) => r.reduce((a, b) => a + b, 0));
    const maxIn = rows.map((r) => Math.max(...r));
    const totalOut: number[] = [];
    const maxOut: number[] = [];
    for (let j = 0; j < n; j++) {
      const column: number[] = [];
      for (let i = j; i < n; i++) if (j < rows[i].length) column.push(rows[i][j]);
      totalOut.push(column.reduce((a, b) => a + b, 0));
      maxOut.push(Math.max(...column));
    }
    return { totalIn, maxIn, totalOut, maxOut };
  });
  const all = <K extends keyof (typeof stats)[number]>(key: K) => stats.flatMap((s) => s[key]);
  const scalarScale = scale(maxRelu(sequences.flatMap((rows) => rows.flat())));
  const totalInScale = scale(maxRelu(all("totalIn")));
  const maxInScale = scale(maxRelu(all("maxIn")));
  const totalOutScale = scale(maxRelu(all("totalOut")));
  const maxOutScale = scale(maxRelu(all("maxOut")));
  return sequences.map((rows, s) =>
    rows.map((row, i) => {
      const st = stats[s];
      return {
        scalars: [...row],
        normalizedScalars: row.map(scalarScale),
        totalScalarIn: st.totalIn[i],
        normalizedTotalScalarIn: totalInScale(st.totalIn[i]),
        maxScalarIn: st.maxIn[i],
        normalizedMaxScalarIn: maxInScale(st.maxIn[i]),
        totalScalarOut: st.totalOut[i],
        normalizedTotalScalarOut: totalOutScale(st.totalOut[i]),
        maxScalarOut: st.maxOut[i],
        normalizedMaxScalarOut: maxOutScale(st.maxOut[i]),
      };
    }),
  );
}

// ---------------------------------------------------------------------------------------------------------
// Entry points

/** Logit rows the specs of a sub-request read: "all", or the listed tokens. */
function logitRowsNeeded(request: InferenceSubRequest, T: number, where: string): "all" | Set<number> {
  const rows = new Set<number>();
  for (const [name, spec] of Object.entries(request.processingRequestSpecByName)) {
    const at = specWhere(where, name);
    if (spec.specType === "derived_scalars_request_spec" && spec.dst === "logits") return "all";
    if (spec.specType !== "multiple_top_k_derived_scalars_request_spec") continue;
    const dsts = Object.values(spec.dstListByGroupId).flatMap((list) => list ?? []);
    if (!dsts.includes("logits")) continue;
    if (spec.tokenIndex === null || spec.dimensionsToKeepForIntermediateSum.includes("vocab_size"))
      return "all";
    rows.add(resolveTokenIndex(spec.tokenIndex, T, at));
  }
  return rows;
}

export function handleBatched(ctx: BatchedContext, request: BatchedRequest): BatchedResponse {
  const subs = request.inferenceSubRequests;
  // Step 0 (TDB's order): every spec is checked, and every prompt tokenized, before any inference.
  const states: SubState[] = subs.map((sub, i) => {
    const where = subs.length > 1 ? `inferenceSubRequests[${i}]` : "request";
    for (const [name, spec] of Object.entries(sub.processingRequestSpecByName)) {
      checkSpec(ctx, spec, specWhere(where, name));
    }
    const tokens = ctx.tokenizer.encode(sub.inferenceRequestSpec.prompt);
    return {
      ctx,
      where,
      request: sub,
      tokens,
      ablations: [],
      fakeGradient: [],
      trace: null,
      run: null,
      logitRows: new Set<number>(),
      cache: new Map(),
      metrics: new Map(),
    };
  });
  checkTopKPromptLengths(
    ctx,
    states
      .filter((s) =>
        Object.values(s.request.processingRequestSpecByName).some(
          (spec) => spec.specType === "multiple_top_k_derived_scalars_request_spec",
        ),
      )
      .map((s) => s.tokens),
  );
  checkContextWindow(
    ctx,
    states.map((s) => s.tokens),
  );
  for (const s of states) {
    const spec = s.request.inferenceRequestSpec;
    const T = s.tokens.length;
    Object.assign(s, convertAblations(ctx, spec, T, s.where));
    s.trace = convertTrace(ctx, spec, s.where);
    s.logitRows = logitRowsNeeded(s.request, T, s.where);
  }
  for (const s of states) checkGradients(s);
  const losses = states.map((s) => convertLoss(ctx, s.request.inferenceRequestSpec));

  const started = now();
  states.forEach((s, i) => {
    const T = s.tokens.length;
    s.run = runInference(ctx, {
      tokens: s.tokens,
      ablations: s.ablations,
      // No loss and no trace: a zero loss keeps the pass well defined; gradient DSTs are refused (needsGradient).
      loss: losses[i] ?? { name: "zero", targets: [], distractors: null },
      trace: s.trace,
      logitTokens: s.logitRows === "all" ? Array.from({ length: T }, (_, t) => t) : [...s.logitRows],
    });
  });
  const inferenceTime = (now() - started) / 1000;

  // Node lists of the multiple-top-k specs: each sub-request's selection, unioned across the batch by name.
  const nodesBySpec = new Map<string, WireNode[][]>();
  for (const s of states) {
    for (const [name, spec] of Object.entries(s.request.processingRequestSpecByName)) {
      if (spec.specType !== "multiple_top_k_derived_scalars_request_spec") continue;
      const list = nodesBySpec.get(name) ?? [];
      list.push(selectTopK(s, spec, specWhere(s.where, name)));
      nodesBySpec.set(name, list);
    }
  }
  const unioned = new Map([...nodesBySpec].map(([name, lists]) => [name, unionNodes(lists, wireNodeKey)]));
  const nodesFor = (name: string, at: string): WireNode[] => {
    const nodes = unioned.get(name);
    if (!nodes) throw new TdbRequestError(`${at}: dependsOnSpecName "${name}" names no multiple-top-k spec`);
    return nodes;
  };

  return {
    inferenceSubResponses: states.map((s, i) => {
      const run = runOf(s);
      const data: InferenceAndTokenData = {
        inferenceTime,
        memoryUsedBefore: null,
        memoryUsedAfter: null,
        log: null,
        loss: losses[i] ? run.loss : null,
        activationValueForBackwardPass: run.activationValueForBackwardPass,
        tokensAsInts: s.tokens,
        tokensAsStrings: ctx.tokenizer.tokenStrings(s.tokens),
      };
      const byName: Record<string, ProcessingResponseData> = {};
      for (const [name, spec] of Object.entries(s.request.processingRequestSpecByName)) {
        const at = specWhere(s.where, name);
        switch (spec.specType) {
          case "multiple_top_k_derived_scalars_request_spec":
            byName[name] = topKResponse(s, spec, nodesFor(name, at), at);
            break;
          case "scored_tokens_request_spec":
            byName[name] = scoredTokensResponse(s, spec, nodesFor(spec.dependsOnSpecName, at), at);
            break;
          case "token_pair_attribution_request_spec":
            byName[name] = tokenPairResponse(s, spec, nodesFor(spec.dependsOnSpecName, at));
            break;
          case "derived_scalars_request_spec":
            byName[name] = derivedScalarsResponse(s, spec, at);
            break;
          case "derived_attention_scalars_request_spec":
            byName[name] = derivedAttentionResponse(s, spec, at);
            break;
        }
      }
      return { inferenceResponse: { inferenceAndTokenData: data }, processingResponseDataByName: byName };
    }),
  };
}

/** One sub-request with one spec named as TDB names it (the spec type), as the non-batched routes do. */
function single<K extends ProcessingRequestSpec["specType"]>(
  ctx: BatchedContext,
  inferenceRequestSpec: InferenceRequestSpec,
  spec: Spec<K>,
): { data: InferenceAndTokenData; response: ProcessingResponseData } {
  const name = spec.specType;
  const batched = handleBatched(ctx, {
    inferenceSubRequests: [{ inferenceRequestSpec, processingRequestSpecByName: { [name]: spec } }],
  });
  const sub = batched.inferenceSubResponses[0];
  return {
    data: sub.inferenceResponse.inferenceAndTokenData,
    response: sub.processingResponseDataByName[name],
  };
}

function expect<T extends ProcessingResponseData["responseDataType"]>(
  response: ProcessingResponseData,
  type: T,
): Extract<ProcessingResponseData, { responseDataType: T }> {
  if (response.responseDataType !== type)
    throw new Error(`expected ${type}, got ${response.responseDataType}`);
  return response as Extract<ProcessingResponseData, { responseDataType: T }>;
}

/** POST /derived_scalars */
export function handleDerivedScalars(
  ctx: BatchedContext,
  request: DerivedScalarsRequest,
): DerivedScalarsResponse {
  const { data, response } = single(ctx, request.inferenceRequestSpec, request.derivedScalarsRequestSpec);
  return {
    inferenceAndTokenData: data,
    derivedScalarsResponseData: expect(response, "derived_scalars_response_data"),
  };
}

/** POST /derived_attention_scalars */
export function handleDerivedAttentionScalars(
  ctx: BatchedContext,
  request: DerivedAttentionScalarsRequest,
): DerivedAttentionScalarsResponse {
  const { data, response } = single(
    ctx,
    request.inferenceRequestSpec,
    request.derivedAttentionScalarsRequestSpec,
  );
  return {
    inferenceAndTokenData: data,
    derivedAttentionScalarsResponseData: expect(response, "derived_attention_scalars_response_data"),
  };
}

/** POST /multiple_top_k_derived_scalars */
export function handleMultipleTopKDerivedScalars(
  ctx: BatchedContext,
  request: MultipleTopKDerivedScalarsRequest,
): MultipleTopKDerivedScalarsResponse {
  const { data, response } = single(
    ctx,
    request.inferenceRequestSpec,
    request.multipleTopKDerivedScalarsRequestSpec,
  );
  return {
    inferenceAndTokenData: data,
    multipleTopKDerivedScalarsResponseData: expect(response, "multiple_top_k_derived_scalars_response_data"),
  };
}

/**
 * POST /scored_tokens. A lone scored-tokens spec has no multiple-top-k spec to depend on, so this route always
 * answers with a TdbRequestError (TDB fails too); it exists for route parity. Use /batched instead.
 */
export function handleScoredTokens(ctx: BatchedContext, request: ScoredTokensRequest): ScoredTokensResponse {
  const { data, response } = single(ctx, request.inferenceRequestSpec, request.scoredTokensRequestSpec);
  return {
    inferenceAndTokenData: data,
    scoredTokensResponseData: expect(response, "scored_tokens_response_data"),
  };
}

/** POST /token_pair_attribution: like /scored_tokens, it depends on a spec the route cannot carry. */
export function handleTokenPairAttribution(
  ctx: BatchedContext,
  request: TokenPairAttributionRequest,
): TokenPairAttributionResponse {
  const { data, response } = single(
    ctx,
    request.inferenceRequestSpec,
    request.tokenPairAttributionRequestSpec,
  );
  return {
    inferenceAndTokenData: data,
    tokenPairAttributionResponseData: expect(response, "token_pair_attribution_response_data"),
  };
}
