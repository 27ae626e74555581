/** Display formatting only: tokens, numbers, colours. */

/** TDB's token rendering: newline → ↵, space → ·, tab → ⇥, so leading spaces are visible. */
export function formatToken(token: string): string {
  return token.replace(/\n/g, "↵").replace(/\t/g, "⇥").replace(/ /g, "·");
}

/** Fixed decimals like TDB's grids; "-0.00" reads as "0.00"; huge values switch to exponents. */
export function formatNumber(value: number | null | undefined, digits = 2): string {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (Math.abs(value) >= 1e6) return value.toExponential(2);
  const text = value.toFixed(digits);
  return /^-0\.?0*$/.test(text) ? text.slice(1) : text;
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
