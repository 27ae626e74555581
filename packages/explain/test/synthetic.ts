/** Hand-made records whose right explanation is known: which tokens (or token pairs) a component fires on. */
import type { ActivationRecord, NeuronRecord } from "@tdb/datasets";

const WORDS = [
  "The",
  " cat",
  " sat",
  " on",
  " the",
  " mat",
  ".",
  " Alice",
  " gave",
  " Bob",
  " a",
  " book",
  " and",
  " Carol",
  " met",
  " at",
  " market",
  " on",
  " Tuesday",
  ",",
  " then",
  " went",
  " home",
  " with",
  " plums",
  " honey",
];

/** Deterministic token sequences (a linear congruential walk over WORDS). */
export function sequences(count: number, length: number, seed: number): string[][] {
  let state = seed >>> 0;
  const next = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 4294967296;
  };
  return Array.from({ length: count }, () =>
    Array.from({ length }, () => WORDS[Math.floor(next() * WORDS.length)]),
  );
}

/** Top records (by max, descending) and random records of a per-token rule. */
export function tokenRecord(
  rule: (tokens: string[], i: number) => number,
  seed = 1,
  top = 20,
  random = 15,
): NeuronRecord {
  const all = sequences(200, 16, seed).map(
    (tokens): ActivationRecord => ({
      tokens,
      activations: tokens.map((_, i) => rule(tokens, i)),
    }),
  );
  const byMax = [...all].sort((a, b) => Math.max(...b.activations) - Math.max(...a.activations));
  return {
    layerIndex: 0,
    neuronIndex: 0,
    mostPositiveActivationRecords: byMax.slice(0, top),
    randomSample: all.slice(100, 100 + random),
  };
}

/** A token-pair record (flattened lower triangles) of a per-pair rule. */
export function pairRecord(
  rule: (tokens: string[], from: number, to: number) => number,
  seed = 2,
): NeuronRecord {
  const make = (tokens: string[]): ActivationRecord => {
    const activations: number[] = [];
    for (let from = 0; from < tokens.length; from++)
      for (let to = 0; to <= from; to++) activations.push(rule(tokens, from, to));
    return { tokens, activations };
  };
  const all = sequences(60, 12, seed).map(make);
  return {
    layerIndex: 0,
    neuronIndex: 0,
    mostPositiveActivationRecords: all.slice(0, 20),
    randomSample: all.slice(20, 35),
  };
}

/** Fires 4 on " Bob", 0 elsewhere. */
export const bobNeuron = tokenRecord((tokens, i) => (tokens[i] === " Bob" ? 4 : 0));
/** Fires 3 on whatever follows " gave". */
export const afterGaveNeuron = tokenRecord((tokens, i) => (i > 0 && tokens[i - 1] === " gave" ? 3 : 0), 7);
/** Attends to the previous token: 1 on (t, t−1) pairs, 0.01 elsewhere. */
export const previousTokenHead = pairRecord((_, from, to) => (from - to === 1 ? 1 : 0.01));
