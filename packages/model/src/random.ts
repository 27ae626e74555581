import { type Gpt2Architecture, Gpt2Model, type NamedTensor } from "./gpt2.js";

/** Deterministic uniform [0, 1) generator (mulberry32): seeds tests, benchmarks and sampling. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A state dict of the given architecture with random weights (for tests and benchmarks, never for users). */
export function randomGpt2StateDict(
  config: Gpt2Architecture,
  seed = 0,
  scale = 0.1,
): Map<string, NamedTensor> {
  const rand = seededRandom(seed);
  const d = config.nEmbd;
  const f = config.nInner;
  const tensors = new Map<string, NamedTensor>();
  const add = (name: string, shape: number[], center = 0) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = center + (rand() * 2 - 1) * scale;
    tensors.set(name, { shape, data });
  };
  add("wte.weight", [config.vocabSize, d]);
  add("wpe.weight", [config.nPositions, d]);
  for (let l = 0; l < config.nLayer; l++) {
    const p = `h.${l}.`;
    add(`${p}ln_1.weight`, [d], 1);
    add(`${p}ln_1.bias`, [d]);
    add(`${p}attn.c_attn.weight`, [d, 3 * d]);
    add(`${p}attn.c_attn.bias`, [3 * d]);
    add(`${p}attn.c_proj.weight`, [d, d]);
    add(`${p}attn.c_proj.bias`, [d]);
    add(`${p}ln_2.weight`, [d], 1);
    add(`${p}ln_2.bias`, [d]);
    add(`${p}mlp.c_fc.weight`, [d, f]);
    add(`${p}mlp.c_fc.bias`, [f]);
    add(`${p}mlp.c_proj.weight`, [f, d]);
    add(`${p}mlp.c_proj.bias`, [d]);
  }
  add("ln_f.weight", [d], 1);
  add("ln_f.bias", [d]);
  return tensors;
}

export function randomGpt2(config: Gpt2Architecture, seed = 0, scale = 0.1): Gpt2Model {
  return Gpt2Model.fromStateDict(config, randomGpt2StateDict(config, seed, scale));
}

/** GPT-2 small's shape (12 layers, 768 wide, 12 heads, vocabulary 50257, context 1024). */
export const GPT2_SMALL_ARCHITECTURE: Gpt2Architecture = {
  nLayer: 12,
  nHead: 12,
  nEmbd: 768,
  nInner: 3072,
  nPositions: 1024,
  vocabSize: 50257,
  layerNormEpsilon: 1e-5,
  activationFunction: "gelu_new",
};
