/** Corpus reading and windowing; token ids checked against js-tiktoken's GPT-2 encoding. */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadTokenizer } from "@tdb/model/node";
import { getEncoding } from "js-tiktoken";
import { describe, expect, it } from "vitest";
import { readCorpus, registerBuiltinCorpus, sequenceCount, tokenizeCorpus } from "../src/index.js";
import { TINY_DIR, tempDir } from "./helpers.js";

const tokenizer = loadTokenizer(TINY_DIR);
const tiktoken = getEncoding("gpt2");
const EOT = 50256;

describe("corpora", () => {
  const dir = tempDir("corpus");

  it("JSONL: one document per line, joined with <|endoftext|>; special-token text stays text", () => {
    const file = join(dir, "docs.jsonl");
    writeFileSync(
      file,
      `${JSON.stringify({ text: "Hello world", id: 1 })}\n\n${JSON.stringify({ text: "a <|endoftext|> b" })}\n`,
    );
    const corpus = readCorpus(file);
    expect(corpus).toEqual({ name: "docs.jsonl", documents: ["Hello world", "a <|endoftext|> b"] });
    const tokens = tokenizeCorpus(corpus, tokenizer);
    const expected = [
      ...tiktoken.encode("Hello world"),
      EOT,
      ...tiktoken.encode("a <|endoftext|> b", [], []),
    ];
    expect([...tokens.tokens]).toEqual(expected);
    expect(tokens.documents).toBe(2);
    expect(tokens.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it("JSONL errors name the line", () => {
    const file = join(dir, "bad.jsonl");
    writeFileSync(file, `${JSON.stringify({ text: "ok" })}\n{"body": "no text"}\n`);
    expect(() => readCorpus(file)).toThrow(/bad\.jsonl:2: expected an object with a string "text" field/);
    writeFileSync(file, "{not json\n");
    expect(() => readCorpus(file)).toThrow(/bad\.jsonl:1: not JSON/);
  });

  it("plain text is one document; missing files and unknown built-ins are clear errors", () => {
    const file = join(dir, "story.txt");
    writeFileSync(file, "Once upon a time.\n\nThe end.");
    expect(readCorpus(file).documents).toEqual(["Once upon a time.\n\nThe end."]);
    expect(() => readCorpus(join(dir, "nope.txt"))).toThrow(/does not exist/);
    expect(() => readCorpus("builtin:nope")).toThrow(/unknown built-in corpus 'nope' \(available: tiny/);
  });

  it("built-in corpora can be registered; windows are contiguous and the tail is dropped", () => {
    registerBuiltinCorpus("test-two", () => ["one two three", "four"]);
    const corpus = tokenizeCorpus(readCorpus("builtin:test-two"), tokenizer);
    expect(corpus.name).toBe("builtin:test-two");
    expect([...corpus.tokens]).toEqual([
      ...tiktoken.encode("one two three"),
      EOT,
      ...tiktoken.encode("four"),
    ]);
    expect(corpus.tokens.length).toBe(5);
    expect(sequenceCount(corpus.tokens.length, 2)).toBe(2);
    expect(sequenceCount(corpus.tokens.length, 5)).toBe(1);
    expect(sequenceCount(corpus.tokens.length, 6)).toBe(0);
    const tiny = tokenizeCorpus(readCorpus("builtin:tiny"), tokenizer);
    expect(tiny.tokens.length).toBeGreaterThan(1200);
  });
});
