/**
 * Reader for PyTorch `torch.save` files (the zip format, PyTorch ≥ 1.6) that accepts tensors and plain
 * containers only and never executes anything: the pickle is interpreted by a restricted VM whose only
 * callables are an allow-list of tensor rebuilders and `collections.OrderedDict`.
 *
 * Output tree: dicts → Map, lists and tuples → arrays, str → string, int → number (bigint beyond 2^53),
 * float → number, bool, None → null, bytes → Uint8Array, tensors → LoadedTensor (contiguous float32; integer
 * and bool tensors are converted too, their `dtype` says what they were — see tensor-data.ts).
 */

import { WeightFormatError } from "./errors.js";
import { type PickleDict, unpickle } from "./pickle.js";
import {
  DTYPE_ITEMSIZE,
  gatherStrided,
  type LoadedTensor,
  shapeSize,
  type TensorDType,
} from "./tensor-data.js";
import { inflateZipEntry, readZipDirectory, storedZipEntry, type ZipEntry } from "./zip.js";

export type TorchValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | LoadedTensor
  | TorchValue[]
  | Map<TorchValue, TorchValue>;

export interface TorchZipOptions {
  /** File name used in error messages. */
  name?: string;
  /** Check each entry's CRC-32 (default true). */
  verifyCrc?: boolean;
}

/** Largest tensor we will materialise, in elements (a Float32Array of 2^30 elements is 4 GiB). */
const MAX_ELEMENTS = 2 ** 30;

const STORAGE_DTYPES: Readonly<Record<string, TensorDType>> = {
  DoubleStorage: "F64",
  FloatStorage: "F32",
  HalfStorage: "F16",
  BFloat16Storage: "BF16",
  LongStorage: "I64",
  IntStorage: "I32",
  ShortStorage: "I16",
  CharStorage: "I8",
  ByteStorage: "U8",
  BoolStorage: "BOOL",
};

/** Every global a torch.save pickle of tensors and containers may name. Anything else is refused. */
const ALLOWED_GLOBALS = new Set([
  "torch._utils._rebuild_tensor_v2",
  "torch._utils._rebuild_parameter",
  "torch._utils._rebuild_parameter_with_state",
  "torch._tensor._rebuild_from_type_v2",
  "torch.Tensor",
  "torch.nn.parameter.Parameter",
  "torch.Size",
  "collections.OrderedDict",
  "_codecs.encode",
  ...Object.keys(STORAGE_DTYPES).map((s) => `torch.${s}`),
]);

class TorchGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get fullName(): string {
    return `${this.module}.${this.name}`;
  }
}

class TorchStorage {
  constructor(
    readonly key: string,
    readonly dtype: TensorDType,
    readonly numel: number,
    readonly bytes: Uint8Array,
  ) {}
}

export function isLoadedTensor(value: unknown): value is LoadedTensor {
  return (
    typeof value === "object" &&
    value !== null &&
    !Array.isArray(value) &&
    !(value instanceof Map) &&
    (value as LoadedTensor).data instanceof Float32Array
  );
}

function isNonNegativeInt(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/** Locate `<archive>/data.pkl` and check the archive's declared byte order. */
function locateArchive(
  entries: Map<string, ZipEntry>,
  name: string,
): { prefix: string; pickle: ZipEntry; byteorder?: ZipEntry } {
  for (const entry of entries.values()) {
    const slash = entry.name.indexOf("/");
    if (slash > 0 && entry.name.slice(slash) === "/data.pkl") {
      const prefix = entry.name.slice(0, slash + 1);
      return { prefix, pickle: entry, byteorder: entries.get(`${prefix}byteorder`) };
    }
  }
  throw new WeightFormatError(`${name}: zip archive has no <archive>/data.pkl; not a torch.save file`);
}

function interpret(pickleBytes: Uint8Array, record: (key: string) => Uint8Array, name: string): TorchValue {
  const bad = (message: string): never => {
    throw new WeightFormatError(`${name}: ${message}`);
  };
  const storages = new Map<string, TorchStorage>();

  const rebuildTensor = (args: unknown[]): LoadedTensor => {
    const [storage, storageOffset, size, stride] = args;
    if (!(storage instanceof TorchStorage)) return bad("_rebuild_tensor_v2: first argument is not a storage");
    if (!isNonNegativeInt(storageOffset))
      return bad(`_rebuild_tensor_v2: bad storage offset ${String(storageOffset)}`);
    if (!Array.isArray(size) || !size.every(isNonNegativeInt)) return bad("_rebuild_tensor_v2: bad size");
    if (!Array.isArray(stride) || stride.length !== size.length || !stride.every(isNonNegativeInt)) {
      return bad("_rebuild_tensor_v2: bad stride");
    }
    const shape = size as number[];
    const strides = stride as number[];
    const count = shapeSize(shape);
    if (count > MAX_ELEMENTS) return bad(`tensor of shape [${shape.join(", ")}] is too large to load`);
    if (count > 0) {
      let last = storageOffset;
      for (let i = 0; i < shape.length; i++) last += (shape[i] - 1) * strides[i];
      if (last >= storage.numel) {
        return bad(
          `tensor [${shape.join(", ")}] (offset ${storageOffset}, stride [${strides.join(", ")}]) reads past ` +
            `storage ${storage.key} (${storage.numel} elements)`,
        );
      }
    }
    return {
      dtype: storage.dtype,
      shape: [...shape],
      data: gatherStrided(storage.bytes, storage.dtype, shape, strides, storageOffset),
    };
  };

  const call = (callable: unknown, args: unknown[]): unknown => {
    if (!(callable instanceof TorchGlobal)) return bad("REDUCE on something that is not an allowed global");
    switch (callable.fullName) {
      case "torch._utils._rebuild_tensor_v2":
        return rebuildTensor(args);
      case "torch._utils._rebuild_parameter":
      case "torch._utils._rebuild_parameter_with_state":
        if (!isLoadedTensor(args[0])) return bad(`${callable.name}: argument is not a tensor`);
        return args[0];
      case "torch._tensor._rebuild_from_type_v2": {
        const [func, newType, innerArgs] = args;
        const typeName = newType instanceof TorchGlobal ? newType.fullName : "";
        if (typeName !== "torch.Tensor" && typeName !== "torch.nn.parameter.Parameter") {
          return bad(`_rebuild_from_type_v2: tensor subclass ${typeName || "?"} is not supported`);
        }
        if (!Array.isArray(innerArgs)) return bad("_rebuild_from_type_v2: bad arguments");
        return call(func, innerArgs);
      }
      case "collections.OrderedDict": {
        const dict: PickleDict = new Map();
        if (args.length === 0) return dict;
        if (args.length === 1 && Array.isArray(args[0])) {
          for (const pair of args[0]) {
            if (!Array.isArray(pair) || pair.length !== 2) return bad("OrderedDict: items are not pairs");
            dict.set(pair[0], pair[1]);
          }
          return dict;
        }
        return bad("OrderedDict: unsupported arguments");
      }
      case "torch.Size":
        if (args.length === 1 && Array.isArray(args[0]) && args[0].every(isNonNegativeInt)) return args[0];
        return bad("torch.Size: bad arguments");
      case "_codecs.encode": {
        // How protocol 2 stores Python 3 bytes: _codecs.encode(latin1_text, "latin1").
        const [textValue, encoding] = args;
        if (typeof textValue !== "string" || (encoding !== "latin1" && encoding !== "latin-1")) {
          return bad("_codecs.encode: only latin1 byte strings are supported");
        }
        const out = new Uint8Array(textValue.length);
        for (let i = 0; i < textValue.length; i++) {
          const code = textValue.charCodeAt(i);
          if (code > 255) return bad("_codecs.encode: character outside latin1");
          out[i] = code;
        }
        return out;
      }
      default:
        return bad(`${callable.fullName} cannot be called`);
    }
  };

  const result = unpickle(
    pickleBytes,
    {
      resolveGlobal(module, globalName) {
        const full = `${module}.${globalName}`;
        if (!ALLOWED_GLOBALS.has(full)) {
          return bad(
            `refusing to load: the pickle references global "${full}", which is not a tensor or plain container`,
          );
        }
        return new TorchGlobal(module, globalName);
      },
      persistentLoad(pid) {
        if (!Array.isArray(pid) || pid.length !== 5 || pid[0] !== "storage") {
          return bad("unsupported persistent id (expected a storage reference)");
        }
        const [, storageType, key, , numel] = pid;
        if (!(storageType instanceof TorchGlobal) || !Object.hasOwn(STORAGE_DTYPES, storageType.name)) {
          return bad("persistent id does not name a known storage type");
        }
        if (typeof key !== "string" || !isNonNegativeInt(numel)) return bad("malformed storage reference");
        const dtype = STORAGE_DTYPES[storageType.name];
        const cacheKey = `${key}:${dtype}`;
        const cached = storages.get(cacheKey);
        if (cached) return cached;
        const bytes = record(key);
        if (bytes.byteLength < numel * DTYPE_ITEMSIZE[dtype]) {
          return bad(`storage ${key} holds ${bytes.byteLength} bytes, fewer than ${numel} × ${dtype}`);
        }
        const storage = new TorchStorage(key, dtype, numel, bytes);
        storages.set(cacheKey, storage);
        return storage;
      },
      reduce(callable, args, opcode) {
        if (opcode === "NEWOBJ") {
          if (callable instanceof TorchGlobal && callable.fullName === "collections.OrderedDict")
            return new Map();
          return bad(`NEWOBJ of ${callable instanceof TorchGlobal ? callable.fullName : "?"} is not allowed`);
        }
        return call(callable, args);
      },
      build(target, _state) {
        // OrderedDict state is its attribute dict (a state_dict's `_metadata`); tensors may carry empty
        // python state. Neither affects the data, so the state is dropped.
        if (target instanceof Map || isLoadedTensor(target)) return target;
        return bad("BUILD on an object that is not a dict or tensor");
      },
    },
    name,
  );
  return checkTree(result, name);
}

/** Make sure no VM-internal object (global, bare storage) escapes into the returned tree. */
function checkTree(root: unknown, name: string): TorchValue {
  const seen = new Set<unknown>();
  const pending: unknown[] = [root];
  while (pending.length > 0) {
    const value = pending.pop();
    if (value === null || typeof value !== "object") continue;
    if (seen.has(value)) continue;
    seen.add(value);
    if (value instanceof TorchGlobal) {
      throw new WeightFormatError(`${name}: the file contains a reference to ${value.fullName}, not data`);
    }
    if (value instanceof TorchStorage) {
      throw new WeightFormatError(`${name}: the file contains a bare storage; only tensors are supported`);
    }
    if (Array.isArray(value)) pending.push(...value);
    else if (value instanceof Map) for (const [k, v] of value) pending.push(k, v);
  }
  return root as TorchValue;
}

function checkMagic(bytes: Uint8Array, name: string): void {
  if (bytes.byteLength >= 2 && bytes[0] === 0x80 && bytes[1] <= 5) {
    throw new WeightFormatError(
      `${name}: legacy (non-zip) torch.save format is not supported; re-save it with PyTorch ≥ 1.6 or as safetensors`,
    );
  }
  if (bytes.byteLength < 4 || bytes[0] !== 0x50 || bytes[1] !== 0x4b) {
    throw new WeightFormatError(`${name}: not a PyTorch zip file (bad magic bytes)`);
  }
}

function checkByteorder(
  entry: ZipEntry | undefined,
  data: (entry: ZipEntry) => Uint8Array,
  name: string,
): void {
  if (!entry) return;
  const order = new TextDecoder().decode(data(entry)).trim();
  if (order !== "little") throw new WeightFormatError(`${name}: byte order "${order}" is not supported`);
}

/** Parse a torch.save zip held in memory. Deflated entries (torch never writes them) need the async variant. */
export function parseTorchZip(bytes: Uint8Array, options: TorchZipOptions = {}): TorchValue {
  const name = options.name ?? "torch zip";
  checkMagic(bytes, name);
  const entries = readZipDirectory(bytes, name);
  const { prefix, pickle, byteorder } = locateArchive(entries, name);
  const data = (entry: ZipEntry) => storedZipEntry(bytes, entry, name, options.verifyCrc ?? true);
  checkByteorder(byteorder, data, name);
  const record = (key: string): Uint8Array => {
    const entry = entries.get(`${prefix}data/${key}`);
    if (!entry) throw new WeightFormatError(`${name}: storage record ${prefix}data/${key} is missing`);
    return data(entry);
  };
  return interpret(data(pickle), record, name);
}

/** Like `parseTorchZip`, but also accepts deflate-compressed entries (via DecompressionStream). */
export async function parseTorchZipAsync(
  bytes: Uint8Array,
  options: TorchZipOptions = {},
): Promise<TorchValue> {
  const name = options.name ?? "torch zip";
  checkMagic(bytes, name);
  const entries = readZipDirectory(bytes, name);
  const contents = new Map<string, Uint8Array>();
  for (const entry of entries.values()) {
    contents.set(
      entry.name,
      entry.method === 8
        ? await inflateZipEntry(bytes, entry, name)
        : storedZipEntry(bytes, entry, name, options.verifyCrc ?? true),
    );
  }
  const { prefix, pickle, byteorder } = locateArchive(entries, name);
  const data = (entry: ZipEntry) => contents.get(entry.name)!;
  checkByteorder(byteorder, data, name);
  const record = (key: string): Uint8Array => {
    const entry = entries.get(`${prefix}data/${key}`);
    if (!entry) throw new WeightFormatError(`${name}: storage record ${prefix}data/${key} is missing`);
    return data(entry);
  };
  return interpret(data(pickle), record, name);
}

/**
 * All tensors of a parsed tree, keyed by their path of dict keys / list indices joined with "."
 * (a flat state dict keeps its own keys). Non-tensor leaves are skipped.
 */
export function collectTensors(tree: TorchValue): Map<string, LoadedTensor> {
  const out = new Map<string, LoadedTensor>();
  const seen = new Set<unknown>();
  const visit = (value: TorchValue, path: string) => {
    if (isLoadedTensor(value)) {
      out.set(path, value);
      return;
    }
    if (value === null || typeof value !== "object" || seen.has(value)) return;
    seen.add(value);
    const join = (key: string) => (path === "" ? key : `${path}.${key}`);
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) visit(value[i], join(String(i)));
    } else if (value instanceof Map) {
      for (const [key, item] of value) {
        if (typeof key === "string" || typeof key === "number") visit(item, join(String(key)));
      }
    }
  };
  visit(tree, "");
  return out;
}
