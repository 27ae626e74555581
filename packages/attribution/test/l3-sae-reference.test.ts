/**
 * The inference core on the 3-layer autoencoder fixture against independent PyTorch-autograd values
 * (tools/golden/make_attribution_reference.py → golden/l3-sae-reference.json): every ablation and trace type,
 * with and without the mlp_post_act (ReLU) and resid_delta_attn (TopK) autoencoders spliced in.
 */
import { readFileSync } from "node:fs";
import { hookKey } from "@tdb/model";
import { describe, expect, it } from "vitest";
import {
  type Ablation,
  type AutoencoderFamily,
  type InferenceResult,
  type LatentRecord,
  type LossName,
  type LossSpec,
  runInference,
  type TraceSpec,
} from "../src/index.js";
import { L3_SAE, loadAutoencoderFamily, loadGpt2Tokenizer, loadModelFolder } from "./fixture-model.js";

interface Scenario {
  name: string;
  prompt: string;
  autoencoders: { mlp: boolean; attention: boolean };
  loss: { name: LossName; targets: string[]; distractors: string[] | null } | null;
  ablations: Ablation[];
  trace: TraceSpec | null;
}
interface GoldenLayer {
  mlpActTimesGrad: number[][];
  attnActTimesGrad: number[][][];
  mlpLatents: number[][] | null;
  mlpLatentActTimesGrad: number[][] | null;
  attnLatents: number[][] | null;
  attnLatentActTimesGrad: number[][] | null;
}
interface GoldenScenario {
  name: string;
  tokens: number[];
  targetIds: number[] | null;
  distractorIds: number[] | null;
  loss: number | null;
  activationValueForBackwardPass: number | null;
  lastLogits: { sample: number[]; argmax: number };
  finalResidualGrad: number[][];
  layers: GoldenLayer[];
}

const scenarios: Scenario[] = JSON.parse(
  readFileSync(new URL("../../../tools/golden/scenarios/l3-sae-scenarios.json", import.meta.url), "utf8"),
).scenarios;
const golden: { logitSampleIds: number[]; scenarios: GoldenScenario[] } = JSON.parse(
  readFileSync(new URL("golden/l3-sae-reference.json", import.meta.url), "utf8"),
);

const model = loadModelFolder(L3_SAE);
const tokenizer = loadGpt2Tokenizer();
const layers = Array.from({ length: model.config.nLayer }, (_, l) => l);
const families: { mlp: AutoencoderFamily; attention: AutoencoderFamily } = {
  mlp: loadAutoencoderFamily(new URL("autoencoders/mlp_post_act/", L3_SAE), "mlp_post_act", layers),
  attention: loadAutoencoderFamily(
    new URL("autoencoders/resid_delta_attn/", L3_SAE),
    "resid_delta_attn",
    layers,
  ),
};

const tolerance = (expected: number) => 1e-4 + 1e-3 * Math.abs(expected);

function close(actual: number | null, expected: number, what: string) {
  expect(actual, what).not.toBeNull();
  expect(Math.abs(actual! - expected), `${what}: ${actual} vs ${expected}`).toBeLessThanOrEqual(
    tolerance(expected),
  );
}

/** Elementwise comparison of a flat array with nested golden values; reports the first mismatches. */
function expectAllClose(actual: ArrayLike<number>, expected: unknown[], what: string) {
  const flat = expected.flat(3) as number[];
  expect(actual.length, `${what}: length`).toBe(flat.length);
  const bad: string[] = [];
  for (let i = 0; i < flat.length; i++) {
    if (!(Math.abs(actual[i] - flat[i]) <= tolerance(flat[i]))) bad.push(`[${i}] ${actual[i]} vs ${flat[i]}`);
  }
  expect(bad.slice(0, 8), `${what}: ${bad.length} of ${flat.length} differ`).toEqual([]);
}

function product(a: ArrayLike<number>, b: ArrayLike<number> | null | undefined): Float32Array {
  const out = new Float32Array(a.length);
  if (b) for (let i = 0; i < a.length; i++) out[i] = a[i] * b[i];
  return out;
}

function oneToken(text: string): number {
  const ids = tokenizer.encode(text);
  expect(ids, `${JSON.stringify(text)} is one GPT-2 token`).toHaveLength(1);
  return ids[0];
}

function latentActTimesGrad(rec: LatentRecord | undefined): Float32Array {
  expect(rec, "latent record").toBeDefined();
  return product(rec!.values, rec!.gradient);
}

it("has a golden entry for every scenario, in order", () => {
  expect(golden.scenarios.map((s) => s.name)).toEqual(scenarios.map((s) => s.name));
});

describe.each(scenarios.map((s, i) => [s.name, s, golden.scenarios[i]] as const))(
  "%s",
  (_name, scenario, ref) => {
    const tokens = tokenizer.encode(scenario.prompt);
    const loss: LossSpec | null = scenario.loss && {
      name: scenario.loss.name,
      targets: scenario.loss.targets.map(oneToken),
      distractors: scenario.loss.distractors?.map(oneToken) ?? null,
    };
    const ctx = {
      model,
      mlpAutoencoder: scenario.autoencoders.mlp ? families.mlp : null,
      attentionAutoencoder: scenario.autoencoders.attention ? families.attention : null,
    };
    const run: InferenceResult = runInference(ctx, {
      tokens,
      loss,
      ablations: scenario.ablations,
      trace: scenario.trace,
    });
    const T = tokens.length;

    it("tokenizes the prompt and loss tokens as the reference did", () => {
      expect(tokens).toEqual(ref.tokens);
      expect(loss?.targets ?? null).toEqual(ref.targetIds);
      expect(loss?.distractors ?? null).toEqual(ref.distractorIds);
    });

    it("loss and traced value", () => {
      if (ref.loss === null) expect(run.loss).toBeNull();
      else close(run.loss, ref.loss, "loss");
      if (ref.activationValueForBackwardPass === null) expect(run.activationValueForBackwardPass).toBeNull();
      else close(run.activationValueForBackwardPass, ref.activationValueForBackwardPass, "traced value");
    });

    it("last-token logits", () => {
      const V = model.config.vocabSize;
      const row = run.forward.logitRows.indexOf(T - 1);
      const logits = run.forward.logits.subarray(row * V, (row + 1) * V);
      expectAllClose(
        golden.logitSampleIds.map((id) => logits[id]),
        ref.lastLogits.sample,
        "logit sample",
      );
      // The reference's argmax is a top logit here too (robust to near ties).
      close(logits[ref.lastLogits.argmax], Math.max(...logits), "logit at the reference argmax");
    });

    it("gradient at the final-residual location", () => {
      expect(run.finalLocation).toEqual(
        scenario.trace
          ? {
              layer: scenario.trace.layer,
              block:
                scenario.trace.kind === "mlp_neuron" || scenario.trace.kind === "mlp_latent"
                  ? "mlp"
                  : "attention",
            }
          : null,
      );
      expectAllClose(run.finalResidualGradient, ref.finalResidualGrad, "final residual gradient");
    });

    it.each(layers)("act×grad at layer %i", (l) => {
      const at = (point: "mlp.post_act" | "attn.qk_probs") =>
        product(run.forward.activations.get(hookKey(point, l))!, run.gradients.get(hookKey(point, l)));
      const g = ref.layers[l];
      expectAllClose(at("mlp.post_act"), g.mlpActTimesGrad, `L${l} mlp.post_act act×grad`);
      expectAllClose(at("attn.qk_probs"), g.attnActTimesGrad, `L${l} attention probs act×grad [t,u,h]`);
      if (g.mlpLatents && g.mlpLatentActTimesGrad) {
        expectAllClose(run.mlpLatents.get(l)?.values ?? [], g.mlpLatents, `L${l} mlp latents`);
        expectAllClose(
          latentActTimesGrad(run.mlpLatents.get(l)),
          g.mlpLatentActTimesGrad,
          `L${l} mlp latent act×grad`,
        );
      } else expect(run.mlpLatents.has(l)).toBe(false);
      if (g.attnLatents && g.attnLatentActTimesGrad) {
        expectAllClose(run.attentionLatents.get(l)?.values ?? [], g.attnLatents, `L${l} attention latents`);
        expectAllClose(
          latentActTimesGrad(run.attentionLatents.get(l)),
          g.attnLatentActTimesGrad,
          `L${l} attention latent act×grad`,
        );
      } else expect(run.attentionLatents.has(l)).toBe(false);
    });
  },
);
