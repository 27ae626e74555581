/**
 * Autoencoder families from disk. Golden values: PyTorch (torch.load of the .pt fixtures, encode/decode as in
 * OpenAI's sparse_autoencoder, input x[i] = sin(0.37·i + 0.1)), and hand-computed values for a SAELens folder
 * written by the test.
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import type { SparseAutoencoder } from "../src/index.js";
import { loadAutoencoderFamily } from "../src/node/index.js";

const TINY_AE = fileURLToPath(
  new URL("../../../../shared/fixtures/tiny-gpt2/autoencoders/mlp_post_act/", import.meta.url),
);
const L3 = fileURLToPath(new URL("../../attribution/test/fixtures/l3-sae/autoencoders/", import.meta.url));

const scratch = mkdtempSync(join(tmpdir(), "tdb-ae-test-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A fresh folder `<scratch>/<unique>/<name>` holding copies of `files`. */
let folders = 0;
function folderWith(name: string, files: string[]): string {
  const dir = join(scratch, String(folders++), name);
  mkdirSync(dir, { recursive: true });
  for (const file of files) copyFileSync(file, join(dir, file.split("/").pop()!));
  return dir;
}

function probe(n: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(0.37 * i + 0.1));
}

function encodeOne(ae: SparseAutoencoder, x: Float32Array) {
  const z = ae.encode(x, 1);
  const nonzero = [...z.keys()].filter((i) => z[i] !== 0);
  return { z, nonzero, sum: z.reduce((a, b) => a + b, 0), recon: ae.decode(z, 1) };
}

describe("OpenAI layout", () => {
  for (const ext of ["pt", "safetensors"]) {
    it(`tiny mlp_post_act from ${ext} matches PyTorch`, async () => {
      const dir = folderWith("mlp_post_act", [join(TINY_AE, `0.${ext}`)]);
      const family = await loadAutoencoderFamily(dir);
      expect(family.name).toBe("mlp_post_act");
      expect(family.site).toBe("mlp_post_act");
      expect(family.format).toBe("openai");
      expect([...family.byLayer.keys()]).toEqual([0]);
      const ae = family.byLayer.get(0)!;
      expect(ae.nLatents).toBe(512);
      expect(ae.activation).toEqual({ kind: "relu" });
      const { nonzero, z, sum, recon } = encodeOne(ae, probe(256));
      expect(nonzero.length).toBe(47);
      expect(nonzero.slice(0, 4)).toEqual([13, 21, 38, 48]);
      expect(z[21]).toBeCloseTo(1.0616509914398193, 5);
      expect(sum).toBeCloseTo(25.778398513793945, 4);
      expect(recon[0]).toBeCloseTo(0.19639664888381958, 5);
      expect(recon[2]).toBeCloseTo(0.7047821879386902, 5);
    });
  }

  it("prefers the safetensors file when both exist and keeps the given name", async () => {
    const family = await loadAutoencoderFamily(TINY_AE, { name: "ae-mlp-post-act-tiny" });
    expect(family.name).toBe("ae-mlp-post-act-tiny");
    expect(family.droppedDeadLatents).toBe(0);
    expect(family.byLayer.get(0)!.nLatents).toBe(512);
  });

  it("TopK resid_delta_attn (k from metadata or the state dict) matches PyTorch", async () => {
    for (const ext of ["pt", "safetensors"]) {
      const dir = folderWith("some-attn-family", [join(L3, "resid_delta_attn", `1.${ext}`)]);
      // The .pt state dict carries no "input": the site then has to come from the option.
      const family = await loadAutoencoderFamily(dir, ext === "pt" ? { site: "resid_delta_attn" } : {});
      expect(family.site).toBe("resid_delta_attn");
      expect([...family.byLayer.keys()]).toEqual([1]);
      const ae = family.byLayer.get(1)!;
      expect(ae.activation).toEqual({ kind: "topk", k: 4 });
      const { nonzero, z, sum, recon } = encodeOne(ae, probe(32));
      expect(nonzero).toEqual([0, 8, 33, 46]);
      expect(z[33]).toBeCloseTo(2.000615119934082, 5);
      expect(sum).toBeCloseTo(7.558894157409668, 4);
      expect(recon[0]).toBeCloseTo(2.127624988555908, 5);
    }
  });

  it("drops the smallest per-layer dead-latent count from every layer (3, 2, 4 → 2)", async () => {
    const family = await loadAutoencoderFamily(join(L3, "mlp_post_act"));
    expect(family.droppedDeadLatents).toBe(2);
    expect([...family.byLayer.keys()]).toEqual([0, 1, 2]);
    for (const ae of family.byLayer.values()) expect(ae.nLatents).toBe(62);
    const layer0 = family.byLayer.get(0)!;
    // Latent 61 is dead in layer 0 but kept (only 2 are dropped); its weights are untouched.
    expect(layer0.latentBias[61]).toBe(-50);
    expect(layer0.encoderRow(61)[5]).toBeCloseTo(-0.023379161953926086, 7);
    expect(layer0.decoderColumn(61)[5]).toBeCloseTo(0.021836204454302788, 7);
    expect(layer0.decoderColumn(0)[127]).toBeCloseTo(-0.048074301332235336, 7);
    const { sum, recon } = encodeOne(family.byLayer.get(2)!, probe(128));
    expect(sum).toBeCloseTo(15.274369239807129, 4);
    expect(recon[1]).toBeCloseTo(-0.36251285672187805, 5);

    const kept = await loadAutoencoderFamily(join(L3, "mlp_post_act"), { keepDeadLatents: true });
    expect(kept.byLayer.get(0)!.nLatents).toBe(64);
  });

  it("a subset of layers: the count is the minimum over the layers present", async () => {
    const dir = folderWith("mlp_post_act", [
      join(L3, "mlp_post_act", "0.pt"),
      join(L3, "mlp_post_act", "2.safetensors"),
    ]);
    const family = await loadAutoencoderFamily(dir);
    expect([...family.byLayer.keys()]).toEqual([0, 2]);
    expect(family.droppedDeadLatents).toBe(3);
    expect(family.byLayer.get(2)!.nLatents).toBe(61);
  });

  it("explains what is wrong", async () => {
    await expect(loadAutoencoderFamily(join(scratch, "missing"))).rejects.toThrow(/not found/);
    await expect(loadAutoencoderFamily(folderWith("empty", []))).rejects.toThrow(/no autoencoder files/);
    const noSite = folderWith("unnamed", [join(TINY_AE, "0.pt")]);
    await expect(loadAutoencoderFamily(noSite)).rejects.toThrow(/cannot tell where/);
    const mixed = folderWith("mixed", [
      join(TINY_AE, "0.safetensors"),
      join(L3, "resid_delta_attn", "1.safetensors"),
    ]);
    await expect(loadAutoencoderFamily(mixed)).rejects.toThrow(/different sites/);
    const broken = folderWith("mlp_post_act", []);
    writeFileSync(join(broken, "0.safetensors"), "not a safetensors file");
    await expect(loadAutoencoderFamily(broken)).rejects.toThrow(/0\.safetensors/);
  });
});

// ---------------------------------------------------------------------------------------------
// SAELens

function safetensorsBytes(tensors: Record<string, { shape: number[]; values: number[] }>): Uint8Array {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: "F32", shape: t.shape, data_offsets: [offset, offset + 4 * t.values.length] };
    offset += 4 * t.values.length;
  }
  // Padded with spaces so the data section is aligned, as safetensors writers do.
  const text = JSON.stringify(header);
  const json = new TextEncoder().encode(text.padEnd(Math.ceil(text.length / 8) * 8, " "));
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 8);
  const data = new Float32Array(out.buffer, 8 + json.length, offset / 4);
  let i = 0;
  for (const t of Object.values(tensors)) for (const v of t.values) data[i++] = v;
  return out;
}

/** d_in = 3, d_sae = 4; W_enc [d_in, d_sae], W_dec [d_sae, d_in] as SAELens stores them. */
function writeSaeLens(dir: string, cfg: Record<string, unknown>): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "cfg.json"), JSON.stringify({ d_in: 3, d_sae: 4, ...cfg }));
  writeFileSync(
    join(dir, "sae_weights.safetensors"),
    safetensorsBytes({
      W_enc: { shape: [3, 4], values: [1, 0, 0, 1, 0, 1, 0, -1, 0, 0, 1, 0] },
      b_enc: { shape: [4], values: [0, -1, 0.5, 0] },
      W_dec: { shape: [4, 3], values: [1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1] },
      b_dec: { shape: [3], values: [0.5, -1, 0] },
    }),
  );
  return dir;
}

describe("SAELens folders", () => {
  const x = Float32Array.of(1, 2, 3);

  it("ReLU with b_dec subtracted from the input", async () => {
    const dir = writeSaeLens(join(scratch, "sae-relu"), {
      hook_name: "blocks.1.mlp.hook_post",
      hook_layer: 1,
      activation_fn_str: "relu",
      apply_b_dec_to_input: true,
    });
    const family = await loadAutoencoderFamily(dir);
    expect(family.format).toBe("saelens");
    expect(family.site).toBe("mlp_post_act");
    expect(family.name).toBe("sae-relu");
    const ae = family.byLayer.get(1)!;
    // pre = (x − b_dec)·W_enc + b_enc = [0.5, 2, 3.5, −2.5]; recon = z·W_dec + b_dec.
    expect([...ae.encode(x, 1)]).toEqual([0.5, 2, 3.5, 0]);
    expect([...ae.decode(Float32Array.of(0.5, 2, 3.5, 0), 1)]).toEqual([1, 1, 3.5]);
  });

  it("without apply_b_dec_to_input, and TopK from the config", async () => {
    const plain = writeSaeLens(join(scratch, "sae-plain"), {
      hook_name: "blocks.0.hook_mlp_out",
      activation_fn_str: "relu",
      apply_b_dec_to_input: false,
    });
    const ae = (await loadAutoencoderFamily(plain)).byLayer.get(0)!;
    expect([...ae.encode(x, 1)]).toEqual([1, 1, 3.5, 0]);

    const topk = writeSaeLens(join(scratch, "sae-topk"), {
      hook_name: "blocks.2.hook_attn_out",
      activation_fn_str: "topk",
      activation_fn_kwargs: { k: 2 },
    });
    const family = await loadAutoencoderFamily(topk);
    expect(family.site).toBe("resid_delta_attn");
    expect([...family.byLayer.get(2)!.encode(x, 1)]).toEqual([0, 2, 3.5, 0]);
  });

  it("a folder of per-layer SAELens folders is one family", async () => {
    const root = join(scratch, "sae-family");
    for (const layer of [0, 1]) {
      writeSaeLens(join(root, `layer_${layer}`), { hook_name: `blocks.${layer}.hook_attn_out` });
    }
    const family = await loadAutoencoderFamily(root, { name: "attn-saes" });
    expect(family.name).toBe("attn-saes");
    expect(family.site).toBe("resid_delta_attn");
    expect([...family.byLayer.keys()]).toEqual([0, 1]);
  });

  it("refuses hooks and architectures TDB cannot splice", async () => {
    const z = writeSaeLens(join(scratch, "sae-z"), { hook_name: "blocks.0.attn.hook_z" });
    await expect(loadAutoencoderFamily(z)).rejects.toThrow(/hook_z.*not supported/);
    const jump = writeSaeLens(join(scratch, "sae-jump"), {
      hook_name: "blocks.0.hook_mlp_out",
      architecture: "jumprelu",
    });
    await expect(loadAutoencoderFamily(jump)).rejects.toThrow(/jumprelu/);
  });
});
