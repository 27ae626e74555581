import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { WeightFormatError } from "../src/formats/errors.js";
import { parseSafetensors, parseSafetensorsHeader } from "../src/formats/safetensors.js";

const fixtureDir = new URL("../../../../shared/fixtures/tiny-gpt2/", import.meta.url);
const modelBytes = new Uint8Array(readFileSync(new URL("model.safetensors", fixtureDir)));

/** Assemble a safetensors file from a header object and a data section (no validation: tests lie on purpose). */
function rawFile(header: unknown, data: Uint8Array, headerPadTo?: number): Uint8Array {
  let json = typeof header === "string" ? header : JSON.stringify(header);
  if (headerPadTo !== undefined) while (json.length < headerPadTo) json += " ";
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  out.set(data, 8 + headerBytes.length);
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

describe("parseSafetensors on the tiny-gpt2 fixture", () => {
  // Golden values computed with numpy from the raw file bytes.
  const golden: [string, number[], number, number, number][] = [
    [
      "transformer.h.0.attn.c_attn.weight",
      [64, 192],
      27.800783588464128,
      0.08548980206251144,
      -0.0025562047958374023,
    ],
    [
      "transformer.h.1.mlp.c_proj.weight",
      [256, 64],
      -2.6536099541899603,
      -0.03854746371507645,
      -0.11748780310153961,
    ],
    ["transformer.ln_f.weight", [64], 62.97223961353302, 0.8132284879684448, 1.0394561290740967],
    ["transformer.wte.weight", [50257, 64], 895.1638604638235, -0.0558592826128006, -0.204790398478508],
  ];

  it("reads every tensor with the shapes and values numpy sees", () => {
    const tensors = parseSafetensors(modelBytes, { name: "model.safetensors" });
    expect(tensors.size).toBe(28);
    for (const [key, shape, sum, first, last] of golden) {
      const t = tensors.get(key)!;
      expect(t.dtype).toBe("F32");
      expect(t.shape).toEqual(shape);
      expect(t.data.length).toBe(shape.reduce((a, b) => a * b, 1));
      expect(t.data[0]).toBe(first);
      expect(t.data[t.data.length - 1]).toBe(last);
      let total = 0;
      for (const v of t.data) total += v;
      expect(total).toBeCloseTo(sum, 9);
    }
  });

  it("returns aligned F32 data as a view into the file bytes", () => {
    const t = parseSafetensors(modelBytes).get("transformer.wpe.weight")!;
    expect(t.data.buffer).toBe(modelBytes.buffer);
  });

  it("exposes the header and __metadata__", () => {
    const header = parseSafetensorsHeader(modelBytes);
    expect(header.headerLength).toBe(2624);
    expect(header.dataStart).toBe(2632);
    expect(header.metadata).toEqual({ format: "pt" });
    expect(header.tensors.get("transformer.wte.weight")).toEqual({
      dtype: "F32",
      shape: [50257, 64],
      dataOffsets: [416768, 416768 + 50257 * 64 * 4],
    });
  });

  it("reads the header from a prefix when told the file size", () => {
    const header = parseSafetensorsHeader(modelBytes.subarray(0, 4096), { fileSize: modelBytes.length });
    expect(header.tensors.size).toBe(28);
  });
});

describe("dtype conversion", () => {
  it("widens all 65536 F16 values exactly (numpy float16 → float32 bits)", () => {
    const data = new Uint8Array(65536 * 2);
    const view = new DataView(data.buffer);
    for (let h = 0; h < 65536; h++) view.setUint16(2 * h, h, true);
    const file = rawFile({ half: { dtype: "F16", shape: [65536], data_offsets: [0, data.length] } }, data);
    const t = parseSafetensors(file).get("half")!;
    expect(t.dtype).toBe("F16");
    const digest = createHash("sha256").update(
      new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength),
    );
    // sha256 of np.arange(65536, dtype=uint16).view(float16).astype(float32).view(uint32) little-endian bytes.
    expect(digest.digest("hex")).toBe("f4fdd084f85448d28c84f20fabf4022ba938e40b7f382d2727dec6f41ac6267a");
    const spot: [number, number][] = [
      [0x0001, 2 ** -24],
      [0x03ff, 1023 * 2 ** -24],
      [0x0400, 6.103515625e-5],
      [0x3555, 0.333251953125],
      [0xfbff, -65504],
      [0x7c00, Number.POSITIVE_INFINITY],
    ];
    for (const [bits, value] of spot) expect(t.data[bits]).toBe(value);
    expect(Object.is(t.data[0x8000], -0)).toBe(true);
    expect(Number.isNaN(t.data[0x7e00])).toBe(true);
  });

  it("widens BF16 exactly, including at an odd data offset", () => {
    const bits = [0x3f80, 0xc049, 0x0001, 0x7f80, 0xff7f];
    const data = new Uint8Array(1 + bits.length * 2);
    for (const [i, b] of bits.entries()) new DataView(data.buffer).setUint16(1 + 2 * i, b, true);
    const file = rawFile(
      {
        pad: { dtype: "U8", shape: [1], data_offsets: [0, 1] },
        b: { dtype: "BF16", shape: [5], data_offsets: [1, 11] },
      },
      data,
    );
    const t = parseSafetensors(file).get("b")!;
    // 0x0001 → 2^-133 (float32 subnormal); 0xff7f → -(2 − 2^-7)·2^127.
    expect([...t.data]).toEqual([
      1,
      -3.140625,
      2 ** -133,
      Number.POSITIVE_INFINITY,
      -(2 - 2 ** -7) * 2 ** 127,
    ]);
  });

  it("copies F32 data that sits at an unaligned file offset", () => {
    const values = [1.5, -2.25, 3.0000001e-38, 123456.7890625];
    const data = new Uint8Array(16);
    for (const [i, v] of values.entries()) new DataView(data.buffer).setFloat32(4 * i, v, true);
    const header = { x: { dtype: "F32", shape: [2, 2], data_offsets: [0, 16] } };
    for (let pad = 0; pad < 4; pad++) {
      const file = rawFile(header, data, JSON.stringify(header).length + pad);
      const t = parseSafetensors(file).get("x")!;
      expect([...t.data]).toEqual(values.map(Math.fround));
      expect(t.shape).toEqual([2, 2]);
    }
  });

  it("converts integer, bool and F64 tensors to float32", () => {
    const data = new Uint8Array(24 + 8 + 3 + 8);
    const view = new DataView(data.buffer);
    for (const [i, v] of [-3n, 2n ** 40n, 7n].entries()) view.setBigInt64(8 * i, v, true);
    view.setInt32(24, -123456, true);
    view.setInt32(28, 2 ** 24, true);
    data.set([0, 1, 2], 32);
    view.setFloat64(35, 0.1, true);
    const file = rawFile(
      {
        i64: { dtype: "I64", shape: [3], data_offsets: [0, 24] },
        i32: { dtype: "I32", shape: [2], data_offsets: [24, 32] },
        bool: { dtype: "BOOL", shape: [3], data_offsets: [32, 35] },
        f64: { dtype: "F64", shape: [], data_offsets: [35, 43] },
      },
      data,
    );
    const t = parseSafetensors(file);
    expect([...t.get("i64")!.data]).toEqual([-3, 2 ** 40, 7]);
    expect([...t.get("i32")!.data]).toEqual([-123456, 2 ** 24]);
    expect([...t.get("bool")!.data]).toEqual([0, 1, 1]);
    expect(t.get("f64")!.shape).toEqual([]);
    expect([...t.get("f64")!.data]).toEqual([Math.fround(0.1)]);
  });

  it("accepts zero-size tensors", () => {
    const file = rawFile({ e: { dtype: "F32", shape: [0, 4], data_offsets: [0, 0] } }, new Uint8Array(0));
    expect(parseSafetensors(file).get("e")!.data.length).toBe(0);
  });
});

describe("corrupt safetensors files", () => {
  const ok = {
    a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
    b: { dtype: "F32", shape: [1], data_offsets: [8, 12] },
  };
  const data12 = new Uint8Array(12);

  it("rejects files shorter than the length prefix", () => {
    expect(errorOf(() => parseSafetensors(new Uint8Array(5), { name: "tiny.safetensors" })).message).toMatch(
      /tiny\.safetensors: file is truncated/,
    );
  });

  it("rejects a header length beyond the file size", () => {
    const file = rawFile(ok, data12);
    new DataView(file.buffer).setUint32(0, file.length, true);
    expect(errorOf(() => parseSafetensors(file, { name: "m.safetensors" })).message).toMatch(
      /m\.safetensors: header length \d+ exceeds the file size/,
    );
  });

  it("rejects an absurd header length", () => {
    const file = rawFile(ok, data12);
    new DataView(file.buffer).setUint32(4, 1, true); // 2^32 + …
    expect(errorOf(() => parseSafetensors(file)).message).toMatch(/header length \d+ is absurd/);
    new DataView(file.buffer).setUint32(4, 0, true);
    new DataView(file.buffer).setUint32(0, 200_000_000, true);
    expect(errorOf(() => parseSafetensors(file)).message).toMatch(/is absurd/);
  });

  it("rejects invalid JSON and non-object headers", () => {
    expect(errorOf(() => parseSafetensors(rawFile('{"a": ', data12), { name: "j" })).message).toMatch(
      /j: header is not valid UTF-8 JSON/,
    );
    expect(errorOf(() => parseSafetensors(rawFile("[1,2]", data12))).message).toMatch(/not an object/);
    const badUtf8 = rawFile('{"a":1}', data12);
    badUtf8[10] = 0xff;
    expect(errorOf(() => parseSafetensors(badUtf8)).message).toMatch(/not valid UTF-8 JSON/);
  });

  it("names an unsupported dtype", () => {
    const header = { ...ok, q: { dtype: "F8_E4M3", shape: [1], data_offsets: [12, 13] } };
    expect(
      errorOf(() => parseSafetensors(rawFile(header, new Uint8Array(13)), { name: "f8" })).message,
    ).toMatch(/f8: tensor "q": unsupported dtype F8_E4M3/);
    const weird = { x: { dtype: "Q7", shape: [1], data_offsets: [0, 1] } };
    expect(errorOf(() => parseSafetensors(rawFile(weird, new Uint8Array(1)))).message).toMatch(
      /unsupported dtype Q7 \(unknown/,
    );
  });

  it("rejects a byte length that does not match the shape", () => {
    const header = { a: { dtype: "F32", shape: [3], data_offsets: [0, 8] } };
    expect(errorOf(() => parseSafetensors(rawFile(header, new Uint8Array(8)))).message).toMatch(
      /tensor "a": byte length 8 does not match shape \[3\] × F32 \(12 bytes\)/,
    );
  });

  it("rejects overlapping tensors", () => {
    const header = {
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
    };
    expect(errorOf(() => parseSafetensors(rawFile(header, data12))).message).toMatch(
      /"a" \[0, 8\] and "b" \[4, 12\] overlap/,
    );
  });

  it("rejects offsets past the end (truncated file)", () => {
    expect(errorOf(() => parseSafetensors(rawFile(ok, new Uint8Array(10)))).message).toMatch(
      /tensor "b": data_offsets \[8, 12\] run past the end of the data section \(10 bytes\)/,
    );
    const cut = modelBytes.subarray(0, modelBytes.length - 1000);
    expect(errorOf(() => parseSafetensors(cut, { name: "cut.safetensors" })).message).toMatch(
      /cut\.safetensors: tensor "transformer\.wte\.weight".*truncated/,
    );
  });

  it("rejects malformed entries", () => {
    const cases: [unknown, RegExp][] = [
      [
        { a: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } },
        /shape must be an array of non-negative integers/,
      ],
      [{ a: { dtype: "F32", shape: [1], data_offsets: [4] } }, /data_offsets must be \[begin, end\]/],
      [{ a: { dtype: "F32", shape: [1], data_offsets: [8, 4] } }, /end before begin/],
      [{ a: "nope" }, /entry is not an object/],
      [{ __metadata__: { n: 1 } }, /__metadata__\.n is not a string/],
    ];
    for (const [header, pattern] of cases)
      expect(errorOf(() => parseSafetensors(rawFile(header, data12))).message).toMatch(pattern);
  });
});
