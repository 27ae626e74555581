/**
 * `tdb generate` as a user runs it (the built CLI): greedy output equals Hugging Face's `generate` on the shared
 * tiny fixture (golden ids from tools/golden/make_test_models.py), sampling is reproducible by seed, and bad input
 * gives a message and an exit code.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Gpt2Tokenizer } from "@tdb/model";
import { describe, expect, it } from "vitest";

const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const TINY = new URL("../../../../shared/fixtures/tiny-gpt2/", import.meta.url);
const IOI = "When Mary and John went to the store, John gave a drink to";

function tdb(...args: string[]) {
  const r = spawnSync(process.execPath, ["packages/cli/bin/tdb.js", "generate", ...args], {
    cwd: REPO_ROOT,
    encoding: "utf8",
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("tdb generate", () => {
  it("prints the prompt and the greedy continuation transformers produces", () => {
    const golden = JSON.parse(
      readFileSync(new URL("../../model/test/golden/tiny-gpt2.json", import.meta.url), "utf8"),
    );
    const tokenizer = Gpt2Tokenizer.fromVocabAndMerges(
      readFileSync(new URL("vocab.json", TINY), "utf8"),
      readFileSync(new URL("merges.txt", TINY), "utf8"),
    );
    const expected = IOI + tokenizer.decode(golden.generate.newTokenIds);
    const r = tdb("--model", fileURLToPath(TINY), "--prompt", IOI, "--max-tokens", "20", "--threads", "1");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${expected}\n`);
  });

  it("samples reproducibly with a seed", () => {
    const args = [
      "--model",
      fileURLToPath(TINY),
      "--prompt",
      "Hello",
      "--temperature",
      "1",
      "--top-p",
      "0.9",
    ];
    const a = tdb(...args, "--seed", "3", "--max-tokens", "8");
    const b = tdb(...args, "--seed", "3", "--max-tokens", "8");
    expect(a.code, a.stderr).toBe(0);
    expect(a.stdout).toBe(b.stdout);
    expect(a.stdout.startsWith("Hello")).toBe(true);
  });

  it.each([
    [["--prompt", "x"], 2, /--model is required/],
    [
      ["--model", fileURLToPath(TINY), "--prompt", "x", "--max-tokens", "abc"],
      2,
      /--max-tokens expects a whole number/,
    ],
    [["--model", fileURLToPath(TINY), "--prompt", "x", "--top-p", "0"], 2, /--top-p must be in \(0, 1\]/],
    [["--model", "/nonexistent/model", "--prompt", "x"], 1, /neither a local folder nor a known model/],
  ])("%j exits %i with a message", (args, code, message) => {
    const r = tdb(...(args as string[]));
    expect(r.code).toBe(code);
    expect(r.stderr).toMatch(message as RegExp);
  });

  it("--help prints its options", () => {
    const r = tdb("--help");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/--max-tokens N/);
  });
});
