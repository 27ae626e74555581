/**
 * Read-only views of a /batched_tdb response for the cards: node rows, logits rows, token-effect rows.
 * Values are the server's; the only arithmetic is TDB's own display arithmetic (left − right, row/column
 * sums of the attention matrix for the token-effect display).
 */
import type {
  InferenceResponseAndResponseDict,
  MirroredNodeIndex,
  MirroredNodeIndexOut,
  MultipleTopKDerivedScalarsResponseData,
  NodeToTrace,
  ScoredTokensResponseData,
  TensorND,
  TokenPairAttributionResponseData,
  TopTokens,
} from "@tdb/attribution";
import { formatToken } from "../format.js";
import type { MetricId, PairingMode, PromptParams, Side, SortSpec } from "./state.js";
import { nodeIndexKey } from "./state.js";

export interface MetricInfo {
  id: MetricId;
  label: string;
  help: string;
}

export const METRICS: readonly MetricInfo[] = [
  {
    id: "activation",
    label: "Activation",
    help: "MLP post-activation, attention post-softmax probability, or autoencoder latent activation.",
  },
  {
    id: "write_norm",
    label: "Write magnitude",
    help: "Activation × norm of the node's write vector into the residual stream.",
  },
  {
    id: "direction_write",
    label: "Direct effect",
    help: "The node's write vector projected onto the gradient of the direction of interest at the final residual.",
  },
  {
    id: "act_times_grad",
    label: "Estimated total effect",
    help: "Activation × gradient: a first-order estimate of the node's total effect on the direction of interest.",
  },
];

export interface Paired {
  left: number;
  right: number | null;
  diff: number | null;
}

export interface NodeRow {
  key: string;
  node: MirroredNodeIndexOut;
  name: string;
  layer: number | null;
  /** Query token (`tensorIndices[0]`). */
  from: number;
  /** Key token of an attention-head node (`tensorIndices[1]`). */
  to: number | null;
  /** Position in the server's node list (TDB's order). */
  order: number;
  metrics: Record<MetricId, Paired>;
  /** Per side: upvoted output tokens, input tokens that upvote the MLP node, token-pair attribution. */
  upvoted: [TopTokens | null, TopTokens | null];
  inputUpvoting: [TopTokens | null, TopTokens | null];
  tokenPairs: [
    { tokenIndices: number[]; attributions: number[] } | null,
    null | { tokenIndices: number[]; attributions: number[] },
  ];
}

export function nodeName(n: Pick<MirroredNodeIndex, "nodeType" | "layerIndex" | "tensorIndices">): string {
  const last = n.tensorIndices[n.tensorIndices.length - 1];
  const l = n.layerIndex;
  switch (n.nodeType) {
    case "attention_head":
      return `attn_L${l}_${last}`;
    case "mlp_neuron":
      return `mlp_L${l}_${last}`;
    case "autoencoder_latent":
      return `latent_L${l}_${last}`;
    case "mlp_autoencoder_latent":
      return `mlp_ae_L${l}_${last}`;
    case "attention_autoencoder_latent":
      return `attn_ae_L${l}_${last}`;
    case "layer":
      return "embedding";
    default:
      return `${n.nodeType}_L${l}_${last}`;
  }
}

export const isAttentionType = (t: string): boolean =>
  t === "attention_head" || t === "attention_autoencoder_latent" || t === "autoencoder_latent_by_token_pair";

function topK(
  sub: InferenceResponseAndResponseDict,
  name: string,
): MultipleTopKDerivedScalarsResponseData | null {
  const data = sub.processingResponseDataByName[name];
  return data?.responseDataType === "multiple_top_k_derived_scalars_response_data" ? data : null;
}

function scored(
  sub: InferenceResponseAndResponseDict | undefined,
  name: string,
): ScoredTokensResponseData | null {
  const data = sub?.processingResponseDataByName[name];
  return data?.responseDataType === "scored_tokens_response_data" ? data : null;
}

function pairs(sub: InferenceResponseAndResponseDict | undefined): TokenPairAttributionResponseData | null {
  const data = sub?.processingResponseDataByName.tokenPairAttribution;
  return data?.responseDataType === "token_pair_attribution_response_data" ? data : null;
}

/** Looks a list up by node key, since the two sides may (in principle) order nodes differently. */
function byKey<T>(
  nodes: readonly MirroredNodeIndexOut[] | undefined,
  values: readonly T[] | undefined,
): Map<string, T> {
  const map = new Map<string, T>();
  if (!nodes || !values) return map;
  for (let i = 0; i < nodes.length; i++) map.set(nodeIndexKey(nodes[i]), values[i]);
  return map;
}

/** One row per node of `topKComponents` (the batch's union), with left/right/diff per metric. */
export function buildNodeRows(
  left: InferenceResponseAndResponseDict,
  right: InferenceResponseAndResponseDict | null,
): NodeRow[] {
  const l = topK(left, "topKComponents");
  if (!l) return [];
  const r = right ? topK(right, "topKComponents") : null;
  const rightValues = new Map<MetricId, Map<string, number>>();
  for (const m of METRICS) rightValues.set(m.id, byKey(r?.nodeIndices, r?.activationsByGroupId[m.id]));
  const sideLists = (name: string) => {
    const a = scored(left, name);
    const b = scored(right ?? undefined, name);
    return [byKey(a?.nodeIndices, a?.topTokensList), byKey(b?.nodeIndices, b?.topTokensList)] as const;
  };
  const [upL, upR] = sideLists("upvotedOutputTokens");
  const [inL, inR] = sideLists("inputTokensThatUpvoteMlp");
  const pl = pairs(left);
  const pr = pairs(right ?? undefined);
  const pairL = byKey(pl?.nodeIndices, pl?.topTokensAttendedToList);
  const pairR = byKey(pr?.nodeIndices, pr?.topTokensAttendedToList);

  return l.nodeIndices.map((node, i) => {
    const key = nodeIndexKey(node);
    const metrics = {} as Record<MetricId, Paired>;
    for (const m of METRICS) {
      const leftValue = l.activationsByGroupId[m.id]?.[i] ?? 0;
      const rightValue = r ? (rightValues.get(m.id)?.get(key) ?? 0) : null;
      metrics[m.id] = {
        left: leftValue,
        right: rightValue,
        diff: rightValue === null ? null : leftValue - rightValue,
      };
    }
    return {
      key,
      node,
      name: nodeName(node),
      layer: node.layerIndex,
      from: node.tensorIndices[0] ?? 0,
      to: node.nodeType === "attention_head" ? (node.tensorIndices[1] ?? null) : null,
      order: i,
      metrics,
      upvoted: [upL.get(key) ?? null, upR.get(key) ?? null],
      inputUpvoting: [inL.get(key) ?? null, inR.get(key) ?? null],
      tokenPairs: [pairL.get(key) ?? null, pairR.get(key) ?? null],
    };
  });
}

/** Largest |value| of a metric over every row and both sides (TDB's colour scale). */
export function metricScale(rows: readonly NodeRow[], metric: MetricId): number {
  let max = 0;
  for (const row of rows) {
    const p = row.metrics[metric];
    max = Math.max(max, Math.abs(p.left), Math.abs(p.right ?? 0), Math.abs(p.diff ?? 0));
  }
  return max;
}

function sortValue(row: NodeRow, column: string, tokens: readonly string[]): number | string {
  switch (column) {
    case "name":
      return row.name;
    case "layer":
      return row.layer ?? -1;
    case "from":
      return row.from;
    case "to":
      return row.to ?? -1;
    case "fromToken":
      return tokens[row.from] ?? "";
    default: {
      const [metric, side] = column.split(".") as [MetricId, Side];
      const value = row.metrics[metric]?.[side ?? "left"];
      return value ?? 0;
    }
  }
}

export function sortRows(
  rows: readonly NodeRow[],
  sort: SortSpec,
  tokens: readonly string[] = [],
): NodeRow[] {
  const sign = sort.descending ? -1 : 1;
  const collator = new Intl.Collator(undefined, { numeric: true });
  return [...rows].sort((a, b) => {
    const va = sortValue(a, sort.column, tokens);
    const vb = sortValue(b, sort.column, tokens);
    const cmp =
      typeof va === "string" || typeof vb === "string" ? collator.compare(String(va), String(vb)) : va - vb;
    return cmp !== 0 ? sign * cmp : a.order - b.order;
  });
}

/**
 * Text filter: words must all match the node name, node type, `L<layer>`, or a token it reads
 * (e.g. `attn L1`, `mlp`, `Mary`).
 */
export function filterRows(rows: readonly NodeRow[], filter: string, tokens: readonly string[]): NodeRow[] {
  const words = filter
    .toLowerCase()
    .split(/\s+/)
    .filter((w) => w !== "");
  if (words.length === 0) return [...rows];
  return rows.filter((row) => {
    const hay = [
      row.name,
      row.node.nodeType,
      row.layer === null ? "" : `l${row.layer}`,
      tokens[row.from] ?? "",
      row.to === null ? "" : (tokens[row.to] ?? ""),
    ]
      .join(" ")
      .toLowerCase();
    return words.every((w) => hay.includes(w));
  });
}

/** Layer of the earliest ablation, for "hide earlier layers when ablating". */
export function earliestAblatedLayer(
  ablations: readonly { nodeIndex: { layerIndex?: number | null } }[],
): number | null {
  let min: number | null = null;
  for (const a of ablations) {
    const l = a.nodeIndex.layerIndex ?? 0;
    if (min === null || l < min) min = l;
  }
  return min;
}

// ---------------------------------------------------------------------------------------------
// logits

export interface LogitRow {
  token: string;
  vocabId: number;
  left: number | null;
  right: number | null;
  diff: number | null;
  /** "target", "distractor", "left target", … for pinned tokens of interest. */
  pin: string | null;
}

export interface LogitsView {
  rows: LogitRow[];
  pinned: LogitRow[];
  /** Pinned tokens that are outside the returned top/bottom 100. */
  missing: { token: string; pin: string }[];
  /** The token position the logits are read at. */
  tokenIndex: number;
}

export function buildLogits(
  left: InferenceResponseAndResponseDict,
  right: InferenceResponseAndResponseDict | null,
  leftParams: PromptParams,
  rightParams: PromptParams | null,
): LogitsView {
  const l = topK(left, "topOutputTokenLogits");
  const r = right ? topK(right, "topOutputTokenLogits") : null;
  const byId = new Map<number, LogitRow>();
  const add = (data: MultipleTopKDerivedScalarsResponseData | null, side: "left" | "right") => {
    if (!data) return;
    data.nodeIndices.forEach((n, i) => {
      const id = n.tensorIndices[n.tensorIndices.length - 1] ?? -1;
      let row = byId.get(id);
      if (!row) {
        row = {
          token: data.vocabTokenStringsForIndices?.[i] ?? "",
          vocabId: id,
          left: null,
          right: null,
          diff: null,
          pin: null,
        };
        byId.set(id, row);
      }
      row[side] = data.activationsByGroupId.logits?.[i] ?? null;
    });
  };
  add(l, "left");
  add(r, "right");
  const rows = [...byId.values()];
  if (right)
    for (const row of rows) row.diff = row.left !== null && row.right !== null ? row.left - row.right : null;

  // Pinned tokens of interest, in TDB's order: left target, left distractor, right target, right distractor.
  const sameSides =
    !rightParams ||
    (JSON.stringify(rightParams.targetTokens) === JSON.stringify(leftParams.targetTokens) &&
      JSON.stringify(rightParams.distractorTokens) === JSON.stringify(leftParams.distractorTokens));
  const wanted: { token: string; pin: string }[] = [];
  const push = (tokens: string[], kind: string, side: string) => {
    for (const token of tokens) wanted.push({ token, pin: sameSides ? kind : `${side} ${kind}` });
  };
  push(leftParams.targetTokens, "target", "left");
  push(leftParams.distractorTokens, "distractor", "left");
  if (rightParams && !sameSides) {
    push(rightParams.targetTokens, "target", "right");
    push(rightParams.distractorTokens, "distractor", "right");
  }
  const pinned: LogitRow[] = [];
  const missing: { token: string; pin: string }[] = [];
  const seen = new Set<string>();
  for (const w of wanted) {
    if (seen.has(w.token)) continue;
    seen.add(w.token);
    const row = rows.find((candidate) => candidate.token === w.token);
    if (row) pinned.push({ ...row, pin: w.pin });
    else missing.push(w);
  }
  const first = l?.nodeIndices[0]?.tensorIndices[0];
  return { rows, pinned, missing, tokenIndex: first ?? -1 };
}

// ---------------------------------------------------------------------------------------------
// token effect (componentSumsForTokenDisplay, act×grad sums, neuron/head basis)

export interface TokenEffectRow {
  label: string;
  values: number[];
}

function vector(t: TensorND | undefined): number[] | null {
  return t?.tensorType === "tensor_1d" ? t.value : null;
}

export function buildTokenEffect(sub: InferenceResponseAndResponseDict): TokenEffectRow[] {
  const sums = topK(sub, "componentSumsForTokenDisplay")?.intermediateSumActivationsByDstByGroupId
    .act_times_grad;
  if (!sums) return [];
  const rows: TokenEffectRow[] = [];
  const emb = vector(sums.token_attribution);
  if (emb) rows.push({ label: "Embeddings", values: emb });
  const mlp = vector(sums.mlp_act_times_grad);
  if (mlp) rows.push({ label: "MLP layers", values: mlp });
  const attn = sums.unflattened_attn_act_times_grad;
  if (attn?.tensorType === "tensor_2d") {
    const m = attn.value;
    rows.push({ label: "Attention, attended from", values: m.map((row) => row.reduce((a, b) => a + b, 0)) });
    rows.push({
      label: "Attention, attended to",
      values: m.map((_, u) => m.reduce((acc, row) => acc + (row[u] ?? 0), 0)),
    });
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------
// misc

/** TDB's rule for which side's top tokens to show. */
export function topTokenSides(mode: PairingMode, lists: [TopTokens | null, TopTokens | null]): Array<0 | 1> {
  const [a, b] = lists;
  if (mode === "single" || !b) return a ? [0] : [];
  if (!a) return [1];
  const topAbs = (t: TopTokens) => Math.abs(t.top[0]?.scalar ?? 0);
  if (topAbs(a) <= 0.01 && topAbs(b) > 0.01) return [1];
  if (topAbs(b) <= 0.01) return [0];
  const same =
    JSON.stringify(a.top.map((t) => t.token)) === JSON.stringify(b.top.map((t) => t.token)) &&
    JSON.stringify(a.bottom.map((t) => t.token)) === JSON.stringify(b.bottom.map((t) => t.token));
  if (same) return [topAbs(a) >= topAbs(b) ? 0 : 1];
  return [0, 1];
}

export interface TraceDescription {
  /** Parts: plain text and emphasised node/token names. */
  parts: Array<{ text: string; strong?: boolean }>;
}

const TRACE_WORD: Record<string, string> = { Q: "query", K: "key", QK: "query and key", V: "value" };

export function describeTrace(
  trace: NodeToTrace,
  tokens: readonly string[],
  downstream: NodeToTrace | null = null,
): TraceDescription {
  const n = trace.nodeIndex;
  const tok = (i: number | null | undefined) =>
    i === null || i === undefined ? "?" : `${formatToken(tokens[i] ?? "?")} (${i})`;
  const name = nodeName(n);
  const type = trace.attentionTraceType;
  if (n.nodeType === "attention_head" || n.nodeType === "attention_autoencoder_latent") {
    const from = tok(n.tensorIndices[0]);
    const to = n.nodeType === "attention_head" ? tok(n.tensorIndices[1]) : null;
    const span =
      to === null
        ? [{ text: " at " }, { text: from, strong: true }]
        : [
            { text: " attention from " },
            { text: from, strong: true },
            { text: " to " },
            { text: to, strong: true },
          ];
    if (type === "V") {
      const target = downstream
        ? [
            { text: " increase " },
            { text: nodeName(downstream.nodeIndex), strong: true },
            { text: " at " },
            { text: tok(downstream.nodeIndex.tensorIndices[0]), strong: true },
            {
              text:
                downstream.nodeIndex.nodeType === "attention_head"
                  ? " (its query·key logit)? Tracing through "
                  : " (its pre-activation)? Tracing through ",
            },
          ]
        : [{ text: " increase the direction of interest? Tracing through " }];
      return {
        parts: [
          { text: "Why did " },
          { text: name, strong: true },
          ...span,
          ...target,
          { text: "value", strong: true },
          { text: "." },
        ],
      };
    }
    return {
      parts: [
        { text: "What caused " },
        { text: name, strong: true },
        ...span,
        { text: "? Tracing through " },
        { text: TRACE_WORD[type ?? "QK"] ?? "query and key", strong: true },
        { text: "." },
      ],
    };
  }
  return {
    parts: [
      { text: "What caused " },
      { text: name, strong: true },
      { text: " activation at " },
      { text: tok(n.tensorIndices[0]), strong: true },
      { text: "?" },
    ],
  };
}
