/** Shared fixtures: a collated dataset of the tiny GPT-2 over the built-in corpus, in a temp folder. */
import { copyFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { collate, readCorpus, tokenizeCorpus } from "@tdb/datasets";
import { loadAutoencoderFamily, loadModel } from "@tdb/model/node";

export const TINY_DIR = new URL("../../../../shared/fixtures/tiny-gpt2/", import.meta.url).pathname;
export const TINY_AE_DIR = join(TINY_DIR, "autoencoders", "mlp_post_act");

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `tdb-${prefix}-`));
}

let built: Promise<string> | null = null;

/**
 * tiny-gpt2 (+ its layer-0 MLP autoencoder) over builtin:tiny: 32-token sequences, 20 top and 15 random
 * sequences per component (enough for TDB's exact splits). Built once per test file; callers get a copy.
 */
export async function tinyDataset(dir: string, name = "tiny.db"): Promise<string> {
  built ??= (async () => {
    const { model, tokenizer } = await loadModel(TINY_DIR);
    const autoencoder = await loadAutoencoderFamily(TINY_AE_DIR);
    const out = join(tempDir("explain-src"), "tiny.db");
    await collate({
      model,
      modelName: "tiny-gpt2",
      tokenizer,
      corpus: tokenizeCorpus(readCorpus("builtin:tiny"), tokenizer),
      out,
      seqLen: 32,
      topK: 20,
      randomCount: 15,
      mlpAutoencoder: autoencoder,
    });
    return out;
  })();
  const file = join(dir, name);
  copyFileSync(await built, file);
  return file;
}
