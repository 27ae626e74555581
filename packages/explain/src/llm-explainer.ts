/**
 * TDB's explainer, simulator and scorers over a chat-completions endpoint (tdb-spec §6.2):
 * - neurons and per-token latents: explain from the 5 train top records; score = correlation between the
 *   simulated (all-at-once JSON simulator, temperature 0) and the real activations over the valid records;
 * - attention heads: explain from the 5 strongest token pairs; score = ROC-AUC of p("1") / (p("0") + p("1"))
 *   over 5 top pairs and 5 weak pairs (below 0.1·max), one request per pair.
 */
import type { ActivationRecord } from "@tdb/datasets";
import type { ChatClient, ChatResponse } from "./llm.js";
import { absoluteDeviationExplained, correlation, rocAuc, rSquared } from "./metrics.js";
import { scoringPairs, topPairs } from "./pairs.js";
import {
  ATTENTION_EXPLANATION_PREFIX,
  cleanExplanation,
  EXPLANATION_PREFIX,
  headExplanationMessages,
  neuronExplanationMessages,
  type PairExample,
  pairScoringMessages,
  parseSimulation,
  simulationMessages,
} from "./prompts.js";
import type { TokenPair } from "./records.js";

export interface NeuronSimulationScore {
  score: number;
  rSquared: number;
  absoluteDeviationExplained: number;
  /** Predicted activations (0–10) per sequence. */
  predicted: number[][];
  /** Sequences whose answer could not be used (predicted as all 0, as TDB). */
  unusableAnswers: number;
  firstFailure: string | null;
}

function firstContent(response: ChatResponse): string {
  return response.choices[0]?.message.content ?? "";
}

/** Explanation of a neuron (or per-token latent) from its train records (TDB: max_tokens 60, temperature 1). */
export async function explainNeuronWithLlm(
  client: ChatClient,
  train: readonly ActivationRecord[],
): Promise<string> {
  const response = await client.complete({
    messages: neuronExplanationMessages(train),
    max_tokens: 60,
    temperature: 1,
  });
  return cleanExplanation(firstContent(response), EXPLANATION_PREFIX);
}

/** Predicted activations 0–10 for one sequence (TDB's LogprobFree simulator: max_tokens 2000, temperature 0). */
export async function simulateSequence(
  client: ChatClient,
  explanation: string,
  tokens: readonly string[],
): Promise<{ activations: number[]; failure: string | null }> {
  const response = await client.complete({
    messages: simulationMessages(explanation, tokens),
    max_tokens: 2000,
    temperature: 0,
  });
  return parseSimulation(firstContent(response), tokens.length);
}

/** Simulates every sequence and scores over all their tokens together (TDB's aggregate_scored_sequence_simulations). */
export async function scoreNeuronWithLlm(
  client: ChatClient,
  explanation: string,
  records: readonly ActivationRecord[],
): Promise<NeuronSimulationScore> {
  const simulations = await Promise.all(records.map((r) => simulateSequence(client, explanation, r.tokens)));
  const real = records.flatMap((r) => r.activations);
  const predicted = simulations.flatMap((s) => s.activations);
  const failures = simulations.filter((s) => s.failure !== null);
  return {
    score: correlation(real, predicted),
    rSquared: rSquared(real, predicted),
    absoluteDeviationExplained: absoluteDeviationExplained(real, predicted),
    predicted: simulations.map((s) => s.activations),
    unusableAnswers: failures.length,
    firstFailure: failures[0]?.failure ?? null,
  };
}

/** TDB groups the strongest pairs by record, each record once with all its pairs. */
export function headPromptExamples(train: readonly ActivationRecord[], count = 5): PairExample[] {
  const byRecord = new Map<number, TokenPair[]>();
  for (const p of topPairs(train, count)) {
    const list = byRecord.get(p.record) ?? [];
    list.push(p.pair);
    byRecord.set(p.record, list);
  }
  return [...byRecord].map(([record, pairs]) => ({ tokens: train[record].tokens, pairs }));
}

/** Explanation of an attention head from its 5 strongest train pairs (TDB: max_tokens 50). */
export async function explainHeadWithLlm(
  client: ChatClient,
  train: readonly ActivationRecord[],
): Promise<string> {
  const response = await client.complete({
    messages: headExplanationMessages(headPromptExamples(train)),
    max_tokens: 50,
    temperature: 1,
  });
  return cleanExplanation(firstContent(response), ATTENTION_EXPLANATION_PREFIX);
}

/**
 * p("1") / (p("0") + p("1")) from the first answer token's top logprobs; servers that return no logprobs are
 * read from the answer's text (1, 0, else 0.5).
 */
export function pairPrediction(response: ChatResponse): number {
  const choice = response.choices[0];
  const top = choice?.logprobs?.content?.[0]?.top_logprobs;
  if (top && top.length > 0) {
    let zero = 0;
    let one = 0;
    for (const t of top) {
      const token = t.token.trim();
      if (token === "0") zero += Math.exp(t.logprob);
      else if (token === "1") one += Math.exp(t.logprob);
    }
    if (zero + one > 0) return one / (zero + one);
  }
  const text = (choice?.message.content ?? "").trim();
  if (text.startsWith("1")) return 1;
  if (text.startsWith("0")) return 0;
  return 0.5;
}

export interface HeadSimulationScore {
  /** ROC-AUC; null when the sample has only one class. */
  score: number | null;
  pairs: { record: number; from: number; to: number; value: number; label: 0 | 1; prediction: number }[];
}

/** TDB's AttentionHeadOneAtATimeScorer. */
export async function scoreHeadWithLlm(
  client: ChatClient,
  explanation: string,
  records: readonly ActivationRecord[],
  maxActivation: number,
  seed: number,
  count = 5,
): Promise<HeadSimulationScore> {
  const sample = scoringPairs(records, maxActivation, count, seed);
  const predictions = await Promise.all(
    sample.map(async (p) => {
      const response = await client.complete({
        messages: pairScoringMessages(explanation, records[p.record].tokens, p.pair),
        max_tokens: 1,
        temperature: 0,
        logprobs: true,
        top_logprobs: 15,
      });
      return pairPrediction(response);
    }),
  );
  return {
    score: rocAuc(
      sample.map((p) => p.label),
      predictions,
    ),
    pairs: sample.map((p, i) => ({
      record: p.record,
      from: p.pair.from,
      to: p.pair.to,
      value: p.value,
      label: p.label,
      prediction: predictions[i],
    })),
  };
}
