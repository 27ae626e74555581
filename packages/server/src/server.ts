/**
 * TDB's activation server on plain node:http: the routes of tdb-spec §3.1 with TDB's paths, methods, field
 * names and error shapes, one model computation at a time, CORS for localhost pages, and the built viewer
 * (or a placeholder page) on every other GET path.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { type TdbContext, TdbRequestError } from "@tdb/attribution";
import {
  type CorsPolicy,
  corsResponseHeaders,
  isAllowedOrigin,
  LOCALHOST_ONLY,
  preflightHeaders,
} from "./cors.js";
import { DatasetNotFoundError, type DatasetSource, type Explainer } from "./datasets.js";
import { HttpError, parseJson, readBody, sendJson } from "./http.js";
import { buildOpenApi } from "./openapi.js";
import { CancelledError, InferenceQueue } from "./queue.js";
import { datasetRoutes } from "./routes/datasets.js";
import { inferenceRoutes, modelInfo } from "./routes/inference.js";
import { miscRoutes } from "./routes/misc.js";
import { type AppContext, DEFAULT_LIMITS, type Route, type ServerLimits } from "./routes/route.js";
import { serveViewer } from "./static.js";
import { validate } from "./validate.js";

export const SERVER_VERSION = "0.1.0";

export interface TdbServerOptions {
  /** Model, tokenizer, names and autoencoders, as @tdb/attribution takes them. */
  tdb: TdbContext;
  datasets?: DatasetSource | null;
  explainer?: Explainer | null;
  cors?: CorsPolicy;
  /** Folder of the built viewer; null or missing → a placeholder page. */
  viewerDir?: string | null;
  limits?: Partial<ServerLimits>;
  /** Where request lines and unexpected errors go (default: stderr). */
  log?: (line: string) => void;
  /** One line per request (default true). */
  logRequests?: boolean;
}

export interface TdbServer {
  readonly server: Server;
  readonly routes: readonly Route[];
  readonly queue: InferenceQueue;
  /** Resolves with the bound address once listening. */
  listen(port: number, host?: string): Promise<{ host: string; port: number; url: string }>;
  /** Stops accepting connections, lets running requests finish, closes idle sockets. */
  close(): Promise<void>;
}

export const ALL_ROUTES: readonly Route[] = [...inferenceRoutes, ...datasetRoutes, ...miscRoutes];

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** The page at / when no viewer is built. */
export function placeholderPage(tdb: TdbContext): string {
  const info = modelInfo(tdb);
  const path = tdbPagePath(tdb);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tdb-ts activation server</title>
<style>body{font-family:system-ui,sans-serif;max-width:46em;margin:3em auto;line-height:1.5;padding:0 1em}code{background:#f3f3f3;padding:0 .2em}</style>
</head><body>
<h1>tdb-ts activation server</h1>
<p>Serving <b>${escapeHtml(info.modelName ?? "")}</b> (${info.nLayers} layers${info.mlpAutoencoderName ? `, MLP autoencoder <b>${escapeHtml(info.mlpAutoencoderName)}</b>` : ""}${info.attentionAutoencoderName ? `, attention autoencoder <b>${escapeHtml(info.attentionAutoencoderName)}</b>` : ""}).</p>
<p>The viewer isn't built, so there is no page at <code>${escapeHtml(path)}</code> yet. Build it (<code>packages/viewer</code>) and restart,
or point TDB's own <code>neuron_viewer</code> at this server with <code>NEURON_VIEWER_ACTIVATION_SERVER_URL</code>.</p>
<p>API description: <a href="/openapi.json">/openapi.json</a>.</p>
</body></html>
`;
}

/** The viewer's TDB page for this server (TDB's welcome page builds the same path from /model_info). */
export function tdbPagePath(tdb: TdbContext): string {
  const info = modelInfo(tdb);
  const parts = [info.modelName, info.mlpAutoencoderName, info.attentionAutoencoderName].filter(
    (p): p is string => Boolean(p),
  );
  return `/${parts.map(encodeURIComponent).join("_")}/tdb_alpha`;
}

function wantsJson(req: IncomingMessage): boolean {
  const accept = req.headers.accept ?? "";
  return accept.includes("application/json") && !accept.includes("text/html");
}

export function createTdbServer(options: TdbServerOptions): TdbServer {
  const limits: ServerLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const queue = new InferenceQueue(limits.maxQueued);
  const app: AppContext = {
    tdb: { ...options.tdb, maxPromptTokens: limits.maxPromptTokens },
    datasets: options.datasets ?? null,
    explainer: options.explainer ?? null,
    limits,
    queue,
  };
  const cors = options.cors ?? LOCALHOST_ONLY;
  // Pages served by this server itself under a non-loopback address (bound to a LAN address or 0.0.0.0) are
  // same-origin; on a loopback bind they are localhost origins anyway, and trusting the Host header there
  // would open the door to DNS rebinding.
  let trustSameOrigin = false;
  const isSameOrigin = (req: IncomingMessage, origin: string) =>
    trustSameOrigin && req.headers.host !== undefined && origin === `http://${req.headers.host}`;
  const routes = ALL_ROUTES;
  const byPath = new Map(routes.map((r) => [r.path, r]));
  let openApi: string | null = null;
  const viewerDir = options.viewerDir ?? null;

  async function dispatch(req: IncomingMessage, res: ServerResponse, corsHeaders: Record<string, string>) {
    let url: URL;
    try {
      url = new URL(req.url ?? "/", "http://localhost");
    } catch {
      throw new HttpError(400, "Malformed request URL");
    }
    const method = req.method ?? "GET";
    if (method === "OPTIONS") {
      const origin = req.headers.origin;
      if (!origin)
        throw new HttpError(400, "OPTIONS is only answered as a CORS preflight (with an Origin header)");
      res.writeHead(204, preflightHeaders(origin, req.headers["access-control-request-headers"]));
      res.end();
      return;
    }
    const pathname = url.pathname.length > 1 ? url.pathname.replace(/\/+$/, "") : url.pathname;
    if (pathname === "/openapi.json" && (method === "GET" || method === "HEAD")) {
      openApi ??= JSON.stringify(buildOpenApi(routes, SERVER_VERSION));
      res.writeHead(200, {
        ...corsHeaders,
        "Content-Type": "application/json",
        "Content-Length": Buffer.byteLength(openApi),
      });
      res.end(method === "HEAD" ? undefined : openApi);
      return;
    }
    const route = byPath.get(pathname);
    if (route) {
      if (!(route.methods as readonly string[]).includes(method)) {
        throw new HttpError(
          405,
          `Method ${method} not allowed on ${route.path}; use ${route.methods.join(" or ")}`,
          undefined,
          {
            Allow: route.methods.join(", "),
          },
        );
      }
      let body: unknown;
      if (method === "POST") {
        const raw = await readBody(req, limits.maxBodyBytes);
        if (route.request) body = validate(route.request.schema, parseJson(raw), limits.maxNesting);
      }
      // The request stream ends (and is destroyed) once the body is read; the response closing early is what
      // says the client went away.
      let clientGone = false;
      res.once("close", () => {
        clientGone = !res.writableFinished;
      });
      const result = await route.handle(app, body, { query: url.searchParams, closed: () => clientGone });
      sendJson(res, 200, result ?? null, corsHeaders);
      return;
    }
    if (method === "GET" || method === "HEAD") {
      if (pathname === "/" && wantsJson(req)) {
        sendJson(res, 200, { Hello: "World" }, corsHeaders);
        return;
      }
      await serveViewer(req, res, viewerDir, pathname, () => placeholderPage(app.tdb));
      return;
    }
    throw new HttpError(404, `Not Found: ${method} ${pathname.slice(0, 200)}`);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    if (options.logRequests ?? true) {
      res.once("close", () => {
        const status = res.writableFinished ? String(res.statusCode) : "aborted";
        log(
          `${req.method} ${(req.url ?? "").slice(0, 120)} ${status} ${(performance.now() - started).toFixed(0)}ms`,
        );
      });
    }
    const origin = req.headers.origin;
    let corsHeaders: Record<string, string> = {};
    try {
      if (origin !== undefined) {
        if (!isAllowedOrigin(cors, origin) && !isSameOrigin(req, origin)) {
          throw new HttpError(
            403,
            `Origin ${origin.slice(0, 200)} is not allowed; this server accepts pages from localhost only (start it with --cors-origin to allow more)`,
          );
        }
        corsHeaders = corsResponseHeaders(origin);
      }
      await dispatch(req, res, corsHeaders);
    } catch (error) {
      if (error instanceof CancelledError || res.destroyed) {
        res.destroy();
      } else if (res.headersSent) {
        log(
          `tdb serve: error after the reply started (${req.method} ${req.url}): ${(error as Error).stack ?? error}`,
        );
        res.destroy();
      } else if (error instanceof HttpError) {
        sendJson(res, error.status, error.body, { ...corsHeaders, ...error.headers });
      } else if (error instanceof TdbRequestError) {
        sendJson(res, 400, { message: error.message }, corsHeaders);
      } else if (error instanceof DatasetNotFoundError) {
        sendJson(res, 404, { message: error.message }, corsHeaders);
      } else {
        log(
          `tdb serve: unhandled exception in ${req.method} ${req.url}:\n${(error as Error).stack ?? String(error)}`,
        );
        sendJson(res, 500, { message: "Unhandled server exception" }, corsHeaders);
      }
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error) => {
      log(`tdb serve: ${(error as Error).stack ?? String(error)}`);
      res.destroy();
    });
  });
  // Malformed HTTP (bad request line, oversized headers): answer 400 rather than dropping silently.
  server.on("clientError", (error: NodeJS.ErrnoException, socket) => {
    if (!socket.writable || error.code === "ECONNRESET") {
      socket.destroy();
      return;
    }
    const tooLarge = error.code === "HPE_HEADER_OVERFLOW";
    const status = tooLarge ? "431 Request Header Fields Too Large" : "400 Bad Request";
    const message = tooLarge
      ? "Request headers too large"
      : `Bad HTTP request: ${error.code ?? error.message}`;
    const body = JSON.stringify({ message });
    socket.end(
      `HTTP/1.1 ${status}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  });

  return {
    server,
    routes,
    queue,
    listen(port: number, host = "127.0.0.1") {
      return new Promise((resolve, reject) => {
        const onError = (error: Error) => reject(error);
        server.once("error", onError);
        server.listen(port, host, () => {
          server.off("error", onError);
          const address = server.address() as AddressInfo;
          trustSameOrigin = !/^(127\.|::1$|::ffff:127\.)/.test(address.address);
          const shownHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
          resolve({ host: address.address, port: address.port, url: `http://${shownHost}:${address.port}` });
        });
      });
    },
    close() {
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
    },
  };
}
