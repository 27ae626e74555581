/**
 * `tdb train-sae` end to end on the BUILT cli (run `npm run build` first), on the tiny GPT-2 fixture: the file it
 * writes has OpenAI's names and metadata and loads with loadAutoencoderFamily; a run stopped part-way and resumed
 * ends byte-identical to an uninterrupted one; Ctrl-C leaves a checkpoint; other settings are refused.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseSafetensors, parseSafetensorsHeader } from "@tdb/model";
import { loadAutoencoderFamily } from "@tdb/model/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const REPO = new URL("../../../", import.meta.url).pathname;
const CLI = join(REPO, "packages/cli/bin/tdb.js");
const BUILT = join(REPO, "packages/cli/dist/train-sae.js");
const TINY = join(REPO, "../shared/fixtures/tiny-gpt2");
const SETTINGS = [
  "--model",
  TINY,
  "--site",
  "mlp_post_act",
  "--layer",
  "0",
  "--corpus",
  "builtin:tiny",
  "--seq-len",
  "32",
  "--latents",
  "64",
  "--k",
  "8",
  "--batch-tokens",
  "128",
  "--threads",
  "1",
];

interface Finished {
  code: number | null;
  stderr: string;
}

function start(args: string[]): { child: ChildProcess; done: Promise<Finished> } {
  const child = spawn(process.execPath, [CLI, "train-sae", ...args], {
    cwd: REPO,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const done = new Promise<Finished>((resolve) => child.on("close", (code) => resolve({ code, stderr })));
  return { child, done };
}

const train = (out: string, extra: string[] = []) => start([...SETTINGS, "--out", out, ...extra]).done;

const scratch = mkdtempSync(join(tmpdir(), "tdb-train-sae-cli-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let reference: string;
let referenceRun: Finished;

beforeAll(async () => {
  if (!existsSync(BUILT))
    throw new Error("packages/cli is not built: run `npm run build` before these tests");
  reference = join(scratch, "reference");
  referenceRun = await train(reference, ["--steps", "12"]);
  expect(referenceRun.code, referenceRun.stderr).toBe(0);
});

describe("tdb train-sae", () => {
  it("writes {layer}.safetensors with OpenAI's names and metadata, loadable as an autoencoder family", async () => {
    expect(referenceRun.stderr).toMatch(/step 12\/12 .*fve [\d.]+ L0 [\d.]+ dead [\d.]+% \d+ tok\/s ETA/);
    expect(referenceRun.stderr).toMatch(/held-out \(\d+ tokens\) FVE [\d.-]+, mean L0 [\d.]+/);
    const path = join(reference, "0.safetensors");
    const bytes = new Uint8Array(readFileSync(path));
    const meta = parseSafetensorsHeader(bytes).metadata;
    expect(meta).toMatchObject({
      format: "pt",
      activation: "TopK",
      k: "8",
      postact_fn: "ReLU",
      input: "mlp_post_act",
      layer: "0",
      n_latents: "64",
      trained_on: "builtin:tiny",
    });
    expect(JSON.parse(meta.activation_state_dict)).toEqual({ k: 8, postact_fn: "ReLU" });
    for (const key of ["fve", "mean_l0", "dead_share"]) expect(Number.isFinite(Number(meta[key]))).toBe(true);
    const tensors = parseSafetensors(bytes);
    const shapes = Object.fromEntries([...tensors].map(([name, t]) => [name, [t.dtype, t.shape]]));
    expect(shapes).toEqual({
      pre_bias: ["F32", [256]],
      "encoder.weight": ["F32", [64, 256]],
      latent_bias: ["F32", [64]],
      "decoder.weight": ["F32", [256, 64]],
      latents_activation_frequency: ["F32", [64]],
      latents_mean_square: ["F32", [64]],
      stats_last_nonzero: ["I64", [64]],
    });
    expect(existsSync(join(reference, "0.checkpoint.safetensors"))).toBe(false);
    const family = await loadAutoencoderFamily(reference);
    expect(family.site).toBe("mlp_post_act");
    expect(family.byLayer.get(0)?.activation).toEqual({ kind: "topk", k: 8 });
    // Run again with the same settings: nothing to do.
    const again = await train(reference, ["--steps", "12"]);
    expect(again.code).toBe(0);
    expect(again.stderr).toMatch(/already trained with these settings/);
  });

  it("stopped part-way and resumed, it ends byte-identical to the uninterrupted run", async () => {
    const out = join(scratch, "sliced");
    const first = await train(out, ["--steps", "12", "--stop-after", "5", "--checkpoint-every", "4"]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/stopped \(--stop-after\) at step 5 of 12/);
    expect(existsSync(join(out, "0.checkpoint.safetensors"))).toBe(true);
    expect(existsSync(join(out, "0.safetensors"))).toBe(false);
    const refused = await train(out, ["--steps", "12", "--lr", "0.01"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/made with other settings \(lr: .* there, 0\.01 now\)/);
    const second = await train(out, ["--steps", "12"]);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toMatch(/resuming from .*: step 5 of 12/);
    expect(readFileSync(join(out, "0.safetensors"))).toEqual(readFileSync(join(reference, "0.safetensors")));
  });

  it("--layer 0,1 trains both layers on one pass; layer 0 ends byte-identical to training it alone", async () => {
    const out = join(scratch, "two-layers");
    const run = await train(out, ["--steps", "12", "--layer", "0,1"]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/on mlp_post_act of layers 0, 1/);
    expect(run.stderr).toMatch(/fve [\d.]+\/[\d.]+ L0/);
    expect(readFileSync(join(out, "0.safetensors"))).toEqual(readFileSync(join(reference, "0.safetensors")));
    const family = await loadAutoencoderFamily(out);
    expect([...family.byLayer.keys()]).toEqual([0, 1]);
  });

  it("--cache-mb 0 (activations harvested again every epoch) ends byte-identical to the cached run", async () => {
    const out = join(scratch, "uncached");
    const run = await train(out, ["--steps", "12", "--cache-mb", "0"]);
    expect(run.code, run.stderr).toBe(0);
    expect(readFileSync(join(out, "0.safetensors"))).toEqual(readFileSync(join(reference, "0.safetensors")));
  });

  it("--save-dtype float16 writes F16 weights (about half the file) that load and encode like the float32 ones", async () => {
    const out = join(scratch, "half");
    const run = await train(out, ["--steps", "12", "--save-dtype", "float16"]);
    expect(run.code, run.stderr).toBe(0);
    const bytes = new Uint8Array(readFileSync(join(out, "0.safetensors")));
    const full = readFileSync(join(reference, "0.safetensors"));
    expect(bytes.length).toBeLessThan(0.6 * full.length);
    const tensors = parseSafetensors(bytes);
    expect(tensors.get("encoder.weight")?.dtype).toBe("F16");
    expect(tensors.get("decoder.weight")?.dtype).toBe("F16");
    expect(tensors.get("pre_bias")?.dtype).toBe("F32");
    // The same training (only the saved precision differs): weights equal the float32 file's to float16 precision.
    const reference32 = parseSafetensors(new Uint8Array(full)).get("encoder.weight")!.data;
    const half = tensors.get("encoder.weight")!.data;
    for (let i = 0; i < half.length; i += 97) {
      expect(Math.abs(half[i] - reference32[i])).toBeLessThanOrEqual(
        Math.abs(reference32[i]) * 2 ** -11 + 2 ** -25,
      );
    }
    const family = await loadAutoencoderFamily(out);
    expect(family.byLayer.get(0)?.nInputs).toBe(256);
  });

  it("Ctrl-C writes a checkpoint and exits 130", async () => {
    const out = join(scratch, "interrupted");
    const { child, done } = start([
      ...SETTINGS,
      "--out",
      out,
      "--steps",
      "100000",
      "--checkpoint-every",
      "1000",
    ]);
    // Wait until training runs (the header line comes right before the first step).
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("training never started")), 60_000);
      child.stderr?.on("data", (chunk: Buffer) => {
        if (chunk.toString().includes("training TopK")) {
          clearTimeout(timer);
          setTimeout(resolve, 300);
        }
      });
    });
    child.kill("SIGINT");
    const run = await done;
    expect(run.code, run.stderr).toBe(130);
    expect(run.stderr).toMatch(/interrupted at step \d+ of 100000; checkpoint saved/);
    const meta = parseSafetensorsHeader(
      new Uint8Array(readFileSync(join(out, "0.checkpoint.safetensors"))),
    ).metadata;
    expect(Number(meta.step)).toBeGreaterThan(0);
  });

  it("refuses a folder holding another site's autoencoders, and bad flags", async () => {
    const wrongSite = await start([
      ...SETTINGS.map((a) => (a === "mlp_post_act" ? "resid_delta_attn" : a)),
      "--out",
      reference,
      "--layer",
      "1",
    ]).done;
    expect(wrongSite.code).toBe(2);
    expect(wrongSite.stderr).toMatch(/holds mlp_post_act autoencoders/);
    const badSite = await train(join(scratch, "bad"), ["--site", "attn"]);
    expect(badSite.code).toBe(2);
    expect(badSite.stderr).toMatch(/--site must be one of/);
    const kWithRelu = await train(join(scratch, "bad"), ["--activation", "relu"]);
    expect(kWithRelu.code).toBe(2);
    expect(kWithRelu.stderr).toMatch(/--k applies to --activation topk/);
  });
});
