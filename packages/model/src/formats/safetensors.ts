/**
 * safetensors reader: 8-byte little-endian header length, a JSON header, then raw tensor bytes.
 * https://github.com/huggingface/safetensors — format description in its README.
 */

import { WeightFormatError } from "./errors.js";
import {
  DTYPE_ITEMSIZE,
  decodeContiguous,
  isTensorDType,
  type LoadedTensor,
  type TensorDType,
} from "./tensor-data.js";

export interface SafetensorsEntry {
  dtype: TensorDType;
  shape: number[];
  /** [begin, end) relative to the start of the data section. */
  dataOffsets: [number, number];
}

export interface SafetensorsHeader {
  /** Byte length of the JSON header. */
  headerLength: number;
  /** Absolute file offset of the data section (8 + headerLength). */
  dataStart: number;
  /** Tensors in file order of their data. */
  tensors: Map<string, SafetensorsEntry>;
  /** The optional `__metadata__` string map (empty when absent). */
  metadata: Record<string, string>;
}

export interface SafetensorsOptions {
  /** File name used in error messages. */
  name?: string;
  /**
   * Full file size, when `bytes` holds only a prefix (at least the header): offsets are then checked against
   * this size. Defaults to `bytes.byteLength`.
   */
  fileSize?: number;
}

/** Refuse headers beyond this; the reference implementation uses the same 100 MB cap. */
export const MAX_SAFETENSORS_HEADER_BYTES = 100_000_000;

/** dtypes that exist in safetensors but that we do not decode, for a precise error message. */
const KNOWN_UNSUPPORTED = new Set([
  "F8_E4M3",
  "F8_E5M2",
  "F8_E8M0",
  "F4",
  "F6_E2M3",
  "F6_E3M2",
  "U16",
  "U32",
  "U64",
  "C64",
]);

function fail(name: string, message: string): never {
  throw new WeightFormatError(`${name}: ${message}`);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

export function parseSafetensorsHeader(
  bytes: Uint8Array,
  options: SafetensorsOptions = {},
): SafetensorsHeader {
  const name = options.name ?? "safetensors";
  const fileSize = options.fileSize ?? bytes.byteLength;
  if (fileSize < 8 || bytes.byteLength < 8) {
    fail(name, `file is truncated: ${fileSize} bytes, too short for the 8-byte header length`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lengthLow = view.getUint32(0, true);
  const lengthHigh = view.getUint32(4, true);
  const headerLength = lengthHigh * 4294967296 + lengthLow;
  if (headerLength > MAX_SAFETENSORS_HEADER_BYTES) {
    fail(
      name,
      `header length ${headerLength} is absurd (limit ${MAX_SAFETENSORS_HEADER_BYTES} bytes); not a safetensors file?`,
    );
  }
  if (8 + headerLength > fileSize) {
    fail(
      name,
      `header length ${headerLength} exceeds the file size (${fileSize} bytes); truncated or not a safetensors file`,
    );
  }
  if (8 + headerLength > bytes.byteLength) {
    fail(name, `only ${bytes.byteLength} bytes given, the header needs ${8 + headerLength}`);
  }

  let json: unknown;
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + headerLength));
    json = JSON.parse(text);
  } catch (error) {
    fail(name, `header is not valid UTF-8 JSON (${(error as Error).message})`);
  }
  if (!isPlainObject(json)) fail(name, "header JSON is not an object");

  const dataStart = 8 + headerLength;
  const dataLength = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const entries: [string, SafetensorsEntry][] = [];

  for (const [key, raw] of Object.entries(json)) {
    if (key === "__metadata__") {
      if (!isPlainObject(raw)) fail(name, "__metadata__ is not an object");
      for (const [metaKey, metaValue] of Object.entries(raw)) {
        if (typeof metaValue !== "string") fail(name, `__metadata__.${metaKey} is not a string`);
        metadata[metaKey] = metaValue;
      }
      continue;
    }
    const where = `tensor "${key}"`;
    if (!isPlainObject(raw)) fail(name, `${where}: entry is not an object`);
    const { dtype, shape, data_offsets: offsets } = raw;
    if (typeof dtype !== "string") fail(name, `${where}: missing dtype`);
    if (!isTensorDType(dtype)) {
      const hint = KNOWN_UNSUPPORTED.has(dtype) ? "" : " (unknown dtype)";
      fail(
        name,
        `${where}: unsupported dtype ${dtype}${hint}; supported: ${Object.keys(DTYPE_ITEMSIZE).join(", ")}`,
      );
    }
    if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
      fail(name, `${where}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInteger)) {
      fail(name, `${where}: data_offsets must be [begin, end], got ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (end < begin) fail(name, `${where}: data_offsets [${begin}, ${end}] end before begin`);
    const elements = (shape as number[]).reduce((a, b) => a * b, 1);
    const expectedBytes = elements * DTYPE_ITEMSIZE[dtype];
    if (end - begin !== expectedBytes) {
      fail(
        name,
        `${where}: byte length ${end - begin} does not match shape [${shape.join(", ")}] × ${dtype} (${expectedBytes} bytes)`,
      );
    }
    if (end > dataLength) {
      fail(
        name,
        `${where}: data_offsets [${begin}, ${end}] run past the end of the data section (${dataLength} bytes); file truncated?`,
      );
    }
    entries.push([key, { dtype, shape: shape as number[], dataOffsets: [begin, end] }]);
  }

  entries.sort(
    (a, b) => a[1].dataOffsets[0] - b[1].dataOffsets[0] || a[1].dataOffsets[1] - b[1].dataOffsets[1],
  );
  let previous: [string, SafetensorsEntry] | undefined;
  for (const current of entries) {
    const [begin, end] = current[1].dataOffsets;
    if (begin === end) continue; // zero-size tensors occupy no bytes
    if (previous && begin < previous[1].dataOffsets[1]) {
      const [prevKey, prev] = previous;
      fail(
        name,
        `tensors "${prevKey}" [${prev.dataOffsets.join(", ")}] and "${current[0]}" [${begin}, ${end}] overlap`,
      );
    }
    previous = current;
  }
  return { headerLength, dataStart, tensors: new Map(entries), metadata };
}

/**
 * Parse a whole safetensors file into float32 tensors (see `LoadedTensor`). Aligned F32 tensors are views
 * into `bytes`; unaligned ones and other dtypes are copied.
 */
export function parseSafetensors(
  bytes: Uint8Array,
  options: { name?: string } = {},
): Map<string, LoadedTensor> {
  const header = parseSafetensorsHeader(bytes, { name: options.name });
  const tensors = new Map<string, LoadedTensor>();
  for (const [key, entry] of header.tensors) {
    const [begin, end] = entry.dataOffsets;
    const region = bytes.subarray(header.dataStart + begin, header.dataStart + end);
    const count = entry.shape.reduce((a, b) => a * b, 1);
    tensors.set(key, {
      dtype: entry.dtype,
      shape: entry.shape,
      data: decodeContiguous(region, entry.dtype, count),
    });
  }
  return tensors;
}
