/** Loads the shared tiny-gpt2 fixture (and its layer-0 MLP autoencoder) for tests. */
import { readFileSync } from "node:fs";
import {
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

export function loadTinyModel(): { model: Gpt2Model; tokenizer: Gpt2Tokenizer } {
  const config = parseGpt2Config(JSON.parse(readFileSync(new URL("config.json", TINY), "utf8")));
  const tensors = normalizeGpt2StateDict(
    parseSafetensors(readFileSync(new URL("model.safetensors", TINY))),
    config,
  );
  const model = Gpt2Model.fromStateDict(config, tensors);
  const tokenizer = Gpt2Tokenizer.fromVocabAndMerges(
    readFileSync(new URL("vocab.json", TINY), "utf8"),
    readFileSync(new URL("merges.txt", TINY), "utf8"),
  );
  return { model, tokenizer };
}

export function loadTinyMlpAutoencoder(): AutoencoderFamily {
  const bytes = readFileSync(new URL("autoencoders/mlp_post_act/0.safetensors", TINY));
  const meta = parseSafetensorsHeader(bytes).metadata ?? {};
  const ae = SparseAutoencoder.fromOpenAiStateDict(
    parseSafetensors(bytes),
    parseAutoencoderActivation(meta.activation),
  );
  return { name: "ae-mlp-post-act-tiny", site: "mlp_post_act", byLayer: new Map([[0, ae]]) };
}
