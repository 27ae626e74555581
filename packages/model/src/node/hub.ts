/**
 * Named GPT-2 models from the Hugging Face hub, cached in huggingface_hub's layout so both tools share it:
 *   {cache}/models--{org}--{name}/blobs/{etag}            file contents (etag = sha256 for LFS files)
 *   {cache}/models--{org}--{name}/snapshots/{commit}/{f}  relative symlink → ../../blobs/{etag}
 *   {cache}/models--{org}--{name}/refs/{revision}         commit hash the revision pointed at
 * Downloads go to blobs/{etag}.incomplete and resume with a Range request; a blob is only linked into a
 * snapshot after its size and (for LFS files) sha256 have been checked.
 */

import { createHash, randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import {
  copyFile,
  mkdir,
  open,
  readFile,
  rename,
  rm,
  stat,
  symlink,
  unlink,
  writeFile,
} from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { ModelSourceError } from "../formats/errors.js";

/** Short names → hub repository ids (the GPT-2 checkpoints moved under openai-community/ in 2024). */
export const NAMED_MODELS: Readonly<Record<string, string>> = {
  gpt2: "openai-community/gpt2",
  "gpt2-small": "openai-community/gpt2",
  "gpt2-medium": "openai-community/gpt2-medium",
  "gpt2-large": "openai-community/gpt2-large",
  "gpt2-xl": "openai-community/gpt2-xl",
  distilgpt2: "distilbert/distilgpt2",
};

/** Repo ids older caches used for the same models (before the move), searched when offline. */
const LEGACY_REPO_IDS: Readonly<Record<string, string>> = {
  "openai-community/gpt2": "gpt2",
  "openai-community/gpt2-medium": "gpt2-medium",
  "openai-community/gpt2-large": "gpt2-large",
  "openai-community/gpt2-xl": "gpt2-xl",
  "distilbert/distilgpt2": "distilgpt2",
};

export interface DownloadProgress {
  /** File being downloaded (repo-relative). */
  file: string;
  fileBytesDone: number;
  fileBytesTotal: number | undefined;
  /** Over all files this call downloads (files already cached are not counted). */
  bytesDone: number;
  bytesTotal: number | undefined;
}

export interface HubOptions {
  /** Branch, tag or commit (default "main"). */
  revision?: string;
  /** Hub cache folder; default HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub. */
  cacheDir?: string;
  /** Default HF_ENDPOINT, else https://huggingface.co. */
  endpoint?: string;
  /** Bearer token for private/gated repos; default HF_TOKEN. Sent to the endpoint only, never to redirects. */
  token?: string;
  /** Use the cache only (also when HF_HUB_OFFLINE=1). */
  offline?: boolean;
  onProgress?: (progress: DownloadProgress) => void;
  /** Resume attempts after an interrupted transfer, per file (default 3). */
  retries?: number;
  /** Timeout of each metadata (HEAD) request in ms (default 30 000). */
  timeoutMs?: number;
  /** A download that receives nothing for this long is aborted and resumed (default 60 000 ms). */
  stallTimeoutMs?: number;
  /** Name shown in messages (e.g. "gpt2" for openai-community/gpt2). */
  displayName?: string;
}

export type ResolveOptions = HubOptions;

const env = (name: string): string | undefined => {
  const value = process.env[name];
  return value === undefined || value === "" ? undefined : value;
};

export function hubCacheDir(): string {
  const explicit = env("HF_HUB_CACHE") ?? env("HUGGINGFACE_HUB_CACHE");
  if (explicit) return resolve(explicit);
  const home = env("HF_HOME") ?? join(env("XDG_CACHE_HOME") ?? join(homedir(), ".cache"), "huggingface");
  return resolve(home, "hub");
}

function repoFolderName(repoId: string): string {
  return `models--${repoId.split("/").join("--")}`;
}

const REQUIRED_FILES = ["config.json", "vocab.json", "merges.txt"];
const OPTIONAL_FILES = ["tokenizer.json"];
const COMMIT_PATTERN = /^[0-9a-f]{40}$/;
const SHA256_PATTERN = /^[0-9a-f]{64}$/;

/** A transfer problem worth retrying or falling back to the cache for (no answer, 5xx, cut connection). */
class TransientError extends Error {}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Weight files of a snapshot folder, or undefined when it lacks them (incl. shards named by an index). */
async function snapshotWeightFiles(dir: string): Promise<string[] | undefined> {
  if (await exists(join(dir, "model.safetensors"))) return ["model.safetensors"];
  const index = join(dir, "model.safetensors.index.json");
  if (!(await exists(index))) return undefined;
  try {
    const parsed = JSON.parse(await readFile(index, "utf8")) as { weight_map?: Record<string, string> };
    const shards = [...new Set(Object.values(parsed.weight_map ?? {}))];
    for (const shard of shards) if (!(await exists(join(dir, shard)))) return undefined;
    return ["model.safetensors.index.json", ...shards];
  } catch {
    return undefined;
  }
}

async function isCompleteSnapshot(dir: string): Promise<boolean> {
  for (const file of REQUIRED_FILES) if (!(await exists(join(dir, file)))) return false;
  return (await snapshotWeightFiles(dir)) !== undefined;
}

/** Complete cached snapshot for the revision in any of the repo folders, and the folders searched. */
async function findCachedSnapshot(
  cacheDir: string,
  repoIds: string[],
  revision: string,
): Promise<{ dir?: string; searched: string[] }> {
  const searched: string[] = [];
  for (const repoId of repoIds) {
    const repoDir = join(cacheDir, repoFolderName(repoId));
    searched.push(repoDir);
    let commit = revision;
    if (!COMMIT_PATTERN.test(revision)) {
      try {
        commit = (await readFile(join(repoDir, "refs", revision), "utf8")).trim();
      } catch {
        continue;
      }
    }
    const dir = join(repoDir, "snapshots", commit);
    if (await isCompleteSnapshot(dir)) return { dir, searched };
  }
  return { searched };
}

interface RemoteFile {
  file: string;
  /** Where to GET the bytes (the resolve URL, or the CDN location it redirected to). */
  url: string;
  /** Same origin as the endpoint: the token may be sent. */
  authorized: boolean;
  commit: string | undefined;
  /** sha256 for LFS files, git blob sha1 for others; undefined if the server sent none. */
  etag: string | undefined;
  size: number | undefined;
}

function cleanEtag(value: string | null): string | undefined {
  if (!value) return undefined;
  return value.replace(/^W\//, "").replace(/^"|"$/g, "") || undefined;
}

function parseSize(value: string | null): number | undefined {
  if (value === null || !/^\d+$/.test(value)) return undefined;
  return Number(value);
}

class HubClient {
  readonly endpoint: string;
  private readonly origin: string;

  constructor(
    readonly repoId: string,
    readonly revision: string,
    private readonly options: HubOptions,
  ) {
    this.endpoint = (options.endpoint ?? env("HF_ENDPOINT") ?? "https://huggingface.co").replace(/\/+$/, "");
    this.origin = new URL(this.endpoint).origin;
  }

  resolveUrl(file: string): string {
    const path = file.split("/").map(encodeURIComponent).join("/");
    return `${this.endpoint}/${this.repoId}/resolve/${encodeURIComponent(this.revision)}/${path}`;
  }

  headers(authorized: boolean, extra: Record<string, string> = {}): Record<string, string> {
    const token = this.options.token ?? env("HF_TOKEN");
    return {
      "user-agent": "tdb-ts",
      ...(authorized && token ? { authorization: `Bearer ${token}` } : {}),
      ...extra,
    };
  }

  /** HEAD the resolve URL; undefined when the file does not exist (404 EntryNotFound). */
  async head(file: string): Promise<RemoteFile | undefined> {
    let url = this.resolveUrl(file);
    let firstCommit: string | undefined;
    for (let hop = 0; hop < 5; hop++) {
      let response: Response;
      try {
        response = await fetch(url, {
          method: "HEAD",
          redirect: "manual",
          headers: this.headers(true, { "accept-encoding": "identity" }),
          signal: AbortSignal.timeout(this.options.timeoutMs ?? 30_000),
        });
      } catch (error) {
        throw new TransientError(`cannot reach ${url}: ${describe(error)}`);
      }
      // Redirect hops may carry the commit while the final answer does not, or the other way round.
      const commit = response.headers.get("x-repo-commit") ?? firstCommit;
      firstCommit = commit;
      const etag = cleanEtag(response.headers.get("x-linked-etag") ?? response.headers.get("etag"));
      const size = parseSize(response.headers.get("x-linked-size") ?? response.headers.get("content-length"));
      if (response.status >= 300 && response.status < 400) {
        const location = response.headers.get("location");
        if (!location) throw new TransientError(`${url}: redirect without a location`);
        const target = new URL(location, url);
        if (target.origin === this.origin) {
          // Renamed repo or resolve-cache hop: follow, the metadata comes with the final answer.
          url = target.href;
          continue;
        }
        // CDN redirect: the hub puts the file's metadata on this response.
        return {
          file,
          url: target.href,
          authorized: false,
          commit,
          etag,
          size: parseSize(response.headers.get("x-linked-size")),
        };
      }
      if (response.ok) return { file, url, authorized: true, commit, etag, size };
      const errorCode = response.headers.get("x-error-code");
      if (response.status === 404 && errorCode !== "RepoNotFound" && errorCode !== "RevisionNotFound")
        return undefined;
      if (errorCode === "RevisionNotFound") {
        throw new ModelSourceError(
          `revision "${this.revision}" not found in ${this.repoId} (${this.endpoint})`,
        );
      }
      if (response.status === 401 || response.status === 403 || errorCode === "RepoNotFound") {
        throw new ModelSourceError(
          `repository ${this.repoId} not found on ${this.endpoint}, or access denied (HTTP ${response.status}); ` +
            "private or gated repos need HF_TOKEN",
        );
      }
      throw new TransientError(`${url}: HTTP ${response.status}`);
    }
    throw new TransientError(`${this.resolveUrl(file)}: too many redirects`);
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const cause = (error as { cause?: unknown }).cause;
    return cause instanceof Error ? `${error.message} (${cause.message})` : error.message;
  }
  return String(error);
}

async function hashFile(path: string, hash: ReturnType<typeof createHash>): Promise<void> {
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
}

interface TransferState {
  /** Bytes of the files finished so far in this call. */
  completed: number;
  bytesTotal: number | undefined;
}

/**
 * GET `remote` into `incomplete`, resuming from its current size with a Range request. Returns the file's
 * size afterwards. Transfer failures throw TransientError and keep what arrived.
 */
async function transfer(
  client: HubClient,
  remote: RemoteFile,
  incomplete: string,
  options: HubOptions,
  state: TransferState,
): Promise<number> {
  const label = `${client.repoId}/${remote.file}`;
  let have = (await stat(incomplete).catch(() => undefined))?.size ?? 0;
  if (remote.size !== undefined && have > remote.size) {
    await rm(incomplete, { force: true });
    have = 0;
  }
  // identity: byte offsets for Range must refer to the stored file, not a compressed transfer.
  const headers = client.headers(remote.authorized, {
    "accept-encoding": "identity",
    ...(have > 0 ? { range: `bytes=${have}-` } : {}),
  });

  // Abort a transfer that stops delivering data, so the retry loop can resume it.
  const stall = new AbortController();
  const stallMs = options.stallTimeoutMs ?? 60_000;
  let stallTimer: ReturnType<typeof setTimeout> | undefined;
  const feed = () => {
    clearTimeout(stallTimer);
    stallTimer = setTimeout(() => stall.abort(new Error(`no data for ${stallMs} ms`)), stallMs);
  };
  feed();
  try {
    let response: Response;
    try {
      response = await fetch(remote.url, { headers, redirect: "follow", signal: stall.signal });
    } catch (error) {
      throw new TransientError(`cannot download ${label}: ${describe(error)}`);
    }
    if (response.status === 416 && have > 0 && have === remote.size) {
      await response.body?.cancel();
      return have;
    }
    if (response.status === 206) {
      const range = /^bytes (\d+)-/.exec(response.headers.get("content-range") ?? "");
      if (!range || Number(range[1]) !== have) {
        await response.body?.cancel();
        await rm(incomplete, { force: true });
        throw new TransientError(`${label}: server resumed at the wrong offset; restarting`);
      }
    } else if (response.status === 200) {
      have = 0; // no Range asked, or the server ignored it: start over
    } else {
      await response.body?.cancel();
      if (response.status === 404)
        throw new ModelSourceError(`${label}: not found at ${remote.url} (HTTP 404)`);
      if (response.status === 416) {
        await rm(incomplete, { force: true });
        throw new TransientError(`${label}: range not satisfiable; restarting`);
      }
      if (response.status >= 500 || response.status === 429)
        throw new TransientError(`${label}: HTTP ${response.status}`);
      throw new ModelSourceError(`${label}: download failed with HTTP ${response.status}`);
    }

    const handle = await open(incomplete, have === 0 ? "w" : "a");
    let received = have;
    const report = () =>
      options.onProgress?.({
        file: remote.file,
        fileBytesDone: received,
        fileBytesTotal: remote.size,
        bytesDone: state.completed + received,
        bytesTotal: state.bytesTotal,
      });
    try {
      report();
      if (response.body) {
        for await (const chunk of response.body) {
          feed();
          await handle.write(chunk);
          received += chunk.byteLength;
          report();
        }
      }
    } catch (error) {
      throw new TransientError(
        `download of ${label} interrupted at byte ${received} (${describe(error)}); run again to resume`,
      );
    } finally {
      await handle.close();
    }
    if (remote.size !== undefined && received < remote.size) {
      throw new TransientError(
        `download of ${label} ended early (${received} of ${remote.size} bytes); run again to resume`,
      );
    }
    return received;
  } finally {
    clearTimeout(stallTimer);
  }
}

/**
 * Download one file into blobs/ (resuming blobs/{etag}.incomplete), verify size and sha256, and move it to
 * blobs/{etag}. Integrity failures delete the partial file and throw ModelSourceError.
 */
async function downloadBlob(
  client: HubClient,
  remote: RemoteFile,
  blobsDir: string,
  options: HubOptions,
  state: TransferState,
): Promise<string> {
  const label = `${client.repoId}/${remote.file}`;
  const etag = remote.etag;
  // Without an etag there is no stable name to resume under.
  const incomplete = join(blobsDir, `${etag ?? `unnamed-${randomUUID()}`}.incomplete`);
  let size: number;
  try {
    size = await transfer(client, remote, incomplete, options, state);
  } catch (error) {
    if (!etag) await rm(incomplete, { force: true });
    throw error;
  }
  const discard = async (message: string): Promise<never> => {
    await rm(incomplete, { force: true });
    throw new ModelSourceError(message);
  };
  if (remote.size !== undefined && size !== remote.size) {
    await discard(`${label}: received ${size} bytes, expected ${remote.size}; discarded`);
  }
  const hash = createHash("sha256");
  await hashFile(incomplete, hash);
  const sha256 = hash.digest("hex");
  const sha256Expected = etag && SHA256_PATTERN.test(etag) ? etag : undefined;
  if (sha256Expected && sha256 !== sha256Expected) {
    await discard(
      `${label}: sha256 mismatch (expected ${sha256Expected}, got ${sha256}); the corrupt download was discarded`,
    );
  }
  const blob = join(blobsDir, etag ?? sha256);
  await rename(incomplete, blob);
  state.completed += size;
  return blob;
}

async function linkIntoSnapshot(blob: string, snapshotFile: string): Promise<void> {
  await mkdir(dirname(snapshotFile), { recursive: true });
  await unlink(snapshotFile).catch(() => {});
  try {
    await symlink(relative(dirname(snapshotFile), blob), snapshotFile);
  } catch {
    await copyFile(blob, snapshotFile); // e.g. Windows without symlink rights
  }
}

async function fetchFileWithRetries(
  client: HubClient,
  remote: RemoteFile,
  blobsDir: string,
  options: HubOptions,
  state: TransferState,
): Promise<string> {
  if (remote.etag) {
    const blob = join(blobsDir, remote.etag);
    try {
      const info = await stat(blob);
      if (remote.size === undefined || info.size === remote.size) return blob;
    } catch {
      // not cached yet
    }
  }
  const retries = options.retries ?? 3;
  for (let attempt = 0; ; attempt++) {
    try {
      return await downloadBlob(client, remote, blobsDir, options, state);
    } catch (error) {
      if (!(error instanceof TransientError) || attempt >= retries) throw error;
      await new Promise((r) => setTimeout(r, Math.min(200 * 2 ** attempt, 5000)));
    }
  }
}

/** Ask the hub which files make up the model (safetensors weights: single file or index + shards). */
async function plan(client: HubClient): Promise<{
  commit: string;
  files: RemoteFile[];
  index?: RemoteFile;
}> {
  const label = client.repoId;
  const config = await client.head("config.json");
  if (!config)
    throw new ModelSourceError(
      `config.json not found in ${label} at revision ${client.revision} (${client.endpoint})`,
    );
  const commit = config.commit ?? client.revision;
  const files: RemoteFile[] = [config];
  for (const name of REQUIRED_FILES.slice(1)) {
    const remote = await client.head(name);
    if (!remote)
      throw new ModelSourceError(
        `${name} not found in ${label} at revision ${client.revision} (${client.endpoint})`,
      );
    files.push(remote);
  }
  for (const name of OPTIONAL_FILES) {
    const remote = await client.head(name);
    if (remote) files.push(remote);
  }
  const single = await client.head("model.safetensors");
  if (single) return { commit, files: [...files, single] };
  const index = await client.head("model.safetensors.index.json");
  if (!index) {
    throw new ModelSourceError(
      `${label} has no safetensors weights (model.safetensors or model.safetensors.index.json) at revision ${client.revision}`,
    );
  }
  return { commit, files, index };
}

/**
 * Download (or find in the cache) a hub repository's GPT-2 files and return the snapshot folder. When the
 * hub cannot be reached, a complete cached snapshot of the revision is used instead.
 */
export async function downloadHubModel(repoId: string, options: HubOptions = {}): Promise<string> {
  const revision = options.revision ?? "main";
  const cacheDir = options.cacheDir ? resolve(options.cacheDir) : hubCacheDir();
  const displayName = options.displayName ?? repoId;
  const candidates = LEGACY_REPO_IDS[repoId] ? [repoId, LEGACY_REPO_IDS[repoId]] : [repoId];
  const offline =
    options.offline ?? ["1", "true", "yes"].includes((env("HF_HUB_OFFLINE") ?? "").toLowerCase());

  const fromCache = async (reason: string): Promise<string> => {
    const { dir, searched } = await findCachedSnapshot(cacheDir, candidates, revision);
    if (dir) return dir;
    throw new ModelSourceError(
      `${reason} and no cache for ${displayName} (looked in ${searched.join(", ")})`,
    );
  };
  if (offline) return fromCache("offline mode");
  if (COMMIT_PATTERN.test(revision)) {
    const { dir } = await findCachedSnapshot(cacheDir, [repoId], revision);
    if (dir) return dir; // a commit never changes
  }

  const client = new HubClient(repoId, revision, options);
  const repoDir = join(cacheDir, repoFolderName(repoId));
  const blobsDir = join(repoDir, "blobs");
  try {
    const { commit, files, index } = await plan(client);
    const snapshotDir = join(repoDir, "snapshots", commit);
    await mkdir(blobsDir, { recursive: true });
    const state: TransferState = { completed: 0, bytesTotal: undefined };

    let all = files;
    if (index) {
      // The shard list is only known from the index, so it is fetched first.
      const indexBlob = await fetchFileWithRetries(client, index, blobsDir, options, state);
      let weightMap: Record<string, string>;
      try {
        weightMap = (JSON.parse(await readFile(indexBlob, "utf8")) as { weight_map: Record<string, string> })
          .weight_map;
        if (typeof weightMap !== "object" || weightMap === null) throw new Error("no weight_map");
      } catch (error) {
        throw new ModelSourceError(`${repoId}: model.safetensors.index.json is invalid (${describe(error)})`);
      }
      await linkIntoSnapshot(indexBlob, join(snapshotDir, "model.safetensors.index.json"));
      const shards: RemoteFile[] = [];
      for (const shard of new Set(Object.values(weightMap))) {
        if (typeof shard !== "string" || shard.includes("..") || shard.startsWith("/")) {
          throw new ModelSourceError(`${repoId}: bad shard name ${JSON.stringify(shard)} in the index`);
        }
        const remote = await client.head(shard);
        if (!remote)
          throw new ModelSourceError(
            `${repoId}: shard ${shard} listed in model.safetensors.index.json not found`,
          );
        shards.push(remote);
      }
      all = [...files, ...shards];
    }

    const needed: RemoteFile[] = [];
    for (const remote of all) {
      const cached = remote.etag ? join(blobsDir, remote.etag) : undefined;
      const info = cached ? await stat(cached).catch(() => undefined) : undefined;
      if (!info || (remote.size !== undefined && info.size !== remote.size)) needed.push(remote);
    }
    state.bytesTotal = needed.every((r) => r.size !== undefined)
      ? needed.reduce((sum, r) => sum + (r.size ?? 0), 0)
      : undefined;

    for (const remote of all) {
      const blob = await fetchFileWithRetries(client, remote, blobsDir, options, state);
      await linkIntoSnapshot(blob, join(snapshotDir, remote.file));
    }
    if (revision !== commit) {
      await mkdir(join(repoDir, "refs"), { recursive: true });
      await writeFile(join(repoDir, "refs", revision), commit);
    }
    return snapshotDir;
  } catch (error) {
    if (error instanceof TransientError) return fromCache(`no network (${error.message})`);
    throw error;
  }
}

/**
 * A local folder (returned as an absolute path) or a named / `org/name` hub model (downloaded into the
 * cache, or taken from it when offline). Local folders win over names.
 */
export async function resolveModel(nameOrDir: string, options: ResolveOptions = {}): Promise<string> {
  const local = resolve(nameOrDir);
  const info = await stat(local).catch(() => undefined);
  if (info?.isDirectory()) return local;
  if (info) throw new ModelSourceError(`${local} is a file; expected a model folder or a model name`);

  const named = NAMED_MODELS[nameOrDir.toLowerCase()];
  if (named) return downloadHubModel(named, { displayName: nameOrDir, ...options });
  if (/^[\w.-]+\/[\w.-]+$/.test(nameOrDir)) {
    return downloadHubModel(nameOrDir, { displayName: nameOrDir, ...options });
  }
  throw new ModelSourceError(
    `"${nameOrDir}" is neither a local folder nor a known model (${Object.keys(NAMED_MODELS).join(", ")}, or org/name)`,
  );
}

function formatBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${n} B`;
}

/** A progress callback drawing a one-line bar on a terminal (or one line per finished file otherwise). */
export function createProgressBar(
  stream: NodeJS.WriteStream = process.stderr,
): (progress: DownloadProgress) => void {
  let lastDraw = 0;
  let lastFile = "";
  return (p) => {
    const fileDone = p.fileBytesTotal !== undefined && p.fileBytesDone >= p.fileBytesTotal;
    if (!stream.isTTY) {
      if (fileDone && p.file !== lastFile)
        stream.write(`downloaded ${p.file} (${formatBytes(p.fileBytesDone)})\n`);
      if (fileDone) lastFile = p.file;
      return;
    }
    const now = Date.now();
    if (!fileDone && now - lastDraw < 100) return;
    lastDraw = now;
    const done = p.bytesTotal ? p.bytesDone / p.bytesTotal : undefined;
    const width = 30;
    const filled = done === undefined ? 0 : Math.min(width, Math.round(done * width));
    const bar = `[${"#".repeat(filled)}${"-".repeat(width - filled)}]`;
    const percent = done === undefined ? "" : ` ${(done * 100).toFixed(1)}%`;
    const total = p.bytesTotal === undefined ? "" : `/${formatBytes(p.bytesTotal)}`;
    stream.write(`\r${bar}${percent} ${formatBytes(p.bytesDone)}${total} ${p.file}\x1b[K`);
    if (p.bytesTotal !== undefined && p.bytesDone >= p.bytesTotal && fileDone) stream.write("\n");
  };
}
