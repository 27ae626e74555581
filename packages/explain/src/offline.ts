/**
 * Explanations without a language model. An explanation lists the features behind a component's top
 * activations, learned on the train (top) records only:
 * - per-token components: the tokens it fires on, the tokens that precede them, the first position;
 * - attention heads: the offsets (previous token, itself, k back), the first token, the tokens attended to
 *   and from.
 * Each listed feature carries a weight (its mean activation on the train records, scaled to [0, 1]); the
 * simulator predicts the sum of the weights of the features present, and is scored on the held-out records
 * as TDB scores (correlation; ROC-AUC for heads). The same parser reads free text with weight 1 for every
 * quoted string (or, without quotes, every content word): the keyword-overlap simulator.
 */
import type { ActivationRecord } from "@tdb/datasets";
import { absoluteDeviationExplained, correlation, rocAuc, rSquared } from "./metrics.js";
import { allPairs, scoringPairs } from "./pairs.js";
import { maxActivationOf, type TokenPair } from "./records.js";

export type Matching = "exact" | "normalized";

/** A per-token simulator: weights of current tokens, preceding tokens and the first position. */
export interface TokenFeatureModel {
  type: "tokens";
  tokens: [string, number][];
  previous: [string, number][];
  first: number;
  matching: Matching;
}

/**
 * A token-pair simulator: weights of offsets (from − to), the first token, positions attended from (buckets
 * 0, 1, 2–3, 4–7, …, keyed by their first position), tokens attended to and from.
 */
export interface PairFeatureModel {
  type: "pairs";
  offsets: [number, number][];
  first: number;
  fromPositions: [number, number][];
  to: [string, number][];
  from: [string, number][];
  matching: Matching;
}

/** At most this many entries per feature list (keeps explanations short and the simulator from memorising). */
const MAX_LISTED = 8;
const MAX_LISTED_OFFSETS = 3;
/** A listed entry must fire on average at least this much (relative to the max) where it occurs. */
const MIN_MEAN = 0.2;
/** Each extra feature kind must buy this much training correlation. */
const FEATURE_PENALTY = 0.02;

function normalizeToken(text: string): string {
  const trimmed = text.trim().toLowerCase();
  return trimmed === "" ? text : trimmed;
}

function lookup<K>(entries: readonly [K, number][], matching: Matching): (key: K) => number {
  const map = new Map<unknown, number>();
  for (const [key, weight] of entries) {
    const k = matching === "normalized" && typeof key === "string" ? normalizeToken(key) : key;
    map.set(k, (map.get(k) ?? 0) + weight);
  }
  return (key) =>
    map.get(matching === "normalized" && typeof key === "string" ? normalizeToken(key) : key) ?? 0;
}

export function predictTokens(model: TokenFeatureModel, tokens: readonly string[]): number[] {
  const token = lookup(model.tokens, model.matching);
  const previous = lookup(model.previous, model.matching);
  return tokens.map((t, i) => token(t) + (i > 0 ? previous(tokens[i - 1]) : model.first));
}

/** Position buckets 0, 1, 2–3, 4–7, 8–15, …, each keyed by its first position. */
export function positionBucket(position: number): number {
  return position < 2 ? position : 2 ** Math.floor(Math.log2(position));
}

export function predictPair(model: PairFeatureModel, tokens: readonly string[], pair: TokenPair): number {
  const offset = lookup(model.offsets, "exact");
  const position = lookup(model.fromPositions, "exact");
  const to = lookup(model.to, model.matching);
  const from = lookup(model.from, model.matching);
  return (
    offset(pair.from - pair.to) +
    (pair.to === 0 ? model.first : 0) +
    position(positionBucket(pair.from)) +
    to(tokens[pair.to]) +
    from(tokens[pair.from])
  );
}

class MeanTable<K> {
  readonly sums = new Map<K, number>();
  readonly counts = new Map<K, number>();
  add(key: K, value: number): void {
    this.sums.set(key, (this.sums.get(key) ?? 0) + value);
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }
  mean(key: K): number {
    const n = this.counts.get(key) ?? 0;
    return n > 0 ? this.sums.get(key)! / n : 0;
  }
  /** Entries firing at least MIN_MEAN on average, by total activation (ties by key), with their means. */
  listed(limit: number, keepBest: boolean): [K, number][] {
    const entries = [...this.sums]
      .filter(([, sum]) => sum > 0)
      .sort((a, b) => b[1] - a[1] || String(a[0]).localeCompare(String(b[0])));
    const kept = entries.filter(([key]) => this.mean(key) >= MIN_MEAN).slice(0, limit);
    if (kept.length === 0 && keepBest && entries.length > 0) kept.push(entries[0]);
    return kept.map(([key]) => [key, this.mean(key)]);
  }
}

/** Every non-empty subset of the available feature kinds. */
function subsets<T>(items: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let mask = 1; mask < 1 << items.length; mask++) out.push(items.filter((_, i) => mask & (1 << i)));
  return out;
}

function quote(token: string): string {
  return JSON.stringify(token);
}

function quotedList(entries: readonly [string, number][]): string {
  return entries.map(([token]) => quote(token)).join(", ");
}

// ---------------------------------------------------------------------------------------------
// per-token components

export interface FittedTokenModel {
  model: TokenFeatureModel;
  explanation: string;
  /** Correlation on the train records (what chose the features; not a score). */
  trainCorrelation: number;
}

/** Learns the listed features on the train records; null when nothing in them is positive. */
export function fitTokenModel(train: readonly ActivationRecord[]): FittedTokenModel | null {
  const max = maxActivationOf(train);
  if (!(max > 0)) return null;
  const token = new MeanTable<string>();
  const previous = new MeanTable<string>();
  const first = new MeanTable<number>();
  for (const r of train) {
    r.tokens.forEach((t, i) => {
      const a = Math.max(r.activations[i], 0) / max;
      token.add(t, a);
      if (i > 0) previous.add(r.tokens[i - 1], a);
      else first.add(0, a);
    });
  }
  const full: TokenFeatureModel = {
    type: "tokens",
    tokens: token.listed(MAX_LISTED, true),
    previous: previous.listed(MAX_LISTED, false),
    first: first.mean(0) >= MIN_MEAN ? first.mean(0) : 0,
    matching: "exact",
  };
  const kinds = (["tokens", "previous", "first"] as const).filter((k) =>
    k === "first" ? full.first > 0 : full[k].length > 0,
  );
  const real = train.flatMap((r) => r.activations);
  let best: { model: TokenFeatureModel; objective: number; correlation: number } | null = null;
  for (const chosen of subsets(kinds)) {
    const model: TokenFeatureModel = {
      type: "tokens",
      tokens: chosen.includes("tokens") ? full.tokens : [],
      previous: chosen.includes("previous") ? full.previous : [],
      first: chosen.includes("first") ? full.first : 0,
      matching: "exact",
    };
    const c = correlation(
      real,
      train.flatMap((r) => predictTokens(model, r.tokens)),
    );
    const objective = c - FEATURE_PENALTY * chosen.length;
    if (best === null || objective > best.objective) best = { model, objective, correlation: c };
  }
  const model = best!.model;
  return { model, explanation: describeTokenModel(model, train), trainCorrelation: best!.correlation };
}

/** The strongest train activation in context: up to 4 tokens before it, the token in [brackets]. */
function strongestContext(train: readonly ActivationRecord[]): string | null {
  let bestRecord = -1;
  let bestIndex = -1;
  let bestValue = 0;
  train.forEach((r, ri) => {
    r.activations.forEach((a, i) => {
      if (a > bestValue) {
        bestValue = a;
        bestRecord = ri;
        bestIndex = i;
      }
    });
  });
  if (bestRecord < 0) return null;
  const tokens = train[bestRecord].tokens;
  const start = Math.max(0, bestIndex - 4);
  const before = tokens.slice(start, bestIndex).join("");
  return `${start > 0 ? "…" : ""}${before}[${tokens[bestIndex]}]`;
}

export function describeTokenModel(
  model: TokenFeatureModel,
  train: readonly ActivationRecord[] = [],
): string {
  const clauses: string[] = [];
  if (model.tokens.length > 0) clauses.push(`tokens ${quotedList(model.tokens)}`);
  if (model.previous.length > 0) clauses.push(`after ${quotedList(model.previous)}`);
  if (model.first > 0) clauses.push("the first token of the sequence");
  const context = strongestContext(train);
  if (context !== null) clauses.push(`e.g. ${quote(context)}`);
  return clauses.join("; ");
}

export interface TokenModelScore {
  score: number;
  rSquared: number;
  absoluteDeviationExplained: number;
}

export function scoreTokenModel(
  model: TokenFeatureModel,
  records: readonly ActivationRecord[],
): TokenModelScore {
  const real = records.flatMap((r) => r.activations);
  const predicted = records.flatMap((r) => predictTokens(model, r.tokens));
  return {
    score: correlation(real, predicted),
    rSquared: rSquared(real, predicted),
    absoluteDeviationExplained: absoluteDeviationExplained(real, predicted),
  };
}

// ---------------------------------------------------------------------------------------------
// attention heads

export interface FittedPairModel {
  model: PairFeatureModel;
  explanation: string;
  trainCorrelation: number;
}

export function fitPairModel(train: readonly ActivationRecord[]): FittedPairModel | null {
  const max = maxActivationOf(train);
  if (!(max > 0)) return null;
  const offsets = new MeanTable<number>();
  const first = new MeanTable<number>();
  const positions = new MeanTable<number>();
  const to = new MeanTable<string>();
  const from = new MeanTable<string>();
  const pairs = allPairs(train);
  for (const p of pairs) {
    const a = Math.max(p.value, 0) / max;
    const tokens = train[p.record].tokens;
    offsets.add(p.pair.from - p.pair.to, a);
    positions.add(positionBucket(p.pair.from), a);
    if (p.pair.to === 0) first.add(0, a);
    to.add(tokens[p.pair.to], a);
    from.add(tokens[p.pair.from], a);
  }
  const full: PairFeatureModel = {
    type: "pairs",
    offsets: offsets.listed(MAX_LISTED_OFFSETS, true),
    first: first.mean(0) >= MIN_MEAN ? first.mean(0) : 0,
    fromPositions: positions.listed(MAX_LISTED_OFFSETS, false),
    to: to.listed(MAX_LISTED, false),
    from: from.listed(MAX_LISTED, false),
    matching: "exact",
  };
  const kinds = (["offsets", "first", "fromPositions", "to", "from"] as const).filter((k) =>
    k === "first" ? full.first > 0 : full[k].length > 0,
  );
  const real = pairs.map((p) => p.value);
  let best: { model: PairFeatureModel; objective: number; correlation: number } | null = null;
  for (const chosen of subsets(kinds)) {
    const model: PairFeatureModel = {
      type: "pairs",
      offsets: chosen.includes("offsets") ? full.offsets : [],
      first: chosen.includes("first") ? full.first : 0,
      fromPositions: chosen.includes("fromPositions") ? full.fromPositions : [],
      to: chosen.includes("to") ? full.to : [],
      from: chosen.includes("from") ? full.from : [],
      matching: "exact",
    };
    const c = correlation(
      real,
      pairs.map((p) => predictPair(model, train[p.record].tokens, p.pair)),
    );
    const objective = c - FEATURE_PENALTY * chosen.length;
    if (best === null || objective > best.objective) best = { model, objective, correlation: c };
  }
  const model = best!.model;
  return { model, explanation: describePairModel(model), trainCorrelation: best!.correlation };
}

function offsetPhrase(offset: number): string {
  if (offset === 0) return "itself";
  if (offset === 1) return "the previous token";
  return `the token ${offset} back`;
}

function bucketPhrase(start: number): string {
  return start < 2 ? String(start) : `${start}–${2 * start - 1}`;
}

export function describePairModel(model: PairFeatureModel): string {
  const clauses: string[] = [];
  if (model.offsets.length > 0)
    clauses.push(`attends to ${model.offsets.map(([o]) => offsetPhrase(o)).join(", ")}`);
  if (model.first > 0) clauses.push("attends to the first token");
  if (model.fromPositions.length > 0) {
    const buckets = model.fromPositions.map(([b]) => b).sort((a, b) => a - b);
    clauses.push(`from positions ${buckets.map(bucketPhrase).join(", ")}`);
  }
  if (model.to.length > 0) clauses.push(`to ${quotedList(model.to)}`);
  if (model.from.length > 0) clauses.push(`from ${quotedList(model.from)}`);
  return clauses.join("; ");
}

export interface PairModelScore {
  /** ROC-AUC over TDB's pair sample; null when the sample has one class only. */
  score: number | null;
  /** Correlation over every pair of the records (a finer-grained diagnostic). */
  correlation: number;
  pairsScored: number;
}

export function scorePairModel(
  model: PairFeatureModel,
  records: readonly ActivationRecord[],
  maxActivation: number,
  seed: number,
  count: number,
): PairModelScore {
  const sample = scoringPairs(records, maxActivation, count, seed);
  const predictions = sample.map((p) => predictPair(model, records[p.record].tokens, p.pair));
  const pairs = allPairs(records);
  return {
    score: rocAuc(
      sample.map((p) => p.label),
      predictions,
    ),
    correlation: correlation(
      pairs.map((p) => p.value),
      pairs.map((p) => predictPair(model, records[p.record].tokens, p.pair)),
    ),
    pairsScored: sample.length,
  };
}

// ---------------------------------------------------------------------------------------------
// free text → keyword-overlap simulators

interface Clause {
  text: string;
  /** Quoted strings, with the text position where each starts. */
  quoted: { value: string; at: number }[];
}

/** Splits at ';' outside quotes; reads "…" (JSON escapes) and “…” quotes. */
function clausesOf(explanation: string): Clause[] {
  const clauses: Clause[] = [];
  let text = "";
  let quoted: Clause["quoted"] = [];
  const flush = () => {
    if (text.trim() !== "") clauses.push({ text, quoted });
    text = "";
    quoted = [];
  };
  for (let i = 0; i < explanation.length; i++) {
    const ch = explanation[i];
    if (ch === ";") {
      flush();
      continue;
    }
    if (ch === '"' || ch === "“") {
      const close = ch === '"' ? '"' : "”";
      let j = i + 1;
      while (j < explanation.length && explanation[j] !== close)
        j += explanation[j] === "\\" && close === '"' ? 2 : 1;
      if (j < explanation.length) {
        const raw = explanation.slice(i, j + 1);
        let value: string;
        try {
          value = close === '"' ? (JSON.parse(raw) as string) : raw.slice(1, -1);
        } catch {
          value = raw.slice(1, -1);
        }
        quoted.push({ value, at: text.length });
        text += raw;
        i = j;
        continue;
      }
    }
    text += ch;
  }
  flush();
  return clauses;
}

const STOPWORDS = new Set(
  (
    "a an the this that these those it its of in on at to for from by with and or but not no is are was were be " +
    "been being as after before into onto over under than then there their they them he she his her we our you " +
    "your i me my neuron neurons activates activate activation fires fire firing token tokens word words " +
    "attention head heads attends attend looks look looking for such like e g eg etc mostly often usually " +
    "especially particularly some any all each every other which when where what who whom whose how also text " +
    "context contexts sequence document documents about related"
  ).split(" "),
);

function contentWords(text: string): string[] {
  return [...new Set((text.toLowerCase().match(/[\p{L}\p{N}']+/gu) ?? []).filter((w) => !STOPWORDS.has(w)))];
}

/** Keyword-overlap simulator for a per-token component, read from free text. */
export function keywordTokenModel(explanation: string): TokenFeatureModel {
  const clauses = clausesOf(explanation).filter((c) => !/^\s*e\.g\./i.test(c.text));
  const model: TokenFeatureModel = {
    type: "tokens",
    tokens: [],
    previous: [],
    first: 0,
    matching: "normalized",
  };
  const anyQuoted = clauses.some((c) => c.quoted.length > 0);
  for (const c of clauses) {
    const lower = c.text.toLowerCase();
    if (/\bfirst token\b|\bstart of the (sequence|document)\b/.test(lower)) model.first = 1;
    const target = /^\s*(after|following|preceded by)\b/.test(lower) ? model.previous : model.tokens;
    if (anyQuoted) for (const q of c.quoted) target.push([q.value, 1]);
  }
  if (!anyQuoted) for (const w of contentWords(explanation)) model.tokens.push([w, 1]);
  return model;
}

/** Keyword-overlap simulator for an attention head, read from free text. */
export function keywordPairModel(explanation: string): PairFeatureModel {
  const model: PairFeatureModel = {
    type: "pairs",
    offsets: [],
    first: 0,
    fromPositions: [],
    to: [],
    from: [],
    matching: "normalized",
  };
  const clauses = clausesOf(explanation);
  const anyQuoted = clauses.some((c) => c.quoted.length > 0);
  const offsets = new Set<number>();
  for (const c of clauses) {
    const lower = c.text.toLowerCase();
    if (/\bfirst token\b|\bstart of the (sequence|document)\b/.test(lower)) model.first = 1;
    if (/\bitself\b|\bsame token\b/.test(lower)) offsets.add(0);
    if (/\bprevious token\b|\bpreceding token\b/.test(lower)) offsets.add(1);
    for (const m of lower.matchAll(/\b(\d+) (?:tokens? )?(?:back|before|earlier)\b/g))
      offsets.add(Number(m[1]));
    const positionList = /\bpositions? ([\d\s,–-]+)/.exec(lower);
    if (positionList) {
      for (const range of positionList[1].split(",")) {
        const [low, high] = range.split(/[–-]/).map((x) => Number(x.trim()));
        if (!Number.isInteger(low)) continue;
        for (
          let b = positionBucket(low);
          b <= (Number.isInteger(high) ? high : low);
          b = b < 2 ? b + 1 : 2 * b
        ) {
          if (!model.fromPositions.some(([x]) => x === b)) model.fromPositions.push([b, 1]);
        }
      }
    }
    if (!anyQuoted) continue;
    const fromAt = lower.search(/\bfrom\b/);
    for (const q of c.quoted) (fromAt >= 0 && q.at > fromAt ? model.from : model.to).push([q.value, 1]);
  }
  model.offsets = [...offsets].map((o) => [o, 1]);
  if (!anyQuoted) {
    const structural =
      /\b(previous|preceding|first|same) token\b|\bitself\b|\bpositions? [\d\s,–-]+|\b\d+ (tokens? )?(back|before|earlier)\b/gi;
    for (const w of contentWords(explanation.replace(structural, " "))) {
      model.to.push([w, 1]);
      model.from.push([w, 1]);
    }
  }
  return model;
}
