/**
 * /openapi.json (OpenAPI 3.1) from the same zod schemas the server validates with: request bodies as the
 * schemas accept them (`io: "input"`, snake_case aliases aside), responses as emitted (`io: "output"`).
 * Each schema's `$defs` are hoisted into components with the schema's name as prefix.
 */
import type { Route } from "./routes/route.js";
import type { WireSchema } from "./validate.js";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

const ref = (name: string): JsonObject => ({ $ref: `#/components/schemas/${name}` });

function rewriteRefs(value: Json, rename: (target: string) => string): Json {
  if (Array.isArray(value)) return value.map((v) => rewriteRefs(v, rename));
  if (value === null || typeof value !== "object") return value;
  const out: JsonObject = {};
  for (const [key, entry] of Object.entries(value)) {
    out[key] = key === "$ref" && typeof entry === "string" ? rename(entry) : rewriteRefs(entry, rename);
  }
  return out;
}

class Components {
  readonly schemas: JsonObject = {};

  add(name: string, schema: WireSchema<unknown>, io: "input" | "output"): void {
    if (name in this.schemas) return;
    const json = JSON.parse(JSON.stringify(schema.toJSONSchema({ io }))) as JsonObject;
    const defs = (json.$defs ?? {}) as JsonObject;
    delete json.$schema;
    delete json.$defs;
    const defName = (key: string) => `${name}_${key.replace(/^_+/, "")}`;
    const rename = (target: string) => {
      if (target === "#") return `#/components/schemas/${name}`;
      const match = /^#\/\$defs\/(.+)$/.exec(target);
      return match ? `#/components/schemas/${defName(match[1])}` : target;
    };
    this.schemas[name] = rewriteRefs(json, rename);
    for (const [key, def] of Object.entries(defs)) this.schemas[defName(key)] = rewriteRefs(def, rename);
  }
}

const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: "Bad request (TDB's semantic checks: prompt length, token strings, node indices, limits)",
  404: "Not found",
  413: "Request body too large",
  501: "Not implemented by this server yet",
  503: "Unavailable (busy, or the feature is not configured)",
};

export function buildOpenApi(routes: readonly Route[], version: string): JsonObject {
  const components = new Components();
  components.schemas.ErrorResponse = {
    type: "object",
    properties: { message: { type: "string" } },
    required: ["message"],
  };
  components.schemas.ValidationError = {
    type: "object",
    properties: {
      detail: {
        type: "array",
        items: {
          type: "object",
          properties: {
            loc: { type: "array", items: { anyOf: [{ type: "string" }, { type: "integer" }] } },
            msg: { type: "string" },
            type: { type: "string" },
          },
          required: ["loc", "msg", "type"],
        },
      },
      message: { type: "string" },
    },
    required: ["detail"],
  };
  const errorContent = (name: string) => ({ "application/json": { schema: ref(name) } });

  const paths: JsonObject = {};
  for (const route of routes) {
    const item: JsonObject = {};
    route.methods.forEach((method, i) => {
      const responses: JsonObject = {};
      let okSchema: Json = route.responseJsonSchema ? (route.responseJsonSchema as Json) : {};
      if (route.response) {
        components.add(route.response.name, route.response.schema, "output");
        okSchema = route.response.array
          ? { type: "array", items: ref(route.response.name) }
          : ref(route.response.name);
      }
      responses["200"] = {
        description: "Successful response",
        content: { "application/json": { schema: okSchema } },
      };
      for (const status of route.errors) {
        responses[String(status)] = {
          description: ERROR_DESCRIPTIONS[status] ?? "Error",
          content: errorContent("ErrorResponse"),
        };
      }
      responses["422"] = { description: "Validation error", content: errorContent("ValidationError") };
      responses["500"] = {
        description: "Unhandled server exception",
        content: errorContent("ErrorResponse"),
      };

      const operation: JsonObject = {
        tags: [route.tag],
        summary: route.summary,
        operationId: `${route.tag}-${route.path.slice(1)}${i === 0 ? "" : `-${method.toLowerCase()}`}`,
        responses,
      };
      if (route.query) {
        operation.parameters = route.query.map((q) => ({
          name: q.name,
          in: "query",
          required: q.required,
          schema: q.schema as Json,
        }));
      }
      if (route.request && method === "POST") {
        components.add(route.request.name, route.request.schema, "input");
        operation.requestBody = {
          required: true,
          content: { "application/json": { schema: ref(route.request.name) } },
        };
      }
      item[method.toLowerCase()] = operation;
    });
    paths[route.path] = item;
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "tdb-ts activation server",
      version,
      description:
        "TDB's activation-server protocol (camelCase fields; snake_case accepted on input). Semantic errors are 400 {message}; body-shape errors are 422 {detail, message}.",
    },
    paths,
    components: { schemas: components.schemas },
  };
}
