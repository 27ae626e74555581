/** Request validation with the wire schemas of @tdb/attribution: body-shape errors are 422, as in FastAPI. */
import { type ValidationDetail, validationError } from "./http.js";

export interface SchemaIssue {
  readonly path: readonly PropertyKey[];
  readonly message: string;
  readonly code?: string;
}

/** The part of a zod schema the server uses (validation and JSON Schema for /openapi.json). */
export interface WireSchema<T> {
  safeParse(
    input: unknown,
  ): { success: true; data: T } | { success: false; error: { issues: readonly SchemaIssue[] } };
  toJSONSchema(params: { io: "input" | "output" }): object;
}

/** Deepest nesting of arrays/objects, measured without recursion (stops counting at `limit + 1`). */
export function nestingDepth(value: unknown, limit: number): number {
  let deepest = 0;
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [item, depth] = stack.pop()!;
    if (typeof item !== "object" || item === null) continue;
    deepest = Math.max(deepest, depth);
    if (deepest > limit) return deepest;
    for (const child of Array.isArray(item) ? item : Object.values(item)) {
      if (typeof child === "object" && child !== null) stack.push([child, depth + 1]);
    }
  }
  return deepest;
}

function locOf(path: readonly PropertyKey[]): (string | number)[] {
  return ["body", ...path.map((p) => (typeof p === "number" ? p : String(p)))];
}

export function validate<T>(schema: WireSchema<T>, body: unknown, maxNesting: number): T {
  if (nestingDepth(body, maxNesting) > maxNesting) {
    throw validationError("Invalid request body", [
      { loc: ["body"], msg: `nested more than ${maxNesting} levels deep`, type: "too_deep" },
    ]);
  }
  let result: ReturnType<WireSchema<T>["safeParse"]>;
  try {
    result = schema.safeParse(body);
  } catch (error) {
    // A schema that overflows the stack on some input is still the client's malformed body.
    if (error instanceof RangeError) {
      throw validationError("Invalid request body", [
        { loc: ["body"], msg: "the body is too deeply nested to validate", type: "too_deep" },
      ]);
    }
    throw error;
  }
  if (result.success) return result.data;
  const detail: ValidationDetail[] = result.error.issues.map((issue) => ({
    loc: locOf(issue.path),
    msg: issue.message,
    type: issue.code ?? "invalid",
  }));
  throw validationError("Invalid request body", detail);
}
