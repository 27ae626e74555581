/**
 * The inference core against PyTorch autograd values recorded in shared/fixtures/tiny-gpt2/reference.json
 * (independent of our code): TDB-convention gradients, ablations, traces and the in-graph autoencoder.
 */
import { readFileSync } from "node:fs";
import { hookKey } from "@tdb/model";
import { describe, expect, it } from "vitest";
import { type InferenceSpec, runInference, type TraceSpec } from "../src/index.js";
import { loadTinyMlpAutoencoder, loadTinyModel, TINY } from "./fixture-model.js";

type Nested = number | Nested[];
interface Reference {
  tokens: number[];
  targetToken: number;
  distractorToken: number;
  logitDiff: number;
  mlpPostAct: number[][][];
  attnProbs: number[][][][];
  grad: { tdb: { mlpPostAct: number[][][]; attnProbs: number[][][][] } };
  tdbNodeTable: { finalResidualGrad: number[][] };
  ablations: Record<string, { node: { tensorIndices: number[]; layerIndex: number }; logitDiff: number }>;
  traces: Record<
    string,
    {
      node: { nodeType: string; tensorIndices: number[]; layerIndex: number };
      tracedValue: number;
      actTimesGrad?: { mlpPostAct: number[][][]; attnProbs: number[][][][] };
    }
  >;
  autoencoder: { nonzeroLatents: number[][] };
}
const ref: Reference = JSON.parse(readFileSync(new URL("reference.json", TINY), "utf8"));
const { model } = loadTinyModel();
const T = ref.tokens.length;
const H = model.config.nHead;
const F = model.config.nInner;
const loss = { name: "logit_diff" as const, targets: [ref.targetToken], distractors: [ref.distractorToken] };
const base: InferenceSpec = { tokens: ref.tokens, loss };

function close(actual: number, expected: number, what: string) {
  expect(Math.abs(actual - expected), `${what}: ${actual} vs ${expected}`).toBeLessThanOrEqual(
    1e-4 + 1e-3 * Math.abs(expected),
  );
}
function flat(x: Nested): number[] {
  return Array.isArray(x) ? x.flatMap(flat) : [x];
}

describe("TDB inference vs PyTorch autograd (reference.json)", () => {
  const run = runInference({ model }, base);

  it("loss is the logit difference", () => close(run.loss!, ref.logitDiff, "logit diff"));

  it("gradients at MLP post-activations and attention probabilities (ln_f scale detached)", () => {
    for (let l = 0; l < model.config.nLayer; l++) {
      const g = run.gradients.get(hookKey("mlp.post_act", l))!;
      for (const [i, v] of flat(ref.grad.tdb.mlpPostAct[l]).entries()) close(g[i], v, `mlp grad L${l}[${i}]`);
      const gp = run.gradients.get(hookKey("attn.qk_probs", l))!;
      for (let h = 0; h < H; h++)
        for (let t = 0; t < T; t++)
          for (let u = 0; u <= t; u++)
            close(gp[(t * T + u) * H + h], ref.grad.tdb.attnProbs[l][h][t][u], `probs grad L${l}`);
    }
  });

  it("final residual gradient", () => {
    for (const [i, v] of flat(ref.tdbNodeTable.finalResidualGrad).entries()) {
      close(run.finalResidualGradient[i], v, `g[${i}]`);
    }
  });

  it("zero-ablating an MLP neuron and an attention head", () => {
    const n = ref.ablations.tdb_ablate_mlp_neuron.node;
    const a = runInference(
      { model },
      {
        ...base,
        ablations: [
          {
            kind: "mlp_neuron",
            layer: n.layerIndex,
            token: n.tensorIndices[0],
            index: n.tensorIndices[1],
            value: 0,
          },
        ],
      },
    );
    close(a.loss!, ref.ablations.tdb_ablate_mlp_neuron.logitDiff, "neuron ablation");
    const h = ref.ablations.tdb_ablate_attention_head.node;
    const b = runInference(
      { model },
      {
        ...base,
        ablations: [
          {
            kind: "attention_head",
            layer: h.layerIndex,
            token: h.tensorIndices[0],
            index: h.tensorIndices[2],
            value: 0,
          },
        ],
      },
    );
    close(b.loss!, ref.ablations.tdb_ablate_attention_head.logitDiff, "head ablation");
  });

  const traceCases: [string, (n: { tensorIndices: number[]; layerIndex: number }) => TraceSpec][] = [
    [
      "tdb_trace_mlp_neuron",
      (n) => ({
        kind: "mlp_neuron",
        layer: n.layerIndex,
        token: n.tensorIndices[0],
        index: n.tensorIndices[1],
      }),
    ],
    ...(["Q", "K", "QK", "V"] as const).map(
      (type) =>
        [
          `tdb_trace_attention_head_${type.toLowerCase()}`,
          (n: { tensorIndices: number[]; layerIndex: number }) => ({
            kind: "attention_head" as const,
            layer: n.layerIndex,
            token: n.tensorIndices[0],
            keyToken: n.tensorIndices[1],
            index: n.tensorIndices[2],
            attentionTraceType: type,
          }),
        ] as [string, (n: { tensorIndices: number[]; layerIndex: number }) => TraceSpec],
    ),
  ];
  for (const [name, toTrace] of traceCases) {
    it(`trace ${name}`, () => {
      const c = ref.traces[name];
      const trace = toTrace(c.node);
      const r = runInference(
        { model },
        { tokens: ref.tokens, trace, loss: trace.attentionTraceType === "V" ? loss : null },
      );
      close(r.activationValueForBackwardPass!, c.tracedValue, "traced value");
      if (!c.actTimesGrad) return;
      c.actTimesGrad.mlpPostAct.forEach((layer, l) => {
        const act = r.forward.activations.get(hookKey("mlp.post_act", l))!;
        const g = r.gradients.get(hookKey("mlp.post_act", l)) ?? new Float32Array(T * F);
        for (const [i, v] of flat(layer).entries())
          close(act[i] * g[i], v, `${name} mlp act×grad L${l}[${i}]`);
      });
      c.actTimesGrad.attnProbs.forEach((layer, l) => {
        const act = r.forward.activations.get(hookKey("attn.qk_probs", l))!;
        const g = r.gradients.get(hookKey("attn.qk_probs", l)) ?? new Float32Array(T * T * H);
        for (let h = 0; h < H; h++)
          for (let t = 0; t < T; t++)
            for (let u = 0; u <= t; u++) {
              const i = (t * T + u) * H + h;
              close(act[i] * g[i], layer[h][t][u], `${name} probs act×grad L${l} h${h} t${t} u${u}`);
            }
      });
    });
  }

  describe("with the layer-0 MLP autoencoder spliced in", () => {
    const family = loadTinyMlpAutoencoder();
    const withAe = runInference({ model, mlpAutoencoder: family }, base);

    it("leaves the output unchanged", () => close(withAe.loss!, ref.logitDiff, "loss with autoencoder"));

    it("latent activations and act×grad", () => {
      const rec = withAe.mlpLatents.get(0)!;
      const m = family.byLayer.get(0)!.nLatents;
      let nonzero = 0;
      for (const v of rec.values) if (v !== 0) nonzero++;
      expect(nonzero).toBe(ref.autoencoder.nonzeroLatents.length);
      for (const [t, l, a, atg] of ref.autoencoder.nonzeroLatents) {
        close(rec.values[t * m + l], a, `latent ${t},${l}`);
        close(rec.values[t * m + l] * rec.gradient![t * m + l], atg, `latent act×grad ${t},${l}`);
      }
    });

    it("ablating a latent", () => {
      const n = ref.ablations.tdb_ae_ablate_latent.node;
      const r = runInference(
        { model, mlpAutoencoder: family },
        {
          ...base,
          ablations: [
            {
              kind: "mlp_latent",
              layer: n.layerIndex,
              token: n.tensorIndices[0],
              index: n.tensorIndices[1],
              value: 0,
            },
          ],
        },
      );
      close(r.loss!, ref.ablations.tdb_ae_ablate_latent.logitDiff, "latent ablation");
    });

    it("tracing a latent", () => {
      const c = ref.traces.tdb_ae_trace_latent;
      const r = runInference(
        { model, mlpAutoencoder: family },
        {
          tokens: ref.tokens,
          trace: {
            kind: "mlp_latent",
            layer: c.node.layerIndex,
            token: c.node.tensorIndices[0],
            index: c.node.tensorIndices[1],
          },
        },
      );
      close(r.activationValueForBackwardPass!, c.tracedValue, "traced latent value");
    });
  });
});
