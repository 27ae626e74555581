/**
 * Many explanations into a dataset's explanations table (schema of store.ts) in few transactions: rows are
 * buffered and written one transaction per flush, through a connection of its own, so explaining thousands
 * of components does not pay one disk sync per row.
 */
import Database from "better-sqlite3";
import type { ComponentKind } from "./components.js";
import type { ExplanationInput } from "./store.js";

interface PendingRow {
  kind: ComponentKind;
  layer: number;
  index: number;
  explanation: ExplanationInput;
  /** Delete the component's earlier explanations by the same method first. */
  replace: boolean;
}

export class ExplanationBatchWriter {
  private readonly db: Database.Database;
  private pending: PendingRow[] = [];

  constructor(readonly file: string) {
    this.db = new Database(file, { fileMustExist: true });
    this.db.pragma("busy_timeout = 10000");
    const table = this.db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'explanations'")
      .get();
    if (!table) {
      this.db.close();
      throw new Error(`${file} has no explanations table (not a collated dataset?)`);
    }
  }

  get pendingCount(): number {
    return this.pending.length;
  }

  put(
    kind: ComponentKind,
    layer: number,
    index: number,
    explanation: ExplanationInput,
    replace = false,
  ): void {
    this.pending.push({ kind, layer, index, explanation, replace });
  }

  /** Writes the buffered rows in one transaction. */
  flush(): void {
    if (this.pending.length === 0) return;
    const rows = this.pending;
    const remove = this.db.prepare(
      "DELETE FROM explanations WHERE kind = ? AND layer = ? AND idx = ? AND method = ?",
    );
    const insert = this.db.prepare(
      "INSERT INTO explanations (kind, layer, idx, explanation, score, method, details, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    );
    const now = new Date().toISOString();
    this.db.transaction(() => {
      for (const r of rows) {
        const e = r.explanation;
        if (r.replace) remove.run(r.kind, r.layer, r.index, e.method);
        insert.run(
          r.kind,
          r.layer,
          r.index,
          e.explanation,
          e.score ?? null,
          e.method,
          e.details === undefined ? null : JSON.stringify(e.details),
          now,
        );
      }
    })();
    this.pending = [];
  }

  close(): void {
    try {
      this.flush();
    } finally {
      this.db.close();
    }
  }
}
