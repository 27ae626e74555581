/** Replays recorded TDB requests (shared/fixtures/tdb-cases) against a running `tdb serve` over HTTP. */
import { readdirSync, readFileSync } from "node:fs";
import { BatchedResponseSchema, ModelInfoResponseSchema } from "@tdb/attribution";
import { expect } from "vitest";
import { expectMatchesRecorded } from "../../attribution/test/case-compare.js";
import { postJson, SHARED } from "./serve-process.js";

export interface RecordedCase {
  name: string;
  endpoint: string;
  method: string;
  status: number;
  request: unknown;
  response: unknown;
  server: { modelName: string; mlpAutoencoderName: string | null };
}

const CASES_DIR = `${SHARED}fixtures/tdb-cases/`;

/** Every recorded request/response pair (page_captured_requests.json is a capture log, not a case). */
export function recordedCases(): Array<{ file: string; recorded: RecordedCase }> {
  return readdirSync(CASES_DIR)
    .filter((f) => f.endsWith(".json") && f !== "page_captured_requests.json")
    .sort()
    .map((file) => ({ file, recorded: JSON.parse(readFileSync(CASES_DIR + file, "utf8")) as RecordedCase }));
}

/** Sends the case's request and checks status, shape (strict wire schema) and values against the recording. */
export async function replayCase(baseUrl: string, c: RecordedCase): Promise<void> {
  expect(c.method).toBe("POST");
  const { status, json } = await postJson(baseUrl + c.endpoint, c.request);
  expect(status, JSON.stringify(json).slice(0, 300)).toBe(c.status);
  if (c.status !== 200) {
    expect(json).toEqual(c.response);
    return;
  }
  if (c.endpoint === "/model_info") {
    ModelInfoResponseSchema.parse(json);
    expect(json).toEqual(c.response);
    return;
  }
  BatchedResponseSchema.parse(json);
  const request = c.request as { subRequests: Array<{ topAndBottomKForNodeTable?: number }> };
  const k = request.subRequests[0]?.topAndBottomKForNodeTable ?? 10;
  expectMatchesRecorded(json, c.response, "$", {
    topAndBottomK: (_path, spec) =>
      spec === "topOutputTokenLogits" ? 100 : spec === "componentSumsForTokenDisplay" ? 1 : k,
  });
}
