export {};
export * from "./hf-folder.js";
export * from "./hub.js";
