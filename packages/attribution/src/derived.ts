/**
 * TDB's four node-table metrics for every node of one inference (docs/tdb-maths.md, tdb-spec §4.3):
 *   activation; write magnitude = activation·‖write row‖; direct effect = activation·(write row · g[t]),
 *   zero unless the node precedes the final-residual location; estimated total effect = activation·gradient.
 */

import { type Gpt2Model, gatherRows, hookKey, nonzeroRows, type SparseAutoencoder } from "@tdb/model";
import { defaultGemm, type Gemm, jobArray } from "@tdb/tensor";
import type { AutoencoderFamily, InferenceResult, ResidualLocation, TdbModelContext } from "./inference.js";
import { summarize, type ValueSummary } from "./select.js";

export type MetricGroup = "activation" | "write_norm" | "act_times_grad" | "direction_write";
export const METRIC_GROUPS: readonly MetricGroup[] = [
  "write_norm",
  "act_times_grad",
  "direction_write",
  "activation",
];

export type NodeKind = "embedding" | "mlp_neuron" | "attention_head" | "mlp_latent" | "attention_latent";

/** The metric arrays of one node kind at one layer, row-major over `shape`. */
export interface LayerMetrics {
  kind: NodeKind;
  /** null for the embedding. */
  layer: number | null;
  /** [T, 1] embedding; [T, F] neurons; [T, T, H] heads (query, key, head); [T, m] latents. */
  shape: readonly number[];
  metrics: Record<MetricGroup, Float32Array>;
  /**
   * Per metric, its row sums over the last dimension (per token, or per token pair for heads), finiteness and run
   * bounds, taken while the arrays are fresh in cache (allNodeMetrics fills them; selection and the token-display
   * sums use them instead of reading every array again).
   */
  summaries?: Record<MetricGroup, ValueSummary>;
}

/** Fills m.summaries (see LayerMetrics). */
export function summarizeMetrics(m: LayerMetrics): LayerMetrics {
  const rowLength = m.shape[m.shape.length - 1];
  const summary = (group: MetricGroup) => summarize(m.metrics[group], rowLength);
  m.summaries = {
    activation: summary("activation"),
    write_norm: summary("write_norm"),
    act_times_grad: summary("act_times_grad"),
    direction_write: summary("direction_write"),
  };
  return m;
}

const gemm: Gemm = defaultGemm();
const rowNormCache = new WeakMap<Float32Array, Float32Array>();
const latentWriteCache = new WeakMap<SparseAutoencoder, Float32Array>();

/** Does a node at (layer, block) write into the residual stream before `final`? */
export function precedes(
  layer: number | null,
  block: "attention" | "mlp",
  final: ResidualLocation | null,
): boolean {
  if (final === null || layer === null) return true;
  if (layer !== final.layer) return layer < final.layer;
  return block === "attention" && final.block === "mlp";
}

export function embeddingMetrics(ctx: TdbModelContext, run: InferenceResult): LayerMetrics {
  const d = ctx.model.config.nEmbd;
  const T = run.tokens.length;
  const e = run.forward.activations.get(hookKey("resid.post_emb", null))!;
  const grad = run.gradients.get(hookKey("resid.post_emb", null));
  const g = run.finalResidualGradient;
  const activation = new Float32Array(T).fill(1);
  const writeNorm = new Float32Array(T);
  const actTimesGrad = new Float32Array(T);
  const direct = new Float32Array(T);
  for (let t = 0; t < T; t++) {
    let sq = 0;
    let atg = 0;
    let de = 0;
    for (let i = 0; i < d; i++) {
      const v = e[t * d + i];
      sq += v * v;
      if (grad) atg += v * grad[t * d + i];
      de += v * g[t * d + i];
    }
    writeNorm[t] = Math.sqrt(sq);
    actTimesGrad[t] = atg;
    direct[t] = de;
  }
  return {
    kind: "embedding",
    layer: null,
    shape: [T, 1],
    metrics: { activation, write_norm: writeNorm, act_times_grad: actTimesGrad, direction_write: direct },
  };
}

// By run, not by gradient array: a request's arrays are recycled for the next one (recyclingArrays).
const nonzeroRowsCache = new WeakMap<InferenceResult, number[]>();

/** The model's nonzeroRows of the run's final-residual gradient [T × d], found once per run: every layer asks. */
function gradientRows(run: InferenceResult, T: number, d: number): number[] {
  let rows = nonzeroRowsCache.get(run);
  if (!rows) {
    rows = nonzeroRows(run.finalResidualGradient, T, d);
    nonzeroRowsCache.set(run, rows);
  }
  return rows;
}

/**
 * direct[t, n] = act[t, n]·(g[t]·W[n]) for the run's final-residual gradient g [T × d] and W [n × d]: the direct
 * effect of every unit whose write
 * row is W[n]. Only the rows of g that are not zero are multiplied (a loss at the last token leaves one); the other
 * rows of `direct` stay zero.
 */
function directEffects(
  run: InferenceResult,
  T: number,
  d: number,
  w: Float32Array,
  n: number,
  act: Float32Array,
  direct: Float32Array,
): void {
  const rows = gradientRows(run, T, d);
  if (rows.length === 0) return;
  const g = run.finalResidualGradient;
  const part = jobArray(rows.length * n);
  gemm.nt(rows.length === T ? g : gatherRows(g, rows, d), w, part, rows.length, d, n);
  rows.forEach((t, r) => {
    for (let i = 0; i < n; i++) direct[t * n + i] = act[t * n + i] * part[r * n + i];
  });
}

export function mlpNeuronMetrics(model: Gpt2Model, run: InferenceResult, layer: number): LayerMetrics {
  const { nEmbd: d, nInner: F } = model.config;
  const T = run.tokens.length;
  const a = run.forward.activations.get(hookKey("mlp.post_act", layer))!;
  const grad = run.gradients.get(hookKey("mlp.post_act", layer));
  const wOut = model.weights.layers[layer].projWeight; // [F, d]
  const norms = rowNorms(wOut, F, d);
  const writeNorm = jobArray(T * F);
  const actTimesGrad = jobArray(T * F);
  const direct = jobArray(T * F);
  if (precedes(layer, "mlp", run.finalLocation)) directEffects(run, T, d, wOut, F, a, direct);
  // One simple loop per metric (a branch inside a shared loop made each element several times slower).
  for (let t = 0; t < T; t++) {
    for (let n = 0, i = t * F; n < F; n++, i++) writeNorm[i] = a[i] * norms[n];
  }
  if (grad) for (let i = 0; i < T * F; i++) actTimesGrad[i] = a[i] * grad[i];
  return {
    kind: "mlp_neuron",
    layer,
    shape: [T, F],
    metrics: { activation: a, write_norm: writeNorm, act_times_grad: actTimesGrad, direction_write: direct },
  };
}

export function attentionHeadMetrics(model: Gpt2Model, run: InferenceResult, layer: number): LayerMetrics {
  const { nEmbd: d, nHead: H } = model.config;
  const Dh = d / H;
  const T = run.tokens.length;
  const probs = run.forward.activations.get(hookKey("attn.qk_probs", layer))!;
  const grad = run.gradients.get(hookKey("attn.qk_probs", layer));
  const v = run.forward.activations.get(hookKey("attn.v", layer))!;
  const wO = model.weights.layers[layer].attnOutWeight; // [d_in = H·Dh, d]
  const live = precedes(layer, "attention", run.finalLocation);
  // Only tokens where the final-residual gradient is non-zero (one, for a loss at the last token) are projected on.
  const g = run.finalResidualGradient;
  const tokens = live ? gradientRows(run, T, d) : [];
  const gRows = tokens.length === T ? g : gatherRows(g, tokens, d);
  // Per head, V[u,h]·W_O[h] for every key token ([T, Dh]·[Dh, d]), its norm and its projections on g[t]:
  // voNorm[u·H + h] and projected[(u·H + h)·T + t].
  const voNorm = jobArray(T * H);
  const projected = jobArray(T * H * T);
  const vHead = jobArray(T * Dh);
  const voHead = jobArray(T * d);
  const part = jobArray(T * tokens.length);
  for (let h = 0; h < H; h++) {
    for (let u = 0; u < T; u++) vHead.set(v.subarray(u * d + h * Dh, u * d + (h + 1) * Dh), u * Dh);
    gemm.nn(vHead, wO.subarray(h * Dh * d, (h + 1) * Dh * d), voHead, T, Dh, d);
    for (let u = 0; u < T; u++) {
      let sq = 0;
      for (let j = u * d; j < (u + 1) * d; j++) sq += voHead[j] ** 2;
      voNorm[u * H + h] = Math.sqrt(sq);
    }
    if (tokens.length === 0) continue;
    gemm.nt(voHead, gRows, part, T, d, tokens.length);
    for (let u = 0; u < T; u++) {
      tokens.forEach((t, j) => {
        projected[(u * H + h) * T + t] = part[u * tokens.length + j];
      });
    }
  }
  const writeNorm = jobArray(T * T * H);
  const actTimesGrad = jobArray(T * T * H);
  const direct = jobArray(T * T * H);
  for (let t = 0; t < T; t++) {
    for (let u = 0; u <= t; u++) {
      for (let h = 0; h < H; h++) {
        const i = (t * T + u) * H + h;
        const p = probs[i];
        writeNorm[i] = p * voNorm[u * H + h];
        actTimesGrad[i] = grad ? p * grad[i] : 0;
        if (live) direct[i] = p * projected[(u * H + h) * T + t];
      }
    }
  }
  return {
    kind: "attention_head",
    layer,
    shape: [T, T, H],
    metrics: {
      activation: probs,
      write_norm: writeNorm,
      act_times_grad: actTimesGrad,
      direction_write: direct,
    },
  };
}

/** Latents of a spliced-in autoencoder: the write row is the decoder column (through W_out for mlp_post_act). */
export function latentMetrics(
  model: Gpt2Model,
  run: InferenceResult,
  family: AutoencoderFamily,
  layer: number,
  kind: "mlp_latent" | "attention_latent",
): LayerMetrics {
  const ae = family.byLayer.get(layer)!;
  const record = (kind === "mlp_latent" ? run.mlpLatents : run.attentionLatents).get(layer)!;
  const d = model.config.nEmbd;
  const T = run.tokens.length;
  const m = ae.nLatents;
  const rows = latentWriteRows(model, family, layer); // [m, d]
  const norms = rowNorms(rows, m, d);
  const block = family.site === "resid_delta_attn" ? "attention" : "mlp";
  const live = precedes(layer, block, run.finalLocation);
  const z = record.values;
  const grad = record.gradient;
  const writeNorm = jobArray(T * m);
  const actTimesGrad = jobArray(T * m);
  const direct = jobArray(T * m);
  if (live) directEffects(run, T, d, rows, m, z, direct);
  for (let t = 0; t < T; t++) {
    for (let l = 0, i = t * m; l < m; l++, i++) writeNorm[i] = z[i] * norms[l];
  }
  if (grad) for (let i = 0; i < T * m; i++) actTimesGrad[i] = z[i] * grad[i];
  return {
    kind,
    layer,
    shape: [T, m],
    metrics: { activation: z, write_norm: writeNorm, act_times_grad: actTimesGrad, direction_write: direct },
  };
}

/** Each latent's write into the residual stream, [m, d], cached per autoencoder. */
export function latentWriteRows(model: Gpt2Model, family: AutoencoderFamily, layer: number): Float32Array {
  const ae = family.byLayer.get(layer)!;
  const cached = latentWriteCache.get(ae);
  if (cached) return cached;
  const d = model.config.nEmbd;
  const m = ae.nLatents;
  const n = ae.nInputs;
  const decT = new Float32Array(m * n); // decoder columns as rows, [m, nInputs]
  for (let i = 0; i < n; i++) for (let l = 0; l < m; l++) decT[l * n + i] = ae.decoderWeight[i * m + l];
  let rows: Float32Array;
  if (family.site === "mlp_post_act") {
    rows = new Float32Array(m * d);
    gemm.nn(decT, model.weights.layers[layer].projWeight, rows, m, n, d);
  } else {
    rows = decT;
  }
  latentWriteCache.set(ae, rows);
  return rows;
}

function rowNorms(matrix: Float32Array, rows: number, cols: number): Float32Array {
  const cached = rowNormCache.get(matrix);
  if (cached && cached.length === rows) return cached;
  const out = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let sq = 0;
    for (let c = 0; c < cols; c++) sq += matrix[r * cols + c] ** 2;
    out[r] = Math.sqrt(sq);
  }
  rowNormCache.set(matrix, out);
  return out;
}

/** Every layer's metrics for the node basis the request chose (neurons or MLP latents; heads or attention latents). */
export function allNodeMetrics(
  ctx: TdbModelContext,
  run: InferenceResult,
  basis: { mlp: "neuron" | "autoencoder_latent"; attention: "attention_head" | "autoencoder_latent" },
): LayerMetrics[] {
  const { model } = ctx;
  const out: LayerMetrics[] = [summarizeMetrics(embeddingMetrics(ctx, run))];
  for (let l = 0; l < model.config.nLayer; l++) {
    if (basis.attention === "autoencoder_latent") {
      if (ctx.attentionAutoencoder?.byLayer.has(l)) {
        out.push(
          summarizeMetrics(latentMetrics(model, run, ctx.attentionAutoencoder, l, "attention_latent")),
        );
      }
    } else out.push(summarizeMetrics(attentionHeadMetrics(model, run, l)));
    if (basis.mlp === "autoencoder_latent") {
      if (ctx.mlpAutoencoder?.byLayer.has(l))
        out.push(summarizeMetrics(latentMetrics(model, run, ctx.mlpAutoencoder, l, "mlp_latent")));
    } else out.push(summarizeMetrics(mlpNeuronMetrics(model, run, l)));
  }
  return out;
}
