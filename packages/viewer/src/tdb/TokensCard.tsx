/** Token table (T14) with the token-effect heatmap rows (T13) aligned under it. */
import { divergingColor, formatNumber, formatToken, maxAbs } from "../format.js";
import { Card } from "../ui/components.js";
import type { TokenEffectRow } from "./results.js";
import type { PairingMode } from "./state.js";

interface Side {
  name: string;
  tokens: readonly string[];
  effects: TokenEffectRow[];
}

export function TokensCard({
  sides,
  mode,
  showEffects,
  tokenOfInterest,
  json,
}: {
  sides: Side[];
  mode: PairingMode;
  showEffects: boolean;
  tokenOfInterest: number;
  json: () => unknown;
}) {
  const length = Math.max(...sides.map((s) => s.tokens.length));
  const indices = Array.from({ length }, (_, i) => i);
  const compare = mode === "compare" && sides.length > 1;
  const differs = (i: number) => compare && sides[0].tokens[i] !== sides[1].tokens[i];
  return (
    <Card
      title={showEffects ? "Tokens and estimated total effect" : "Tokens"}
      className="tokens-card"
      json={json}
    >
      <div className="scroll-x">
        <table className="token-table">
          <tbody>
            {(compare ? sides : sides.slice(0, 1)).map((side) => (
              <tr key={`tokens-${side.name}`}>
                <th scope="row">{compare ? `${side.name} token` : "Token"}</th>
                {indices.map((i) => (
                  <td key={i} className={`mono tok-cell ${i === tokenOfInterest ? "of-interest" : ""}`}>
                    {formatToken(side.tokens[i] ?? "")}
                  </td>
                ))}
              </tr>
            ))}
            <tr>
              <th scope="row">Index</th>
              {indices.map((i) => (
                <td
                  key={i}
                  className={`index-cell ${differs(i) ? "mismatch" : ""}`}
                  title={differs(i) ? "The prompts differ at this token" : undefined}
                >
                  {i}
                </td>
              ))}
            </tr>
            {showEffects &&
              sides.map((side) =>
                side.effects.map((row) => {
                  const scale = maxAbs(row.values);
                  const label = sides.length > 1 ? `${side.name}: ${row.label}` : row.label;
                  return (
                    <tr key={`${side.name}-${row.label}`} className="effect-row">
                      <th
                        scope="row"
                        title="Estimated total effect (activation × gradient), summed per token"
                      >
                        {label}
                      </th>
                      {indices.map((i) => (
                        <td
                          key={i}
                          className="mono heat-cell"
                          style={{ background: divergingColor(row.values[i], scale, 0.7) }}
                          title={`${label}\nEstimated total effect: ${formatNumber(row.values[i], 3)}\nIndex: ${i}`}
                        >
                          {formatNumber(row.values[i], 2)}
                        </td>
                      ))}
                    </tr>
                  );
                }),
              )}
          </tbody>
        </table>
      </div>
    </Card>
  );
}
