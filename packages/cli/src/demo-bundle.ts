/**
 * The demo bundle's defaults for `tdb serve` with no arguments: the IOI example the printed URL opens, and the
 * collated datasets, which are too large to ship and are rebuilt (collate + offline explain over the committed
 * held-out text) on first start into assets/demo/datasets/ (git-ignored).
 */
import { existsSync, mkdirSync, renameSync } from "node:fs";
import { join } from "node:path";
import { collateCommand } from "./collate.js";
import { explainCommand } from "./explain.js";

/** TDB's showcase prompt (indirect-object identification). */
export const DEMO_IOI_EXAMPLE = {
  prompt: "When Mary and John went to the store, John gave a drink to",
  targetTokens: [" Mary"],
  distractorTokens: [" John"],
} as const;

/** The viewer's query string (TDB's keys: prompt, targetTokens and distractorTokens as JSON lists). */
export function ioiExampleQuery(): string {
  const params = new URLSearchParams();
  params.set("prompt", DEMO_IOI_EXAMPLE.prompt);
  params.set("targetTokens", JSON.stringify(DEMO_IOI_EXAMPLE.targetTokens));
  params.set("distractorTokens", JSON.stringify(DEMO_IOI_EXAMPLE.distractorTokens));
  return `?${params.toString()}`;
}

/** Settings of the demo datasets; changing them changes the rebuilt file. */
export const DEMO_COLLATION_FLAGS = ["--seq-len", "64", "--top-k", "20", "--random", "10", "--seed", "0"];

export interface DemoDatasetsPlan {
  out: string;
  collateArgs: string[];
  explainArgs: string[];
}

/**
 * What to run so `demoDir` has datasets, or null when it already has a .db file or lacks the held-out text.
 * The work goes to a `.partial` file (resumable) that is renamed to demo.db only once explained.
 */
export function demoDatasetsPlan(demoDir: string): DemoDatasetsPlan | null {
  const corpus = join(demoDir, "corpus", "heldout.jsonl");
  const out = join(demoDir, "datasets", "demo.db");
  if (!existsSync(corpus) || !existsSync(join(demoDir, "model", "config.json")) || existsSync(out))
    return null;
  const partial = `${out}.partial`;
  const collateArgs = ["--model", join(demoDir, "model"), "--corpus", corpus, "--out", partial];
  for (const [flag, folder] of [
    ["--mlp-autoencoder", "mlp_post_act"],
    ["--attn-autoencoder", "resid_delta_attn"],
  ] as const) {
    const dir = join(demoDir, "autoencoders", folder);
    if (existsSync(join(dir, "0.safetensors"))) collateArgs.push(flag, dir);
  }
  collateArgs.push(...DEMO_COLLATION_FLAGS);
  return { out, collateArgs, explainArgs: ["--datasets", partial, "--offline"] };
}

/** Collates and explains the demo datasets; returns the new file, or null when nothing had to be done. */
export async function buildDemoDatasets(
  demoDir: string,
  log: (line: string) => void = (line) => console.error(line),
): Promise<string | null> {
  const plan = demoDatasetsPlan(demoDir);
  if (!plan) return null;
  const started = Date.now();
  log(
    "tdb serve: first start: building the demo's neuron datasets and explanations from assets/demo/corpus " +
      "(once; about a minute)",
  );
  mkdirSync(join(demoDir, "datasets"), { recursive: true });
  const partial = `${plan.out}.partial`;
  if ((await collateCommand(plan.collateArgs)) !== 0) throw new Error("collating the demo datasets failed");
  log(`tdb serve: collated in ${((Date.now() - started) / 1000).toFixed(0)} s; explaining (offline)`);
  if ((await explainCommand(plan.explainArgs)) !== 0) throw new Error("explaining the demo datasets failed");
  renameSync(partial, plan.out);
  log(`tdb serve: demo datasets ready in ${((Date.now() - started) / 1000).toFixed(0)} s: ${plan.out}`);
  return plan.out;
}
