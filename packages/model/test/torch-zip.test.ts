import { readFileSync } from "node:fs";
import { deflateRawSync, crc32 as zlibCrc32 } from "node:zlib";
import { describe, expect, it } from "vitest";
import { WeightFormatError } from "../src/formats/errors.js";
import { parseSafetensors } from "../src/formats/safetensors.js";
import type { LoadedTensor } from "../src/formats/tensor-data.js";
import {
  collectTensors,
  isLoadedTensor,
  parseTorchZip,
  parseTorchZipAsync,
  type TorchValue,
} from "../src/formats/torch-zip.js";

const aeDir = new URL("../../../../shared/fixtures/tiny-gpt2/autoencoders/mlp_post_act/", import.meta.url);
const ptBytes = new Uint8Array(readFileSync(new URL("0.pt", aeDir)));
const stBytes = new Uint8Array(readFileSync(new URL("0.safetensors", aeDir)));

// ---- tiny ZIP writer (stored or deflated), independent of the reader under test ----

interface ZipInput {
  name: string;
  data: Uint8Array;
  deflate?: boolean;
}

function u16(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff];
}
function u32(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}

function writeZip(files: ZipInput[]): Uint8Array {
  const chunks: number[] = [];
  const central: number[] = [];
  for (const file of files) {
    const name = [...new TextEncoder().encode(file.name)];
    const body = file.deflate ? new Uint8Array(deflateRawSync(file.data)) : file.data;
    const method = file.deflate ? 8 : 0;
    const crc = zlibCrc32(file.data);
    const offset = chunks.length;
    chunks.push(...u32(0x04034b50), ...u16(20), ...u16(0), ...u16(method), ...u16(0), ...u16(0));
    chunks.push(
      ...u32(crc),
      ...u32(body.length),
      ...u32(file.data.length),
      ...u16(name.length),
      ...u16(0),
      ...name,
    );
    chunks.push(...body);
    central.push(...u32(0x02014b50), ...u16(20), ...u16(20), ...u16(0), ...u16(method), ...u16(0), ...u16(0));
    central.push(
      ...u32(crc),
      ...u32(body.length),
      ...u32(file.data.length),
      ...u16(name.length),
      ...u16(0),
      ...u16(0),
    );
    central.push(...u16(0), ...u16(0), ...u32(0), ...u32(offset), ...name);
  }
  const centralOffset = chunks.length;
  chunks.push(...central);
  chunks.push(...u32(0x06054b50), ...u16(0), ...u16(0), ...u16(files.length), ...u16(files.length));
  chunks.push(...u32(central.length), ...u32(centralOffset), ...u16(0));
  return new Uint8Array(chunks);
}

// ---- pickle assembly by opcode ----

type Part = number | number[] | Uint8Array;
const flat = (parts: Part[]): number[] => parts.flatMap((p) => (typeof p === "number" ? [p] : [...p]));
const ascii = (s: string) => [...new TextEncoder().encode(s)];
const op = {
  proto: [0x80, 2],
  mark: 0x28,
  stop: 0x2e,
  tuple: 0x74,
  tuple1: 0x85,
  tuple2: 0x86,
  emptyDict: 0x7d,
  emptyList: 0x5d,
  emptyTuple: 0x29,
  setitems: 0x75,
  appends: 0x65,
  reduce: 0x52,
  binpersid: 0x51,
  none: 0x4e,
  newtrue: 0x88,
  newfalse: 0x89,
  global: (module: string, name: string) => [0x63, ...ascii(`${module}\n${name}\n`)],
  str: (s: string) => {
    const bytes = ascii(s);
    return [0x58, ...u32(bytes.length), ...bytes];
  },
  shortStr: (s: string) => [0x8c, s.length, ...ascii(s)],
  int: (n: number) => [0x4a, ...u32(n)],
  float: (x: number) => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, x, false);
    return [0x47, ...b];
  },
};
const pickle = (...parts: Part[]) => new Uint8Array(flat([op.proto, ...parts, op.stop]));

/** `_rebuild_tensor_v2(persistent storage, offset, size, stride, False, OrderedDict())` */
function tensorOps(
  storageType: string,
  key: string,
  numel: number,
  offset: number,
  size: number[],
  stride: number[],
): number[] {
  return flat([
    op.global("torch._utils", "_rebuild_tensor_v2"),
    op.mark,
    op.mark,
    op.str("storage"),
    op.global("torch", storageType),
    op.str(key),
    op.str("cpu"),
    op.int(numel),
    op.tuple,
    op.binpersid,
    op.int(offset),
    op.mark,
    ...size.map(op.int),
    op.tuple,
    op.mark,
    ...stride.map(op.int),
    op.tuple,
    op.newfalse,
    op.global("collections", "OrderedDict"),
    op.emptyTuple,
    op.reduce,
    op.tuple,
    op.reduce,
  ]);
}

function torchArchive(
  pkl: Uint8Array,
  records: Record<string, Uint8Array> = {},
  deflate = false,
): Uint8Array {
  return writeZip([
    { name: "archive/data.pkl", data: pkl, deflate },
    { name: "archive/byteorder", data: new TextEncoder().encode("little") },
    ...Object.entries(records).map(([key, data]) => ({ name: `archive/data/${key}`, data, deflate })),
    { name: "archive/version", data: new TextEncoder().encode("3\n") },
  ]);
}

/** float16 storage holding 0, 1, …, n−1 (small integers are exact in float16). */
function halfCounting(n: number): Uint8Array {
  const out = new Uint8Array(2 * n);
  const view = new DataView(out.buffer);
  for (let k = 0; k < n; k++) {
    // float16 bits of k, for 1 ≤ k < 2048: exponent e = floor(log2 k), mantissa (k / 2^e − 1)·1024.
    if (k === 0) continue;
    const e = Math.floor(Math.log2(k));
    view.setUint16(2 * k, ((e + 15) << 10) | ((k / 2 ** e - 1) * 1024), true);
  }
  return out;
}

function errorOf(fn: () => unknown): WeightFormatError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(WeightFormatError);
    return error as WeightFormatError;
  }
  throw new Error("expected a WeightFormatError");
}

/** Index of the first element whose float32 bit pattern differs, or -1 (fast, unlike a deep toEqual). */
function firstBitDifference(a: LoadedTensor, b: LoadedTensor): number {
  const x = new Uint32Array(a.data.slice().buffer);
  const y = new Uint32Array(b.data.slice().buffer);
  if (x.length !== y.length) return 0;
  return x.findIndex((v, i) => v !== y[i]);
}

describe("parseTorchZip on the TDB autoencoder fixture", () => {
  const tree = parseTorchZip(ptBytes, { name: "0.pt" });

  it("matches the safetensors copy bit for bit", () => {
    const fromPt = collectTensors(tree);
    const fromSt = parseSafetensors(stBytes);
    expect([...fromPt.keys()].sort()).toEqual([...fromSt.keys()].sort());
    for (const [key, expected] of fromSt) {
      const actual = fromPt.get(key)!;
      expect(actual.dtype, key).toBe(expected.dtype);
      expect(actual.shape, key).toEqual(expected.shape);
      expect(firstBitDifference(actual, expected), key).toBe(-1);
    }
  });

  it("agrees with numpy on the values", () => {
    const tensors = collectTensors(tree);
    const decoder = tensors.get("decoder.weight")!;
    expect(decoder.shape).toEqual([256, 512]);
    expect([...decoder.data.slice(0, 3)]).toEqual([
      0.05440223589539528, -0.05686700716614723, -0.10404366999864578,
    ]);
    let sum = 0;
    for (const v of tensors.get("latent_bias")!.data) sum += v;
    expect(sum).toBeCloseTo(-893.2641402482986, 9);
    expect(tensors.get("stats_last_nonzero")!.dtype).toBe("I64");
  });

  it("keeps plain values plain", () => {
    expect(tree).toBeInstanceOf(Map);
    const dict = tree as Map<TorchValue, TorchValue>;
    expect(dict.get("activation")).toBe("ReLU");
    expect(dict.get("activation_state_dict")).toEqual(new Map());
    expect(isLoadedTensor(dict.get("pre_bias"))).toBe(true);
  });
});

describe("crafted torch archives", () => {
  it("honours storage offset and strides and shares storages between tensors", () => {
    const pkl = pickle(
      op.emptyDict,
      op.mark,
      op.str("transposed"),
      tensorOps("HalfStorage", "0", 12, 1, [2, 3], [1, 4]),
      op.str("slice"),
      tensorOps("HalfStorage", "0", 12, 2, [3], [1]),
      op.str("scalar"),
      tensorOps("HalfStorage", "0", 12, 11, [], []),
      op.setitems,
    );
    const tensors = collectTensors(parseTorchZip(torchArchive(pkl, { "0": halfCounting(12) })));
    // element [i][j] = storage[1 + i·1 + j·4]
    expect(tensors.get("transposed")).toEqual({
      dtype: "F16",
      shape: [2, 3],
      data: new Float32Array([1, 5, 9, 2, 6, 10]),
    });
    expect([...tensors.get("slice")!.data]).toEqual([2, 3, 4]);
    expect(tensors.get("scalar")!.shape).toEqual([]);
    expect([...tensors.get("scalar")!.data]).toEqual([11]);
  });

  it("reads parameters and plain containers", () => {
    const longBytes = [0x8a, 9, ...new Array(8).fill(0), 0x01]; // LONG1 2^64
    const pkl = pickle(
      op.emptyDict,
      op.mark,
      op.str("p"),
      op.global("torch._utils", "_rebuild_parameter"),
      op.mark,
      tensorOps("FloatStorage", "0", 2, 0, [2], [1]),
      op.newtrue,
      op.global("collections", "OrderedDict"),
      op.emptyTuple,
      op.reduce,
      op.tuple,
      op.reduce,
      op.shortStr("list"),
      op.emptyList,
      op.mark,
      op.int(-5),
      op.float(0.25),
      op.none,
      longBytes,
      op.appends,
      op.shortStr("tuple"),
      op.str("a"),
      op.str("é"),
      op.tuple2,
      op.shortStr("bytes"),
      op.global("_codecs", "encode"),
      op.str("\u00ff\u0001"),
      op.str("latin1"),
      op.tuple2,
      op.reduce,
      op.setitems,
    );
    const floats = new Uint8Array(new Float32Array([1.5, -2]).buffer);
    const tree = parseTorchZip(torchArchive(pkl, { "0": floats })) as Map<TorchValue, TorchValue>;
    expect(tree.get("p")).toEqual({ dtype: "F32", shape: [2], data: new Float32Array([1.5, -2]) });
    expect(tree.get("list")).toEqual([-5, 0.25, null, 2n ** 64n]);
    expect(tree.get("tuple")).toEqual(["a", "é"]);
    expect(tree.get("bytes")).toEqual(new Uint8Array([255, 1]));
  });

  it("reads deflated entries only through the async reader", async () => {
    const pkl = pickle(tensorOps("FloatStorage", "0", 3, 0, [3], [1]));
    const floats = new Uint8Array(new Float32Array([0.5, 1e-30, -7]).buffer);
    const zip = torchArchive(pkl, { "0": floats }, true);
    expect(errorOf(() => parseTorchZip(zip, { name: "z.pt" })).message).toMatch(
      /z\.pt: entry "archive\/data\.pkl" is deflate-compressed; load it with the async reader/,
    );
    const tensor = await parseTorchZipAsync(zip);
    expect(tensor).toEqual({ dtype: "F32", shape: [3], data: new Float32Array([0.5, 1e-30, -7]) });
  });
});

describe("hostile and broken torch files", () => {
  it("refuses a GLOBAL outside the allow-list (os.system) before calling anything", () => {
    const pkl = pickle(op.global("os", "system"), op.str("touch pwned-by-pickle"), op.tuple1, op.reduce);
    expect(errorOf(() => parseTorchZip(torchArchive(pkl), { name: "evil.pt" })).message).toMatch(
      /evil\.pt: refusing to load: the pickle references global "os\.system"/,
    );
  });

  it("refuses STACK_GLOBAL names too", () => {
    const pkl = pickle(
      op.shortStr("builtins"),
      op.shortStr("eval"),
      0x93,
      op.str("1+1"),
      op.tuple1,
      op.reduce,
    );
    expect(errorOf(() => parseTorchZip(torchArchive(pkl))).message).toMatch(/global "builtins\.eval"/);
  });

  it("refuses opcodes that instantiate classes", () => {
    const inst = pickle(op.mark, 0x69, ascii("os\nsystem\n"));
    expect(errorOf(() => parseTorchZip(torchArchive(inst))).message).toMatch(
      /opcode INST at offset 3 is not allowed/,
    );
    const ext = pickle(0x82, 1);
    expect(errorOf(() => parseTorchZip(torchArchive(ext))).message).toMatch(/opcode EXT1/);
  });

  it("refuses to call allow-listed names that are not callables", () => {
    const pkl = pickle(op.global("torch", "FloatStorage"), op.emptyTuple, op.reduce);
    expect(errorOf(() => parseTorchZip(torchArchive(pkl))).message).toMatch(
      /torch\.FloatStorage cannot be called/,
    );
  });

  it("rejects tensors that read outside their storage and missing records", () => {
    const past = pickle(tensorOps("FloatStorage", "0", 4, 1, [4], [1]));
    expect(errorOf(() => parseTorchZip(torchArchive(past, { "0": new Uint8Array(16) }))).message).toMatch(
      /reads past storage 0 \(4 elements\)/,
    );
    const short = pickle(tensorOps("FloatStorage", "0", 8, 0, [4], [1]));
    expect(errorOf(() => parseTorchZip(torchArchive(short, { "0": new Uint8Array(16) }))).message).toMatch(
      /storage 0 holds 16 bytes, fewer than 8 × F32/,
    );
    const missing = pickle(tensorOps("FloatStorage", "7", 4, 0, [4], [1]));
    expect(errorOf(() => parseTorchZip(torchArchive(missing))).message).toMatch(
      /storage record archive\/data\/7 is missing/,
    );
  });

  it("rejects a truncated pickle", () => {
    const pkl = new Uint8Array(flat([op.proto, op.emptyDict, op.str("abc")]));
    expect(errorOf(() => parseTorchZip(torchArchive(pkl.subarray(0, pkl.length - 1)))).message).toMatch(
      /truncated pickle/,
    );
    expect(errorOf(() => parseTorchZip(torchArchive(pkl))).message).toMatch(/truncated pickle/);
  });

  it("rejects truncated zips", () => {
    expect(
      errorOf(() => parseTorchZip(ptBytes.subarray(0, ptBytes.length >> 1), { name: "half.pt" })).message,
    ).toMatch(/half\.pt: truncated zip archive/);
    expect(errorOf(() => parseTorchZip(ptBytes.subarray(0, ptBytes.length - 30))).message).toMatch(
      /truncated zip archive/,
    );
  });

  it("rejects a corrupted record through its CRC", () => {
    const copy = ptBytes.slice();
    copy[525200 + 200] ^= 0x40; // inside 0/data/1
    expect(errorOf(() => parseTorchZip(copy)).message).toMatch(/CRC-32 mismatch in "0\/data\/1"/);
  });

  it("rejects files that are not torch zips", () => {
    expect(errorOf(() => parseTorchZip(stBytes, { name: "x.pt" })).message).toMatch(
      /x\.pt: not a PyTorch zip file \(bad magic/,
    );
    expect(errorOf(() => parseTorchZip(new Uint8Array([0x80, 0x02, 0x8a, 0x0a]))).message).toMatch(
      /legacy \(non-zip\)/,
    );
    const plainZip = writeZip([{ name: "readme.txt", data: new Uint8Array([1, 2, 3]) }]);
    expect(errorOf(() => parseTorchZip(plainZip)).message).toMatch(/no <archive>\/data\.pkl/);
  });

  it("rejects big-endian archives", () => {
    const zip = writeZip([
      { name: "a/data.pkl", data: pickle(op.none) },
      { name: "a/byteorder", data: new TextEncoder().encode("big") },
    ]);
    expect(errorOf(() => parseTorchZip(zip)).message).toMatch(/byte order "big"/);
  });
});
