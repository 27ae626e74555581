/**
 * `tdb serve --model ../shared/fixtures/tiny-gpt2 --model-name tiny-gpt2` answers every recorded TDB request
 * made to a plain server (no autoencoder) as TDB did: status codes equal, numbers within 1e-4 abs + 1e-3 rel,
 * node sets equal up to ties (case-compare.ts). Needs the built CLI (`npm test` builds first).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { recordedCases, replayCase } from "./replay.js";
import { type ServeProcess, startServe, TINY_ARGS } from "./serve-process.js";

const cases = recordedCases().filter((c) => c.recorded.server.mlpAutoencoderName === null);
let serve: ServeProcess;

beforeAll(async () => {
  serve = await startServe(TINY_ARGS);
});
afterAll(async () => {
  expect(await serve?.stop()).toBe(0);
});

describe("recorded TDB cases over HTTP, plain server", () => {
  it("prints the TDB page URL", () => {
    expect(serve.stdout()).toMatch(/TDB: http:\/\/127\.0\.0\.1:\d+\/tiny-gpt2\/tdb_alpha/);
  });
  it("covers the plain-server cases", () => expect(cases.length).toBe(12));
  for (const { file, recorded } of cases) {
    it(file, () => replayCase(serve.url, recorded));
  }
  it("logged no unhandled exception", () => expect(serve.stderr()).not.toMatch(/unhandled/i));
});
