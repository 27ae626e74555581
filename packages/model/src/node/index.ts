export * from "./autoencoders.js";
export * from "./hf-folder.js";
export * from "./hub.js";
export * from "./load.js";
