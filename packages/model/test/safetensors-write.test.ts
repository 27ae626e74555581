/**
 * The safetensors writer, checked by reading its output back with the parser and against the byte layout the
 * format's README specifies (header length, JSON header padded to 8 bytes with spaces, data section).
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { WeightFormatError } from "../src/formats/errors.js";
import { parseSafetensors, parseSafetensorsHeader } from "../src/formats/safetensors.js";
import {
  decodeFloat64,
  float32ToFloat16Bits,
  rawTensorBytes,
  roundToFloat16,
  serializeSafetensors,
} from "../src/formats/safetensors-write.js";

describe("serializeSafetensors", () => {
  it("round-trips F32, F64, I32 and I64 tensors and string metadata through the parser", () => {
    const f32 = Float32Array.from([1.5, -2.25, 3e-8, 65504, -0, 7]);
    const f64 = Float64Array.from([Math.PI, 1 / 3, 2 ** 40 + 1]);
    const i32 = Int32Array.from([-5, 0, 2147483647]);
    const i64 = [0, 1, -1, 2 ** 33 + 5, -(2 ** 40)];
    const bytes = serializeSafetensors(
      [
        ["w", { dtype: "F32", shape: [2, 3], data: f32 }],
        ["d", { dtype: "F64", shape: [3], data: f64 }],
        ["i", { dtype: "I32", shape: [3, 1], data: i32 }],
        ["l", { dtype: "I64", shape: [5], data: i64 }],
        ["empty", { dtype: "F32", shape: [0, 4], data: new Float32Array(0) }],
      ],
      { format: "pt", note: "ünïcödé" },
    );
    const header = parseSafetensorsHeader(bytes);
    expect(header.headerLength % 8).toBe(0);
    expect(header.metadata).toEqual({ format: "pt", note: "ünïcödé" });
    const tensors = parseSafetensors(bytes);
    expect(tensors.get("w")).toMatchObject({ dtype: "F32", shape: [2, 3] });
    expect([...tensors.get("w")!.data]).toEqual([...f32]);
    expect(tensors.get("l")!.dtype).toBe("I64");
    expect([...tensors.get("l")!.data]).toEqual(i64.map((v) => Math.fround(v)));
    expect([...tensors.get("i")!.data]).toEqual([-5, 0, 2147483648]); // float32 rounding of 2^31 − 1
    expect(tensors.get("empty")!.shape).toEqual([0, 4]);
    // F64 read back exactly from the raw bytes.
    const entry = header.tensors.get("d")!;
    expect([...decodeFloat64(rawTensorBytes(bytes, header.dataStart, entry.dataOffsets))]).toEqual([...f64]);
  });

  it("writes the documented layout byte for byte", () => {
    const bytes = serializeSafetensors([["a", { dtype: "F32", shape: [1], data: Float32Array.from([1]) }]]);
    const json = '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}';
    const padded = json + " ".repeat((8 - (json.length % 8)) % 8);
    const expected = new Uint8Array(8 + padded.length + 4);
    expected[0] = padded.length;
    expected.set(new TextEncoder().encode(padded), 8);
    expected.set([0x00, 0x00, 0x80, 0x3f], 8 + padded.length); // 1.0f little-endian
    expect([...bytes]).toEqual([...expected]);
  });

  it("re-serialises the tiny fixture autoencoder so the parser sees the same tensors", () => {
    const path = new URL(
      "../../../../shared/fixtures/tiny-gpt2/autoencoders/mlp_post_act/0.safetensors",
      import.meta.url,
    );
    const original = new Uint8Array(readFileSync(path));
    const parsed = parseSafetensors(original);
    const header = parseSafetensorsHeader(original);
    const rewritten = serializeSafetensors(
      [...parsed].map(([name, t]) =>
        t.dtype === "I64"
          ? [name, { dtype: "I64" as const, shape: t.shape, data: Array.from(t.data) }]
          : [name, { dtype: "F32" as const, shape: t.shape, data: t.data }],
      ),
      header.metadata,
    );
    const again = parseSafetensors(rewritten);
    expect(parseSafetensorsHeader(rewritten).metadata).toEqual(header.metadata);
    for (const [name, t] of parsed) {
      expect(again.get(name)!.shape).toEqual(t.shape);
      expect(again.get(name)!.dtype).toBe(t.dtype);
      const a = again.get(name)!.data;
      expect(a.length).toBe(t.data.length);
      expect(a.every((v, i) => Object.is(v, t.data[i]))).toBe(true);
    }
  });

  it("F16: float32 → binary16 rounding matches numpy's astype(float16) (round to nearest, ties to even)", () => {
    // Golden bits from numpy 2: np.array(values, np.float32).astype(np.float16).view(np.uint16)
    const values = [
      0.1,
      1 / 3,
      -2.5,
      65504,
      65519,
      65520,
      1e-8,
      2.98e-8,
      5.96e-8,
      6.1e-5,
      6.0e-5,
      1e-4,
      3.3,
      -0,
      1e5,
      -1e5,
      2049,
      2051,
      0.000030517578125,
    ];
    const golden = [
      11878, 13653, 49408, 31743, 31743, 31744, 0, 0, 1, 1023, 1007, 1678, 17050, 32768, 31744, 64512, 26624,
      26626, 512,
    ];
    expect(values.map((v) => float32ToFloat16Bits(v))).toEqual(golden);
    expect(float32ToFloat16Bits(Number.NaN) & 0x7c00).toBe(0x7c00);
    expect(float32ToFloat16Bits(-5.96e-8)).toBe(0x8001);
    // Written as F16, read back by the parser's own F16 decoder: the rounded values.
    const data = Float32Array.from(values.filter((v) => Math.abs(v) <= 65504));
    const rounded = data.slice();
    roundToFloat16(rounded);
    const back = parseSafetensors(
      serializeSafetensors([["h", { dtype: "F16", shape: [data.length], data }]]),
    ).get("h")!;
    expect(back.dtype).toBe("F16");
    expect([...back.data]).toEqual([...rounded]);
    expect(rounded[0]).toBe(0.0999755859375);
  });

  it("rejects mismatched sizes, duplicate names and fractional I64 values", () => {
    expect(() =>
      serializeSafetensors([["a", { dtype: "F32", shape: [3], data: new Float32Array(2) }]]),
    ).toThrow(WeightFormatError);
    expect(() =>
      serializeSafetensors([
        ["a", { dtype: "F32", shape: [1], data: new Float32Array(1) }],
        ["a", { dtype: "F32", shape: [1], data: new Float32Array(1) }],
      ]),
    ).toThrow(/twice/);
    expect(() => serializeSafetensors([["a", { dtype: "I64", shape: [1], data: [0.5] }]])).toThrow(/whole/);
  });
});
