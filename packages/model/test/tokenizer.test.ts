import { existsSync, readdirSync, readFileSync } from "node:fs";
import { getEncoding } from "js-tiktoken";
import { beforeAll, describe, expect, it } from "vitest";
import { Gpt2Tokenizer } from "../src/tokenizer.js";

const fixtureDir = new URL("../../../../shared/fixtures/tiny-gpt2/", import.meta.url);
const tdbCasesDir = new URL("../../../../shared/fixtures/tdb-cases/", import.meta.url);
const goldenDir = new URL("./golden/", import.meta.url);
const vocabJson = readFileSync(new URL("vocab.json", fixtureDir), "utf8");
const mergesTxt = readFileSync(new URL("merges.txt", fixtureDir), "utf8");

const tiktoken = getEncoding("gpt2");
const END_OF_TEXT = "<|endoftext|>";

const MIXED_TEXT = [
  "Hello world! The quick brown fox jumps over the lazy dog.",
  "Café naïve façade résumé Ærøskøbing straße — 日本語のテキストと中文字符，한국어 텍스트。",
  "Emoji: 🙂 👍🏽 👩‍👩‍👧‍👦 🏳️‍🌈 ❤️ 1️⃣ 🇫🇷🇯🇵 🧑🏿‍🚀",
  "Whitespace:  two  spaces,\ttab,\t\ttwo tabs,\nnewline\n\nblank line\r\nCRLF   \n  trailing   ",
  "Numbers: 0 7 42 3.14159 1,000,000 2024-01-31 ٣٤٥ ½ ²³ 𝟙𝟚 x86_64",
  "Contractions: it's don't we're they've I'm you'll she'd IT'S DON'T WE'RE 'twas O'Neil's",
  "Punctuation: ...!!! ??? — – -- (parens) [brackets] {braces} <angles> \"quotes\" 'single' `tick` @#$%^&*~|\\/",
  "Code:\nfunction f(x) {\n    return x ** 2; // square\n}\n\tif (a && b) { c[i] += 1; }\n",
  `Special ${END_OF_TEXT} inside text${END_OF_TEXT}${END_OF_TEXT} and partial <|endof and <|endoftext| too.`,
  "Scripts: Ελληνικά русский текст नमस्ते दुनिया مرحبا بالعالم עברית ไทย e\u0301 n\u0303",
  "Control \u0000\u0001\u0007\u007f and separators \u00a0nbsp\u3000ideographic\u2028line\u2009thin\u001cfs.",
].join("\n");

/** Deterministic PRNG (mulberry32), so failures reproduce. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const EMOJI = ["🙂", "👍🏽", "👩‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "1️⃣", "🇫🇷", "🧑🏿‍🚀", "👨‍💻", "🐍", "✨"];
const ACCENTED = "éèêëàâäôöûüçñåøæœßÉÀÇÑØÅìíîïòóúùýÿ";
const PUNCTUATION = ",.;:!?-()[]{}<>\"'`~@#$%^&*_+=|\\/…—–«»¡¿€£¥§©®°±×÷";
const CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'LL", "'Re", " 's", "''"];
const OTHER_SCRIPTS = [
  "Ελληνικά",
  "русский",
  "नमस्ते",
  "مرحبا",
  "עברית",
  "ไทย",
  "e\u0301",
  "n\u0303",
  "𝐀𝐁",
  "𐍈",
  "𝟙𝟚",
];
// Whitespace on which JavaScript's \s and Unicode White_Space agree (U+0085 and U+FEFF are tested separately).
const WHITESPACE = [
  " ",
  "  ",
  "   ",
  "\t",
  "\n",
  "\r\n",
  "\n\n",
  "\v",
  "\f",
  "\u00a0",
  "\u3000",
  "\u2028",
  "\u2009",
];
const CONTROLS = ["\u0000", "\u0001", "\u0007", "\u001b", "\u001c", "\u001f", "\u007f", "\u200b"];

function randomText(random: () => number): string {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
  const int = (lo: number, hi: number): number => lo + Math.floor(random() * (hi - lo + 1));
  const chars = (count: number, make: () => string): string => Array.from({ length: count }, make).join("");
  const letter = (): string => String.fromCharCode(97 + int(0, 25));
  const generators: (() => string)[] = [
    () => chars(int(1, 9), letter),
    () => letter().toUpperCase() + chars(int(0, 7), letter),
    () => chars(int(1, 6), letter).toUpperCase(),
    () => chars(int(1, 6), () => String(int(0, 9))),
    () => pick(WHITESPACE),
    () => pick(WHITESPACE) + pick(WHITESPACE),
    () => pick(CONTRACTIONS),
    () => chars(int(1, 3), () => pick([...PUNCTUATION])),
    () => chars(int(1, 4), () => pick([...ACCENTED])),
    () => chars(int(1, 6), () => String.fromCharCode(int(0x4e00, 0x9fff))),
    () => chars(int(1, 6), () => String.fromCharCode(int(0x3041, 0x3096))),
    () => chars(int(1, 4), () => String.fromCharCode(int(0xac00, 0xd7a3))),
    () => pick(EMOJI),
    () => pick(OTHER_SCRIPTS),
    () => pick(CONTROLS),
    () => (random() < 0.7 ? END_OF_TEXT : "<|endof"),
    // Long words take the heap merge path.
    () => letter().repeat(int(40, 120)),
    () => chars(int(50, 100), letter),
    () => pick([..."=-*#~_."]).repeat(int(40, 100)),
    () => chars(int(20, 40), () => String.fromCharCode(int(0x4e00, 0x9fff))),
    () => chars(int(30, 80), () => String(int(0, 9))),
  ];
  // Mostly ordinary pieces; the heavier generators are rarer.
  const weights = [8, 3, 2, 3, 8, 2, 3, 4, 2, 2, 1, 1, 2, 2, 1, 0.5, 0.3, 0.3, 0.3, 0.3, 0.3];
  const total = weights.reduce((a, b) => a + b, 0);
  let text = "";
  for (let n = int(1, 40); n > 0; n--) {
    let r = random() * total;
    let index = 0;
    while (r >= weights[index]) r -= weights[index++];
    text += generators[index]();
  }
  return text;
}

function firstMismatches(
  texts: readonly string[],
  actual: (text: string) => number[],
  expected: (text: string) => number[],
): { text: string; actual: number[]; expected: number[] }[] {
  const mismatches = [];
  for (const text of texts) {
    const a = actual(text);
    const e = expected(text);
    if (a.length !== e.length || a.some((id, i) => id !== e[i]))
      mismatches.push({ text, actual: a, expected: e });
    if (mismatches.length >= 5) break;
  }
  return mismatches;
}

let tokenizer: Gpt2Tokenizer;
beforeAll(() => {
  tokenizer = Gpt2Tokenizer.fromVocabAndMerges(vocabJson, mergesTxt);
});

describe("Gpt2Tokenizer vs js-tiktoken gpt2", () => {
  it("loads GPT-2's vocabulary", () => {
    expect(tokenizer.vocabSize).toBe(50257); // config.json vocab_size
    expect(tokenizer.endOfTextId).toBe(tiktoken.encode(END_OF_TEXT, [END_OF_TEXT])[0]);
    expect(tokenizer.idToToken(tiktoken.encode(" the")[0])).toBe("Ġthe");
    expect(tokenizer.tokenToId("Ġthe")).toBe(tiktoken.encode(" the")[0]);
    expect(tokenizer.idToToken(-1)).toBeUndefined();
    expect(tokenizer.idToToken(50257)).toBeUndefined();
  });

  it("encodes the mixed test text identically and round-trips it", () => {
    const ids = tokenizer.encode(MIXED_TEXT);
    expect(ids).toEqual(tiktoken.encode(MIXED_TEXT, [END_OF_TEXT]));
    expect(ids.filter((id) => id === tokenizer.endOfTextId)).toHaveLength(3);
    expect(tokenizer.decode(ids)).toBe(MIXED_TEXT);
  });

  it("encodes <|endoftext|> as text when it is not allowed", () => {
    const ids = tokenizer.encode(MIXED_TEXT, { allowedSpecial: [] });
    expect(ids).toEqual(tiktoken.encode(MIXED_TEXT, [], []));
    expect(ids).not.toContain(tokenizer.endOfTextId);
    expect(tokenizer.decode(ids)).toBe(MIXED_TEXT);
  });

  it("matches on 3000 seeded random strings and round-trips them", () => {
    const random = seededRandom(20240531);
    const texts = Array.from({ length: 3000 }, () => randomText(random));
    expect(
      firstMismatches(
        texts,
        (t) => tokenizer.encode(t),
        (t) => tiktoken.encode(t, [END_OF_TEXT]),
      ),
    ).toEqual([]);
    expect(texts.filter((t) => tokenizer.decode(tokenizer.encode(t)) !== t)).toEqual([]);
    // A fresh tokenizer (empty word cache) agrees with the warmed one.
    const fresh = Gpt2Tokenizer.fromVocabAndMerges(vocabJson, mergesTxt);
    expect(
      firstMismatches(
        texts.slice(0, 300),
        (t) => fresh.encode(t),
        (t) => tokenizer.encode(t),
      ),
    ).toEqual([]);
  });

  it("decodes single tokens like tiktoken, with U+FFFD for partial UTF-8", () => {
    const ids = tokenizer.encode("日本 🙂 café");
    const strings = tokenizer.tokenStrings(ids);
    expect(strings.join("")).not.toBe("日本 🙂 café"); // some tokens hold partial characters
    expect(strings).toEqual(ids.map((id) => tiktoken.decode([id])));
    expect(strings.some((s) => s.includes("\uFFFD"))).toBe(true);
  });
});

describe("Gpt2Tokenizer vs recorded TDB cases", () => {
  const cases = readdirSync(tdbCasesDir)
    .filter((name) => name.startsWith("tdb_"))
    .map((name) => JSON.parse(readFileSync(new URL(name, tdbCasesDir), "utf8")) as TdbCase);

  it("gives TDB's tokensAsInts / tokensAsStrings for each prompt", () => {
    let checked = 0;
    for (const tdbCase of cases) {
      const prompts = tdbCase.request?.subRequests?.map((r) => r.prompt) ?? [];
      tdbCase.response?.inferenceSubResponses?.forEach((sub, i) => {
        const data = sub.inferenceResponse.inferenceAndTokenData;
        expect(tokenizer.encode(prompts[i])).toEqual(data.tokensAsInts);
        expect(tokenizer.tokenStrings(data.tokensAsInts)).toEqual(data.tokensAsStrings);
        checked++;
      });
    }
    expect(checked).toBeGreaterThanOrEqual(10);
  });

  it("gives TDB's vocabTokenStringsForIndices", () => {
    let checked = 0;
    const visit = (value: unknown): void => {
      if (Array.isArray(value)) {
        value.forEach(visit);
      } else if (typeof value === "object" && value !== null) {
        const record = value as { vocabTokenStringsForIndices?: string[]; nodeIndices?: NodeIndex[] };
        const strings = record.vocabTokenStringsForIndices;
        if (strings && strings.length > 0 && record.nodeIndices) {
          record.nodeIndices.forEach((node, i) => {
            if (node.nodeType !== "vocab_token") return;
            expect(tokenizer.tokenString(node.tensorIndices[1])).toBe(strings[i]);
            checked++;
          });
        }
        Object.values(value).forEach(visit);
      }
    };
    visit(cases);
    expect(checked).toBeGreaterThan(1000);
  });
});

interface NodeIndex {
  nodeType: string;
  tensorIndices: number[];
}

interface TdbCase {
  request?: { subRequests?: { prompt: string }[] };
  response?: {
    inferenceSubResponses?: {
      inferenceResponse: { inferenceAndTokenData: { tokensAsInts: number[]; tokensAsStrings: string[] } };
    }[];
  };
}

const hfGoldenPath = new URL("tokenizer-hf.json", goldenDir);
const hfSkeletonPath = new URL("tokenizer-hf-skeleton.json", goldenDir);

describe("Gpt2Tokenizer vs Hugging Face transformers (golden ids)", () => {
  const golden = existsSync(hfGoldenPath)
    ? (JSON.parse(readFileSync(hfGoldenPath, "utf8")) as { text: string; ids: number[] }[])
    : [];

  it("has the golden file (tools/golden/tokenizer_golden.py)", () => {
    expect(golden.length).toBeGreaterThanOrEqual(15);
  });

  it("encodes every golden text to Hugging Face's ids and decodes it back", () => {
    for (const { text, ids } of golden) {
      expect(tokenizer.encode(text), JSON.stringify(text)).toEqual(ids);
      expect(tokenizer.decode(ids)).toBe(text);
    }
  });

  it("treats U+0085 as whitespace and U+FEFF as not, like Hugging Face and unlike JavaScript's \\s", () => {
    // js-tiktoken runs the pattern with JavaScript's \s; these are the only texts where it departs from HF.
    const departures = golden.filter(({ text, ids }) => {
      const js = tiktoken.encode(text, [END_OF_TEXT]);
      return js.length !== ids.length || js.some((id, i) => id !== ids[i]);
    });
    expect(departures.length).toBeGreaterThanOrEqual(2);
    for (const { text, ids } of departures) {
      expect(/[\u0085\ufeff]/.test(text)).toBe(true);
      expect(tokenizer.encode(text)).toEqual(ids);
    }
  });

  it("loads Hugging Face's own tokenizer.json layout with the fixture's vocab and merges", () => {
    const skeleton = JSON.parse(readFileSync(hfSkeletonPath, "utf8")) as {
      model: { vocab: unknown; merges: unknown[] };
    };
    const pairsFormat = Array.isArray(skeleton.model.merges[0]);
    skeleton.model.vocab = JSON.parse(vocabJson);
    skeleton.model.merges = mergeLines().map((line) => (pairsFormat ? line.split(" ") : line));
    const fromJson = Gpt2Tokenizer.fromTokenizerJson(JSON.stringify(skeleton));
    for (const { text, ids } of golden) expect(fromJson.encode(text)).toEqual(ids);
  });
});

function mergeLines(): string[] {
  return mergesTxt.split("\n").filter((line) => line !== "" && !line.startsWith("#version"));
}

function buildTokenizerJson(mergesFormat: "strings" | "pairs"): string {
  const merges = mergeLines().map((line) => (mergesFormat === "pairs" ? line.split(" ") : line));
  return JSON.stringify({
    version: "1.0",
    added_tokens: [
      {
        id: 50256,
        content: END_OF_TEXT,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: true,
        special: true,
      },
    ],
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: "",
      end_of_word_suffix: "",
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: JSON.parse(vocabJson),
      merges,
    },
  });
}

describe("Gpt2Tokenizer.fromTokenizerJson", () => {
  const random = seededRandom(7);
  const samples = Array.from({ length: 200 }, () => randomText(random));

  for (const format of ["strings", "pairs"] as const) {
    it(`loads merges as ${format} and matches js-tiktoken`, () => {
      const fromJson = Gpt2Tokenizer.fromTokenizerJson(buildTokenizerJson(format));
      expect(fromJson.vocabSize).toBe(50257);
      expect(fromJson.endOfTextId).toBe(50256);
      expect(fromJson.encode(MIXED_TEXT)).toEqual(tiktoken.encode(MIXED_TEXT, [END_OF_TEXT]));
      expect(
        firstMismatches(
          samples,
          (t) => fromJson.encode(t),
          (t) => tiktoken.encode(t, [END_OF_TEXT]),
        ),
      ).toEqual([]);
      expect(fromJson.tokenString(50256)).toBe(END_OF_TEXT);
    });
  }

  it("recognises added special tokens beyond the vocabulary when allowed", () => {
    const json = JSON.parse(buildTokenizerJson("strings")) as { added_tokens: unknown[] };
    json.added_tokens.push({ id: 50257, content: "<|pad|>", special: true });
    const withPad = Gpt2Tokenizer.fromTokenizerJson(JSON.stringify(json));
    expect(withPad.vocabSize).toBe(50258);
    const text = `a<|pad|>b${END_OF_TEXT}`;
    expect(withPad.encode(text, { allowedSpecial: ["<|pad|>", END_OF_TEXT] })).toEqual([
      ...tiktoken.encode("a"),
      50257,
      ...tiktoken.encode("b"),
      50256,
    ]);
    // Not allowed: encoded as ordinary text.
    expect(withPad.encode(text)).toEqual(tiktoken.encode(text, [END_OF_TEXT]));
    expect(withPad.decode([50257])).toBe("<|pad|>");
    expect(withPad.idToToken(50257)).toBe("<|pad|>");
    expect(withPad.tokenToId("<|pad|>")).toBe(50257);
  });
});

interface TokenizerJsonShape {
  added_tokens: unknown[];
  normalizer: unknown;
  pre_tokenizer: Record<string, unknown>;
  model: Record<string, unknown>;
}

describe("Gpt2Tokenizer errors", () => {
  it("rejects malformed vocab.json", () => {
    expect(() => Gpt2Tokenizer.fromVocabAndMerges("{not json", mergesTxt)).toThrow(
      /vocab\.json: not valid JSON/,
    );
    expect(() => Gpt2Tokenizer.fromVocabAndMerges("[1,2]", mergesTxt)).toThrow(
      /vocab\.json: expected an object/,
    );
    expect(() => Gpt2Tokenizer.fromVocabAndMerges('{"a": "0"}', "")).toThrow(
      /id of token "a".*non-negative integer/,
    );
    expect(() => Gpt2Tokenizer.fromVocabAndMerges('{"a": -1}', "")).toThrow(/non-negative integer/);
    expect(() => Gpt2Tokenizer.fromVocabAndMerges('{"a": 0, "b": 0}', "")).toThrow(/id 0 is used by both/);
    expect(() => Gpt2Tokenizer.fromVocabAndMerges("{}", "")).toThrow(/vocabulary is empty/);
  });

  it("rejects malformed merges.txt", () => {
    expect(() => Gpt2Tokenizer.fromVocabAndMerges(vocabJson, "#version: 0.2\nĠ t\nabc\n")).toThrow(
      /merges\.txt line 3: expected two tokens/,
    );
    expect(() => Gpt2Tokenizer.fromVocabAndMerges(vocabJson, "Ġ t\nzzzz qqqq\n")).toThrow(
      /merge 2 uses "zzzz", which is not in the vocabulary/,
    );
    expect(() => Gpt2Tokenizer.fromVocabAndMerges('{"a": 0, "b": 1}', "a b\n")).toThrow(
      /"ab", which is not in/,
    );
  });

  it("rejects malformed tokenizer.json", () => {
    const base: TokenizerJsonShape = {
      added_tokens: [],
      normalizer: null,
      pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
      model: { type: "BPE", vocab: { a: 0, b: 1, ab: 2 }, merges: ["a b"] },
    };
    expect(Gpt2Tokenizer.fromTokenizerJson(JSON.stringify(base)).encode("abba")).toEqual([2, 1, 0]);
    const variant = (edit: (json: TokenizerJsonShape) => void): string => {
      const copy = structuredClone(base);
      edit(copy);
      return JSON.stringify(copy);
    };
    expect(() => Gpt2Tokenizer.fromTokenizerJson("nope")).toThrow(/tokenizer\.json: not valid JSON/);
    expect(() => Gpt2Tokenizer.fromTokenizerJson("{}")).toThrow(/"model" must be an object/);
    expect(() => Gpt2Tokenizer.fromTokenizerJson(variant((j) => (j.model.type = "WordPiece")))).toThrow(
      /model\.type is "WordPiece"/,
    );
    expect(() => Gpt2Tokenizer.fromTokenizerJson(variant((j) => (j.model.merges = "a b")))).toThrow(
      /model\.merges must be an array/,
    );
    expect(() =>
      Gpt2Tokenizer.fromTokenizerJson(variant((j) => (j.model.merges = [["a", "b", "c"]]))),
    ).toThrow(/model\.merges\[0\]: expected "a b" or \["a", "b"\]/);
    expect(() => Gpt2Tokenizer.fromTokenizerJson(variant((j) => (j.model.vocab = [])))).toThrow(
      /model\.vocab: expected an object/,
    );
    expect(() =>
      Gpt2Tokenizer.fromTokenizerJson(variant((j) => (j.pre_tokenizer = { type: "Whitespace" }))),
    ).toThrow(/ByteLevel/);
    expect(() =>
      Gpt2Tokenizer.fromTokenizerJson(variant((j) => (j.pre_tokenizer.add_prefix_space = true))),
    ).toThrow(/add_prefix_space/);
    expect(() => Gpt2Tokenizer.fromTokenizerJson(variant((j) => (j.normalizer = { type: "NFC" })))).toThrow(
      /normalizer/,
    );
  });

  it("rejects bad ids and unknown special tokens", () => {
    expect(() => tokenizer.decode([15496, 50257])).toThrow(/token id 50257 is out of range/);
    expect(() => tokenizer.decode([-1])).toThrow(/token id -1 is out of range/);
    expect(() => tokenizer.decode([1.5])).toThrow(/token id 1\.5 is out of range/);
    expect(() => tokenizer.tokenString(99999)).toThrow(/token id 99999/);
    expect(() => tokenizer.encode("x", { allowedSpecial: ["<|pad|>"] })).toThrow(
      /"<\|pad\|>" is not a token/,
    );
  });
});
