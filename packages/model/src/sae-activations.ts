/**
 * Activations for autoencoder training, harvested from the model over a token stream.
 *
 * The stream is cut into contiguous sequences of `seqLen` tokens (a shorter tail is dropped). Every
 * `heldOutEvery`-th sequence is held out for evaluation. The first token of each sequence is skipped: its
 * activations are outliers (nothing to attend to but itself), as in OpenAI's autoencoder training data.
 *
 * Training rows form one endless stream that is a pure function of the seed: epochs visit the training
 * sequences in a seeded order; each "round" of consecutive sequences is harvested and its rows shuffled with a
 * seed derived from the round number. Row `p` of the stream is therefore reproducible without any saved
 * state, which is what makes interrupted training resume exactly.
 *
 * Several layers can be harvested by one forward pass (each layer gets the same stream of token positions), so
 * autoencoders for all of them train for the price of one pass through the model.
 */
import type { AutoencoderSite } from "./autoencoder.js";
import { Gpt2Model } from "./gpt2.js";
import { type HookPoint, hookKey } from "./hooks.js";
import { seededRandom } from "./random.js";

export const SITE_HOOK_POINTS: Readonly<Record<AutoencoderSite, HookPoint>> = {
  mlp_post_act: "mlp.post_act",
  resid_delta_attn: "resid.delta_attn",
  resid_delta_mlp: "resid.delta_mlp",
};

export interface ActivationSourceOptions {
  model: Gpt2Model;
  site: AutoencoderSite;
  /** One layer, or several with `layers`. */
  layer?: number;
  layers?: readonly number[];
  /** The tokenised corpus as one stream. */
  tokens: ArrayLike<number>;
  seqLen: number;
  seed: number;
  /** About this many rows are harvested and shuffled together (default 16384). */
  roundRows?: number;
  /** Every n-th sequence is held out (default 20; with fewer sequences, the last one). */
  heldOutEvery?: number;
  /** At most this many held-out rows (default 16384). */
  maxHeldOutRows?: number;
  /** Harvested sequences are kept in memory when all of them fit in this many bytes (default 256 MiB). */
  cacheBytes?: number;
}

/** Mixes a seed with small integers into a 32-bit seed (murmur3's finaliser). */
export function mixSeed(seed: number, ...values: number[]): number {
  let h = seed >>> 0;
  for (const v of values) {
    h = Math.imul(h ^ (v >>> 0), 0x9e3779b1) >>> 0;
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b) >>> 0;
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35) >>> 0;
    h ^= h >>> 16;
  }
  return h >>> 0;
}

export class ActivationSource {
  readonly nInputs: number;
  readonly rowsPerSequence: number;
  /** Start offsets (in tokens) of the training sequences. */
  readonly trainSequences: Int32Array;
  readonly heldOutSequences: Int32Array;
  readonly sequencesPerRound: number;
  readonly rowsPerRound: number;
  /** The harvested layers, in the order given. */
  readonly layers: readonly number[];
  private readonly model: Gpt2Model;
  private readonly point: HookPoint;
  private readonly tokens: ArrayLike<number>;
  private readonly seqLen: number;
  private readonly seed: number;
  private readonly cache: Map<number, Float32Array[]> | null;
  private epochOrder: { epoch: number; order: Int32Array } | null = null;
  private round: { index: number; rows: Float32Array[] } | null = null;

  constructor(options: ActivationSourceOptions) {
    const { model, site, tokens, seqLen, seed } = options;
    const { nLayer, nPositions, nEmbd, nInner } = model.config;
    const layers = options.layers ?? (options.layer === undefined ? [] : [options.layer]);
    if (layers.length === 0) throw new RangeError("no layer to harvest");
    for (const layer of layers) {
      if (!Number.isInteger(layer) || layer < 0 || layer >= nLayer) {
        throw new RangeError(`layer ${layer} does not exist (the model has layers 0–${nLayer - 1})`);
      }
    }
    if (new Set(layers).size !== layers.length) throw new RangeError(`layers repeat: ${layers.join(", ")}`);
    if (!Number.isInteger(seqLen) || seqLen < 2 || seqLen > nPositions) {
      throw new RangeError(`sequence length must be a whole number in [2, ${nPositions}], got ${seqLen}`);
    }
    this.point = SITE_HOOK_POINTS[site];
    this.nInputs = site === "mlp_post_act" ? nInner : nEmbd;
    this.layers = [...layers];
    // Layers above the highest site are never needed: run a model cut after it (weights shared, not copied).
    const top = Math.max(...layers) + 1;
    this.model = new Gpt2Model(
      { ...model.config, nLayer: top },
      { ...model.weights, layers: model.weights.layers.slice(0, top) },
    );
    this.tokens = tokens;
    this.seqLen = seqLen;
    this.seed = seed >>> 0;
    this.rowsPerSequence = seqLen - 1;

    const total = Math.floor(tokens.length / seqLen);
    if (total < 2) {
      throw new RangeError(
        `the corpus has ${tokens.length} tokens: at least two sequences of ${seqLen} are needed (one to train, one to evaluate)`,
      );
    }
    const every = options.heldOutEvery ?? 20;
    const maxHeldOut = Math.max(1, Math.floor((options.maxHeldOutRows ?? 16384) / this.rowsPerSequence));
    const train: number[] = [];
    const heldOut: number[] = [];
    for (let i = 0; i < total; i++) {
      const holdOut =
        total >= every ? i % every === every - 1 && heldOut.length < maxHeldOut : i === total - 1;
      (holdOut ? heldOut : train).push(i * seqLen);
    }
    this.trainSequences = Int32Array.from(train);
    this.heldOutSequences = Int32Array.from(heldOut);
    const roundRows = options.roundRows ?? 16384;
    this.sequencesPerRound = Math.max(1, Math.ceil(roundRows / this.rowsPerSequence));
    this.rowsPerRound = this.sequencesPerRound * this.rowsPerSequence;
    const allBytes = total * this.rowsPerSequence * this.nInputs * 4 * layers.length;
    this.cache = allBytes <= (options.cacheBytes ?? 256 * 1024 * 1024) ? new Map() : null;
  }

  /**
   * The site's activations at `layer` (default: the first harvested) for the sequence starting at token `start`,
   * first token skipped: [seqLen−1, nInputs].
   */
  sequenceRows(start: number, layer = this.layers[0]): Float32Array {
    return this.sequenceRowsAll(start)[this.layerIndex(layer)];
  }

  /** Row `position` onwards of the training stream, `count` rows, into `out` ([count, nInputs]). */
  trainingRows(
    position: number,
    count: number,
    out = new Float32Array(count * this.nInputs),
    layer = this.layers[0],
  ): Float32Array {
    const n = this.nInputs;
    const which = this.layerIndex(layer);
    let filled = 0;
    while (filled < count) {
      const p = position + filled;
      const roundIndex = Math.floor(p / this.rowsPerRound);
      const offset = p - roundIndex * this.rowsPerRound;
      const rows = this.roundRows(roundIndex)[which];
      const take = Math.min(count - filled, this.rowsPerRound - offset);
      out.set(rows.subarray(offset * n, (offset + take) * n), filled * n);
      filled += take;
    }
    return out;
  }

  /** Rows of the held-out sequences at `layer`, in order, in groups of at most `maxRows` rows. */
  *heldOutRows(maxRows = 4096, layer = this.layers[0]): Generator<{ data: Float32Array; rows: number }> {
    const n = this.nInputs;
    const perGroup = Math.max(1, Math.floor(maxRows / this.rowsPerSequence));
    for (let s = 0; s < this.heldOutSequences.length; s += perGroup) {
      const starts = this.heldOutSequences.subarray(s, s + perGroup);
      const data = new Float32Array(starts.length * this.rowsPerSequence * n);
      starts.forEach((start, i) => {
        data.set(this.sequenceRows(start, layer), i * this.rowsPerSequence * n);
      });
      yield { data, rows: starts.length * this.rowsPerSequence };
    }
  }

  private layerIndex(layer: number): number {
    const index = this.layers.indexOf(layer);
    if (index < 0) throw new RangeError(`layer ${layer} is not harvested (layers ${this.layers.join(", ")})`);
    return index;
  }

  /** One forward pass: every harvested layer's rows for the sequence at `start`. */
  private sequenceRowsAll(start: number): Float32Array[] {
    const cached = this.cache?.get(start);
    if (cached) return cached;
    const ids = Array.from({ length: this.seqLen }, (_, t) => this.tokens[start + t]);
    const captured: (Float32Array | undefined)[] = this.layers.map(() => undefined);
    this.model.forward(ids, {
      cache: false,
      logitRows: [],
      hooks: [
        (value, site) => {
          if (site.point !== this.point || site.layer === null) return undefined;
          const index = this.layers.indexOf(site.layer);
          if (index >= 0) captured[index] = value.slice(this.nInputs);
          return undefined;
        },
      ],
    });
    const rows = captured.map((value, i) => {
      if (!value) throw new Error(`the forward pass never reached ${hookKey(this.point, this.layers[i])}`);
      return value;
    });
    this.cache?.set(start, rows);
    return rows;
  }

  get heldOutRowCount(): number {
    return this.heldOutSequences.length * this.rowsPerSequence;
  }

  /** The start token of the window at `streamPosition` of the endless training order. */
  sequenceAt(streamPosition: number): number {
    const count = this.trainSequences.length;
    const epoch = Math.floor(streamPosition / count);
    if (this.epochOrder?.epoch !== epoch) {
      const order = Int32Array.from(this.trainSequences);
      shuffle(order, 1, seededRandom(mixSeed(this.seed, 0x5e9, epoch)));
      this.epochOrder = { epoch, order };
    }
    return this.epochOrder.order[streamPosition - epoch * count];
  }

  private roundRows(index: number): Float32Array[] {
    if (this.round?.index === index) return this.round.rows;
    this.round = null; // let the previous round go before allocating the next
    const n = this.nInputs;
    const perSeq = this.rowsPerSequence;
    const harvested = this.layers.map(() => new Float32Array(this.rowsPerRound * n));
    for (let s = 0; s < this.sequencesPerRound; s++) {
      const rows = this.sequenceRowsAll(this.sequenceAt(index * this.sequencesPerRound + s));
      rows.forEach((r, i) => {
        harvested[i].set(r, s * perSeq * n);
      });
    }
    // The same seeded permutation for every layer: the same positions, layer by layer.
    for (const rows of harvested) shuffle(rows, n, seededRandom(mixSeed(this.seed, 0x70d, index)));
    this.round = { index, rows: harvested };
    return harvested;
  }
}

/** Fisher–Yates over rows of `width` values. */
function shuffle(data: Int32Array | Float32Array, width: number, rand: () => number): void {
  const rows = data.length / width;
  const tmp = data.slice(0, width);
  for (let i = rows - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    if (j === i) continue;
    tmp.set(data.subarray(i * width, (i + 1) * width));
    data.copyWithin(i * width, j * width, (j + 1) * width);
    data.set(tmp, j * width);
  }
}
