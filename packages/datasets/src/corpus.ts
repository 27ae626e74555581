/**
 * Corpora for collation: a named built-in corpus (`builtin:NAME`), a JSONL file (one JSON object with a string
 * `text` field per line), or any other file as plain text (one document). Documents are tokenised on their own
 * (special-token strings inside them count as ordinary text) and joined with `<|endoftext|>` between them when
 * the tokenizer has that token. The token stream is then cut into contiguous windows of `seqLen` tokens:
 * sequence i holds tokens [i·seqLen, (i+1)·seqLen); a shorter tail is dropped.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import type { Gpt2Tokenizer } from "@tdb/model";
import { BUILTIN_CORPORA } from "./builtin-corpora.js";

export interface Corpus {
  /** `builtin:NAME` or the file's base name. */
  name: string;
  documents: readonly string[];
}

export interface TokenizedCorpus {
  name: string;
  tokens: Int32Array;
  /** sha256 (hex) of the token stream as little-endian int32: identifies corpus and tokenizer together. */
  sha256: string;
  documents: number;
}

export function readCorpus(spec: string): Corpus {
  if (spec.startsWith("builtin:")) {
    const name = spec.slice("builtin:".length);
    const load = BUILTIN_CORPORA.get(name);
    if (!load) {
      throw new Error(
        `unknown built-in corpus '${name}' (available: ${[...BUILTIN_CORPORA.keys()].join(", ")})`,
      );
    }
    return { name: spec, documents: load() };
  }
  let text: string;
  try {
    text = readFileSync(spec, "utf8");
  } catch (error) {
    const code = (error as { code?: string }).code;
    throw new Error(
      code === "ENOENT"
        ? `corpus file ${spec} does not exist (a built-in corpus is named builtin:NAME, e.g. builtin:tiny)`
        : `cannot read corpus ${spec}: ${(error as Error).message}`,
    );
  }
  const name = basename(spec);
  if (/\.(jsonl|ndjson)$/i.test(spec)) return { name, documents: parseJsonl(text, spec) };
  return { name, documents: [text] };
}

function parseJsonl(text: string, source: string): string[] {
  const documents: string[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (error) {
      throw new Error(`${source}:${i + 1}: not JSON (${(error as Error).message})`);
    }
    const field =
      typeof value === "object" && value !== null ? (value as Record<string, unknown>).text : undefined;
    if (typeof field !== "string")
      throw new Error(`${source}:${i + 1}: expected an object with a string "text" field`);
    documents.push(field);
  }
  return documents;
}

export function tokenizeCorpus(corpus: Corpus, tokenizer: Gpt2Tokenizer): TokenizedCorpus {
  const ids: number[] = [];
  const separator = tokenizer.endOfTextId;
  corpus.documents.forEach((doc, i) => {
    if (i > 0 && separator !== null) ids.push(separator);
    for (const id of tokenizer.encode(doc, { allowedSpecial: [] })) ids.push(id);
  });
  const tokens = Int32Array.from(ids);
  return {
    name: corpus.name,
    tokens,
    sha256: sha256Hex(int32Bytes(tokens)),
    documents: corpus.documents.length,
  };
}

export function sequenceCount(tokens: number, seqLen: number): number {
  return Math.floor(tokens / seqLen);
}

/** The tokens of window `seq`. */
export function sequenceTokens(corpus: TokenizedCorpus, seqLen: number, seq: number): Int32Array {
  return corpus.tokens.subarray(seq * seqLen, (seq + 1) * seqLen);
}

export function int32Bytes(values: Int32Array): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) view.setInt32(i * 4, values[i], true);
  return out;
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}
