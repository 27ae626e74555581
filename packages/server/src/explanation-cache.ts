/**
 * TDB's local explanation cache (tdb-spec §6.2) for datasets we cannot write to (OpenAI's public ones):
 * `/score` results go to `{dir}/{dataset}/cache_{dst}_{method}/{layer}/{index}.jsonl`, one line of TDB's
 * NeuronSimulationResults (AttentionSimulationResults for heads), and are merged with the published
 * explanations, deduplicated by text (the cached entry wins, as in TDB).
 */
import { mkdir, readdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { AttributedScoredExplanation } from "@tdb/attribution";
import { parsePythonJson, parseSimulationResults } from "./records.js";

function safe(part: string): string {
  return (
    part
      .replace(/^https?:\/\//, "")
      .replace(/[^\w.-]+/g, "_")
      .slice(0, 200) || "_"
  );
}

export class LocalExplanationCache {
  constructor(readonly dir: string) {}

  private folder(dataset: string): string {
    return join(this.dir, safe(dataset));
  }

  private file(dataset: string, dst: string, method: string, layer: number, index: number): string {
    return join(this.folder(dataset), `cache_${safe(dst)}_${safe(method)}`, String(layer), `${index}.jsonl`);
  }

  /** Every cached explanation of the node, over all methods; datasetName is the cache folder's name. */
  async list(
    dataset: string,
    dst: string,
    layer: number,
    index: number,
  ): Promise<AttributedScoredExplanation[]> {
    let entries: string[];
    try {
      entries = await readdir(this.folder(dataset));
    } catch {
      return [];
    }
    const out: AttributedScoredExplanation[] = [];
    for (const entry of entries.filter((e) => e.startsWith(`cache_${safe(dst)}_`)).sort()) {
      const path = join(this.folder(dataset), entry, String(layer), `${index}.jsonl`);
      let text: string;
      try {
        text = await readFile(path, "utf8");
      } catch {
        continue;
      }
      const line = text.split("\n").find((l) => l.trim() !== "");
      if (!line) continue;
      for (const s of parseSimulationResults(parsePythonJson(line), path)) {
        out.push({ explanation: s.explanation, score: s.score, datasetName: entry });
      }
    }
    return out;
  }

  /** Adds (or replaces, by text) one scored explanation. */
  async add(
    dataset: string,
    dst: string,
    method: string,
    node: { layer: number; index: number; attention: boolean },
    explanation: string,
    score: number,
  ): Promise<void> {
    const path = this.file(dataset, dst, method, node.layer, node.index);
    let existing: Record<string, unknown>[] = [];
    try {
      const parsed = JSON.parse((await readFile(path, "utf8")).trim()) as { scored_explanations?: unknown };
      if (Array.isArray(parsed.scored_explanations))
        existing = parsed.scored_explanations as Record<string, unknown>[];
    } catch {
      // first entry
    }
    const id = { dataclass_name: "NeuronId", layer_index: node.layer, neuron_index: node.index };
    const entry = node.attention
      ? {
          dataclass_name: "ScoredAttentionExplanation",
          explanation,
          scored_attention_simulation: {
            dataclass_name: "ScoredAttentionSimulation",
            attention_simulations: [],
            roc_auc_score: score,
          },
        }
      : {
          dataclass_name: "ScoredExplanation",
          explanation,
          scored_simulation: {
            dataclass_name: "ScoredSimulation",
            scored_sequence_simulations: [],
            ev_correlation_score: score,
            rsquared_score: null,
            absolute_dev_explained_score: null,
          },
        };
    const scored = [...existing.filter((e) => e.explanation !== explanation), entry];
    const results = node.attention
      ? { dataclass_name: "AttentionSimulationResults", attention_head_id: id, scored_explanations: scored }
      : { dataclass_name: "NeuronSimulationResults", neuron_id: id, scored_explanations: scored };
    await mkdir(dirname(path), { recursive: true });
    const temporary = `${path}.${process.pid}.${Date.now()}.part`;
    await writeFile(temporary, `${JSON.stringify(results)}\n`);
    await rename(temporary, path);
  }
}

/** Published first, then cached; a cached text replaces a published one (TDB's merge). */
export function mergeExplanations(
  published: readonly AttributedScoredExplanation[],
  cached: readonly AttributedScoredExplanation[],
): AttributedScoredExplanation[] {
  const byText = new Map<string, AttributedScoredExplanation>();
  for (const e of [...published, ...cached]) byText.set(e.explanation, e);
  return [...byText.values()];
}
