/**
 * The TDB page's state, its URL form (TDB's own query keys, so TDB links open here) and the
 * /batched_tdb request built from it (tdb-spec §2.1 "Fetch logic", §2.1.8).
 */
import type {
  AttentionTraceType,
  BatchedTdbRequest,
  ComponentTypeForAttention,
  ComponentTypeForMlp,
  MirroredNodeIndex,
  NodeAblation,
  NodeToTrace,
  TdbRequestSpec,
} from "@tdb/attribution";

export interface PromptParams {
  prompt: string;
  targetTokens: string[];
  distractorTokens: string[];
}

export type MetricId = "activation" | "write_norm" | "direction_write" | "act_times_grad";
export type Side = "left" | "diff" | "right";
/** Node-table sort: a metric column (`direction_write.left`) or `name`, `layer`, `from`, `to`. */
export interface SortSpec {
  column: string;
  descending: boolean;
}

export interface DisplayOptions {
  logits: boolean;
  tokenEffect: boolean;
  nodeTable: boolean;
}

export interface TdbState {
  left: PromptParams;
  /** Second prompt (compare mode); ablations and the trace apply to both. */
  right: PromptParams | null;
  componentTypeForMlp: ComponentTypeForMlp;
  componentTypeForAttention: ComponentTypeForAttention;
  topAndBottomKForNodeTable: number;
  /** Client-side: hide nodes in layers before the earliest ablated layer (TDB's server ignored this). */
  hideEarlyLayersWhenAblating: boolean;
  nodeAblations: NodeAblation[];
  upstreamNodeToTrace: NodeToTrace | null;
  /** With a "V" trace only: the node whose gradient replaces the direction of interest (TDB's UI never sent it). */
  downstreamNodeToTrace: NodeToTrace | null;
  display: DisplayOptions;
  sort: SortSpec;
  filter: string;
  /** Beyond TDB: the head shown in the attention-pattern card, e.g. {layer: 1, head: 3}. */
  attentionHead: { layer: number; head: number } | null;
  /** Beyond TDB: the token index of the logit-lens card (-1 = last). */
  lensToken: number | null;
}

export const DEFAULT_PROMPT: PromptParams = {
  prompt: "<|endoftext|>Paris, France. Ottawa,",
  targetTokens: [" Canada"],
  distractorTokens: [" Germany"],
};

export const DEFAULT_SORT: SortSpec = { column: "direction_write.left", descending: true };

export function defaultState(): TdbState {
  return {
    left: structuredClone(DEFAULT_PROMPT),
    right: null,
    componentTypeForMlp: "neuron",
    componentTypeForAttention: "attention_head",
    topAndBottomKForNodeTable: 10,
    hideEarlyLayersWhenAblating: true,
    nodeAblations: [],
    upstreamNodeToTrace: null,
    downstreamNodeToTrace: null,
    display: { logits: true, tokenEffect: false, nodeTable: true },
    sort: { ...DEFAULT_SORT },
    filter: "",
    attentionHead: null,
    lensToken: null,
  };
}

// ---------------------------------------------------------------------------------------------
// URL <-> state

function parseJson<T>(text: string | null, valid: (value: unknown) => value is T): T | undefined {
  if (text === null) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return valid(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

const isStringArray = (v: unknown): v is string[] =>
  Array.isArray(v) && v.every((s) => typeof s === "string");
const isInt = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v);
const isBool = (v: unknown): v is boolean => typeof v === "boolean";

function isNodeIndex(v: unknown): v is MirroredNodeIndex {
  if (typeof v !== "object" || v === null) return false;
  const n = v as Record<string, unknown>;
  return (
    typeof n.nodeType === "string" &&
    Array.isArray(n.tensorIndices) &&
    n.tensorIndices.every((i) => i === null || isInt(i)) &&
    (n.layerIndex === null || n.layerIndex === undefined || isInt(n.layerIndex))
  );
}

function normalizeNodeIndex(n: MirroredNodeIndex): MirroredNodeIndex {
  return {
    nodeType: n.nodeType,
    tensorIndices: [...n.tensorIndices],
    layerIndex: n.layerIndex ?? null,
    passType: n.passType ?? "forward",
  };
}

function isAblationList(v: unknown): v is NodeAblation[] {
  return (
    Array.isArray(v) &&
    v.every(
      (a) => typeof a === "object" && a !== null && isNodeIndex(a.nodeIndex) && typeof a.value === "number",
    )
  );
}

const TRACE_TYPES: readonly string[] = ["Q", "K", "QK", "V"];
function isNodeToTrace(v: unknown): v is NodeToTrace {
  if (typeof v !== "object" || v === null) return false;
  const t = v as Record<string, unknown>;
  const type = t.attentionTraceType;
  return (
    isNodeIndex(t.nodeIndex) && (type == null || (typeof type === "string" && TRACE_TYPES.includes(type)))
  );
}

function parseMlp(raw: string | null): ComponentTypeForMlp {
  // TDB also accepted the legacy value "autoencoder".
  return raw === "autoencoder_latent" || raw === "autoencoder" ? "autoencoder_latent" : "neuron";
}

function parseSort(raw: string | null): SortSpec {
  if (!raw) return { ...DEFAULT_SORT };
  const [column, direction] = raw.split(":");
  if (!column) return { ...DEFAULT_SORT };
  return { column, descending: direction !== "asc" };
}

function parseDisplay(raw: string | null): DisplayOptions {
  if (raw === null) return defaultState().display;
  const parts = new Set(raw.split(",").filter((p) => p !== ""));
  return {
    logits: parts.has("logits"),
    tokenEffect: parts.has("tokenEffect"),
    nodeTable: parts.has("nodeTable"),
  };
}

function parseHead(raw: string | null): TdbState["attentionHead"] {
  const match = raw ? /^L(\d+)H(\d+)$/.exec(raw) : null;
  return match ? { layer: Number(match[1]), head: Number(match[2]) } : null;
}

export function stateFromSearch(search: string): TdbState {
  const params = new URLSearchParams(search);
  const state = defaultState();
  const get = (key: string) => params.get(key);
  if (get("prompt") !== null) state.left.prompt = get("prompt") ?? "";
  state.left.targetTokens = parseJson(get("targetTokens"), isStringArray) ?? state.left.targetTokens;
  state.left.distractorTokens =
    parseJson(get("distractorTokens"), isStringArray) ?? state.left.distractorTokens;
  const rightPrompt = get("rightPrompt");
  if (rightPrompt !== null) {
    state.right = {
      prompt: rightPrompt,
      targetTokens: parseJson(get("rightTargetTokens"), isStringArray) ?? [],
      distractorTokens: parseJson(get("rightDistractorTokens"), isStringArray) ?? [],
    };
  }
  state.componentTypeForMlp = parseMlp(get("componentTypeForMlp"));
  state.componentTypeForAttention =
    get("componentTypeForAttention") === "autoencoder_latent" ? "autoencoder_latent" : "attention_head";
  const k = parseJson(get("topAndBottomKForNodeTable"), isInt);
  if (k !== undefined && k >= 1) state.topAndBottomKForNodeTable = k;
  state.hideEarlyLayersWhenAblating =
    parseJson(get("hideEarlyLayersWhenAblating"), isBool) ?? state.hideEarlyLayersWhenAblating;
  state.nodeAblations = (parseJson(get("nodeAblations"), isAblationList) ?? []).map((a) => ({
    nodeIndex: normalizeNodeIndex(a.nodeIndex),
    value: a.value,
  }));
  const trace = parseJson(get("upstreamNodeToTrace"), isNodeToTrace);
  state.upstreamNodeToTrace = trace
    ? traceOf(normalizeNodeIndex(trace.nodeIndex), trace.attentionTraceType ?? null)
    : null;
  const downstream = parseJson(get("downstreamNodeToTrace"), isNodeToTrace);
  // Meaningful only below a "V" trace, and never itself a "V" trace (the server refuses both).
  state.downstreamNodeToTrace =
    downstream && isValueTrace(state) && downstream.attentionTraceType !== "V"
      ? traceOf(normalizeNodeIndex(downstream.nodeIndex), downstream.attentionTraceType ?? null)
      : null;
  state.display = parseDisplay(get("display"));
  state.sort = parseSort(get("sort"));
  state.filter = get("filter") ?? "";
  state.attentionHead = parseHead(get("attnHead"));
  const lens = get("lensToken");
  state.lensToken = lens !== null && /^-?\d+$/.test(lens) ? Number(lens) : null;
  return state;
}

function displayString(d: DisplayOptions): string {
  return (["logits", "tokenEffect", "nodeTable"] as const).filter((key) => d[key]).join(",");
}

/** Query string (with "?", or "") holding every non-default value; TDB's keys and encodings. */
export function searchFromState(state: TdbState): string {
  const defaults = defaultState();
  const params = new URLSearchParams();
  const raw = (key: string, value: string, fallback: string) => {
    if (value !== fallback) params.set(key, value);
  };
  const json = (key: string, value: unknown, fallback: unknown) => {
    const text = JSON.stringify(value);
    if (text !== JSON.stringify(fallback)) params.set(key, text);
  };
  raw("componentTypeForMlp", state.componentTypeForMlp, defaults.componentTypeForMlp);
  raw("componentTypeForAttention", state.componentTypeForAttention, defaults.componentTypeForAttention);
  json("topAndBottomKForNodeTable", state.topAndBottomKForNodeTable, defaults.topAndBottomKForNodeTable);
  json(
    "hideEarlyLayersWhenAblating",
    state.hideEarlyLayersWhenAblating,
    defaults.hideEarlyLayersWhenAblating,
  );
  raw("prompt", state.left.prompt, defaults.left.prompt);
  json("targetTokens", state.left.targetTokens, defaults.left.targetTokens);
  json("distractorTokens", state.left.distractorTokens, defaults.left.distractorTokens);
  json("nodeAblations", state.nodeAblations, []);
  json("upstreamNodeToTrace", state.upstreamNodeToTrace, null);
  json("downstreamNodeToTrace", state.downstreamNodeToTrace, null);
  if (state.right) {
    params.set("rightPrompt", state.right.prompt);
    json("rightTargetTokens", state.right.targetTokens, []);
    json("rightDistractorTokens", state.right.distractorTokens, []);
  }
  raw("display", displayString(state.display), displayString(defaults.display));
  raw("sort", `${state.sort.column}:${state.sort.descending ? "desc" : "asc"}`, "direction_write.left:desc");
  raw("filter", state.filter, "");
  if (state.attentionHead)
    params.set("attnHead", `L${state.attentionHead.layer}H${state.attentionHead.head}`);
  if (state.lensToken !== null) params.set("lensToken", String(state.lensToken));
  const text = params.toString();
  return text === "" ? "" : `?${text}`;
}

// ---------------------------------------------------------------------------------------------
// requests

/**
 * How the sub-responses pair up: `single` (one prompt), `compare` (left/right prompts), or
 * `baseline` (one prompt with ablations: left = ablated, right = the same prompt un-ablated).
 */
export type PairingMode = "single" | "compare" | "baseline";

export function pairingMode(state: TdbState): PairingMode {
  if (state.right) return "compare";
  return state.nodeAblations.length > 0 ? "baseline" : "single";
}

function spec(prompt: PromptParams, state: TdbState, nodeAblations: NodeAblation[]): TdbRequestSpec {
  const out: TdbRequestSpec = {
    specType: "tdb_request_spec",
    prompt: prompt.prompt,
    targetTokens: [...prompt.targetTokens],
    distractorTokens: [...prompt.distractorTokens],
    componentTypeForMlp: state.componentTypeForMlp,
    componentTypeForAttention: state.componentTypeForAttention,
    topAndBottomKForNodeTable: state.topAndBottomKForNodeTable,
    hideEarlyLayersWhenAblating: state.hideEarlyLayersWhenAblating,
    nodeAblations,
  };
  if (state.upstreamNodeToTrace) out.upstreamNodeToTrace = state.upstreamNodeToTrace;
  if (state.downstreamNodeToTrace && isValueTrace(state))
    out.downstreamNodeToTrace = state.downstreamNodeToTrace;
  return out;
}

/** TDB's pairing: a second prompt gets the left's ablations and trace; ablations alone add a baseline. */
export function buildBatchedTdbRequest(state: TdbState): BatchedTdbRequest {
  const mode = pairingMode(state);
  const subRequests = [spec(state.left, state, state.nodeAblations)];
  if (mode === "compare" && state.right) subRequests.push(spec(state.right, state, state.nodeAblations));
  if (mode === "baseline") subRequests.push(spec(state.left, state, []));
  return { subRequests };
}

// ---------------------------------------------------------------------------------------------
// edits

export function nodeIndexKey(
  n: Pick<MirroredNodeIndex, "nodeType" | "layerIndex" | "tensorIndices">,
): string {
  return `${n.nodeType}.${n.layerIndex ?? "-"}.${n.tensorIndices.join(",")}`;
}

function toRequestNode(
  n: Pick<MirroredNodeIndex, "nodeType" | "layerIndex" | "tensorIndices">,
): MirroredNodeIndex {
  return {
    nodeType: n.nodeType,
    layerIndex: n.layerIndex,
    tensorIndices: [...n.tensorIndices],
    passType: "forward",
  };
}

export function withAblation(state: TdbState, node: MirroredNodeIndex): TdbState {
  const key = nodeIndexKey(node);
  if (state.nodeAblations.some((a) => nodeIndexKey(a.nodeIndex) === key)) return state;
  return { ...state, nodeAblations: [...state.nodeAblations, { nodeIndex: toRequestNode(node), value: 0 }] };
}

export function withoutAblation(state: TdbState, index: number): TdbState {
  return { ...state, nodeAblations: state.nodeAblations.filter((_, i) => i !== index) };
}

/** TDB's shape: `attentionTraceType` only for attention nodes. */
function traceOf(nodeIndex: MirroredNodeIndex, type: AttentionTraceType | null): NodeToTrace {
  return type === null ? { nodeIndex } : { nodeIndex, attentionTraceType: type };
}

export function withTrace(
  state: TdbState,
  node: MirroredNodeIndex,
  type: AttentionTraceType | null,
): TdbState {
  return { ...state, upstreamNodeToTrace: traceOf(toRequestNode(node), type), downstreamNodeToTrace: null };
}

export function isValueTrace(state: Pick<TdbState, "upstreamNodeToTrace">): boolean {
  return state.upstreamNodeToTrace?.attentionTraceType === "V";
}

/**
 * Traces the current "V" trace into a downstream node: its reconstituted scalar (pre-activation; for an
 * attention head the query·key logit, through both) replaces the direction of interest (tdb-spec §4.5).
 */
export function withDownstreamTrace(state: TdbState, node: MirroredNodeIndex): TdbState {
  if (!isValueTrace(state)) return state;
  const type = node.nodeType === "attention_head" ? "QK" : null;
  return { ...state, downstreamNodeToTrace: traceOf(toRequestNode(node), type) };
}

/** Checks TDB's server would run; each is a readable warning shown next to the prompt. */
export function promptWarnings(params: PromptParams): string[] {
  const warnings: string[] = [];
  if (params.prompt.endsWith(" "))
    warnings.push("Prompt ends with a space (the next token usually carries it).");
  for (const token of [...params.targetTokens, ...params.distractorTokens]) {
    if (token === "") warnings.push("A token of interest is empty.");
    else if (!token.startsWith(" ")) warnings.push(`Token "${token}" does not start with a space.`);
  }
  if (params.targetTokens.length === 0) warnings.push("At least one target token is needed.");
  return warnings;
}
