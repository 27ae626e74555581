export * from "./gpt2.js";
export * from "./hooks.js";
export * from "./random.js";
export * from "./tokenizer.js";
