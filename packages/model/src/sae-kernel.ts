/**
 * The WebAssembly SIMD kernels of assembly/sae-kernel.ts (TopK selection, sparse decode and backward) with their
 * own memory, laid out once for fixed sizes so the typed-array views stay valid.
 */
import { saeKernelWasmBase64 } from "./sae-kernel-wasm.generated.js";

interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
  validate(bytes: Uint8Array): boolean;
}

interface KernelExports {
  memory: WasmMemory;
  selectTopK(pre: number, rows: number, m: number, k: number, sel: number): void;
  addRows(x: number, bias: number, rows: number, n: number): void;
  subtractRows(x: number, bias: number, out: number, rows: number, n: number): void;
  decode(D: number, counts: number, byRow: number, byValue: number, m: number, n: number, xhat: number): void;
  residual(xhat: number, x: number, count: number, scale: number): number;
  columnSums(g: number, rows: number, n: number, out: number): void;
  backward(
    D: number,
    gD: number,
    gE: number,
    gLat: number,
    counts: number,
    byRow: number,
    byValue: number,
    g: number,
    xc: number,
    m: number,
    n: number,
  ): void;
  removeParallel(g: number, D: number, m: number, n: number): void;
  normalizeRows(D: number, m: number, n: number): void;
  adam(
    p: number,
    g: number,
    m: number,
    v: number,
    count: number,
    lr: number,
    c1: number,
    c2: number,
    beta1: number,
    beta2: number,
    eps: number,
  ): void;
  subtractWeightedRows(w: number, E: number, m: number, n: number, out: number): void;
}

type Block =
  | "D"
  | "gD"
  | "gE"
  | "gLat"
  | "gPre"
  | "pre"
  | "x"
  | "xc"
  | "xhat"
  | "sel"
  | "counts"
  | "byRow"
  | "byValue"
  | "preBias"
  | "latentBias"
  | "E"
  | "mE"
  | "vE"
  | "mD"
  | "vD";

/** The training blocks (encoder and Adam moments) are left out beyond this, where wasm32's 4 GiB gets tight. */
const TRAINING_LIMIT_BYTES = 3 * 1024 * 1024 * 1024;

const PAGE = 65536;
/** The kernel's static data sits below this; blocks are laid out from here. */
const BASE = PAGE;

let module: object | null | undefined;

function decodeBase64(text: string): Uint8Array {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const clean = text.replace(/=+$/, "");
  const out = new Uint8Array(Math.floor((clean.length * 3) / 4));
  let bits = 0;
  let value = 0;
  let at = 0;
  for (const ch of clean) {
    value = (value << 6) | alphabet.indexOf(ch);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[at++] = (value >> bits) & 0xff;
    }
  }
  return out;
}

function compiledModule(): object | null {
  if (module !== undefined) return module;
  try {
    const api = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;
    const bytes = decodeBase64(saeKernelWasmBase64);
    module = api?.validate(bytes) ? new api.Module(bytes) : null;
  } catch {
    module = null;
  }
  return module;
}

export class SaeSparseKernel {
  readonly exports: KernelExports;
  readonly nInputs: number;
  readonly nLatents: number;
  readonly k: number;
  readonly maxRows: number;
  /** Byte offsets of each block. */
  readonly at: Record<Block, number>;
  /**
   * With training blocks, the encoder weights and the Adam moments of both weight matrices live here too, so the
   * whole update runs in the kernel (null without them).
   */
  readonly training: {
    E: Float32Array;
    mE: Float32Array;
    vE: Float32Array;
    mD: Float32Array;
    vD: Float32Array;
  } | null;
  /** Decoder rows [nLatents, nInputs]. */
  readonly D: Float32Array;
  readonly gD: Float32Array;
  readonly gE: Float32Array;
  readonly gLat: Float64Array;
  readonly gPre: Float64Array;
  readonly pre: Float32Array;
  readonly x: Float32Array;
  readonly xc: Float32Array;
  readonly xhat: Float32Array;
  readonly sel: Int32Array;
  readonly counts: Int32Array;
  readonly byRow: Int32Array;
  readonly byValue: Float32Array;
  readonly preBias: Float32Array;
  readonly latentBias: Float32Array;

  private constructor(
    exports: KernelExports,
    n: number,
    m: number,
    k: number,
    maxRows: number,
    training: boolean,
  ) {
    this.exports = exports;
    this.nInputs = n;
    this.nLatents = m;
    this.k = k;
    this.maxRows = maxRows;
    const sizes = {
      D: m * n * 4,
      gD: m * n * 4,
      gE: m * n * 4,
      gLat: m * 8,
      gPre: n * 8,
      pre: maxRows * m * 4,
      x: maxRows * n * 4,
      xc: maxRows * n * 4,
      xhat: maxRows * n * 4,
      sel: maxRows * k * 4,
      counts: (m + 1) * 4,
      byRow: maxRows * k * 4,
      byValue: maxRows * k * 4,
      preBias: n * 4,
      latentBias: m * 4,
      E: 0,
      mE: 0,
      vE: 0,
      mD: 0,
      vD: 0,
    };
    const weights = m * n * 4;
    const base = Object.values(sizes).reduce((a, b) => a + Math.ceil(b / 16) * 16, BASE);
    const withTraining = training && base + 5 * weights <= TRAINING_LIMIT_BYTES;
    if (withTraining) for (const name of ["E", "mE", "vE", "mD", "vD"] as const) sizes[name] = weights;
    const at = {} as Record<Block, number>;
    let end = BASE;
    for (const [name, bytes] of Object.entries(sizes) as [Block, number][]) {
      at[name] = end;
      end += Math.ceil(bytes / 16) * 16;
    }
    const memory = exports.memory;
    if (end > 4 * 1024 * 1024 * 1024 - PAGE) {
      throw new RangeError(`the autoencoder (${n}×${m}) needs ${end} bytes of kernel memory, over 4 GiB`);
    }
    const pages = Math.ceil(end / PAGE) - memory.buffer.byteLength / PAGE;
    if (pages > 0) memory.grow(pages);
    this.at = at;
    const buffer = memory.buffer;
    const f32 = (name: keyof typeof sizes, count: number) => new Float32Array(buffer, at[name], count);
    this.D = f32("D", m * n);
    this.gD = f32("gD", m * n);
    this.gE = f32("gE", m * n);
    this.gLat = new Float64Array(buffer, at.gLat, m);
    this.gPre = new Float64Array(buffer, at.gPre, n);
    this.pre = f32("pre", maxRows * m);
    this.x = f32("x", maxRows * n);
    this.xc = f32("xc", maxRows * n);
    this.xhat = f32("xhat", maxRows * n);
    this.sel = new Int32Array(buffer, at.sel, maxRows * k);
    this.counts = new Int32Array(buffer, at.counts, m + 1);
    this.byRow = new Int32Array(buffer, at.byRow, maxRows * k);
    this.byValue = f32("byValue", maxRows * k);
    this.preBias = f32("preBias", n);
    this.latentBias = f32("latentBias", m);
    this.training = withTraining
      ? {
          E: f32("E", m * n),
          mE: f32("mE", m * n),
          vE: f32("vE", m * n),
          mD: f32("mD", m * n),
          vD: f32("vD", m * n),
        }
      : null;
  }

  /** Byte offset of a view into this kernel's memory (its blocks or any part of them). */
  offsetOf(view: Float32Array): number {
    if (view.buffer !== this.exports.memory.buffer) throw new Error("not a view of the kernel's memory");
    return view.byteOffset;
  }

  /**
   * A kernel instance for these sizes, or null where WebAssembly SIMD is unavailable. `training` also lays out
   * the encoder and Adam moments (unless that would not fit).
   */
  static create(
    nInputs: number,
    nLatents: number,
    k: number,
    maxRows: number,
    options: { training?: boolean } = {},
  ): SaeSparseKernel | null {
    const compiled = compiledModule();
    const api = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;
    if (!compiled || !api) return null;
    const instance = new api.Instance(compiled, {
      env: {
        abort: () => {
          throw new Error("sae kernel aborted");
        },
      },
    });
    return new SaeSparseKernel(
      instance.exports as unknown as KernelExports,
      nInputs,
      nLatents,
      k,
      maxRows,
      options.training ?? false,
    );
  }
}
