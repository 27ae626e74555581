/**
 * One SQLite file per collated dataset (better-sqlite3). Schema version 1:
 * - metadata(key, value JSON): schema_version, run (what was collated and how; see CollationRun), progress;
 * - groups: one row per (kind, layer) with the statistics of its components as little-endian BLOBs
 *   (max Float32, the rest Float64; sums as exact fixed-point hi/lo pairs, see accumulate.ts);
 * - examples: top (role 0, score = max value) and random (role 1, score = sample hash) sequences of each
 *   component, values as Float32 BLOBs (per token, or the flattened lower triangle for heads);
 * - sequences: token ids (Int32 BLOB) of every processed sequence; token_strings: display string per token id,
 *   so the file is readable without the model or tokenizer;
 * - explanations: text and score per component, written by explainers (any number per component).
 * Values are stored in the platform's byte order, little-endian on every platform Node supports.
 */
import { basename, extname } from "node:path";
import Database from "better-sqlite3";
import {
  type ComponentStatistics,
  componentStatistics,
  emptyStatistics,
  type GroupAccumulator,
  type GroupStatistics,
} from "./accumulate.js";
import {
  type ComponentKind,
  type GroupSpec,
  isComponentKind,
  isTokenPairKind,
  KIND_DST,
  kindForDst,
} from "./components.js";
import {
  type ActivationRecord,
  type AttentionHeadRecordResponse,
  maxActivation,
  type NeuronRecord,
  type NeuronRecordResponse,
  toAttentionHeadRecordResponse,
  toNeuronRecordResponse,
} from "./records.js";

export const SCHEMA_VERSION = 1;
export const DATASET_FORMAT = "tdb-ts-collated-activations";

export const ROLE_TOP = 0;
export const ROLE_RANDOM = 1;

export interface AutoencoderInfo {
  name: string;
  site: string;
  sha256: string;
  layers: number[];
}

/** Everything that determines a collation's result; resuming and merging require it to match. */
export interface CollationRun {
  format: typeof DATASET_FORMAT;
  model: {
    name: string;
    sha256: string;
    nLayer: number;
    nHead: number;
    nEmbd: number;
    nInner: number;
    nPositions: number;
    vocabSize: number;
  };
  corpus: { name: string; sha256: string; tokens: number; documents: number; sequences: number };
  seqLen: number;
  topK: number;
  randomCount: number;
  seed: number;
  shard: { index: number; count: number };
  autoencoders: { mlp: AutoencoderInfo | null; attention: AutoencoderInfo | null };
  groups: GroupSpec[];
}

export interface CollationProgress {
  /** Sequences of this shard done (they are processed in order: I, I+N, I+2N, …). */
  processed: number;
  /** Sequences in this shard. */
  total: number;
  complete: boolean;
}

export interface DatasetMetadata extends CollationRun {
  schemaVersion: number;
  progress: CollationProgress;
  /** TDB's derived-scalar type of each kind present. */
  dstNames: Partial<Record<ComponentKind, string>>;
}

export interface ComponentGroupInfo extends GroupSpec {
  dst: string;
  /** Values per sequence are per token, or per token pair (flattened lower triangle). */
  values: "tokens" | "token_pairs";
}

export interface StoredExplanation {
  id: number;
  kind: ComponentKind;
  layer: number;
  index: number;
  explanation: string;
  score: number | null;
  /** Who produced it, e.g. "offline-token-summary" or an LLM's name. */
  method: string;
  /** Anything else the explainer keeps (simulation details, prompts), as JSON. */
  details: unknown;
  createdAt: string;
}

export interface ExplanationInput {
  explanation: string;
  score?: number | null;
  method: string;
  details?: unknown;
}

const SCHEMA = `
CREATE TABLE metadata (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE groups (
  id INTEGER PRIMARY KEY,
  kind TEXT NOT NULL,
  layer INTEGER NOT NULL,
  size INTEGER NOT NULL,
  count REAL NOT NULL,
  max BLOB NOT NULL,
  positives BLOB NOT NULL,
  sum_hi BLOB NOT NULL,
  sum_lo BLOB NOT NULL,
  sq_hi BLOB NOT NULL,
  sq_lo BLOB NOT NULL,
  UNIQUE (kind, layer)
);
CREATE TABLE examples (
  group_id INTEGER NOT NULL REFERENCES groups(id),
  idx INTEGER NOT NULL,
  role INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  score REAL NOT NULL,
  vals BLOB NOT NULL,
  PRIMARY KEY (group_id, idx, role, seq)
);
CREATE TABLE sequences (seq INTEGER PRIMARY KEY, tokens BLOB NOT NULL);
CREATE TABLE token_strings (id INTEGER PRIMARY KEY, text TEXT NOT NULL);
CREATE TABLE explanations (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  layer INTEGER NOT NULL,
  idx INTEGER NOT NULL,
  explanation TEXT NOT NULL,
  score REAL,
  method TEXT NOT NULL,
  details TEXT,
  created_at TEXT NOT NULL
);
CREATE INDEX explanations_by_component ON explanations (kind, layer, idx);
`;

export function bytesOf(view: ArrayBufferView): Buffer {
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength);
}

/** Copies (BLOBs may be unaligned) into a fresh typed array. */
export function float32Of(blob: Buffer): Float32Array {
  const out = new Float32Array(blob.byteLength / 4);
  new Uint8Array(out.buffer).set(blob);
  return out;
}

export function float64Of(blob: Buffer): Float64Array {
  const out = new Float64Array(blob.byteLength / 8);
  new Uint8Array(out.buffer).set(blob);
  return out;
}

export function int32Of(blob: Buffer): Int32Array {
  const out = new Int32Array(blob.byteLength / 4);
  new Uint8Array(out.buffer).set(blob);
  return out;
}

interface GroupRow {
  id: number;
  kind: string;
  layer: number;
  size: number;
  count: number;
  max: Buffer;
  positives: Buffer;
  sum_hi: Buffer;
  sum_lo: Buffer;
  sq_hi: Buffer;
  sq_lo: Buffer;
}

function statisticsOfRow(row: GroupRow): GroupStatistics {
  return {
    count: row.count,
    max: float32Of(row.max),
    positives: float64Of(row.positives),
    sumHi: float64Of(row.sum_hi),
    sumLo: float64Of(row.sum_lo),
    sqHi: float64Of(row.sq_hi),
    sqLo: float64Of(row.sq_lo),
  };
}

function readJsonMeta<T>(db: Database.Database, key: string): T | undefined {
  const row = db.prepare("SELECT value FROM metadata WHERE key = ?").get(key) as
    | { value: string }
    | undefined;
  return row ? (JSON.parse(row.value) as T) : undefined;
}

function writeJsonMeta(db: Database.Database, key: string, value: unknown): void {
  db.prepare(
    "INSERT INTO metadata (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
  ).run(key, JSON.stringify(value));
}

/** Checks that a file is a collated dataset of a schema this code reads, and returns its run and progress. */
function checkDataset(
  db: Database.Database,
  file: string,
): { run: CollationRun; progress: CollationProgress } {
  const hasMeta = db
    .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'metadata'")
    .get();
  const version = hasMeta ? readJsonMeta<number>(db, "schema_version") : undefined;
  const run = hasMeta ? readJsonMeta<CollationRun>(db, "run") : undefined;
  if (version === undefined || run?.format !== DATASET_FORMAT) {
    throw new Error(`${file} is not a collated-activations dataset (no metadata)`);
  }
  if (version !== SCHEMA_VERSION) {
    throw new Error(
      `${file} has dataset schema version ${version}; this version of tdb reads ${SCHEMA_VERSION}`,
    );
  }
  const progress = readJsonMeta<CollationProgress>(db, "progress")!;
  return { run, progress };
}

/** Writes a collation's state; every commit is one transaction, so a killed run loses at most one batch. */
export class DatasetWriter {
  private readonly groupIds: number[];

  private constructor(
    readonly db: Database.Database,
    readonly run: CollationRun,
  ) {
    const ids = db.prepare("SELECT id, kind, layer FROM groups").all() as {
      id: number;
      kind: string;
      layer: number;
    }[];
    this.groupIds = run.groups.map((g) => {
      const row = ids.find((r) => r.kind === g.kind && r.layer === g.layer);
      if (!row) throw new Error(`dataset has no group ${g.kind}@${g.layer}`);
      return row.id;
    });
  }

  static create(file: string, run: CollationRun, progress: CollationProgress): DatasetWriter {
    const db = new Database(file);
    try {
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = NORMAL");
      db.transaction(() => {
        db.exec(SCHEMA);
        db.pragma(`user_version = ${SCHEMA_VERSION}`);
        writeJsonMeta(db, "schema_version", SCHEMA_VERSION);
        writeJsonMeta(db, "run", run);
        writeJsonMeta(db, "progress", progress);
        const insert = db.prepare(
          "INSERT INTO groups (kind, layer, size, count, max, positives, sum_hi, sum_lo, sq_hi, sq_lo) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        );
        for (const g of run.groups) {
          const s = emptyStatistics(g.size);
          insert.run(g.kind, g.layer, g.size, 0, ...statisticsBlobs(s));
        }
      })();
    } catch (error) {
      db.close();
      throw error;
    }
    return new DatasetWriter(db, run);
  }

  /** Opens an unfinished (or finished) dataset to continue it. */
  static open(file: string): { writer: DatasetWriter; progress: CollationProgress } {
    const db = new Database(file, { fileMustExist: true });
    try {
      const { run, progress } = checkDataset(db, file);
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = NORMAL");
      return { writer: new DatasetWriter(db, run), progress };
    } catch (error) {
      db.close();
      throw error;
    }
  }

  /** Loads statistics and the kept (key, sequence) pairs into fresh accumulators. */
  restore(accumulators: readonly GroupAccumulator[]): void {
    const statsRow = this.db.prepare("SELECT * FROM groups WHERE id = ?");
    const examples = this.db.prepare(
      "SELECT idx, role, seq, score FROM examples WHERE group_id = ? ORDER BY idx, role, seq",
    );
    accumulators.forEach((acc, g) => {
      const stats = statisticsOfRow(statsRow.get(this.groupIds[g]) as GroupRow);
      Object.assign(acc.stats, stats);
      for (const row of examples.iterate(this.groupIds[g]) as Iterable<{
        idx: number;
        role: number;
        seq: number;
        score: number;
      }>) {
        if (row.role === ROLE_TOP) acc.top.insert(row.idx, -row.score, row.seq, -1);
        else acc.random.insert(row.idx, row.score, row.seq, -1);
      }
    });
  }

  /** Writes what changed since the last commit and moves the progress marker, atomically. */
  commit(
    accumulators: readonly GroupAccumulator[],
    sequences: readonly { seq: number; tokens: Int32Array }[],
    tokenStrings: readonly [number, string][],
    progress: CollationProgress,
  ): void {
    const db = this.db;
    const insertExample = db.prepare(
      "INSERT INTO examples (group_id, idx, role, seq, score, vals) VALUES (?, ?, ?, ?, ?, ?)",
    );
    const deleteExample = db.prepare(
      "DELETE FROM examples WHERE group_id = ? AND idx = ? AND role = ? AND seq = ?",
    );
    const updateGroup = db.prepare(
      "UPDATE groups SET count = ?, max = ?, positives = ?, sum_hi = ?, sum_lo = ?, sq_hi = ?, sq_lo = ? WHERE id = ?",
    );
    const insertSequence = db.prepare("INSERT OR REPLACE INTO sequences (seq, tokens) VALUES (?, ?)");
    const insertToken = db.prepare("INSERT OR IGNORE INTO token_strings (id, text) VALUES (?, ?)");
    db.transaction(() => {
      accumulators.forEach((acc, g) => {
        const id = this.groupIds[g];
        const changes = acc.takeChanges();
        for (const [role, { inserts, deletes }] of [
          [ROLE_TOP, changes.top],
          [ROLE_RANDOM, changes.random],
        ] as const) {
          for (const d of deletes) deleteExample.run(id, d.index, role, d.seq);
          for (const e of inserts) {
            insertExample.run(
              id,
              e.index,
              role,
              e.seq,
              role === ROLE_TOP ? -e.key : e.key,
              bytesOf(e.values),
            );
          }
        }
        updateGroup.run(acc.stats.count, ...statisticsBlobs(acc.stats), id);
      });
      for (const s of sequences) insertSequence.run(s.seq, bytesOf(s.tokens));
      for (const [id, text] of tokenStrings) insertToken.run(id, text);
      writeJsonMeta(db, "progress", progress);
    })();
  }

  /** Leaves a single self-contained file (no -wal beside it). */
  close(): void {
    try {
      this.db.pragma("journal_mode = DELETE");
    } finally {
      this.db.close();
    }
  }
}

function statisticsBlobs(s: GroupStatistics): [Buffer, Buffer, Buffer, Buffer, Buffer, Buffer] {
  return [
    bytesOf(s.max),
    bytesOf(s.positives),
    bytesOf(s.sumHi),
    bytesOf(s.sumLo),
    bytesOf(s.sqHi),
    bytesOf(s.sqLo),
  ];
}

export interface OpenOptions {
  /** Open without write access (explanations cannot be stored then). Default false. */
  readonly?: boolean;
  /** Name reported as `dataset` in records (default: the file's base name without extension). */
  name?: string;
}

export interface RecordOptions {
  /** Overrides the store's name in the response's `dataset` field. */
  dataset?: string;
}

/** One entry of TDB's /neuron_datasets_metadata. */
export interface NeuronDatasetMetadata {
  shortName: string;
  derivedScalarType: string;
  userVisibleName: string;
  neuronDatasetPath: string;
}

const KIND_LABEL: Readonly<Record<ComponentKind, string>> = {
  mlp_neuron: "MLP neurons",
  attention_head: "attention heads",
  mlp_autoencoder_latent: "MLP autoencoder latents",
  attention_autoencoder_latent: "attention autoencoder latents",
};

export interface DatasetStore {
  readonly file: string;
  readonly name: string;
  metadata(): DatasetMetadata;
  components(): ComponentGroupInfo[];
  /** TDB's /neuron_datasets_metadata entries: one per component kind present. */
  neuronDatasetsMetadata(): NeuronDatasetMetadata[];
  /**
   * The kind a request's `dst` or node type means here, or null: the generic autoencoder names
   * ("autoencoder_latent", "online_autoencoder_latent") resolve when the dataset has exactly one autoencoder kind.
   */
  resolveKind(dst: string): ComponentKind | null;
  statistics(kind: ComponentKind, layer: number, index: number): ComponentStatistics | null;
  /** TDB's NeuronRecord for a component (top and random sequences with token strings), or null. */
  record(kind: ComponentKind, layer: number, index: number): NeuronRecord | null;
  /** TDB's /neuron_record response for a per-token component, or null when absent. */
  neuronRecord(
    kind: ComponentKind,
    layer: number,
    index: number,
    options?: RecordOptions,
  ): NeuronRecordResponse | null;
  /** TDB's /attention_head_record response, or null when absent. */
  attentionHeadRecord(
    layer: number,
    head: number,
    options?: RecordOptions,
  ): AttentionHeadRecordResponse | null;
  explanations(kind: ComponentKind, layer: number, index: number): StoredExplanation[];
  putExplanation(kind: ComponentKind, layer: number, index: number, explanation: ExplanationInput): number;
  deleteExplanations(kind: ComponentKind, layer: number, index: number, method?: string): number;
  close(): void;
}

export function openDatasetStore(file: string, options: OpenOptions = {}): DatasetStore {
  const db = new Database(file, { fileMustExist: true, readonly: options.readonly ?? false });
  let checked: { run: CollationRun; progress: CollationProgress };
  try {
    checked = checkDataset(db, file);
  } catch (error) {
    db.close();
    throw error;
  }
  const { run } = checked;
  const name = options.name ?? basename(file, extname(file));
  const groupRows = new Map<string, { id: number; size: number }>();
  for (const row of db.prepare("SELECT id, kind, layer, size FROM groups").all() as GroupRow[]) {
    groupRows.set(`${row.kind}@${row.layer}`, { id: row.id, size: row.size });
  }
  const statsCache = new Map<number, GroupStatistics>();
  const tokenCache = new Map<number, string>();
  const sequenceCache = new Map<number, Int32Array>();
  const selectGroup = db.prepare("SELECT * FROM groups WHERE id = ?");
  const selectExamples = db.prepare(
    "SELECT role, seq, score, vals FROM examples WHERE group_id = ? AND idx = ? ORDER BY role, CASE role WHEN 0 THEN -score ELSE score END, seq",
  );
  const selectSequence = db.prepare("SELECT tokens FROM sequences WHERE seq = ?");
  const selectToken = db.prepare("SELECT text FROM token_strings WHERE id = ?");

  const group = (kind: ComponentKind, layer: number, index: number) => {
    const g = groupRows.get(`${kind}@${layer}`);
    if (!g || !Number.isInteger(index) || index < 0 || index >= g.size) return null;
    return g;
  };
  const groupStatistics = (id: number): GroupStatistics => {
    let s = statsCache.get(id);
    if (!s) {
      s = statisticsOfRow(selectGroup.get(id) as GroupRow);
      statsCache.set(id, s);
    }
    return s;
  };
  const tokensOf = (seq: number): Int32Array => {
    let t = sequenceCache.get(seq);
    if (!t) {
      const row = selectSequence.get(seq) as { tokens: Buffer } | undefined;
      if (!row) throw new Error(`${file}: sequence ${seq} is missing`);
      t = int32Of(row.tokens);
      if (sequenceCache.size > 4096) sequenceCache.clear();
      sequenceCache.set(seq, t);
    }
    return t;
  };
  const tokenString = (id: number): string => {
    let text = tokenCache.get(id);
    if (text === undefined) {
      const row = selectToken.get(id) as { text: string } | undefined;
      text = row ? row.text : `<${id}>`;
      tokenCache.set(id, text);
    }
    return text;
  };

  const store: DatasetStore = {
    file,
    name,
    metadata() {
      const progress = readJsonMeta<CollationProgress>(db, "progress")!;
      const dstNames: Partial<Record<ComponentKind, string>> = {};
      for (const g of run.groups) dstNames[g.kind] = KIND_DST[g.kind];
      return { ...run, schemaVersion: SCHEMA_VERSION, progress, dstNames };
    },
    components() {
      return run.groups.map((g) => ({
        ...g,
        dst: KIND_DST[g.kind],
        values: isTokenPairKind(g.kind) ? "token_pairs" : "tokens",
      }));
    },
    neuronDatasetsMetadata() {
      const kinds = [...new Set(run.groups.map((g) => g.kind))];
      return kinds.map((kind) => ({
        shortName: name,
        derivedScalarType: KIND_DST[kind],
        userVisibleName: `${name}: ${KIND_LABEL[kind]} (${run.model.name}, ${run.corpus.name})`,
        neuronDatasetPath: file,
      }));
    },
    resolveKind(dst) {
      const present = new Set(run.groups.map((g) => g.kind));
      if (dst === "autoencoder_latent" || dst === "online_autoencoder_latent") {
        const latentKinds = [...present].filter((k) => k.endsWith("_autoencoder_latent"));
        return latentKinds.length === 1 ? latentKinds[0] : null;
      }
      const kind = kindForDst(dst);
      return kind && present.has(kind) ? kind : null;
    },
    statistics(kind, layer, index) {
      const g = group(kind, layer, index);
      return g ? componentStatistics(groupStatistics(g.id), index) : null;
    },
    record(kind, layer, index) {
      const g = group(kind, layer, index);
      if (!g) return null;
      const top: ActivationRecord[] = [];
      const random: ActivationRecord[] = [];
      for (const row of selectExamples.iterate(g.id, index) as Iterable<{
        role: number;
        seq: number;
        score: number;
        vals: Buffer;
      }>) {
        const ids = [...tokensOf(row.seq)];
        const record: ActivationRecord = {
          tokens: ids.map(tokenString),
          activations: [...float32Of(row.vals)],
          sequenceIndex: row.seq,
          tokenIds: ids,
        };
        (row.role === ROLE_TOP ? top : random).push(record);
      }
      const stats = componentStatistics(groupStatistics(g.id), index);
      return {
        layerIndex: layer,
        neuronIndex: index,
        mostPositiveActivationRecords: top,
        randomSample: random,
        mean: stats.mean,
        variance: stats.variance,
      };
    },
    neuronRecord(kind, layer, index, opts = {}) {
      if (isTokenPairKind(kind))
        throw new Error(`${kind} records are token-pair records: use attentionHeadRecord`);
      const record = store.record(kind, layer, index);
      if (!record || record.mostPositiveActivationRecords.length === 0) return null;
      return toNeuronRecordResponse(record, opts.dataset ?? name);
    },
    attentionHeadRecord(layer, head, opts = {}) {
      const record = store.record("attention_head", layer, head);
      if (!record || record.mostPositiveActivationRecords.length === 0) return null;
      return toAttentionHeadRecordResponse(record, opts.dataset ?? name);
    },
    explanations(kind, layer, index) {
      const rows = db
        .prepare(
          "SELECT id, kind, layer, idx, explanation, score, method, details, created_at FROM explanations WHERE kind = ? AND layer = ? AND idx = ? ORDER BY id",
        )
        .all(kind, layer, index) as {
        id: number;
        kind: string;
        layer: number;
        idx: number;
        explanation: string;
        score: number | null;
        method: string;
        details: string | null;
        created_at: string;
      }[];
      return rows.map((r) => ({
        id: r.id,
        kind: isComponentKind(r.kind) ? r.kind : kind,
        layer: r.layer,
        index: r.idx,
        explanation: r.explanation,
        score: r.score,
        method: r.method,
        details: r.details === null ? null : JSON.parse(r.details),
        createdAt: r.created_at,
      }));
    },
    putExplanation(kind, layer, index, e) {
      if (!isComponentKind(kind)) throw new Error(`unknown component kind '${kind}'`);
      const info = db
        .prepare(
          "INSERT INTO explanations (kind, layer, idx, explanation, score, method, details, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .run(
          kind,
          layer,
          index,
          e.explanation,
          e.score ?? null,
          e.method,
          e.details === undefined ? null : JSON.stringify(e.details),
          new Date().toISOString(),
        );
      return Number(info.lastInsertRowid);
    },
    deleteExplanations(kind, layer, index, method) {
      const info =
        method === undefined
          ? db
              .prepare("DELETE FROM explanations WHERE kind = ? AND layer = ? AND idx = ?")
              .run(kind, layer, index)
          : db
              .prepare("DELETE FROM explanations WHERE kind = ? AND layer = ? AND idx = ? AND method = ?")
              .run(kind, layer, index, method);
      return info.changes;
    },
    close() {
      db.close();
    },
  };
  return store;
}

/** Statistics of every group, as stored (for merging and for exact comparisons). */
export function readGroupStatistics(db: Database.Database): Map<string, GroupStatistics> {
  const out = new Map<string, GroupStatistics>();
  for (const row of db.prepare("SELECT * FROM groups").all() as GroupRow[]) {
    out.set(`${row.kind}@${row.layer}`, statisticsOfRow(row));
  }
  return out;
}

export { checkDataset, maxActivation, readJsonMeta, writeJsonMeta };
