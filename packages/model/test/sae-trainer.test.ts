/**
 * Autoencoder training on the tiny GPT-2 fixture (layer 0, mlp_post_act, 256 wide): the held-out fraction of
 * variance explained rises well above the untrained autoencoder's; a run interrupted and resumed from a
 * checkpoint ends bit-identical to an uninterrupted one; the exported file loads with loadAutoencoderFamily and
 * encodes exactly as the trainer does, with never-firing latents moved to the end where TDB drops them.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUILTIN_CORPORA } from "../../datasets/src/builtin-corpora.js";
import {
  ActivationSource,
  type Gpt2Model,
  type Gpt2Tokenizer,
  type SaeActivation,
  SaeTrainer,
  type SaeTrainingOptions,
  seededRandom,
  serializeSafetensors,
} from "../src/index.js";
import { loadAutoencoderFamily, loadModel } from "../src/node/index.js";

const TINY = fileURLToPath(new URL("../../../../shared/fixtures/tiny-gpt2/", import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), "tdb-sae-train-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let model: Gpt2Model;
let tokens: Int32Array;

beforeAll(async () => {
  const loaded = await loadModel(TINY);
  model = loaded.model;
  const tokenizer: Gpt2Tokenizer = loaded.tokenizer;
  const documents = BUILTIN_CORPORA.get("tiny")!();
  const ids: number[] = [];
  for (const doc of documents) ids.push(...tokenizer.encode(doc), tokenizer.endOfTextId!);
  // More text with the same token statistics (seeded draws from the corpus), so held-out windows are plentiful.
  const rand = seededRandom(7);
  const natural = ids.length;
  for (let i = 0; i < 10_000; i++) ids.push(ids[Math.floor(rand() * natural)]);
  tokens = Int32Array.from(ids);
});

function source(seqLen = 32, roundRows = 600) {
  return new ActivationSource({ model, site: "mlp_post_act", layer: 0, tokens, seqLen, seed: 3, roundRows });
}

function train(
  src: ActivationSource,
  options: SaeTrainingOptions,
  until = options.steps,
  trainer?: SaeTrainer,
): SaeTrainer {
  const t = trainer ?? SaeTrainer.initialize(options, src.trainingRows(0, 512), 512);
  const batch = new Float32Array(options.batchRows * options.nInputs);
  while (t.step < until) {
    src.trainingRows(t.step * options.batchRows, options.batchRows, batch);
    t.trainStep(batch, options.batchRows);
  }
  return t;
}

function heldOut(src: ActivationSource, t: SaeTrainer) {
  const evaluation = t.evaluation();
  for (const group of src.heldOutRows()) evaluation.add(group.data, group.rows);
  return evaluation.result();
}

function options(activation: SaeActivation, overrides: Partial<SaeTrainingOptions> = {}): SaeTrainingOptions {
  return {
    nInputs: 256,
    nLatents: 256,
    activation,
    l1: activation.kind === "relu" ? 0.02 : 0,
    lr: 3e-3,
    steps: 60,
    batchRows: 256,
    seed: 1,
    ...overrides,
  };
}

describe("ActivationSource", () => {
  it("holds out every 20th window, skips the first token and reproduces any stretch of the row stream", () => {
    const src = source();
    const windows = Math.floor(tokens.length / 32);
    expect(src.nInputs).toBe(256);
    expect(src.rowsPerSequence).toBe(31);
    expect(src.heldOutSequences.length).toBe(Math.floor(windows / 20));
    expect(src.trainSequences.length + src.heldOutSequences.length).toBe(windows);
    // The rows of a window are the model's mlp.post_act at positions 1..31.
    const start = src.trainSequences[2];
    const forward = model.forward(Array.from(tokens.subarray(start, start + 32)));
    expect([...src.sequenceRows(start)]).toEqual([...forward.activations.get("mlp.post_act@0")!.slice(256)]);
    // Any slice of the stream equals the same rows read in other pieces by a fresh source (rounds straddled).
    const whole = src.trainingRows(500, 900);
    const again = source();
    const parts = new Float32Array(900 * 256);
    parts.set(again.trainingRows(1000, 400), 500 * 256);
    parts.set(again.trainingRows(500, 500), 0);
    expect(parts).toEqual(whole);
    // A round holds the rows of its windows, shuffled; each epoch visits every training window once.
    const round = src.trainingRows(0, src.rowsPerRound);
    const windowRows = new Float32Array(src.rowsPerRound * 256);
    for (let s = 0; s < src.sequencesPerRound; s++)
      windowRows.set(src.sequenceRows(src.sequenceAt(s)), s * 31 * 256);
    const rowKeys = (data: Float32Array) =>
      Array.from({ length: data.length / 256 }, (_, r) => data.subarray(r * 256, (r + 1) * 256).join(","));
    expect(rowKeys(round)).not.toEqual(rowKeys(windowRows));
    expect(rowKeys(round).sort()).toEqual(rowKeys(windowRows).sort());
    const epoch = Array.from({ length: src.trainSequences.length }, (_, p) => src.sequenceAt(p));
    expect(epoch.sort((a, b) => a - b)).toEqual([...src.trainSequences]);
    // Harvesting two layers in one pass gives each layer the rows it gets alone.
    const both = new ActivationSource({
      model,
      site: "mlp_post_act",
      layers: [1, 0],
      tokens,
      seqLen: 32,
      seed: 3,
      roundRows: 600,
    });
    expect(both.trainingRows(500, 900, undefined, 0)).toEqual(whole);
    const layer1 = new ActivationSource({
      model,
      site: "mlp_post_act",
      layer: 1,
      tokens,
      seqLen: 32,
      seed: 3,
      roundRows: 600,
    });
    expect(both.trainingRows(100, 700, undefined, 1)).toEqual(layer1.trainingRows(100, 700));
    expect(layer1.sequenceRows(start)).toEqual(forward.activations.get("mlp.post_act@1")!.slice(256));
  });
});

describe("SaeTrainer on the tiny fixture", () => {
  it("TopK: held-out FVE rises far above the untrained autoencoder's, with L0 = k", () => {
    const src = source();
    const opts = options({ kind: "topk", k: 16 });
    const untrained = heldOut(src, SaeTrainer.initialize(opts, src.trainingRows(0, 512), 512));
    const trained = heldOut(src, train(src, opts));
    expect(trained.rows).toBe(src.heldOutRowCount);
    expect(trained.meanL0).toBeLessThanOrEqual(16);
    expect(trained.meanL0).toBeGreaterThan(15);
    expect(untrained.fve).toBeLessThan(0.4);
    expect(trained.fve).toBeGreaterThan(untrained.fve + 0.3);
    expect(trained.fve).toBeGreaterThan(0.5);
  });

  it("ReLU with L1: FVE rises and the penalty keeps latents sparse", () => {
    const src = source();
    const opts = options({ kind: "relu" }, { l1: 0.1 });
    const untrained = heldOut(src, SaeTrainer.initialize(opts, src.trainingRows(0, 512), 512));
    const trained = heldOut(src, train(src, opts));
    expect(trained.fve).toBeGreaterThan(untrained.fve + 0.3);
    expect(trained.fve).toBeGreaterThan(0.5);
    expect(trained.meanL0).toBeLessThan(untrained.meanL0 / 2);
  });

  for (const activation of [{ kind: "topk", k: 8 }, { kind: "relu" }] as SaeActivation[]) {
    it(`${activation.kind}: interrupted and resumed from a checkpoint gives the same weights bit for bit`, () => {
      const opts = options(activation, { steps: 14, batchRows: 200, nLatents: 96 });
      const straight = train(source(), opts);
      const firstPart = train(source(), opts, 5);
      const bytes = firstPart.checkpoint({ note: "kept" });
      const { trainer: restored, metadata } = SaeTrainer.fromCheckpoint(bytes);
      expect(metadata.note).toBe("kept");
      expect(restored.step).toBe(5);
      const resumed = train(source(), opts, opts.steps, restored);
      expect(resumed.params.encoder).toEqual(straight.params.encoder);
      expect(resumed.params.decoder).toEqual(straight.params.decoder);
      expect(resumed.params.latentBias).toEqual(straight.params.latentBias);
      expect(resumed.params.preBias).toEqual(straight.params.preBias);
      expect(resumed.lastFired).toEqual(straight.lastFired);
      expect(resumed.windowFires).toEqual(straight.windowFires);
      expect(serializeSafetensors(resumed.openAiStateDict())).toEqual(
        serializeSafetensors(straight.openAiStateDict()),
      );
    });
  }

  it("keeps decoder columns unit-norm", () => {
    const t = train(source(), options({ kind: "topk", k: 8 }, { steps: 5, nLatents: 64 }));
    for (let j = 0; j < 64; j++) {
      const row = t.params.decoder.subarray(j * 256, (j + 1) * 256);
      expect(Math.hypot(...row)).toBeCloseTo(1, 5);
    }
  });

  it("the exported file loads with loadAutoencoderFamily and encodes as the trainer does; dead latents last", async () => {
    const src = source();
    const opts = options({ kind: "topk", k: 8 }, { steps: 20, nLatents: 64 });
    const initial = SaeTrainer.initialize(opts, src.trainingRows(0, 512), 512);
    // Three latents that can never win the top-k: they never fire, so export moves them to the end.
    for (const j of [2, 30, 41]) initial.params.latentBias[j] = -1e4;
    const t = train(src, opts, opts.steps, initial);
    const order = [...t.exportOrder()];
    expect(order.slice(-3)).toEqual([2, 30, 41]);
    const dir = join(scratch, "family", "mlp_post_act");
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, "0.safetensors"),
      serializeSafetensors(t.openAiStateDict(), {
        format: "pt",
        activation: "TopK",
        k: "8",
        input: "mlp_post_act",
        layer: "0",
      }),
    );
    const kept = await loadAutoencoderFamily(dir, { keepDeadLatents: true });
    expect(kept.site).toBe("mlp_post_act");
    const ae = kept.byLayer.get(0)!;
    expect(ae.activation).toEqual({ kind: "topk", k: 8 });
    const [group] = [...src.heldOutRows(64)];
    const fromFile = ae.encode(group.data, group.rows);
    const fromTrainer = t.encode(group.data, group.rows);
    let worst = 0;
    let scale = 0;
    for (let i = 0; i < fromFile.length; i++) {
      worst = Math.max(worst, Math.abs(fromFile[i] - fromTrainer[i]));
      scale = Math.max(scale, Math.abs(fromTrainer[i]));
    }
    expect(scale).toBeGreaterThan(0);
    expect(worst).toBeLessThan(1e-4 * scale);
    // The same non-zero pattern (L0 = 8 per row, same latents).
    const support = (z: Float32Array) => [...z.keys()].filter((i) => z[i] > 0);
    expect(support(fromFile)).toEqual(support(fromTrainer));
    // TDB's rule drops exactly the three dead latents, from the end.
    const dropped = await loadAutoencoderFamily(dir);
    expect(dropped.droppedDeadLatents).toBe(3);
    expect(dropped.byLayer.get(0)!.nLatents).toBe(61);
  });
});
