/**
 * The two explainers behind one interface: explain a component, score an explanation of it, or both.
 * Per-token components (MLP neurons, autoencoder latents) are scored by correlation, attention heads by
 * ROC-AUC (tdb-spec §6.2).
 */
import { isTokenPairKind } from "@tdb/datasets";
import type { ChatClient } from "./llm.js";
import {
  explainHeadWithLlm,
  explainNeuronWithLlm,
  scoreHeadWithLlm,
  scoreNeuronWithLlm,
} from "./llm-explainer.js";
import {
  fitPairModel,
  fitTokenModel,
  keywordPairModel,
  keywordTokenModel,
  type PairFeatureModel,
  scorePairModel,
  scoreTokenModel,
  type TokenFeatureModel,
} from "./offline.js";
import { seedOf } from "./pairs.js";
import { type ComponentRecord, type RecordSplits, splitRecord } from "./records.js";

export type ScoreKind = "correlation" | "roc_auc";

export interface ScoreOptions {
  /** Score on the first N held-out sequences only (TDB's maxSequences; top records come first). */
  maxSequences?: number | null;
}

export interface ScoreOutcome {
  /** null when the component cannot be scored (e.g. a head sample with one class only). */
  score: number | null;
  scoreKind: ScoreKind;
  /** Who scored: stored as the explanation's method for scored user explanations. */
  method: string;
  details: Record<string, unknown>;
}

export interface ExplainOutcome extends ScoreOutcome {
  explanation: string;
}

/** The component never activates on its records (TDB answers 422). */
export class NotActivatedError extends Error {
  override name = "NotActivatedError";
}

export interface ComponentExplainer {
  /** Stored with explanations made by explainAndScore (resuming skips components that have one). */
  readonly method: string;
  readonly description: string;
  explain(component: ComponentRecord): Promise<string>;
  explainAndScore(component: ComponentRecord, options?: ScoreOptions): Promise<ExplainOutcome>;
  score(component: ComponentRecord, explanation: string, options?: ScoreOptions): Promise<ScoreOutcome>;
}

export function scoreKindOf(component: Pick<ComponentRecord, "kind">): ScoreKind {
  return isTokenPairKind(component.kind) ? "roc_auc" : "correlation";
}

function componentSeed(c: ComponentRecord): number {
  return seedOf(`${c.kind}:${c.layer}:${c.index}`);
}

interface Prepared {
  splits: RecordSplits;
  held: ComponentRecord["record"]["randomSample"];
  /** Max over the top records (TDB's NeuronRecord.max_activation). */
  max: number;
}

function prepare(c: ComponentRecord, options: ScoreOptions = {}): Prepared {
  const top = c.record.mostPositiveActivationRecords;
  let max = Number.NEGATIVE_INFINITY;
  for (const r of top) for (const a of r.activations) if (a > max) max = a;
  if (top.length === 0 || !(max > 0)) {
    throw new NotActivatedError(`${c.kind} ${c.layer}:${c.index} is not activated on the dataset`);
  }
  const splits = splitRecord(c.record);
  const limit = options.maxSequences ?? null;
  return { splits, held: limit === null ? splits.valid : splits.valid.slice(0, limit), max };
}

function splitDetails(p: Prepared): Record<string, unknown> {
  return { split: p.splits.scheme, trainSequences: p.splits.train.length, scoredSequences: p.held.length };
}

export interface OfflineExplainerOptions {
  /** Top and weak pairs sampled per head for ROC-AUC (default 20; TDB's LLM scorer uses 5 to save calls). */
  pairsForScoring?: number;
}

/**
 * No language model: token / context statistics of the train records (see offline.ts). Free-text
 * explanations are scored by keyword overlap.
 */
export class OfflineExplainer implements ComponentExplainer {
  readonly method = "offline-token-summary";
  readonly keywordMethod = "offline-keyword-overlap";
  readonly description = "offline token-statistics explainer (no language model)";
  private readonly pairsForScoring: number;

  constructor(options: OfflineExplainerOptions = {}) {
    this.pairsForScoring = options.pairsForScoring ?? 20;
  }

  async explain(component: ComponentRecord): Promise<string> {
    return (await this.explainAndScore(component)).explanation;
  }

  async explainAndScore(component: ComponentRecord, options?: ScoreOptions): Promise<ExplainOutcome> {
    const p = prepare(component, options);
    if (scoreKindOf(component) === "roc_auc") {
      const fitted = fitPairModel(p.splits.train);
      if (!fitted)
        throw new NotActivatedError(
          `${component.kind} ${component.layer}:${component.index} is not activated on its train records`,
        );
      const s = scorePairModel(fitted.model, p.held, p.max, componentSeed(component), this.pairsForScoring);
      return {
        explanation: fitted.explanation,
        score: s.score,
        scoreKind: "roc_auc",
        method: this.method,
        details: {
          ...splitDetails(p),
          pairsScored: s.pairsScored,
          pairCorrelation: s.correlation,
          trainCorrelation: fitted.trainCorrelation,
          simulator: fitted.model,
        },
      };
    }
    const fitted = fitTokenModel(p.splits.train);
    if (!fitted)
      throw new NotActivatedError(
        `${component.kind} ${component.layer}:${component.index} is not activated on its train records`,
      );
    const s = scoreTokenModel(fitted.model, p.held);
    return {
      explanation: fitted.explanation,
      score: s.score,
      scoreKind: "correlation",
      method: this.method,
      details: {
        ...splitDetails(p),
        rSquared: s.rSquared,
        absoluteDeviationExplained: s.absoluteDeviationExplained,
        trainCorrelation: fitted.trainCorrelation,
        simulator: fitted.model,
      },
    };
  }

  async score(
    component: ComponentRecord,
    explanation: string,
    options?: ScoreOptions,
  ): Promise<ScoreOutcome> {
    const p = prepare(component, options);
    if (scoreKindOf(component) === "roc_auc") {
      const model: PairFeatureModel = keywordPairModel(explanation);
      const s = scorePairModel(model, p.held, p.max, componentSeed(component), this.pairsForScoring);
      return {
        score: s.score,
        scoreKind: "roc_auc",
        method: this.keywordMethod,
        details: {
          ...splitDetails(p),
          pairsScored: s.pairsScored,
          pairCorrelation: s.correlation,
          simulator: model,
        },
      };
    }
    const model: TokenFeatureModel = keywordTokenModel(explanation);
    const s = scoreTokenModel(model, p.held);
    return {
      score: s.score,
      scoreKind: "correlation",
      method: this.keywordMethod,
      details: {
        ...splitDetails(p),
        rSquared: s.rSquared,
        absoluteDeviationExplained: s.absoluteDeviationExplained,
        simulator: model,
      },
    };
  }
}

/** TDB's explainer and simulators over a chat-completions endpoint. */
export class LlmExplainer implements ComponentExplainer {
  readonly method: string;
  readonly description: string;

  constructor(
    readonly client: ChatClient,
    private readonly options: { pairsForScoring?: number } = {},
  ) {
    this.method = `llm:${client.config.model}`;
    this.description = `language model ${client.description}`;
  }

  async explain(component: ComponentRecord): Promise<string> {
    const p = prepare(component);
    return scoreKindOf(component) === "roc_auc"
      ? explainHeadWithLlm(this.client, p.splits.train)
      : explainNeuronWithLlm(this.client, p.splits.train);
  }

  async explainAndScore(component: ComponentRecord, options?: ScoreOptions): Promise<ExplainOutcome> {
    const explanation = await this.explain(component);
    const scored = await this.score(component, explanation, options);
    return { ...scored, method: this.method, explanation };
  }

  async score(
    component: ComponentRecord,
    explanation: string,
    options?: ScoreOptions,
  ): Promise<ScoreOutcome> {
    const p = prepare(component, options);
    const method = `llm-simulator:${this.client.config.model}`;
    const endpoint = { model: this.client.config.model, baseUrl: this.client.config.baseUrl };
    if (scoreKindOf(component) === "roc_auc") {
      const s = await scoreHeadWithLlm(
        this.client,
        explanation,
        p.held,
        p.max,
        componentSeed(component),
        this.options.pairsForScoring ?? 5,
      );
      return {
        score: s.score,
        scoreKind: "roc_auc",
        method,
        details: { ...splitDetails(p), ...endpoint, pairs: s.pairs },
      };
    }
    const s = await scoreNeuronWithLlm(this.client, explanation, p.held);
    return {
      score: s.score,
      scoreKind: "correlation",
      method,
      details: {
        ...splitDetails(p),
        ...endpoint,
        rSquared: s.rSquared,
        absoluteDeviationExplained: s.absoluteDeviationExplained,
        unusableAnswers: s.unusableAnswers,
        firstFailure: s.firstFailure,
        predicted: s.predicted,
      },
    };
  }
}
