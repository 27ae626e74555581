import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseGpt2Config } from "../src/formats/config.js";
import { ModelConfigError } from "../src/formats/errors.js";
import { parseSafetensors } from "../src/formats/safetensors.js";
import { normalizeGpt2StateDict } from "../src/formats/state-dict.js";
import type { LoadedTensor } from "../src/formats/tensor-data.js";

const fixtureDir = new URL("../../../../shared/fixtures/tiny-gpt2/", import.meta.url);
const config = parseGpt2Config(JSON.parse(readFileSync(new URL("config.json", fixtureDir), "utf8")));
const fixture = parseSafetensors(new Uint8Array(readFileSync(new URL("model.safetensors", fixtureDir))));

const fake = (shape: number[]): LoadedTensor => ({
  dtype: "F32",
  shape,
  data: new Float32Array(shape.reduce((a, b) => a * b, 1)),
});

describe("normalizeGpt2StateDict", () => {
  it("strips transformer. from the fixture and keeps every tensor", () => {
    const tensors = normalizeGpt2StateDict(fixture, config);
    expect(tensors.size).toBe(4 + 2 * 12);
    expect(tensors.get("wte.weight")).toBe(fixture.get("transformer.wte.weight"));
    expect(tensors.get("h.1.mlp.c_fc.weight")!.shape).toEqual([64, 256]);
    expect(tensors.has("lm_head.weight")).toBe(false);
    expect([...tensors.keys()].slice(0, 3)).toEqual(["wte.weight", "wpe.weight", "h.0.ln_1.weight"]);
  });

  it("drops attention mask buffers and keeps lm_head when present", () => {
    const withExtras = new Map<string, LoadedTensor>();
    for (const [key, t] of fixture) withExtras.set(key.replace(/^transformer\./, ""), t);
    withExtras.set("h.0.attn.bias", fake([1, 1, 64, 64]));
    withExtras.set("h.1.attn.masked_bias", fake([]));
    withExtras.set("lm_head.weight", fake([50257, 64]));
    const tensors = normalizeGpt2StateDict(withExtras, config);
    expect(tensors.has("h.0.attn.bias")).toBe(false);
    expect(tensors.get("lm_head.weight")!.shape).toEqual([50257, 64]);
  });

  it("lists missing keys, shape mismatches and unexpected keys in one error", () => {
    const broken = new Map(fixture);
    broken.delete("transformer.h.1.ln_2.bias");
    broken.delete("transformer.ln_f.weight");
    broken.set("transformer.h.0.attn.c_attn.weight", fake([192, 64]));
    broken.set("score.weight", fake([2, 64]));
    let message = "";
    try {
      normalizeGpt2StateDict(broken, config, { name: "model.safetensors" });
    } catch (error) {
      expect(error).toBeInstanceOf(ModelConfigError);
      message = (error as Error).message;
    }
    expect(message).toMatch(/^model\.safetensors does not match the GPT-2 config/);
    expect(message).toContain("missing 2 tensor(s): h.1.ln_2.bias, ln_f.weight");
    expect(message).toContain("h.0.attn.c_attn.weight is [192, 64], expected [64, 192]");
    expect(message).toContain("unexpected tensor(s) for GPT-2: score.weight");
    expect(() => normalizeGpt2StateDict(broken, config, { allowUnexpected: true })).toThrow(/missing 2/);
  });

  it("checks shapes against the config, e.g. a config with more layers", () => {
    const bigger = { ...config, nLayer: 3 };
    expect(() => normalizeGpt2StateDict(fixture, bigger)).toThrow(
      /missing 12 tensor\(s\): h\.2\.ln_1\.weight/,
    );
  });

  it("rejects a checkpoint with both prefixed and unprefixed copies", () => {
    const doubled = new Map(fixture);
    doubled.set("wte.weight", fixture.get("transformer.wte.weight")!);
    expect(() => normalizeGpt2StateDict(doubled, config)).toThrow(
      /both with and without "transformer\.": wte\.weight/,
    );
  });
});
