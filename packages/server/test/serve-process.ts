/**
 * Starts `node packages/cli/bin/tdb.js serve …` as a child process (the built CLI: `npm test` builds first;
 * alone, run `npm run build` before these tests) and waits for its "listening on" line.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
export const SHARED = fileURLToPath(new URL("../../../../shared/", import.meta.url));
export const TINY_ARGS = ["--model", "../shared/fixtures/tiny-gpt2", "--model-name", "tiny-gpt2"];
export const TINY_AE_ARGS = [
  "--mlp-autoencoder",
  "../shared/fixtures/tiny-gpt2/autoencoders/mlp_post_act",
  "--mlp-autoencoder-name",
  "ae-mlp-post-act-tiny",
];

export interface ServeProcess {
  url: string;
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** The exit code, once the process has exited. */
  exited: Promise<number | null>;
  /** SIGTERM, then the exit code (graceful shutdown). */
  stop: () => Promise<number | null>;
}

export async function startServe(args: readonly string[], timeoutMs = 60_000): Promise<ServeProcess> {
  const bin = `${REPO_ROOT}packages/cli/bin/tdb.js`;
  if (
    !existsSync(`${REPO_ROOT}packages/cli/dist/serve.js`) ||
    !existsSync(`${REPO_ROOT}packages/server/dist/index.js`)
  ) {
    throw new Error("the CLI is not built: run `npm run build` first (`npm test` does)");
  }
  const child = spawn(process.execPath, [bin, "serve", ...args, "--port", "0"], {
    cwd: REPO_ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    out += chunk;
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    err += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`tdb serve did not start within ${timeoutMs} ms:\n${out}\n${err}`));
    }, timeoutMs);
    const check = () => {
      const match = /listening on (http:\/\/\S+)/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout.on("data", check);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`tdb serve exited with ${code} before listening:\n${out}\n${err}`));
    });
  });
  return {
    url,
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    stop: async () => {
      if (child.exitCode === null) child.kill("SIGTERM");
      return exited;
    },
  };
}

export async function postJson(url: string, body: unknown): Promise<{ status: number; json: unknown }> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: body === null ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, json: text === "" ? null : JSON.parse(text) };
}
