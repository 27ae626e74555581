/**
 * Beyond TDB: a per-layer logit lens of the residual stream at one token. For "after layer L" the
 * attention and MLP writes of every later layer are zero-ablated at that token (resid.delta_attn /
 * resid.delta_mlp), so the logits there are the final LayerNorm + unembedding of the residual after L.
 * Later tokens never feed back into an earlier one, so this is exact. One /batched sub-request per depth.
 */
// biome-ignore-all lint/suspicious/noArrayIndexKey: tokens and positions are lists that may repeat.
import type { AblationSpec, BatchedRequest, MultipleTopKDerivedScalarsResponseData } from "@tdb/attribution";
import { ApiError, api } from "../api.js";
import { formatNumber, formatToken } from "../format.js";
import { useAsync } from "../hooks.js";
import { Card, ErrorBox, Loading, Note } from "../ui/components.js";

const TOP = 8;

export function logitLensRequest(prompt: string, nLayers: number, token: number): BatchedRequest {
  const depths = Array.from({ length: nLayers + 1 }, (_, k) => k); // k = number of layers kept
  return {
    inferenceSubRequests: depths.map((kept) => {
      const ablationSpecs: AblationSpec[] = [];
      for (let layer = kept; layer < nLayers; layer++) {
        for (const activationLocationType of ["resid.delta_attn", "resid.delta_mlp"] as const) {
          ablationSpecs.push({
            index: {
              activationLocationType,
              tensorIndices: [token, "All"],
              layerIndex: layer,
              passType: "forward",
            },
            value: 0,
          });
        }
      }
      return {
        inferenceRequestSpec: { prompt, ablationSpecs },
        processingRequestSpecByName: {
          lens: {
            specType: "multiple_top_k_derived_scalars_request_spec",
            dstListByGroupId: { logits: ["logits"] },
            tokenIndex: token,
            topAndBottomK: TOP,
            passType: "forward",
            dimensionsToKeepForIntermediateSum: ["sequence_tokens", "attended_to_sequence_tokens"],
          },
        },
      };
    }),
  };
}

/**
 * One depth's top tokens. The server unions the node lists of all sub-requests (TDB's batching), so each
 * depth ranks the shared vocabulary nodes by its own values.
 */
export function lensTop(data: MultipleTopKDerivedScalarsResponseData): { token: string; logit: number }[] {
  const values = data.activationsByGroupId.logits ?? [];
  const names = data.vocabTokenStringsForIndices ?? [];
  return values
    .map((logit, i) => ({ token: names[i] ?? "?", logit }))
    .sort((a, b) => b.logit - a.logit)
    .slice(0, TOP);
}

export function LogitLensCard({
  tokens,
  nLayers,
  prompt,
  tokenIndex,
  onToken,
}: {
  tokens: readonly string[];
  nLayers: number | null;
  prompt: string;
  tokenIndex: number | null;
  onToken: (index: number) => void;
}) {
  const last = tokens.length - 1;
  const token = tokenIndex === null || tokenIndex < 0 || tokenIndex > last ? last : tokenIndex;
  // Runs on demand (N + 1 forward passes): once a token is chosen it is kept in the URL.
  const key =
    nLayers === null || last < 0 || tokenIndex === null ? null : JSON.stringify([prompt, nLayers, token]);
  const lens = useAsync(key, (signal) => api.batched(logitLensRequest(prompt, nLayers ?? 0, token), signal));
  return (
    <Card
      title="Logit lens"
      className="lens-card"
      json={() => (lens.status === "ready" ? lens.data : null)}
      actions={
        <label className="small">
          Token{" "}
          <select value={token} onChange={(e) => onToken(Number(e.target.value))}>
            {tokens.map((t, i) => (
              <option key={i} value={i}>
                {i}: {formatToken(t)}
              </option>
            ))}
          </select>
        </label>
      }
    >
      <p className="muted small">Top {TOP} next-token logits of the residual stream after each layer.</p>
      {lens.status === "idle" && (
        <button
          type="button"
          className="btn small"
          onClick={() => onToken(token)}
          disabled={nLayers === null}
        >
          Compute the logit lens at token {token}
        </button>
      )}
      {lens.status === "loading" && <Loading />}
      {lens.status === "error" &&
        (lens.error instanceof ApiError &&
        lens.error.status === 400 &&
        lens.error.message.includes("not supported") ? (
          <Note>
            This server cannot compute a logit lens: it needs forward-pass zero-ablations of resid.delta_attn
            and resid.delta_mlp at one token in /batched. ({lens.error.message})
          </Note>
        ) : (
          <ErrorBox title="No logit lens" message={lens.error.message} />
        ))}
      {lens.status === "ready" && (
        <table className="compact lens-table" aria-label={`Logit lens at token ${token}`}>
          <tbody>
            {lens.data.inferenceSubResponses.map((sub, kept) => {
              const data = sub.processingResponseDataByName.lens;
              if (data?.responseDataType !== "multiple_top_k_derived_scalars_response_data") return null;
              const top = lensTop(data);
              return (
                <tr key={kept}>
                  <th scope="row">
                    {kept === 0
                      ? "embeddings"
                      : kept === nLayers
                        ? `L${kept - 1} (output)`
                        : `after L${kept - 1}`}
                  </th>
                  <td>
                    {top.map((t, i) => (
                      <span key={i} className="pill" title={`logit ${formatNumber(t.logit, 3)}`}>
                        {formatToken(t.token)}
                      </span>
                    ))}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </Card>
  );
}
