/**
 * handleBatchedTdb recycles each request's activations, gradients and metrics for the next request. That is safe
 * only if no response holds one of those arrays and no request reads what a previous one left in them: every
 * recorded case is answered again after the others, in reverse order, and must come out identical.
 */
import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  BatchedTdbRequestSchema,
  handleBatchedTdb,
  recycledRequestBytes,
  type TdbContext,
} from "../src/index.js";
import { loadTinyMlpAutoencoder, loadTinyModel, SHARED } from "./fixture-model.js";

const casesDir = new URL("fixtures/tdb-cases/", SHARED);
const { model, tokenizer } = loadTinyModel();
const plain: TdbContext = { model, tokenizer, modelName: "tiny-gpt2" };
const withAutoencoder: TdbContext = { ...plain, mlpAutoencoder: loadTinyMlpAutoencoder() };

const cases = readdirSync(casesDir)
  .filter((f) => f.startsWith("tdb_") && f.endsWith(".json"))
  .map((file) => JSON.parse(readFileSync(new URL(file, casesDir), "utf8")))
  .filter((c) => c.status === 200)
  .map((c) => ({
    ctx: c.server.mlpAutoencoderName ? withAutoencoder : plain,
    request: BatchedTdbRequestSchema.parse(c.request),
  }));

function typedArrayPaths(value: unknown, path: string, found: string[]): string[] {
  if (ArrayBuffer.isView(value)) found.push(path);
  else if (value !== null && typeof value === "object")
    for (const [key, inner] of Object.entries(value)) typedArrayPaths(inner, `${path}.${key}`, found);
  return found;
}

describe("recycled request arrays", () => {
  it("leave every response the same whatever ran before it, and no response holds a typed array", () => {
    expect(cases.length).toBe(14);
    const first = cases.map(({ ctx, request }) => {
      const response = handleBatchedTdb(ctx, request);
      expect(typedArrayPaths(response, "$", [])).toEqual([]);
      return JSON.stringify(response, (key, v) => (key === "inferenceTime" ? 0 : v));
    });
    // The tiny model's MLP activations and attention metrics are large enough to be recycled.
    expect(recycledRequestBytes()).toBeGreaterThan(0);
    for (let i = cases.length - 1; i >= 0; i--) {
      const again = handleBatchedTdb(cases[i].ctx, cases[i].request);
      expect(JSON.stringify(again, (key, v) => (key === "inferenceTime" ? 0 : v))).toBe(first[i]);
    }
  });
});
