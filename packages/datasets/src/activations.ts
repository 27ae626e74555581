/**
 * Runs the model over one sequence (forward only, no cache, no logits) and returns each group's values as
 * [positions, components]: neurons' post-activations [T, F]; heads' attention write norms over the lower
 * triangle [T(T+1)/2, H] (pair p = (t, u ≤ t) in row-major order, TDB's flattening); latents [T, m].
 */
import type { AutoencoderSite, ForwardHook, Gpt2Model, HookPoint, SparseAutoencoder } from "@tdb/model";
import { hookKey } from "@tdb/model";
import { allocateF32, defaultGemm, type Gemm, jobArrayUnzeroed } from "@tdb/tensor";
import type { ComponentKind, GroupSpec } from "./components.js";

/** Autoencoders of one site, by layer (the same shape as @tdb/attribution's AutoencoderFamily). */
export interface AutoencoderSet {
  name: string;
  site: AutoencoderSite;
  byLayer: ReadonlyMap<number, SparseAutoencoder>;
}

export interface ExtractorOptions {
  /** Collate MLP neurons (default true). */
  neurons?: boolean;
  /** Collate attention heads (default true). */
  heads?: boolean;
  mlpAutoencoder?: AutoencoderSet | null;
  attentionAutoencoder?: AutoencoderSet | null;
}

const SITE_POINT: Readonly<Record<AutoencoderSite, HookPoint>> = {
  mlp_post_act: "mlp.post_act",
  resid_delta_mlp: "resid.delta_mlp",
  resid_delta_attn: "resid.delta_attn",
};

/** Order of the points collation reads within a layer's forward pass (for stopping the pass after the last). */
const POINT_ORDER: readonly HookPoint[] = [
  "attn.v",
  "attn.qk_probs",
  "resid.delta_attn",
  "mlp.post_act",
  "resid.delta_mlp",
];

interface GroupSource {
  spec: GroupSpec;
  compute: (captured: ReadonlyMap<string, Float32Array>, T: number) => Float32Array;
}

export class ActivationExtractor {
  readonly groups: readonly GroupSpec[];
  private readonly sources: GroupSource[];
  private readonly wanted: Set<string>;
  /** The last wanted site in forward order: the pass ends there (the rest of the model is never read). */
  private last: { point: HookPoint; layer: number } | null = null;
  private readonly gemm: Gemm;
  /** Per layer, W_O[h]·W_O[h]ᵀ for each head [H, Dh, Dh]: ‖v·W_O[h]‖² = v·G·vᵀ needs Dh² per token, not Dh·d. */
  private readonly outputGram: Float32Array[] = [];

  constructor(
    private readonly model: Gpt2Model,
    options: ExtractorOptions = {},
  ) {
    const { nLayer, nInner: F, nHead: H } = model.config;
    this.gemm = defaultGemm();
    this.sources = [];
    this.wanted = new Set();
    const layers = Array.from({ length: nLayer }, (_, l) => l);
    if (options.neurons ?? true) {
      for (const l of layers) {
        this.want("mlp.post_act", l);
        this.sources.push({
          spec: { kind: "mlp_neuron", layer: l, size: F },
          compute: (c) => c.get(hookKey("mlp.post_act", l))!,
        });
      }
    }
    if (options.heads ?? true) {
      for (const l of layers) {
        this.want("attn.qk_probs", l);
        this.want("attn.v", l);
        this.outputGram.push(this.headGrams(l));
        this.sources.push({
          spec: { kind: "attention_head", layer: l, size: H },
          compute: (c, T) => this.headWriteNorms(c, l, T),
        });
      }
    }
    const addAutoencoder = (set: AutoencoderSet | null | undefined, kind: ComponentKind) => {
      if (!set) return;
      const point = SITE_POINT[set.site];
      for (const l of [...set.byLayer.keys()].sort((a, b) => a - b)) {
        if (l < 0 || l >= nLayer)
          throw new Error(`autoencoder ${set.name} has layer ${l}; the model has ${nLayer}`);
        const ae = set.byLayer.get(l)!;
        const width = point === "mlp.post_act" ? F : model.config.nEmbd;
        if (ae.nInputs !== width) {
          throw new Error(
            `autoencoder ${set.name} layer ${l} reads ${ae.nInputs} values; ${point} has ${width}`,
          );
        }
        this.want(point, l);
        this.sources.push({
          spec: { kind, layer: l, size: ae.nLatents },
          compute: (c, T) => ae.encode(c.get(hookKey(point, l))!, T),
        });
      }
    };
    if (options.mlpAutoencoder && options.mlpAutoencoder.site === "resid_delta_attn") {
      throw new Error(
        `--mlp-autoencoder ${options.mlpAutoencoder.name} reads resid_delta_attn; pass it as --attn-autoencoder`,
      );
    }
    if (options.attentionAutoencoder && options.attentionAutoencoder.site !== "resid_delta_attn") {
      throw new Error(
        `--attn-autoencoder ${options.attentionAutoencoder.name} reads ${options.attentionAutoencoder.site}; pass it as --mlp-autoencoder`,
      );
    }
    addAutoencoder(options.mlpAutoencoder, "mlp_autoencoder_latent");
    addAutoencoder(options.attentionAutoencoder, "attention_autoencoder_latent");
    this.groups = this.sources.map((s) => s.spec);
  }

  private want(point: HookPoint, layer: number): void {
    this.wanted.add(hookKey(point, layer));
    const rank = (site: { point: HookPoint; layer: number }) =>
      site.layer * POINT_ORDER.length + POINT_ORDER.indexOf(site.point);
    if (this.last === null || rank({ point, layer }) > rank(this.last)) this.last = { point, layer };
  }

  /** Values of every group for one sequence, in `groups` order. */
  run(tokens: ArrayLike<number>): Float32Array[] {
    return this.runMany([tokens])[0];
  }

  /**
   * run() for several sequences of equal length in one forward pass (the weight products then have more rows, which
   * is faster; every value equals its sequence's own pass bit for bit).
   */
  runMany(sequences: readonly ArrayLike<number>[]): Float32Array[][] {
    if (sequences.length === 0) return [];
    const T = sequences[0].length;
    if (sequences.some((s) => s.length !== T))
      throw new RangeError("runMany: sequences must have the same length");
    const captured = new Map<string, Float32Array>();
    const wanted = this.wanted;
    // The forward pass allocates every hook value afresh and never writes it again, so keeping references is safe.
    const capture: ForwardHook = (value, site) => {
      const key = hookKey(site.point, site.layer);
      if (wanted.has(key)) captured.set(key, value);
      return undefined;
    };
    const tokens = sequences.flatMap((s) => Array.from(s));
    this.model.forward(tokens, {
      hooks: [capture],
      cache: false,
      logitRows: [],
      sequenceLength: T,
      stopAfter: this.last ?? undefined,
    });
    const B = sequences.length;
    return sequences.map((_, b) => {
      // Every captured value holds the sequences one after another, in equal parts.
      const own = new Map<string, Float32Array>();
      for (const [key, value] of captured) {
        const size = value.length / B;
        own.set(key, B === 1 ? value : value.subarray(b * size, (b + 1) * size));
      }
      return this.sources.map((s) => s.compute(own, T));
    });
  }

  private headGrams(layer: number): Float32Array {
    const { nEmbd: d, nHead: H } = this.model.config;
    const Dh = d / H;
    const wO = this.model.weights.layers[layer].attnOutWeight; // [H·Dh, d]
    const grams = allocateF32(H * Dh * Dh);
    for (let h = 0; h < H; h++) {
      const g = grams.subarray(h * Dh * Dh, (h + 1) * Dh * Dh);
      for (let i = 0; i < Dh; i++) {
        for (let j = i; j < Dh; j++) {
          const ri = (h * Dh + i) * d;
          const rj = (h * Dh + j) * d;
          let s = 0;
          for (let x = 0; x < d; x++) s += wO[ri + x] * wO[rj + x];
          g[i * Dh + j] = s;
          g[j * Dh + i] = s;
        }
      }
    }
    return grams;
  }

  /** A[t,u,h]·‖V[u,h]·W_O[h]‖ over the lower triangle, [T(T+1)/2, H]. */
  private headWriteNorms(
    captured: ReadonlyMap<string, Float32Array>,
    layer: number,
    T: number,
  ): Float32Array {
    const { nEmbd: d, nHead: H } = this.model.config;
    const Dh = d / H;
    const probs = captured.get(hookKey("attn.qk_probs", layer))!; // [T, T, H]
    const v = captured.get(hookKey("attn.v", layer))!; // [T, H, Dh]
    const grams = this.outputGram[layer]; // heads are collated for every layer or none
    // Job arrays: inside collation's pass they are recycled with the pass (observe copies what it keeps).
    const norms = jobArrayUnzeroed(T * H);
    const kernel = this.gemm.heads;
    if (kernel) kernel.quadraticNorms(v, grams, norms, T, H, Dh);
    else {
      const vh = jobArrayUnzeroed(T * Dh);
      const y = jobArrayUnzeroed(T * Dh);
      for (let h = 0; h < H; h++) {
        for (let u = 0; u < T; u++) for (let i = 0; i < Dh; i++) vh[u * Dh + i] = v[u * d + h * Dh + i];
        this.gemm.nn(vh, grams.subarray(h * Dh * Dh, (h + 1) * Dh * Dh), y, T, Dh, Dh);
        for (let u = 0; u < T; u++) {
          let sq = 0;
          for (let i = 0; i < Dh; i++) sq += y[u * Dh + i] * vh[u * Dh + i];
          norms[u * H + h] = Math.sqrt(Math.max(sq, 0));
        }
      }
    }
    const out = jobArrayUnzeroed(((T * (T + 1)) / 2) * H);
    // Query t's pairs (u ≤ t, every head) are (t + 1)·H values in a row, in probs, norms and out alike.
    let o = 0;
    for (let t = 0; t < T; t++) {
      const a = t * T * H;
      const n = (t + 1) * H;
      for (let i = 0; i < n; i++) out[o + i] = probs[a + i] * norms[i];
      o += n;
    }
    return out;
  }
}
