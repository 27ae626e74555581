/** A weight file (safetensors, PyTorch zip) is malformed, truncated or uses something we refuse to load. */
export class WeightFormatError extends Error {
  override name = "WeightFormatError";
}

/** config.json describes a model family this engine does not implement (e.g. `model_type: "llama"`). */
export class UnsupportedModelError extends Error {
  override name = "UnsupportedModelError";
}

/** config.json or a state dict is a GPT-2 but has missing or invalid fields / tensors. */
export class ModelConfigError extends Error {
  override name = "ModelConfigError";
}

/** A model could not be found or fetched (local folder, hub, cache). */
export class ModelSourceError extends Error {
  override name = "ModelSourceError";
}
