import type { Gpt2Model } from "./gpt2.js";
import { seededRandom } from "./random.js";

export interface GenerateOptions {
  maxNewTokens: number;
  /** 0 (default) means greedy decoding. */
  temperature?: number;
  /** Nucleus sampling: keep the smallest set of tokens whose probability reaches topP (default 1). */
  topP?: number;
  seed?: number;
  /** Stop early when this token is produced (it is kept in the output). */
  stopToken?: number | null;
  /** Called with each new token as it is chosen. */
  onToken?: (id: number) => void;
}

/** Continues `prompt` and returns only the new token ids. Recomputes the prefix each step (no KV cache). */
export function generate(model: Gpt2Model, prompt: readonly number[], options: GenerateOptions): number[] {
  const { maxNewTokens, temperature = 0, topP = 1, seed = 0, stopToken = null } = options;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0)
    throw new RangeError("maxNewTokens must be a whole number ≥ 0");
  if (!(temperature >= 0) || !Number.isFinite(temperature))
    throw new RangeError("temperature must be a finite number ≥ 0");
  if (!(topP > 0 && topP <= 1)) throw new RangeError("topP must be in (0, 1]");
  if (prompt.length === 0) throw new RangeError("the prompt must hold at least one token");
  const room = model.config.nPositions - prompt.length;
  if (maxNewTokens > room) {
    throw new RangeError(
      `prompt (${prompt.length} tokens) + ${maxNewTokens} new tokens exceeds the context window (${model.config.nPositions})`,
    );
  }
  const random = seededRandom(seed);
  const tokens = [...prompt];
  const produced: number[] = [];
  for (let step = 0; step < maxNewTokens; step++) {
    const { logits } = model.forward(tokens, { cache: false, logitRows: [tokens.length - 1] });
    const next = temperature === 0 ? argmax(logits) : sample(logits, temperature, topP, random);
    tokens.push(next);
    produced.push(next);
    options.onToken?.(next);
    if (stopToken !== null && next === stopToken) break;
  }
  return produced;
}

export function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

function sample(logits: Float32Array, temperature: number, topP: number, random: () => number): number {
  let max = Number.NEGATIVE_INFINITY;
  for (const v of logits) max = Math.max(max, v);
  const probs = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    probs[i] = Math.exp((logits[i] - max) / temperature);
    sum += probs[i];
  }
  const order = Array.from({ length: logits.length }, (_, i) => i).sort((a, b) => probs[b] - probs[a]);
  // Keep tokens until the cumulative probability reaches topP (at least one).
  const kept: number[] = [];
  let cumulative = 0;
  for (const i of order) {
    kept.push(i);
    cumulative += probs[i] / sum;
    if (cumulative >= topP) break;
  }
  let mass = 0;
  for (const i of kept) mass += probs[i];
  let r = random() * mass;
  for (const i of kept) {
    r -= probs[i];
    if (r <= 0) return i;
  }
  return kept[kept.length - 1];
}
