/**
 * Named hook points of the GPT-2 forward pass. Names follow TDB's ActivationLocationType values, so the
 * attribution code maps 1:1 onto the spec. Shapes are for one sequence of T tokens:
 * d = n_embd, H = n_head, Dh = d / H, F = n_inner, V = vocabulary, R = number of logit rows computed.
 */
export const HOOK_POINTS = [
  "resid.post_emb", // [T, d]                       layer null
  "attn_ln.scale", // [T]   sqrt(var + eps) of ln_1
  "resid.post_attn_ln", // [T, d]
  "attn.q", // [T, H, Dh]  scaled by Dh^-1/4 (so q·k is the attention logit)
  "attn.k", // [T, H, Dh]  scaled by Dh^-1/4
  "attn.v", // [T, H, Dh]
  "attn.qk_logits", // [T, T, H]   query, key, head; -Infinity above the diagonal
  "attn.qk_probs", // [T, T, H]
  "attn.v_out", // [T, H, Dh]  before the output projection
  "resid.delta_attn", // [T, d]
  "resid.post_attn", // [T, d]
  "mlp_ln.scale", // [T]
  "resid.post_mlp_ln", // [T, d]
  "mlp.pre_act", // [T, F]
  "mlp.post_act", // [T, F]
  "resid.delta_mlp", // [T, d]
  "resid.post_mlp", // [T, d]
  "resid.ln_f.scale", // [T]                        layer null
  "resid.post_ln_f", // [T, d]                      layer null
  "logits", // [R, V]                                layer null; rows = ForwardResult.logitRows
] as const;

export type HookPoint = (typeof HOOK_POINTS)[number];

/** Points outside the layer stack carry layer null. */
export const GLOBAL_HOOK_POINTS: ReadonlySet<HookPoint> = new Set([
  "resid.post_emb",
  "resid.ln_f.scale",
  "resid.post_ln_f",
  "logits",
]);

export interface HookSite {
  point: HookPoint;
  layer: number | null;
  shape: readonly number[];
}

/**
 * What a forward hook may do to a value: replace it (same length), and say how a gradient with respect to the
 * replacement maps back to the original (default: identity, which is right for in-place reads or edits that
 * keep the dependency; zero-ablation must zero the gradient of the ablated entries).
 */
export interface HookEdit {
  value: Float32Array;
  backward?: (gradOfReplacement: Float32Array) => Float32Array;
  /**
   * A "late" edit (TDB's fwd2 stage, where autoencoders are spliced in) happens after the site's value is
   * cached and after the point where its gradient is recorded: the cache and the recorded gradient refer to
   * the value before it. Once a site has a late edit, the edits after it are late too.
   */
  late?: boolean;
}

/** Called at every hook site in order; return an edit to replace the value, or nothing to leave it. */
export type ForwardHook = (value: Float32Array, site: HookSite) => HookEdit | undefined;

export function hookKey(point: HookPoint, layer: number | null): string {
  return layer === null ? point : `${point}@${layer}`;
}

export function isHookPoint(name: string): name is HookPoint {
  return (HOOK_POINTS as readonly string[]).includes(name);
}
