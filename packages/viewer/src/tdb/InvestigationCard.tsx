/** Direction of interest, active ablations, the trace, component and display switches (T7, T9, T12, T19, T20). */
// biome-ignore-all lint/suspicious/noArrayIndexKey: tokens and positions are lists that may repeat.
import type { BatchedResponse, ModelInfoResponse } from "@tdb/attribution";
import { useState } from "react";
import { formatNumber } from "../format.js";
import { Card, TokenAt } from "../ui/components.js";
import { describeTrace, nodeName } from "./results.js";
import { type DisplayOptions, isValueTrace, type PairingMode, type TdbState } from "./state.js";

interface Props {
  state: TdbState;
  mode: PairingMode;
  response: BatchedResponse | null;
  tokens: readonly string[];
  modelInfo: ModelInfoResponse | null;
  json: () => unknown;
  onChange: (next: TdbState) => void;
  onView: (next: TdbState) => void;
}

export function InvestigationCard({
  state,
  mode,
  response,
  tokens,
  modelInfo,
  json,
  onChange,
  onView,
}: Props) {
  return (
    <Card
      title="Investigation"
      className="investigation-card"
      actions={<CopyLinkButton />}
      json={json}
      jsonTitle="The whole state: URL state, request and response"
    >
      <LossLine state={state} mode={mode} response={response} />
      {state.upstreamNodeToTrace && (
        <section className="trace-box" aria-label="Trace">
          <div className="section-label">Trace</div>
          <p>
            {describeTrace(state.upstreamNodeToTrace, tokens, state.downstreamNodeToTrace).parts.map(
              (part, i) =>
                part.strong ? <strong key={i}>{part.text}</strong> : <span key={i}>{part.text}</span>,
            )}
          </p>
          {isValueTrace(state) && !state.downstreamNodeToTrace && (
            <p className="muted small">
              To trace the value path into a later node instead, pick it with “Into” in the node table.
            </p>
          )}
          <button
            type="button"
            className="btn small"
            onClick={() => onChange({ ...state, upstreamNodeToTrace: null, downstreamNodeToTrace: null })}
          >
            Clear trace
          </button>
          {state.downstreamNodeToTrace && (
            <button
              type="button"
              className="btn small"
              onClick={() => onChange({ ...state, downstreamNodeToTrace: null })}
            >
              Back to the direction of interest
            </button>
          )}
        </section>
      )}
      {state.nodeAblations.length > 0 && (
        <section className="ablations" aria-label="Active ablations">
          <div className="section-label">Active ablations</div>
          <p className="muted small">
            {state.right
              ? "Ablations affect both prompts."
              : "Columns: Ablated = with these ablations; Baseline = the same prompt without them."}
          </p>
          <table className="compact">
            <thead>
              <tr>
                <th scope="col">Node</th>
                <th scope="col">Attended to</th>
                <th scope="col">Token</th>
                <th scope="col">Value</th>
                <th scope="col">
                  <span className="visually-hidden">Remove</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {state.nodeAblations.map((a, i) => (
                <tr key={`${nodeName(a.nodeIndex)}-${a.nodeIndex.tensorIndices.join(",")}`}>
                  <td className="mono">{nodeName(a.nodeIndex)}</td>
                  <td>
                    {a.nodeIndex.nodeType === "attention_head" ? (
                      <span
                        className="muted"
                        title="Zeroing a head ablates its whole attention row from this token"
                      >
                        all tokens
                      </span>
                    ) : (
                      <span className="muted">–</span>
                    )}
                  </td>
                  <td>
                    <TokenAt tokens={tokens} index={a.nodeIndex.tensorIndices[0]} />
                  </td>
                  <td className="num">{formatNumber(a.value)}</td>
                  <td>
                    <button
                      type="button"
                      className="btn small"
                      aria-label={`Remove ablation of ${nodeName(a.nodeIndex)}`}
                      onClick={() =>
                        onChange({ ...state, nodeAblations: state.nodeAblations.filter((_, j) => j !== i) })
                      }
                    >
                      Remove
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {state.nodeAblations.length > 1 && (
            <button
              type="button"
              className="btn small"
              onClick={() => onChange({ ...state, nodeAblations: [] })}
            >
              Remove all ablations
            </button>
          )}
        </section>
      )}
      <div className="switches">
        <div className="section-label">Components</div>
        {modelInfo?.hasMlpAutoencoder ? (
          <Switch
            label={`Use MLP autoencoder (${modelInfo.mlpAutoencoderName ?? "loaded"})`}
            help="Show MLP autoencoder latents instead of MLP neurons in the node table."
            checked={state.componentTypeForMlp === "autoencoder_latent"}
            onChange={(on) =>
              onChange({ ...state, componentTypeForMlp: on ? "autoencoder_latent" : "neuron" })
            }
          />
        ) : null}
        {modelInfo?.hasAttentionAutoencoder ? (
          <Switch
            label={`Use attention autoencoder (${modelInfo.attentionAutoencoderName ?? "loaded"})`}
            help="Show attention autoencoder latents instead of attention heads in the node table."
            checked={state.componentTypeForAttention === "autoencoder_latent"}
            onChange={(on) =>
              onChange({ ...state, componentTypeForAttention: on ? "autoencoder_latent" : "attention_head" })
            }
          />
        ) : null}
        {modelInfo && !modelInfo.hasMlpAutoencoder && !modelInfo.hasAttentionAutoencoder && (
          <p className="muted small">
            Neurons and heads ({modelInfo.modelName ?? "model"}, {modelInfo.nLayers} layers). No autoencoders
            are loaded on the server.
          </p>
        )}
        <div className="section-label">Show</div>
        <div className="row gap wrap">
          {(
            [
              ["logits", "Next-token logits"],
              ["tokenEffect", "Token effects"],
              ["nodeTable", "Node table"],
            ] as const
          ).map(([key, label]) => (
            <label key={key} className="checkbox">
              <input
                type="checkbox"
                checked={state.display[key]}
                onChange={(e) =>
                  onView({
                    ...state,
                    display: { ...state.display, [key]: e.target.checked } as DisplayOptions,
                  })
                }
              />
              {label}
            </label>
          ))}
        </div>
      </div>
    </Card>
  );
}

function Switch({
  label,
  help,
  checked,
  onChange,
}: {
  label: string;
  help: string;
  checked: boolean;
  onChange: (on: boolean) => void;
}) {
  return (
    <label className="switch" title={help}>
      <input
        type="checkbox"
        role="switch"
        aria-checked={checked}
        checked={checked}
        onChange={(e) => onChange(e.target.checked)}
      />
      <span className="switch-track" aria-hidden="true" />
      {label}
    </label>
  );
}

function CopyLinkButton() {
  const [copied, setCopied] = useState(false);
  return (
    <button
      type="button"
      className="btn small ghost"
      onClick={async () => {
        try {
          await navigator.clipboard.writeText(window.location.href);
          setCopied(true);
          window.setTimeout(() => setCopied(false), 1500);
        } catch {
          window.prompt("Copy this link", window.location.href);
        }
      }}
      title="The link reopens this investigation: prompts, tokens, ablations, trace, sort and filter"
    >
      {copied ? "Link copied" : "Copy link"}
    </button>
  );
}

function LossLine({
  state,
  mode,
  response,
}: {
  state: TdbState;
  mode: PairingMode;
  response: BatchedResponse | null;
}) {
  const data = response?.inferenceSubResponses.map((s) => s.inferenceResponse.inferenceAndTokenData) ?? [];
  const [a, b] = data;
  const tracing = state.upstreamNodeToTrace !== null;
  const traceIsAttention = state.upstreamNodeToTrace?.nodeIndex.nodeType === "attention_head";
  const names = mode === "baseline" ? (["Ablated", "Baseline"] as const) : (["Left", "Right"] as const);
  const triple = (get: (d: NonNullable<typeof a>) => number | null) => {
    if (!a) return <span className="muted">–</span>;
    if (!b) return <span className="metric-value">{formatNumber(get(a), 3)}</span>;
    const l = get(a);
    const r = get(b);
    return (
      <span className="triple">
        <span>
          {names[0]} <span className="metric-value">{formatNumber(l, 3)}</span>
        </span>
        <span>
          {names[1]} <span className="metric-value">{formatNumber(r, 3)}</span>
        </span>
        <span>
          Diff <span className="metric-value">{l !== null && r !== null ? formatNumber(l - r, 3) : "–"}</span>
        </span>
      </span>
    );
  };
  const showLoss = !tracing || a?.loss != null;
  return (
    <div className="loss-line" aria-live="polite">
      {showLoss && (
        <div>
          <div
            className="section-label"
            title="Mean target logit − mean distractor logit at the last token, after the final LayerNorm"
          >
            Direction of interest (target − distractor logit)
          </div>
          {triple((d) => d.loss)}
        </div>
      )}
      {tracing && (
        <div>
          <div className="section-label">
            {state.upstreamNodeToTrace?.attentionTraceType === "V"
              ? `Traced value-path direct effect${
                  state.downstreamNodeToTrace ? ` on ${nodeName(state.downstreamNodeToTrace.nodeIndex)}` : ""
                }`
              : `Traced ${traceIsAttention ? "QK inner product" : "pre-activation"}`}
          </div>
          {triple((d) => d.activationValueForBackwardPass)}
        </div>
      )}
    </div>
  );
}
