/**
 * Compares a response we computed with one recorded from TDB's server (shared/fixtures/tdb-cases).
 *
 * Numbers match within `absTol + relTol·|recorded|`; `inferenceTime`, `memoryUsedBefore/After` and `log` are
 * ignored. Top-k answers are compared as selections, not as lists, because TDB breaks ties arbitrarily
 * (torch.topk): in a multiple-top-k response (nodeIndices + activationsByGroupId) a node may be present on one
 * side only if neither side's values force it in, i.e. its value in every group stays within tolerance of that
 * group's k-th largest / k-th smallest value for its node type; nodes on both sides must agree in every group;
 * and the k largest and k smallest values per (group, node type) must agree. Sibling lists over the same nodes
 * (scored tokens, token-pair attribution) are aligned by node. Ranked token lists (TopTokens) may reorder or
 * swap tokens only among tied values. The order of nodeIndices is checked where TDB's order is determined:
 * group blocks in TDB's order (write_norm, act_times_grad, direction_write, activation), top block then bottom
 * block, each sorted by value descending.
 */

export interface CompareOptions {
  absTol?: number;
  relTol?: number;
  /** Object keys whose values are not compared. */
  ignoreKeys?: readonly string[];
  /** k of the multiple-top-k response at `path` whose spec is `specName`; undefined = TDB's defaults. */
  topAndBottomK?: (path: string, specName: string | undefined) => number | undefined;
}

export const DEFAULT_IGNORED_KEYS = ["inferenceTime", "memoryUsedBefore", "memoryUsedAfter", "log"] as const;

/** k used by the specs /batched_tdb creates (topKComponents uses the request's topAndBottomKForNodeTable). */
export function tdbTopAndBottomK(specName: string | undefined, nodeTableK = 10): number {
  if (specName === "topOutputTokenLogits") return 100;
  if (specName === "componentSumsForTokenDisplay") return 1;
  return nodeTableK;
}

/** TDB's group order in make_grouped_dsts_per_component; it fixes the block order of nodeIndices. */
const GROUP_SELECTION_ORDER = [
  "write_norm",
  "act_times_grad",
  "direction_write",
  "activation",
  "logits",
  "direct_write_to_grad",
  "mlp_layer_write",
  "singleton",
  "token_write",
  "token_read",
  "token_pair_attribution",
];

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

interface NodeIndexLike {
  nodeType: string;
  tensorIndices: Array<number | null>;
  layerIndex: number | null;
}

interface Context {
  absTol: number;
  relTol: number;
  ignored: ReadonlySet<string>;
  topAndBottomK: (path: string, specName: string | undefined) => number;
  diffs: string[];
  /** Accepted one-sided nodes of sibling top-k responses, by the recorded node-set signature. */
  siblingTolerance: Map<string, Tolerance>;
  /** Index of the sub-response being walked and the batch size (node lists are unions over the batch). */
  subResponse: { index: number; count: number } | undefined;
  /** Per spec name: actual-only nodes not selectable in each sub-response (reported if in none). */
  unselectable: Map<string, Array<Set<string>>>;
}

interface Tolerance {
  recordedOnly: Set<string>;
  actualOnly: Set<string>;
}

const isObject = (value: unknown): value is JsonObject =>
  typeof value === "object" && value !== null && !Array.isArray(value);

function describe(value: unknown): string {
  const text = JSON.stringify(value);
  return text === undefined ? String(value) : text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function nodeKey(node: NodeIndexLike): string {
  return `${node.nodeType} L${node.layerIndex ?? "-"} [${node.tensorIndices.join(",")}]`;
}

function isNodeList(value: unknown): value is NodeIndexLike[] {
  return (
    Array.isArray(value) &&
    value.every(
      (node) => isObject(node) && typeof node.nodeType === "string" && Array.isArray(node.tensorIndices),
    )
  );
}

function isMultipleTopK(value: unknown): value is JsonObject {
  return isObject(value) && isObject(value.activationsByGroupId) && isNodeList(value.nodeIndices);
}

function nodeSignature(nodes: NodeIndexLike[]): string {
  return nodes.map(nodeKey).sort().join("|");
}

/** Returns every difference found (empty when the responses match). */
export function diffAgainstRecorded(
  actual: unknown,
  recorded: unknown,
  path = "$",
  options: CompareOptions = {},
): string[] {
  const resolveK = options.topAndBottomK;
  const ctx: Context = {
    absTol: options.absTol ?? 1e-4,
    relTol: options.relTol ?? 1e-3,
    ignored: new Set(options.ignoreKeys ?? DEFAULT_IGNORED_KEYS),
    topAndBottomK: (p, spec) => resolveK?.(p, spec) ?? tdbTopAndBottomK(spec),
    diffs: [],
    siblingTolerance: new Map(),
    subResponse: undefined,
    unselectable: new Map(),
  };
  walk(actual, recorded, path, undefined, ctx);
  return ctx.diffs;
}

/** Throws an error listing the differences (the first 30) unless `actual` matches `recorded`. */
export function expectMatchesRecorded(
  actual: unknown,
  recorded: unknown,
  path = "$",
  options: CompareOptions = {},
): void {
  const diffs = diffAgainstRecorded(actual, recorded, path, options);
  if (diffs.length > 0) {
    const shown = diffs.slice(0, 30).join("\n  ");
    const more = diffs.length > 30 ? `\n  … and ${diffs.length - 30} more` : "";
    throw new Error(`${diffs.length} difference(s) from the recorded TDB response:\n  ${shown}${more}`);
  }
}

function close(actual: number, recorded: number, ctx: Context): boolean {
  if (actual === recorded) return true;
  if (!Number.isFinite(actual) || !Number.isFinite(recorded)) return false;
  return Math.abs(actual - recorded) <= ctx.absTol + ctx.relTol * Math.abs(recorded);
}

function walk(actual: unknown, recorded: unknown, path: string, key: string | undefined, ctx: Context): void {
  if (typeof recorded === "number" && typeof actual === "number") {
    if (!close(actual, recorded, ctx)) ctx.diffs.push(`${path}: ${actual} vs recorded ${recorded}`);
    return;
  }
  if (Array.isArray(recorded) && Array.isArray(actual)) {
    if (key === "inferenceSubResponses") {
      walkSubResponses(actual, recorded, path, ctx);
      return;
    }
    if (isRankedTokenList(recorded)) {
      compareRankedTokens(actual, recorded, path, ctx);
      return;
    }
    if (actual.length !== recorded.length) {
      ctx.diffs.push(`${path}: ${actual.length} entries vs recorded ${recorded.length}`);
      return;
    }
    recorded.forEach((entry, i) => {
      walk(actual[i], entry, `${path}[${i}]`, undefined, ctx);
    });
    return;
  }
  if (isObject(recorded) && isObject(actual)) {
    if (isMultipleTopK(recorded) && isMultipleTopK(actual)) {
      compareTopK(actual, recorded, path, key, ctx);
      return;
    }
    if (isNodeList(recorded.nodeIndices) && isNodeList(actual.nodeIndices)) {
      const tolerance = ctx.siblingTolerance.get(nodeSignature(recorded.nodeIndices));
      if (tolerance) {
        compareAlignedByNode(actual, recorded, path, tolerance, ctx);
        return;
      }
    }
    if (Array.isArray(recorded.tokenIndices) && Array.isArray(recorded.attributions)) {
      compareRankedPairs(actual, recorded, path, ctx);
      return;
    }
    walkObject(actual, recorded, path, ctx);
    return;
  }
  if (actual !== recorded) ctx.diffs.push(`${path}: ${describe(actual)} vs recorded ${describe(recorded)}`);
}

function walkObject(actual: JsonObject, recorded: JsonObject, path: string, ctx: Context): void {
  const keys = new Set([...Object.keys(recorded), ...Object.keys(actual)]);
  // Top-k responses first, so sibling lists over the same nodes know which one-sided nodes were accepted.
  const ordered = [...keys].sort(
    (a, b) => Number(isMultipleTopK(recorded[b])) - Number(isMultipleTopK(recorded[a])),
  );
  const savedTolerance = ctx.siblingTolerance;
  ctx.siblingTolerance = new Map(savedTolerance);
  for (const key of ordered) {
    if (ctx.ignored.has(key)) continue;
    const childPath = `${path}.${key}`;
    if (!(key in actual)) ctx.diffs.push(`${childPath}: missing (recorded ${describe(recorded[key])})`);
    else if (!(key in recorded))
      ctx.diffs.push(`${childPath}: unexpected key (value ${describe(actual[key])})`);
    else walk(actual[key], recorded[key], childPath, key, ctx);
  }
  ctx.siblingTolerance = savedTolerance;
}

function walkSubResponses(actual: unknown[], recorded: unknown[], path: string, ctx: Context): void {
  if (actual.length !== recorded.length) {
    ctx.diffs.push(`${path}: ${actual.length} sub-responses vs recorded ${recorded.length}`);
    return;
  }
  const savedSub = ctx.subResponse;
  const savedUnselectable = ctx.unselectable;
  ctx.unselectable = new Map();
  recorded.forEach((entry, i) => {
    ctx.subResponse = { index: i, count: recorded.length };
    walk(actual[i], entry, `${path}[${i}]`, undefined, ctx);
  });
  // A node of a batched top-k list must be selected by at least one sub-request.
  for (const [specPath, perSub] of ctx.unselectable) {
    if (perSub.length < recorded.length) continue;
    const [first, ...rest] = perSub;
    for (const node of first) {
      if (rest.every((set) => set.has(node))) {
        ctx.diffs.push(
          `${specPath}: node ${node} is in no sub-request's top/bottom k (and not in the recording)`,
        );
      }
    }
  }
  ctx.subResponse = savedSub;
  ctx.unselectable = savedUnselectable;
}

// ---------------------------------------------------------------------------------------------------------------
// multiple top-k

interface Side {
  nodes: NodeIndexLike[];
  index: Map<string, number>;
  groups: Record<string, number[]>;
}

interface Bounds {
  /** k-th largest value (−∞ when fewer than k nodes: then every node is required). */
  top: number;
  /** k-th smallest value (+∞ when fewer than k nodes). */
  bottom: number;
  largest: number[];
  smallest: number[];
}

function readSide(response: JsonObject, path: string, label: string, ctx: Context): Side | undefined {
  const nodes = response.nodeIndices as unknown as NodeIndexLike[];
  const groups = response.activationsByGroupId as Record<string, number[]>;
  const index = new Map<string, number>();
  nodes.forEach((node, i) => {
    const key = nodeKey(node);
    if (index.has(key)) ctx.diffs.push(`${path}.nodeIndices: ${label} lists ${key} twice`);
    index.set(key, i);
  });
  for (const [group, values] of Object.entries(groups)) {
    if (!Array.isArray(values) || values.length !== nodes.length) {
      ctx.diffs.push(
        `${path}.activationsByGroupId.${group}: ${label} has ${values?.length} values for ${nodes.length} nodes`,
      );
      return undefined;
    }
  }
  return { nodes, index, groups };
}

function boundsOf(side: Side, group: string, nodeType: string, k: number): Bounds {
  const values = side.nodes
    .map((node, i) => (node.nodeType === nodeType ? side.groups[group][i] : undefined))
    .filter((value): value is number => value !== undefined)
    .sort((a, b) => b - a);
  const enough = values.length >= k;
  return {
    top: enough ? values[k - 1] : Number.NEGATIVE_INFINITY,
    bottom: enough ? values[values.length - k] : Number.POSITIVE_INFINITY,
    largest: values.slice(0, k),
    smallest: values.slice(-k).reverse(),
  };
}

function compareTopK(
  actual: JsonObject,
  recorded: JsonObject,
  path: string,
  specName: string | undefined,
  ctx: Context,
): void {
  const k = ctx.topAndBottomK(path, specName);
  const rec = readSide(recorded, path, "recorded", ctx);
  const act = readSide(actual, path, "actual", ctx);
  for (const key of new Set([...Object.keys(recorded), ...Object.keys(actual)])) {
    if (
      ctx.ignored.has(key) ||
      ["nodeIndices", "activationsByGroupId", "vocabTokenStringsForIndices"].includes(key)
    ) {
      continue;
    }
    if (!(key in actual)) ctx.diffs.push(`${path}.${key}: missing`);
    else if (!(key in recorded)) ctx.diffs.push(`${path}.${key}: unexpected key`);
    else walk(actual[key], recorded[key], `${path}.${key}`, key, ctx);
  }
  if (!rec || !act) return;

  const groups = Object.keys(rec.groups);
  const actualGroups = Object.keys(act.groups);
  if (groups.length !== actualGroups.length || groups.some((group) => !(group in act.groups))) {
    ctx.diffs.push(`${path}.activationsByGroupId: groups ${actualGroups} vs recorded ${groups}`);
    return;
  }
  const recVocab = recorded.vocabTokenStringsForIndices as Array<string | null> | null;
  const actVocab = actual.vocabTokenStringsForIndices as Array<string | null> | null;
  if ((recVocab === null) !== (actVocab === null)) {
    ctx.diffs.push(
      `${path}.vocabTokenStringsForIndices: ${describe(actVocab)} vs recorded ${describe(recVocab)}`,
    );
  }
  const nodeTypes = new Set([...rec.nodes, ...act.nodes].map((node) => node.nodeType));
  const bounds = (side: Side) => {
    const out = new Map<string, Bounds>();
    for (const group of groups)
      for (const type of nodeTypes) out.set(`${group}/${type}`, boundsOf(side, group, type, k));
    return out;
  };
  const recBounds = bounds(rec);
  const actBounds = bounds(act);

  // The selected values agree even where tied nodes differ.
  for (const group of groups) {
    for (const type of nodeTypes) {
      const r = recBounds.get(`${group}/${type}`) as Bounds;
      const a = actBounds.get(`${group}/${type}`) as Bounds;
      for (const [which, rv, av] of [
        ["largest", r.largest, a.largest],
        ["smallest", r.smallest, a.smallest],
      ] as const) {
        const mismatch =
          rv.length !== av.length
            ? `${av.length} values`
            : rv.findIndex((value, i) => !close(av[i], value, ctx));
        if (mismatch !== -1) {
          const at =
            typeof mismatch === "number"
              ? `#${mismatch + 1} is ${av[mismatch]} vs recorded ${rv[mismatch]}`
              : mismatch;
          ctx.diffs.push(`${path}: ${which} ${k} ${group} values of ${type} nodes differ: ${at}`);
        }
      }
    }
  }

  const beyond = (value: number, b: Bounds) =>
    (value > b.top && !close(value, b.top, ctx)) || (value < b.bottom && !close(value, b.bottom, ctx));
  const required = (side: Side, i: number, type: string, against: Map<string, Bounds>) =>
    groups.filter((group) => beyond(side.groups[group][i], against.get(`${group}/${type}`) as Bounds));
  const selectable = (side: Side, i: number, type: string, own: Map<string, Bounds>) =>
    groups.some((group) => {
      const b = own.get(`${group}/${type}`) as Bounds;
      const value = side.groups[group][i];
      return value >= b.top || value <= b.bottom || close(value, b.top, ctx) || close(value, b.bottom, ctx);
    });
  const valuesOf = (side: Side, i: number) =>
    groups.map((group) => `${group}=${side.groups[group][i]}`).join(" ");

  const tolerance: Tolerance = { recordedOnly: new Set(), actualOnly: new Set() };
  rec.nodes.forEach((node, ri) => {
    const key = nodeKey(node);
    const ai = act.index.get(key);
    if (ai === undefined) {
      const forcedBy = required(rec, ri, node.nodeType, actBounds);
      if (forcedBy.length > 0) {
        ctx.diffs.push(
          `${path}: missing node ${key} (recorded ${valuesOf(rec, ri)}; beyond the k-th value of ${forcedBy})`,
        );
      } else tolerance.recordedOnly.add(key);
      return;
    }
    for (const group of groups) {
      const rv = rec.groups[group][ri];
      const av = act.groups[group][ai];
      if (!close(av, rv, ctx))
        ctx.diffs.push(`${path}.activationsByGroupId.${group} @ ${key}: ${av} vs recorded ${rv}`);
    }
    if (recVocab && actVocab && recVocab[ri] !== actVocab[ai]) {
      ctx.diffs.push(
        `${path}.vocabTokenStringsForIndices @ ${key}: ${describe(actVocab[ai])} vs recorded ${describe(recVocab[ri])}`,
      );
    }
  });
  const unselectable = new Set<string>();
  act.nodes.forEach((node, ai) => {
    const key = nodeKey(node);
    if (rec.index.has(key)) return;
    const forcedBy = required(act, ai, node.nodeType, recBounds);
    if (forcedBy.length > 0) {
      ctx.diffs.push(
        `${path}: unexpected node ${key} (${valuesOf(act, ai)}; the recording would include it via ${forcedBy})`,
      );
    } else if (!selectable(act, ai, node.nodeType, actBounds)) {
      unselectable.add(key);
    } else tolerance.actualOnly.add(key);
  });
  if (ctx.subResponse && ctx.subResponse.count > 1) {
    const perSub = ctx.unselectable.get(specName ?? path) ?? [];
    perSub.push(unselectable);
    ctx.unselectable.set(specName ?? path, perSub);
    for (const key of unselectable) tolerance.actualOnly.add(key);
  } else {
    for (const key of unselectable)
      ctx.diffs.push(`${path}: node ${key} is in no top/bottom k and not in the recording`);
  }
  ctx.siblingTolerance.set(nodeSignature(rec.nodes), tolerance);

  if (!ctx.subResponse || ctx.subResponse.index === 0) checkOrder(act, groups, actBounds, path, ctx);
}

/**
 * TDB lists nodes block by block (for each group in TDB's order: its top k, then its bottom k, each sorted by
 * value descending), first occurrence wins. Checked for nodes whose block is unambiguous (no value tied with a
 * k-th value); nodes selected by no block (other sub-requests' picks) must come after all selected ones.
 */
function checkOrder(
  side: Side,
  groups: string[],
  bounds: Map<string, Bounds>,
  path: string,
  ctx: Context,
): void {
  const ordered = [...groups].sort((a, b) => rank(a) - rank(b));
  const blocks = ordered.flatMap((group) => [
    { group, top: true },
    { group, top: false },
  ]);
  let previous: { key: string; block: number; value: number } | undefined;
  side.nodes.forEach((node, i) => {
    let block = blocks.length;
    for (const [b, { group, top }] of blocks.entries()) {
      const bound = bounds.get(`${group}/${node.nodeType}`) as Bounds;
      const value = side.groups[group][i];
      const edge = top ? bound.top : bound.bottom;
      if (Number.isFinite(edge) && close(value, edge, ctx)) return; // ambiguous: skip this node
      if (top ? value > edge : value < edge) {
        block = b;
        break;
      }
    }
    const value = block < blocks.length ? side.groups[blocks[block].group][i] : Number.NaN;
    const key = nodeKey(node);
    if (previous) {
      const outOfOrder =
        block < previous.block ||
        (block === previous.block &&
          block < blocks.length &&
          value > previous.value &&
          !close(value, previous.value, ctx));
      if (outOfOrder) {
        const where = (b: number) =>
          b < blocks.length ? `${blocks[b].group} ${blocks[b].top ? "top" : "bottom"}` : "unselected";
        ctx.diffs.push(
          `${path}.nodeIndices: ${key} (${where(block)}, ${value}) comes after ${previous.key} (${where(previous.block)}, ${previous.value})`,
        );
      }
    }
    previous = { key, block, value };
  });
}

function rank(group: string): number {
  const i = GROUP_SELECTION_ORDER.indexOf(group);
  return i === -1 ? GROUP_SELECTION_ORDER.length : i;
}

// ---------------------------------------------------------------------------------------------------------------
// lists aligned with a top-k node list

function compareAlignedByNode(
  actual: JsonObject,
  recorded: JsonObject,
  path: string,
  tolerance: Tolerance,
  ctx: Context,
): void {
  const recNodes = recorded.nodeIndices as unknown as NodeIndexLike[];
  const actNodes = actual.nodeIndices as unknown as NodeIndexLike[];
  const actIndex = new Map(actNodes.map((node, i) => [nodeKey(node), i]));
  const recKeys = new Set(recNodes.map(nodeKey));
  for (const key of recKeys) {
    if (!actIndex.has(key) && !tolerance.recordedOnly.has(key))
      ctx.diffs.push(`${path}.nodeIndices: missing node ${key}`);
  }
  for (const key of actIndex.keys()) {
    if (!recKeys.has(key) && !tolerance.actualOnly.has(key))
      ctx.diffs.push(`${path}.nodeIndices: unexpected node ${key}`);
  }
  // The actual list must cover the same nodes as the actual top-k list it follows.
  for (const key of tolerance.actualOnly) {
    if (!actIndex.has(key)) ctx.diffs.push(`${path}.nodeIndices: missing node ${key} (in the top-k list)`);
  }
  for (const key of tolerance.recordedOnly) {
    if (actIndex.has(key))
      ctx.diffs.push(`${path}.nodeIndices: unexpected node ${key} (not in the top-k list)`);
  }
  for (const key of new Set([...Object.keys(recorded), ...Object.keys(actual)])) {
    if (key === "nodeIndices" || ctx.ignored.has(key)) continue;
    const rv = recorded[key];
    const av = actual[key];
    if (!(key in actual) || !(key in recorded)) {
      ctx.diffs.push(`${path}.${key}: ${key in actual ? "unexpected key" : "missing"}`);
    } else if (
      Array.isArray(rv) &&
      Array.isArray(av) &&
      rv.length === recNodes.length &&
      av.length === actNodes.length
    ) {
      recNodes.forEach((node, ri) => {
        const ai = actIndex.get(nodeKey(node));
        if (ai !== undefined) walk(av[ai], rv[ri], `${path}.${key} @ ${nodeKey(node)}`, undefined, ctx);
      });
    } else walk(av, rv, `${path}.${key}`, key, ctx);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// ranked lists (top/bottom tokens, attended-to tokens)

function isRankedTokenList(value: unknown[]): boolean {
  return (
    value.length > 0 &&
    value.every(
      (entry) => isObject(entry) && typeof entry.token === "string" && typeof entry.scalar === "number",
    )
  );
}

/**
 * Values must match position by position. Identities (tokens) may differ only within runs of tied values:
 * inside a run the same identities must appear; in the last run (which may continue past the list) any may.
 */
function compareRanked(
  actualIds: unknown[],
  actualValues: number[],
  recordedIds: unknown[],
  recordedValues: number[],
  path: string,
  ctx: Context,
): void {
  if (actualIds.length !== recordedIds.length || actualValues.length !== recordedValues.length) {
    ctx.diffs.push(`${path}: ${actualIds.length} entries vs recorded ${recordedIds.length}`);
    return;
  }
  recordedValues.forEach((value, i) => {
    if (!close(actualValues[i], value, ctx))
      ctx.diffs.push(`${path}[${i}]: value ${actualValues[i]} vs recorded ${value}`);
  });
  let start = 0;
  while (start < recordedIds.length) {
    let end = start + 1;
    while (end < recordedIds.length && close(recordedValues[end], recordedValues[end - 1], ctx)) end++;
    const isLastRun = end === recordedIds.length;
    if (!isLastRun) {
      const want = recordedIds
        .slice(start, end)
        .map((id) => JSON.stringify(id))
        .sort();
      const got = actualIds
        .slice(start, end)
        .map((id) => JSON.stringify(id))
        .sort();
      if (want.join("\u0000") !== got.join("\u0000")) {
        ctx.diffs.push(`${path}[${start}..${end - 1}]: ${got.join(", ")} vs recorded ${want.join(", ")}`);
      }
    }
    start = end;
  }
}

function compareRankedTokens(actual: unknown[], recorded: unknown[], path: string, ctx: Context): void {
  if (!isRankedTokenList(actual) && actual.length > 0) {
    ctx.diffs.push(`${path}: not a token list: ${describe(actual)}`);
    return;
  }
  const rec = recorded as JsonObject[];
  const act = actual as JsonObject[];
  const num = (list: JsonObject[], field: string) => list.map((entry) => entry[field] as number);
  compareRanked(
    act.map((entry) => entry.token),
    num(act, "scalar"),
    rec.map((entry) => entry.token),
    num(rec, "scalar"),
    path,
    ctx,
  );
  if (act.length === rec.length) {
    rec.forEach((entry, i) => {
      walk(act[i].normalizedScalar, entry.normalizedScalar, `${path}[${i}].normalizedScalar`, undefined, ctx);
      const extra = Object.keys(act[i]).filter((key) => !(key in entry));
      const missing = Object.keys(entry).filter((key) => !(key in act[i]));
      if (extra.length + missing.length > 0)
        ctx.diffs.push(`${path}[${i}]: keys ${Object.keys(act[i])} vs recorded ${Object.keys(entry)}`);
    });
  }
}

function compareRankedPairs(actual: JsonObject, recorded: JsonObject, path: string, ctx: Context): void {
  const keys = new Set([...Object.keys(recorded), ...Object.keys(actual)]);
  if (keys.size !== 2 || !Array.isArray(actual.tokenIndices) || !Array.isArray(actual.attributions)) {
    ctx.diffs.push(`${path}: ${describe(actual)} vs recorded ${describe(recorded)}`);
    return;
  }
  compareRanked(
    actual.tokenIndices,
    actual.attributions as number[],
    recorded.tokenIndices as Json[],
    recorded.attributions as number[],
    path,
    ctx,
  );
}
