/**
 * TDB's record shapes and the normalisation its read routes apply (tdb-spec §3.2; read_routes.py):
 * every scale is `x ↦ max(x / (M − 1e-5), 0)` with M the largest relu'd value over the top and random
 * sequences together. (When M is 0 the divisor is negative, so negative values map to large positive numbers;
 * that is TDB's behaviour and is kept.)
 */

/** One sequence of a record: token strings and the component's value per token (or per token pair). */
export interface ActivationRecord {
  tokens: string[];
  /** Per token; for attention heads the flattened lower triangle (row t lists u = 0..t). */
  activations: number[];
  /** Where the sequence came from (window index in the corpus), when known. */
  sequenceIndex?: number;
  tokenIds?: number[];
}

/** What a collated dataset holds for one component (TDB's NeuronRecord, camelCase). */
export interface NeuronRecord {
  layerIndex: number;
  neuronIndex: number;
  mostPositiveActivationRecords: ActivationRecord[];
  randomSample: ActivationRecord[];
  mean?: number;
  variance?: number;
}

export interface TokenAndScalar {
  token: string;
  scalar: number;
  normalizedScalar: number;
}

export interface NeuronRecordResponse {
  dataset: string;
  maxActivation: number;
  topActivations: TokenAndScalar[][];
  randomSample: TokenAndScalar[][];
}

export interface TokenAndAttentionScalars {
  token: string;
  scalars: number[];
  normalizedScalars: number[];
  totalScalarIn: number;
  normalizedTotalScalarIn: number;
  maxScalarIn: number;
  normalizedMaxScalarIn: number;
  totalScalarOut: number;
  normalizedTotalScalarOut: number;
  maxScalarOut: number;
  normalizedMaxScalarOut: number;
}

export interface AttentionHeadRecordResponse {
  dataset: string;
  maxAttentionActivation: number;
  mostPositiveTokenSequences: TokenAndAttentionScalars[][];
  randomTokenSequences: TokenAndAttentionScalars[][];
}

/** Largest activation over the top records (TDB's NeuronRecord.max_activation). */
export function maxActivation(record: NeuronRecord): number {
  let m = Number.NEGATIVE_INFINITY;
  for (const r of record.mostPositiveActivationRecords) for (const a of r.activations) if (a > m) m = a;
  return m;
}

/** TDB's create_scale_linear. */
export function linearScale(max: number): (x: number) => number {
  const divisor = max - 1e-5;
  return (x) => Math.max(x / divisor, 0);
}

function reluMax(values: Iterable<number>): number {
  let m = 0;
  for (const v of values) if (v > m) m = v;
  return m;
}

export function toNeuronRecordResponse(record: NeuronRecord, dataset: string): NeuronRecordResponse {
  const groups = [record.mostPositiveActivationRecords, record.randomSample];
  const scale = linearScale(reluMax(groups.flat().flatMap((r) => r.activations)));
  const [topActivations, randomSample] = groups.map((records) =>
    records.map((r) =>
      r.tokens.map((token, i) => ({
        token,
        scalar: r.activations[i],
        normalizedScalar: scale(r.activations[i]),
      })),
    ),
  );
  return { dataset, maxActivation: maxActivation(record), topActivations, randomSample };
}

/**
 * Row lengths of a flattened lower triangle of `values` entries over `tokens` tokens: 1, 2, …, and constant at
 * m once a capped attended-to window of m tokens is full (TDB's get_attended_to_sequence_lengths).
 */
export function attendedToLengths(tokens: number, values: number): number[] {
  const full = (tokens * (tokens + 1)) / 2;
  if (values === full) return Array.from({ length: tokens }, (_, t) => t + 1);
  for (let m = 1; m < tokens; m++) {
    if ((m * (m + 1)) / 2 + (tokens - m) * m === values) {
      return Array.from({ length: tokens }, (_, t) => Math.min(t + 1, m));
    }
  }
  throw new Error(`${values} token-pair values do not fit a lower triangle over ${tokens} tokens`);
}

interface RawAttentionToken {
  token: string;
  scalars: number[];
}

function splitPairs(record: ActivationRecord): RawAttentionToken[] {
  const lengths = attendedToLengths(record.tokens.length, record.activations.length);
  let start = 0;
  return record.tokens.map((token, t) => {
    const scalars = record.activations.slice(start, start + lengths[t]);
    start += lengths[t];
    return { token, scalars };
  });
}

function sumOf(values: readonly number[]): number {
  let s = 0;
  for (const v of values) s += v;
  return s;
}

function maxOf(values: readonly number[]): number {
  let m = Number.NEGATIVE_INFINITY;
  for (const v of values) if (v > m) m = v;
  return m;
}

/** out_j summarises column j: the entries scalars_i[j] of rows i ≥ j that have one. */
function columnSummaries(sequence: RawAttentionToken[], summary: (values: number[]) => number): number[] {
  return sequence.map((_, j) => {
    const column: number[] = [];
    for (let i = j; i < sequence.length; i++)
      if (j < sequence[i].scalars.length) column.push(sequence[i].scalars[j]);
    return summary(column);
  });
}

export function toAttentionHeadRecordResponse(
  record: NeuronRecord,
  dataset: string,
): AttentionHeadRecordResponse {
  const groups = [record.mostPositiveActivationRecords, record.randomSample].map((records) =>
    records.map(splitPairs),
  );
  const all = groups.flat();
  const scalarScale = linearScale(reluMax(all.flatMap((s) => s.flatMap((t) => t.scalars))));
  const summaries = {
    totalIn: all.map((s) => s.map((t) => sumOf(t.scalars))),
    maxIn: all.map((s) => s.map((t) => maxOf(t.scalars))),
    totalOut: all.map((s) => columnSummaries(s, sumOf)),
    maxOut: all.map((s) => columnSummaries(s, maxOf)),
  };
  const scales = {
    totalIn: linearScale(reluMax(summaries.totalIn.flat())),
    maxIn: linearScale(reluMax(summaries.maxIn.flat())),
    totalOut: linearScale(reluMax(summaries.totalOut.flat())),
    maxOut: linearScale(reluMax(summaries.maxOut.flat())),
  };
  let flatIndex = 0;
  const [mostPositiveTokenSequences, randomTokenSequences] = groups.map((sequences) =>
    sequences.map((sequence) => {
      const s = flatIndex++;
      return sequence.map(
        (t, i): TokenAndAttentionScalars => ({
          token: t.token,
          scalars: t.scalars,
          normalizedScalars: t.scalars.map(scalarScale),
          totalScalarIn: summaries.totalIn[s][i],
          normalizedTotalScalarIn: scales.totalIn(summaries.totalIn[s][i]),
          maxScalarIn: summaries.maxIn[s][i],
          normalizedMaxScalarIn: scales.maxIn(summaries.maxIn[s][i]),
          totalScalarOut: summaries.totalOut[s][i],
          normalizedTotalScalarOut: scales.totalOut(summaries.totalOut[s][i]),
          maxScalarOut: summaries.maxOut[s][i],
          normalizedMaxScalarOut: scales.maxOut(summaries.maxOut[s][i]),
        }),
      );
    }),
  );
  return {
    dataset,
    maxAttentionActivation: maxActivation(record),
    mostPositiveTokenSequences,
    randomTokenSequences,
  };
}
