/**
 * `tdb serve` as a command (the built CLI): clear errors with exit code 2 for usage and 1 for load failures,
 * graceful shutdown on SIGINT, and the default-model choice.
 */
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { defaultModelDir } from "../../cli/src/serve.js";
import { tinyDataset } from "../../explain/test/helpers.js";
import { postJson, REPO_ROOT, startServe, TINY_ARGS } from "./serve-process.js";

const L3 = "packages/attribution/test/fixtures/l3-sae/autoencoders";
const scratch = mkdtempSync(join(tmpdir(), "tdb-serve-cli-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function runServe(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["packages/cli/bin/tdb.js", "serve", ...args], { cwd: REPO_ROOT });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => {
      stdout += c;
    });
    child.stderr.on("data", (c) => {
      stderr += c;
    });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`tdb serve ${args.join(" ")} did not exit:\n${stdout}\n${stderr}`));
    }, 30_000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe("tdb serve errors", () => {
  const usage: Array<[string[], RegExp]> = [
    [["--port", "99999"], /--port must be between 0 and 65535/],
    [["--port", "http"], /--port expects a whole number/],
    [["--port", "80.5"], /--port expects a whole number/],
    [["--bogus"], /Unknown option '--bogus'/],
    [
      ["--mlp-autoencoder", "/nonexistent/autoencoders"],
      /--mlp-autoencoder: folder '\/nonexistent\/autoencoders' does not exist/,
    ],
    [["--attn-autoencoder", "package.json"], /is not a folder/],
    [["--mlp-autoencoder-name", "x"], /--mlp-autoencoder-name needs --mlp-autoencoder/],
    [["--mlp-autoencoder-site", "attention"], /must be one of/],
    [["--cors-origin", "example.org"], /is not an origin/],
    [["--datasets", "./my-store.sqlite"], /--datasets '.\/my-store.sqlite': no such file/],
    [["--datasets", "package.json"], /--datasets 'package.json': not a readable dataset file/],
  ];
  for (const [args, message] of usage) {
    it(`usage error: ${args.join(" ")}`, async () => {
      const result = await runServe([...TINY_ARGS, ...args]);
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toMatch(message);
    });
  }

  const loading: Array<[string[], RegExp]> = [
    [["--model", "/nonexistent/model"], /neither a local folder nor a known model/],
    [
      [...TINY_ARGS, "--mlp-autoencoder", `${L3}/resid_delta_attn`],
      /attach at resid_delta_attn; mlp autoencoders attach at/,
    ],
    [
      [...TINY_ARGS, "--mlp-autoencoder", `${L3}/mlp_post_act`],
      /layer 0 reads 128 values, but mlp_post_act of this model has 256/,
    ],
    [[...TINY_ARGS, "--mlp-autoencoder", "packages"], /no autoencoder files/],
  ];
  for (const [args, message] of loading) {
    it(`load failure: ${args.slice(-2).join(" ")}`, async () => {
      const result = await runServe(args);
      expect(result.code, result.stderr).toBe(1);
      expect(result.stderr).toMatch(message);
    });
  }

  it("a port in use is a clear error", async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const port = (blocker.address() as AddressInfo).port;
    try {
      const result = await runServe([...TINY_ARGS, "--port", String(port)]);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(new RegExp(`port ${port} on 127.0.0.1 is already in use`));
    } finally {
      blocker.close();
    }
  });
});

describe("tdb serve lifecycle", () => {
  it("shuts down cleanly on SIGINT", async () => {
    const serve = await startServe(TINY_ARGS);
    expect(serve.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    serve.child.kill("SIGINT");
    const code = await serve.exited;
    expect(code, `${serve.child.signalCode} ${serve.stderr()}`).toBe(0);
    expect(serve.stderr()).toMatch(/SIGINT, finishing open requests and shutting down/);
  });

  it("picks the demo model, else the tiny fixture", () => {
    const root = join(scratch, "repo");
    mkdirSync(join(root, "packages"), { recursive: true });
    expect(defaultModelDir(root)).toBeNull();
    mkdirSync(join(scratch, "shared", "fixtures", "tiny-gpt2"), { recursive: true });
    expect(defaultModelDir(root)).toEqual({
      model: join(scratch, "shared", "fixtures", "tiny-gpt2"),
      autoencoders: null,
      datasets: [],
    });
    mkdirSync(join(root, "assets", "demo", "model"), { recursive: true });
    // Not a model until its config.json exists (the demo is trained in place).
    expect(defaultModelDir(root)?.model).toBe(join(scratch, "shared", "fixtures", "tiny-gpt2"));
    writeFileSync(join(root, "assets", "demo", "model", "config.json"), "{}");
    expect(defaultModelDir(root)).toEqual({
      model: join(root, "assets", "demo", "model"),
      autoencoders: join(root, "assets", "demo", "autoencoders"),
      datasets: [],
    });
    mkdirSync(join(root, "assets", "demo", "datasets"), { recursive: true });
    writeFileSync(join(root, "assets", "demo", "datasets", "demo-neurons.db"), "");
    writeFileSync(join(root, "assets", "demo", "datasets", "notes.txt"), "");
    expect(defaultModelDir(root)?.datasets).toEqual([
      join(root, "assets", "demo", "datasets", "demo-neurons.db"),
    ]);
  });
});

describe("tdb serve --datasets FILE", () => {
  it("serves a collated dataset file's records and explanations under its short name", async () => {
    const file = await tinyDataset(scratch, "tiny-ds.db");
    const serve = await startServe([...TINY_ARGS, "--datasets", file]);
    try {
      const metadata = await postJson(`${serve.url}/neuron_datasets_metadata`, undefined);
      expect(metadata.status).toBe(200);
      const entries = metadata.json as { shortName: string; derivedScalarType: string }[];
      expect(entries.map((e) => e.shortName)).toContain("tiny-ds");
      expect(entries.map((e) => e.derivedScalarType)).toContain("mlp_post_act");
      const node = { dst: "mlp_post_act", layerIndex: 0, activationIndex: 5, datasets: ["tiny-ds"] };
      const record = await postJson(`${serve.url}/neuron_record`, node);
      expect(record.status, JSON.stringify(record.json)).toBe(200);
      const top = (record.json as { topActivations: unknown[][] }).topActivations;
      expect(top.length).toBeGreaterThan(0);
      const head = await postJson(`${serve.url}/attention_head_record`, {
        ...node,
        dst: "attn_write_norm",
        activationIndex: 1,
      });
      expect(head.status, JSON.stringify(head.json)).toBe(200);
      const missing = await postJson(`${serve.url}/neuron_record`, { ...node, datasets: ["nope"] });
      expect(missing.status).toBe(404);
      const explained = await postJson(`${serve.url}/explain`, node);
      expect(explained.status, JSON.stringify(explained.json)).toBe(200);
      const existing = await postJson(`${serve.url}/existing_explanations`, {
        dst: "mlp_post_act",
        layerIndex: 0,
        activationIndex: 5,
        explanationDatasets: ["tiny-ds"],
      });
      expect(existing.status).toBe(200);
      expect((existing.json as unknown[]).length).toBeGreaterThan(0);
    } finally {
      serve.child.kill("SIGTERM");
      await serve.exited;
    }
  });
});
