/**
 * Chat prompts in the style of TDB's explainers and simulators (tdb-spec §6.2): the wording and few-shot
 * examples are this project's own; the formats follow TDB's so that the explanations read the same
 * ("this neuron activates for …", "this attention head …"), activations are integers 0–10 as token<TAB>value
 * lines between <start> and <end>, the simulator answers JSON {to_find, document, activations:[{token,
 * activation}]}, and token pairs are marked [[from]] and **to**.
 */
import type { ActivationRecord } from "@tdb/datasets";
import type { ChatMessage } from "./llm.js";
import { maxActivationOf, normalizeActivations, type TokenPair } from "./records.js";

export const EXPLANATION_PREFIX = "this neuron activates for";
export const ATTENTION_EXPLANATION_PREFIX = "this attention head";
export const SEQUENCE_SEPARATOR = "<|sequence_separator|>";

interface FewShotNeuron {
  records: { tokens: string[]; activations: number[] }[];
  explanation: string;
}

const NEURON_EXAMPLES: readonly FewShotNeuron[] = [
  {
    records: [
      {
        tokens: ["We", " meet", " every", " Monday", " and", " Friday", " at", " noon", "."],
        activations: [0, 0, 0, 10, 0, 8, 0, 0, 0],
      },
      {
        tokens: ["The", " shop", " is", " closed", " on", " Sundays", " in", " winter", "."],
        activations: [0, 0, 0, 0, 0, 9, 0, 1, 0],
      },
    ],
    explanation: "days of the week",
  },
  {
    records: [
      {
        tokens: ["print", "(", "len", "(", "items", "))", "\n"],
        activations: [0, 0, 0, 0, 0, 10, 0],
      },
      {
        tokens: ["x", " =", " max", "(", "a", ",", " b", ")", " +", " 1"],
        activations: [0, 0, 0, 0, 0, 0, 0, 7, 0, 0],
      },
    ],
    explanation: "closing brackets in code",
  },
];

/** TDB's format_activation_records: token<TAB>activation lines, each record between <start> and <end>. */
export function formatActivationRecords(
  records: readonly { tokens: readonly string[]; activations: readonly number[] }[],
  max: number,
): string {
  const blocks = records.map((r) => {
    const values = normalizeActivations(r.activations, max);
    return r.tokens.map((token, i) => `${token}\t${values[i]}`).join("\n");
  });
  return `\n<start>\n${blocks.join("\n<end>\n<start>\n")}\n<end>\n`;
}

function neuronBlock(
  index: number,
  records: readonly { tokens: readonly string[]; activations: readonly number[] }[],
  max: number,
) {
  return `\n\nNeuron ${index + 1}\nActivations:${formatActivationRecords(records, max)}\nExplanation of neuron ${index + 1} behavior: ${EXPLANATION_PREFIX}`;
}

/** The explainer prompt for a neuron or per-token latent: few-shot neurons, then the train records. */
export function neuronExplanationMessages(train: readonly ActivationRecord[]): ChatMessage[] {
  const messages: ChatMessage[] = [
    {
      role: "system",
      content:
        "We are studying neurons in a neural network. Each neuron looks for one kind of thing in a short " +
        "document. Read the parts of the documents where the neuron activates and describe, in one short " +
        "sentence, what the neuron is looking for. Describe the pattern; do not just list example words.\n\n" +
        "Each line is token<tab>activation. Activations go from 0 to 10: 0 means the neuron does not fire, " +
        "and higher values mean a stronger match.",
    },
  ];
  NEURON_EXAMPLES.forEach((example, i) => {
    messages.push({
      role: "user",
      content: neuronBlock(i, example.records, maxActivationOf(example.records)),
    });
    messages.push({ role: "assistant", content: ` ${example.explanation}.` });
  });
  messages.push({
    role: "user",
    content: neuronBlock(NEURON_EXAMPLES.length, train, maxActivationOf(train)),
  });
  return messages;
}

/** An explainer's answer → the explanation (without TDB's prefix, a trailing period or quotes). */
export function cleanExplanation(completion: string, prefix: string): string {
  let text = completion.trim().split("\n")[0].trim();
  if (text.toLowerCase().startsWith(prefix)) text = text.slice(prefix.length).trim();
  text = text.replace(/^["'“]+|["'”]+$/g, "").trim();
  if (text.endsWith(".")) text = text.slice(0, -1).trim();
  return text;
}

/** TDB's LogprobFree simulator cleans tokens so the model can echo them: no <|endoftext|>, ASCII only. */
export function sanitizeToken(token: string): string {
  let out = "";
  for (const ch of token.replaceAll("<|endoftext|>", "<|not_endoftext|>")) {
    const code = ch.codePointAt(0)!;
    if (code < 128) out += ch;
    else if (code <= 0xff) out += `\\x${code.toString(16).padStart(2, "0")}`;
    else if (code <= 0xffff) out += `\\u${code.toString(16).padStart(4, "0")}`;
    else out += `\\U${code.toString(16).padStart(8, "0")}`;
  }
  return out;
}

function simulationJson(
  explanation: string,
  tokens: readonly string[],
  activations: readonly number[] | null,
) {
  return JSON.stringify({
    to_find: explanation,
    document: tokens.join(""),
    activations: tokens.map((token, i) => ({
      token,
      activation: activations === null ? null : activations[i],
    })),
  });
}

const SIMULATION_EXAMPLES: readonly { explanation: string; tokens: string[]; activations: number[] }[] = [
  {
    explanation: "days of the week",
    tokens: ["See", " you", " on", " Monday", " or", " maybe", " Tuesday", "."],
    activations: [0, 0, 0, 10, 0, 0, 9, 0],
  },
  {
    explanation: "the word 'not' and other negations",
    tokens: ["It", " is", " not", " late", ",", " never", " mind", "."],
    activations: [0, 0, 10, 0, 0, 7, 0, 0],
  },
];

/** The all-at-once simulator prompt (JSON in, JSON out) for one sequence. */
export function simulationMessages(explanation: string, tokens: readonly string[]): ChatMessage[] {
  const messages: ChatMessage[] = [
    {
      role: "system",
      content:
        "We are studying neurons in a neural network. Each neuron looks for one kind of thing in a short " +
        "document. Read the explanation of what the neuron looks for and predict its activation on every " +
        "token of the document.\n\nYou get a JSON object with the explanation (to_find), the document's text, " +
        "and its tokens with the activation left null. Answer with the same JSON object, in valid JSON only, " +
        "with the same tokens in the same order and each activation filled in as an integer from 0 (no match) " +
        "to 10 (strongest match). Pay attention to what the explanation says about context and order.",
    },
  ];
  for (const example of SIMULATION_EXAMPLES) {
    messages.push({ role: "user", content: simulationJson(example.explanation, example.tokens, null) });
    messages.push({
      role: "assistant",
      content: simulationJson(example.explanation, example.tokens, example.activations),
    });
  }
  messages.push({ role: "user", content: simulationJson(explanation, tokens.map(sanitizeToken), null) });
  return messages;
}

/** The outermost JSON value in a completion (inside ```json fences, or after some chatter). */
function extractJson(completion: string): unknown {
  const text = completion.trim();
  const fenced = /```(?:json)?\s*([\s\S]*?)```/i.exec(text);
  const candidates = [fenced?.[1], text];
  const start = text.search(/[[{]/);
  if (start >= 0) {
    const close = text[start] === "{" ? "}" : "]";
    const end = text.lastIndexOf(close);
    if (end > start) candidates.push(text.slice(start, end + 1));
  }
  for (const candidate of candidates) {
    if (candidate === undefined) continue;
    try {
      return JSON.parse(candidate.trim());
    } catch {
      // try the next
    }
  }
  throw new Error("no JSON in the answer");
}

export interface ParsedSimulation {
  activations: number[];
  /** Why the answer was not usable (all predictions are then 0, as TDB). */
  failure: string | null;
}

/**
 * TDB's _parse_no_logprobs_completion_json, a little more forgiving about the wrapping: the answer's
 * activations, one per token, each a number in [0, 10] (else 0); all 0 when the JSON is unusable or has a
 * different number of tokens.
 */
export function parseSimulation(completion: string, tokenCount: number): ParsedSimulation {
  const zeros = new Array<number>(tokenCount).fill(0);
  let json: unknown;
  try {
    json = extractJson(completion);
  } catch (error) {
    return { activations: zeros, failure: (error as Error).message };
  }
  const list = Array.isArray(json)
    ? json
    : typeof json === "object" &&
        json !== null &&
        Array.isArray((json as { activations?: unknown }).activations)
      ? (json as { activations: unknown[] }).activations
      : null;
  if (list === null) return { activations: zeros, failure: "the JSON has no activations list" };
  if (list.length !== tokenCount) {
    return { activations: zeros, failure: `${list.length} activations for ${tokenCount} tokens` };
  }
  const activations = list.map((entry) => {
    const raw =
      typeof entry === "object" && entry !== null ? (entry as { activation?: unknown }).activation : entry;
    const value =
      typeof raw === "number" ? raw : typeof raw === "string" && raw.trim() !== "" ? Number(raw) : Number.NaN;
    return Number.isFinite(value) && value >= 0 && value <= 10 ? value : 0;
  });
  return { activations, failure: null };
}

/** TDB's format_attention_head_token_pair_string: [[from]], **to**, [[**both**]]. */
export function markTokenPair(tokens: readonly string[], pair: TokenPair): string {
  return tokens
    .map((token, i) => {
      if (i === pair.from && i === pair.to) return `[[**${token}**]]`;
      if (i === pair.from) return `[[${token}]]`;
      if (i === pair.to) return `**${token}**`;
      return token;
    })
    .join("");
}

export interface PairExample {
  tokens: readonly string[];
  pairs: readonly TokenPair[];
}

const HEAD_EXAMPLES: readonly { examples: PairExample[]; explanation: string }[] = [
  {
    examples: [
      {
        tokens: ["The", " old", " fox", " ran", " across", " the", " field"],
        pairs: [
          { from: 2, to: 1 },
          { from: 6, to: 5 },
        ],
      },
      { tokens: ["Rain", " fell", " all", " night"], pairs: [{ from: 3, to: 2 }] },
    ],
    explanation: "attends to the previous token from every token",
  },
  {
    examples: [
      {
        tokens: ["Alice", " gave", " Bob", " the", " book", ",", " and", " Bob", " thanked", " her"],
        pairs: [{ from: 7, to: 2 }],
      },
      { tokens: [" red", " apples", " and", " red", " pears"], pairs: [{ from: 3, to: 0 }] },
    ],
    explanation: "attends to an earlier copy of the same word from a repeated word",
  },
];

function headBlock(index: number, examples: readonly PairExample[]): string {
  const marked = examples.flatMap((e) => e.pairs.map((p) => markTokenPair(e.tokens, p)));
  const listed = examples.flatMap((e) => e.pairs.map((p) => `(${e.tokens[p.to]}, ${e.tokens[p.from]})`));
  return (
    `\n\nAttention head ${index + 1}\nActivations:\n${marked.join(`\n${SEQUENCE_SEPARATOR}\n`)}` +
    `\nThe same list of strongly activating token pairs, presented as (to_token, from_token):${listed.join(", ")}` +
    `\nExplanation of attention head ${index + 1} behavior: ${ATTENTION_EXPLANATION_PREFIX}`
  );
}

const HEAD_SYSTEM =
  "We are studying attention heads in a neural network. A head looks at every pair of tokens in a short " +
  "sequence and activates on the pairs that fit what it looks for. A head always attends from a token to " +
  "the same token or an earlier one. In each sequence shown, the earlier token attended to is marked with " +
  "double asterisks (**token**) and the later token attending from it with double square brackets " +
  "([[token]]); a token attending to itself is marked [[**token**]].";

/** The explainer prompt for an attention head: the strongest (from, to) pairs of the train records. */
export function headExplanationMessages(examples: readonly PairExample[]): ChatMessage[] {
  const messages: ChatMessage[] = [
    {
      role: "system",
      content:
        `${HEAD_SYSTEM} Only some activating pairs are shown, so generalize from them. Summarize in one ` +
        'sentence what pattern the head looks for, in the form "this attention head attends to {the earlier ' +
        'tokens marked ** **} from {the later tokens marked [[ ]]}", without the markers. Sequences are ' +
        `separated by ${SEQUENCE_SEPARATOR}.`,
    },
  ];
  HEAD_EXAMPLES.forEach((example, i) => {
    messages.push({ role: "user", content: headBlock(i, example.examples) });
    messages.push({ role: "assistant", content: ` ${example.explanation}.` });
  });
  messages.push({ role: "user", content: headBlock(HEAD_EXAMPLES.length, examples) });
  return messages;
}

const PAIR_SCORING_EXAMPLES: readonly {
  explanation: string;
  tokens: string[];
  pair: TokenPair;
  label: 0 | 1;
}[] = [
  {
    explanation: "attends to the previous token from every token",
    tokens: ["The", " cat", " sat", " on", " the", " mat"],
    pair: { from: 3, to: 2 },
    label: 1,
  },
  {
    explanation: "attends to the previous token from every token",
    tokens: ["The", " cat", " sat", " on", " the", " mat"],
    pair: { from: 5, to: 1 },
    label: 0,
  },
];

function pairBlock(index: number, explanation: string, tokens: readonly string[], pair: TokenPair): string {
  return (
    `\n\nExample ${index + 1}\nExplanation: ${ATTENTION_EXPLANATION_PREFIX} ${explanation.trim()}` +
    `\nSequence:\n${markTokenPair(tokens, pair)}` +
    `\nPrediction of whether attention head ${index + 1} activates on the token pair: `
  );
}

/** TDB's one-at-a-time pair scorer prompt: answer 1 if the head activates on the marked pair, else 0. */
export function pairScoringMessages(
  explanation: string,
  tokens: readonly string[],
  pair: TokenPair,
): ChatMessage[] {
  const messages: ChatMessage[] = [
    {
      role: "system",
      content:
        `${HEAD_SYSTEM} You get one sequence with one marked token pair and an explanation of what the head ` +
        "looks for. Answer 1 if the head activates on the marked pair, and 0 if it does not.",
    },
  ];
  PAIR_SCORING_EXAMPLES.forEach((example, i) => {
    messages.push({ role: "user", content: pairBlock(i, example.explanation, example.tokens, example.pair) });
    messages.push({ role: "assistant", content: String(example.label) });
  });
  messages.push({
    role: "user",
    content: pairBlock(PAIR_SCORING_EXAMPLES.length, explanation, tokens, pair),
  });
  return messages;
}
