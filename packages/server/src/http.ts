/** Small node:http helpers: bounded body reading, JSON parsing with useful errors, JSON replies. */
import type { IncomingMessage, ServerResponse } from "node:http";

/** An error that becomes an HTTP reply: `body` as given, else TDB's `{"message": …}`. */
export class HttpError extends Error {
  override name = "HttpError";
  constructor(
    readonly status: number,
    message: string,
    readonly body: unknown = { message },
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** A FastAPI-style validation error entry. */
export interface ValidationDetail {
  loc: (string | number)[];
  msg: string;
  type: string;
}

/** 422 in FastAPI's shape (`detail`), plus one readable `message` line for people and simple clients. */
export function validationError(summary: string, detail: ValidationDetail[]): HttpError {
  const lines = detail.slice(0, 10).map((d) => `${formatLoc(d.loc)}: ${d.msg}`);
  const more = detail.length > 10 ? `; … and ${detail.length - 10} more` : "";
  const message = `${summary}: ${lines.join("; ")}${more}`;
  return new HttpError(422, message, { detail, message });
}

/** `["body", "subRequests", 0, "prompt"]` → `body.subRequests[0].prompt`. */
export function formatLoc(loc: readonly (string | number)[]): string {
  let out = "";
  for (const part of loc) {
    if (typeof part === "number") out += `[${part}]`;
    else out += out === "" ? part : `.${part}`;
  }
  return out || "body";
}

/** Bodies beyond the limit are read to the end (up to `drainLimit`) and dropped, so the client sees the 413. */
export async function readBody(
  req: IncomingMessage,
  limit: number,
  drainLimit = 64 * 1024 * 1024,
): Promise<Buffer> {
  const declared = Number(req.headers["content-length"]);
  const tooLarge = () =>
    new HttpError(
      413,
      `Request body too large: ${Number.isFinite(declared) ? `${declared} bytes` : "more than the limit"}; the limit is ${limit} bytes`,
      undefined,
      { Connection: "close" },
    );
  const chunks: Buffer[] = [];
  let size = 0;
  let over = Number.isFinite(declared) && declared > limit;
  return new Promise<Buffer>((resolve, reject) => {
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) over = true;
      if (over) {
        chunks.length = 0;
        // Stop reading a body that never ends; the reply still goes out before the socket closes.
        if (size > drainLimit) {
          req.pause();
          reject(tooLarge());
        }
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => (over ? reject(tooLarge()) : resolve(Buffer.concat(chunks, size))));
    req.on("error", (error) => reject(error));
  });
}

/** Parses a JSON body; malformed JSON is a 422 naming the problem (NaN and Infinity are not JSON). */
export function parseJson(body: Buffer): unknown {
  const text = body.toString("utf8");
  if (text.trim() === "") {
    throw validationError("Invalid request body", [
      { loc: ["body"], msg: "a JSON request body is required", type: "missing" },
    ]);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    const reason = (error as Error).message;
    const position = /at position (\d+)/.exec(reason);
    const at = position ? Number(position[1]) : -1;
    // Python's json module writes NaN/Infinity; say so rather than "unexpected token".
    const outsideStrings = text.replace(/"(?:[^"\\]|\\.)*"/g, '""');
    const nonFinite = /(?:^|[\s,:[])(-?(?:NaN|Infinity))\b/.exec(outsideStrings);
    const msg = nonFinite
      ? `${nonFinite[1]} is not valid JSON; numbers must be finite`
      : `JSON decode error: ${reason.length > 200 ? `${reason.slice(0, 200)}…` : reason}`;
    throw validationError("Invalid request body", [
      { loc: at >= 0 ? ["body", at] : ["body"], msg, type: "json_invalid" },
    ]);
  }
}

export function sendJson(
  res: ServerResponse,
  status: number,
  value: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(value) ?? "null";
  res.writeHead(status, {
    "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}
