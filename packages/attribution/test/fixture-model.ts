/** Loads test models (the shared tiny-gpt2, the l3-sae fixture) and their autoencoders for tests. */
import { readFileSync } from "node:fs";
import {
  type AutoencoderSite,
  Gpt2Model,
  Gpt2Tokenizer,
  normalizeGpt2StateDict,
  parseAutoencoderActivation,
  parseGpt2Config,
  parseSafetensors,
  parseSafetensorsHeader,
  SparseAutoencoder,
} from "@tdb/model";
import type { AutoencoderFamily } from "../src/index.js";

export const SHARED = new URL("../../../../shared/", import.meta.url);
export const TINY = new URL("fixtures/tiny-gpt2/", SHARED);
/** 3-layer GPT-2 with mlp_post_act (ReLU) and resid_delta_attn (TopK) autoencoders; no tokenizer files. */
export const L3_SAE = new URL("fixtures/l3-sae/", import.meta.url);

/** A Hugging Face GPT-2 folder (config.json + model.safetensors); the folder URL ends with "/". */
export function loadModelFolder(dir: URL): Gpt2Model {
  const config = parseGpt2Config(JSON.parse(readFileSync(new URL("config.json", dir), "utf8")));
  const tensors = normalizeGpt2StateDict(
    parseSafetensors(readFileSync(new URL("model.safetensors", dir))),
    config,
  );
  return Gpt2Model.fromStateDict(config, tensors);
}

/** The GPT-2 tokenizer of the shared tiny-gpt2 fixture (the standard GPT-2 vocabulary). */
export function loadGpt2Tokenizer(): Gpt2Tokenizer {
  return Gpt2Tokenizer.fromVocabAndMerges(
    readFileSync(new URL("vocab.json", TINY), "utf8"),
    readFileSync(new URL("merges.txt", TINY), "utf8"),
  );
}

export function loadTinyModel(): { model: Gpt2Model; tokenizer: Gpt2Tokenizer } {
  return { model: loadModelFolder(TINY), tokenizer: loadGpt2Tokenizer() };
}

/** One OpenAI-format autoencoder `.safetensors`; the activation (ReLU, TopK + k) comes from its metadata. */
export function loadAutoencoderFile(file: URL): SparseAutoencoder {
  const bytes = readFileSync(file);
  const meta = parseSafetensorsHeader(bytes).metadata ?? {};
  return SparseAutoencoder.fromOpenAiStateDict(
    parseSafetensors(bytes),
    parseAutoencoderActivation(meta.activation, meta.k),
    file.pathname,
  );
}

/** A family stored as `<dir>/<layer>.safetensors`, one per listed layer. */
export function loadAutoencoderFamily(
  dir: URL,
  site: AutoencoderSite,
  layers: readonly number[],
  name = `ae-${site}`,
): AutoencoderFamily {
  const byLayer = new Map(layers.map((l) => [l, loadAutoencoderFile(new URL(`${l}.safetensors`, dir))]));
  return { name, site, byLayer };
}

export function loadTinyMlpAutoencoder(): AutoencoderFamily {
  return loadAutoencoderFamily(
    new URL("autoencoders/mlp_post_act/", TINY),
    "mlp_post_act",
    [0],
    "ae-mlp-post-act-tiny",
  );
}
