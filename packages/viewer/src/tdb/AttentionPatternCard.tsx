/**
 * Beyond TDB: the attention pattern of any head on the current prompt. /derived_scalars with TDB's
 * `flattened_attn_post_softmax` returns one head's lower triangle, row by row: (0,0), (1,0), (1,1), (2,0)…
 */
// biome-ignore-all lint/suspicious/noArrayIndexKey: tokens and positions are lists that may repeat.
import type { DerivedScalarsRequest } from "@tdb/attribution";
import { api } from "../api.js";
import { formatNumber, formatToken, sequentialColor } from "../format.js";
import { useAsync } from "../hooks.js";
import { Card, ErrorBox, Loading, Note } from "../ui/components.js";

export function attentionPatternRequest(prompt: string, layer: number, head: number): DerivedScalarsRequest {
  return {
    inferenceRequestSpec: { prompt },
    derivedScalarsRequestSpec: {
      specType: "derived_scalars_request_spec",
      dst: "flattened_attn_post_softmax",
      layerIndex: layer,
      activationIndex: head,
      passType: "forward",
    },
  };
}

/** Lower-triangle list → rows: row t holds the attention from t to 0..t. */
export function unflattenLowerTriangle(values: readonly number[]): number[][] {
  const rows: number[][] = [];
  let k = 0;
  for (let t = 0; k < values.length; t++) {
    rows.push(values.slice(k, k + t + 1));
    k += t + 1;
  }
  return rows;
}

export function AttentionPatternCard({
  nLayers,
  prompt,
  head,
  suggested,
  onHead,
}: {
  nLayers: number | null;
  prompt: string;
  head: { layer: number; head: number } | null;
  suggested: { layer: number; head: number } | null;
  onHead: (head: { layer: number; head: number }) => void;
}) {
  const chosen = head ?? suggested ?? { layer: 0, head: 0 };
  const key = JSON.stringify([prompt, chosen.layer, chosen.head]);
  const pattern = useAsync(key, (signal) =>
    api.derivedScalars(attentionPatternRequest(prompt, chosen.layer, chosen.head), signal),
  );
  const request = attentionPatternRequest(prompt, chosen.layer, chosen.head);
  return (
    <Card
      title="Attention pattern"
      className="attention-card"
      json={() => ({ request, response: pattern.status === "ready" ? pattern.data : null })}
    >
      <div className="row gap small wrap">
        <label>
          Layer{" "}
          <select value={chosen.layer} onChange={(e) => onHead({ ...chosen, layer: Number(e.target.value) })}>
            {Array.from({ length: nLayers ?? chosen.layer + 1 }, (_, l) => (
              <option key={l} value={l}>
                {l}
              </option>
            ))}
          </select>
        </label>
        <label>
          Head{" "}
          <input
            type="number"
            className="narrow"
            min={0}
            value={chosen.head}
            onChange={(e) => {
              const h = Number(e.target.value);
              if (Number.isInteger(h) && h >= 0) onHead({ ...chosen, head: h });
            }}
          />
        </label>
      </div>
      <p className="muted small">
        attn_L{chosen.layer}_{chosen.head}: rows attend from, columns attend to (post-softmax).
      </p>
      {pattern.status === "loading" && <Loading />}
      {pattern.status === "error" && (
        <ErrorBox title="No attention pattern" message={pattern.error.message} />
      )}
      {pattern.status === "ready" && (
        <PatternGrid
          rows={unflattenLowerTriangle(pattern.data.derivedScalarsResponseData.activations)}
          tokens={pattern.data.inferenceAndTokenData.tokensAsStrings}
        />
      )}
    </Card>
  );
}

export function PatternGrid({ rows, tokens }: { rows: number[][]; tokens: readonly string[] }) {
  if (rows.length === 0) return <Note>Empty prompt.</Note>;
  const label = (i: number) => formatToken(tokens[i] ?? "?");
  return (
    <div className="scroll-box pattern-box">
      <table className="pattern">
        <thead>
          <tr>
            <th scope="col">
              <span className="visually-hidden">from \ to</span>
            </th>
            {rows.map((_, j) => (
              <th key={j} scope="col" className="col-token mono" title={`${label(j)} (${j})`}>
                <span>{label(j)}</span>
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((row, i) => (
            <tr key={i}>
              <th scope="row" className="mono row-token">
                {label(i)} <span className="muted">{i}</span>
              </th>
              {rows.map((_, j) => {
                const value = j <= i ? row[j] : undefined;
                return (
                  <td
                    key={j}
                    className={value === undefined ? "pattern-cell masked" : "pattern-cell"}
                    style={{
                      background:
                        value === undefined ? undefined : sequentialColor(value, "37, 99, 235", 0.9),
                    }}
                    title={
                      value === undefined
                        ? undefined
                        : `${label(i)} (${i}) → ${label(j)} (${j}): ${formatNumber(value, 3)}`
                    }
                  />
                );
              })}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
