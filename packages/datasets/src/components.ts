/** What a collated dataset holds: groups of components of one kind in one layer. */

export type ComponentKind =
  | "mlp_neuron"
  | "attention_head"
  | "mlp_autoencoder_latent"
  | "attention_autoencoder_latent";

export const COMPONENT_KINDS: readonly ComponentKind[] = [
  "mlp_neuron",
  "attention_head",
  "mlp_autoencoder_latent",
  "attention_autoencoder_latent",
];

/** TDB's derived-scalar type whose values each kind's records hold (tdb-spec §6.1). */
export const KIND_DST: Readonly<Record<ComponentKind, string>> = {
  mlp_neuron: "mlp_post_act",
  attention_head: "attn_write_norm",
  mlp_autoencoder_latent: "mlp_autoencoder_latent",
  attention_autoencoder_latent: "attention_autoencoder_latent",
};

/** Stable small ids (they seed the random-sample hashes, so they must never change). */
export const KIND_ID: Readonly<Record<ComponentKind, number>> = {
  mlp_neuron: 1,
  attention_head: 2,
  mlp_autoencoder_latent: 3,
  attention_autoencoder_latent: 4,
};

/** Attention heads hold one value per token pair (lower triangle); every other kind one value per token. */
export function isTokenPairKind(kind: ComponentKind): boolean {
  return kind === "attention_head";
}

export function isComponentKind(value: string): value is ComponentKind {
  return (COMPONENT_KINDS as readonly string[]).includes(value);
}

/**
 * The component kind a TDB request's `dst` (or node type) refers to, or null. The generic "autoencoder_latent"
 * names need to know which autoencoders the dataset has, so they are resolved by the caller.
 */
export function kindForDst(dst: string): ComponentKind | null {
  switch (dst) {
    case "mlp_post_act":
    case "mlp_neuron":
      return "mlp_neuron";
    case "attn_write_norm":
    case "unflattened_attn_write_norm":
    case "attention_head":
      return "attention_head";
    case "mlp_autoencoder_latent":
    case "online_mlp_autoencoder_latent":
      return "mlp_autoencoder_latent";
    case "attention_autoencoder_latent":
    case "online_attention_autoencoder_latent":
      return "attention_autoencoder_latent";
    default:
      return isComponentKind(dst) ? dst : null;
  }
}

export interface GroupSpec {
  kind: ComponentKind;
  layer: number;
  /** Number of components (neurons, heads or latents) in the layer. */
  size: number;
}

/** Values one sequence of `seqLen` tokens gives each component of the kind. */
export function positionsPerSequence(kind: ComponentKind, seqLen: number): number {
  return isTokenPairKind(kind) ? (seqLen * (seqLen + 1)) / 2 : seqLen;
}
