/**
 * Explains and scores many components of a collated dataset into its explanations table: resumable (a
 * component that already has an explanation by the same method is skipped unless forced), results written
 * in one transaction every few seconds (an interrupted run loses at most those), a pool of components in
 * flight for language-model explainers.
 */
import {
  COMPONENT_KINDS,
  type ComponentKind,
  type DatasetStore,
  ExplanationBatchWriter,
  type ExplanationInput,
  isComponentKind,
} from "@tdb/datasets";
import { type ComponentExplainer, NotActivatedError, type ScoreKind, scoreKindOf } from "./explainers.js";
import { type ScoreSummary, summarizeScores } from "./metrics.js";

export interface ComponentSelector {
  kinds: readonly ComponentKind[];
  layer?: number;
  index?: number;
}

const KIND_ALIASES: Readonly<Record<string, readonly ComponentKind[]>> = {
  all: COMPONENT_KINDS,
  mlp: ["mlp_neuron"],
  neurons: ["mlp_neuron"],
  heads: ["attention_head"],
  attn: ["attention_head"],
  latents: ["mlp_autoencoder_latent", "attention_autoencoder_latent"],
  mlp_latents: ["mlp_autoencoder_latent"],
  attn_latents: ["attention_autoencoder_latent"],
};

function kindsOf(name: string): readonly ComponentKind[] {
  const aliased = KIND_ALIASES[name];
  if (aliased) return aliased;
  if (isComponentKind(name)) return [name];
  throw new Error(
    `unknown component kind '${name}': use all, mlp, heads, latents, mlp_latents, attn_latents or one of ${COMPONENT_KINDS.join(", ")}`,
  );
}

function wholeNumber(text: string, what: string, spec: string): number {
  if (!/^\d+$/.test(text))
    throw new Error(`component '${spec}': ${what} must be a whole number, got '${text}'`);
  return Number(text);
}

/** "all", "mlp", "heads", "latents", "KIND:LAYER", "KIND:LAYER:INDEX", comma-separated. */
export function parseComponentSpecs(specs: readonly string[]): ComponentSelector[] {
  const out: ComponentSelector[] = [];
  for (const spec of specs.flatMap((s) => s.split(",")).map((s) => s.trim())) {
    if (spec === "") continue;
    const [kind, layer, index, ...rest] = spec.split(":");
    if (rest.length > 0) throw new Error(`component '${spec}' has too many parts (KIND:LAYER:INDEX)`);
    const selector: ComponentSelector = { kinds: kindsOf(kind) };
    if (layer !== undefined) selector.layer = wholeNumber(layer, "the layer", spec);
    if (index !== undefined) selector.index = wholeNumber(index, "the index", spec);
    out.push(selector);
  }
  return out.length > 0 ? out : [{ kinds: COMPONENT_KINDS }];
}

export interface ComponentId {
  kind: ComponentKind;
  layer: number;
  index: number;
}

/** The dataset's components that any selector picks, in dataset order, each once. */
export function selectComponents(
  store: DatasetStore,
  selectors: readonly ComponentSelector[],
): ComponentId[] {
  const out: ComponentId[] = [];
  const groups = store.components();
  for (const selector of selectors) {
    const matching = groups.filter(
      (g) => selector.kinds.includes(g.kind) && (selector.layer === undefined || g.layer === selector.layer),
    );
    if (selector.index !== undefined && !matching.some((g) => selector.index! < g.size)) {
      const sizes = matching.map((g) => `${g.kind} layer ${g.layer} has ${g.size}`).join(", ");
      throw new Error(
        `the dataset has no ${selector.kinds.join("/")} ${selector.layer}:${selector.index}${sizes ? ` (${sizes})` : ""}`,
      );
    }
  }
  for (const g of groups) {
    for (let index = 0; index < g.size; index++) {
      if (
        selectors.some(
          (s) =>
            s.kinds.includes(g.kind) &&
            (s.layer === undefined || s.layer === g.layer) &&
            (s.index === undefined || s.index === index),
        )
      ) {
        out.push({ kind: g.kind, layer: g.layer, index });
      }
    }
  }
  return out;
}

export const INACTIVE_EXPLANATION = "(not activated on this dataset)";

export interface ExplainProgress {
  done: number;
  total: number;
  skipped: number;
  explained: number;
  inactive: number;
  elapsedSeconds: number;
}

export interface ExplainDatasetOptions {
  explainer: ComponentExplainer;
  components: readonly ComponentId[];
  /** Replace explanations already made by the same method. */
  force?: boolean;
  maxSequences?: number | null;
  /** Components in flight at once (default 1; language-model explainers gain from more). */
  concurrency?: number;
  onProgress?: (progress: ExplainProgress) => void;
  /** Checked before each component; true stops the run (finished components stay stored). */
  shouldStop?: () => boolean;
  /** Results are written in one transaction per this many seconds (default 2) or 500 components. */
  flushEverySeconds?: number;
}

export interface ComponentScore extends ComponentId {
  explanation: string;
  score: number | null;
  scoreKind: ScoreKind;
}

export interface ExplainDatasetResult {
  progress: ExplainProgress;
  stopped: boolean;
  /** Every selected component's explanation by this method (from this run or an earlier one). */
  scores: ComponentScore[];
}

export async function explainDataset(
  store: DatasetStore,
  options: ExplainDatasetOptions,
): Promise<ExplainDatasetResult> {
  const { explainer, components } = options;
  const started = performance.now();
  const progress: ExplainProgress = {
    done: 0,
    total: components.length,
    skipped: 0,
    explained: 0,
    inactive: 0,
    elapsedSeconds: 0,
  };
  const report = () => {
    progress.elapsedSeconds = (performance.now() - started) / 1000;
    options.onProgress?.({ ...progress });
  };
  let next = 0;
  let stopped = false;
  let failure: unknown = null;

  const writer = new ExplanationBatchWriter(store.file);
  const flushEveryMs = (options.flushEverySeconds ?? 2) * 1000;
  let lastFlush = performance.now();
  const write = (c: ComponentId, explanation: ExplanationInput) => {
    writer.put(c.kind, c.layer, c.index, explanation, options.force ?? false);
    if (writer.pendingCount >= 500 || performance.now() - lastFlush >= flushEveryMs) {
      writer.flush();
      lastFlush = performance.now();
    }
  };

  const work = async (c: ComponentId) => {
    const existing = store
      .explanations(c.kind, c.layer, c.index)
      .filter((e) => e.method === explainer.method);
    if (existing.length > 0 && !options.force) {
      progress.skipped++;
      return;
    }
    const record = store.record(c.kind, c.layer, c.index);
    try {
      if (!record) throw new NotActivatedError("no record");
      const outcome = await explainer.explainAndScore(
        { ...c, record },
        { maxSequences: options.maxSequences ?? null },
      );
      write(c, {
        explanation: outcome.explanation,
        score: outcome.score,
        method: explainer.method,
        details: { scoreKind: outcome.scoreKind, ...outcome.details },
      });
      progress.explained++;
    } catch (error) {
      if (!(error instanceof NotActivatedError)) throw error;
      write(c, {
        explanation: INACTIVE_EXPLANATION,
        score: null,
        method: explainer.method,
        details: { scoreKind: scoreKindOf(c), inactive: true },
      });
      progress.inactive++;
    }
  };

  const worker = async () => {
    while (failure === null && next < components.length) {
      if (options.shouldStop?.()) {
        stopped = true;
        return;
      }
      const c = components[next++];
      try {
        await work(c);
      } catch (error) {
        failure ??= error;
        return;
      }
      progress.done++;
      report();
      // Let timers and signals run between synchronous (offline) components.
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  const concurrency = Math.max(1, options.concurrency ?? 1);
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(1, components.length)) }, worker));
  } finally {
    writer.close();
  }
  report();
  if (failure !== null) throw failure;
  return { progress: { ...progress }, stopped, scores: storedScores(store, components, explainer.method) };
}

/** The latest explanation by `method` of each component that has one. */
export function storedScores(
  store: DatasetStore,
  components: readonly ComponentId[],
  method: string,
): ComponentScore[] {
  const out: ComponentScore[] = [];
  for (const c of components) {
    const mine = store.explanations(c.kind, c.layer, c.index).filter((e) => e.method === method);
    const latest = mine[mine.length - 1];
    if (!latest) continue;
    out.push({ ...c, explanation: latest.explanation, score: latest.score, scoreKind: scoreKindOf(c) });
  }
  return out;
}

export interface KindSummary extends ScoreSummary {
  kind: ComponentKind;
  scoreKind: ScoreKind;
}

export function summarizeByKind(scores: readonly ComponentScore[]): KindSummary[] {
  const out: KindSummary[] = [];
  for (const kind of COMPONENT_KINDS) {
    const mine = scores.filter((s) => s.kind === kind);
    if (mine.length === 0) continue;
    out.push({ kind, scoreKind: mine[0].scoreKind, ...summarizeScores(mine.map((s) => s.score)) });
  }
  return out;
}

/** A plain-text table of the score distribution per kind. */
export function formatScoreTable(summaries: readonly KindSummary[]): string {
  const header = [
    "kind",
    "score",
    "n",
    "unscored",
    "mean",
    "min",
    "q10",
    "q25",
    "median",
    "q75",
    "q90",
    "max",
    ">0.3",
    ">0.5",
  ];
  const fmt = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : "-");
  const pct = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(1)}%` : "-");
  const rows = summaries.map((s) => [
    s.kind,
    s.scoreKind === "roc_auc" ? "roc-auc" : "corr",
    String(s.count),
    String(s.unscored),
    fmt(s.mean),
    fmt(s.min),
    fmt(s.q10),
    fmt(s.q25),
    fmt(s.median),
    fmt(s.q75),
    fmt(s.q90),
    fmt(s.max),
    pct(s.above03),
    pct(s.above05),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}
