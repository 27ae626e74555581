/**
 * safetensors writer: 8-byte little-endian header length, a JSON header padded with spaces to a multiple of 8
 * (as the reference writer does, so every tensor starts 8-byte aligned), then the tensors' bytes back to back.
 */
import { WeightFormatError } from "./errors.js";

/** dtypes this writer produces, with the typed arrays that hold them. */
export type WritableTensor =
  | { dtype: "F32"; shape: readonly number[]; data: Float32Array }
  /** F16 from float32 values, rounded to nearest (ties to even); beyond ±65504 they become ±Infinity. */
  | { dtype: "F16"; shape: readonly number[]; data: Float32Array }
  | { dtype: "F64"; shape: readonly number[]; data: Float64Array }
  | { dtype: "I32"; shape: readonly number[]; data: Int32Array }
  /** I64 from JS numbers (whole, |v| ≤ 2^53) or from BigInt64Array. */
  | { dtype: "I64"; shape: readonly number[]; data: BigInt64Array | readonly number[] | Float64Array };

const ITEMSIZE: Readonly<Record<WritableTensor["dtype"], number>> = {
  F32: 4,
  F16: 2,
  F64: 8,
  I32: 4,
  I64: 8,
};

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** IEEE binary16 bits of a float32 value, rounded to nearest, ties to even (F. Giesen's float_to_half_rtne). */
export function float32ToFloat16Bits(value: number): number {
  f32Scratch[0] = value;
  let x = u32Scratch[0];
  const sign = (x >>> 16) & 0x8000;
  x &= 0x7fffffff;
  if (x >= 0x47800000) return sign | (x > 0x7f800000 ? 0x7e00 : 0x7c00); // NaN, or too large: Infinity
  if (x < 0x38800000) {
    // Subnormal or zero: adding 0.5 aligns the 10 mantissa bits at the bottom; float32 addition rounds to even.
    u32Scratch[0] = x;
    f32Scratch[0] = Math.fround(f32Scratch[0] + 0.5);
    return sign | (u32Scratch[0] - 0x3f000000);
  }
  const odd = (x >>> 13) & 1;
  x = (x + ((15 - 127) << 23) + 0xfff + odd) >>> 0;
  return sign | (x >>> 13);
}

/** Rounds every value to the nearest float16 (kept as float32): what an F16 tensor will hold. */
export function roundToFloat16(values: Float32Array): void {
  for (let i = 0; i < values.length; i++) values[i] = float16BitsToNumber(float32ToFloat16Bits(values[i]));
}

function float16BitsToNumber(h: number): number {
  const exponent = (h >>> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  const sign = h & 0x8000 ? -1 : 1;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/**
 * Serialises tensors (in the given order) and optional string metadata into safetensors bytes. Tensor names
 * must be unique and may not be `__metadata__`; each data length must match its shape.
 */
export function serializeSafetensors(
  tensors: ReadonlyMap<string, WritableTensor> | readonly (readonly [string, WritableTensor])[],
  metadata?: Readonly<Record<string, string>>,
): Uint8Array {
  const entries: (readonly [string, WritableTensor])[] =
    tensors instanceof Map
      ? [...tensors.entries()]
      : [...(tensors as readonly (readonly [string, WritableTensor])[])];
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== "string") throw new WeightFormatError(`metadata '${key}' must be a string`);
    }
    header.__metadata__ = { ...metadata };
  }
  let offset = 0;
  for (const [name, tensor] of entries) {
    if (name === "__metadata__") throw new WeightFormatError("a tensor may not be named __metadata__");
    if (Object.hasOwn(header, name)) throw new WeightFormatError(`tensor '${name}' appears twice`);
    if (!tensor.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new WeightFormatError(`tensor '${name}': shape [${tensor.shape}] is not a list of sizes`);
    }
    const count = tensor.shape.reduce((a, b) => a * b, 1);
    if (tensor.data.length !== count) {
      throw new WeightFormatError(
        `tensor '${name}': ${tensor.data.length} values for shape [${tensor.shape}] (${count})`,
      );
    }
    const bytes = count * ITEMSIZE[tensor.dtype];
    header[name] = { dtype: tensor.dtype, shape: [...tensor.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const withSpaces = new Uint8Array(padded).fill(0x20);
    withSpaces.set(json);
    json = withSpaces;
  }
  const out = new Uint8Array(8 + json.length + offset);
  const view = new DataView(out.buffer);
  view.setUint32(0, json.length % 4294967296, true);
  view.setUint32(4, Math.floor(json.length / 4294967296), true);
  out.set(json, 8);
  let at = 8 + json.length;
  for (const [name, tensor] of entries) {
    at = writeTensor(view, at, name, tensor);
  }
  return out;
}

const littleEndianPlatform = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function writeTensor(view: DataView, at: number, name: string, tensor: WritableTensor): number {
  const n = tensor.data.length;
  const { data } = tensor;
  if (tensor.dtype === "F16") {
    for (let i = 0; i < n; i++) view.setUint16(at + 2 * i, float32ToFloat16Bits(tensor.data[i]), true);
    return at + 2 * n;
  }
  if (littleEndianPlatform && tensor.dtype !== "I64" && !Array.isArray(data)) {
    const typed = data as Float32Array | Float64Array | Int32Array;
    new Uint8Array(view.buffer, view.byteOffset).set(
      new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength),
      at,
    );
    return at + typed.byteLength;
  }
  switch (tensor.dtype) {
    case "F32":
      for (let i = 0; i < n; i++) view.setFloat32(at + 4 * i, tensor.data[i], true);
      return at + 4 * n;
    case "F64":
      for (let i = 0; i < n; i++) view.setFloat64(at + 8 * i, tensor.data[i], true);
      return at + 8 * n;
    case "I32":
      for (let i = 0; i < n; i++) view.setInt32(at + 4 * i, tensor.data[i], true);
      return at + 4 * n;
    case "I64": {
      const data = tensor.data;
      if (data instanceof BigInt64Array) {
        for (let i = 0; i < n; i++) view.setBigInt64(at + 8 * i, data[i], true);
      } else {
        for (let i = 0; i < n; i++) {
          const v = data[i];
          if (!Number.isSafeInteger(v))
            throw new WeightFormatError(`tensor '${name}': ${v} is not a whole number for I64`);
          // Two 32-bit halves (two's complement), avoiding BigInt for the common case.
          const high = Math.floor(v / 4294967296);
          view.setUint32(at + 8 * i, v - high * 4294967296, true);
          view.setInt32(at + 8 * i + 4, high, true);
        }
      }
      return at + 8 * n;
    }
  }
}

/**
 * The raw little-endian bytes of one tensor of a parsed file (for dtypes the float32 decoder would round,
 * such as F64 counters or large I64 values).
 */
export function rawTensorBytes(
  bytes: Uint8Array,
  dataStart: number,
  dataOffsets: readonly [number, number],
): Uint8Array {
  return bytes.subarray(dataStart + dataOffsets[0], dataStart + dataOffsets[1]);
}

/** Decodes little-endian F64 bytes exactly. */
export function decodeFloat64(bytes: Uint8Array): Float64Array {
  const out = new Float64Array(bytes.byteLength / 8);
  new Uint8Array(out.buffer).set(bytes);
  if (!littleEndianPlatform) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < out.length; i++) out[i] = view.getFloat64(8 * i, true);
  }
  return out;
}
