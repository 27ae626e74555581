/**
 * The recorded cases of a TDB server started with the tiny MLP autoencoder, replayed against
 * `tdb serve … --mlp-autoencoder ../shared/fixtures/tiny-gpt2/autoencoders/mlp_post_act
 * --mlp-autoencoder-name ae-mlp-post-act-tiny` over HTTP. Needs the built CLI (`npm test` builds first).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { recordedCases, replayCase } from "./replay.js";
import { type ServeProcess, startServe, TINY_AE_ARGS, TINY_ARGS } from "./serve-process.js";

const cases = recordedCases().filter((c) => c.recorded.server.mlpAutoencoderName !== null);
let serve: ServeProcess;

beforeAll(async () => {
  serve = await startServe([...TINY_ARGS, ...TINY_AE_ARGS]);
});
afterAll(async () => {
  expect(await serve?.stop()).toBe(0);
});

describe("recorded TDB cases over HTTP, server with the MLP autoencoder", () => {
  it("prints the TDB page URL with the autoencoder name", () => {
    expect(serve.stdout()).toMatch(
      /TDB: http:\/\/127\.0\.0\.1:\d+\/tiny-gpt2_ae-mlp-post-act-tiny\/tdb_alpha/,
    );
  });
  it("covers the autoencoder-server cases", () => expect(cases.length).toBe(5));
  for (const { file, recorded } of cases) {
    it(file, () => replayCase(serve.url, recorded));
  }
  it("logged no unhandled exception", () => expect(serve.stderr()).not.toMatch(/unhandled/i));
});
