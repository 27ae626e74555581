/**
 * `tdb explain` through the CLI's entry point (in-process, sources): offline over a collated tiny-gpt2
 * dataset with the score table, resuming, the exit code and message without an endpoint, a language-model
 * run against the fake endpoint, and usage errors.
 */
import { openDatasetStore } from "@tdb/datasets";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { type FakeLlm, ruleBasedModel, startFakeLlm } from "../../explain/test/fake-llm.js";
import { tempDir, tinyDataset } from "../../explain/test/helpers.js";
import { main } from "../src/main.js";

const ENDPOINT_VARIABLES = [
  "TDB_LLM_BASE_URL",
  "OPENAI_BASE_URL",
  "TDB_LLM_MODEL",
  "OPENAI_API_KEY",
  "TDB_LLM_API_KEY",
];
const savedEnv: Record<string, string | undefined> = {};

let dir: string;
let file: string;
let fake: FakeLlm;
beforeAll(async () => {
  for (const name of ENDPOINT_VARIABLES) {
    savedEnv[name] = process.env[name];
    delete process.env[name];
  }
  dir = tempDir("explain-cli");
  file = await tinyDataset(dir, "cli.db");
  fake = await startFakeLlm(ruleBasedModel);
});
afterAll(async () => {
  for (const name of ENDPOINT_VARIABLES) if (savedEnv[name] !== undefined) process.env[name] = savedEnv[name];
  await fake?.close();
});
afterEach(() => {
  vi.restoreAllMocks();
});

/** Runs `tdb ARGS`, returning the exit code and what went to stdout and stderr. */
async function tdb(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  vi.spyOn(console, "log").mockImplementation((...parts: unknown[]) => {
    out += `${parts.join(" ")}\n`;
  });
  vi.spyOn(console, "error").mockImplementation((...parts: unknown[]) => {
    err += `${parts.join(" ")}\n`;
  });
  vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
    err += String(chunk);
    return true;
  });
  const code = await main(args);
  vi.restoreAllMocks();
  return { code, out, err };
}

describe("tdb explain", () => {
  it("explains offline, stores the results and prints the score distribution", async () => {
    const { code, out, err } = await tdb(
      "explain",
      "--datasets",
      file,
      "--offline",
      "--components",
      "mlp:0,heads",
    );
    expect(code).toBe(0);
    expect(out).toContain(
      "cli: 264 explained, 0 already explained, 0 not activated (264 components, method offline-token-summary)",
    );
    const table = out.split("\n").filter((line) => /^(kind|mlp_neuron|attention_head) /.test(line));
    expect(table).toHaveLength(3);
    expect(table[0]).toMatch(
      /^kind\s+score\s+n\s+unscored\s+mean\s+min\s+q10\s+q25\s+median\s+q75\s+q90\s+max\s+>0\.3\s+>0\.5$/,
    );
    expect(table[1]).toMatch(/^mlp_neuron\s+corr\s+256\s+0\s/);
    expect(table[2]).toMatch(/^attention_head\s+roc-auc\s+8\s+0\s/);
    expect(err).toMatch(/\[#+\] 264\/264 components/);
    const store = openDatasetStore(file, { readonly: true });
    try {
      expect(store.explanations("mlp_neuron", 0, 10)).toHaveLength(1);
      expect(store.explanations("attention_head", 1, 3)[0].method).toBe("offline-token-summary");
      expect(store.explanations("mlp_neuron", 1, 10)).toHaveLength(0);
    } finally {
      store.close();
    }
  });

  it("resumes: a second run skips what is explained", async () => {
    const { code, out } = await tdb(
      "explain",
      "--datasets",
      file,
      "--offline",
      "--components",
      "mlp:0,heads,mlp_neuron:1:4",
      "--quiet",
    );
    expect(code).toBe(0);
    expect(out).toContain("cli: 1 explained, 264 already explained");
  });

  it("exits 2 and says how to configure an endpoint when none is", async () => {
    const { code, err } = await tdb("explain", "--datasets", file);
    expect(code).toBe(2);
    expect(err).toContain("No language-model endpoint is configured");
    expect(err).toContain("TDB_LLM_BASE_URL");
  });

  it("explains with a language model at --endpoint", async () => {
    const { code, out } = await tdb(
      "explain",
      "--datasets",
      file,
      "--endpoint",
      fake.baseUrl,
      "--llm-model",
      "fake-model",
      "--no-llm-cache",
      "--components",
      "mlp_neuron:1:7",
      "--max-sequences",
      "4",
      "--quiet",
    );
    expect(code).toBe(0);
    expect(out).toContain("1 explained");
    expect(out).toContain("method llm:fake-model");
    const store = openDatasetStore(file, { readonly: true });
    try {
      const [stored] = store.explanations("mlp_neuron", 1, 7).filter((e) => e.method === "llm:fake-model");
      expect(stored.explanation).toMatch(/^the token "/);
      expect(stored.details).toMatchObject({ scoredSequences: 4, model: "fake-model" });
    } finally {
      store.close();
    }
  });

  it("refuses bad arguments with exit 2", async () => {
    expect((await tdb("explain", "--offline")).code).toBe(2);
    expect((await tdb("explain", "--datasets", file, "--offline", "--components", "bananas")).code).toBe(2);
    expect((await tdb("explain", "--datasets", file, "--offline", "--endpoint", "http://x/v1")).code).toBe(2);
    expect((await tdb("explain", "--datasets", `${dir}/missing.db`, "--offline")).code).toBe(2);
    const noModel = await tdb("explain", "--datasets", file, "--endpoint", "http://127.0.0.1:9/v1");
    expect(noModel.code).toBe(2);
    expect(noModel.err).toContain("--llm-model");
  });
});
