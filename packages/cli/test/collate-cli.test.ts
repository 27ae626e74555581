/**
 * `tdb collate` end to end on the BUILT cli (run `npm run build` first): a run killed with SIGKILL mid-way
 * resumes and ends byte-equal to an uninterrupted run; shards merged with `tdb collate merge` equal it too;
 * different settings on an existing file are refused.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { openDatasetStore } from "@tdb/datasets";
import { beforeAll, describe, expect, it } from "vitest";
import { dumpDataset, TINY_AE_DIR, TINY_DIR, tempDir } from "../../datasets/test/helpers.js";

const REPO = new URL("../../../", import.meta.url).pathname;
const CLI = join(REPO, "packages/cli/bin/tdb.js");
const BUILT = join(REPO, "packages/cli/dist/collate.js");
const SETTINGS = ["--seq-len", "32", "--top-k", "5", "--random", "4", "--mlp-autoencoder", TINY_AE_DIR];

interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

function start(
  args: string[],
  env: Record<string, string> = {},
): { child: ChildProcess; done: Promise<Finished> } {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: REPO,
    env: { ...process.env, ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const done = new Promise<Finished>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal, stderr })),
  );
  return { child, done };
}

const collate = (out: string, extra: string[] = [], env: Record<string, string> = {}) =>
  start(
    ["collate", "--model", TINY_DIR, "--corpus", "builtin:tiny", "--out", out, ...SETTINGS, ...extra],
    env,
  );

function committedProgress(file: string): { processed: number; total: number } | null {
  if (!existsSync(file)) return null;
  try {
    const store = openDatasetStore(file, { readonly: true });
    try {
      return store.metadata().progress;
    } finally {
      store.close();
    }
  } catch {
    return null; // not created yet
  }
}

let dir: string;
let reference: string;

beforeAll(async () => {
  if (!existsSync(BUILT))
    throw new Error("packages/cli is not built: run `npm run build` before these tests");
  dir = tempDir("collate-cli");
  reference = join(dir, "reference.db");
  const run = await collate(reference).done;
  expect(run.stderr).toMatch(/tokens\/s/);
  expect(run.code, run.stderr).toBe(0);
});

describe("tdb collate", () => {
  it("a run killed with SIGKILL resumes from its last commit and ends equal to an uninterrupted run", async () => {
    const out = join(dir, "killed.db");
    const { child, done } = collate(out, ["--commit-every", "2"], {
      TDB_COLLATE_TEST_COMMIT_DELAY_MS: "150",
    });
    let atKill: { processed: number; total: number } | null = null;
    for (let i = 0; i < 600 && atKill === null; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      const progress = committedProgress(out);
      if (progress && progress.processed >= 10) {
        child.kill("SIGKILL");
        atKill = progress;
      }
    }
    const killed = await done;
    expect(killed.signal).toBe("SIGKILL");
    expect(atKill).not.toBeNull();
    expect(atKill!.processed).toBeLessThan(atKill!.total);

    const resumed = await collate(out).done;
    expect(resumed.code, resumed.stderr).toBe(0);
    const from = Number(/resumed after (\d+) sequences/.exec(resumed.stderr)?.[1]);
    expect(from).toBeGreaterThanOrEqual(atKill!.processed);
    expect(from).toBeLessThan(atKill!.total);
    expect(dumpDataset(out)).toEqual(dumpDataset(reference));

    const again = await collate(out).done;
    expect(again.code).toBe(0);
    expect(again.stderr).toMatch(/already complete/);
  });

  it("refuses to resume with different settings, naming them", async () => {
    const refused = await collate(reference, ["--top-k", "6", "--seed", "3"]).done;
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/cannot be resumed/);
    expect(refused.stderr).toMatch(/--top-k: 5 vs 6/);
    expect(refused.stderr).toMatch(/seed: 0 vs 3/);
  });

  it("shards merged with `tdb collate merge` equal the unsharded file", async () => {
    const shards = [0, 1].map((i) => join(dir, `shard${i}.db`));
    const runs = await Promise.all(shards.map((file, i) => collate(file, ["--shard", `${i}/2`]).done));
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    const merged = join(dir, "merged.db");
    const merge = await start(["collate", "merge", "--out", merged, ...shards]).done;
    expect(merge.code, merge.stderr).toBe(0);
    expect(dumpDataset(merged)).toEqual(dumpDataset(reference));
    const bad = await start([
      "collate",
      "--model",
      TINY_DIR,
      "--corpus",
      "builtin:tiny",
      "--out",
      "x.db",
      "--shard",
      "2/2",
    ]).done;
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--shard expects I\/N/);
  });
});
