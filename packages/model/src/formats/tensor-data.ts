/**
 * Decoding raw little-endian tensor bytes into Float32Array — shared by the safetensors and PyTorch readers.
 *
 * Every tensor is handed out as float32. F16 and BF16 widen exactly; integer and bool tensors are converted
 * (exact for |v| ≤ 2^24, rounded to nearest float32 beyond); F64 is rounded to float32. `dtype` keeps the
 * stored type so a caller can tell what it got.
 */

export type TensorDType = "F64" | "F32" | "F16" | "BF16" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL";

export interface LoadedTensor {
  /** dtype as stored in the file; `data` is always float32. */
  dtype: TensorDType;
  shape: number[];
  /**
   * Row-major, contiguous. When the file held aligned little-endian F32 data this is a view into the input
   * bytes (no copy), so it shares memory with them.
   */
  data: Float32Array;
}

export const DTYPE_ITEMSIZE: Readonly<Record<TensorDType, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export function isTensorDType(name: string): name is TensorDType {
  return Object.hasOwn(DTYPE_ITEMSIZE, name);
}

const littleEndianPlatform = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

let halfTable: Uint32Array | undefined;

/** float32 bit patterns of all 65536 halves; built once, exact (subnormals, ±inf, NaN payloads kept). */
function halfToFloatBits(): Uint32Array {
  if (halfTable) return halfTable;
  const table = new Uint32Array(65536);
  const scratch = new Float32Array(1);
  const scratchBits = new Uint32Array(scratch.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) {
      scratch[0] = mant * 2 ** -24; // zero or subnormal: exactly representable in float32
      table[h] = (sign | scratchBits[0]) >>> 0;
    } else if (exp === 31) {
      table[h] = (sign | 0x7f800000 | (mant << 13)) >>> 0;
    } else {
      table[h] = (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
    }
  }
  halfTable = table;
  return table;
}

/** An aligned copy of `bytes` (needed to build a typed array over data at an arbitrary offset). */
function alignedBuffer(
  bytes: Uint8Array,
  alignment: number,
): { buffer: ArrayBufferLike; byteOffset: number } {
  if (bytes.byteOffset % alignment === 0) return { buffer: bytes.buffer, byteOffset: bytes.byteOffset };
  return { buffer: bytes.slice().buffer, byteOffset: 0 };
}

/**
 * Decode `count` contiguous elements stored little-endian in `bytes` (which must hold exactly
 * count·itemsize bytes). Aligned F32 on a little-endian platform is returned as a view; everything else is
 * a fresh array.
 */
export function decodeContiguous(bytes: Uint8Array, dtype: TensorDType, count: number): Float32Array {
  if (bytes.byteLength !== count * DTYPE_ITEMSIZE[dtype]) {
    throw new RangeError(`decodeContiguous: ${bytes.byteLength} bytes for ${count} × ${dtype}`);
  }
  if (!littleEndianPlatform) return decodeWithDataView(bytes, dtype, count);
  switch (dtype) {
    case "F32": {
      if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, count);
      const out = new Float32Array(count);
      new Uint8Array(out.buffer).set(bytes);
      return out;
    }
    case "F16": {
      const { buffer, byteOffset } = alignedBuffer(bytes, 2);
      const halves = new Uint16Array(buffer, byteOffset, count);
      const table = halfToFloatBits();
      const bits = new Uint32Array(count);
      for (let i = 0; i < count; i++) bits[i] = table[halves[i]];
      return new Float32Array(bits.buffer);
    }
    case "BF16": {
      const { buffer, byteOffset } = alignedBuffer(bytes, 2);
      const halves = new Uint16Array(buffer, byteOffset, count);
      const bits = new Uint32Array(count);
      for (let i = 0; i < count; i++) bits[i] = halves[i] << 16;
      return new Float32Array(bits.buffer);
    }
    case "F64": {
      const { buffer, byteOffset } = alignedBuffer(bytes, 8);
      return Float32Array.from(new Float64Array(buffer, byteOffset, count));
    }
    case "I64": {
      // Two 32-bit halves avoid BigInt; exact in float64 up to 2^53, then rounded to float32.
      const { buffer, byteOffset } = alignedBuffer(bytes, 4);
      const words = new Int32Array(buffer, byteOffset, count * 2);
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = words[2 * i + 1] * 4294967296 + (words[2 * i] >>> 0);
      return out;
    }
    case "I32": {
      const { buffer, byteOffset } = alignedBuffer(bytes, 4);
      return Float32Array.from(new Int32Array(buffer, byteOffset, count));
    }
    case "I16": {
      const { buffer, byteOffset } = alignedBuffer(bytes, 2);
      return Float32Array.from(new Int16Array(buffer, byteOffset, count));
    }
    case "I8":
      return Float32Array.from(new Int8Array(bytes.buffer, bytes.byteOffset, count));
    case "U8":
      return Float32Array.from(bytes);
    case "BOOL": {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = bytes[i] !== 0 ? 1 : 0;
      return out;
    }
  }
}

/** Reads element `index` (in elements, not bytes) of a little-endian array of `dtype` as a JS number. */
function elementReader(view: DataView, dtype: TensorDType): (index: number) => number {
  switch (dtype) {
    case "F64":
      return (i) => view.getFloat64(i * 8, true);
    case "F32":
      return (i) => view.getFloat32(i * 4, true);
    case "F16": {
      const table = new Float32Array(halfToFloatBits().buffer);
      return (i) => table[view.getUint16(i * 2, true)];
    }
    case "BF16": {
      const scratch = new Float32Array(1);
      const bits = new Uint32Array(scratch.buffer);
      return (i) => {
        bits[0] = view.getUint16(i * 2, true) << 16;
        return scratch[0];
      };
    }
    case "I64":
      return (i) => view.getInt32(i * 8 + 4, true) * 4294967296 + view.getUint32(i * 8, true);
    case "I32":
      return (i) => view.getInt32(i * 4, true);
    case "I16":
      return (i) => view.getInt16(i * 2, true);
    case "I8":
      return (i) => view.getInt8(i);
    case "U8":
      return (i) => view.getUint8(i);
    case "BOOL":
      return (i) => (view.getUint8(i) !== 0 ? 1 : 0);
  }
}

function decodeWithDataView(bytes: Uint8Array, dtype: TensorDType, count: number): Float32Array {
  const read = elementReader(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), dtype);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = read(i);
  return out;
}

export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

/**
 * Gather a strided view (element offset + strides, as in torch) of `storage` into a contiguous float32
 * array. The caller has checked that every addressed element lies inside `storage`.
 */
export function gatherStrided(
  storage: Uint8Array,
  dtype: TensorDType,
  shape: readonly number[],
  strides: readonly number[],
  elementOffset: number,
): Float32Array {
  const count = shapeSize(shape);
  const itemsize = DTYPE_ITEMSIZE[dtype];
  const natural = contiguousStrides(shape);
  const isContiguous = shape.every((d, i) => d <= 1 || strides[i] === natural[i]);
  if (isContiguous) {
    const start = elementOffset * itemsize;
    return decodeContiguous(storage.subarray(start, start + count * itemsize), dtype, count);
  }
  const read = elementReader(new DataView(storage.buffer, storage.byteOffset, storage.byteLength), dtype);
  const out = new Float32Array(count);
  const rank = shape.length;
  const index = new Array<number>(rank).fill(0);
  let offset = elementOffset;
  for (let i = 0; i < count; i++) {
    out[i] = read(offset);
    // Odometer increment over the multi-index, keeping `offset` in step.
    for (let axis = rank - 1; axis >= 0; axis--) {
      index[axis]++;
      offset += strides[axis];
      if (index[axis] < shape[axis]) break;
      offset -= strides[axis] * shape[axis];
      index[axis] = 0;
    }
  }
  return out;
}
