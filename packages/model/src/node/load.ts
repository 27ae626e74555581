import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Gpt2Config } from "../formats/config.js";
import { ModelSourceError } from "../formats/errors.js";
import { normalizeGpt2StateDict } from "../formats/state-dict.js";
import { Gpt2Model } from "../gpt2.js";
import { Gpt2Tokenizer } from "../tokenizer.js";
import { loadHfFolder } from "./hf-folder.js";
import { type ResolveOptions, resolveModel } from "./hub.js";

export interface LoadedModel {
  model: Gpt2Model;
  tokenizer: Gpt2Tokenizer;
  config: Gpt2Config;
  /** The local folder the weights came from. */
  dir: string;
}

/** Loads a GPT-2-family model and its tokenizer from a Hugging Face folder or a named hub model. */
export async function loadModel(nameOrDir: string, options: ResolveOptions = {}): Promise<LoadedModel> {
  const dir = await resolveModel(nameOrDir, options);
  const { config, tensors } = await loadHfFolder(dir);
  const stateDict = normalizeGpt2StateDict(tensors, config, { name: dir });
  const model = Gpt2Model.fromStateDict(config, stateDict, { tieWordEmbeddings: config.tieWordEmbeddings });
  return { model, tokenizer: loadTokenizer(dir), config, dir };
}

export function loadTokenizer(dir: string): Gpt2Tokenizer {
  const tokenizerJson = join(dir, "tokenizer.json");
  const vocab = join(dir, "vocab.json");
  const merges = join(dir, "merges.txt");
  if (existsSync(vocab) && existsSync(merges)) {
    return Gpt2Tokenizer.fromVocabAndMerges(readFileSync(vocab, "utf8"), readFileSync(merges, "utf8"));
  }
  if (existsSync(tokenizerJson)) return Gpt2Tokenizer.fromTokenizerJson(readFileSync(tokenizerJson, "utf8"));
  throw new ModelSourceError(`${dir}: no tokenizer (expected vocab.json + merges.txt, or tokenizer.json)`);
}
