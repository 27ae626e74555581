export * from "./batched.js";
export * from "./derived.js";
export * from "./inference.js";
export * from "./least-common-tokens.js";
export * from "./select.js";
export * from "./tdb.js";
// inference.ts declares the same union; the wire schema is the source of truth.
export type { AttentionTraceType } from "./wire.js";
export * from "./wire.js";
