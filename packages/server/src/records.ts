/**
 * Collated neuron records (tdb-spec §6.1, TDB's activations.py) to the read routes' wire shapes, following
 * read_routes.py: normalisation divides by (max over all relu'd values − 1e-5) and floors at 0, over the top
 * and the random records together.
 */
import type {
  AttentionHeadRecordResponse,
  NeuronRecordResponse,
  TokenAndAttentionScalars,
  TokenAndScalar,
} from "@tdb/attribution";

export interface ActivationRecord {
  tokens: string[];
  activations: number[];
}

export interface NeuronRecordData {
  mostPositiveActivationRecords: ActivationRecord[];
  randomSample: ActivationRecord[];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Python's json writes NaN / Infinity; read them as null (outside strings only). */
export function parsePythonJson(text: string): unknown {
  return JSON.parse(
    text.replace(/("(?:[^"\\]|\\.)*")|(-?Infinity|NaN)/g, (_match, str: string | undefined) => str ?? "null"),
  );
}

function activationRecords(value: unknown, where: string): ActivationRecord[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new Error(`${where} is not a list`);
  return value.map((item, i) => {
    if (!isRecord(item) || !Array.isArray(item.tokens) || !Array.isArray(item.activations)) {
      throw new Error(`${where}[${i}] is not an activation record {tokens, activations}`);
    }
    return {
      tokens: item.tokens.map((t) => String(t)),
      activations: item.activations.map((a) => (typeof a === "number" ? a : 0)),
    };
  });
}

/** A NeuronRecord JSON object (fast_dataclasses; legacy files without dataclass_name are read the same way). */
export function parseNeuronRecord(json: unknown, source: string): NeuronRecordData {
  if (!isRecord(json)) throw new Error(`${source}: not a neuron record (expected a JSON object)`);
  return {
    mostPositiveActivationRecords: activationRecords(
      json.most_positive_activation_records,
      `${source}: most_positive_activation_records`,
    ),
    randomSample: activationRecords(json.random_sample, `${source}: random_sample`),
  };
}

/** TDB's `create_scale_linear`, including its behaviour when every value is ≤ 0 (max 0 → divide by −1e-5). */
function linearScale(max: number): (x: number) => number {
  return (x) => Math.max(x / (max - 1e-5), 0);
}

function maxOf(values: Iterable<number>): number {
  let m = Number.NEGATIVE_INFINITY;
  for (const v of values) if (v > m) m = v;
  return m;
}

/** max over the top records only, as NeuronRecord.max_activation. */
export function maxActivation(record: NeuronRecordData): number {
  const top = record.mostPositiveActivationRecords;
  if (top.length === 0) return 0;
  return maxOf(top.map((r) => maxOf(r.activations)));
}

export function neuronRecordResponse(dataset: string, record: NeuronRecordData): NeuronRecordResponse {
  const groups = [record.mostPositiveActivationRecords, record.randomSample];
  const all = groups.flat().flatMap((r) => r.activations.map((a) => Math.max(a, 0)));
  const scale = linearScale(all.length > 0 ? maxOf(all) : 0);
  const [top, random] = groups.map((records) =>
    records.map((r): TokenAndScalar[] =>
      r.tokens.map((token, i) => {
        const scalar = r.activations[i] ?? 0;
        return { token, scalar, normalizedScalar: scale(scalar) };
      }),
    ),
  );
  return { dataset, maxActivation: maxActivation(record), topActivations: top, randomSample: random };
}

/**
 * Row lengths of a flattened lower triangle with n rows and `count` entries: 1, 2, …, m, m, …, m where m is
 * the attended-to window (m = n when nothing was capped).
 */
export function attendedToLengths(n: number, count: number): number[] {
  const full = (n * (n + 1)) / 2;
  let m = n;
  if (count !== full) {
    const missing = full - count;
    const k = Math.floor((Math.sqrt(1 + 8 * missing) - 1) / 2);
    if (missing < 0 || (k * (k + 1)) / 2 !== missing || n - k <= 0) {
      throw new Error(`${count} activations do not form a (capped) lower triangle over ${n} tokens`);
    }
    m = n - k;
  }
  return Array.from({ length: n }, (_, i) => Math.min(i + 1, m));
}

interface RawAttentionToken {
  token: string;
  scalars: number[];
}

function splitTriangle(record: ActivationRecord): RawAttentionToken[] {
  const lengths = attendedToLengths(record.tokens.length, record.activations.length);
  let start = 0;
  return record.tokens.map((token, i) => {
    const scalars = record.activations.slice(start, start + lengths[i]);
    start += lengths[i];
    return { token, scalars };
  });
}

const sum = (values: readonly number[]) => values.reduce((a, b) => a + b, 0);

/** Per token: [total in, max in, total out, max out] (out_j over rows i ≥ j that have an entry j). */
function summaries(sequence: readonly RawAttentionToken[]): number[][] {
  return sequence.map((token, j) => {
    const out: number[] = [];
    for (let i = j; i < sequence.length; i++) {
      if (j < sequence[i].scalars.length) out.push(sequence[i].scalars[j]);
    }
    // TDB fails on an empty column (capped windows); 0 keeps the answer finite.
    return [sum(token.scalars), maxOf(token.scalars), sum(out), out.length > 0 ? maxOf(out) : 0];
  });
}

export function attentionHeadRecordResponse(
  dataset: string,
  record: NeuronRecordData,
): AttentionHeadRecordResponse {
  const groups = [record.mostPositiveActivationRecords, record.randomSample].map((records) =>
    records.map(splitTriangle),
  );
  const allScalars = groups.flat(2).flatMap((t) => t.scalars.map((a) => Math.max(a, 0)));
  const scalarScale = linearScale(allScalars.length > 0 ? maxOf(allScalars) : 0);
  const stats = groups.map((sequences) => sequences.map(summaries));
  const statScales = [0, 1, 2, 3].map((s) => {
    const values = stats.flat(2).map((row) => Math.max(row[s], 0));
    return linearScale(values.length > 0 ? maxOf(values) : 0);
  });
  const [top, random] = groups.map((sequences, g) =>
    sequences.map((sequence, q) =>
      sequence.map((t, i): TokenAndAttentionScalars => {
        const [totalIn, maxIn, totalOut, maxOut] = stats[g][q][i];
        return {
          token: t.token,
          scalars: t.scalars,
          normalizedScalars: t.scalars.map(scalarScale),
          totalScalarIn: totalIn,
          normalizedTotalScalarIn: statScales[0](totalIn),
          maxScalarIn: maxIn,
          normalizedMaxScalarIn: statScales[1](maxIn),
          totalScalarOut: totalOut,
          normalizedTotalScalarOut: statScales[2](totalOut),
          maxScalarOut: maxOut,
          normalizedMaxScalarOut: statScales[3](maxOut),
        };
      }),
    ),
  );
  return {
    dataset,
    maxAttentionActivation: maxActivation(record),
    mostPositiveTokenSequences: top,
    randomTokenSequences: random,
  };
}

export interface StoredExplanation {
  explanation: string;
  score: number | null;
}

/** A NeuronSimulationResults / AttentionSimulationResults line: its explanations with preferred scores. */
export function parseSimulationResults(json: unknown, source: string): StoredExplanation[] {
  if (!isRecord(json) || !Array.isArray(json.scored_explanations)) {
    throw new Error(`${source}: not simulation results (expected scored_explanations)`);
  }
  const out: StoredExplanation[] = [];
  for (const item of json.scored_explanations) {
    if (!isRecord(item)) continue;
    // Old files call the field explanation_or_baseline.
    const explanation = item.explanation ?? item.explanation_or_baseline;
    if (typeof explanation !== "string") continue;
    const simulation = isRecord(item.scored_simulation) ? item.scored_simulation : null;
    const attention = isRecord(item.scored_attention_simulation) ? item.scored_attention_simulation : null;
    const score = simulation ? simulation.ev_correlation_score : attention?.roc_auc_score;
    out.push({ explanation, score: typeof score === "number" && Number.isFinite(score) ? score : null });
  }
  return out;
}
