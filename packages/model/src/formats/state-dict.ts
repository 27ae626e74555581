/** Bring a GPT-2 checkpoint's tensors to one key layout and check every shape against the config. */

import type { Gpt2Config } from "./config.js";
import { ModelConfigError } from "./errors.js";
import type { LoadedTensor } from "./tensor-data.js";

/**
 * Expected GPT-2 tensors and shapes, in HF naming without the `transformer.` prefix. Conv1D weights are
 * stored [in, out]: c_attn.weight is [d, 3d] with q|k|v along the out axis.
 */
export function expectedGpt2Shapes(config: Gpt2Config): Map<string, number[]> {
  const d = config.nEmbd;
  const inner = config.nInner;
  const shapes = new Map<string, number[]>([
    ["wte.weight", [config.vocabSize, d]],
    ["wpe.weight", [config.nPositions, d]],
  ]);
  for (let i = 0; i < config.nLayer; i++) {
    const p = `h.${i}.`;
    shapes.set(`${p}ln_1.weight`, [d]);
    shapes.set(`${p}ln_1.bias`, [d]);
    shapes.set(`${p}attn.c_attn.weight`, [d, 3 * d]);
    shapes.set(`${p}attn.c_attn.bias`, [3 * d]);
    shapes.set(`${p}attn.c_proj.weight`, [d, d]);
    shapes.set(`${p}attn.c_proj.bias`, [d]);
    shapes.set(`${p}ln_2.weight`, [d]);
    shapes.set(`${p}ln_2.bias`, [d]);
    shapes.set(`${p}mlp.c_fc.weight`, [d, inner]);
    shapes.set(`${p}mlp.c_fc.bias`, [inner]);
    shapes.set(`${p}mlp.c_proj.weight`, [inner, d]);
    shapes.set(`${p}mlp.c_proj.bias`, [d]);
  }
  shapes.set("ln_f.weight", [d]);
  shapes.set("ln_f.bias", [d]);
  return shapes;
}

/** The causal-mask buffers HF keeps in some checkpoints; they carry no learned weights. */
const BUFFER_SUFFIXES = [".attn.bias", ".attn.masked_bias"];

export interface NormalizeOptions {
  /** File or model name used in error messages. */
  name?: string;
  /** Keep going (dropping them) when the checkpoint has tensors GPT-2 does not use. Default: error. */
  allowUnexpected?: boolean;
}

/**
 * Returns a new map with keys `wte.weight`, `wpe.weight`, `h.{i}.…`, `ln_f.*` and, only when the checkpoint
 * has it, `lm_head.weight` ([vocab, d]). Strips an optional `transformer.` prefix and drops the attention
 * mask buffers. Throws `ModelConfigError` listing every missing key, shape mismatch and unexpected key.
 */
export function normalizeGpt2StateDict(
  tensors: Map<string, LoadedTensor>,
  config: Gpt2Config,
  options: NormalizeOptions = {},
): Map<string, LoadedTensor> {
  const name = options.name ?? "state dict";
  const expected = expectedGpt2Shapes(config);
  expected.set("lm_head.weight", [config.vocabSize, config.nEmbd]);

  const renamed = new Map<string, LoadedTensor>();
  const duplicates: string[] = [];
  const unexpected: string[] = [];
  for (const [rawKey, tensor] of tensors) {
    const key = rawKey.startsWith("transformer.") ? rawKey.slice("transformer.".length) : rawKey;
    if (BUFFER_SUFFIXES.some((suffix) => key.endsWith(suffix) && key.startsWith("h."))) continue;
    if (!expected.has(key)) {
      unexpected.push(rawKey);
      continue;
    }
    if (renamed.has(key)) duplicates.push(key);
    renamed.set(key, tensor);
  }

  const problems: string[] = [];
  const missing = [...expected.keys()].filter((key) => key !== "lm_head.weight" && !renamed.has(key));
  if (missing.length > 0) problems.push(`missing ${missing.length} tensor(s): ${missing.join(", ")}`);
  const mismatches: string[] = [];
  for (const [key, tensor] of renamed) {
    const want = expected.get(key)!;
    const ok = tensor.shape.length === want.length && tensor.shape.every((dim, i) => dim === want[i]);
    if (!ok) mismatches.push(`${key} is [${tensor.shape.join(", ")}], expected [${want.join(", ")}]`);
  }
  if (mismatches.length > 0) problems.push(`shape mismatch: ${mismatches.join("; ")}`);
  if (duplicates.length > 0)
    problems.push(`present both with and without "transformer.": ${duplicates.join(", ")}`);
  if (unexpected.length > 0 && !options.allowUnexpected) {
    problems.push(`unexpected tensor(s) for GPT-2: ${unexpected.join(", ")}`);
  }
  if (problems.length > 0) {
    const dims = `n_layer ${config.nLayer}, n_embd ${config.nEmbd}, n_inner ${config.nInner}, vocab ${config.vocabSize}, n_positions ${config.nPositions}`;
    throw new ModelConfigError(
      `${name} does not match the GPT-2 config (${dims}):\n  ${problems.join("\n  ")}`,
    );
  }

  // Stable order: expected order, so consumers iterating get layers in sequence.
  const ordered = new Map<string, LoadedTensor>();
  for (const key of expected.keys()) {
    const tensor = renamed.get(key);
    if (tensor) ordered.set(key, tensor);
  }
  return ordered;
}
