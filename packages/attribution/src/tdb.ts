/**
 * TDB's /batched_tdb without HTTP: from the request JSON to the response JSON (docs/tdb-maths.md §3, §8).
 * Each sub-request gets one forward and one backward pass; the node table is the union of every sub-request's
 * top/bottom-k nodes, each sub-response carrying its own values for that shared list.
 */
import { type Gpt2Tokenizer, hookKey } from "@tdb/model";
import { allocateF32, defaultGemm, freeF32, recyclingArrays, wasmArrayRecycler } from "@tdb/tensor";
import {
  allNodeMetrics,
  type LayerMetrics,
  latentWriteRows,
  METRIC_GROUPS,
  type MetricGroup,
  type NodeKind,
} from "./derived.js";
import {
  type Ablation,
  type AutoencoderFamily,
  type ComponentKind,
  type InferenceResult,
  runInference,
  type TdbModelContext,
  TdbRequestError,
  type TraceSpec,
} from "./inference.js";
import { LEAST_COMMON_GPT2_TOKEN_IDS } from "./least-common-tokens.js";
import {
  exclusionMask,
  largest,
  largestAndSmallest,
  smallest,
  summarize,
  topAndBottom,
  type ValueSummary,
} from "./select.js";
import type {
  BatchedResponse,
  BatchedTdbRequest,
  InferenceAndTokenData,
  MirroredNodeIndex,
  MirroredNodeIndexOut,
  MultipleTopKDerivedScalarsResponseData,
  NodeToTrace,
  TdbRequestSpec,
  TensorND,
  TopTokens,
  TopTokensAttendedTo,
} from "./wire.js";

export interface TdbContext extends TdbModelContext {
  tokenizer: Gpt2Tokenizer;
  modelName: string;
  /** Vocabulary ids left out of scored-token lists (TDB's least common GPT-2 tokens, for GPT-2 vocabularies). */
  excludedTokenIds?: ReadonlySet<number>;
  /** Longest prompt accepted, in tokens (TDB: 500). */
  maxPromptTokens?: number;
}

export const PROMPT_LENGTH_LIMIT = 500;

/** Milliseconds from a monotonic clock where one exists (Node and browsers both have `performance`). */
export const now = (): number =>
  (globalThis as { performance?: { now(): number } }).performance?.now() ?? Date.now();

const excludedByTokenizer = new WeakMap<Gpt2Tokenizer, ReadonlySet<number>>();
/**
 * The exclusion TDB applies to GPT-2's vocabulary; other vocabularies get none. One set per tokenizer: the
 * scored-token cache is keyed by the set's identity.
 */
export function defaultExcludedTokenIds(tokenizer: Gpt2Tokenizer): ReadonlySet<number> {
  let set = excludedByTokenizer.get(tokenizer);
  if (!set) {
    set = tokenizer.vocabSize === 50257 ? new Set(LEAST_COMMON_GPT2_TOKEN_IDS) : new Set();
    excludedByTokenizer.set(tokenizer, set);
  }
  return set;
}

const WIRE_NODE_TYPE: Record<NodeKind, MirroredNodeIndexOut["nodeType"]> = {
  embedding: "layer",
  mlp_neuron: "mlp_neuron",
  attention_head: "attention_head",
  mlp_latent: "mlp_autoencoder_latent",
  attention_latent: "attention_autoencoder_latent",
};

const DST_NAMES: Record<NodeKind, Record<MetricGroup, string>> = {
  embedding: {
    write_norm: "resid_post_embedding_norm",
    act_times_grad: "token_attribution",
    direction_write: "resid_post_embedding_proj_to_final_residual_grad",
    activation: "always_one",
  },
  mlp_neuron: {
    write_norm: "mlp_write_norm",
    act_times_grad: "mlp_act_times_grad",
    direction_write: "mlp_write_to_final_residual_grad",
    activation: "mlp_post_act",
  },
  mlp_latent: {
    write_norm: "online_mlp_autoencoder_write_norm",
    act_times_grad: "online_mlp_autoencoder_act_times_grad",
    direction_write: "online_mlp_autoencoder_write_to_final_residual_grad",
    activation: "online_mlp_autoencoder_latent",
  },
  attention_head: {
    write_norm: "unflattened_attn_write_norm",
    act_times_grad: "unflattened_attn_act_times_grad",
    direction_write: "unflattened_attn_write_to_final_residual_grad",
    activation: "attn_qk_probs",
  },
  attention_latent: {
    write_norm: "online_attention_autoencoder_write_norm",
    act_times_grad: "online_attention_autoencoder_act_times_grad",
    direction_write: "online_attention_autoencoder_write_to_final_residual_grad",
    activation: "online_attention_autoencoder_latent",
  },
};

/** One node of the table: which metric array it lives in, and where. */
export interface NodeRef {
  kind: NodeKind;
  layer: number | null;
  tensorIndices: number[];
}

export const nodeKey = (n: NodeRef): string => `${n.kind}|${n.layer}|${n.tensorIndices.join(",")}`;

export function toWire(n: NodeRef): MirroredNodeIndexOut {
  return {
    nodeType: WIRE_NODE_TYPE[n.kind],
    tensorIndices: n.tensorIndices,
    layerIndex: n.layer,
    passType: "forward",
  };
}

export function unflatten(flat: number, shape: readonly number[]): number[] {
  const out = new Array<number>(shape.length);
  let rest = flat;
  for (let i = shape.length - 1; i >= 0; i--) {
    out[i] = rest % shape[i];
    rest = Math.floor(rest / shape[i]);
  }
  return out;
}

export function flatten(indices: readonly number[], shape: readonly number[]): number {
  let flat = 0;
  for (let i = 0; i < shape.length; i++) flat = flat * shape[i] + indices[i];
  return flat;
}

/** The arrays of one DST (one node type) of a group, over its layers, and how a position names a node. */
export interface SelectionSource<N> {
  arrays: readonly Float32Array[];
  /** Optional, one per array: summaries that spare the finiteness check and the run-bounding pass. */
  summaries?: readonly (ValueSummary | undefined)[];
  node(source: number, index: number): N;
}

/**
 * TDB's node order (§8.1): per group, the k largest and k smallest of each source (null k: every element),
 * the top block then the bottom block, each sorted descending; first occurrence wins. Non-finite values are
 * never selected (TDB requires finite activations).
 */
export function selectTopAndBottomNodes<N>(
  groups: readonly (readonly SelectionSource<N>[])[],
  k: number | null,
  key: (node: N) => string,
): N[] {
  const out: N[] = [];
  const seen = new Set<string>();
  for (const sources of groups) {
    const top: { value: number; node: N }[] = [];
    const bottom: { value: number; node: N }[] = [];
    for (const source of sources) {
      const count = k ?? source.arrays.reduce((n, a) => n + a.length, 0);
      const finite = (p: { value: number }) => Number.isFinite(p.value);
      const toNode = (p: { source: number; index: number; value: number }) => ({
        value: p.value,
        node: source.node(p.source, p.index),
      });
      // Loops, not push(...spread): with k = null a block can hold every element.
      const finiteArray = (a: Float32Array, i: number) => source.summaries?.[i]?.finite ?? allFinite(a);
      if (source.arrays.every(finiteArray)) {
        const picked = topAndBottom(source.arrays, count, source.summaries);
        for (const p of picked.top) top.push(toNode(p));
        for (const p of picked.bottom) bottom.push(toNode(p));
      } else {
        const masked = (fill: number) =>
          source.arrays.map((a) => a.map((v) => (Number.isFinite(v) ? v : fill)));
        for (const p of topAndBottom(masked(Number.NEGATIVE_INFINITY), count).top) {
          if (finite(p)) top.push(toNode(p));
        }
        for (const p of topAndBottom(masked(Number.POSITIVE_INFINITY), count).bottom) {
          if (finite(p)) bottom.push(toNode(p));
        }
      }
    }
    const desc = (a: { value: number }, b: { value: number }) => b.value - a.value;
    top.sort(desc);
    bottom.sort(desc);
    for (const { node } of top.concat(bottom)) {
      const id = key(node);
      if (!seen.has(id)) {
        seen.add(id);
        out.push(node);
      }
    }
  }
  return out;
}

function allFinite(values: Float32Array): boolean {
  // v·0 is 0 for finite v and NaN for ±∞ and NaN: one branch-free pass, four independent sums.
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  const n = values.length;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += values[i] * 0;
    s1 += values[i + 1] * 0;
    s2 += values[i + 2] * 0;
    s3 += values[i + 3] * 0;
  }
  for (; i < n; i++) s0 += values[i] * 0;
  return s0 + s1 + s2 + s3 === 0;
}

function selectNodes(metrics: readonly LayerMetrics[], k: number): NodeRef[] {
  const kinds = [...new Set(metrics.map((m) => m.kind))];
  const groups = METRIC_GROUPS.map((group) =>
    kinds.map((kind): SelectionSource<NodeRef> => {
      const layers = metrics.filter((m) => m.kind === kind);
      return {
        arrays: layers.map((m) => m.metrics[group]),
        summaries: layers.map((m) => m.summaries?.[group]),
        node: (source, index) => ({
          kind,
          layer: layers[source].layer,
          tensorIndices: unflatten(index, layers[source].shape),
        }),
      };
    }),
  );
  return selectTopAndBottomNodes(groups, k, nodeKey);
}

/** Concatenation with duplicates removed, first occurrence kept (the batch union of TDB's node lists). */
export function unionNodes<N>(lists: readonly (readonly N[])[], key: (node: N) => string): N[] {
  const seen = new Set<string>();
  const out: N[] = [];
  for (const list of lists) {
    for (const n of list) {
      const id = key(n);
      if (!seen.has(id)) {
        seen.add(id);
        out.push(n);
      }
    }
  }
  return out;
}

function metricLookup(metrics: readonly LayerMetrics[]) {
  const byKey = new Map(metrics.map((m) => [`${m.kind}|${m.layer}`, m]));
  return (node: NodeRef, group: MetricGroup): number => {
    const m = byKey.get(`${node.kind}|${node.layer}`);
    if (!m) return 0;
    return m.metrics[group][flatten(node.tensorIndices, m.shape)];
  };
}

export function finiteOr999(x: number): number {
  return Number.isFinite(x) ? x : -999;
}

/** Sums over everything but the token dimensions, over all layers (§8.3). */
function intermediateSums(
  metrics: readonly LayerMetrics[],
  T: number,
): Record<string, Record<string, TensorND>> {
  const out: Record<string, Record<string, TensorND>> = {};
  for (const group of METRIC_GROUPS) {
    const byDst: Record<string, TensorND> = {};
    for (const kind of [...new Set(metrics.map((m) => m.kind))]) {
      const layers = metrics.filter((m) => m.kind === kind);
      // Per token pair for heads ([T, T, H]: summed over heads), per token otherwise; over every layer.
      const tokens = kind === "attention_head" ? T * T : T;
      const sums = new Float64Array(tokens);
      for (const m of layers) {
        const rowSums = (m.summaries?.[group] ?? summarize(m.metrics[group], m.shape[m.shape.length - 1]))
          .rowSums;
        for (let i = 0; i < tokens; i++) sums[i] += rowSums[i];
      }
      if (kind === "attention_head") {
        const value = Array.from({ length: T }, (_, t) =>
          Array.from(sums.subarray(t * T, (t + 1) * T), finiteOr999),
        );
        byDst[DST_NAMES[kind][group]] = { tensorType: "tensor_2d", value };
      } else {
        byDst[DST_NAMES[kind][group]] = { tensorType: "tensor_1d", value: Array.from(sums, finiteOr999) };
      }
    }
    out[group] = byDst;
  }
  return out;
}

function multipleTopKResponse(
  nodes: readonly NodeRef[],
  metrics: readonly LayerMetrics[],
  T: number,
): MultipleTopKDerivedScalarsResponseData {
  const value = metricLookup(metrics);
  const activationsByGroupId: Record<string, number[]> = {};
  for (const group of METRIC_GROUPS) activationsByGroupId[group] = nodes.map((n) => value(n, group));
  return {
    responseDataType: "multiple_top_k_derived_scalars_response_data",
    activationsByGroupId,
    nodeIndices: nodes.map(toWire),
    vocabTokenStringsForIndices: null,
    intermediateSumActivationsByDstByGroupId: intermediateSums(metrics, T),
  };
}

interface ConvertedSubRequest {
  spec: TdbRequestSpec;
  tokens: number[];
  ablations: Ablation[];
  trace: TraceSpec | null;
  targets: number[];
  distractors: number[];
}

/** The component an incoming node index names (the embedding row and other types cannot be ablated/traced). */
export function componentOf(
  ctx: TdbModelContext,
  node: MirroredNodeIndex,
  what: string,
): { kind: ComponentKind; layer: number; token: number; index: number; keyToken?: number } {
  const { nodeType, tensorIndices, layerIndex } = node;
  if (layerIndex === null || layerIndex === undefined)
    throw new TdbRequestError(`${what}: ${nodeType} node needs a layerIndex`);
  const ints = tensorIndices.map((x) => {
    if (x === null) throw new TdbRequestError(`${what}: tensorIndices must all be integers, got null`);
    return x;
  });
  const need = (n: number) => {
    if (ints.length !== n)
      throw new TdbRequestError(`${what}: a ${nodeType} node has ${n} tensor indices, got ${ints.length}`);
  };
  switch (nodeType) {
    case "mlp_neuron":
      need(2);
      return { kind: "mlp_neuron", layer: layerIndex, token: ints[0], index: ints[1] };
    case "attention_head":
      need(3);
      return { kind: "attention_head", layer: layerIndex, token: ints[0], keyToken: ints[1], index: ints[2] };
    case "mlp_autoencoder_latent":
      need(2);
      return { kind: "mlp_latent", layer: layerIndex, token: ints[0], index: ints[1] };
    case "attention_autoencoder_latent":
      need(2);
      return { kind: "attention_latent", layer: layerIndex, token: ints[0], index: ints[1] };
    case "autoencoder_latent": {
      need(2);
      const mlp = Boolean(ctx.mlpAutoencoder);
      const attn = Boolean(ctx.attentionAutoencoder);
      if (mlp === attn) {
        throw new TdbRequestError(
          `${what}: "autoencoder_latent" is ambiguous unless exactly one autoencoder is loaded; use mlp_autoencoder_latent or attention_autoencoder_latent`,
        );
      }
      return {
        kind: mlp ? "mlp_latent" : "attention_latent",
        layer: layerIndex,
        token: ints[0],
        index: ints[1],
      };
    }
    default:
      throw new TdbRequestError(`${what}: cannot ablate or trace a ${nodeType} node`);
  }
}

export function encodeSingleToken(tokenizer: Gpt2Tokenizer, text: string): number {
  const ids = tokenizer.encode(text);
  if (ids.length !== 1) {
    throw new TdbRequestError(`'${text}' decoded to [${ids.join(", ")}]; wanted exactly 1 token`);
  }
  return ids[0];
}

export function pyListRepr(items: readonly string[]): string {
  return `[${items.map((s) => `'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'").replace(/\n/g, "\\n")}'`).join(", ")}]`;
}

/** The traced scalar a NodeToTrace names (no downstream node). */
function traceOf(ctx: TdbContext, node: NodeToTrace, what: string): TraceSpec {
  const c = componentOf(ctx, node.nodeIndex, what);
  const type = node.attentionTraceType ?? undefined;
  if (c.kind === "attention_head" && !type) {
    throw new TdbRequestError(`${what}: tracing an attention head needs attentionTraceType (Q, K, QK or V)`);
  }
  if (c.kind === "attention_head" && c.keyToken !== undefined && c.keyToken > c.token) {
    throw new TdbRequestError(
      `${what}: key token ${c.keyToken} comes after query token ${c.token} (masked pair)`,
    );
  }
  return { ...c, attentionTraceType: c.kind === "attention_head" ? type : undefined };
}

function convert(ctx: TdbContext, request: BatchedTdbRequest): ConvertedSubRequest[] {
  const partial = request.subRequests.map((spec, i) => {
    const where = request.subRequests.length > 1 ? `subRequests[${i}]` : "request";
    const ablations: Ablation[] = (spec.nodeAblations ?? []).map((a) => {
      const c = componentOf(ctx, a.nodeIndex, `${where}: nodeAblations`);
      return { kind: c.kind, layer: c.layer, token: c.token, index: c.index, value: a.value };
    });
    let trace: TraceSpec | null = null;
    if (spec.upstreamNodeToTrace) {
      trace = traceOf(ctx, spec.upstreamNodeToTrace, `${where}: upstreamNodeToTrace`);
      // TDB takes the downstream node from the request, not from upstreamNodeToTrace.downstreamTraceConfig.
      if (spec.downstreamNodeToTrace) {
        if (trace.attentionTraceType !== "V") {
          throw new TdbRequestError(
            `${where}: downstreamNodeToTrace needs an upstream attention node traced through "V"`,
          );
        }
        trace.downstream = traceOf(ctx, spec.downstreamNodeToTrace, `${where}: downstreamNodeToTrace`);
        if (trace.downstream.attentionTraceType === "V") {
          throw new TdbRequestError(`${where}: the downstream node cannot itself be traced through "V"`);
        }
      }
    } else if (spec.downstreamNodeToTrace) {
      throw new TdbRequestError(`${where}: downstreamNodeToTrace needs an upstreamNodeToTrace`);
    }
    return { spec, tokens: ctx.tokenizer.encode(spec.prompt), ablations, trace };
  });
  checkTopKPromptLengths(
    ctx,
    partial.map((p) => p.tokens),
  );
  checkContextWindow(
    ctx,
    partial.map((p) => p.tokens),
  );
  return partial.map((p) => ({
    ...p,
    targets: p.spec.targetTokens.map((s) => encodeSingleToken(ctx.tokenizer, s)),
    distractors: p.spec.distractorTokens.map((s) => encodeSingleToken(ctx.tokenizer, s)),
  }));
}

/** TDB's checks on the prompts of sub-requests with top-k specs: length limit, then equal lengths. */
export function checkTopKPromptLengths(ctx: TdbContext, tokenLists: readonly (readonly number[])[]): void {
  const limit = ctx.maxPromptTokens ?? PROMPT_LENGTH_LIMIT;
  const lengths = tokenLists.map((tokens) => tokens.length);
  if (lengths.some((n) => n > limit)) {
    throw new TdbRequestError(
      `Prompts must be less than ${limit} tokens long for batched top-k requests. Got these prompt lengths: [${lengths.join(", ")}]`,
    );
  }
  if (new Set(lengths).size > 1) {
    const listed = tokenLists
      .map((tokens) => `${pyListRepr(ctx.tokenizer.tokenStrings(tokens))} (${tokens.length} tokens)\n`)
      .join(", ");
    throw new TdbRequestError(
      `All prompts must have the same length for batched top-k requests. Got these prompts:\n${listed}`,
    );
  }
}

export function checkContextWindow(ctx: TdbModelContext, tokenLists: readonly (readonly number[])[]): void {
  const longest = Math.max(0, ...tokenLists.map((tokens) => tokens.length));
  if (longest > ctx.model.config.nPositions) {
    throw new TdbRequestError(
      `the prompt has ${longest} tokens; this model's context window is ${ctx.model.config.nPositions}`,
    );
  }
}

interface SubRun {
  converted: ConvertedSubRequest;
  run: InferenceResult;
  seconds: number;
  /** Row of the logits card: the traced token, else the last token. */
  logitToken: number;
  metrics: LayerMetrics[];
  tokenDisplayMetrics: LayerMetrics[];
}

// Activations, gradients and node metrics of one request are recycled for the next (see recyclingArrays): the
// response is plain JSON values, and no cache keeps or is keyed by those arrays. They live in the WebAssembly memory,
// where its kernels use them in place.
const requestArrays = wasmArrayRecycler();

/** Bytes of request arrays held for the next /batched_tdb request (for memory reports and tests). */
export function recycledRequestBytes(): number {
  return requestArrays.bytesHeld;
}

export function handleBatchedTdb(ctx: TdbContext, request: BatchedTdbRequest): BatchedResponse {
  return recyclingArrays(requestArrays, () => batchedTdb(ctx, request));
}

function batchedTdb(ctx: TdbContext, request: BatchedTdbRequest): BatchedResponse {
  if (request.subRequests.length === 0)
    throw new TdbRequestError("subRequests must hold at least one request");
  const converted = convert(ctx, request);
  const started = now();
  const runs: SubRun[] = converted.map((c) => {
    const t0 = now();
    const traceType = c.trace?.attentionTraceType;
    const loss =
      !c.trace || (traceType === "V" && !c.trace.downstream)
        ? { name: "logit_diff" as const, targets: c.targets, distractors: c.distractors }
        : null;
    const logitToken = c.trace ? c.trace.token : c.tokens.length - 1;
    const run = runInference(ctx, {
      tokens: c.tokens,
      ablations: c.ablations,
      loss,
      trace: c.trace,
      logitTokens: [logitToken],
    });
    const basis = {
      mlp: c.spec.componentTypeForMlp,
      attention: c.spec.componentTypeForAttention,
    } as const;
    checkBasis(ctx, basis);
    const metrics = allNodeMetrics(ctx, run, basis);
    const plain = basis.mlp === "neuron" && basis.attention === "attention_head";
    const tokenDisplayMetrics = plain
      ? metrics
      : allNodeMetrics(ctx, run, { mlp: "neuron", attention: "attention_head" });
    return { converted: c, run, seconds: (now() - t0) / 1000, logitToken, metrics, tokenDisplayMetrics };
  });
  const inferenceTime = (now() - started) / 1000;

  const tableNodes = unionNodes(
    runs.map((r) => selectNodes(r.metrics, r.converted.spec.topAndBottomKForNodeTable)),
    nodeKey,
  );
  const displayNodes = unionNodes(
    runs.map((r) => selectNodes(r.tokenDisplayMetrics, 1)),
    nodeKey,
  );
  const logitNodes = unionNodes(
    runs.map((r) => selectLogitNodes(ctx, r)),
    nodeKey,
  );
  const excluded = ctx.excludedTokenIds ?? defaultExcludedTokenIds(ctx.tokenizer);

  return {
    inferenceSubResponses: runs.map((r) => {
      const T = r.converted.tokens.length;
      const data: InferenceAndTokenData = {
        inferenceTime,
        memoryUsedBefore: null,
        memoryUsedAfter: null,
        log: null,
        loss: r.run.loss,
        activationValueForBackwardPass: r.run.activationValueForBackwardPass,
        tokensAsInts: r.converted.tokens,
        tokensAsStrings: ctx.tokenizer.tokenStrings(r.converted.tokens),
      };
      const wireTable = tableNodes.map(toWire);
      const nullList = () => tableNodes.map(() => null);
      return {
        inferenceResponse: { inferenceAndTokenData: data },
        processingResponseDataByName: {
          topKComponents: multipleTopKResponse(tableNodes, r.metrics, T),
          componentSumsForTokenDisplay: multipleTopKResponse(displayNodes, r.tokenDisplayMetrics, T),
          upvotedOutputTokens: {
            responseDataType: "scored_tokens_response_data",
            nodeIndices: wireTable,
            topTokensList: upvotedOutputTokens(ctx, r.run, tableNodes, excluded),
          },
          inputTokensThatUpvoteMlp: {
            responseDataType: "scored_tokens_response_data",
            nodeIndices: wireTable,
            topTokensList: inputTokensThatUpvoteMlp(ctx, r.run, tableNodes, excluded),
          },
          inputTokensThatUpvoteAttnQ: {
            responseDataType: "scored_tokens_response_data",
            nodeIndices: wireTable,
            topTokensList: nullList(),
          },
          inputTokensThatUpvoteAttnK: {
            responseDataType: "scored_tokens_response_data",
            nodeIndices: wireTable,
            topTokensList: nullList(),
          },
          tokenPairAttribution: {
            responseDataType: "token_pair_attribution_response_data",
            nodeIndices: wireTable,
            topTokensAttendedToList: tokenPairAttribution(ctx, r.run, tableNodes, 3),
          },
          topOutputTokenLogits: logitsResponse(ctx, r, logitNodes),
        },
      };
    }),
  };
}

function checkBasis(ctx: TdbModelContext, basis: { mlp: string; attention: string }): void {
  if (basis.mlp === "autoencoder_latent" && !ctx.mlpAutoencoder) {
    throw new TdbRequestError(
      'componentTypeForMlp is "autoencoder_latent" but the server has no MLP autoencoder',
    );
  }
  if (basis.attention === "autoencoder_latent" && !ctx.attentionAutoencoder) {
    throw new TdbRequestError(
      'componentTypeForAttention is "autoencoder_latent" but the server has no attention autoencoder',
    );
  }
}

interface LogitNode extends NodeRef {
  kind: "embedding";
}

/** vocab_token nodes of the logits card: top and bottom 100 of the logits at the card's token. */
function selectLogitNodes(ctx: TdbContext, r: SubRun): NodeRef[] {
  const row = logitRow(ctx, r);
  const wireToken = r.converted.trace ? r.logitToken : -1;
  const { top, bottom } = topAndBottom([row], 100);
  const nodes: NodeRef[] = [];
  const seen = new Set<number>();
  for (const p of [...top, ...bottom]) {
    if (seen.has(p.index)) continue;
    seen.add(p.index);
    nodes.push({ kind: "embedding", layer: null, tensorIndices: [wireToken, p.index] } as LogitNode);
  }
  return nodes;
}

function logitRow(ctx: TdbContext, r: SubRun): Float32Array {
  const V = ctx.model.config.vocabSize;
  const i = r.run.forward.logitRows.indexOf(r.logitToken);
  return r.run.forward.logits.subarray(i * V, (i + 1) * V);
}

function logitsResponse(
  ctx: TdbContext,
  r: SubRun,
  nodes: readonly NodeRef[],
): MultipleTopKDerivedScalarsResponseData {
  const row = logitRow(ctx, r);
  const sums = Array.from(logitRowSums(ctx, r.run), finiteOr999);
  return {
    responseDataType: "multiple_top_k_derived_scalars_response_data",
    activationsByGroupId: { logits: nodes.map((n) => row[n.tensorIndices[1]]) },
    nodeIndices: nodes.map((n) => ({
      nodeType: "vocab_token",
      tensorIndices: n.tensorIndices,
      layerIndex: null,
      passType: "forward",
    })),
    vocabTokenStringsForIndices: nodes.map((n) => ctx.tokenizer.tokenString(n.tensorIndices[1])),
    intermediateSumActivationsByDstByGroupId: {
      logits: { logits: { tensorType: "tensor_1d", value: sums } },
    },
  };
}

/** Σ_v logits[t, v] for every token: ln_f(x)[t] · Σ_v W_U[v], without computing every row of logits. */
export function logitRowSums(ctx: TdbModelContext, run: InferenceResult): Float64Array {
  const { nEmbd: d, vocabSize: V } = ctx.model.config;
  const T = run.tokens.length;
  const mean = columnMean(ctx.model.weights.unembedding, V, d);
  const hF = run.forward.activations.get(hookKey("resid.post_ln_f", null))!;
  const sums = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    let s = 0;
    for (let i = 0; i < d; i++) s += hF[t * d + i] * mean[i];
    sums[t] = s * V;
  }
  return sums;
}

/** The residual-stream write vector of a node in this inference (biases excluded). */
export function writeVector(ctx: TdbModelContext, run: InferenceResult, node: NodeRef): Float32Array {
  const { model } = ctx;
  const d = model.config.nEmbd;
  const T = run.tokens.length;
  const acts = run.forward.activations;
  const out = new Float32Array(d);
  const [t] = node.tensorIndices;
  // Neurons and latents: activation × a weight row.
  const unit = unitWrite(ctx, run, node);
  if (unit) {
    for (let i = 0; i < d; i++) out[i] = unit.factor * unit.rows[unit.row * d + i];
    return out;
  }
  if (node.kind === "embedding") {
    out.set(acts.get(hookKey("resid.post_emb", null))!.subarray(t * d, (t + 1) * d));
    return out;
  }
  // An attention head's token pair: P[t,u,h]·v[u,h]·W_O[h].
  const [, u, h] = node.tensorIndices;
  const H = model.config.nHead;
  const Dh = d / H;
  const p = acts.get(hookKey("attn.qk_probs", node.layer))![(t * T + u) * H + h];
  const v = acts.get(hookKey("attn.v", node.layer))!;
  const wO = model.weights.layers[node.layer!].attnOutWeight;
  const c = new Float32Array(Dh);
  for (let i = 0; i < Dh; i++) c[i] = p * v[u * d + h * Dh + i];
  // [1 × Dh]·[Dh × d]: head h's rows of W_O (a product: the table lists ~100 heads, each 49 152 multiply-adds).
  defaultGemm().nn(c, wO.subarray(h * Dh * d, (h + 1) * Dh * d), out, 1, Dh, d);
  return out;
}

/** Rows per product where scores are computed in full: bounds the reused score buffer (64 × 50257 floats = 13 MB). */
const SCORING_ROWS = 64;
let scoreBuffer: Float32Array = new Float32Array(0);
const columnMeanCache = new WeakMap<Float32Array, Float64Array>();

/** The mean of the rows of `matrix` ([V, d]), in float64, computed once per matrix. */
function columnMean(matrix: Float32Array, V: number, d: number): Float64Array {
  const cached = columnMeanCache.get(matrix);
  if (cached) return cached;
  const mean = new Float64Array(d);
  for (let v = 0; v < V; v++) for (let i = 0; i < d; i++) mean[i] += matrix[v * d + i];
  for (let i = 0; i < d; i++) mean[i] /= V;
  columnMeanCache.set(matrix, mean);
  return mean;
}

/** The `count` highest and lowest scores of one direction against a vocabulary, with their raw scores. */
interface ExtremeScores {
  largest: number[];
  smallest: number[];
  /** Raw score by vocabulary id, for the ids listed. */
  scores: Map<number, number>;
  /** The mean score over the whole vocabulary (direction · column mean of the matrix). */
  mean: number;
}

/**
 * For each row r of `directions` ([n, d]) scored against every row of `matrix` ([V, d]): the ids of the `count`
 * largest and smallest scores (excluded ids never listed; ties to the lower id, as largestAndSmallest), their raw
 * scores and the mean score. The mean is direction · (column mean of matrix), so centring costs no pass over the
 * scores; callers subtract it from the few they report. Where the GEMM screens rows without forming the product
 * (ntExtremes: the native engine), only the candidates it returns are ranked, by their exact scores; other rows go
 * through the full product in near-equal chunks of at most SCORING_ROWS.
 */
function extremeScores(
  directions: Float32Array,
  n: number,
  matrix: Float32Array,
  d: number,
  V: number,
  count: number,
  excluded: ReadonlySet<number>,
): ExtremeScores[] {
  const out = new Array<ExtremeScores>(n);
  if (n === 0) return out;
  const columns = columnMean(matrix, V, d);
  const meanOf = (r: number) => {
    let m = 0;
    for (let i = 0; i < d; i++) m += directions[r * d + i] * columns[i];
    return m;
  };
  const skip = excluded.size > 0 ? exclusionMask(excluded, V) : null;
  const screened = defaultGemm().ntExtremes?.(directions, matrix, n, d, V, count, skip) ?? null;
  const full: number[] = [];
  for (let r = 0; r < n; r++) {
    if (screened === null || screened.screened[r] !== 1) {
      full.push(r);
      continue;
    }
    const { offsets, index, value } = screened;
    const topIds = index.subarray(offsets[2 * r], offsets[2 * r + 1]);
    const topValues = value.subarray(offsets[2 * r], offsets[2 * r + 1]);
    const bottomIds = index.subarray(offsets[2 * r + 1], offsets[2 * r + 2]);
    const bottomValues = value.subarray(offsets[2 * r + 1], offsets[2 * r + 2]);
    // Candidates are in id order, so ranking them resolves ties exactly as a scan of the whole row would.
    const topAt = largest(topValues, count);
    const bottomAt = smallest(bottomValues, count);
    const scores = new Map<number, number>();
    for (const p of topAt) scores.set(topIds[p], topValues[p]);
    for (const p of bottomAt) scores.set(bottomIds[p], bottomValues[p]);
    const top = topAt.map((p) => topIds[p]);
    const bottom = bottomAt.map((p) => bottomIds[p]);
    out[r] = { largest: top, smallest: bottom, scores, mean: meanOf(r) };
  }
  if (full.length === 0) return out;
  const rows = new Float32Array(full.length * d);
  full.forEach((r, i) => {
    rows.set(directions.subarray(r * d, (r + 1) * d), i * d);
  });
  const chunks = Math.ceil(full.length / SCORING_ROWS);
  const rowsPerChunk = Math.ceil(full.length / chunks);
  if (scoreBuffer.length < rowsPerChunk * V) {
    // In the WebAssembly memory (where it runs), so that the selection's SIMD pre-pass reads it in place.
    freeF32(scoreBuffer);
    scoreBuffer = allocateF32(rowsPerChunk * V);
  }
  for (let start = 0; start < full.length; start += rowsPerChunk) {
    const chunk = Math.min(rowsPerChunk, full.length - start);
    defaultGemm().nt(rows.subarray(start * d, (start + chunk) * d), matrix, scoreBuffer, chunk, d, V);
    for (let i = 0; i < chunk; i++) {
      const row = scoreBuffer.subarray(i * V, (i + 1) * V);
      const picked = largestAndSmallest(row, count, excluded);
      const scores = new Map<number, number>();
      for (const id of [...picked.largest, ...picked.smallest]) scores.set(id, row[id]);
      const r = full[start + i];
      out[r] = { largest: picked.largest, smallest: picked.smallest, scores, mean: meanOf(r) };
    }
  }
  return out;
}

/** Scores of every vocabulary entry for each row of `directions` ([N, d]) against `matrix` ([V, d]). */
function scoreAgainstVocabulary(
  directions: Float32Array,
  n: number,
  matrix: Float32Array,
  d: number,
  V: number,
): Float32Array {
  const out = new Float32Array(n * V);
  if (n > 0) defaultGemm().nt(directions, matrix, out, n, d, V);
  return out;
}

/** TDB's top/bottom token lists of a score vector over the vocabulary (excluded ids never listed). */
export function topTokens(
  ctx: TdbContext,
  scores: Float32Array,
  excluded: ReadonlySet<number>,
  count = 10,
): TopTokens {
  const { largest: top, smallest: bottom } = largestAndSmallest(scores, count, excluded);
  return tokenLists(ctx, top, bottom, (id) => scores[id]);
}

function tokenLists(
  ctx: TdbContext,
  top: readonly number[],
  bottom: readonly number[],
  score: (id: number) => number,
): TopTokens {
  const scale = Math.max(
    Math.abs(top.length > 0 ? score(top[0]) : 0),
    Math.abs(bottom.length > 0 ? score(bottom[0]) : 0),
  );
  const entry = (id: number) => ({
    token: ctx.tokenizer.tokenString(id),
    scalar: score(id),
    normalizedScalar: scale === 0 ? 0 : score(id) / scale,
  });
  return { top: top.map(entry), bottom: bottom.map(entry) };
}

/**
 * Scored tokens of a node whose direction is a fixed weight row times a per-request factor (an MLP neuron's or a
 * latent's write is its activation times a weight row; an MLP neuron's input read is a weight row over its LN
 * scale). The row's own top and bottom tokens are computed once and reused across requests: the node's lists are
 * the row's, scaled, and swapped when the factor is negative. TDB's viewer sends the same nodes again after every
 * ablation or trace, so repeated requests skip most of the [N×d]·[d×V] products.
 */
interface UnitDirection {
  /** The weight matrix the direction comes from (its identity is part of the cache key: it belongs to one model). */
  rows: Float32Array;
  layer: number;
  row: number;
  factor: number;
}

interface UnitTokenLists {
  top: number[];
  bottom: number[];
  scores: Map<number, number>;
}

/** Row lists by key, least recently used first; bounded (an entry is ~1 KB). */
const unitListCache = new Map<string, UnitTokenLists>();
const UNIT_LIST_CACHE_ENTRIES = 50_000;
const objectIds = new WeakMap<object, number>();
let nextObjectId = 0;
function objectId(o: object): number {
  let id = objectIds.get(o);
  if (id === undefined) {
    id = nextObjectId++;
    objectIds.set(o, id);
  }
  return id;
}

/** Forgets every cached row list (benchmarks use it to time cold requests). */
export function clearScoredTokenCache(): void {
  unitListCache.clear();
}

function unitCacheKey(
  kind: string,
  unit: UnitDirection,
  count: number,
  excluded: ReadonlySet<number>,
): string {
  return `${kind}/${objectId(unit.rows)}/${unit.row}/${count}/${objectId(excluded)}`;
}

function cachedUnitLists(key: string): UnitTokenLists | undefined {
  const entry = unitListCache.get(key);
  if (entry) {
    unitListCache.delete(key);
    unitListCache.set(key, entry);
  }
  return entry;
}

function cacheUnitLists(key: string, entry: UnitTokenLists): void {
  unitListCache.set(key, entry);
  if (unitListCache.size > UNIT_LIST_CACHE_ENTRIES) {
    unitListCache.delete(unitListCache.keys().next().value as string);
  }
}

/**
 * Top tokens for each (node, unit direction) pair: cached row lists where present; the rest scored against `matrix`
 * after `prepare` turns a weight row into the scoring direction (e.g. ⊙ γ), then cached. `direct` rows (directions
 * that depend on the request, such as a head's write) are scored in the same products and not cached. With
 * `center`, scores are taken minus their mean over the vocabulary.
 */
function scoredTokensOfUnits(
  ctx: TdbModelContext & TdbContext,
  kind: string,
  units: readonly UnitDirection[],
  matrix: Float32Array,
  prepare: (unit: UnitDirection, out: Float32Array) => void,
  center: boolean,
  excluded: ReadonlySet<number>,
  count: number,
  direct: readonly Float32Array[] = [],
): { units: TopTokens[]; direct: TopTokens[] } {
  const { nEmbd: d, vocabSize: V } = ctx.model.config;
  const keys = units.map((unit) => unitCacheKey(kind, unit, count, excluded));
  const lists: (UnitTokenLists | undefined)[] = keys.map((key) => cachedUnitLists(key));
  // One scoring per weight row: the same neuron or latent at several tokens shares its row's lists.
  const missingKeys = [...new Set(keys.filter((_, i) => lists[i] === undefined))];
  const unitOfKey = new Map(keys.map((key, i) => [key, units[i]]));
  const n = missingKeys.length + direct.length;
  const directions = new Float32Array(n * d);
  missingKeys.forEach((key, r) => {
    prepare(unitOfKey.get(key)!, directions.subarray(r * d, (r + 1) * d));
  });
  direct.forEach((row, r) => {
    directions.set(row, (missingKeys.length + r) * d);
  });
  const picked = extremeScores(directions, n, matrix, d, V, count, excluded);
  const directLists = direct.map((_, k) => {
    const { largest: top, smallest: bottom, scores, mean } = picked[missingKeys.length + k];
    const offset = center ? mean : 0;
    return tokenLists(ctx, top, bottom, (id) => scores.get(id)! - offset);
  });
  const scored = new Map<string, UnitTokenLists>();
  missingKeys.forEach((key, r) => {
    const { largest: top, smallest: bottom, scores, mean } = picked[r];
    const offset = center ? mean : 0;
    const entry: UnitTokenLists = { top, bottom, scores: new Map() };
    for (const [id, score] of scores) entry.scores.set(id, score - offset);
    cacheUnitLists(key, entry);
    scored.set(key, entry);
  });
  keys.forEach((key, i) => {
    lists[i] ??= scored.get(key);
  });
  const unitLists = units.map((unit, i) => {
    const entry = lists[i]!;
    const c = unit.factor;
    // factor < 0 reverses the order: the row's lowest scores are the node's highest.
    const [top, bottom] = c < 0 ? [entry.bottom, entry.top] : [entry.top, entry.bottom];
    return tokenLists(ctx, top, bottom, (id) => c * entry.scores.get(id)!);
  });
  return { units: unitLists, direct: directLists };
}

/** The node's write as factor × a fixed weight row, or null when it is not of that form (heads, embeddings). */
function unitWrite(ctx: TdbModelContext, run: InferenceResult, node: NodeRef): UnitDirection | null {
  const { model } = ctx;
  const t = node.tensorIndices[0];
  switch (node.kind) {
    case "mlp_neuron": {
      const F = model.config.nInner;
      const n = node.tensorIndices[1];
      const a = run.forward.activations.get(hookKey("mlp.post_act", node.layer))![t * F + n];
      return { rows: model.weights.layers[node.layer!].projWeight, layer: node.layer!, row: n, factor: a };
    }
    case "mlp_latent":
    case "attention_latent": {
      const family = (node.kind === "mlp_latent" ? ctx.mlpAutoencoder : ctx.attentionAutoencoder)!;
      const records = node.kind === "mlp_latent" ? run.mlpLatents : run.attentionLatents;
      const ae = family.byLayer.get(node.layer!)!;
      const l = node.tensorIndices[1];
      const z = records.get(node.layer!)!.values[t * ae.nLatents + l];
      return { rows: latentWriteRows(model, family, node.layer!), layer: node.layer!, row: l, factor: z };
    }
    default:
      return null;
  }
}

/**
 * Output-token scores of each node's write vector: w·(W_U ⊙ γ_f), minus the mean over the vocabulary
 * (TokenWriteConverter), one [V] array per node.
 */
export function outputTokenScores(
  ctx: TdbModelContext,
  run: InferenceResult,
  nodes: readonly NodeRef[],
): Float32Array[] {
  const { nEmbd: d, vocabSize: V } = ctx.model.config;
  const gain = ctx.model.weights.lnFGain;
  const directions = new Float32Array(nodes.length * d);
  nodes.forEach((node, i) => {
    const w = writeVector(ctx, run, node);
    for (let j = 0; j < d; j++) directions[i * d + j] = w[j] * gain[j];
  });
  const scores = scoreAgainstVocabulary(directions, nodes.length, ctx.model.weights.unembedding, d, V);
  // Centred in place: one [N, V] buffer rather than a fresh [V] array per node (the GC showed in profiles).
  return nodes.map((_, i) => {
    const row = scores.subarray(i * V, (i + 1) * V);
    let mean = 0;
    for (let v = 0; v < V; v++) mean += row[v];
    mean /= V;
    for (let v = 0; v < V; v++) row[v] -= mean;
    return row;
  });
}

export function upvotedOutputTokens(
  ctx: TdbContext,
  run: InferenceResult,
  nodes: readonly NodeRef[],
  excluded: ReadonlySet<number>,
  count = 10,
): (TopTokens | null)[] {
  const out: (TopTokens | null)[] = nodes.map(() => null);
  const gain = ctx.model.weights.lnFGain;
  const unitNodes: number[] = [];
  const units: UnitDirection[] = [];
  const direct: number[] = [];
  nodes.forEach((node, i) => {
    const unit = unitWrite(ctx, run, node);
    if (unit) {
      unitNodes.push(i);
      units.push(unit);
    } else direct.push(i);
  });
  const d = ctx.model.config.nEmbd;
  const prepare = ({ rows, row }: UnitDirection, dst: Float32Array) => {
    for (let j = 0; j < d; j++) dst[j] = rows[row * d + j] * gain[j];
  };
  // Heads (and anything else whose write depends on the request): write ⊙ γ_f, scored in the same products.
  const directRows = direct.map((i) => {
    const w = writeVector(ctx, run, nodes[i]);
    for (let j = 0; j < d; j++) w[j] *= gain[j];
    return w;
  });
  const scored = scoredTokensOfUnits(
    ctx,
    "output",
    units,
    ctx.model.weights.unembedding,
    prepare,
    true,
    excluded,
    count,
    directRows,
  );
  unitNodes.forEach((i, k) => {
    out[i] = scored.units[k];
  });
  direct.forEach((i, k) => {
    out[i] = scored.direct[k];
  });
  return out;
}

/**
 * ∂(pre-activation)/∂x at the node's own residual x_mid[t], LN2 scale detached, scored against every token
 * embedding (no position embedding, no centering) — TDB's "input tokens that upvote" this MLP neuron or latent.
 */
export function inputTokensThatUpvoteMlp(
  ctx: TdbContext,
  run: InferenceResult,
  nodes: readonly NodeRef[],
  excluded: ReadonlySet<number>,
  count = 10,
): (TopTokens | null)[] {
  const { model } = ctx;
  const { nEmbd: d, nInner: F } = model.config;
  const eligible = nodes
    .map((n, i) => ({ n, i }))
    .filter(
      ({ n }) =>
        n.kind === "mlp_neuron" ||
        (n.kind === "mlp_latent" && ctx.mlpAutoencoder?.site !== "resid_delta_mlp"),
    );
  const out: (TopTokens | null)[] = nodes.map(() => null);
  // Latents: the gradient of the latent's pre-activation w.r.t. the LN2 input at its token (depends on the token,
  // so not cacheable); scored in the same products as the neurons below.
  const latents = eligible.filter(({ n }) => n.kind !== "mlp_neuron");
  const reads = latents.map(({ n }) => {
    const L = n.layer!;
    const lw = model.weights.layers[L];
    const t = n.tensorIndices[0];
    const dh = new Float32Array(d);
    const ae = (ctx.mlpAutoencoder as AutoencoderFamily).byLayer.get(L)!;
    const pre = run.forward.activations.get(hookKey("mlp.pre_act", L))!.subarray(t * F, (t + 1) * F);
    const enc = ae.encoderRow(n.tensorIndices[1]);
    const dPre = new Float32Array(F);
    for (let f = 0; f < F; f++) dPre[f] = enc[f] * geluNewDerivative(pre[f]);
    for (let i = 0; i < d; i++) {
      let acc = 0;
      for (let f = 0; f < F; f++) acc += lw.fcWeight[i * F + f] * dPre[f];
      dh[i] = acc;
    }
    const scale = run.forward.activations.get(hookKey("mlp_ln.scale", L))![t];
    let mean = 0;
    for (let i = 0; i < d; i++) mean += dh[i] * lw.ln2Gain[i];
    mean /= d;
    const read = new Float32Array(d);
    for (let i = 0; i < d; i++) read[i] = (dh[i] * lw.ln2Gain[i] - mean) / scale;
    return read;
  });
  // Neurons: the read is (W_fc[:, j] ⊙ γ2 − mean) / σ_t, a weight row over the token's LN scale.
  const neurons = eligible.filter(({ n }) => n.kind === "mlp_neuron");
  const scored = scoredTokensOfUnits(
    ctx,
    "input",
    neurons.map(({ n }) => {
      const scale = run.forward.activations.get(hookKey("mlp_ln.scale", n.layer))![n.tensorIndices[0]];
      const L = n.layer!;
      return { rows: model.weights.layers[L].fcWeight, layer: L, row: n.tensorIndices[1], factor: 1 / scale };
    }),
    model.weights.tokenEmbedding,
    ({ rows, layer, row }, dst) => {
      // Column `row` of W_fc [d, F] ⊙ γ2, centred (LayerNorm's mean subtraction).
      const gain = model.weights.layers[layer].ln2Gain;
      let mean = 0;
      for (let i = 0; i < d; i++) mean += rows[i * F + row] * gain[i];
      mean /= d;
      for (let i = 0; i < d; i++) dst[i] = rows[i * F + row] * gain[i] - mean;
    },
    false,
    excluded,
    count,
    reads,
  );
  neurons.forEach(({ i }, k) => {
    out[i] = scored.units[k];
  });
  latents.forEach(({ i }, k) => {
    out[i] = scored.direct[k];
  });
  return out;
}

function geluNewDerivative(x: number): number {
  const k = Math.sqrt(2 / Math.PI);
  const t = Math.tanh(k * (x + 0.044715 * x * x * x));
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x);
}

/**
 * W_enc[ℓ]·(Σ_h A[t,u,h]·V[u,h]·W_O[h]) for every key token u: the attention write from u to t projected on
 * latent ℓ's encoder direction of the resid_delta_attn autoencoder at `layer` (biases excluded).
 */
export function attentionWriteToLatentByKey(
  ctx: TdbModelContext,
  run: InferenceResult,
  layer: number,
  latent: number,
  t: number,
): Float32Array {
  const ae = ctx.attentionAutoencoder!.byLayer.get(layer)!;
  const { nEmbd: d, nHead: H } = ctx.model.config;
  const Dh = d / H;
  const T = run.tokens.length;
  const acts = run.forward.activations;
  const probs = acts.get(hookKey("attn.qk_probs", layer))!;
  const v = acts.get(hookKey("attn.v", layer))!;
  const wO = ctx.model.weights.layers[layer].attnOutWeight;
  const enc = ae.encoderRow(latent);
  // W_enc[ℓ]·W_O[h] once per head, then A[t,u,h]·V[u,h]·that.
  const encO = new Float32Array(d);
  for (let i = 0; i < d; i++) {
    let acc = 0;
    for (let j = 0; j < d; j++) acc += wO[i * d + j] * enc[j];
    encO[i] = acc;
  }
  const attributions = new Float32Array(T);
  for (let u = 0; u < T; u++) {
    let acc = 0;
    for (let h = 0; h < H; h++) {
      const p = probs[(t * T + u) * H + h];
      if (p === 0) continue;
      let dot = 0;
      for (let i = 0; i < Dh; i++) dot += v[u * d + h * Dh + i] * encO[h * Dh + i];
      acc += p * dot;
    }
    attributions[u] = acc;
  }
  return attributions;
}

/** For active attention-write latents: which attended-to tokens drive the latent (§8.6), top `count`. */
export function tokenPairAttribution(
  ctx: TdbModelContext,
  run: InferenceResult,
  nodes: readonly NodeRef[],
  count: number,
): (TopTokensAttendedTo | null)[] {
  const family = ctx.attentionAutoencoder;
  return nodes.map((node) => {
    if (node.kind !== "attention_latent" || !family || family.site !== "resid_delta_attn") return null;
    const L = node.layer!;
    const ae = family.byLayer.get(L)!;
    const [t, l] = node.tensorIndices;
    const z = run.attentionLatents.get(L)!.values[t * ae.nLatents + l];
    if (!(z > 0)) return null;
    const attributions = attentionWriteToLatentByKey(ctx, run, L, l, t);
    const tokenIndices = largest(attributions, Math.min(count, run.tokens.length));
    return { tokenIndices, attributions: tokenIndices.map((u) => attributions[u]) };
  });
}
