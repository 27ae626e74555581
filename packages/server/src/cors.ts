/**
 * CORS: pages served from localhost / 127.0.0.1 / [::1] (any port, http or https) may call the server; more
 * origins only when the operator lists them (or "*"). Requests carrying a disallowed Origin are refused
 * outright, so a foreign page cannot even start an inference with a "simple" request.
 */

export interface CorsPolicy {
  /** Every origin is allowed ("--cors-origin *"). */
  allowAny: boolean;
  /** Extra exact origins, e.g. "https://tdb.example.org". */
  origins: readonly string[];
}

export const LOCALHOST_ONLY: CorsPolicy = { allowAny: false, origins: [] };

const LOCAL_ORIGIN = /^https?:\/\/(localhost|127\.0\.0\.1|\[::1\])(:\d{1,5})?$/;

export function isAllowedOrigin(policy: CorsPolicy, origin: string): boolean {
  return policy.allowAny || LOCAL_ORIGIN.test(origin) || policy.origins.includes(origin);
}

/** "*" or a list of origins ("https://host[:port]"); anything else is an error naming the bad entry. */
export function parseCorsOrigins(values: readonly string[]): CorsPolicy {
  const origins: string[] = [];
  let allowAny = false;
  for (const value of values) {
    if (value === "*") {
      allowAny = true;
      continue;
    }
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      throw new Error(`--cors-origin '${value}' is not an origin like http://host:port or *`);
    }
    if (!/^https?:$/.test(url.protocol) || url.origin !== value.replace(/\/$/, "")) {
      throw new Error(`--cors-origin '${value}' is not an origin like http://host:port (no path) or *`);
    }
    origins.push(url.origin);
  }
  return { allowAny, origins };
}

/** Headers for a response to an allowed origin (echoed, as credentials may be included). */
export function corsResponseHeaders(origin: string): Record<string, string> {
  return {
    "Access-Control-Allow-Origin": origin,
    "Access-Control-Allow-Credentials": "true",
    Vary: "Origin",
  };
}

export function preflightHeaders(
  origin: string,
  requestedHeaders: string | undefined,
): Record<string, string> {
  return {
    ...corsResponseHeaders(origin),
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": requestedHeaders ?? "Content-Type",
    "Access-Control-Max-Age": "600",
  };
}
