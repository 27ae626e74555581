export { type ChosenGemm, fastestGemm } from "./choose.js";
export {
  DEFAULT_PREPACK_BYTES,
  NATIVE_ADDON_PATH,
  type NativeGemm,
  type NativeGemmOptions,
  nativeGemm,
  nativeGemmStatus,
  prepackedBytes,
} from "./native.js";
export {
  DEFAULT_MIN_FLOPS,
  type ThreadedGemm,
  type ThreadedGemmOptions,
  threadedGemm,
} from "./threaded.js";
