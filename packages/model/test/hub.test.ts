import { createHash } from "node:crypto";
import {
  existsSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
} from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { ModelSourceError } from "../src/formats/errors.js";
import { loadHfFolder } from "../src/node/hf-folder.js";
import { createProgressBar, type DownloadProgress, hubCacheDir, resolveModel } from "../src/node/hub.js";

const fixtureDir = fileURLToPath(new URL("../../../../shared/fixtures/tiny-gpt2/", import.meta.url));
const read = (name: string) => new Uint8Array(readFileSync(join(fixtureDir, name)));
const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");
const gitBlobSha1 = (data: Uint8Array) =>
  createHash("sha1").update(`blob ${data.length}\0`).update(data).digest("hex");

const COMMIT = "0123456789abcdef0123456789abcdef01234567";
const LFS = new Set([
  "model.safetensors",
  "model-00001-of-00002.safetensors",
  "model-00002-of-00002.safetensors",
]);

/** Split the fixture's weights into two shards, written with a plain safetensors writer. */
function shardedRepo(): Record<string, Uint8Array> {
  const bytes = read("model.safetensors");
  const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength))) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  delete header.__metadata__;
  const names = Object.keys(header);
  const write = (subset: string[]) => {
    const out: Record<string, unknown> = {};
    const parts: Uint8Array[] = [];
    let offset = 0;
    for (const name of subset) {
      const {
        dtype,
        shape,
        data_offsets: [b, e],
      } = header[name];
      out[name] = { dtype, shape, data_offsets: [offset, offset + e - b] };
      parts.push(bytes.subarray(8 + headerLength + b, 8 + headerLength + e));
      offset += e - b;
    }
    const json = new TextEncoder().encode(
      JSON.stringify(out).padEnd(8 * Math.ceil((JSON.stringify(out).length + 8) / 8) - 8),
    );
    const file = new Uint8Array(8 + json.length + offset);
    new DataView(file.buffer).setBigUint64(0, BigInt(json.length), true);
    file.set(json, 8);
    let p = 8 + json.length;
    for (const part of parts) {
      file.set(part, p);
      p += part.length;
    }
    return file;
  };
  const first = names.slice(0, 12);
  const second = names.slice(12);
  const weightMap = Object.fromEntries([
    ...first.map((n) => [n, "model-00001-of-00002.safetensors"]),
    ...second.map((n) => [n, "model-00002-of-00002.safetensors"]),
  ]);
  return {
    "config.json": read("config.json"),
    "vocab.json": read("vocab.json"),
    "merges.txt": read("merges.txt"),
    "model.safetensors.index.json": new TextEncoder().encode(
      JSON.stringify({ metadata: {}, weight_map: weightMap }),
    ),
    "model-00001-of-00002.safetensors": write(first),
    "model-00002-of-00002.safetensors": write(second),
  };
}

const repos: Record<string, Record<string, Uint8Array>> = {
  "openai-community/gpt2": {
    "config.json": read("config.json"),
    "model.safetensors": read("model.safetensors"),
    "vocab.json": read("vocab.json"),
    "merges.txt": read("merges.txt"),
  },
  "test-org/sharded": shardedRepo(),
};

interface Scenario {
  /** Files whose first download is cut off halfway. */
  cutOnce: Set<string>;
  /** Files whose first download sends half and then goes silent, connection open. */
  stallOnce: Set<string>;
  /** Files served with one byte flipped (metadata unchanged). */
  corrupt: Set<string>;
  /** Files answered with 404 EntryNotFound. */
  missing: Set<string>;
  log: { method: string; path: string; range?: string }[];
}

/**
 * Imitates the hub: /{repo}/resolve/{rev}/{file} answers with X-Repo-Commit; LFS files redirect (302) to a
 * separate "CDN" origin with X-Linked-Etag (sha256) and X-Linked-Size; small files redirect (307, relative)
 * to /api/resolve-cache/… which answers with a git-sha1 ETag. Both content routes honour Range.
 */
class FakeHub {
  scenario: Scenario = {
    cutOnce: new Set(),
    stallOnce: new Set(),
    corrupt: new Set(),
    missing: new Set(),
    log: [],
  };
  private hub!: Server;
  private cdn!: Server;
  endpoint = "";
  private cdnOrigin = "";

  async start(): Promise<void> {
    this.hub = createServer((req, res) => this.handleHub(req, res));
    this.cdn = createServer((req, res) => this.handleCdn(req, res));
    const listen = (server: Server) =>
      new Promise<string>((ok) =>
        server.listen(0, "127.0.0.1", () => ok(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)),
      );
    this.endpoint = await listen(this.hub);
    this.cdnOrigin = await listen(this.cdn);
  }

  async stop(): Promise<void> {
    for (const server of [this.hub, this.cdn]) {
      server.closeAllConnections();
      await new Promise((ok) => server.close(ok));
    }
  }

  private content(repo: string, file: string): Uint8Array | undefined {
    const data = repos[repo]?.[file];
    if (!data || !this.scenario.corrupt.has(file)) return data;
    const copy = data.slice();
    copy[copy.length >> 1] ^= 1;
    return copy;
  }

  private handleHub(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", this.endpoint);
    this.scenario.log.push({ method: req.method ?? "", path: url.pathname, range: req.headers.range });
    const resolveMatch = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    const cacheMatch = /^\/api\/resolve-cache\/models\/([^/]+\/[^/]+)\/([0-9a-f]{40})\/(.+)$/.exec(
      url.pathname,
    );
    const match = resolveMatch ?? cacheMatch;
    if (!match) {
      this.fail(res, 404, "EntryNotFound");
      return;
    }
    const [, repo, , file] = match;
    if (!repos[repo]) {
      this.fail(res, 401, "RepoNotFound");
      return;
    }
    const data = repos[repo][file];
    if (!data || this.scenario.missing.has(file)) {
      this.fail(res, 404, "EntryNotFound");
      return;
    }
    res.setHeader("x-repo-commit", COMMIT);
    if (LFS.has(file)) {
      res.writeHead(302, {
        location: `${this.cdnOrigin}/cdn/${sha256(data)}?repo=${encodeURIComponent(repo)}&file=${encodeURIComponent(file)}`,
        "x-linked-etag": `"${sha256(data)}"`,
        "x-linked-size": String(data.length),
      });
      res.end();
      return;
    }
    if (resolveMatch) {
      res.writeHead(307, { location: `/api/resolve-cache/models/${repo}/${COMMIT}/${file}` });
      res.end();
      return;
    }
    this.serveBytes(req, res, file, this.content(repo, file)!, { etag: `"${gitBlobSha1(data)}"` });
  }

  private handleCdn(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", this.cdnOrigin);
    this.scenario.log.push({ method: req.method ?? "", path: url.pathname, range: req.headers.range });
    const repo = url.searchParams.get("repo") ?? "";
    const file = url.searchParams.get("file") ?? "";
    if (req.headers.authorization) {
      this.fail(res, 400, "TokenLeakedToCdn");
      return;
    }
    const data = this.content(repo, file);
    if (!data) {
      this.fail(res, 404, "EntryNotFound");
      return;
    }
    this.serveBytes(req, res, file, data, {});
  }

  private serveBytes(
    req: IncomingMessage,
    res: ServerResponse,
    file: string,
    data: Uint8Array,
    headers: Record<string, string>,
  ) {
    let start = 0;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
    if (range) {
      start = Number(range[1]);
      if (start >= data.length) {
        res.writeHead(416, { "content-range": `bytes */${data.length}` });
        res.end();
        return;
      }
    }
    const body = data.subarray(start);
    res.writeHead(range ? 206 : 200, {
      ...headers,
      "content-length": String(body.length),
      ...(range ? { "content-range": `bytes ${start}-${data.length - 1}/${data.length}` } : {}),
    });
    if (req.method === "HEAD") {
      res.end();
      return;
    }
    if (this.scenario.stallOnce.delete(file)) {
      res.write(body.subarray(0, body.length >> 1)); // …and nothing more until the client gives up
      return;
    }
    if (this.scenario.cutOnce.delete(file)) {
      // Send about half, then drop the connection mid-body.
      res.write(body.subarray(0, body.length >> 1), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    res.end(body);
  }

  private fail(res: ServerResponse, status: number, code: string): void {
    res.writeHead(status, { "x-error-code": code, "content-type": "text/plain" });
    res.end(code);
  }

  downloads(file: string): { range?: string }[] {
    return this.scenario.log.filter(
      (entry) => entry.method === "GET" && entry.path.startsWith("/cdn/") && LFS.has(file),
    );
  }
}

const scratch = mkdtempSync(join(tmpdir(), "tdb-hub-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let cacheDir = "";
let hub: FakeHub;
let caseCount = 0;

beforeEach(async () => {
  cacheDir = join(scratch, `cache${caseCount++}`);
  hub = new FakeHub();
  await hub.start();
});
afterEach(async () => {
  await hub.stop();
});

const repoDir = () => join(cacheDir, "models--openai-community--gpt2");
const snapshotDir = () => join(repoDir(), "snapshots", COMMIT);

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error("expected a rejection");
}

describe("resolveModel against a local imitation of the hub", () => {
  it("downloads a named model into the huggingface_hub cache layout", async () => {
    const events: DownloadProgress[] = [];
    const dir = await resolveModel("gpt2", {
      endpoint: hub.endpoint,
      cacheDir,
      onProgress: (p) => events.push({ ...p }),
    });
    expect(dir).toBe(snapshotDir());
    for (const name of ["config.json", "model.safetensors", "vocab.json", "merges.txt"]) {
      expect(sha256(new Uint8Array(readFileSync(join(dir, name)))), name).toBe(
        sha256(repos["openai-community/gpt2"][name]),
      );
      expect(lstatSync(join(dir, name)).isSymbolicLink(), name).toBe(true);
    }
    const modelSha = sha256(repos["openai-community/gpt2"]["model.safetensors"]);
    expect(readlinkSync(join(dir, "model.safetensors"))).toBe(join("..", "..", "blobs", modelSha));
    expect(readlinkSync(join(dir, "config.json"))).toBe(
      join("..", "..", "blobs", gitBlobSha1(repos["openai-community/gpt2"]["config.json"])),
    );
    expect(readFileSync(join(repoDir(), "refs", "main"), "utf8")).toBe(COMMIT);
    expect(existsSync(join(dir, "tokenizer.json"))).toBe(false);

    const total = Object.values(repos["openai-community/gpt2"]).reduce((sum, data) => sum + data.length, 0);
    const last = events[events.length - 1];
    expect(last.bytesTotal).toBe(total);
    expect(last.bytesDone).toBe(total);
    expect(events.every((e, i) => i === 0 || e.bytesDone >= events[i - 1].bytesDone)).toBe(true);

    const model = await loadHfFolder(dir);
    expect(model.config.nLayer).toBe(2);
    expect(model.tensors.get("wte.weight")!.data[0]).toBe(-0.0558592826128006);
  });

  it("uses the cache when the hub is gone, and in offline mode without asking", async () => {
    const dir = await resolveModel("gpt2", { endpoint: hub.endpoint, cacheDir });
    await hub.stop();
    expect(await resolveModel("gpt2", { endpoint: hub.endpoint, cacheDir })).toBe(dir);
    await hub.start();
    hub.scenario.log = [];
    expect(
      await resolveModel("openai-community/gpt2", { endpoint: hub.endpoint, cacheDir, offline: true }),
    ).toBe(dir);
    expect(hub.scenario.log).toEqual([]);
  });

  it("skips files whose blobs are already cached", async () => {
    await resolveModel("gpt2", { endpoint: hub.endpoint, cacheDir });
    hub.scenario.log = [];
    await resolveModel("gpt2", { endpoint: hub.endpoint, cacheDir });
    expect(hub.scenario.log.filter((e) => e.method === "GET")).toEqual([]);
  });

  it("resumes an interrupted download with a Range request", async () => {
    hub.scenario.cutOnce.add("model.safetensors");
    const dir = await resolveModel("gpt2", { endpoint: hub.endpoint, cacheDir });
    const gets = hub.downloads("model.safetensors");
    expect(gets.length).toBe(2);
    expect(gets[0].range).toBeUndefined();
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(gets[1].range ?? "")?.[1]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(sha256(new Uint8Array(readFileSync(join(dir, "model.safetensors"))))).toBe(
      sha256(repos["openai-community/gpt2"]["model.safetensors"]),
    );
  });

  it("aborts a stalled transfer and resumes it", async () => {
    hub.scenario.stallOnce.add("model.safetensors");
    const dir = await resolveModel("gpt2", { endpoint: hub.endpoint, cacheDir, stallTimeoutMs: 300 });
    const gets = hub.downloads("model.safetensors");
    expect(gets.length).toBe(2);
    expect(gets[1].range).toMatch(/^bytes=[1-9]\d*-$/);
    expect(sha256(new Uint8Array(readFileSync(join(dir, "model.safetensors"))))).toBe(
      sha256(repos["openai-community/gpt2"]["model.safetensors"]),
    );
  });

  it("keeps the partial file across calls and resumes on the next call", async () => {
    hub.scenario.cutOnce.add("model.safetensors");
    const error = await rejection(resolveModel("gpt2", { endpoint: hub.endpoint, cacheDir, retries: 0 }));
    expect(error).toBeInstanceOf(ModelSourceError);
    expect(error.message).toMatch(/interrupted at byte \d+.*run again to resume/);
    const modelSha = sha256(repos["openai-community/gpt2"]["model.safetensors"]);
    const partial = statSync(join(repoDir(), "blobs", `${modelSha}.incomplete`)).size;
    expect(partial).toBeGreaterThan(0);
    expect(existsSync(join(snapshotDir(), "model.safetensors"))).toBe(false);

    const dir = await resolveModel("gpt2", { endpoint: hub.endpoint, cacheDir, retries: 0 });
    expect(hub.downloads("model.safetensors").at(-1)?.range).toBe(`bytes=${partial}-`);
    expect(sha256(new Uint8Array(readFileSync(join(dir, "model.safetensors"))))).toBe(modelSha);
  });

  it("rejects a corrupted payload and leaves nothing half-written", async () => {
    hub.scenario.corrupt.add("model.safetensors");
    const error = await rejection(resolveModel("gpt2", { endpoint: hub.endpoint, cacheDir }));
    expect(error).toBeInstanceOf(ModelSourceError);
    expect(error.message).toMatch(/openai-community\/gpt2\/model\.safetensors: sha256 mismatch/);
    expect(existsSync(join(snapshotDir(), "model.safetensors"))).toBe(false);
    const blobs = readdirSync(join(repoDir(), "blobs"));
    expect(blobs.some((name) => name.endsWith(".incomplete"))).toBe(false);
    expect(blobs).not.toContain(sha256(repos["openai-community/gpt2"]["model.safetensors"]));
    // …and the incomplete snapshot is not mistaken for a cache when the hub is gone.
    await hub.stop();
    expect((await rejection(resolveModel("gpt2", { endpoint: hub.endpoint, cacheDir }))).message).toMatch(
      /no cache for gpt2/,
    );
    await hub.start();
  });

  it("reports a missing file and a missing repository clearly", async () => {
    hub.scenario.missing.add("vocab.json");
    const error = await rejection(resolveModel("gpt2", { endpoint: hub.endpoint, cacheDir }));
    expect(error).toBeInstanceOf(ModelSourceError);
    expect(error.message).toBe(
      `vocab.json not found in openai-community/gpt2 at revision main (${hub.endpoint})`,
    );

    const repoError = await rejection(resolveModel("nobody/nothing", { endpoint: hub.endpoint, cacheDir }));
    expect(repoError.message).toMatch(/repository nobody\/nothing not found on .*HTTP 401/);
  });

  it("says so when there is neither network nor cache", async () => {
    await hub.stop();
    const error = await rejection(resolveModel("gpt2", { endpoint: hub.endpoint, cacheDir }));
    expect(error).toBeInstanceOf(ModelSourceError);
    expect(error.message).toMatch(
      /^no network \(cannot reach .*\) and no cache for gpt2 \(looked in .*models--openai-community--gpt2, .*models--gpt2\)$/,
    );
    await hub.start();
  });

  it("downloads sharded weights listed by model.safetensors.index.json", async () => {
    const dir = await resolveModel("test-org/sharded", { endpoint: hub.endpoint, cacheDir });
    expect(dir).toBe(join(cacheDir, "models--test-org--sharded", "snapshots", COMMIT));
    const sharded = await loadHfFolder(dir);
    const single = await loadHfFolder(fixtureDir);
    expect(sharded.tensors.size).toBe(single.tensors.size);
    for (const [name, tensor] of single.tensors) {
      expect(
        Buffer.from(sharded.tensors.get(name)!.data.buffer).equals(Buffer.from(tensor.data.slice().buffer)),
        name,
      ).toBe(true);
    }
  });

  it("never sends the token to the CDN", async () => {
    const dir = await resolveModel("gpt2", { endpoint: hub.endpoint, cacheDir, token: "hf_secret" });
    expect(existsSync(join(dir, "model.safetensors"))).toBe(true);
  });
});

describe("resolveModel on local paths and names", () => {
  it("returns a local folder as is and rejects unknown names", async () => {
    expect(await resolveModel(fixtureDir)).toBe(fixtureDir.replace(/\/$/, ""));
    await expect(resolveModel("no-such-model-anywhere")).rejects.toThrow(
      /neither a local folder nor a known model \(gpt2, /,
    );
    await expect(resolveModel(join(fixtureDir, "config.json"))).rejects.toThrow(/is a file/);
  });

  it("finds the cache folder like huggingface_hub", () => {
    const saved = { ...process.env };
    try {
      delete process.env.HF_HUB_CACHE;
      delete process.env.HUGGINGFACE_HUB_CACHE;
      delete process.env.HF_HOME;
      process.env.XDG_CACHE_HOME = "/x/cache";
      expect(hubCacheDir()).toBe("/x/cache/huggingface/hub");
      process.env.HF_HOME = "/y/hf";
      expect(hubCacheDir()).toBe("/y/hf/hub");
      process.env.HF_HUB_CACHE = "/z/hub";
      expect(hubCacheDir()).toBe("/z/hub");
    } finally {
      process.env = saved;
    }
  });
});

describe("createProgressBar", () => {
  const fakeStream = (isTTY: boolean) => {
    const writes: string[] = [];
    const stream = { isTTY, write: (text: string) => writes.push(text) > 0 };
    return { writes, stream: stream as unknown as NodeJS.WriteStream };
  };
  const step = (file: string, fileBytesDone: number, bytesDone: number): DownloadProgress => ({
    file,
    fileBytesDone,
    fileBytesTotal: 2_000_000,
    bytesDone,
    bytesTotal: 4_000_000,
  });

  it("draws a bar on a terminal and ends the line when everything is done", () => {
    const { writes, stream } = fakeStream(true);
    const bar = createProgressBar(stream);
    bar(step("a.bin", 1_000_000, 1_000_000));
    bar(step("b.bin", 2_000_000, 4_000_000));
    expect(writes[0]).toBe(`\r[########----------------------] 25.0% 1.0 MB/4.0 MB a.bin\x1b[K`);
    expect(writes.at(-2)).toMatch(/^\r\[#{30}\] 100\.0% 4\.0 MB\/4\.0 MB b\.bin/);
    expect(writes.at(-1)).toBe("\n");
  });

  it("prints one line per finished file elsewhere", () => {
    const { writes, stream } = fakeStream(false);
    const bar = createProgressBar(stream);
    bar(step("a.bin", 1_000_000, 1_000_000));
    bar(step("a.bin", 2_000_000, 2_000_000));
    bar(step("a.bin", 2_000_000, 2_000_000));
    expect(writes).toEqual(["downloaded a.bin (2.0 MB)\n"]);
  });
});
