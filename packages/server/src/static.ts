/**
 * The built viewer (packages/viewer/dist) on the server's own origin: files by path, index.html for every
 * other page path (client-side routes such as /gpt2-small/tdb_alpha). Paths are decoded once, must stay inside
 * the folder after resolving symlinks, and dotfiles are never served.
 */
import { createReadStream } from "node:fs";
import { realpath, stat } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { extname, join, resolve, sep } from "node:path";
import { HttpError } from "./http.js";

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".map": "application/json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".gif": "image/gif",
  ".ico": "image/x-icon",
  ".webp": "image/webp",
  ".woff": "font/woff",
  ".woff2": "font/woff2",
  ".ttf": "font/ttf",
  ".wasm": "application/wasm",
  ".txt": "text/plain; charset=utf-8",
  ".webmanifest": "application/manifest+json",
};

async function fileSize(path: string): Promise<number | null> {
  try {
    const info = await stat(path);
    return info.isFile() ? info.size : null;
  } catch {
    return null;
  }
}

/** The file under `root` that `pathname` names, or null (outside the root, hidden, missing, a folder). */
function decodePath(pathname: string): string {
  try {
    return decodeURIComponent(pathname);
  } catch {
    throw new HttpError(400, `Malformed URL path: ${pathname.slice(0, 200)}`);
  }
}

export async function resolveStaticPath(root: string, pathname: string): Promise<string | null> {
  const decoded = decodePath(pathname);
  if (decoded.includes("\0") || decoded.includes("\\")) return null;
  const parts = decoded.split("/").filter((p) => p !== "");
  if (parts.some((p) => p === ".." || p.startsWith("."))) return null;
  const base = await realpath(root);
  const candidate = resolve(base, ...parts);
  if (candidate !== base && !candidate.startsWith(base + sep)) return null;
  let real: string;
  try {
    real = await realpath(candidate);
  } catch {
    return null;
  }
  if (!real.startsWith(base + sep)) return null;
  return (await fileSize(real)) === null ? null : real;
}

function sendFile(req: IncomingMessage, res: ServerResponse, path: string, size: number): void {
  const type = CONTENT_TYPES[extname(path).toLowerCase()] ?? "application/octet-stream";
  // Hashed bundle names can be cached for long; index.html must be revalidated to pick up a new build.
  const cache = path.endsWith(".html") ? "no-cache" : "public, max-age=3600";
  res.writeHead(200, {
    "Content-Type": type,
    "Content-Length": size,
    "Cache-Control": cache,
    "X-Content-Type-Options": "nosniff",
  });
  if (req.method === "HEAD") {
    res.end();
    return;
  }
  const stream = createReadStream(path);
  stream.on("error", () => res.destroy());
  stream.pipe(res);
}

/**
 * Answers a GET/HEAD outside the API. Paths with a file extension that match nothing are 404; other paths get
 * index.html (or the placeholder page when no viewer is built).
 */
export async function serveViewer(
  req: IncomingMessage,
  res: ServerResponse,
  root: string | null,
  pathname: string,
  placeholder: () => string,
): Promise<void> {
  decodePath(pathname);
  if (root !== null) {
    const file = await resolveStaticPath(root, pathname);
    if (file !== null) {
      sendFile(req, res, file, (await fileSize(file)) ?? 0);
      return;
    }
  }
  if (extname(pathname) !== "") throw new HttpError(404, `Not Found: ${pathname.slice(0, 200)}`);
  if (root !== null) {
    const index = join(root, "index.html");
    const size = await fileSize(index);
    if (size !== null) {
      sendFile(req, res, index, size);
      return;
    }
  }
  const html = placeholder();
  res.writeHead(200, {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Length": Buffer.byteLength(html),
    "Cache-Control": "no-cache",
  });
  res.end(req.method === "HEAD" ? undefined : html);
}
