/**
 * Sparse autoencoders as OpenAI's sparse_autoencoder defines them:
 *   pre = (x − b_in)·W_encᵀ + b_lat,  z = act(pre),  x̂ = z·W_decᵀ + b_out
 * with b_in = b_out = pre_bias in OpenAI's format. SAELens folders map onto the same parameters (b_in is zero
 * there when apply_b_dec_to_input is false).
 */
import { allocateF32, defaultGemm, type Gemm } from "@tdb/tensor";

export type AutoencoderActivation = { kind: "relu" } | { kind: "topk"; k: number } | { kind: "identity" };

/** Where in the model the autoencoder reads and writes (TDB's names). */
export type AutoencoderSite = "mlp_post_act" | "resid_delta_mlp" | "resid_delta_attn";

export const AUTOENCODER_SITES: readonly AutoencoderSite[] = [
  "mlp_post_act",
  "resid_delta_mlp",
  "resid_delta_attn",
];

export interface AutoencoderParameters {
  /** [nLatents, nInputs] */
  encoderWeight: Float32Array;
  /** [nInputs, nLatents] (OpenAI's decoder.weight layout) */
  decoderWeight: Float32Array;
  latentBias: Float32Array;
  inputBias: Float32Array;
  outputBias: Float32Array;
  nInputs: number;
  nLatents: number;
  activation: AutoencoderActivation;
  /** Fraction of tokens on which each latent fired during training, when known (dead-latent detection). */
  latentsActivationFrequency?: Float32Array | null;
}

export class SparseAutoencoder {
  readonly nInputs: number;
  readonly nLatents: number;
  readonly activation: AutoencoderActivation;
  readonly encoderWeight: Float32Array;
  readonly decoderWeight: Float32Array;
  readonly latentBias: Float32Array;
  readonly inputBias: Float32Array;
  readonly outputBias: Float32Array;
  readonly latentsActivationFrequency: Float32Array | null;
  private readonly gemm: Gemm;

  constructor(p: AutoencoderParameters, gemm: Gemm = defaultGemm()) {
    const { nInputs: n, nLatents: m } = p;
    const check = (name: string, a: Float32Array, size: number) => {
      if (a.length !== size) throw new Error(`autoencoder ${name} has ${a.length} values, expected ${size}`);
    };
    check("encoder weight", p.encoderWeight, m * n);
    check("decoder weight", p.decoderWeight, n * m);
    check("latent bias", p.latentBias, m);
    check("input bias", p.inputBias, n);
    check("output bias", p.outputBias, n);
    if (p.activation.kind === "topk" && !(Number.isInteger(p.activation.k) && p.activation.k > 0)) {
      throw new Error(`TopK autoencoder needs a positive whole k, got ${p.activation.k}`);
    }
    this.nInputs = n;
    this.nLatents = m;
    this.activation = p.activation;
    this.encoderWeight = copyToGemmMemory(p.encoderWeight);
    this.decoderWeight = copyToGemmMemory(p.decoderWeight);
    this.latentBias = p.latentBias;
    this.inputBias = p.inputBias;
    this.outputBias = p.outputBias;
    this.latentsActivationFrequency = p.latentsActivationFrequency ?? null;
    this.gemm = gemm;
  }

  /** [rows, nLatents] pre-activations. */
  encodePreAct(x: Float32Array, rows: number): Float32Array {
    const n = this.nInputs;
    const centered = new Float32Array(rows * n);
    for (let r = 0; r < rows; r++) {
      for (let i = 0; i < n; i++) centered[r * n + i] = x[r * n + i] - this.inputBias[i];
    }
    const pre = new Float32Array(rows * this.nLatents);
    this.gemm.nt(centered, this.encoderWeight, pre, rows, n, this.nLatents);
    addRows(pre, this.latentBias, rows, this.nLatents);
    return pre;
  }

  activate(pre: Float32Array, rows: number): Float32Array {
    const m = this.nLatents;
    const z = new Float32Array(pre.length);
    const act = this.activation;
    if (act.kind === "identity") {
      z.set(pre);
    } else if (act.kind === "relu") {
      for (let i = 0; i < pre.length; i++) z[i] = Math.max(pre[i], 0);
    } else {
      const k = Math.min(act.k, m);
      for (let r = 0; r < rows; r++) {
        for (const i of topIndices(pre.subarray(r * m, (r + 1) * m), k)) {
          z[r * m + i] = Math.max(pre[r * m + i], 0);
        }
      }
    }
    return z;
  }

  encode(x: Float32Array, rows: number): Float32Array {
    return this.activate(this.encodePreAct(x, rows), rows);
  }

  /** [rows, nInputs] reconstruction. */
  decode(z: Float32Array, rows: number): Float32Array {
    const out = new Float32Array(rows * this.nInputs);
    this.gemm.nt(z, this.decoderWeight, out, rows, this.nLatents, this.nInputs);
    addRows(out, this.outputBias, rows, this.nInputs);
    return out;
  }

  /** dL/dz from dL/dx̂: z·W_decᵀ's transpose, i.e. dz = dx̂·W_dec. */
  decodeBackward(dOut: Float32Array, rows: number): Float32Array {
    const dz = new Float32Array(rows * this.nLatents);
    this.gemm.nn(dOut, this.decoderWeight, dz, rows, this.nInputs, this.nLatents);
    return dz;
  }

  /** dL/dx from dL/dz through the activation: a latent passes gradient where it fired (z > 0; TopK selects too). */
  encodeBackward(dz: Float32Array, z: Float32Array, rows: number): Float32Array {
    const dPre = new Float32Array(dz.length);
    for (let i = 0; i < dz.length; i++) {
      const passes = this.activation.kind === "identity" ? true : z[i] > 0;
      dPre[i] = passes ? dz[i] : 0;
    }
    const dx = new Float32Array(rows * this.nInputs);
    this.gemm.nn(dPre, this.encoderWeight, dx, rows, this.nLatents, this.nInputs);
    return dx;
  }

  /** Row ℓ of the decoder as a vector in input space (the latent's write direction). */
  decoderColumn(latent: number): Float32Array {
    const n = this.nInputs;
    const m = this.nLatents;
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.decoderWeight[i * m + latent];
    return out;
  }

  encoderRow(latent: number): Float32Array {
    return this.encoderWeight.subarray(latent * this.nInputs, (latent + 1) * this.nInputs);
  }

  /**
   * Builds an autoencoder from OpenAI's state-dict names (pre_bias, encoder.weight, latent_bias,
   * decoder.weight, optional latents_activation_frequency). `activation` comes from the file's metadata.
   */
  static fromOpenAiStateDict(
    tensors: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array }>,
    activation: AutoencoderActivation,
    source = "autoencoder",
  ): SparseAutoencoder {
    const get = (name: string) => {
      const t = tensors.get(name);
      if (!t) throw new Error(`${source}: missing tensor '${name}' (OpenAI autoencoder format)`);
      return t;
    };
    const enc = get("encoder.weight");
    if (enc.shape.length !== 2) throw new Error(`${source}: encoder.weight must be 2-D, got [${enc.shape}]`);
    const [nLatents, nInputs] = enc.shape;
    const dec = get("decoder.weight");
    if (dec.shape[0] !== nInputs || dec.shape[1] !== nLatents) {
      throw new Error(
        `${source}: decoder.weight has shape [${dec.shape}], expected [${nInputs}, ${nLatents}]`,
      );
    }
    const preBias = get("pre_bias").data;
    return new SparseAutoencoder({
      encoderWeight: enc.data,
      decoderWeight: dec.data,
      latentBias: get("latent_bias").data,
      inputBias: preBias,
      outputBias: preBias,
      nInputs,
      nLatents,
      activation,
      latentsActivationFrequency: tensors.get("latents_activation_frequency")?.data ?? null,
    });
  }

  /**
   * TDB drops dead latents (activation frequency < 1e-8) by cutting the last `count` latents, which assumes
   * training sorted them to the end. Indices of the kept latents are unchanged.
   */
  withoutLastLatents(count: number): SparseAutoencoder {
    if (count <= 0) return this;
    const m = this.nLatents - count;
    const n = this.nInputs;
    const dec = new Float32Array(n * m);
    for (let i = 0; i < n; i++)
      dec.set(this.decoderWeight.subarray(i * this.nLatents, i * this.nLatents + m), i * m);
    return new SparseAutoencoder(
      {
        encoderWeight: this.encoderWeight.slice(0, m * n),
        decoderWeight: dec,
        latentBias: this.latentBias.slice(0, m),
        inputBias: this.inputBias,
        outputBias: this.outputBias,
        nInputs: n,
        nLatents: m,
        activation: this.activation,
        latentsActivationFrequency: this.latentsActivationFrequency?.slice(0, m) ?? null,
      },
      this.gemm,
    );
  }

  /** Number of latents whose recorded activation frequency is below 1e-8 (0 when unknown). */
  deadLatentCount(): number {
    const f = this.latentsActivationFrequency;
    if (!f) return 0;
    let n = 0;
    for (const v of f) if (v < 1e-8) n++;
    return n;
  }
}

/** Parses the activation of an autoencoder from OpenAI-style metadata ("ReLU", "TopK" + k, "Identity"). */
export function parseAutoencoderActivation(
  name: string | undefined,
  k?: number | string,
): AutoencoderActivation {
  const normalized = (name ?? "ReLU").toLowerCase();
  if (normalized === "relu") return { kind: "relu" };
  if (normalized === "identity") return { kind: "identity" };
  if (normalized === "topk") {
    const kk = typeof k === "string" ? Number(k) : k;
    if (kk === undefined || !Number.isInteger(kk) || kk <= 0)
      throw new Error(`TopK autoencoder needs k, got ${k}`);
    return { kind: "topk", k: kk };
  }
  throw new Error(`unsupported autoencoder activation '${name}' (supported: ReLU, TopK, Identity)`);
}

/**
 * Indices of the k largest values (ties to the lower index), in no particular order: a bounded min-heap, so
 * a row costs O(m log k) instead of sorting all m latents.
 */
export function topIndices(values: Float32Array, k: number): number[] {
  const size = Math.min(k, values.length);
  if (size <= 0) return [];
  const heapValue = new Float64Array(size);
  const heapIndex = new Int32Array(size);
  // a ranks below b: smaller value, or equal value and larger index.
  const below = (va: number, ia: number, vb: number, ib: number) => va < vb || (va === vb && ia > ib);
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (n < size) {
      let c = n++;
      while (c > 0) {
        const p = (c - 1) >> 1;
        if (!below(v, i, heapValue[p], heapIndex[p])) break;
        heapValue[c] = heapValue[p];
        heapIndex[c] = heapIndex[p];
        c = p;
      }
      heapValue[c] = v;
      heapIndex[c] = i;
    } else if (below(heapValue[0], heapIndex[0], v, i)) {
      let c = 0;
      for (;;) {
        const l = 2 * c + 1;
        if (l >= size) break;
        const r = l + 1;
        const m = r < size && below(heapValue[r], heapIndex[r], heapValue[l], heapIndex[l]) ? r : l;
        if (!below(heapValue[m], heapIndex[m], v, i)) break;
        heapValue[c] = heapValue[m];
        heapIndex[c] = heapIndex[m];
        c = m;
      }
      heapValue[c] = v;
      heapIndex[c] = i;
    }
  }
  return Array.from(heapIndex);
}

function addRows(x: Float32Array, bias: Float32Array, rows: number, dim: number): void {
  for (let r = 0; r < rows; r++) for (let i = 0; i < dim; i++) x[r * dim + i] += bias[i];
}

function copyToGemmMemory(a: Float32Array): Float32Array {
  const out = allocateF32(a.length);
  out.set(a);
  return out;
}
