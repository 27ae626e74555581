/**
 * One TDB inference: forward pass with ablations and in-graph autoencoders, the backward target (a loss on the
 * direction of interest, or a traced node's reconstituted scalar), and the backward pass to every activation.
 * Semantics follow TDB (docs/tdb-maths.md): the final LayerNorm scale is always detached; a trace differentiates
 * the node's pre-activation recomputed from the residual before its block, with that block's LN scale detached.
 */
import {
  type AutoencoderSite,
  type DetachSpec,
  type ForwardHook,
  type ForwardResult,
  GLOBAL_HOOK_POINTS,
  type Gpt2Architecture,
  type Gpt2Model,
  type GradientSeed,
  type HookPoint,
  hookKey,
  type SparseAutoencoder,
} from "@tdb/model";

export class TdbRequestError extends Error {
  override name = "TdbRequestError";
}

/** A family of autoencoders spliced into the model at one site, one per layer (any subset of layers). */
export interface AutoencoderFamily {
  name: string;
  site: AutoencoderSite;
  byLayer: ReadonlyMap<number, SparseAutoencoder>;
}

export type ComponentKind = "mlp_neuron" | "attention_head" | "mlp_latent" | "attention_latent";

/** Zero (or set to `value`) one component's activation in the forward pass. */
export interface ComponentAblation {
  kind: ComponentKind;
  layer: number;
  /** Flat index into the activation of that layer: [t, n], [t, ℓ], or the whole query row of head h at t. */
  token: number;
  index: number;
  value: number;
}

/**
 * Set entries of any editable hook point's value in the forward pass (TDB's forward-pass AblationSpec at an
 * activation location). The entries become constants: no gradient flows back through them.
 */
export interface SiteAblation {
  kind: "site";
  point: HookPoint;
  /** null for the points outside the layer stack (resid.post_emb, resid.post_ln_f, logits). */
  layer: number | null;
  /** One entry per dimension of the value (see siteShape; the first is the token); "All" = the whole dimension. */
  indices: readonly (number | "All")[];
  value: number;
}

export type Ablation = ComponentAblation | SiteAblation;

export type LossName = "logit_diff" | "logit_minus_mean" | "probs" | "zero";

export interface LossSpec {
  name: LossName;
  targets: readonly number[];
  distractors: readonly number[] | null;
}

export type AttentionTraceType = "Q" | "K" | "QK" | "V";

export interface TraceSpec {
  kind: ComponentKind;
  layer: number;
  /** [t, n] / [t, ℓ]; for attention heads: query t, key u, head h. */
  token: number;
  index: number;
  keyToken?: number;
  attentionTraceType?: AttentionTraceType;
  /**
   * V traces only: the node whose reconstituted scalar defines the downstream gradient g_D (its gradient w.r.t.
   * a detached copy of the residual before its block) instead of the loss (tdb-spec §4.5). Not itself a V trace.
   */
  downstream?: TraceSpec | null;
}

export interface InferenceSpec {
  tokens: readonly number[];
  ablations?: readonly Ablation[];
  loss?: LossSpec | null;
  trace?: TraceSpec | null;
  /** Token rows whose logits are computed (the last token is always included). */
  logitTokens?: readonly number[];
}

/** Where the "final residual" of direct effects sits: before the attention or the MLP block of `layer`. */
export interface ResidualLocation {
  layer: number;
  block: "attention" | "mlp";
}

export interface LatentRecord {
  /** Latents after ablation, [T, nLatents] */
  values: Float32Array;
  /** Gradient at the latents hook, [T, nLatents] (filled by the backward pass). */
  gradient: Float32Array | null;
  preActivations: Float32Array;
}

export interface InferenceResult {
  tokens: readonly number[];
  forward: ForwardResult;
  gradients: Map<string, Float32Array>;
  /** Latent records per layer of the spliced-in autoencoders. */
  mlpLatents: Map<number, LatentRecord>;
  attentionLatents: Map<number, LatentRecord>;
  loss: number | null;
  activationValueForBackwardPass: number | null;
  /** The direction for direct effects: dy/d(residual at finalLocation), [T, d]. */
  finalResidualGradient: Float32Array;
  /** null: the residual after the last layer. */
  finalLocation: ResidualLocation | null;
}

export interface TdbModelContext {
  model: Gpt2Model;
  mlpAutoencoder?: AutoencoderFamily | null;
  attentionAutoencoder?: AutoencoderFamily | null;
}

const SITE_POINT: Record<AutoencoderSite, HookPoint> = {
  mlp_post_act: "mlp.post_act",
  resid_delta_mlp: "resid.delta_mlp",
  resid_delta_attn: "resid.delta_attn",
};

export function runInference(ctx: TdbModelContext, spec: InferenceSpec): InferenceResult {
  const { model } = ctx;
  const T = spec.tokens.length;
  const d = model.config.nEmbd;
  const ablations = spec.ablations ?? [];
  const siteAblations: SiteAblation[] = [];
  const componentAblations: ComponentAblation[] = [];
  for (const a of ablations) {
    if (a.kind === "site") {
      checkSiteAblation(model.config, a, T, "ablation");
      siteAblations.push(a);
    } else {
      checkComponentIndex(ctx, a.kind, a.layer, a.token, a.index, T, "ablation");
      componentAblations.push(a);
    }
  }
  for (let trace = spec.trace, what = "trace"; trace; trace = trace.downstream, what = "downstream trace") {
    checkComponentIndex(ctx, trace.kind, trace.layer, trace.token, trace.index, T, what);
    if (trace.downstream && !(trace.kind === "attention_head" && trace.attentionTraceType === "V")) {
      throw new TdbRequestError(`${what}: only a "V" trace of an attention head takes a downstream node`);
    }
  }
  // Logits ablated at a token must be computed there.
  const ablatedLogitRows = siteAblations
    .filter((a) => a.point === "logits")
    .flatMap((a) => (a.indices[0] === "All" ? [] : [a.indices[0]]));
  const logitRows = [...new Set([...(spec.logitTokens ?? []), ...ablatedLogitRows, T - 1])].sort(
    (a, b) => a - b,
  );

  const hooks: ForwardHook[] = [];
  // Neuron, head and site ablations act at the fwd stage of their hook (before any autoencoder at that site).
  const neuronAblations = componentAblations.filter(
    (a) => a.kind === "mlp_neuron" || a.kind === "attention_head",
  );
  if (neuronAblations.length > 0) hooks.push(ablationHook(model, neuronAblations, T));
  if (siteAblations.length > 0) hooks.push(siteAblationHook(siteAblations, logitRows));
  const mlpLatents = new Map<number, LatentRecord>();
  const attentionLatents = new Map<number, LatentRecord>();
  if (ctx.mlpAutoencoder) {
    const own = componentAblations.filter((a) => a.kind === "mlp_latent");
    hooks.push(autoencoderHook(ctx.mlpAutoencoder, own, mlpLatents, T));
  }
  if (ctx.attentionAutoencoder) {
    const own = componentAblations.filter((a) => a.kind === "attention_latent");
    hooks.push(autoencoderHook(ctx.attentionAutoencoder, own, attentionLatents, T));
  }
  for (const a of componentAblations) {
    if (a.kind === "mlp_latent" && !ctx.mlpAutoencoder?.byLayer.has(a.layer)) {
      throw new TdbRequestError(`no MLP autoencoder is loaded for layer ${a.layer}`);
    }
    if (a.kind === "attention_latent" && !ctx.attentionAutoencoder?.byLayer.has(a.layer)) {
      throw new TdbRequestError(`no attention autoencoder is loaded for layer ${a.layer}`);
    }
  }

  const forward = model.forward(spec.tokens, { hooks, logitRows });
  const V = model.config.vocabSize;
  const lastRow = logitRows.indexOf(T - 1);

  // The direct path from the final residual to the loss, with ln_f's scale detached (TDB always does this).
  const detachFinal: DetachSpec["layerNormScales"] = [{ point: "resid.ln_f.scale", layer: null }];
  let loss: number | null = null;
  let lossSeed: GradientSeed | null = null;
  if (spec.loss) {
    const lastLogits = forward.logits.subarray(lastRow * V, (lastRow + 1) * V);
    const { value, grad } = evaluateLoss(spec.loss, lastLogits);
    loss = Number.isNaN(value) ? null : value;
    const full = new Float32Array(forward.logits.length);
    full.set(grad, lastRow * V);
    lossSeed = { point: "logits", layer: null, grad: full };
  }

  let seeds: GradientSeed[];
  let finalLocation: ResidualLocation | null = null;
  let finalResidualGradient: Float32Array;
  let activationValueForBackwardPass: number | null = null;
  const trace = spec.trace;
  let detach: DetachSpec = { layerNormScales: detachFinal };
  if (!trace) {
    if (!lossSeed) throw new TdbRequestError("a request needs a loss function or a node to trace");
    seeds = [lossSeed];
  } else {
    const local = reconstituteTrace(ctx, forward, trace, lossSeed, T);
    activationValueForBackwardPass = local.value;
    finalLocation = local.location;
    finalResidualGradient = local.residualGradient;
    seeds = [
      {
        point: residualPointBefore(local.location),
        layer: residualLayerBefore(local.location),
        grad: local.residualGradient,
      },
    ];
    detach = { layerNormScales: detachFinal };
  }
  const { gradients } = model.backward(forward, seeds, detach);
  if (!trace) {
    finalResidualGradient =
      gradients.get(hookKey("resid.post_mlp", model.config.nLayer - 1)) ?? new Float32Array(T * d);
  }
  for (const rec of [...mlpLatents.values(), ...attentionLatents.values()]) {
    rec.gradient ??= new Float32Array(rec.values.length);
  }
  return {
    tokens: [...spec.tokens],
    forward,
    gradients,
    mlpLatents,
    attentionLatents,
    loss,
    activationValueForBackwardPass,
    finalResidualGradient: finalResidualGradient!,
    finalLocation,
  };
}

/** The hook that holds the residual stream at the input of a block. */
export function residualPointBefore(loc: ResidualLocation): HookPoint {
  if (loc.block === "mlp") return "resid.post_attn";
  return loc.layer === 0 ? "resid.post_emb" : "resid.post_mlp";
}

export function residualLayerBefore(loc: ResidualLocation): number | null {
  if (loc.block === "mlp") return loc.layer;
  return loc.layer === 0 ? null : loc.layer - 1;
}

/** Value and gradient (w.r.t. the last token's logits) of TDB's loss functions. */
export function evaluateLoss(loss: LossSpec, logits: Float32Array): { value: number; grad: Float32Array } {
  const V = logits.length;
  const grad = new Float32Array(V);
  const { targets, distractors } = loss;
  const mean = (ids: readonly number[]) => ids.reduce((s, id) => s + logits[id], 0) / ids.length;
  switch (loss.name) {
    case "logit_diff": {
      if (targets.length === 0) throw new TdbRequestError("logit_diff needs at least one target token");
      let value = mean(targets);
      for (const id of targets) grad[id] += 1 / targets.length;
      if (distractors && distractors.length > 0) {
        value -= mean(distractors);
        for (const id of distractors) grad[id] -= 1 / distractors.length;
      }
      return { value, grad };
    }
    case "logit_minus_mean": {
      if (distractors && distractors.length > 0)
        throw new TdbRequestError("logit_minus_mean takes no distractor tokens");
      if (targets.length === 0) throw new TdbRequestError("logit_minus_mean needs at least one target token");
      let all = 0;
      for (let v = 0; v < V; v++) all += logits[v];
      for (const id of targets) grad[id] += 1 / targets.length;
      for (let v = 0; v < V; v++) grad[v] -= 1 / V;
      return { value: mean(targets) - all / V, grad };
    }
    case "probs": {
      if (distractors && distractors.length > 0)
        throw new TdbRequestError("probs takes no distractor tokens");
      let max = Number.NEGATIVE_INFINITY;
      for (let v = 0; v < V; v++) max = Math.max(max, logits[v]);
      let sum = 0;
      const p = new Float64Array(V);
      for (let v = 0; v < V; v++) {
        p[v] = Math.exp(logits[v] - max);
        sum += p[v];
      }
      for (let v = 0; v < V; v++) p[v] /= sum;
      let value = 0;
      for (const id of targets) value += p[id];
      // d(Σ_{i∈T} p_i)/dlogit_v = p_v·(1[v∈T] − Σ_{i∈T} p_i)
      const inTargets = new Set(targets);
      for (let v = 0; v < V; v++) grad[v] = p[v] * ((inTargets.has(v) ? 1 : 0) - value);
      return { value, grad };
    }
    case "zero":
      return { value: 0, grad };
  }
}

interface ReconstitutedTrace {
  value: number;
  location: ResidualLocation;
  /** d(value)/d(residual at location), [T, d] */
  residualGradient: Float32Array;
}

/**
 * The traced node's scalar recomputed from the residual before its block (that block's LN scale detached),
 * and its gradient with respect to that residual, by a backward pass through the block alone.
 */
function reconstituteTrace(
  ctx: TdbModelContext,
  forward: ForwardResult,
  trace: TraceSpec,
  lossSeed: GradientSeed | null,
  T: number,
): ReconstitutedTrace {
  const { model } = ctx;
  const { layer: L, token: t, index } = trace;
  const act = (point: HookPoint, layer: number) => forward.activations.get(hookKey(point, layer))!;
  const d = model.config.nEmbd;
  const H = model.config.nHead;
  const Dh = d / H;
  const one = (size: number, at: number, value = 1) => {
    const g = new Float32Array(size);
    g[at] = value;
    return g;
  };

  if (trace.kind === "mlp_neuron" || trace.kind === "mlp_latent") {
    const F = model.config.nInner;
    let seed: GradientSeed;
    let value: number;
    if (trace.kind === "mlp_neuron") {
      value = act("mlp.pre_act", L)[t * F + index];
      seed = { point: "mlp.pre_act", layer: L, grad: one(T * F, t * F + index) };
    } else {
      const family = ctx.mlpAutoencoder!;
      const ae = family.byLayer.get(L)!;
      const point = SITE_POINT[family.site];
      const n = ae.nInputs;
      const x = act(point, L).subarray(t * n, (t + 1) * n);
      value = ae.encodePreAct(x, 1)[index];
      const grad = new Float32Array(T * n);
      grad.set(ae.encoderRow(index), t * n);
      seed = { point, layer: L, grad };
    }
    const location: ResidualLocation = { layer: L, block: "mlp" };
    const local = model.backward(
      forward,
      [seed],
      { layerNormScales: [{ point: "mlp_ln.scale", layer: L }] },
      { block: { layer: L, kind: "mlp" } },
    );
    return { value, location, residualGradient: local.blockInputGradient ?? new Float32Array(T * d) };
  }

  const location: ResidualLocation = { layer: L, block: "attention" };
  const lnDetach: DetachSpec["layerNormScales"] = [{ point: "attn_ln.scale", layer: L }];
  if (trace.kind === "attention_latent") {
    const family = ctx.attentionAutoencoder!;
    const ae = family.byLayer.get(L)!;
    const point = SITE_POINT[family.site];
    const x = act(point, L).subarray(t * d, (t + 1) * d);
    const value = ae.encodePreAct(x, 1)[index];
    const grad = new Float32Array(T * d);
    grad.set(ae.encoderRow(index), t * d);
    const local = model.backward(
      forward,
      [{ point, layer: L, grad }],
      { layerNormScales: lnDetach },
      { block: { layer: L, kind: "attention" } },
    );
    return { value, location, residualGradient: local.blockInputGradient ?? new Float32Array(T * d) };
  }

  // Attention head node (t, u, h): index is the head, keyToken the attended-to token.
  const u = trace.keyToken ?? 0;
  const h = index;
  const type = trace.attentionTraceType ?? "QK";
  if (type === "V") {
    let gD: Float32Array;
    if (trace.downstream) {
      // g_D: the downstream node's reconstituted scalar differentiated w.r.t. the residual before its block,
      // through that block alone (= w.r.t. a detached copy of that residual).
      gD = reconstituteTrace(ctx, forward, trace.downstream, null, T).residualGradient;
    } else {
      if (!lossSeed)
        throw new TdbRequestError(
          "a V trace without a downstream node needs the loss function to define the downstream gradient",
        );
      // g_D: gradient of the loss w.r.t. the final residual through ln_f (scale detached) and the unembedding only.
      const direct = model.backward(
        forward,
        [lossSeed],
        { layerNormScales: [{ point: "resid.ln_f.scale", layer: null }] },
        { block: { kind: "unembedding" } },
      );
      gD = direct.blockInputGradient ?? new Float32Array(T * d);
    }
    // DE = A[t,u,h]·(V[u,h]·W_O[h]·g_D[t]); its gradient reaches only V[u,h].
    const wo = model.weights.layers[L].attnOutWeight;
    const projected = new Float32Array(Dh);
    for (let i = 0; i < Dh; i++) {
      let acc = 0;
      const row = (h * Dh + i) * d;
      for (let j = 0; j < d; j++) acc += wo[row + j] * gD[t * d + j];
      projected[i] = acc;
    }
    const p = act("attn.qk_probs", L)[(t * T + u) * H + h];
    const v = act("attn.v", L);
    let value = 0;
    const grad = new Float32Array(T * d);
    for (let i = 0; i < Dh; i++) {
      value += p * v[u * d + h * Dh + i] * projected[i];
      grad[u * d + h * Dh + i] = p * projected[i];
    }
    const local = model.backward(
      forward,
      [{ point: "attn.v", layer: L, grad }],
      { layerNormScales: lnDetach, attention: [{ layer: L, q: true, k: true }] },
      { block: { layer: L, kind: "attention" } },
    );
    return { value, location, residualGradient: local.blockInputGradient ?? new Float32Array(T * d) };
  }
  const value = act("attn.qk_logits", L)[(t * T + u) * H + h];
  const grad = one(T * T * H, (t * T + u) * H + h);
  const local = model.backward(
    forward,
    [{ point: "attn.qk_logits", layer: L, grad }],
    { layerNormScales: lnDetach, attention: [{ layer: L, q: type === "K", k: type === "Q", v: true }] },
    { block: { layer: L, kind: "attention" } },
  );
  return { value, location, residualGradient: local.blockInputGradient ?? new Float32Array(T * d) };
}

function checkComponentIndex(
  ctx: TdbModelContext,
  kind: ComponentKind,
  layer: number,
  token: number,
  index: number,
  T: number,
  what: string,
): void {
  const { nLayer, nInner, nHead } = ctx.model.config;
  if (!Number.isInteger(layer) || layer < 0 || layer >= nLayer) {
    throw new TdbRequestError(`${what}: layer ${layer} is outside [0, ${nLayer})`);
  }
  if (!Number.isInteger(token) || token < 0 || token >= T) {
    throw new TdbRequestError(`${what}: token index ${token} is outside the prompt's ${T} tokens`);
  }
  let size: number;
  if (kind === "mlp_neuron") size = nInner;
  else if (kind === "attention_head") size = nHead;
  else {
    const family = kind === "mlp_latent" ? ctx.mlpAutoencoder : ctx.attentionAutoencoder;
    const ae = family?.byLayer.get(layer);
    if (!ae)
      throw new TdbRequestError(
        `${what}: no ${kind === "mlp_latent" ? "MLP" : "attention"} autoencoder at layer ${layer}`,
      );
    size = ae.nLatents;
  }
  if (!Number.isInteger(index) || index < 0 || index >= size) {
    throw new TdbRequestError(`${what}: ${kind} index ${index} is outside [0, ${size})`);
  }
}

/** The shape of a hook point's value for one sequence of T tokens ("logits": one row per token). */
export function siteShape(config: Gpt2Architecture, point: HookPoint, T: number): number[] {
  const { nEmbd: d, nHead: H, nInner: F, vocabSize: V } = config;
  switch (point) {
    case "attn.q":
    case "attn.k":
    case "attn.v":
    case "attn.v_out":
      return [T, H, d / H];
    case "attn.qk_logits":
    case "attn.qk_probs":
      return [T, T, H];
    case "mlp.pre_act":
    case "mlp.post_act":
      return [T, F];
    case "attn_ln.scale":
    case "mlp_ln.scale":
    case "resid.ln_f.scale":
      return [T];
    case "logits":
      return [T, V];
    default:
      return [T, d];
  }
}

/** LayerNorm scales are observed, not replaced (the model refuses edits there): detach them instead. */
const READ_ONLY_POINTS: ReadonlySet<HookPoint> = new Set([
  "attn_ln.scale",
  "mlp_ln.scale",
  "resid.ln_f.scale",
]);

export function checkSiteAblation(config: Gpt2Architecture, a: SiteAblation, T: number, what: string): void {
  if (READ_ONLY_POINTS.has(a.point)) {
    throw new TdbRequestError(
      `${what}: ${a.point} cannot be ablated in the forward pass (a LayerNorm scale; detach it in the backward pass)`,
    );
  }
  if (GLOBAL_HOOK_POINTS.has(a.point)) {
    if (a.layer !== null)
      throw new TdbRequestError(`${what}: ${a.point} has no layer (layerIndex must be null)`);
  } else if (a.layer === null) {
    throw new TdbRequestError(`${what}: ${a.point} needs a layerIndex`);
  } else if (!Number.isInteger(a.layer) || a.layer < 0 || a.layer >= config.nLayer) {
    throw new TdbRequestError(`${what}: layerIndex ${a.layer} is outside [0, ${config.nLayer})`);
  }
  const shape = siteShape(config, a.point, T);
  if (a.indices.length !== shape.length) {
    throw new TdbRequestError(
      `${what}: ${a.point} takes ${shape.length} tensor indices (shape [${shape.join(", ")}]); got ${a.indices.length}`,
    );
  }
  a.indices.forEach((entry, dim) => {
    if (entry !== "All" && (!Number.isInteger(entry) || entry < 0 || entry >= shape[dim])) {
      const name = dim === 0 ? "token index" : `tensor index (dimension ${dim})`;
      throw new TdbRequestError(`${what}: ${name} ${entry} is outside [0, ${shape[dim]}) at ${a.point}`);
    }
  });
}

/** Row-major flat offsets of every entry an index pattern addresses ("All" = the whole dimension). */
function patternOffsets(shape: readonly number[], indices: readonly (number | "All")[]): number[] {
  let offsets = [0];
  shape.forEach((size, dim) => {
    const entry = indices[dim];
    const picks = entry === "All" ? Array.from({ length: size }, (_, i) => i) : [entry];
    offsets = offsets.flatMap((o) => picks.map((p) => o * size + p));
  });
  return offsets;
}

function siteAblationHook(ablations: readonly SiteAblation[], logitRows: readonly number[]): ForwardHook {
  return (value, site) => {
    const mine = ablations.filter((a) => a.point === site.point && a.layer === site.layer);
    if (mine.length === 0) return undefined;
    const out = Float32Array.from(value);
    const touched = new Set<number>();
    for (const a of mine) {
      let indices = a.indices;
      // The logits site holds only the computed rows: address the token's row.
      if (a.point === "logits" && indices[0] !== "All")
        indices = [logitRows.indexOf(indices[0]), ...indices.slice(1)];
      for (const i of patternOffsets(site.shape, indices)) {
        out[i] = a.value;
        touched.add(i);
      }
    }
    return {
      value: out,
      // The ablated entries are constants: nothing flows back through them.
      backward: (g) => {
        const gi = Float32Array.from(g);
        for (const i of touched) gi[i] = 0;
        return gi;
      },
    };
  };
}

function ablationHook(model: Gpt2Model, ablations: readonly ComponentAblation[], T: number): ForwardHook {
  const H = model.config.nHead;
  const F = model.config.nInner;
  return (value, site) => {
    const mine = ablations.filter(
      (a) =>
        a.layer === site.layer &&
        ((a.kind === "mlp_neuron" && site.point === "mlp.post_act") ||
          (a.kind === "attention_head" && site.point === "attn.qk_probs")),
    );
    if (mine.length === 0) return undefined;
    const out = Float32Array.from(value);
    const touched: number[] = [];
    for (const a of mine) {
      // A head ablation sets the whole query row of that head (every key), with no renormalisation.
      const own =
        a.kind === "mlp_neuron"
          ? [a.token * F + a.index]
          : Array.from({ length: T }, (_, u) => (a.token * T + u) * H + a.index);
      for (const i of own) out[i] = a.value;
      touched.push(...own);
    }
    return {
      value: out,
      backward: (g) => {
        const gi = Float32Array.from(g);
        for (const i of touched) gi[i] = 0;
        return gi;
      },
    };
  };
}

/**
 * Splices autoencoders in at their site (TDB's fwd2 stage): out = decode(z′) + (x − decode(z)), where z′ is z
 * with ablations applied. Unedited, the output equals x; the latents sit in the graph so their gradient exists.
 */
function autoencoderHook(
  family: AutoencoderFamily,
  ablations: readonly ComponentAblation[],
  records: Map<number, LatentRecord>,
  T: number,
): ForwardHook {
  const point = SITE_POINT[family.site];
  return (value, site) => {
    if (site.point !== point || site.layer === null) return undefined;
    const ae = family.byLayer.get(site.layer);
    if (!ae) return undefined;
    const m = ae.nLatents;
    const preActivations = ae.encodePreAct(value, T);
    const z = ae.activate(preActivations, T);
    const mine = ablations.filter((a) => a.layer === site.layer);
    const record: LatentRecord = { values: z, gradient: null, preActivations };
    records.set(site.layer, record);
    if (mine.length === 0) {
      return {
        value,
        late: true,
        backward: (g) => {
          record.gradient = ae.decodeBackward(g, T);
          return g;
        },
      };
    }
    const ablated = Float32Array.from(z);
    const touched = mine.map((a) => a.token * m + a.index);
    mine.forEach((a, i) => {
      ablated[touched[i]] = a.value;
    });
    record.values = ablated;
    const reconstruction = ae.decode(ablated, T);
    const original = ae.decode(z, T);
    const out = new Float32Array(value.length);
    for (let i = 0; i < out.length; i++) out[i] = reconstruction[i] + (value[i] - original[i]);
    return {
      value: out,
      late: true,
      backward: (g) => {
        const dz = ae.decodeBackward(g, T);
        record.gradient = dz;
        // Un-ablated latents cancel between the reconstruction and the error term; ablated ones are constants
        // in the reconstruction, so only the error term's −decode(z) sends gradient back through the encoder.
        const back = new Float32Array(dz.length);
        for (const i of touched) back[i] = -dz[i];
        const dx = ae.encodeBackward(back, z, T);
        for (let i = 0; i < dx.length; i++) dx[i] += g[i];
        return dx;
      },
    };
  };
}
