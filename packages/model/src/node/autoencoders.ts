/**
 * Loads a family of sparse autoencoders (one per layer, any subset of layers) from disk:
 * - OpenAI's layout: `{layer}.safetensors` or `{layer}.pt` state dicts (pre_bias, encoder.weight, latent_bias,
 *   decoder.weight, latents_activation_frequency), activation in the safetensors `__metadata__` or in the
 *   state dict's `activation` / `activation_state_dict`;
 * - SAELens: a folder with `cfg.json` + `sae_weights.safetensors` (one layer), or a folder of such folders.
 * TDB's dead-latent rule is applied at load (autoencoder_context.py): N = the smallest number of latents with
 * activation frequency < 1e-8 over all layers; the last N latents of every layer are dropped.
 */
import { open, readdir, readFile, stat } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import {
  AUTOENCODER_SITES,
  type AutoencoderActivation,
  type AutoencoderSite,
  parseAutoencoderActivation,
  SparseAutoencoder,
} from "../autoencoder.js";
import { ModelSourceError, WeightFormatError } from "../formats/errors.js";
import { MAX_SAFETENSORS_HEADER_BYTES, parseSafetensorsHeader } from "../formats/safetensors.js";
import type { LoadedTensor } from "../formats/tensor-data.js";
import { collectTensors, parseTorchZipAsync, type TorchValue } from "../formats/torch-zip.js";
import { readSafetensorsFile } from "./hf-folder.js";

/** Same shape as `AutoencoderFamily` of @tdb/attribution (which depends on this package, not the reverse). */
export interface LoadedAutoencoderFamily {
  name: string;
  site: AutoencoderSite;
  byLayer: Map<number, SparseAutoencoder>;
  /** Absolute folder path. */
  dir: string;
  format: "openai" | "saelens";
  /** Latents dropped from the end of every layer by TDB's dead-latent rule. */
  droppedDeadLatents: number;
}

export interface LoadAutoencoderFamilyOptions {
  /** Defaults to the folder name. */
  name?: string;
  /** Where the family attaches; overrides what the files or the folder name say. */
  site?: AutoencoderSite;
  /** Skip TDB's dead-latent rule (default false: apply it). */
  keepDeadLatents?: boolean;
}

const SAELENS_CONFIG = "cfg.json";
const SAELENS_WEIGHTS = "sae_weights.safetensors";

interface LayerAutoencoder {
  layer: number;
  autoencoder: SparseAutoencoder;
  /** The site the file itself declares, if any. */
  site: AutoencoderSite | null;
  file: string;
}

function isSite(value: unknown): value is AutoencoderSite {
  return typeof value === "string" && (AUTOENCODER_SITES as readonly string[]).includes(value);
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

export async function loadAutoencoderFamily(
  dir: string,
  options: LoadAutoencoderFamilyOptions = {},
): Promise<LoadedAutoencoderFamily> {
  const root = resolve(dir);
  if (!(await isDirectory(root))) {
    throw new ModelSourceError(`${dir}: autoencoder folder not found`);
  }
  let format: LoadedAutoencoderFamily["format"];
  let layers: LayerAutoencoder[];
  if (await isFile(join(root, SAELENS_CONFIG))) {
    format = "saelens";
    layers = [await loadSaeLensFolder(root)];
  } else {
    const entries = await readdir(root, { withFileTypes: true });
    const saeLensChildren: string[] = [];
    for (const entry of entries) {
      if (entry.isDirectory() && (await isFile(join(root, entry.name, SAELENS_CONFIG)))) {
        saeLensChildren.push(join(root, entry.name));
      }
    }
    if (saeLensChildren.length > 0) {
      format = "saelens";
      layers = [];
      for (const child of saeLensChildren.sort()) layers.push(await loadSaeLensFolder(child));
    } else {
      format = "openai";
      layers = await loadOpenAiFolder(
        root,
        entries.filter((e) => e.isFile()).map((e) => e.name),
      );
    }
  }

  const seen = new Map<number, string>();
  for (const l of layers) {
    const earlier = seen.get(l.layer);
    if (earlier)
      throw new WeightFormatError(`${dir}: layer ${l.layer} appears twice (${earlier}, ${l.file})`);
    seen.set(l.layer, l.file);
  }
  layers.sort((a, b) => a.layer - b.layer);

  const site = options.site ?? familySite(root, layers);
  const nInputs = new Set(layers.map((l) => l.autoencoder.nInputs));
  if (nInputs.size > 1) {
    throw new WeightFormatError(
      `${dir}: the layers disagree on the input width (${[...nInputs].join(", ")})`,
    );
  }
  const dead = options.keepDeadLatents ? 0 : Math.min(...layers.map((l) => l.autoencoder.deadLatentCount()));
  const byLayer = new Map(layers.map((l) => [l.layer, l.autoencoder.withoutLastLatents(dead)]));
  return {
    name: options.name ?? basename(root),
    site,
    byLayer,
    dir: root,
    format,
    droppedDeadLatents: dead,
  };
}

/** The site every file agrees on, else the folder name; a clear error when neither says. */
function familySite(root: string, layers: readonly LayerAutoencoder[]): AutoencoderSite {
  const declared = new Set(layers.map((l) => l.site).filter((s): s is AutoencoderSite => s !== null));
  if (declared.size > 1) {
    throw new WeightFormatError(
      `${root}: the files attach at different sites (${[...declared].join(", ")}); one family has one site`,
    );
  }
  const [fromFiles] = declared;
  if (fromFiles) return fromFiles;
  const folder = basename(root);
  if (isSite(folder)) return folder;
  throw new WeightFormatError(
    `${root}: cannot tell where these autoencoders attach (no "input" in the files' metadata and the folder ` +
      `is not named ${AUTOENCODER_SITES.join(" / ")}); give the site explicitly`,
  );
}

// ---------------------------------------------------------------------------------------------
// OpenAI layout

async function loadOpenAiFolder(root: string, files: readonly string[]): Promise<LayerAutoencoder[]> {
  const byLayer = new Map<number, { safetensors?: string; pt?: string }>();
  for (const file of files) {
    const match = /^(\d+)\.(safetensors|pt)$/.exec(file);
    if (!match) continue;
    const layer = Number(match[1]);
    const entry = byLayer.get(layer) ?? {};
    entry[match[2] as "safetensors" | "pt"] = join(root, file);
    byLayer.set(layer, entry);
  }
  if (byLayer.size === 0) {
    throw new ModelSourceError(
      `${root}: no autoencoder files (expected {layer}.safetensors or {layer}.pt, or SAELens folders with ${SAELENS_CONFIG})`,
    );
  }
  const out: LayerAutoencoder[] = [];
  for (const [layer, paths] of byLayer) {
    // safetensors first: it loads without unpickling and can be read tensor by tensor.
    out.push(
      paths.safetensors
        ? await loadOpenAiSafetensors(paths.safetensors, layer)
        : await loadOpenAiTorch(paths.pt!, layer),
    );
  }
  return out;
}

async function readSafetensorsMetadata(path: string): Promise<Record<string, string>> {
  const handle = await open(path, "r");
  try {
    const fileSize = (await handle.stat()).size;
    const head = new Uint8Array(Math.min(8, fileSize));
    await handle.read(head, 0, head.length, 0);
    let prefix = head;
    if (fileSize >= 8) {
      const view = new DataView(head.buffer);
      const headerLength = view.getUint32(4, true) * 4294967296 + view.getUint32(0, true);
      if (headerLength <= MAX_SAFETENSORS_HEADER_BYTES && 8 + headerLength <= fileSize) {
        prefix = new Uint8Array(8 + headerLength);
        await handle.read(prefix, 0, prefix.length, 0);
      }
    }
    return parseSafetensorsHeader(prefix, { name: path, fileSize }).metadata;
  } finally {
    await handle.close();
  }
}

function activationFromStateDictJson(text: string | undefined, path: string): Record<string, unknown> {
  if (text === undefined || text === "") return {};
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) {
      return parsed as Record<string, unknown>;
    }
  } catch {
    // fall through to the error below
  }
  throw new WeightFormatError(`${path}: __metadata__.activation_state_dict is not a JSON object`);
}

function kOf(value: unknown): number | string | undefined {
  return typeof value === "number" || typeof value === "string" ? value : undefined;
}

function withSource<T>(path: string, build: () => T): T {
  try {
    return build();
  } catch (error) {
    if (error instanceof WeightFormatError) throw error;
    throw new WeightFormatError(`${path}: ${(error as Error).message}`);
  }
}

async function loadOpenAiSafetensors(path: string, layer: number): Promise<LayerAutoencoder> {
  const metadata = await readSafetensorsMetadata(path);
  const tensors = await readSafetensorsFile(path);
  const stateDict = activationFromStateDictJson(metadata.activation_state_dict, path);
  const activation = withSource(path, () =>
    parseAutoencoderActivation(metadata.activation, kOf(metadata.k) ?? kOf(stateDict.k)),
  );
  checkDeclaredLayer(metadata.layer, layer, path);
  return {
    layer,
    autoencoder: withSource(path, () => SparseAutoencoder.fromOpenAiStateDict(tensors, activation, path)),
    site: isSite(metadata.input) ? metadata.input : null,
    file: path,
  };
}

function checkDeclaredLayer(declared: string | undefined, layer: number, path: string): void {
  if (declared !== undefined && declared !== "" && Number(declared) !== layer) {
    throw new WeightFormatError(`${path}: the file says layer ${declared} but is named for layer ${layer}`);
  }
}

async function loadOpenAiTorch(path: string, layer: number): Promise<LayerAutoencoder> {
  const tree = await parseTorchZipAsync(await readFile(path), { name: path });
  if (!(tree instanceof Map))
    throw new WeightFormatError(`${path}: expected a state dict (a dict of tensors)`);
  const entry = (key: string): TorchValue | undefined => tree.get(key);
  const activationName = entry("activation");
  const stateDict = entry("activation_state_dict");
  const k = stateDict instanceof Map ? stateDict.get("k") : undefined;
  const activation: AutoencoderActivation = withSource(path, () =>
    parseAutoencoderActivation(
      typeof activationName === "string" ? activationName : undefined,
      typeof k === "number" || typeof k === "string" ? k : undefined,
    ),
  );
  const tensors = collectTensors(tree);
  const input = entry("input");
  return {
    layer,
    autoencoder: withSource(path, () => SparseAutoencoder.fromOpenAiStateDict(tensors, activation, path)),
    site: isSite(input) ? input : null,
    file: path,
  };
}

// ---------------------------------------------------------------------------------------------
// SAELens

/** TransformerLens hook names → TDB sites. */
function siteOfHook(hookName: string): AutoencoderSite | null {
  if (/\.mlp\.hook_post$/.test(hookName)) return "mlp_post_act";
  if (/\.hook_mlp_out$/.test(hookName)) return "resid_delta_mlp";
  if (/\.hook_attn_out$/.test(hookName)) return "resid_delta_attn";
  return null;
}

function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c];
  return out;
}

async function loadSaeLensFolder(folder: string): Promise<LayerAutoencoder> {
  const cfgPath = join(folder, SAELENS_CONFIG);
  let cfg: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(await readFile(cfgPath, "utf8"));
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
      throw new Error("not an object");
    cfg = parsed as Record<string, unknown>;
  } catch (error) {
    throw new WeightFormatError(`${cfgPath}: not a JSON object (${(error as Error).message})`);
  }
  const weightsPath = join(folder, SAELENS_WEIGHTS);
  if (!(await isFile(weightsPath))) throw new ModelSourceError(`${folder}: ${SAELENS_WEIGHTS} is missing`);

  const hookName = typeof cfg.hook_name === "string" ? cfg.hook_name : "";
  let layer = typeof cfg.hook_layer === "number" ? cfg.hook_layer : Number.NaN;
  const hookLayer = /^blocks\.(\d+)\./.exec(hookName);
  if (!Number.isInteger(layer) && hookLayer) layer = Number(hookLayer[1]);
  if (!Number.isInteger(layer) || layer < 0) {
    throw new WeightFormatError(`${cfgPath}: no layer (expected hook_layer or hook_name "blocks.N.…")`);
  }
  const site = hookName === "" ? null : siteOfHook(hookName);
  if (hookName !== "" && site === null) {
    throw new WeightFormatError(
      `${cfgPath}: hook "${hookName}" is not supported; TDB splices autoencoders at blocks.N.mlp.hook_post ` +
        "(mlp_post_act), blocks.N.hook_mlp_out (resid_delta_mlp) or blocks.N.hook_attn_out (resid_delta_attn)",
    );
  }
  const normalize = cfg.normalize_activations;
  if (typeof normalize === "string" && normalize !== "none") {
    throw new WeightFormatError(
      `${cfgPath}: normalize_activations "${normalize}" is not supported (only "none")`,
    );
  }
  const architecture = typeof cfg.architecture === "string" ? cfg.architecture : "standard";
  const activationName =
    typeof cfg.activation_fn_str === "string"
      ? cfg.activation_fn_str
      : typeof cfg.activation_fn === "string"
        ? cfg.activation_fn
        : architecture === "topk"
          ? "topk"
          : "relu";
  if (architecture !== "standard" && architecture !== "topk") {
    throw new WeightFormatError(
      `${cfgPath}: SAELens architecture "${architecture}" is not supported (standard ReLU or TopK only)`,
    );
  }
  const kwargs = cfg.activation_fn_kwargs;
  const k =
    kOf(cfg.k) ??
    (typeof kwargs === "object" && kwargs !== null ? kOf((kwargs as Record<string, unknown>).k) : undefined);
  const activation = withSource(cfgPath, () => parseAutoencoderActivation(activationName, k));

  const tensors = await readSafetensorsFile(weightsPath);
  const get = (name: string): LoadedTensor => {
    const t = tensors.get(name);
    if (!t) throw new WeightFormatError(`${weightsPath}: missing tensor '${name}' (SAELens format)`);
    return t;
  };
  const wEnc = get("W_enc");
  const wDec = get("W_dec");
  if (wEnc.shape.length !== 2) throw new WeightFormatError(`${weightsPath}: W_enc must be 2-D`);
  const [nInputs, nLatents] = wEnc.shape;
  if (wDec.shape[0] !== nLatents || wDec.shape[1] !== nInputs) {
    throw new WeightFormatError(
      `${weightsPath}: W_dec has shape [${wDec.shape}], expected [${nLatents}, ${nInputs}] (W_enc is [${wEnc.shape}])`,
    );
  }
  const bDec = get("b_dec").data;
  const applyToInput = cfg.apply_b_dec_to_input !== false;
  const autoencoder = withSource(
    weightsPath,
    () =>
      new SparseAutoencoder({
        encoderWeight: transpose(wEnc.data, nInputs, nLatents),
        decoderWeight: transpose(wDec.data, nLatents, nInputs),
        latentBias: get("b_enc").data,
        inputBias: applyToInput ? bDec : new Float32Array(nInputs),
        outputBias: bDec,
        nInputs,
        nLatents,
        activation,
      }),
  );
  return { layer, autoencoder, site, file: weightsPath };
}
