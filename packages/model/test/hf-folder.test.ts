import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import {
  ModelConfigError,
  ModelSourceError,
  UnsupportedModelError,
  WeightFormatError,
} from "../src/formats/errors.js";
import type { LoadedTensor } from "../src/formats/tensor-data.js";
import { loadHfFolder, readSafetensorsFile } from "../src/node/hf-folder.js";

const fixtureDir = fileURLToPath(new URL("../../../../shared/fixtures/tiny-gpt2/", import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), "tdb-hf-folder-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let folderCount = 0;
function folder(files: Record<string, string | Uint8Array | { copy: string }>): string {
  const dir = join(scratch, `m${folderCount++}`);
  mkdirSync(dir);
  for (const [name, content] of Object.entries(files)) {
    const path = join(dir, name);
    if (typeof content === "object" && "copy" in content) copyFileSync(content.copy, path);
    else writeFileSync(path, content);
  }
  return dir;
}

/** Plain safetensors writer for F32 tensors (the format as documented, independent of the reader). */
function writeSafetensors(tensors: [string, LoadedTensor][]): Uint8Array {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, t] of tensors) {
    header[name] = { dtype: "F32", shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8 !== 0) json += " ";
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(new TextEncoder().encode(json), 8);
  let p = 8 + json.length;
  for (const [, t] of tensors) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), p);
    p += t.data.byteLength;
  }
  return out;
}

const fixtureFiles = () => ({
  "config.json": { copy: join(fixtureDir, "config.json") },
  "vocab.json": { copy: join(fixtureDir, "vocab.json") },
  "merges.txt": { copy: join(fixtureDir, "merges.txt") },
});

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error("expected a rejection");
}

describe("loadHfFolder", () => {
  it("loads the tiny-gpt2 fixture folder", async () => {
    const model = await loadHfFolder(fixtureDir);
    expect(model.config.nLayer).toBe(2);
    expect(model.tensors.size).toBe(28);
    const wte = model.tensors.get("wte.weight")!;
    expect(wte.shape).toEqual([50257, 64]);
    // numpy: first and last element of transformer.wte.weight
    expect(wte.data[0]).toBe(-0.0558592826128006);
    expect(wte.data[wte.data.length - 1]).toBe(-0.204790398478508);
    expect(model.files.vocabJson).toBe(join(fixtureDir, "vocab.json"));
    expect(model.files.tokenizerJson).toBeUndefined();
  });

  it("returns raw tensors when asked not to normalise", async () => {
    const model = await loadHfFolder(fixtureDir, { normalize: false });
    expect(model.tensors.has("transformer.wte.weight")).toBe(true);
  });

  it("loads sharded weights through model.safetensors.index.json", async () => {
    const all = [...(await readSafetensorsFile(join(fixtureDir, "model.safetensors")))];
    const first = all.slice(0, 10);
    const second = all.slice(10);
    const weightMap: Record<string, string> = {};
    for (const [name] of first) weightMap[name] = "model-00001-of-00002.safetensors";
    for (const [name] of second) weightMap[name] = "model-00002-of-00002.safetensors";
    const dir = folder({
      ...fixtureFiles(),
      "model.safetensors.index.json": JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }),
      "model-00001-of-00002.safetensors": writeSafetensors(first),
      "model-00002-of-00002.safetensors": writeSafetensors(second),
    });
    const model = await loadHfFolder(dir);
    expect(model.tensors.size).toBe(28);
    for (const [name, tensor] of all) {
      const loaded = model.tensors.get(name.replace(/^transformer\./, ""))!;
      expect(Buffer.from(loaded.data.buffer).equals(Buffer.from(tensor.data.buffer)), name).toBe(true);
    }
  });

  it("names a missing shard and a tensor missing from its shard", async () => {
    const all = [...(await readSafetensorsFile(join(fixtureDir, "model.safetensors")))];
    const weightMap = Object.fromEntries(all.map(([name]) => [name, "a.safetensors"]));
    weightMap["transformer.wte.weight"] = "b.safetensors";
    const index = JSON.stringify({ weight_map: weightMap });
    const missingShard = folder({
      ...fixtureFiles(),
      "model.safetensors.index.json": index,
      "a.safetensors": writeSafetensors(all),
    });
    const error = await rejection(loadHfFolder(missingShard));
    expect(error).toBeInstanceOf(ModelSourceError);
    expect(error.message).toMatch(
      /shard\(s\) listed in model\.safetensors\.index\.json are missing: b\.safetensors/,
    );

    const incomplete = folder({
      ...fixtureFiles(),
      "model.safetensors.index.json": index,
      "a.safetensors": writeSafetensors(all.slice(1)),
      "b.safetensors": writeSafetensors(all),
    });
    expect((await rejection(loadHfFolder(incomplete))).message).toMatch(
      /a\.safetensors: tensors listed in the index are missing: transformer\.h\.0\.attn\.c_attn\.bias/,
    );

    const escaping = folder({
      ...fixtureFiles(),
      "model.safetensors.index.json": JSON.stringify({ weight_map: { x: "../evil.safetensors" } }),
    });
    expect((await rejection(loadHfFolder(escaping))).message).toMatch(/points outside the model folder/);
  });

  it("gives clear errors for missing folder, config and weights", async () => {
    const missing = await rejection(loadHfFolder(join(scratch, "nope")));
    expect(missing).toBeInstanceOf(ModelSourceError);
    expect(missing.message).toMatch(/model folder not found: .*nope/);

    const noConfig = folder({ "model.safetensors": { copy: join(fixtureDir, "model.safetensors") } });
    expect((await rejection(loadHfFolder(noConfig))).message).toMatch(/config\.json is missing/);

    const noWeights = folder(fixtureFiles());
    expect((await rejection(loadHfFolder(noWeights))).message).toMatch(
      /no weights \(looked for model\.safetensors and model\.safetensors\.index\.json\)$/,
    );

    const torchOnly = folder({ ...fixtureFiles(), "pytorch_model.bin": "x" });
    const torchError = await rejection(loadHfFolder(torchOnly));
    expect(torchError).toBeInstanceOf(ModelSourceError);
    expect(torchError.message).toMatch(
      /found pytorch_model\.bin, which is not supported — convert it to safetensors/,
    );

    const file = join(fixtureDir, "config.json");
    expect((await rejection(loadHfFolder(file))).message).toMatch(/not a folder/);
  });

  it("reports config and weight-file problems with their paths", async () => {
    const llama = folder({ "config.json": JSON.stringify({ model_type: "llama" }) });
    expect(await rejection(loadHfFolder(llama))).toBeInstanceOf(UnsupportedModelError);

    const badJson = folder({ "config.json": "{ nope" });
    const jsonError = await rejection(loadHfFolder(badJson));
    expect(jsonError).toBeInstanceOf(ModelConfigError);
    expect(jsonError.message).toMatch(/config\.json: not valid JSON/);

    const full = new Uint8Array(readFileSync(join(fixtureDir, "model.safetensors")));
    const truncated = folder({ ...fixtureFiles(), "model.safetensors": full.subarray(0, 100_000) });
    const truncError = await rejection(loadHfFolder(truncated));
    expect(truncError).toBeInstanceOf(WeightFormatError);
    expect(truncError.message).toMatch(
      /model\.safetensors: tensor "[^"]+": data_offsets .* run past the end/,
    );

    const garbage = folder({
      ...fixtureFiles(),
      "model.safetensors": new Uint8Array([255, 255, 255, 255, 255, 255, 255, 255, 1]),
    });
    expect((await rejection(loadHfFolder(garbage))).message).toMatch(/header length \d+ is absurd/);

    const wrongShape = folder({
      "config.json": JSON.stringify({
        model_type: "gpt2",
        n_layer: 2,
        n_head: 4,
        n_embd: 64,
        n_positions: 128,
      }),
      "model.safetensors": { copy: join(fixtureDir, "model.safetensors") },
    });
    expect((await rejection(loadHfFolder(wrongShape))).message).toMatch(
      /wpe\.weight is \[64, 64\], expected \[128, 64\]/,
    );
  });
});
