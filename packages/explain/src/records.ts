/**
 * What explainers and simulators read from a collated record: TDB's train / valid splits (tdb-spec §6.1),
 * activations scaled to the integers 0–10 (TDB's normalize_activations) and token-pair coordinates of
 * flattened lower triangles.
 */
import {
  type ActivationRecord,
  attendedToLengths,
  type ComponentKind,
  type NeuronRecord,
} from "@tdb/datasets";

/** One component and its collated record. */
export interface ComponentRecord {
  kind: ComponentKind;
  layer: number;
  index: number;
  record: NeuronRecord;
}

export interface RecordSplits {
  /** Top records shown to the explainer. */
  train: ActivationRecord[];
  /** Held out: top valid records followed by random valid records (TDB's order; max_sequences cuts this list). */
  valid: ActivationRecord[];
  /** How the split was made: TDB's exact slices, or the fallback for smaller records. */
  scheme: "tdb" | "interleaved";
}

/** TDB's ActivationRecordSliceParams(n_examples_per_split=5). */
export const EXAMPLES_PER_SPLIT = 5;

function strided<T>(items: readonly T[], start: number, stride: number, count: number): T[] {
  const out: T[] = [];
  for (let i = start; i < stride * count && i < items.length; i += stride) out.push(items[i]);
  return out;
}

/**
 * TDB's splits when the record has enough sequences (4·5 top, 3·5 random): top records interleaved into
 * train / calibration / valid / test (stride 4), random ones into calibration / valid / test (stride 3).
 * Smaller records (short collations) split their top records alternately into train and valid, and hold out
 * every random record.
 */
export function splitRecord(record: NeuronRecord, perSplit = EXAMPLES_PER_SPLIT): RecordSplits {
  const top = record.mostPositiveActivationRecords;
  const random = record.randomSample;
  if (top.length >= 4 * perSplit && random.length >= 3 * perSplit) {
    return {
      train: strided(top, 0, 4, perSplit),
      valid: [...strided(top, 2, 4, perSplit), ...strided(random, 1, 3, perSplit)],
      scheme: "tdb",
    };
  }
  return {
    train: top.filter((_, i) => i % 2 === 0),
    valid: [...top.filter((_, i) => i % 2 === 1), ...random],
    scheme: "interleaved",
  };
}

/** max(relu(x)) over the records (TDB's calculate_max_activation); 0 when nothing is positive. */
export function maxActivationOf(records: readonly ActivationRecord[]): number {
  let m = 0;
  for (const r of records) for (const a of r.activations) if (a > m) m = a;
  return m;
}

/** TDB's normalize_activations: floor(10·relu(x)/max), capped at 10; all 0 when max ≤ 0. */
export function normalizeActivations(activations: readonly number[], max: number): number[] {
  if (!(max > 0)) return activations.map(() => 0);
  return activations.map((x) => Math.min(10, Math.floor((10 * Math.max(x, 0)) / max)));
}

/** One (from, to) token pair of a token-pair record; from ≥ to (a token attends to itself or earlier). */
export interface TokenPair {
  from: number;
  to: number;
}

/**
 * Coordinates of every entry of a flattened lower triangle over `tokens` tokens. Row t lists the last
 * rowLength(t) tokens up to t (all of 0..t unless the attended-to window was capped).
 */
export function pairCoordinates(tokens: number, values: number): TokenPair[] {
  const lengths = attendedToLengths(tokens, values);
  const out: TokenPair[] = [];
  lengths.forEach((length, from) => {
    for (let j = 0; j < length; j++) out.push({ from, to: from - length + 1 + j });
  });
  return out;
}
