/**
 * GPT-2 as Hugging Face defines it (learned positions, pre-LayerNorm, tied unembedding), one sequence at a time,
 * with a named hook at every activation TDB uses, a full activation cache, and a hand-written backward pass to
 * every hook point with TDB's detach options. Weights use HF's Conv1D layout: W is [in, out], y = x·W + b.
 */
import {
  allocateF32,
  declareConstant,
  defaultGemm,
  type Gemm,
  jobArray,
  jobArrayUnzeroed,
  jobCopy,
} from "@tdb/tensor";
import { type ForwardHook, type HookEdit, type HookPoint, type HookSite, hookKey } from "./hooks.js";
import {
  type Activation,
  type AttentionShape,
  activationBackward,
  activationForward,
  addBiasRows,
  addInto,
  attentionLogits,
  attentionLogitsBackward,
  attentionMix,
  attentionMixBackward,
  attentionSoftmax,
  attentionSoftmaxBackward,
  type LayerNormSaved,
  layerNormBackward,
  layerNormForward,
  splitQkv,
  sum,
} from "./layers.js";

/** The architecture fields the forward pass needs (a parsed config.json satisfies it). */
export interface Gpt2Architecture {
  nLayer: number;
  nHead: number;
  nEmbd: number;
  nInner: number;
  nPositions: number;
  vocabSize: number;
  layerNormEpsilon: number;
  activationFunction: string;
  scaleAttnWeights?: boolean;
  scaleAttnByInverseLayerIdx?: boolean;
}

export interface NamedTensor {
  shape: readonly number[];
  data: Float32Array;
}

interface LayerWeights {
  ln1Gain: Float32Array;
  ln1Bias: Float32Array;
  qkvWeight: Float32Array; // [d, 3d]
  qkvBias: Float32Array;
  attnOutWeight: Float32Array; // [d, d]
  attnOutBias: Float32Array;
  ln2Gain: Float32Array;
  ln2Bias: Float32Array;
  fcWeight: Float32Array; // [d, F]
  fcBias: Float32Array;
  projWeight: Float32Array; // [F, d]
  projBias: Float32Array;
}

export interface Gpt2Weights {
  tokenEmbedding: Float32Array; // [V, d]
  positionEmbedding: Float32Array; // [P, d]
  layers: LayerWeights[];
  lnFGain: Float32Array;
  lnFBias: Float32Array;
  /** [V, d]; the same array as tokenEmbedding when tied. */
  unembedding: Float32Array;
}

export interface ForwardOptions {
  hooks?: readonly ForwardHook[];
  /**
   * Run several sequences of this many tokens, concatenated in `tokens`, in one pass: attention stays within each
   * sequence and positions restart, while the weight products get all rows at once (faster at collation's sizes;
   * each row's values are the same as in a pass of its own). Only with `cache: false`, and hooks may only read:
   * their values hold the sequences one after another ([B·T, …]; attention [B·T, T, H]).
   */
  sequenceLength?: number;
  /** Positions whose logits are computed (default: every position). TDB needs only one row. */
  logitRows?: readonly number[];
  /** Keep every hook value and what backward needs (default true). */
  cache?: boolean;
  /**
   * End the pass once this site's hooks have run: nothing after it is computed, logits included (pass logitRows: []
   * and cache: false). For callers that read activations only up to there, such as collation.
   */
  stopAfter?: { point: HookPoint; layer: number | null };
}

/** Thrown by the forward pass's site() at options.stopAfter and caught by forward() itself. */
class StopForward {}

export interface ForwardResult {
  tokens: readonly number[];
  logitRows: readonly number[];
  /** [R, V] for R = logitRows.length */
  logits: Float32Array;
  /** Hook values after edits, keyed by hookKey(point, layer); empty when cache is false. */
  activations: Map<string, Float32Array>;
  /** @internal what backward needs */
  saved: SavedForward | null;
}

interface SavedLayer {
  ln1: LayerNormSaved;
  ln2: LayerNormSaved;
}

interface SavedForward {
  layers: SavedLayer[];
  lnF: LayerNormSaved;
  edits: Map<string, HookEdit[]>;
}

/** A gradient to inject: dL/d(value at the site), added to whatever flows there. */
export interface GradientSeed {
  point: HookPoint;
  layer: number | null;
  grad: Float32Array;
}

/** Sites whose gradient is cut in the backward pass (TDB's detach rules). */
export interface DetachSpec {
  /** LayerNorm scales treated as constants: "attn_ln.scale@L", "mlp_ln.scale@L", "resid.ln_f.scale". */
  layerNormScales?: readonly {
    point: "attn_ln.scale" | "mlp_ln.scale" | "resid.ln_f.scale";
    layer: number | null;
  }[];
  /** Attention inputs that receive no gradient at a layer (Q trace detaches K and V, and so on). */
  attention?: readonly { layer: number; q?: boolean; k?: boolean; v?: boolean }[];
}

export interface BackwardOptions {
  /**
   * Run one block alone (its seeds only, nothing from above) and return the gradient at the block's input
   * residual: TDB's "reconstituted" scalars of a traced node are differentiated this way.
   */
  block?: { layer: number; kind: "attention" | "mlp" } | { kind: "unembedding" };
}

export interface BackwardResult {
  /** dL/d(value) at every hook point reached, keyed by hookKey(point, layer) (value before late edits). */
  gradients: Map<string, Float32Array>;
  /** With options.block: the gradient at that block's input residual (null when nothing flowed). */
  blockInputGradient?: Float32Array | null;
}

export class Gpt2Model {
  readonly config: Gpt2Architecture;
  readonly weights: Gpt2Weights;
  readonly activation: Activation;
  private readonly gemm: Gemm;

  /**
   * The weights are the model's from now on: they must not be written to afterwards, since the block weights are
   * declared constant (a GEMM engine may keep them re-laid-out for its kernel).
   */
  constructor(config: Gpt2Architecture, weights: Gpt2Weights, gemm: Gemm = defaultGemm()) {
    if (config.nEmbd % config.nHead !== 0) {
      throw new Error(`n_embd (${config.nEmbd}) must be divisible by n_head (${config.nHead})`);
    }
    this.config = config;
    this.weights = weights;
    for (const layer of weights.layers)
      declareConstant(layer.qkvWeight, layer.attnOutWeight, layer.fcWeight, layer.projWeight);
    this.activation = toActivation(config.activationFunction);
    this.gemm = gemm;
  }

  /**
   * Builds the model from a Hugging Face GPT-2 state dict with the `transformer.` prefix already removed.
   * Weights are copied into GEMM-friendly memory once.
   */
  static fromStateDict(
    config: Gpt2Architecture,
    tensors: ReadonlyMap<string, NamedTensor>,
    options: { tieWordEmbeddings?: boolean; gemm?: Gemm } = {},
  ): Gpt2Model {
    const d = config.nEmbd;
    const f = config.nInner;
    const take = (name: string, shape: readonly number[]): Float32Array => {
      const t = tensors.get(name);
      if (!t) throw new Error(`missing weight '${name}'`);
      if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
        throw new Error(`weight '${name}' has shape [${t.shape}], expected [${shape}]`);
      }
      const out = allocateF32(t.data.length);
      out.set(t.data);
      return out;
    };
    const layers: LayerWeights[] = [];
    for (let l = 0; l < config.nLayer; l++) {
      const p = `h.${l}.`;
      layers.push({
        ln1Gain: take(`${p}ln_1.weight`, [d]),
        ln1Bias: take(`${p}ln_1.bias`, [d]),
        qkvWeight: take(`${p}attn.c_attn.weight`, [d, 3 * d]),
        qkvBias: take(`${p}attn.c_attn.bias`, [3 * d]),
        attnOutWeight: take(`${p}attn.c_proj.weight`, [d, d]),
        attnOutBias: take(`${p}attn.c_proj.bias`, [d]),
        ln2Gain: take(`${p}ln_2.weight`, [d]),
        ln2Bias: take(`${p}ln_2.bias`, [d]),
        fcWeight: take(`${p}mlp.c_fc.weight`, [d, f]),
        fcBias: take(`${p}mlp.c_fc.bias`, [f]),
        projWeight: take(`${p}mlp.c_proj.weight`, [f, d]),
        projBias: take(`${p}mlp.c_proj.bias`, [d]),
      });
    }
    const tokenEmbedding = take("wte.weight", [config.vocabSize, d]);
    const tied = options.tieWordEmbeddings ?? true;
    const unembedding =
      !tied && tensors.has("lm_head.weight") ? take("lm_head.weight", [config.vocabSize, d]) : tokenEmbedding;
    const weights: Gpt2Weights = {
      tokenEmbedding,
      positionEmbedding: take("wpe.weight", [config.nPositions, d]),
      layers,
      lnFGain: take("ln_f.weight", [d]),
      lnFBias: take("ln_f.bias", [d]),
      unembedding,
    };
    return new Gpt2Model(config, weights, options.gemm);
  }

  get headDim(): number {
    return this.config.nEmbd / this.config.nHead;
  }

  /** Factor applied to q and to k so that q·k equals HF's scaled attention logit. */
  qkScale(layer: number): number {
    const { scaleAttnWeights = true, scaleAttnByInverseLayerIdx = false } = this.config;
    let logitScale = scaleAttnWeights ? 1 / Math.sqrt(this.headDim) : 1;
    if (scaleAttnByInverseLayerIdx) logitScale /= layer + 1;
    return Math.sqrt(logitScale);
  }

  /**
   * Runs the model over `tokens`. Its arrays (activations, logits; backward's gradients likewise) come from
   * @tdb/tensor's jobArray: inside a recyclingArrays job they are valid until that job ends, elsewhere for as long
   * as they are referenced.
   */
  forward(tokens: readonly number[], options: ForwardOptions = {}): ForwardResult {
    const { nLayer, nEmbd: d, nInner: F, nPositions, vocabSize: V, layerNormEpsilon: eps } = this.config;
    // R rows: one sequence of T tokens, or several of sequenceLength each (attention stays within a sequence).
    const R = tokens.length;
    if (R === 0) throw new RangeError("cannot run the model on an empty token sequence");
    const T = options.sequenceLength ?? R;
    if (!Number.isInteger(T) || T < 1 || R % T !== 0)
      throw new RangeError(`sequenceLength ${T} does not divide the ${R} tokens into whole sequences`);
    const B = R / T;
    if (T > nPositions)
      throw new RangeError(`sequence of ${T} tokens exceeds the context window (${nPositions})`);
    for (const id of tokens) {
      if (!Number.isInteger(id) || id < 0 || id >= V)
        throw new RangeError(`token id ${id} is outside [0, ${V})`);
    }
    const hooks = options.hooks ?? [];
    const keep = options.cache ?? true;
    if (B > 1 && keep) throw new RangeError("several sequences run only without the cache (cache: false)");
    const stopKey = options.stopAfter ? hookKey(options.stopAfter.point, options.stopAfter.layer) : null;
    const stopLayer = options.stopAfter?.layer ?? null;
    if (stopLayer !== null && !(Number.isInteger(stopLayer) && stopLayer >= 0 && stopLayer < nLayer))
      throw new RangeError(`stopAfter layer ${stopLayer} is outside [0, ${nLayer})`);
    if (stopKey !== null && (keep || (options.logitRows ?? [0]).length > 0))
      throw new RangeError(
        `stopAfter ${stopKey} needs cache: false and logitRows: [] (the pass ends before them)`,
      );
    const activations = new Map<string, Float32Array>();
    const edits = new Map<string, HookEdit[]>();
    const H = this.config.nHead;
    const Dh = this.headDim;
    const shape: AttentionShape = { tokens: T, heads: H, headDim: Dh };

    // Every value passes through here: hooks may replace it, and the cache keeps it (before late edits).
    const site = (point: HookPoint, layer: number | null, value: Float32Array, dims: readonly number[]) => {
      let current = value;
      let cached = value;
      if (hooks.length > 0) {
        const s: HookSite = { point, layer, shape: dims };
        let late = false;
        const applied: HookEdit[] = [];
        for (const hook of hooks) {
          const edit = hook(current, s);
          if (!edit) continue;
          if (edit.value.length !== current.length) {
            throw new RangeError(
              `hook at ${hookKey(point, layer)} returned ${edit.value.length} values, expected ${current.length}`,
            );
          }
          late ||= edit.late === true;
          applied.push(late ? { ...edit, late: true } : edit);
          current = edit.value;
          if (!late) cached = current;
        }
        if (applied.length > 0 && B > 1)
          throw new Error(
            `hook at ${hookKey(point, layer)} edited a multi-sequence forward; hooks may only read there`,
          );
        if (applied.length > 0) edits.set(hookKey(point, layer), applied);
      }
      if (keep) activations.set(hookKey(point, layer), cached);
      if (stopKey !== null && hookKey(point, layer) === stopKey) throw new StopForward();
      return current;
    };

    // LayerNorm scales are observed, not replaced: their consumers were already computed from them.
    const readOnlySite = (point: HookPoint, layer: number | null, value: Float32Array) => {
      if (site(point, layer, value, [R]) !== value) {
        throw new Error(`${hookKey(point, layer)} is read-only: detach it in the backward pass instead`);
      }
    };

    const run = (): ForwardResult => {
      const w = this.weights;
      let x: Float32Array = jobArray(R * d);
      for (let t = 0; t < R; t++) {
        const te = tokens[t] * d;
        const pe = (t % T) * d;
        for (let i = 0; i < d; i++) x[t * d + i] = w.tokenEmbedding[te + i] + w.positionEmbedding[pe + i];
      }
      x = site("resid.post_emb", null, x, [R, d]);

      const savedLayers: SavedLayer[] = [];
      for (let l = 0; l < nLayer; l++) {
        const lw = w.layers[l];
        // Attention block.
        const ln1 = layerNormForward(x, lw.ln1Gain, lw.ln1Bias, R, d, eps, this.gemm);
        readOnlySite("attn_ln.scale", l, ln1.saved.scale);
        const h1 = site("resid.post_attn_ln", l, ln1.out, [R, d]);
        const qkv = jobArrayUnzeroed(R * 3 * d);
        this.gemm.nn(h1, lw.qkvWeight, qkv, R, d, 3 * d);
        addBiasRows(qkv, lw.qkvBias, R, 3 * d);
        let { q, k, v } = splitQkv(qkv, R, d, this.qkScale(l));
        q = site("attn.q", l, q, [R, H, Dh]);
        k = site("attn.k", l, k, [R, H, Dh]);
        v = site("attn.v", l, v, [R, H, Dh]);
        // Per sequence, concatenated ([B·T, T, H] pairs, [B·T, H, Dh] mixed values).
        const seqShape: AttentionShape = { ...shape, sequences: B };
        const logits = site("attn.qk_logits", l, attentionLogits(q, k, seqShape, this.gemm), [R, T, H]);
        const probs = site("attn.qk_probs", l, attentionSoftmax(logits, seqShape, this.gemm), [R, T, H]);
        const vOut = site("attn.v_out", l, attentionMix(probs, v, seqShape, this.gemm), [R, H, Dh]);
        let deltaAttn: Float32Array = jobArrayUnzeroed(R * d);
        this.gemm.nn(vOut, lw.attnOutWeight, deltaAttn, R, d, d);
        addBiasRows(deltaAttn, lw.attnOutBias, R, d);
        deltaAttn = site("resid.delta_attn", l, deltaAttn, [R, d]);
        x = site("resid.post_attn", l, sum(x, deltaAttn), [R, d]);

        // MLP block.
        const ln2 = layerNormForward(x, lw.ln2Gain, lw.ln2Bias, R, d, eps, this.gemm);
        readOnlySite("mlp_ln.scale", l, ln2.saved.scale);
        const h2 = site("resid.post_mlp_ln", l, ln2.out, [R, d]);
        let pre: Float32Array = jobArrayUnzeroed(R * F);
        this.gemm.nn(h2, lw.fcWeight, pre, R, d, F);
        addBiasRows(pre, lw.fcBias, R, F);
        pre = site("mlp.pre_act", l, pre, [R, F]);
        const post = site("mlp.post_act", l, activationForward(this.activation, pre, this.gemm), [R, F]);
        let deltaMlp: Float32Array = jobArrayUnzeroed(R * d);
        this.gemm.nn(post, lw.projWeight, deltaMlp, R, F, d);
        addBiasRows(deltaMlp, lw.projBias, R, d);
        deltaMlp = site("resid.delta_mlp", l, deltaMlp, [R, d]);
        x = site("resid.post_mlp", l, sum(x, deltaMlp), [R, d]);
        savedLayers.push({ ln1: ln1.saved, ln2: ln2.saved });
      }

      const lnF = layerNormForward(x, w.lnFGain, w.lnFBias, R, d, eps, this.gemm);
      readOnlySite("resid.ln_f.scale", null, lnF.saved.scale);
      const hF = site("resid.post_ln_f", null, lnF.out, [R, d]);
      const logitRows = options.logitRows ? [...options.logitRows] : Array.from({ length: R }, (_, t) => t);
      for (const r of logitRows) {
        if (!Number.isInteger(r) || r < 0 || r >= R)
          throw new RangeError(`logit row ${r} is outside [0, ${R})`);
      }
      const rowsIn = gatherRows(hF, logitRows, d);
      let logits: Float32Array = jobArrayUnzeroed(logitRows.length * V);
      this.gemm.nt(rowsIn, w.unembedding, logits, logitRows.length, d, V);
      logits = site("logits", null, logits, [logitRows.length, V]);

      return {
        tokens: [...tokens],
        logitRows,
        logits,
        activations,
        saved: keep ? { layers: savedLayers, lnF: lnF.saved, edits } : null,
      };
    };
    try {
      return run();
    } catch (error) {
      if (!(error instanceof StopForward)) throw error;
      return { tokens: [...tokens], logitRows: [], logits: new Float32Array(0), activations, saved: null };
    }
  }

  /**
   * Backpropagates the seeds to every hook point below them. Parameters get no gradient (TDB needs only
   * activation gradients). Gradients recorded at a site are with respect to the value after forward edits;
   * an edit's backward then maps them to the value before the edit.
   */
  backward(
    forward: ForwardResult,
    seeds: readonly GradientSeed[],
    detach: DetachSpec = {},
    options: BackwardOptions = {},
  ): BackwardResult {
    const saved = forward.saved;
    if (!saved) throw new Error("backward needs a forward pass run with cache enabled");
    const { nLayer, nEmbd: d, nInner: F, vocabSize: V } = this.config;
    const T = forward.tokens.length;
    const H = this.config.nHead;
    const Dh = this.headDim;
    const shape: AttentionShape = { tokens: T, heads: H, headDim: Dh };
    const acts = forward.activations;
    const w = this.weights;
    const gradients = new Map<string, Float32Array>();

    const seedsByKey = new Map<string, Float32Array[]>();
    let topLayer = -1;
    let needsTop = false;
    for (const seed of seeds) {
      const key = hookKey(seed.point, seed.layer);
      const list = seedsByKey.get(key) ?? [];
      list.push(seed.grad);
      seedsByKey.set(key, list);
      if (seed.layer === null) {
        if (seed.point !== "resid.post_emb") needsTop = true;
      } else topLayer = Math.max(topLayer, seed.layer);
    }
    if (needsTop) topLayer = nLayer - 1;
    const scaleDetached = new Set(
      (detach.layerNormScales ?? []).map((s) =>
        hookKey(s.point, s.point === "resid.ln_f.scale" ? null : s.layer),
      ),
    );
    const attnDetach = new Map((detach.attention ?? []).map((a) => [a.layer, a]));

    // Maps the incoming gradient through late edits, adds seeds, records it, then maps it through the rest.
    const site = (point: HookPoint, layer: number | null, grad: Float32Array | null, size: number) => {
      const key = hookKey(point, layer);
      const siteEdits = saved.edits.get(key) ?? [];
      let g = grad;
      let i = siteEdits.length - 1;
      for (; i >= 0 && siteEdits[i].late; i--) {
        const back = siteEdits[i].backward;
        if (g && back) g = back(g);
      }
      const extra = seedsByKey.get(key);
      if (extra) {
        g = g ? jobCopy(g) : jobArray(size);
        for (const s of extra) {
          if (s.length !== size)
            throw new RangeError(`gradient seed at ${key} has ${s.length} values, expected ${size}`);
          addInto(g, s);
        }
      }
      if (!g) return null;
      gradients.set(key, g);
      for (; i >= 0; i--) {
        const back = siteEdits[i].backward;
        if (back) g = back(g);
      }
      return g;
    };
    const act = (point: HookPoint, layer: number | null): Float32Array => {
      const a = acts.get(hookKey(point, layer));
      if (!a) throw new Error(`activation ${hookKey(point, layer)} missing from the cache`);
      return a;
    };

    // Logits → final residual.
    let dx: Float32Array | null = null;
    let dhF: Float32Array | null = null;
    const dLogits = site("logits", null, null, forward.logitRows.length * V);
    if (dLogits) {
      dhF = jobArray(T * d);
      unembedBackward(dLogits, w.unembedding, forward.logitRows, dhF, d, V, this.gemm);
    }
    const dh = site("resid.post_ln_f", null, dhF, T * d);
    if (dh) dx = layerNormBackward(dh, w.lnFGain, saved.lnF, T, d, scaleDetached.has("resid.ln_f.scale"));
    if (options.block?.kind === "unembedding") return { gradients, blockInputGradient: dx };

    const mlpBlock = (l: number, dxIn: Float32Array | null): Float32Array | null => {
      const lw = w.layers[l];
      let dx = dxIn;
      dx = site("resid.post_mlp", l, dx, T * d);
      const dDeltaMlp = site("resid.delta_mlp", l, dx ? jobCopy(dx) : null, T * d);
      let dPost: Float32Array | null = null;
      if (dDeltaMlp) dPost = ntOfNonzeroRows(this.gemm, dDeltaMlp, lw.projWeight, T, d, F);
      dPost = site("mlp.post_act", l, dPost, T * F);
      let dPre: Float32Array | null = dPost
        ? activationBackward(this.activation, act("mlp.pre_act", l), dPost)
        : null;
      dPre = site("mlp.pre_act", l, dPre, T * F);
      let dh2: Float32Array | null = null;
      if (dPre) dh2 = ntOfNonzeroRows(this.gemm, dPre, lw.fcWeight, T, F, d);
      dh2 = site("resid.post_mlp_ln", l, dh2, T * d);
      if (dh2) {
        const dLn = layerNormBackward(
          dh2,
          lw.ln2Gain,
          saved.layers[l].ln2,
          T,
          d,
          scaleDetached.has(hookKey("mlp_ln.scale", l)),
        );
        dx = dx ? addInto(jobCopy(dx), dLn) : dLn;
      }

      return dx;
    };

    const attentionBlock = (l: number, dxIn: Float32Array | null): Float32Array | null => {
      const lw = w.layers[l];
      let dx = dxIn;
      dx = site("resid.post_attn", l, dx, T * d);
      const dDeltaAttn = site("resid.delta_attn", l, dx ? jobCopy(dx) : null, T * d);
      let dvOut: Float32Array | null = null;
      if (dDeltaAttn) dvOut = ntOfNonzeroRows(this.gemm, dDeltaAttn, lw.attnOutWeight, T, d, d);
      dvOut = site("attn.v_out", l, dvOut, T * d);
      let dProbs: Float32Array | null = null;
      let dv: Float32Array | null = null;
      if (dvOut) {
        const mixed = attentionMixBackward(
          dvOut,
          act("attn.qk_probs", l),
          act("attn.v", l),
          shape,
          this.gemm,
        );
        dProbs = mixed.dProbs;
        dv = mixed.dv;
      }
      dProbs = site("attn.qk_probs", l, dProbs, T * T * H);
      let dLogitsAttn = dProbs ? attentionSoftmaxBackward(dProbs, act("attn.qk_probs", l), shape) : null;
      dLogitsAttn = site("attn.qk_logits", l, dLogitsAttn, T * T * H);
      let dq: Float32Array | null = null;
      let dk: Float32Array | null = null;
      if (dLogitsAttn) {
        const qk = attentionLogitsBackward(dLogitsAttn, act("attn.q", l), act("attn.k", l), shape, this.gemm);
        dq = qk.dq;
        dk = qk.dk;
      }
      const cut = attnDetach.get(l);
      if (cut?.q) dq = null;
      if (cut?.k) dk = null;
      if (cut?.v) dv = null;
      dq = site("attn.q", l, dq, T * d);
      dk = site("attn.k", l, dk, T * d);
      dv = site("attn.v", l, dv, T * d);
      let dh1: Float32Array | null = null;
      if (dq || dk || dv) {
        const c = this.qkScale(l);
        const dQkv = jobArray(T * 3 * d);
        for (let t = 0; t < T; t++) {
          const o = t * 3 * d;
          for (let i = 0; i < d; i++) {
            if (dq) dQkv[o + i] = dq[t * d + i] * c;
            if (dk) dQkv[o + d + i] = dk[t * d + i] * c;
            if (dv) dQkv[o + 2 * d + i] = dv[t * d + i];
          }
        }
        dh1 = jobArray(T * d);
        this.gemm.nt(dQkv, lw.qkvWeight, dh1, T, 3 * d, d);
      }
      dh1 = site("resid.post_attn_ln", l, dh1, T * d);
      if (dh1) {
        const dLn = layerNormBackward(
          dh1,
          lw.ln1Gain,
          saved.layers[l].ln1,
          T,
          d,
          scaleDetached.has(hookKey("attn_ln.scale", l)),
        );
        dx = dx ? addInto(jobCopy(dx), dLn) : dLn;
      }
      return dx;
    };

    if (options.block) {
      const { layer, kind } = options.block;
      const input = kind === "mlp" ? mlpBlock(layer, null) : attentionBlock(layer, null);
      return { gradients, blockInputGradient: input };
    }
    for (let l = nLayer - 1; l >= 0; l--) {
      if (l > topLayer && dx === null) continue;
      dx = attentionBlock(l, mlpBlock(l, dx));
    }
    site("resid.post_emb", null, dx, T * d);
    return { gradients };
  }
}

function toActivation(name: string): Activation {
  if (name === "gelu_new" || name === "gelu_pytorch_tanh") return "gelu_new";
  if (name === "gelu" || name === "relu") return name;
  throw new Error(
    `unsupported activation_function '${name}' (supported: gelu_new, gelu_pytorch_tanh, gelu, relu)`,
  );
}

/** The given rows of x [·, dim], in that order, as a new [rows.length, dim] array. */
/**
 * x·Wtᵀ for x [rows × k] and Wt [n × k], computing only the rows of x that hold a non-zero value (the others give
 * zero rows): above the last attention layer a loss at one token leaves one row of gradient.
 */
function ntOfNonzeroRows(
  gemm: Gemm,
  x: Float32Array,
  wt: Float32Array,
  rows: number,
  k: number,
  n: number,
): Float32Array {
  const out = jobArray(rows * n);
  const live = nonzeroRows(x, rows, k);
  if (live.length === rows) gemm.nt(x, wt, out, rows, k, n);
  else if (live.length > 0) {
    const part = jobArray(live.length * n);
    gemm.nt(gatherRows(x, live, k), wt, part, live.length, k, n);
    live.forEach((r, i) => {
      out.set(part.subarray(i * n, (i + 1) * n), r * n);
    });
  }
  return out;
}

/** Indices of the rows of x [rows × dim] that hold a value other than zero (NaN counts as one). */
export function nonzeroRows(x: Float32Array, rows: number, dim: number): number[] {
  const live: number[] = [];
  for (let r = 0; r < rows; r++) {
    for (let i = r * dim; i < (r + 1) * dim; i++) {
      if (x[i] !== 0) {
        live.push(r);
        break;
      }
    }
  }
  return live;
}

export function gatherRows(x: Float32Array, rows: readonly number[], dim: number): Float32Array {
  const out = jobArray(rows.length * dim);
  rows.forEach((r, i) => {
    out.set(x.subarray(r * dim, (r + 1) * dim), i * dim);
  });
  return out;
}

/**
 * dh[rows] += dLogits · W_U. Direction-of-interest losses touch a handful of vocabulary entries, so sparse
 * gradients skip the [R×V]·[V×d] GEMM and add the few embedding rows directly.
 */
function unembedBackward(
  dLogits: Float32Array,
  unembedding: Float32Array,
  rows: readonly number[],
  dh: Float32Array,
  d: number,
  V: number,
  gemm: Gemm,
): void {
  let nonZero = 0;
  for (let i = 0; i < dLogits.length; i++) if (dLogits[i] !== 0) nonZero++;
  if (nonZero * 64 < dLogits.length) {
    rows.forEach((row, r) => {
      const o = row * d;
      for (let v = 0; v < V; v++) {
        const g = dLogits[r * V + v];
        if (g === 0) continue;
        const e = v * d;
        for (let i = 0; i < d; i++) dh[o + i] += g * unembedding[e + i];
      }
    });
    return;
  }
  const dense = jobArray(rows.length * d);
  gemm.nn(dLogits, unembedding, dense, rows.length, V, d);
  rows.forEach((row, r) => {
    for (let i = 0; i < d; i++) dh[row * d + i] += dense[r * d + i];
  });
}
