// GPT-2 byte-level BPE, bit-exact with Hugging Face `tokenizers` and OpenAI's tiktoken "gpt2" encoding.
// Portable: uses only ECMAScript and the Web's TextDecoder.

/**
 * Unicode White_Space, which is what `\s` means in the Rust/Python regex engines behind tiktoken and
 * Hugging Face. JavaScript's `\s` differs (it adds U+FEFF and lacks U+0085), so it is spelled out.
 */
const WS = String.raw`\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000`;

/** GPT-2's pre-tokenisation pattern with `\s` / `\S` replaced by the explicit White_Space class. */
const PRETOKENIZE_SOURCE = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^${WS}\p{L}\p{N}]+|[${WS}]+(?![^${WS}])|[${WS}]+`;

const END_OF_TEXT = "<|endoftext|>";

/** Words longer than this (in bytes) are merged with a heap instead of repeated scans. */
const HEAP_THRESHOLD = 48;

/** The word cache is cleared when it reaches this size, so corpus-scale encoding stays bounded. */
const MAX_CACHE_ENTRIES = 1 << 18;

const utf8Decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
const utf8Encoder = new TextEncoder();

/** GPT-2's reversible byte → printable character mapping (bytes_to_unicode). */
function buildByteToChar(): string[] {
  const byteToChar: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    byteToChar[b] = String.fromCharCode(printable ? b : 256 + extra++);
  }
  return byteToChar;
}

const BYTE_TO_CHAR = buildByteToChar();
const CHAR_TO_BYTE = new Map<string, number>(BYTE_TO_CHAR.map((ch, b) => [ch, b]));

function utf8Bytes(text: string): Uint8Array {
  return utf8Encoder.encode(text);
}

/** Bytes of a byte-level vocabulary entry; like Hugging Face, an entry outside the alphabet is taken as UTF-8. */
function byteLevelToBytes(token: string): Uint8Array {
  const bytes = new Uint8Array(token.length);
  for (let i = 0; i < token.length; i++) {
    const b = CHAR_TO_BYTE.get(token[i]);
    if (b === undefined) return utf8Bytes(token);
    bytes[i] = b;
  }
  return bytes;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "string" ? JSON.stringify(value) : typeof value;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${what}: not valid JSON (${(error as Error).message})`);
  }
}

function parseVocab(value: unknown, what: string): Map<string, number> {
  if (!isRecord(value)) {
    throw new Error(`${what}: expected an object mapping token strings to ids, got ${describe(value)}`);
  }
  const vocab = new Map<string, number>();
  const tokenById = new Map<number, string>();
  for (const [token, id] of Object.entries(value)) {
    if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0) {
      throw new Error(
        `${what}: id of token ${JSON.stringify(token)} is ${describe(id)}, not a non-negative integer`,
      );
    }
    const previous = tokenById.get(id);
    if (previous !== undefined) {
      throw new Error(
        `${what}: id ${id} is used by both ${JSON.stringify(previous)} and ${JSON.stringify(token)}`,
      );
    }
    tokenById.set(id, token);
    vocab.set(token, id);
  }
  if (vocab.size === 0) throw new Error(`${what}: the vocabulary is empty`);
  return vocab;
}

type MergePair = readonly [string, string];

function splitMergeLine(line: string, where: string): MergePair {
  const parts = line.split(" ");
  if (parts.length !== 2 || parts[0] === "" || parts[1] === "") {
    throw new Error(`${where}: expected two tokens separated by one space, got ${JSON.stringify(line)}`);
  }
  return [parts[0], parts[1]];
}

function parseMergesTxt(mergesTxt: string): MergePair[] {
  const lines = mergesTxt.split("\n");
  const merges: MergePair[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].endsWith("\r") ? lines[i].slice(0, -1) : lines[i];
    if (line === "" || (i === 0 && line.startsWith("#version"))) continue;
    merges.push(splitMergeLine(line, `merges.txt line ${i + 1}`));
  }
  return merges;
}

function parseJsonMerges(value: unknown): MergePair[] {
  if (!Array.isArray(value))
    throw new Error(`tokenizer.json: model.merges must be an array, got ${describe(value)}`);
  return value.map((entry: unknown, i): MergePair => {
    const where = `tokenizer.json: model.merges[${i}]`;
    if (typeof entry === "string") return splitMergeLine(entry, where);
    if (
      Array.isArray(entry) &&
      entry.length === 2 &&
      typeof entry[0] === "string" &&
      typeof entry[1] === "string"
    ) {
      return [entry[0], entry[1]];
    }
    throw new Error(`${where}: expected "a b" or ["a", "b"], got ${JSON.stringify(entry)}`);
  });
}

function checkByteLevelPreTokenizer(preTokenizer: unknown): void {
  const steps =
    isRecord(preTokenizer) && preTokenizer.type === "Sequence" ? preTokenizer.pretokenizers : [preTokenizer];
  if (!Array.isArray(steps) || steps.length !== 1 || !isRecord(steps[0]) || steps[0].type !== "ByteLevel") {
    throw new Error(
      "tokenizer.json: pre_tokenizer must be a single ByteLevel step (a byte-level BPE like GPT-2)",
    );
  }
  const byteLevel = steps[0];
  if (byteLevel.add_prefix_space === true) {
    throw new Error("tokenizer.json: ByteLevel add_prefix_space=true is not supported (GPT-2 uses false)");
  }
  if (byteLevel.use_regex === false) {
    throw new Error("tokenizer.json: ByteLevel use_regex=false is not supported (GPT-2 uses the regex)");
  }
}

interface SpecialToken {
  readonly content: string;
  readonly id: number;
}

function escapeRegExp(text: string): string {
  return text.replace(/[\\^$.*+?()[\]{}|]/g, "\\$&");
}

export interface EncodeOptions {
  /** Special-token strings recognised in the text; every other occurrence is encoded as ordinary text. */
  allowedSpecial?: readonly string[];
}

export class Gpt2Tokenizer {
  readonly vocabSize: number;
  readonly endOfTextId: number | null;

  private readonly tokenIds: Map<string, number>;
  /** Raw vocabulary entry per id (byte-level string, or an added token's content). */
  private readonly tokens: (string | undefined)[];
  /** Ids whose bytes are their UTF-8 content rather than a byte-level string (added tokens). */
  private readonly addedTokenIds: Set<number>;
  private readonly specialTokens: Map<string, number>;
  /** Id of the single-byte token for each byte value, or -1. */
  private readonly byteTokenIds: Int32Array;
  /** Merge rank of the pair (left, right), keyed by left * vocabSize + right. */
  private readonly mergeRanks: Map<number, number>;
  /** Token produced by the merge of each rank. */
  private readonly mergedIdByRank: Int32Array;
  /** `ignore_merges`: a word that is itself a vocabulary entry becomes that token directly. */
  private readonly wholeWordLookup: boolean;
  private readonly pretokenize = new RegExp(PRETOKENIZE_SOURCE, "gu");
  private readonly wordCache = new Map<string, readonly number[]>();
  private readonly tokenBytesCache: (Uint8Array | undefined)[] = [];
  private readonly tokenStringCache: (string | undefined)[] = [];
  private readonly specialRegexCache = new Map<string, RegExp>();
  private readonly defaultAllowedSpecial: readonly string[];

  private constructor(
    vocab: Map<string, number>,
    merges: readonly MergePair[],
    addedTokens: readonly SpecialToken[],
    wholeWordLookup: boolean,
    source: string,
  ) {
    this.tokenIds = vocab;
    this.wholeWordLookup = wholeWordLookup;
    this.specialTokens = new Map();
    this.addedTokenIds = new Set();
    let maxId = -1;
    for (const id of vocab.values()) maxId = Math.max(maxId, id);
    for (const added of addedTokens) {
      const existing = vocab.get(added.content);
      if (existing !== undefined && existing !== added.id) {
        throw new Error(
          `${source}: added token ${JSON.stringify(added.content)} has id ${added.id} but the vocabulary gives ${existing}`,
        );
      }
      maxId = Math.max(maxId, added.id);
    }
    this.vocabSize = maxId + 1;
    this.tokens = new Array(this.vocabSize);
    for (const [token, id] of vocab) this.tokens[id] = token;
    for (const added of addedTokens) {
      const occupant = this.tokens[added.id];
      if (occupant !== undefined && occupant !== added.content) {
        throw new Error(
          `${source}: added token ${JSON.stringify(added.content)} reuses id ${added.id} of ${JSON.stringify(occupant)}`,
        );
      }
      this.tokens[added.id] = added.content;
      this.addedTokenIds.add(added.id);
      this.specialTokens.set(added.content, added.id);
    }
    const endOfText = this.specialTokens.get(END_OF_TEXT) ?? vocab.get(END_OF_TEXT);
    if (endOfText !== undefined) this.specialTokens.set(END_OF_TEXT, endOfText);
    this.endOfTextId = endOfText ?? null;
    this.defaultAllowedSpecial = endOfText === undefined ? [] : [END_OF_TEXT];

    this.byteTokenIds = new Int32Array(256).fill(-1);
    for (let b = 0; b < 256; b++) this.byteTokenIds[b] = vocab.get(BYTE_TO_CHAR[b]) ?? -1;

    this.mergeRanks = new Map();
    this.mergedIdByRank = new Int32Array(merges.length);
    const idOf = (token: string, rank: number): number => {
      const id = vocab.get(token);
      if (id === undefined) {
        throw new Error(
          `${source}: merge ${rank + 1} uses ${JSON.stringify(token)}, which is not in the vocabulary`,
        );
      }
      return id;
    };
    for (let rank = 0; rank < merges.length; rank++) {
      const [left, right] = merges[rank];
      const key = idOf(left, rank) * this.vocabSize + idOf(right, rank);
      this.mergedIdByRank[rank] = idOf(left + right, rank);
      // A repeated pair keeps its first (lowest) rank, as in Hugging Face.
      if (!this.mergeRanks.has(key)) this.mergeRanks.set(key, rank);
    }
  }

  /** From the contents of vocab.json and merges.txt (GPT-2's own files). */
  static fromVocabAndMerges(vocabJson: string, mergesTxt: string): Gpt2Tokenizer {
    const vocab = parseVocab(parseJson(vocabJson, "vocab.json"), "vocab.json");
    return new Gpt2Tokenizer(vocab, parseMergesTxt(mergesTxt), [], false, "vocab.json/merges.txt");
  }

  /** From the contents of a Hugging Face tokenizer.json (model.type "BPE", byte-level). */
  static fromTokenizerJson(tokenizerJson: string): Gpt2Tokenizer {
    const root = parseJson(tokenizerJson, "tokenizer.json");
    if (!isRecord(root)) throw new Error(`tokenizer.json: expected an object, got ${describe(root)}`);
    const model = root.model;
    if (!isRecord(model))
      throw new Error(`tokenizer.json: "model" must be an object, got ${describe(model)}`);
    if (model.type !== undefined && model.type !== "BPE") {
      throw new Error(`tokenizer.json: model.type is ${describe(model.type)}; only "BPE" is supported`);
    }
    for (const field of ["continuing_subword_prefix", "end_of_word_suffix"] as const) {
      if (model[field] !== undefined && model[field] !== null && model[field] !== "") {
        throw new Error(`tokenizer.json: model.${field} is not supported by byte-level BPE`);
      }
    }
    if (root.normalizer !== undefined && root.normalizer !== null) {
      throw new Error("tokenizer.json: a normalizer is not supported (GPT-2 has none)");
    }
    if (root.pre_tokenizer !== undefined) checkByteLevelPreTokenizer(root.pre_tokenizer);
    const vocab = parseVocab(model.vocab, "tokenizer.json: model.vocab");
    const merges = parseJsonMerges(model.merges);
    const addedRaw = root.added_tokens ?? [];
    if (!Array.isArray(addedRaw)) {
      throw new Error(`tokenizer.json: added_tokens must be an array, got ${describe(addedRaw)}`);
    }
    const added = addedRaw.map((entry: unknown, i): SpecialToken => {
      if (
        !isRecord(entry) ||
        typeof entry.content !== "string" ||
        entry.content === "" ||
        typeof entry.id !== "number" ||
        !Number.isSafeInteger(entry.id) ||
        entry.id < 0
      ) {
        throw new Error(
          `tokenizer.json: added_tokens[${i}] needs a non-empty "content" and a non-negative "id"`,
        );
      }
      return { content: entry.content, id: entry.id };
    });
    return new Gpt2Tokenizer(vocab, merges, added, model.ignore_merges === true, "tokenizer.json");
  }

  encode(text: string, options?: EncodeOptions): number[] {
    const allowed = options?.allowedSpecial ?? this.defaultAllowedSpecial;
    const out: number[] = [];
    if (allowed.length === 0) {
      this.encodeOrdinary(text, out);
      return out;
    }
    const special = this.specialRegex(allowed);
    special.lastIndex = 0;
    let start = 0;
    for (let match = special.exec(text); match !== null; match = special.exec(text)) {
      this.encodeOrdinary(text.slice(start, match.index), out);
      out.push(this.specialTokenId(match[0]));
      start = match.index + match[0].length;
    }
    this.encodeOrdinary(start === 0 ? text : text.slice(start), out);
    return out;
  }

  /** UTF-8 decode of the concatenated token bytes; broken sequences become U+FFFD. */
  decode(ids: readonly number[]): string {
    const parts: Uint8Array[] = new Array(ids.length);
    let length = 0;
    for (let i = 0; i < ids.length; i++) {
      parts[i] = this.bytesOf(ids[i], "decode");
      length += parts[i].length;
    }
    const bytes = new Uint8Array(length);
    let offset = 0;
    for (const part of parts) {
      bytes.set(part, offset);
      offset += part.length;
    }
    return utf8Decoder.decode(bytes);
  }

  /** The per-token display string TDB sends as tokensAsStrings: each token decoded on its own. */
  tokenString(id: number): string {
    let text = this.tokenStringCache[id];
    if (text === undefined) {
      text = utf8Decoder.decode(this.bytesOf(id, "tokenString"));
      this.tokenStringCache[id] = text;
    }
    return text;
  }

  tokenStrings(ids: readonly number[]): string[] {
    return ids.map((id) => this.tokenString(id));
  }

  /** The raw byte-level vocabulary entry (e.g. "Ġthe"), useful for diagnostics. */
  idToToken(id: number): string | undefined {
    return Number.isInteger(id) && id >= 0 && id < this.vocabSize ? this.tokens[id] : undefined;
  }

  tokenToId(token: string): number | undefined {
    return this.tokenIds.get(token) ?? this.specialTokens.get(token);
  }

  private bytesOf(id: number, caller: string): Uint8Array {
    const cached = this.tokenBytesCache[id];
    if (cached !== undefined) return cached;
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new Error(`${caller}: token id ${id} is out of range [0, ${this.vocabSize})`);
    }
    const token = this.tokens[id];
    if (token === undefined) throw new Error(`${caller}: token id ${id} is not in the vocabulary`);
    const bytes = this.addedTokenIds.has(id) ? utf8Bytes(token) : byteLevelToBytes(token);
    this.tokenBytesCache[id] = bytes;
    return bytes;
  }

  private specialTokenId(content: string): number {
    const id = this.specialTokens.get(content) ?? this.tokenIds.get(content);
    if (id === undefined)
      throw new Error(`encode: ${JSON.stringify(content)} is not a token of this vocabulary`);
    return id;
  }

  private specialRegex(allowed: readonly string[]): RegExp {
    const key = allowed.join("\u0000");
    let regex = this.specialRegexCache.get(key);
    if (regex === undefined) {
      for (const content of allowed) {
        if (content === "") throw new Error("encode: allowedSpecial contains an empty string");
        this.specialTokenId(content);
      }
      // Longest first, so a special token that extends another one wins.
      const alternatives = [...new Set(allowed)].sort((a, b) => b.length - a.length).map(escapeRegExp);
      regex = new RegExp(alternatives.join("|"), "g");
      this.specialRegexCache.set(key, regex);
    }
    return regex;
  }

  private encodeOrdinary(text: string, out: number[]): void {
    if (text === "") return;
    const pattern = this.pretokenize;
    pattern.lastIndex = 0;
    for (let match = pattern.exec(text); match !== null; match = pattern.exec(text)) {
      const word = match[0];
      let ids = this.wordCache.get(word);
      if (ids === undefined) {
        ids = this.encodeWord(word);
        if (this.wordCache.size >= MAX_CACHE_ENTRIES) this.wordCache.clear();
        this.wordCache.set(word, ids);
      }
      for (let i = 0; i < ids.length; i++) out.push(ids[i]);
    }
  }

  private encodeWord(word: string): number[] {
    if (this.wholeWordLookup) {
      const whole = this.tokenIds.get(this.toByteLevel(word));
      if (whole !== undefined) return [whole];
    }
    const bytes = utf8Bytes(word);
    const symbols = new Array<number>(bytes.length);
    for (let i = 0; i < bytes.length; i++) {
      const id = this.byteTokenIds[bytes[i]];
      if (id < 0) {
        throw new Error(
          `encode: byte 0x${bytes[i].toString(16).padStart(2, "0")} has no token in the vocabulary`,
        );
      }
      symbols[i] = id;
    }
    return symbols.length <= HEAP_THRESHOLD ? this.mergeByScan(symbols) : this.mergeByHeap(symbols);
  }

  private toByteLevel(word: string): string {
    let text = "";
    for (const b of utf8Bytes(word)) text += BYTE_TO_CHAR[b];
    return text;
  }

  /** Repeatedly merges the lowest-ranked adjacent pair (leftmost on ties); cheap for short words. */
  private mergeByScan(symbols: number[]): number[] {
    const ranks = this.mergeRanks;
    const width = this.vocabSize;
    while (symbols.length > 1) {
      let bestRank = Number.POSITIVE_INFINITY;
      let bestAt = -1;
      for (let i = 0; i + 1 < symbols.length; i++) {
        const rank = ranks.get(symbols[i] * width + symbols[i + 1]);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          bestAt = i;
        }
      }
      if (bestAt < 0) break;
      symbols[bestAt] = this.mergedIdByRank[bestRank];
      symbols.splice(bestAt + 1, 1);
    }
    return symbols;
  }

  /** Same merge order as mergeByScan, in O(n log n): a linked list of symbols and a heap of (rank, position). */
  private mergeByHeap(initial: number[]): number[] {
    const n = initial.length;
    const ranks = this.mergeRanks;
    const width = this.vocabSize;
    const symbol = Int32Array.from(initial);
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    // Entries are rank * n + position: ordering them orders by rank, then leftmost position.
    const heap = new MinHeap();
    const pushPair = (left: number): void => {
      const right = next[left];
      if (right < 0) return;
      const rank = ranks.get(symbol[left] * width + symbol[right]);
      if (rank !== undefined) heap.push(rank * n + left);
    };
    for (let i = 0; i + 1 < n; i++) pushPair(i);
    while (heap.size > 0) {
      const entry = heap.pop();
      const left = entry % n;
      const rank = (entry - left) / n;
      const right = next[left];
      // Stale when the left symbol was absorbed, has no right neighbour, or the pair changed since.
      if (symbol[left] < 0 || right < 0 || ranks.get(symbol[left] * width + symbol[right]) !== rank) continue;
      symbol[left] = this.mergedIdByRank[rank];
      symbol[right] = -1;
      const after = next[right];
      next[left] = after;
      if (after >= 0) prev[after] = left;
      if (prev[left] >= 0) pushPair(prev[left]);
      pushPair(left);
    }
    const result: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) result.push(symbol[i]);
    return result;
  }
}

/** Binary min-heap of numbers. */
class MinHeap {
  private readonly items: number[] = [];

  get size(): number {
    return this.items.length;
  }

  push(value: number): void {
    const items = this.items;
    let i = items.length;
    items.push(value);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (items[parent] <= value) break;
      items[i] = items[parent];
      i = parent;
    }
    items[i] = value;
  }

  pop(): number {
    const items = this.items;
    const top = items[0];
    const last = items.pop()!;
    const n = items.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        let child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && items[child + 1] < items[child]) child++;
        if (items[child] >= last) break;
        items[i] = items[child];
        i = child;
      }
      items[i] = last;
    }
    return top;
  }
}
