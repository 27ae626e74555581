/**
 * The demo bundle's `tdb serve` defaults: the printed URL's query opens the viewer on TDB's IOI example, and
 * the datasets are rebuilt (collate + offline explain) into datasets/demo.db when missing.
 */
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { openDatasetStore } from "@tdb/datasets";
import { describe, expect, it, vi } from "vitest";
import { tempDir } from "../../explain/test/helpers.js";
import { stateFromSearch } from "../../viewer/src/tdb/state.js";
import { buildDemoDatasets, demoDatasetsPlan, ioiExampleQuery } from "../src/demo-bundle.js";

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

describe("demo datasets on first start", () => {
  it("plans nothing without the held-out text, and nothing once demo.db exists", () => {
    const dir = demoDir(false);
    expect(demoDatasetsPlan(dir)).toBeNull();
    mkdirSync(join(dir, "corpus"));
    writeFileSync(join(dir, "corpus", "heldout.jsonl"), '{"text":"a b c"}\n');
    const plan = demoDatasetsPlan(dir);
    expect(plan?.out).toBe(join(dir, "datasets", "demo.db"));
    expect(plan?.collateArgs).not.toContain("--mlp-autoencoder");
    mkdirSync(join(dir, "datasets"));
    writeFileSync(join(dir, "datasets", "demo.db"), "");
    expect(demoDatasetsPlan(dir)).toBeNull();
  });

  it("collates and explains every component into datasets/demo.db, with the autoencoders present", async () => {
    const dir = demoDir(true);
    mkdirSync(join(dir, "corpus"));
    const stories = [
      "When Mary and John went to the store, John gave a drink to Mary.",
      "The cat sat on the mat. The dog sat on the log. The bird sat on the tree.",
      "Once upon a time there was a small house near the river, and a girl lived there.",
    ];
    const lines = Array.from({ length: 12 }, (_, i) => JSON.stringify({ text: stories[i % 3] }));
    writeFileSync(join(dir, "corpus", "heldout.jsonl"), `${lines.join("\n")}\n`);
    const plan = demoDatasetsPlan(dir);
    expect(plan?.collateArgs).toContain("--mlp-autoencoder");
    const log: string[] = [];
    vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    vi.spyOn(console, "log").mockImplementation(() => {});
    try {
      const out = await buildDemoDatasets(dir, (line) => log.push(line));
      expect(out).toBe(join(dir, "datasets", "demo.db"));
    } finally {
      vi.restoreAllMocks();
    }
    expect(existsSync(join(dir, "datasets", "demo.db.partial"))).toBe(false);
    expect(log[0]).toMatch(/first start/);
    const store = openDatasetStore(join(dir, "datasets", "demo.db"));
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
    expect(await buildDemoDatasets(dir)).toBeNull();
  });
});
