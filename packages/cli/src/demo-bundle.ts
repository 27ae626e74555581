/**
 * The demo bundle's defaults for `tdb serve` with no arguments: the IOI example the printed URL opens, and the
 * collated datasets, which are too large to ship and are rebuilt (collate + offline explain over the committed
 * held-out text) into assets/demo/datasets/ (git-ignored) on first start and whenever the bundle's weights,
 * tokenizer or held-out text change.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
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

/** Bump when collate or explain change what they write, so existing demo.db files are rebuilt. */
export const DEMO_DATASETS_FORMAT = 1;

/** What a demo.db was built from; stored beside it as `<file>.inputs.json`. */
export interface DemoDatasetsInputs {
  format: number;
  flags: string[];
  /** Paths relative to the demo folder, "/"-separated; sha256 null for an absent file. */
  files: { path: string; sha256: string | null }[];
  /** sha256 over format, flags and files: the one value compared. */
  fingerprint: string;
}

export interface DemoDatasetsPlan {
  out: string;
  /** Where the build happens (resumable), renamed to `out` once explained. */
  partial: string;
  collateArgs: string[];
  explainArgs: string[];
  inputs: DemoDatasetsInputs;
  /** Why the build is needed, for the log line. */
  reason: string;
}

const MODEL_FILES = ["config.json", "model.safetensors", "vocab.json", "merges.txt"];
const AUTOENCODER_ROLES = [
  ["--mlp-autoencoder", "mlp_post_act"],
  ["--attn-autoencoder", "resid_delta_attn"],
] as const;

/** The sidecar that records what `file` was built from. */
export function inputsFileOf(file: string): string {
  return `${file}.inputs.json`;
}

function sha256OfFile(file: string): string | null {
  return existsSync(file) ? createHash("sha256").update(readFileSync(file)).digest("hex") : null;
}

function demoInputs(demoDir: string, autoencoderFolders: string[]): DemoDatasetsInputs {
  const paths = [...MODEL_FILES.map((f) => `model/${f}`), "corpus/heldout.jsonl"];
  for (const folder of autoencoderFolders) {
    const names = readdirSync(join(demoDir, "autoencoders", folder))
      .filter((f) => f.endsWith(".safetensors"))
      .sort();
    paths.push(...names.map((f) => `autoencoders/${folder}/${f}`));
  }
  const files = paths.map((path) => ({ path, sha256: sha256OfFile(join(demoDir, ...path.split("/"))) }));
  const flags = [...DEMO_COLLATION_FLAGS];
  const fingerprint = createHash("sha256")
    .update(JSON.stringify({ format: DEMO_DATASETS_FORMAT, flags, files }))
    .digest("hex");
  return { format: DEMO_DATASETS_FORMAT, flags, files, fingerprint };
}

/** The fingerprint recorded beside `file`, or null when the record is missing or unreadable. */
function recordedFingerprint(file: string): string | null {
  try {
    const record: unknown = JSON.parse(readFileSync(inputsFileOf(file), "utf8"));
    const fingerprint = (record as { fingerprint?: unknown } | null)?.fingerprint;
    return typeof fingerprint === "string" ? fingerprint : null;
  } catch {
    return null;
  }
}

function writeInputs(file: string, inputs: DemoDatasetsInputs): void {
  writeFileSync(inputsFileOf(file), `${JSON.stringify(inputs, null, 2)}\n`);
}

/**
 * What to run so `demoDir` has datasets built from its current bundle, or null when its demo.db was built
 * from exactly these inputs, or the folder lacks the held-out text or the model. The work goes to a `.partial`
 * file (resumable) renamed over demo.db only once explained, so a stale demo.db stays intact until then.
 */
export function demoDatasetsPlan(demoDir: string): DemoDatasetsPlan | null {
  const corpus = join(demoDir, "corpus", "heldout.jsonl");
  const out = join(demoDir, "datasets", "demo.db");
  if (!existsSync(corpus) || !existsSync(join(demoDir, "model", "config.json"))) return null;
  const partial = `${out}.partial`;
  const collateArgs = ["--model", join(demoDir, "model"), "--corpus", corpus, "--out", partial];
  const autoencoderFolders: string[] = [];
  for (const [flag, folder] of AUTOENCODER_ROLES) {
    const dir = join(demoDir, "autoencoders", folder);
    if (existsSync(join(dir, "0.safetensors"))) {
      collateArgs.push(flag, dir);
      autoencoderFolders.push(folder);
    }
  }
  collateArgs.push(...DEMO_COLLATION_FLAGS);
  const inputs = demoInputs(demoDir, autoencoderFolders);
  let reason = "first start";
  if (existsSync(out)) {
    const recorded = recordedFingerprint(out);
    if (recorded === inputs.fingerprint) return null;
    reason =
      recorded === null
        ? "demo.db has no record of the demo bundle it was built from"
        : "the demo bundle changed since demo.db was built";
  }
  return { out, partial, collateArgs, explainArgs: ["--datasets", partial, "--offline"], inputs, reason };
}

/**
 * Keeps a leftover `.partial` only when it was started from the plan's inputs (collate then resumes it);
 * deletes one from other or unknown inputs, with SQLite's files beside it. Returns whether one is left.
 */
export function discardStalePartial(plan: DemoDatasetsPlan): boolean {
  const { partial } = plan;
  if (!existsSync(partial)) return false;
  if (recordedFingerprint(partial) === plan.inputs.fingerprint) return true;
  for (const file of [
    partial,
    `${partial}-wal`,
    `${partial}-shm`,
    `${partial}-journal`,
    inputsFileOf(partial),
  ])
    rmSync(file, { force: true });
  return false;
}

/** Collates and explains the demo datasets; returns the new file, or null when nothing had to be done. */
export async function buildDemoDatasets(
  demoDir: string,
  log: (line: string) => void = (line) => console.error(line),
): Promise<string | null> {
  const plan = demoDatasetsPlan(demoDir);
  if (!plan) return null;
  const started = Date.now();
  mkdirSync(join(demoDir, "datasets"), { recursive: true });
  const { partial } = plan;
  const resuming = discardStalePartial(plan);
  log(
    `tdb serve: ${plan.reason}: ${resuming ? "resuming" : "building"} the demo's neuron datasets and ` +
      "explanations from assets/demo/corpus (under a minute)",
  );
  // Recorded before collating: a partial left by an interrupted run is resumed only from the same inputs.
  writeInputs(partial, plan.inputs);
  if ((await collateCommand(plan.collateArgs)) !== 0) throw new Error("collating the demo datasets failed");
  log(`tdb serve: collated in ${((Date.now() - started) / 1000).toFixed(0)} s; explaining (offline)`);
  if ((await explainCommand(plan.explainArgs)) !== 0) throw new Error("explaining the demo datasets failed");
  // The old record goes first: a crash before the new one is written leaves demo.db unrecorded, so rebuilt.
  rmSync(inputsFileOf(plan.out), { force: true });
  renameSync(partial, plan.out);
  writeInputs(plan.out, plan.inputs);
  rmSync(inputsFileOf(partial), { force: true });
  log(`tdb serve: demo datasets ready in ${((Date.now() - started) / 1000).toFixed(0)} s: ${plan.out}`);
  return plan.out;
}
