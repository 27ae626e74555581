/** Load a Hugging Face-style GPT-2 folder (config.json + safetensors weights) from disk. */

import { type FileHandle, open, readFile, stat } from "node:fs/promises";
import { join, resolve, sep } from "node:path";
import { type Gpt2Config, parseGpt2Config } from "../formats/config.js";
import { ModelConfigError, ModelSourceError, WeightFormatError } from "../formats/errors.js";
import { MAX_SAFETENSORS_HEADER_BYTES, parseSafetensorsHeader } from "../formats/safetensors.js";
import { normalizeGpt2StateDict } from "../formats/state-dict.js";
import { decodeContiguous, type LoadedTensor } from "../formats/tensor-data.js";

export interface HfFolderModel {
  config: Gpt2Config;
  /** Normalised GPT-2 tensors (see normalizeGpt2StateDict), unless `normalize: false`. */
  tensors: Map<string, LoadedTensor>;
  /** Absolute path of the folder. */
  dir: string;
  /** Tokenizer files present in the folder (absolute paths). */
  files: { vocabJson?: string; mergesTxt?: string; tokenizerJson?: string };
}

export interface LoadHfFolderOptions {
  /** Normalise and check the GPT-2 state dict (default true); false returns the raw tensors. */
  normalize?: boolean;
}

const littleEndianPlatform = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function readFully(
  handle: FileHandle,
  target: Uint8Array,
  position: number,
  path: string,
): Promise<void> {
  let done = 0;
  while (done < target.byteLength) {
    const { bytesRead } = await handle.read(target, done, target.byteLength - done, position + done);
    if (bytesRead === 0)
      throw new WeightFormatError(`${path}: file is truncated (unexpected end at byte ${position + done})`);
    done += bytesRead;
  }
}

/**
 * Read a safetensors file tensor by tensor (no whole-file buffer, so files beyond 2 GiB work). F32 data is
 * read straight into its Float32Array.
 */
export async function readSafetensorsFile(path: string): Promise<Map<string, LoadedTensor>> {
  const handle = await open(path, "r");
  try {
    const fileSize = (await handle.stat()).size;
    const lengthBytes = new Uint8Array(Math.min(8, fileSize));
    await readFully(handle, lengthBytes, 0, path);
    let prefix = lengthBytes;
    if (fileSize >= 8) {
      const view = new DataView(lengthBytes.buffer);
      const headerLength = view.getUint32(4, true) * 4294967296 + view.getUint32(0, true);
      // A bad length is left to the parser, which reports it against the 8 bytes read so far.
      if (headerLength <= MAX_SAFETENSORS_HEADER_BYTES && 8 + headerLength <= fileSize) {
        prefix = new Uint8Array(8 + headerLength);
        await readFully(handle, prefix, 0, path);
      }
    }
    const header = parseSafetensorsHeader(prefix, { name: path, fileSize });

    const tensors = new Map<string, LoadedTensor>();
    for (const [key, entry] of header.tensors) {
      const [begin, end] = entry.dataOffsets;
      const count = entry.shape.reduce((a, b) => a * b, 1);
      let data: Float32Array;
      if (entry.dtype === "F32" && littleEndianPlatform) {
        data = new Float32Array(count);
        await readFully(handle, new Uint8Array(data.buffer), header.dataStart + begin, path);
      } else {
        const raw = new Uint8Array(end - begin);
        await readFully(handle, raw, header.dataStart + begin, path);
        data = decodeContiguous(raw, entry.dtype, count);
      }
      tensors.set(key, { dtype: entry.dtype, shape: entry.shape, data });
    }
    return tensors;
  } finally {
    await handle.close();
  }
}

/** A file name from model.safetensors.index.json must stay inside the model folder. */
function shardPath(dir: string, shard: string, indexPath: string): string {
  const full = resolve(dir, shard);
  if (!full.startsWith(dir + sep)) {
    throw new WeightFormatError(`${indexPath}: shard name "${shard}" points outside the model folder`);
  }
  return full;
}

async function readShardedWeights(dir: string, indexPath: string): Promise<Map<string, LoadedTensor>> {
  let index: unknown;
  try {
    index = JSON.parse(await readFile(indexPath, "utf8"));
  } catch (error) {
    throw new WeightFormatError(`${indexPath}: not valid JSON (${(error as Error).message})`);
  }
  const weightMap = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof weightMap !== "object" || weightMap === null || Array.isArray(weightMap)) {
    throw new WeightFormatError(`${indexPath}: missing "weight_map" object`);
  }
  const byShard = new Map<string, string[]>();
  for (const [tensor, shard] of Object.entries(weightMap)) {
    if (typeof shard !== "string")
      throw new WeightFormatError(`${indexPath}: weight_map["${tensor}"] is not a file name`);
    const list = byShard.get(shard) ?? [];
    list.push(tensor);
    byShard.set(shard, list);
  }
  const missingShards: string[] = [];
  for (const shard of byShard.keys())
    if (!(await exists(shardPath(dir, shard, indexPath)))) missingShards.push(shard);
  if (missingShards.length > 0) {
    throw new ModelSourceError(
      `${dir}: shard(s) listed in model.safetensors.index.json are missing: ${missingShards.join(", ")}`,
    );
  }

  const tensors = new Map<string, LoadedTensor>();
  for (const [shard, names] of byShard) {
    const path = shardPath(dir, shard, indexPath);
    const shardTensors = await readSafetensorsFile(path);
    const absent = names.filter((name) => !shardTensors.has(name));
    if (absent.length > 0)
      throw new WeightFormatError(`${path}: tensors listed in the index are missing: ${absent.join(", ")}`);
    for (const [name, tensor] of shardTensors) tensors.set(name, tensor);
  }
  return tensors;
}

/**
 * Load config.json and model.safetensors (or model.safetensors.index.json + shards) from `dir`.
 * Errors: ModelSourceError (folder/config/weights/shard missing), ModelConfigError/UnsupportedModelError
 * (config), WeightFormatError (weight files).
 */
export async function loadHfFolder(
  dirInput: string,
  options: LoadHfFolderOptions = {},
): Promise<HfFolderModel> {
  const dir = resolve(dirInput);
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(dir);
  } catch {
    throw new ModelSourceError(`model folder not found: ${dir}`);
  }
  if (!info.isDirectory())
    throw new ModelSourceError(
      `not a folder: ${dir} (expected a folder with config.json and model.safetensors)`,
    );

  const configPath = join(dir, "config.json");
  let configText: string;
  try {
    configText = await readFile(configPath, "utf8");
  } catch {
    throw new ModelSourceError(`${dir}: config.json is missing`);
  }
  let configJson: unknown;
  try {
    configJson = JSON.parse(configText);
  } catch (error) {
    throw new ModelConfigError(`${configPath}: not valid JSON (${(error as Error).message})`);
  }
  const config = parseGpt2Config(configJson, { name: configPath });

  const single = join(dir, "model.safetensors");
  const indexPath = join(dir, "model.safetensors.index.json");
  let raw: Map<string, LoadedTensor>;
  let weightsName: string;
  if (await exists(single)) {
    raw = await readSafetensorsFile(single);
    weightsName = single;
  } else if (await exists(indexPath)) {
    raw = await readShardedWeights(dir, indexPath);
    weightsName = indexPath;
  } else {
    const others = ["pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack"];
    const found: string[] = [];
    for (const other of others) if (await exists(join(dir, other))) found.push(other);
    const hint =
      found.length > 0
        ? `; found ${found.join(", ")}, which is not supported — convert it to safetensors (e.g. ` +
          "AutoModelForCausalLM.from_pretrained(dir).save_pretrained(dir, safe_serialization=True))"
        : "";
    throw new ModelSourceError(
      `${dir}: no weights (looked for model.safetensors and model.safetensors.index.json)${hint}`,
    );
  }

  const tensors =
    options.normalize === false ? raw : normalizeGpt2StateDict(raw, config, { name: weightsName });
  const files: HfFolderModel["files"] = {};
  if (await exists(join(dir, "vocab.json"))) files.vocabJson = join(dir, "vocab.json");
  if (await exists(join(dir, "merges.txt"))) files.mergesTxt = join(dir, "merges.txt");
  if (await exists(join(dir, "tokenizer.json"))) files.tokenizerJson = join(dir, "tokenizer.json");
  return { config, tensors, dir, files };
}
