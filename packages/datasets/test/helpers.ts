/** Shared fixtures for the dataset tests: the tiny GPT-2, its layer-0 autoencoder, raw dumps of dataset files. */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type LoadedModel, loadAutoencoderFamily, loadModel } from "@tdb/model/node";
import Database from "better-sqlite3";

export const TINY_DIR = new URL("../../../../shared/fixtures/tiny-gpt2/", import.meta.url).pathname;
export const TINY_AE_DIR = join(TINY_DIR, "autoencoders", "mlp_post_act");

export async function loadTiny(): Promise<
  LoadedModel & { autoencoder: Awaited<ReturnType<typeof loadAutoencoderFamily>> }
> {
  const loaded = await loadModel(TINY_DIR);
  return { ...loaded, autoencoder: await loadAutoencoderFamily(TINY_AE_DIR) };
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `tdb-${prefix}-`));
}

/** Every table of a dataset file in a canonical order, for exact comparisons (BLOBs compare by bytes). */
export function dumpDataset(file: string): Record<string, unknown> {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    // BLOBs as hex: deep equality on strings is fast, on Buffers byte by byte it is not.
    const all = (sql: string) =>
      (db.prepare(sql).all() as Record<string, unknown>[]).map((row) =>
        Object.fromEntries(
          Object.entries(row).map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString("hex") : v]),
        ),
      );
    return {
      metadata: all("SELECT key, value FROM metadata ORDER BY key"),
      groups: all(
        "SELECT kind, layer, size, count, max, positives, sum_hi, sum_lo, sq_hi, sq_lo FROM groups ORDER BY kind, layer",
      ),
      examples: all(
        "SELECT g.kind, g.layer, e.idx, e.role, e.seq, e.score, e.vals FROM examples e JOIN groups g ON g.id = e.group_id ORDER BY g.kind, g.layer, e.idx, e.role, e.seq",
      ),
      sequences: all("SELECT seq, tokens FROM sequences ORDER BY seq"),
      tokenStrings: all("SELECT id, text FROM token_strings ORDER BY id"),
      explanations: all(
        "SELECT kind, layer, idx, explanation, score, method, details FROM explanations ORDER BY id",
      ),
    };
  } finally {
    db.close();
  }
}
