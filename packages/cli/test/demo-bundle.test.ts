/**
 * The demo bundle's `tdb serve` defaults: the printed URL's query opens the viewer on TDB's IOI example, and
 * the datasets are rebuilt (collate + offline explain) into datasets/demo.db when missing or built from other
 * weights, tokenizer or held-out text.
 */
import { createHash } from "node:crypto";
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { openDatasetStore } from "@tdb/datasets";
import { describe, expect, it, vi } from "vitest";
import { tempDir } from "../../explain/test/helpers.js";
import { stateFromSearch } from "../../viewer/src/tdb/state.js";
import {
  buildDemoDatasets,
  DEMO_COLLATION_FLAGS,
  type DemoDatasetsPlan,
  demoDatasetsPlan,
  discardStalePartial,
  ioiExampleQuery,
} from "../src/demo-bundle.js";

const FIXTURES = new URL("../../../../shared/fixtures/", import.meta.url).pathname;
const TINY = join(FIXTURES, "tiny-gpt2");

describe("IOI example URL", () => {
  it("reads back in the viewer as the prompt, target and distractor of TDB's recorded IOI case", () => {
    // Golden: the request TDB's own viewer sent for this example (recorded case).
    const recorded = JSON.parse(
      readFileSync(join(FIXTURES, "tdb-cases", "tdb_ablate_attention_head.json"), "utf8"),
    ).request.subRequests[1];
    const state = stateFromSearch(ioiExampleQuery());
    expect(state.left).toEqual({
      prompt: recorded.prompt,
      targetTokens: recorded.targetTokens,
      distractorTokens: recorded.distractorTokens,
    });
    expect(state.nodeAblations).toEqual([]);
  });
});

function demoDir(withAutoencoders: boolean): string {
  const dir = tempDir("demo-bundle");
  cpSync(TINY, join(dir, "model"), { recursive: true, filter: (src) => !src.includes("autoencoders") });
  if (withAutoencoders) {
    mkdirSync(join(dir, "autoencoders"));
    cpSync(join(TINY, "autoencoders", "mlp_post_act"), join(dir, "autoencoders", "mlp_post_act"), {
      recursive: true,
    });
  }
  return dir;
}

function writeCorpus(dir: string, lines: string[]): void {
  mkdirSync(join(dir, "corpus"), { recursive: true });
  writeFileSync(join(dir, "corpus", "heldout.jsonl"), `${lines.join("\n")}\n`);
}

/** Flips the last byte of a (possibly read-only, copied) file; flipping twice restores it. */
function flipLastByte(file: string): void {
  chmodSync(file, 0o644);
  const bytes = readFileSync(file);
  bytes[bytes.length - 1] ^= 1;
  writeFileSync(file, bytes);
}

/** A self-inverse edit, as its change and its undo. */
function twice(action: () => void): [() => void, () => void] {
  return [action, action];
}

function sha256(file: string): string {
  return createHash("sha256").update(readFileSync(file)).digest("hex");
}

function required(plan: DemoDatasetsPlan | null): DemoDatasetsPlan {
  if (!plan) throw new Error("expected a plan");
  return plan;
}

describe("demo datasets plan", () => {
  it("plans nothing without the held-out text, and a first-start build without demo.db", () => {
    const dir = demoDir(false);
    expect(demoDatasetsPlan(dir)).toBeNull();
    writeCorpus(dir, ['{"text":"a b c"}']);
    const plan = required(demoDatasetsPlan(dir));
    expect(plan.out).toBe(join(dir, "datasets", "demo.db"));
    expect(plan.reason).toBe("first start");
    expect(plan.collateArgs).not.toContain("--mlp-autoencoder");
  });

  it("records every input's sha256, the autoencoder files the collation uses included, and the flags", () => {
    const dir = demoDir(true);
    writeCorpus(dir, ['{"text":"a b c"}']);
    const { inputs, collateArgs } = required(demoDatasetsPlan(dir));
    expect(collateArgs).toContain("--mlp-autoencoder");
    const expected = [
      "model/config.json",
      "model/model.safetensors",
      "model/vocab.json",
      "model/merges.txt",
      "corpus/heldout.jsonl",
      "autoencoders/mlp_post_act/0.safetensors",
    ].map((path) => ({ path, sha256: sha256(join(dir, path)) }));
    expect(inputs.files).toEqual(expected);
    expect(inputs.flags).toEqual(DEMO_COLLATION_FLAGS);
    expect(inputs.fingerprint).toMatch(/^[0-9a-f]{64}$/);
  });

  it("rebuilds over a demo.db whose record is missing, unreadable or of other inputs, and only then", () => {
    const dir = demoDir(true);
    writeCorpus(dir, ['{"text":"a b c"}']);
    mkdirSync(join(dir, "datasets"));
    const db = join(dir, "datasets", "demo.db");
    const record = `${db}.inputs.json`;
    writeFileSync(db, "");
    const unrecorded = required(demoDatasetsPlan(dir));
    expect(unrecorded.reason).toMatch(/no record/);

    writeFileSync(record, JSON.stringify(unrecorded.inputs));
    expect(demoDatasetsPlan(dir)).toBeNull();
    writeFileSync(record, '{"fingerprint":');
    expect(required(demoDatasetsPlan(dir)).reason).toMatch(/no record/);
    writeFileSync(record, JSON.stringify(unrecorded.inputs));

    // One byte of the autoencoder, of the model, of the held-out text; a new autoencoder layer file.
    const edits: [string, () => void, () => void][] = [
      [
        "autoencoder",
        ...twice(() => flipLastByte(join(dir, "autoencoders", "mlp_post_act", "0.safetensors"))),
      ],
      ["model", ...twice(() => flipLastByte(join(dir, "model", "model.safetensors")))],
      ["held-out text", ...twice(() => flipLastByte(join(dir, "corpus", "heldout.jsonl")))],
      [
        "new layer",
        () => writeFileSync(join(dir, "autoencoders", "mlp_post_act", "1.safetensors"), "x"),
        () => rmSync(join(dir, "autoencoders", "mlp_post_act", "1.safetensors")),
      ],
    ];
    for (const [what, change, undo] of edits) {
      change();
      const plan = demoDatasetsPlan(dir);
      expect(plan?.reason, what).toBe("the demo bundle changed since demo.db was built");
      expect(plan?.inputs.fingerprint, what).not.toBe(unrecorded.inputs.fingerprint);
      undo();
      expect(demoDatasetsPlan(dir), what).toBeNull();
    }
  });

  it("discards a leftover partial from other or unknown inputs, and keeps one from the same inputs", () => {
    const dir = demoDir(false);
    writeCorpus(dir, ['{"text":"a b c"}']);
    mkdirSync(join(dir, "datasets"));
    const plan = required(demoDatasetsPlan(dir));
    const partial = `${plan.out}.partial`;
    const leave = (fingerprint: string | null) => {
      writeFileSync(partial, "partial");
      writeFileSync(`${partial}-wal`, "wal");
      if (fingerprint !== null) writeFileSync(`${partial}.inputs.json`, JSON.stringify({ fingerprint }));
    };

    leave("0".repeat(64));
    expect(discardStalePartial(plan)).toBe(false);
    for (const file of [partial, `${partial}-wal`, `${partial}.inputs.json`])
      expect(existsSync(file)).toBe(false);

    leave(null);
    expect(discardStalePartial(plan)).toBe(false);
    expect(existsSync(partial)).toBe(false);

    leave(plan.inputs.fingerprint);
    expect(discardStalePartial(plan)).toBe(true);
    expect(readFileSync(partial, "utf8")).toBe("partial");
    expect(existsSync(`${partial}-wal`)).toBe(true);
  });
});

describe("demo datasets build", () => {
  it("collates and explains into datasets/demo.db, records its inputs, rebuilds when they change", async () => {
    const dir = demoDir(true);
    const stories = [
      "When Mary and John went to the store, John gave a drink to Mary.",
      "The cat sat on the mat. The dog sat on the log. The bird sat on the tree.",
      "Once upon a time there was a small house near the river, and a girl lived there.",
    ];
    writeCorpus(
      dir,
      Array.from({ length: 12 }, (_, i) => JSON.stringify({ text: stories[i % 3] })),
    );
    const db = join(dir, "datasets", "demo.db");
    const log: string[] = [];
    vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    vi.spyOn(console, "log").mockImplementation(() => {});
    try {
      expect(await buildDemoDatasets(dir, (line) => log.push(line))).toBe(db);
      expect(log[0]).toMatch(/first start/);
      expect(existsSync(`${db}.partial`)).toBe(false);
      expect(existsSync(`${db}.partial.inputs.json`)).toBe(false);
      const record = JSON.parse(readFileSync(`${db}.inputs.json`, "utf8"));
      const weights = "autoencoders/mlp_post_act/0.safetensors";
      expect(record.files).toContainEqual({ path: weights, sha256: sha256(join(dir, weights)) });
      expect(demoDatasetsPlan(dir)).toBeNull();
      expect(await buildDemoDatasets(dir)).toBeNull();

      const store = openDatasetStore(db);
      try {
        // Every neuron gets an explanation (first and last of each layer checked; widths from config.json).
        const config = JSON.parse(readFileSync(join(TINY, "config.json"), "utf8"));
        for (let layer = 0; layer < config.n_layer; layer++) {
          expect(store.explanations("mlp_neuron", layer, 0).length).toBeGreaterThan(0);
          expect(store.explanations("mlp_neuron", layer, config.n_inner - 1).length).toBeGreaterThan(0);
        }
      } finally {
        store.close();
      }

      // New autoencoder weights: rebuilt in place, the log says why, and the record follows.
      flipLastByte(join(dir, weights));
      log.length = 0;
      expect(await buildDemoDatasets(dir, (line) => log.push(line))).toBe(db);
      expect(log[0]).toMatch(/the demo bundle changed since demo.db was built/);
      const rebuilt = JSON.parse(readFileSync(`${db}.inputs.json`, "utf8"));
      expect(rebuilt.files).toContainEqual({ path: weights, sha256: sha256(join(dir, weights)) });
      expect(demoDatasetsPlan(dir)).toBeNull();
    } finally {
      vi.restoreAllMocks();
    }
  });
});
