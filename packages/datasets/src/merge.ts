/**
 * Merges the files of a sharded collation (shards 0..N-1 of the same run) into the file the unsharded run would
 * have written: statistics add exactly, and each component keeps the best k of the union of the shards' top and
 * random sets under the same total order the collator uses.
 */
import { existsSync } from "node:fs";
import Database from "better-sqlite3";
import { type GroupStatistics, mergeStatistics } from "./accumulate.js";
import { runDifferences } from "./collator.js";
import {
  type CollationProgress,
  type CollationRun,
  checkDataset,
  DatasetWriter,
  ROLE_TOP,
  readGroupStatistics,
} from "./store.js";

interface ExampleRow {
  idx: number;
  role: number;
  seq: number;
  score: number;
  vals: Buffer;
}

export interface MergeResult {
  run: CollationRun;
  progress: CollationProgress;
}

export function mergeDatasets(inputs: readonly string[], out: string): MergeResult {
  if (inputs.length === 0) throw new Error("merge needs at least one input file");
  if (existsSync(out)) throw new Error(`${out} already exists; merge writes a new file`);
  const sources = inputs.map((file) => {
    const db = new Database(file, { readonly: true, fileMustExist: true });
    try {
      return { file, db, ...checkDataset(db, file) };
    } catch (error) {
      db.close();
      throw error;
    }
  });
  try {
    const first = sources[0];
    const count = first.run.shard.count;
    const seen = new Map<number, string>();
    for (const s of sources) {
      const differences = runDifferences(first.run, s.run, { ignoreShardIndex: true });
      if (differences.length > 0) {
        throw new Error(
          `${s.file} is not a shard of the same collation as ${first.file} (${differences.join("; ")})`,
        );
      }
      if (!s.progress.complete) {
        throw new Error(
          `${s.file} is unfinished (${s.progress.processed}/${s.progress.total} sequences); resume it first`,
        );
      }
      const other = seen.get(s.run.shard.index);
      if (other !== undefined)
        throw new Error(`${s.file} and ${other} are both shard ${s.run.shard.index}/${count}`);
      seen.set(s.run.shard.index, s.file);
    }
    const missing = Array.from({ length: count }, (_, i) => i).filter((i) => !seen.has(i));
    if (missing.length > 0)
      throw new Error(`shards ${missing.map((i) => `${i}/${count}`).join(", ")} are missing`);
    sources.sort((a, b) => a.run.shard.index - b.run.shard.index);

    const run: CollationRun = { ...first.run, shard: { index: 0, count: 1 } };
    const total = sources.reduce((n, s) => n + s.progress.total, 0);
    const progress: CollationProgress = { processed: total, total, complete: true };
    const writer = DatasetWriter.create(out, run, { processed: 0, total, complete: false });
    const db = writer.db;
    try {
      const stats = sources.map((s) => readGroupStatistics(s.db));
      const groupIds = new Map(
        (
          db.prepare("SELECT id, kind, layer FROM groups").all() as {
            id: number;
            kind: string;
            layer: number;
          }[]
        ).map((r) => [`${r.kind}@${r.layer}`, r.id]),
      );
      const updateGroup = db.prepare(
        "UPDATE groups SET count = ?, max = ?, positives = ?, sum_hi = ?, sum_lo = ?, sq_hi = ?, sq_lo = ? WHERE id = ?",
      );
      const insertExample = db.prepare(
        "INSERT INTO examples (group_id, idx, role, seq, score, vals) VALUES (?, ?, ?, ?, ?, ?)",
      );
      for (const g of run.groups) {
        const key = `${g.kind}@${g.layer}`;
        const id = groupIds.get(key)!;
        db.transaction(() => {
          const merged = stats[0].get(key)!;
          for (const s of stats.slice(1)) mergeStatistics(merged, s.get(key)!);
          updateGroup.run(merged.count, ...blobs(merged), id);
          const byComponent = new Map<number, ExampleRow[]>();
          for (const s of sources) {
            const sourceGroup = s.db
              .prepare("SELECT id FROM groups WHERE kind = ? AND layer = ?")
              .get(g.kind, g.layer) as { id: number };
            const rows = s.db
              .prepare("SELECT idx, role, seq, score, vals FROM examples WHERE group_id = ?")
              .iterate(sourceGroup.id) as Iterable<ExampleRow>;
            for (const row of rows) {
              const list = byComponent.get(row.idx);
              if (list) list.push(row);
              else byComponent.set(row.idx, [row]);
            }
          }
          for (const rows of byComponent.values()) {
            for (const [role, k] of [
              [ROLE_TOP, run.topK],
              [1 - ROLE_TOP, run.randomCount],
            ]) {
              // Same order as the collator: key (−max for top, hash for random) ascending, then sequence index.
              const keyOf = (r: ExampleRow) => (role === ROLE_TOP ? -r.score : r.score);
              const kept = rows
                .filter((r) => r.role === role)
                .sort((a, b) => keyOf(a) - keyOf(b) || a.seq - b.seq)
                .slice(0, k);
              for (const r of kept) insertExample.run(id, r.idx, r.role, r.seq, r.score, r.vals);
            }
          }
        })();
      }
      db.transaction(() => {
        const insertSequence = db.prepare("INSERT INTO sequences (seq, tokens) VALUES (?, ?)");
        const insertToken = db.prepare("INSERT OR IGNORE INTO token_strings (id, text) VALUES (?, ?)");
        const insertExplanation = db.prepare(
          "INSERT INTO explanations (kind, layer, idx, explanation, score, method, details, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        );
        for (const s of sources) {
          for (const r of s.db.prepare("SELECT seq, tokens FROM sequences").iterate() as Iterable<{
            seq: number;
            tokens: Buffer;
          }>) {
            insertSequence.run(r.seq, r.tokens);
          }
          for (const r of s.db.prepare("SELECT id, text FROM token_strings").iterate() as Iterable<{
            id: number;
            text: string;
          }>) {
            insertToken.run(r.id, r.text);
          }
          const explanations = s.db
            .prepare(
              "SELECT kind, layer, idx, explanation, score, method, details, created_at FROM explanations ORDER BY id",
            )
            .raw()
            .iterate() as Iterable<unknown[]>;
          for (const r of explanations) insertExplanation.run(...r);
        }
        db.prepare("UPDATE metadata SET value = ? WHERE key = 'progress'").run(JSON.stringify(progress));
      })();
    } finally {
      writer.close();
    }
    return { run, progress };
  } finally {
    for (const s of sources) s.db.close();
  }
}

function blobs(s: GroupStatistics): Buffer[] {
  const b = (v: ArrayBufferView) => Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  return [b(s.max), b(s.positives), b(s.sumHi), b(s.sumLo), b(s.sqHi), b(s.sqLo)];
}
