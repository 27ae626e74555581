/**
 * Every /batched_tdb case recorded from the original TDB server (shared/fixtures/tdb-cases), reproduced through
 * the programmatic entry point: numbers within 1e-4 abs + 1e-3 rel, node sets equal up to ties, errors equal.
 * On the WebAssembly GEMM, and again on the native one where it is built (what `tdb serve` uses then).
 */
import { readdirSync, readFileSync } from "node:fs";
import { setDefaultGemm } from "@tdb/tensor";
import { fastestGemm, nativeGemmStatus } from "@tdb/tensor/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BatchedTdbRequestSchema, handleBatchedTdb, type TdbContext, TdbRequestError } from "../src/index.js";
import { expectMatchesRecorded } from "./case-compare.js";
import { loadTinyMlpAutoencoder, loadTinyModel, SHARED } from "./fixture-model.js";

const casesDir = new URL("fixtures/tdb-cases/", SHARED);
interface RecordedCase {
  endpoint: string;
  status: number;
  request: unknown;
  response: unknown;
  server: { modelName: string; mlpAutoencoderName: string | null };
}

const { model, tokenizer } = loadTinyModel();
const plain: TdbContext = { model, tokenizer, modelName: "tiny-gpt2" };
const withAutoencoder: TdbContext = { ...plain, mlpAutoencoder: loadTinyMlpAutoencoder() };

const files = readdirSync(casesDir).filter((f) => f.startsWith("tdb_") && f.endsWith(".json"));

const engines: ("wasm" | "native")[] = nativeGemmStatus().available ? ["wasm", "native"] : ["wasm"];

describe.each(engines)("recorded TDB /batched_tdb cases (%s GEMM)", (engine) => {
  beforeAll(() => setDefaultGemm(fastestGemm(1, { TDB_GEMM: engine }).gemm));
  afterAll(() => setDefaultGemm(null));
  it("covers every recorded case", () => expect(files.length).toBe(15));
  for (const file of files) {
    it(file, () => {
      const c: RecordedCase = JSON.parse(readFileSync(new URL(file, casesDir), "utf8"));
      const ctx = c.server.mlpAutoencoderName ? withAutoencoder : plain;
      const request = BatchedTdbRequestSchema.parse(c.request);
      if (c.status !== 200) {
        expect(() => handleBatchedTdb(ctx, request)).toThrow(TdbRequestError);
        try {
          handleBatchedTdb(ctx, request);
        } catch (error) {
          expect({ message: (error as Error).message }).toEqual(c.response);
        }
        return;
      }
      const response = handleBatchedTdb(ctx, request);
      const k = (request.subRequests[0]?.topAndBottomKForNodeTable ?? 10) as number;
      expectMatchesRecorded(JSON.parse(JSON.stringify(response)), c.response, "$", {
        topAndBottomK: (_path, spec) =>
          spec === "topOutputTokenLogits" ? 100 : spec === "componentSumsForTokenDisplay" ? 1 : k,
      });
    });
  }
});
