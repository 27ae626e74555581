// Several sequences in one forward pass (sequenceLength): every hook value and logit row equals the sequence's own
// pass bit for bit, on every GEMM engine here; misuse is refused.
import { fileURLToPath } from "node:url";
import { setDefaultGemm } from "@tdb/tensor";
import { fastestGemm, nativeGemmStatus } from "@tdb/tensor/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ForwardHook, Gpt2Model, hookKey, normalizeGpt2StateDict } from "../src/index.js";
import { loadHfFolder } from "../src/node/index.js";

const TINY = new URL("../../../../shared/fixtures/tiny-gpt2/", import.meta.url);
const { config, tensors } = await loadHfFolder(fileURLToPath(TINY));
const model = Gpt2Model.fromStateDict(config, normalizeGpt2StateDict(tensors, config), {
  tieWordEmbeddings: config.tieWordEmbeddings,
});

function capture(): { hook: ForwardHook; values: Map<string, Float32Array> } {
  const values = new Map<string, Float32Array>();
  return {
    values,
    hook: (value, site) => {
      values.set(hookKey(site.point, site.layer), value);
      return undefined;
    },
  };
}

const engines: ("wasm" | "native")[] = nativeGemmStatus().available ? ["wasm", "native"] : ["wasm"];

describe.each(engines)("multi-sequence forward (%s GEMM)", (engine) => {
  beforeAll(() => setDefaultGemm(fastestGemm(1, { TDB_GEMM: engine }).gemm));
  afterAll(() => setDefaultGemm(null));

  it("equals one pass per sequence, hook values and logits, bit for bit", () => {
    for (const T of [3, 12]) {
      const sequences = [0, 1, 2].map((s) =>
        Array.from({ length: T }, (_, t) => (s * 997 + t * 31 + 5) % 1000),
      );
      const together = capture();
      const batched = model.forward(sequences.flat(), {
        hooks: [together.hook],
        cache: false,
        sequenceLength: T,
      });
      const V = model.config.vocabSize;
      sequences.forEach((tokens, b) => {
        const alone = capture();
        const single = model.forward(tokens, { hooks: [alone.hook], cache: false });
        for (const [key, value] of alone.values) {
          const all = together.values.get(key)!;
          const size = all.length / sequences.length;
          expect(size, key).toBe(value.length);
          expect(Array.from(all.subarray(b * size, (b + 1) * size)), key).toEqual(Array.from(value));
        }
        expect(Array.from(batched.logits.subarray(b * T * V, (b + 1) * T * V))).toEqual(
          Array.from(single.logits),
        );
      });
    }
  });
});

describe("multi-sequence forward refuses misuse", () => {
  it("needs whole sequences, no cache, and hooks that only read", () => {
    const tokens = [1, 2, 3, 4, 5, 6];
    expect(() => model.forward(tokens, { cache: false, sequenceLength: 4 })).toThrow(RangeError);
    expect(() => model.forward(tokens, { sequenceLength: 3 })).toThrow(/cache: false/);
    const editing: ForwardHook = (value, site) =>
      site.point === "mlp.post_act" ? { value: new Float32Array(value.length) } : undefined;
    expect(() => model.forward(tokens, { cache: false, sequenceLength: 3, hooks: [editing] })).toThrow(
      /only read/,
    );
    // One sequence given as sequenceLength = length behaves as before.
    expect(Array.from(model.forward(tokens, { cache: false, sequenceLength: 6 }).logits)).toEqual(
      Array.from(model.forward(tokens, { cache: false }).logits),
    );
  });
});

describe("forward with stopAfter", () => {
  it("visits the sites up to the stop with a full pass's values, none after it, and computes no logits", () => {
    const tokens = [464, 2068, 7586, 21831, 18045, 625, 262, 16931];
    const full = capture();
    model.forward(tokens, { hooks: [full.hook], cache: false, sequenceLength: 4 });
    const last = model.config.nLayer - 1;
    for (const stop of [
      { point: "mlp.post_act", layer: last },
      { point: "attn.qk_probs", layer: 0 },
    ] as const) {
      const partial = capture();
      const visited: string[] = [];
      const result = model.forward(tokens, {
        hooks: [partial.hook, (_, site) => void visited.push(hookKey(site.point, site.layer))],
        cache: false,
        logitRows: [],
        sequenceLength: 4,
        stopAfter: stop,
      });
      expect(result.logits.length).toBe(0);
      const fullOrder = [...full.values.keys()];
      const stopKey = hookKey(stop.point, stop.layer);
      // Exactly the full pass's sites up to and including the stop, in order, with its values.
      expect(visited).toEqual(fullOrder.slice(0, fullOrder.indexOf(stopKey) + 1));
      for (const key of visited)
        expect(Array.from(partial.values.get(key)!), key).toEqual(Array.from(full.values.get(key)!));
    }
  });

  it("refuses a stop with the cache, with logit rows, or at a layer the model lacks", () => {
    const stopAfter = { point: "mlp.post_act", layer: 0 } as const;
    expect(() => model.forward([1, 2], { stopAfter, logitRows: [] })).toThrow(/cache: false/);
    expect(() => model.forward([1, 2], { stopAfter, cache: false })).toThrow(/logitRows: \[\]/);
    expect(() =>
      model.forward([1, 2], { cache: false, logitRows: [], stopAfter: { point: "attn.v", layer: 9 } }),
    ).toThrow(/outside/);
  });
});
