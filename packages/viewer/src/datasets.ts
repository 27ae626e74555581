/** Which stored dataset and DST a node is read from (TDB's `getDerivedScalarType`, `getDatasetNameBasedOnNodeType`). */
import type { DerivedScalarType, NeuronDatasetMetadata, NodeType } from "@tdb/attribution";

/** DST of the stored records (offline) or of a live forward pass (online) for a node type. */
export function derivedScalarTypeFor(nodeType: string, online: boolean): DerivedScalarType | null {
  switch (nodeType) {
    case "mlp_neuron":
      return "mlp_post_act";
    case "autoencoder_latent":
      return online ? "online_autoencoder_latent" : "autoencoder_latent";
    case "mlp_autoencoder_latent":
      return online ? "online_mlp_autoencoder_latent" : "mlp_autoencoder_latent";
    case "attention_autoencoder_latent":
      return online ? "online_attention_autoencoder_latent" : "attention_autoencoder_latent";
    case "attention_head":
    case "attn_write_norm":
      return online ? "unflattened_attn_write_norm" : "attn_write_norm";
    case "autoencoder_latent_by_token_pair":
      return online
        ? "attn_write_to_latent_summed_over_heads"
        : "flattened_attn_write_to_latent_summed_over_heads";
    case "residual_stream_channel":
      return "resid_post_mlp";
    default:
      return null;
  }
}

/** URL node-type segment → wire NodeType (TDB accepts `attn_write_norm` as a head alias). */
export function nodeTypeFromSegment(segment: string): NodeType | null {
  const known: readonly string[] = [
    "attention_head",
    "mlp_neuron",
    "autoencoder_latent",
    "mlp_autoencoder_latent",
    "attention_autoencoder_latent",
    "autoencoder_latent_by_token_pair",
    "residual_stream_channel",
  ];
  if (segment === "attn_write_norm") return "attention_head";
  return known.includes(segment) ? (segment as NodeType) : null;
}

/** Per-token nodes have 1-D activations; heads and latent-by-pair nodes have token-pair activations. */
export function isTokenPairNode(nodeType: string): boolean {
  return nodeType === "attention_head" || nodeType === "autoencoder_latent_by_token_pair";
}

/** TDB's metadata DST → node type (`dstStringToNodeType`), for the welcome page's dataset links. */
export function nodeTypeForDatasetDst(dst: string): NodeType | null {
  switch (dst) {
    case "autoencoder_latent":
    case "online_autoencoder_latent":
      return "autoencoder_latent";
    case "mlp_autoencoder_latent":
      return "mlp_autoencoder_latent";
    case "attention_autoencoder_latent":
      return "attention_autoencoder_latent";
    case "mlp_post_act":
      return "mlp_neuron";
    case "attn_write_norm":
      return "attention_head";
    case "flattened_attn_write_to_latent_summed_over_heads":
    case "flattened_attn_write_to_latent_summed_over_heads_batched":
      return "autoencoder_latent_by_token_pair";
    default:
      return null;
  }
}

/**
 * Dataset names to try for a node: datasets the server lists for this node type first, then TDB's
 * rule on the URL's model segment (`gpt2-small_ae-…` → the model or autoencoder part).
 */
export function datasetNamesFor(
  nodeType: string,
  modelSegment: string,
  metadata: readonly NeuronDatasetMetadata[] | null,
): string[] {
  const names: string[] = [];
  for (const d of metadata ?? []) {
    if (nodeTypeForDatasetDst(d.derivedScalarType) === nodeType) names.push(d.shortName);
  }
  const parts = modelSegment.split("_");
  const model = parts[0];
  if (nodeType.includes("autoencoder_latent")) {
    const isAttn =
      nodeType === "attention_autoencoder_latent" || nodeType === "autoencoder_latent_by_token_pair";
    const ae = parts
      .slice(1)
      .find((p) =>
        isAttn ? p.includes("resid-delta-attn") : p.includes("resid-delta-mlp") || p.includes("mlp-post-act"),
      );
    if (ae) names.push(`${model}_${ae}`);
  }
  names.push(model);
  return [...new Set(names)];
}
