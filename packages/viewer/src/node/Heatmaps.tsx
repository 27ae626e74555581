/** Token heatmaps: 1-D (a scalar per token, N6) and 2-D (token pairs with hover, N7). */
// biome-ignore-all lint/suspicious/noArrayIndexKey: tokens and positions are lists that may repeat.
import type { TokenAndAttentionScalars } from "@tdb/attribution";
import { type KeyboardEvent, useState } from "react";
import { formatNumber, formatToken, sequentialColor } from "../format.js";

export interface HeatToken {
  token: string;
  scalar: number;
  /** In [0, 1] (negative values get no colour). */
  normalized: number;
}

export function TokenHeatmap({ tokens, label }: { tokens: readonly HeatToken[]; label?: string }) {
  return (
    <div className="heat-text mono" title={label}>
      {tokens.map((t, i) => (
        <span
          key={i}
          className="heat-tok"
          style={{ background: sequentialColor(t.normalized) }}
          title={`Activation: ${formatNumber(t.scalar, 3)}  Index: ${i}`}
        >
          {formatToken(t.token)}
        </span>
      ))}
    </div>
  );
}

/** Subtractive mix of white→magenta (in) and white→cyan (out), TDB's colouring. */
function pairColor(colorIn: number, colorOut: number): string {
  const a = Math.max(0, Math.min(1, colorIn));
  const b = Math.max(0, Math.min(1, colorOut));
  // magenta removes green, cyan removes red.
  const r = Math.round(255 * (1 - 0.6 * b));
  const g = Math.round(255 * (1 - 0.6 * a));
  return a === 0 && b === 0 ? "transparent" : `rgb(${r}, ${g}, 255)`;
}

/**
 * A token-pair heatmap. At rest each token shows its strongest incoming (magenta) and outgoing (cyan)
 * value. Hovering or selecting token k (arrow keys when focused) shows attention to k from every later
 * token, and k's own outgoing total.
 */
export function TokenHeatmap2d({
  tokens,
  label,
}: {
  tokens: readonly TokenAndAttentionScalars[];
  label?: string;
}) {
  const [active, setActive] = useState<number | null>(null);
  const onKey = (event: KeyboardEvent) => {
    if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
      event.preventDefault();
      event.stopPropagation();
      const delta = event.key === "ArrowRight" ? 1 : -1;
      setActive((a) =>
        Math.max(0, Math.min(tokens.length - 1, (a ?? (delta > 0 ? -1 : tokens.length)) + delta)),
      );
    } else if (event.key === "Escape") {
      setActive(null);
    }
  };
  const describe =
    active === null
      ? ""
      : `${formatToken(tokens[active]?.token ?? "")} (${active}): attended to by later tokens (magenta); its own outgoing total ${formatNumber(tokens[active]?.totalScalarOut, 3)}.`;
  return (
    <div className="heat-2d">
      <div
        className="heat-text mono"
        tabIndex={0}
        role="slider"
        aria-label={`${label ?? "Token-pair heatmap"}: the token to inspect (arrow keys)`}
        aria-valuemin={0}
        aria-valuemax={Math.max(0, tokens.length - 1)}
        aria-valuenow={active ?? 0}
        aria-valuetext={active === null ? "none" : `${formatToken(tokens[active]?.token ?? "")} (${active})`}
        data-own-arrows="true"
        onKeyDown={onKey}
        onBlur={() => setActive(null)}
        onMouseLeave={() => setActive(null)}
      >
        {tokens.map((t, i) => {
          let colorIn = t.normalizedMaxScalarIn;
          let colorOut = t.normalizedMaxScalarOut;
          if (active !== null) {
            colorIn = i >= active ? (t.normalizedScalars[active] ?? 0) : 0;
            colorOut = i === active ? t.normalizedTotalScalarOut : 0;
          }
          const scalarsFrom = tokens
            .slice(i)
            .map((later) => later.scalars[i])
            .filter((v): v is number => v !== undefined)
            .map((v) => formatNumber(v, 2));
          return (
            // biome-ignore lint/a11y/noStaticElementInteractions: hover mirrors the slider's arrow keys.
            <span
              key={i}
              className={`heat-tok pair ${active === i ? "active" : ""}`}
              style={{ background: pairColor(colorIn, colorOut) }}
              onMouseEnter={() => setActive(i)}
              title={`Scalar: ${scalarsFrom.join(", ")}`}
            >
              {formatToken(t.token)}
            </span>
          );
        })}
      </div>
      <div className="muted small heat-2d-status" aria-live="polite">
        {describe}
      </div>
    </div>
  );
}
