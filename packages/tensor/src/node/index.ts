export {
  DEFAULT_MIN_FLOPS,
  type ThreadedGemm,
  type ThreadedGemmOptions,
  threadedGemm,
} from "./threaded.js";
