/** Display formatting only: tokens, numbers, colours. */

/** TDB's token rendering: newline → ↵, space → ·, tab → ⇥, so leading spaces are visible. */
export function formatToken(token: string): string {
  return token.replace(/\n/g, "↵").replace(/\t/g, "⇥").replace(/ /g, "·");
}

export function formatNumber(value: number | null | undefined, digits = 2): string {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (value === 0) return (0).toFixed(digits);
  const abs = Math.abs(value);
  if (abs >= 1e5 || abs < 10 ** -digits / 2) return value.toExponential(1);
  return value.toFixed(digits);
}

/**
 * Diverging background for a value scaled by `scale` (TDB: red → white → green at alpha 0.5).
 * Returns a CSS colour; transparent for 0 or a zero scale.
 */
export function divergingColor(value: number | null | undefined, scale: number, alpha = 0.55): string {
  if (value === null || value === undefined || scale <= 0 || value === 0) return "transparent";
  const t = Math.max(-1, Math.min(1, value / scale));
  const a = (Math.abs(t) * alpha).toFixed(3);
  return t > 0 ? `rgba(34, 170, 85, ${a})` : `rgba(230, 40, 80, ${a})`;
}

/** Sequential white → colour background for a value in [0, 1]. */
export function sequentialColor(normalized: number, rgb = "34, 170, 85", alpha = 0.75): string {
  const t = Math.max(0, Math.min(1, normalized));
  return t === 0 ? "transparent" : `rgba(${rgb}, ${(t * alpha).toFixed(3)})`;
}

export function maxAbs(values: readonly number[]): number {
  let max = 0;
  for (const v of values) if (Math.abs(v) > max) max = Math.abs(v);
  return max;
}
