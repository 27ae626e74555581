/**
 * Minimal ZIP reader for PyTorch archives: central directory (ZIP64 aware), stored entries read in place,
 * deflated entries only through the async `inflateZipEntry`. No encryption, no multi-disk archives.
 */

import { WeightFormatError } from "./errors.js";

export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflate. */
  method: number;
  crc32: number;
  compressedSize: number;
  size: number;
  /** Absolute offset of the (compressed) data, after the local header. */
  dataOffset: number;
}

const EOCD_SIGNATURE = 0x06054b50;
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;
const ZIP64_EOCD_SIGNATURE = 0x06064b50;
const CENTRAL_SIGNATURE = 0x02014b50;
const LOCAL_SIGNATURE = 0x04034b50;

function readU64(view: DataView, offset: number, what: string): number {
  const value = view.getUint32(offset + 4, true) * 4294967296 + view.getUint32(offset, true);
  if (!Number.isSafeInteger(value)) throw new WeightFormatError(`${what}: 64-bit value too large`);
  return value;
}

export function readZipDirectory(bytes: Uint8Array, name = "zip"): Map<string, ZipEntry> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const size = bytes.byteLength;
  const bad = (message: string): never => {
    throw new WeightFormatError(`${name}: ${message}`);
  };
  const need = (offset: number, length: number, what: string) => {
    if (offset < 0 || offset + length > size)
      bad(`truncated: ${what} at byte ${offset} runs past the end (${size} bytes)`);
  };

  if (size < 22) bad(`not a zip archive (only ${size} bytes)`);
  let eocd = -1;
  for (let i = size - 22; i >= Math.max(0, size - 22 - 65535); i--) {
    if (view.getUint32(i, true) === EOCD_SIGNATURE) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) {
    if (view.getUint32(0, true) === LOCAL_SIGNATURE)
      bad("truncated zip archive: no end-of-central-directory record");
    bad("not a zip archive (no end-of-central-directory record)");
  }
  if (view.getUint16(eocd + 4, true) !== 0 || view.getUint16(eocd + 6, true) !== 0) {
    bad("multi-disk zip archives are not supported");
  }
  let entryCount = view.getUint16(eocd + 10, true);
  let directorySize = view.getUint32(eocd + 12, true);
  let directoryOffset = view.getUint32(eocd + 16, true);

  if (entryCount === 0xffff || directorySize === 0xffffffff || directoryOffset === 0xffffffff) {
    const locator = eocd - 20;
    if (locator < 0 || view.getUint32(locator, true) !== ZIP64_LOCATOR_SIGNATURE)
      bad("ZIP64 locator missing");
    const record = readU64(view, locator + 8, name);
    need(record, 56, "ZIP64 end-of-central-directory record");
    if (view.getUint32(record, true) !== ZIP64_EOCD_SIGNATURE)
      bad("ZIP64 end-of-central-directory record missing");
    entryCount = readU64(view, record + 32, name);
    directorySize = readU64(view, record + 40, name);
    directoryOffset = readU64(view, record + 48, name);
  }
  need(directoryOffset, directorySize, "central directory");

  const entries = new Map<string, ZipEntry>();
  const decoder = new TextDecoder();
  let p = directoryOffset;
  for (let n = 0; n < entryCount; n++) {
    need(p, 46, "central directory entry");
    if (view.getUint32(p, true) !== CENTRAL_SIGNATURE) bad(`corrupt central directory at byte ${p}`);
    const flags = view.getUint16(p + 8, true);
    const method = view.getUint16(p + 10, true);
    const crc32 = view.getUint32(p + 16, true);
    let compressedSize = view.getUint32(p + 20, true);
    let uncompressedSize = view.getUint32(p + 24, true);
    const nameLength = view.getUint16(p + 28, true);
    const extraLength = view.getUint16(p + 30, true);
    const commentLength = view.getUint16(p + 32, true);
    let localOffset = view.getUint32(p + 42, true);
    need(p + 46, nameLength + extraLength + commentLength, "central directory entry");
    const entryName = decoder.decode(bytes.subarray(p + 46, p + 46 + nameLength));
    if (flags & 1) bad(`entry "${entryName}" is encrypted`);

    // ZIP64 extra field: only the fields saturated in the fixed header are present, in this order.
    let extra = p + 46 + nameLength;
    const extraEnd = extra + extraLength;
    while (extra + 4 <= extraEnd) {
      const id = view.getUint16(extra, true);
      const length = view.getUint16(extra + 2, true);
      if (id === 0x0001) {
        let q = extra + 4;
        if (uncompressedSize === 0xffffffff) {
          uncompressedSize = readU64(view, q, name);
          q += 8;
        }
        if (compressedSize === 0xffffffff) {
          compressedSize = readU64(view, q, name);
          q += 8;
        }
        if (localOffset === 0xffffffff) localOffset = readU64(view, q, name);
      }
      extra += 4 + length;
    }

    need(localOffset, 30, `local header of "${entryName}"`);
    if (view.getUint32(localOffset, true) !== LOCAL_SIGNATURE) bad(`corrupt local header for "${entryName}"`);
    const dataOffset =
      localOffset + 30 + view.getUint16(localOffset + 26, true) + view.getUint16(localOffset + 28, true);
    need(dataOffset, compressedSize, `data of "${entryName}"`);
    if (method === 0 && compressedSize !== uncompressedSize)
      bad(`stored entry "${entryName}" has inconsistent sizes`);
    entries.set(entryName, {
      name: entryName,
      method,
      crc32,
      compressedSize,
      size: uncompressedSize,
      dataOffset,
    });
    p += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

let crcTable: Uint32Array | undefined;

export function crc32(data: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let i = 0; i < 256; i++) {
      let c = i;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[i] = c >>> 0;
    }
  }
  const table = crcTable;
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = table[(crc ^ data[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function checkCrc(entry: ZipEntry, data: Uint8Array, name: string): Uint8Array {
  if (crc32(data) !== entry.crc32) {
    throw new WeightFormatError(`${name}: CRC-32 mismatch in "${entry.name}" (corrupted file)`);
  }
  return data;
}

/** The bytes of a stored entry (a view, no copy). Deflated entries need `inflateZipEntry`. */
export function storedZipEntry(
  bytes: Uint8Array,
  entry: ZipEntry,
  name = "zip",
  verifyCrc = true,
): Uint8Array {
  if (entry.method === 8) {
    throw new WeightFormatError(
      `${name}: entry "${entry.name}" is deflate-compressed; load it with the async reader (parseTorchZipAsync)`,
    );
  }
  if (entry.method !== 0)
    throw new WeightFormatError(
      `${name}: entry "${entry.name}" uses unsupported compression method ${entry.method}`,
    );
  const data = bytes.subarray(entry.dataOffset, entry.dataOffset + entry.size);
  return verifyCrc ? checkCrc(entry, data, name) : data;
}

/** Stored or deflated entry, using the platform's DecompressionStream("deflate-raw") for the latter. */
export async function inflateZipEntry(bytes: Uint8Array, entry: ZipEntry, name = "zip"): Promise<Uint8Array> {
  if (entry.method !== 8) return storedZipEntry(bytes, entry, name);
  const compressed = bytes.slice(entry.dataOffset, entry.dataOffset + entry.compressedSize);
  const stream = new DecompressionStream("deflate-raw");
  const writer = stream.writable.getWriter();
  // Not awaited before reading: the stream applies backpressure until its output is consumed.
  const written = writer.write(compressed).then(() => writer.close());
  written.catch(() => {}); // surfaced through the reader below
  const reader = stream.readable.getReader();
  const out = new Uint8Array(entry.size);
  let filled = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (filled + value.byteLength > out.byteLength) throw new Error("more data than the declared size");
      out.set(value, filled);
      filled += value.byteLength;
    }
    await written;
  } catch (error) {
    throw new WeightFormatError(`${name}: cannot inflate "${entry.name}": ${(error as Error).message}`);
  }
  if (filled !== entry.size)
    throw new WeightFormatError(
      `${name}: "${entry.name}" inflated to ${filled} bytes, expected ${entry.size}`,
    );
  return checkCrc(entry, out, name);
}
