// Measurements of the demo bundle for assets/demo/EVAL-bundle.md (needs `npm run build`):
//   node tools/demo/eval_bundle.mjs [--skip-saes] > test-artifacts/eval-bundle.json
// SAE_ROOT=DIR measures the autoencoder folders DIR/{mlp_post_act,resid_delta_attn} (either may be missing) instead
// of the shipped ones, e.g. candidates before they are converted to F16.
// 1. Each shipped autoencoder on held-out activations (assets/demo/corpus/heldout.jsonl, windows of 64 tokens,
//    first token of each window skipped as in training): FVE, mean L0, share of latents that never fire.
// 2. The IOI example through handleBatchedTdb (what /batched_tdb runs): logit difference with each attention
//    head zero-ablated at the last token, and where that head sits in TDB's node table.

import { existsSync } from "node:fs";
import { handleBatchedTdb } from "@tdb/attribution";
import { readCorpus, tokenizeCorpus } from "@tdb/datasets";
import { ActivationSource } from "@tdb/model";
import { loadAutoencoderFamily, loadModel } from "@tdb/model/node";

const root = new URL("../../", import.meta.url).pathname;
const demo = `${root}assets/demo`;
const { model, tokenizer, config } = await loadModel(`${demo}/model`);
const result = { saes: [], ioi: null };

if (!process.argv.includes("--skip-saes")) {
  const corpus = tokenizeCorpus(readCorpus(`${demo}/corpus/heldout.jsonl`), tokenizer);
  const saeRoot = process.env.SAE_ROOT ?? `${demo}/autoencoders`;
  for (const site of ["mlp_post_act", "resid_delta_attn"]) {
    if (!existsSync(`${saeRoot}/${site}`)) continue;
    const family = await loadAutoencoderFamily(`${saeRoot}/${site}`);
    const layers = [...family.byLayer.keys()].sort((a, b) => a - b);
    const source = new ActivationSource({ model, site, layers, tokens: corpus.tokens, seqLen: 64, seed: 0 });
    const starts = [];
    for (let s = 0; s + 64 <= corpus.tokens.length; s += 64) starts.push(s);
    for (const layer of layers) {
      const ae = family.byLayer.get(layer);
      const n = ae.nInputs;
      // Two passes: the mean first (FVE's denominator is the variance around it), then the errors.
      const mean = new Float64Array(n);
      let rows = 0;
      for (const s of starts) {
        const x = source.sequenceRows(s, layer);
        const r = x.length / n;
        for (let i = 0; i < r; i++) for (let j = 0; j < n; j++) mean[j] += x[i * n + j];
        rows += r;
      }
      for (let j = 0; j < n; j++) mean[j] /= rows;
      let sse = 0;
      let sst = 0;
      let active = 0;
      const fired = new Uint8Array(ae.nLatents);
      for (const s of starts) {
        const x = source.sequenceRows(s, layer);
        const r = x.length / n;
        const z = ae.encode(x, r);
        const xh = ae.decode(z, r);
        for (let i = 0; i < x.length; i++) {
          sse += (x[i] - xh[i]) ** 2;
          sst += (x[i] - mean[i % n]) ** 2;
        }
        for (let i = 0; i < z.length; i++) {
          if (z[i] > 0) {
            active++;
            fired[i % ae.nLatents] = 1;
          }
        }
      }
      const neverFired = ae.nLatents - fired.reduce((a, b) => a + b, 0);
      result.saes.push({
        site,
        layer,
        latents: ae.nLatents,
        k: ae.activation.k ?? null,
        heldOutTokens: rows,
        fve: 1 - sse / sst,
        meanL0: active / rows,
        neverFiredShare: neverFired / ae.nLatents,
      });
      console.error(JSON.stringify(result.saes.at(-1)));
    }
  }
}

// IOI: baseline and every head ablated at the last token (TDB ablates the head's whole query row there).
const prompt = "When Mary and John went to the store, John gave a drink to";
const last = tokenizer.encode(prompt).length - 1;
const ctx = { model, tokenizer, modelName: "demo", mlpAutoencoder: null, attentionAutoencoder: null };
const sub = (nodeAblations) => ({
  prompt,
  targetTokens: [" Mary"],
  distractorTokens: [" John"],
  componentTypeForMlp: "neuron",
  componentTypeForAttention: "attention_head",
  topAndBottomKForNodeTable: 10,
  hideEarlyLayersWhenAblating: true,
  nodeAblations,
});
const base = handleBatchedTdb(ctx, { subRequests: [sub([])] }).inferenceSubResponses[0];
const baseDiff = base.inferenceResponse.inferenceAndTokenData.loss;
const table = base.processingResponseDataByName.topKComponents;
const rows = table.nodeIndices.map((node, i) => ({
  node,
  actTimesGrad: table.activationsByGroupId.act_times_grad[i],
  directionWrite: table.activationsByGroupId.direction_write[i],
}));
const rankBy = (key) => [...rows].sort((a, b) => b[key] - a[key]);
const byAtg = rankBy("actTimesGrad");
const byDirect = rankBy("directionWrite");
const heads = [];
for (let layer = 0; layer < config.nLayer; layer++) {
  for (let head = 0; head < config.nHead; head++) {
    const node = {
      nodeType: "attention_head",
      tensorIndices: [last, 0, head],
      layerIndex: layer,
      passType: "forward",
    };
    const r = handleBatchedTdb(ctx, { subRequests: [sub([{ nodeIndex: node, value: 0 }])] })
      .inferenceSubResponses[0];
    const diff = r.inferenceResponse.inferenceAndTokenData.loss;
    const isHead = (row) =>
      row.node.nodeType === "attention_head" &&
      row.node.layerIndex === layer &&
      row.node.tensorIndices[2] === head &&
      row.node.tensorIndices[0] === last;
    const inTable = rows.filter(isHead);
    heads.push({
      head: `L${layer}H${head}`,
      logitDiffAblated: diff,
      relativeDrop: (baseDiff - diff) / baseDiff,
      tableRows: inTable.map((row) => ({
        key: row.node.tensorIndices[1],
        atg: row.actTimesGrad,
        direct: row.directionWrite,
      })),
      bestActTimesGradRank: byAtg.findIndex(isHead) + 1 || null,
      bestDirectEffectRank: byDirect.findIndex(isHead) + 1 || null,
    });
  }
}
result.ioi = { prompt, lastToken: last, baseLogitDiff: baseDiff, nodeTableRows: rows.length, heads };
console.log(JSON.stringify(result, null, 1));
