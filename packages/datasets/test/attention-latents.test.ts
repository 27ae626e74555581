/**
 * Attention-autoencoder latents (resid_delta_attn, TopK) on the 3-layer l3-sae fixture: stored top sequences and
 * values against a float64 re-encoding of the model's cached resid.delta_attn.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Gpt2Model, hookKey, normalizeGpt2StateDict, parseGpt2Config, parseSafetensors } from "@tdb/model";
import { loadAutoencoderFamily, loadTokenizer } from "@tdb/model/node";
import { describe, expect, it } from "vitest";
import { collate, openDatasetStore, readCorpus, tokenizeCorpus } from "../src/index.js";
import { TINY_DIR, tempDir } from "./helpers.js";

const L3 = new URL("../../attribution/test/fixtures/l3-sae/", import.meta.url).pathname;
const SEQ_LEN = 24;
const TOP_K = 4;

function loadL3(): Gpt2Model {
  const config = parseGpt2Config(JSON.parse(readFileSync(join(L3, "config.json"), "utf8")));
  const tensors = normalizeGpt2StateDict(
    parseSafetensors(readFileSync(join(L3, "model.safetensors"))),
    config,
  );
  return Gpt2Model.fromStateDict(config, tensors);
}

describe("attention autoencoder latents", () => {
  it("top sequences and values match a float64 TopK re-encoding", async () => {
    const model = loadL3();
    const tokenizer = loadTokenizer(TINY_DIR); // the fixture has GPT-2's vocabulary but no tokenizer files
    const family = await loadAutoencoderFamily(join(L3, "autoencoders", "resid_delta_attn"));
    expect(family.site).toBe("resid_delta_attn");
    const ae = family.byLayer.get(0)!;
    expect(ae.activation.kind).toBe("topk");
    const k = ae.activation.kind === "topk" ? ae.activation.k : 0;
    const corpus = tokenizeCorpus(readCorpus("builtin:tiny"), tokenizer);
    const out = join(tempDir("attn-latents"), "l3.db");
    await collate({
      model,
      modelName: "l3-sae",
      tokenizer,
      corpus,
      out,
      seqLen: SEQ_LEN,
      topK: TOP_K,
      randomCount: 2,
      attentionAutoencoder: family,
    });

    const n = Math.floor(corpus.tokens.length / SEQ_LEN);
    const m = ae.nLatents;
    const d = ae.nInputs;
    // Every latent of every token of every sequence, float64, TopK then relu.
    const latents: Float64Array[] = [];
    for (let s = 0; s < n; s++) {
      const x = model
        .forward([...corpus.tokens.subarray(s * SEQ_LEN, (s + 1) * SEQ_LEN)])
        .activations.get(hookKey("resid.delta_attn", 0))!;
      const z = new Float64Array(SEQ_LEN * m);
      for (let t = 0; t < SEQ_LEN; t++) {
        const pre = Array.from({ length: m }, (_, l) => {
          let v = ae.latentBias[l];
          for (let i = 0; i < d; i++) v += (x[t * d + i] - ae.inputBias[i]) * ae.encoderWeight[l * d + i];
          return v;
        });
        const keep = pre
          .map((v, l) => [v, l])
          .sort((a, b) => b[0] - a[0])
          .slice(0, k);
        for (const [v, l] of keep) z[t * m + l] = Math.max(v, 0);
      }
      latents.push(z);
    }

    const store = openDatasetStore(out, { readonly: true });
    try {
      expect(store.components().map((g) => `${g.kind}@${g.layer}`)).toContain(
        "attention_autoencoder_latent@0",
      );
      expect(store.metadata().dstNames.attention_autoencoder_latent).toBe("attention_autoencoder_latent");
      let checked = 0;
      for (let latent = 0; latent < m && checked < 6; latent++) {
        const values = latents.map((z) => Array.from({ length: SEQ_LEN }, (_, t) => z[t * m + latent]));
        const maxima = values.map((v) => Math.max(...v));
        if (maxima.filter((x) => x > 0).length < TOP_K + 1) continue; // skip rarely active latents
        const order = maxima.map((_, s) => s).sort((a, b) => maxima[b] - maxima[a] || a - b);
        const record = store.record("attention_autoencoder_latent", 0, latent)!;
        const kth = maxima[order[TOP_K - 1]];
        for (const r of record.mostPositiveActivationRecords) {
          expect(maxima[r.sequenceIndex!]).toBeGreaterThanOrEqual(kth - 1e-5);
          r.activations.forEach((a, t) => {
            expect(a).toBeCloseTo(values[r.sequenceIndex!][t], 4);
          });
        }
        for (const s of order.filter((s) => maxima[s] > kth + 1e-5)) {
          expect(record.mostPositiveActivationRecords.map((r) => r.sequenceIndex)).toContain(s);
        }
        checked++;
      }
      expect(checked).toBe(6);
    } finally {
      store.close();
    }
  });
});
