/** Token pairs of attention-head records: the strongest pairs, and TDB's pair sample for ROC-AUC scoring. */
import type { ActivationRecord } from "@tdb/datasets";
import { seededRandom } from "@tdb/model";
import { pairCoordinates, type TokenPair } from "./records.js";

export interface ScoredPair {
  /** Index of the record in the list it came from. */
  record: number;
  value: number;
  pair: TokenPair;
}

/** Every pair of every record with its value. */
export function allPairs(records: readonly ActivationRecord[]): ScoredPair[] {
  const out: ScoredPair[] = [];
  records.forEach((r, record) => {
    const coordinates = pairCoordinates(r.tokens.length, r.activations.length);
    coordinates.forEach((pair, i) => {
      out.push({ record, value: r.activations[i], pair });
    });
  });
  return out;
}

/** Highest first; ties broken by record, then position, so the order is reproducible. */
function byValueDescending(a: ScoredPair, b: ScoredPair): number {
  return b.value - a.value || a.record - b.record || a.pair.from - b.pair.from || a.pair.to - b.pair.to;
}

/** TDB's get_top_attention_coordinates: the k strongest pairs over the records. */
export function topPairs(records: readonly ActivationRecord[], k: number): ScoredPair[] {
  return allPairs(records).sort(byValueDescending).slice(0, k);
}

/** A 32-bit seed from a string (FNV-1a). */
export function seedOf(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export interface LabelledPair extends ScoredPair {
  /** 1 for a top pair, 0 for a weak one. */
  label: 0 | 1;
}

/**
 * TDB's AttentionHeadOneAtATimeScorer sample: the `count` strongest pairs (label 1) and `count` pairs drawn
 * at random among those below `lowThreshold`·max (label 0).
 */
export function scoringPairs(
  records: readonly ActivationRecord[],
  maxActivation: number,
  count: number,
  seed: number,
  lowThreshold = 0.1,
): LabelledPair[] {
  const pairs = allPairs(records);
  const top = [...pairs].sort(byValueDescending).slice(0, count);
  const low = pairs.filter((p) => p.value < lowThreshold * maxActivation);
  // Partial Fisher–Yates: the first `count` entries become a uniform sample without replacement.
  const random = seededRandom(seed);
  const take = Math.min(count, low.length);
  for (let i = 0; i < take; i++) {
    const j = i + Math.floor(random() * (low.length - i));
    [low[i], low[j]] = [low[j], low[i]];
  }
  return [
    ...top.map((p) => ({ ...p, label: 1 as const })),
    ...low.slice(0, take).map((p) => ({ ...p, label: 0 as const })),
  ];
}
