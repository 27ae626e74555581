/** The TDB page (`/:model/tdb_alpha`): state in the URL, one /batched_tdb call per change. */
import type {
  AttentionTraceType,
  BatchedResponse,
  InferenceResponseAndResponseDict,
  MirroredNodeIndexOut,
  NeuronDatasetMetadata,
} from "@tdb/attribution";
import { useCallback, useEffect, useLayoutEffect, useMemo, useRef, useState } from "react";
import { ApiError, api } from "../api.js";
import { datasetNamesFor } from "../datasets.js";
import { useAsync, useModelInfo } from "../hooks.js";
import { navigate, useLocation } from "../router.js";
import { ErrorBox, Loading } from "../ui/components.js";
import { AttentionPatternCard } from "./AttentionPatternCard.js";
import { type ExplainTarget, explanationKey, useExplanations } from "./explanations.js";
import { InvestigationCard } from "./InvestigationCard.js";
import { LogitLensCard } from "./LogitLensCard.js";
import { LogitsCard } from "./LogitsCard.js";
import { NodeTable } from "./NodeTable.js";
import { PromptCard } from "./PromptCard.js";
import { buildLogits, buildNodeRows, buildTokenEffect, type NodeRow } from "./results.js";
import {
  buildBatchedTdbRequest,
  type PairingMode,
  type PromptParams,
  pairingMode,
  searchFromState,
  stateFromSearch,
  type TdbState,
  withAblation,
  withDownstreamTrace,
  withTrace,
} from "./state.js";
import { TokensCard } from "./TokensCard.js";

interface Result {
  seq: number;
  response: BatchedResponse;
  /** The state the response answers (the URL may have moved on while loading). */
  state: TdbState;
  mode: PairingMode;
}

type Status = { kind: "loading" } | { kind: "ready" } | { kind: "error"; error: Error };

function explainHint(message: string): string | null {
  if (message.includes("wanted exactly 1 token")) {
    return 'Each target and distractor must be exactly one token of the model\'s vocabulary; most words need a leading space (" Mary").';
  }
  if (message.includes("same length"))
    return "Both prompts must have the same number of tokens to be compared.";
  return null;
}

export function TdbPage({ model }: { model: string }) {
  const location = useLocation();
  const state = useMemo(() => stateFromSearch(location.search), [location.search]);
  const modelInfo = useModelInfo();
  const metadata = useAsync<NeuronDatasetMetadata[] | null>("datasets", (signal) =>
    api.neuronDatasetsMetadata(signal).catch(() => null),
  );

  const commit = useCallback(
    (next: TdbState, replace = false) =>
      navigate(`${window.location.pathname}${searchFromState(next)}`, { replace }),
    [],
  );
  const view = useCallback((next: TdbState) => commit(next, true), [commit]);

  const request = useMemo(() => buildBatchedTdbRequest(state), [state]);
  const requestKey = JSON.stringify(request);
  const [result, setResult] = useState<Result | null>(null);
  const [status, setStatus] = useState<Status>({ kind: "loading" });
  const [retry, setRetry] = useState(0);
  const seq = useRef(0);

  // biome-ignore lint/correctness/useExhaustiveDependencies: requestKey is the request; state is read at send time.
  useEffect(() => {
    const controller = new AbortController();
    const snapshot = state;
    setStatus({ kind: "loading" });
    performance.mark("tdb-request");
    api.batchedTdb(request, controller.signal).then(
      (response) => {
        if (controller.signal.aborted) return;
        if (response.inferenceSubResponses.length !== request.subRequests.length) {
          setStatus({
            kind: "error",
            error: new Error("The server returned a different number of sub-responses."),
          });
          return;
        }
        seq.current += 1;
        setResult({ seq: seq.current, response, state: snapshot, mode: pairingMode(snapshot) });
        setStatus({ kind: "ready" });
      },
      (error: unknown) => {
        if (controller.signal.aborted) return;
        setStatus({ kind: "error", error: error instanceof Error ? error : new Error(String(error)) });
      },
    );
    return () => controller.abort();
  }, [requestKey, retry]);

  const subs = result?.response.inferenceSubResponses ?? [];
  const left: InferenceResponseAndResponseDict | undefined = subs[0];
  const right: InferenceResponseAndResponseDict | null = subs[1] ?? null;
  const mode = result?.mode ?? pairingMode(state);
  const rows = useMemo(() => (left ? buildNodeRows(left, right) : []), [left, right]);
  const tokens = left?.inferenceResponse.inferenceAndTokenData.tokensAsStrings ?? [];
  const rightTokens =
    mode === "compare" ? (right?.inferenceResponse.inferenceAndTokenData.tokensAsStrings ?? null) : null;
  const traced = result?.state.upstreamNodeToTrace;
  const tokenOfInterest = traced
    ? (traced.nodeIndex.tensorIndices[0] ?? tokens.length - 1)
    : tokens.length - 1;

  // Explanations for the rows on screen.
  const [visibleRows, setVisibleRows] = useState<NodeRow[]>([]);
  const targets = useMemo<ExplainTarget[]>(() => {
    const out = new Map<string, ExplainTarget>();
    for (const r of visibleRows.slice(0, 30)) {
      if (r.node.nodeType === "layer") continue;
      const index = r.node.tensorIndices[r.node.tensorIndices.length - 1] ?? 0;
      const nodeType =
        r.node.nodeType === "attention_autoencoder_latent" &&
        state.componentTypeForAttention === "autoencoder_latent"
          ? "autoencoder_latent_by_token_pair"
          : r.node.nodeType;
      const key = explanationKey(r.node.nodeType, r.layer, index);
      out.set(key, { key, nodeType, layer: r.layer ?? 0, index });
    }
    return [...out.values()];
  }, [visibleRows, state.componentTypeForAttention]);
  const datasetList = metadata.status === "ready" ? metadata.data : null;
  // Without datasets the explainer has nothing to read: ask only when the server lists some.
  const explanations = useExplanations(datasetList === null ? [] : targets, (nodeType) =>
    datasetNamesFor(nodeType, model, datasetList),
  );
  const explanationState =
    metadata.status === "ready" && datasetList === null
      ? { ...explanations, unavailable: explanations.unavailable ?? "The server has no neuron datasets." }
      : explanations;

  const submitPrompts = (l: PromptParams, r: PromptParams | null) => commit({ ...state, left: l, right: r });
  const onAblate = (node: MirroredNodeIndexOut) => commit(withAblation(state, node));
  const onTrace = (node: MirroredNodeIndexOut, type: AttentionTraceType | null) =>
    commit(withTrace(state, node, type));
  const onTraceInto = (node: MirroredNodeIndexOut) => commit(withDownstreamTrace(state, node));

  const suggestedHead = useMemo(() => {
    let best: NodeRow | null = null;
    for (const r of rows) {
      if (r.node.nodeType !== "attention_head") continue;
      if (!best || Math.abs(r.metrics.direction_write.left) > Math.abs(best.metrics.direction_write.left))
        best = r;
    }
    const h = best?.node.tensorIndices[2];
    return best && h !== null && h !== undefined ? { layer: best.layer ?? 0, head: h } : null;
  }, [rows]);

  // With the effect rows the token table needs the full width; without, it sits under the prompt.
  const tokensCard = result && left && status.kind !== "error" && (
    <TokensCard
      sides={[
        { name: mode === "baseline" ? "Ablated" : "Left", tokens, effects: buildTokenEffect(left) },
        ...(right
          ? [
              {
                name: mode === "baseline" ? "Baseline" : "Right",
                tokens: right.inferenceResponse.inferenceAndTokenData.tokensAsStrings,
                effects: buildTokenEffect(right),
              },
            ]
          : []),
      ]}
      mode={mode}
      showEffects={state.display.tokenEffect}
      tokenOfInterest={tokenOfInterest}
      json={() =>
        subs.map((s) => ({
          inferenceAndTokenData: s.inferenceResponse.inferenceAndTokenData,
          componentSumsForTokenDisplay: s.processingResponseDataByName.componentSumsForTokenDisplay,
        }))
      }
    />
  );

  const promptKey = JSON.stringify([state.left, state.right]);
  const info = modelInfo.status === "ready" ? modelInfo.data : null;

  return (
    <div className="page tdb-page" data-status={status.kind} data-result-seq={result?.seq ?? 0}>
      <div className="tdb-top">
        <div className="tdb-top-left">
          <PromptCard
            key={promptKey}
            left={state.left}
            right={state.right}
            busy={status.kind === "loading"}
            onSubmit={submitPrompts}
          />
          {!state.display.tokenEffect && tokensCard}
        </div>
        <InvestigationCard
          state={state}
          mode={mode}
          response={status.kind === "error" ? null : (result?.response ?? null)}
          tokens={tokens}
          modelInfo={info}
          json={() => ({ state, request, response: result?.response ?? null })}
          onChange={(next) => commit(next)}
          onView={view}
        />
      </div>
      {modelInfo.status === "error" && (
        <ErrorBox
          title="Unable to look up model info"
          message={`Is the activation server running for this page? ${modelInfo.error.message}`}
        />
      )}
      {status.kind === "error" && (
        <ErrorBox
          title={
            status.error instanceof ApiError && status.error.status === 400
              ? "The server rejected the request"
              : "The request failed"
          }
          message={[status.error.message, explainHint(status.error.message)].filter(Boolean).join("\n")}
          onRetry={
            status.error instanceof ApiError && status.error.status >= 400 && status.error.status < 500
              ? undefined
              : () => setRetry((n) => n + 1)
          }
        />
      )}
      {status.kind === "loading" && (
        <div className="loading-bar">
          <Loading label={result ? "Updating…" : "Running the model…"} />
        </div>
      )}
      {result && left && status.kind !== "error" && (
        <div
          className={`results ${status.kind === "loading" ? "stale" : ""}`}
          aria-busy={status.kind === "loading"}
        >
          <RenderTimer seq={result.seq} />
          {state.display.tokenEffect && tokensCard}

          {state.display.nodeTable && (
            <NodeTable
              rows={rows}
              mode={mode}
              tokens={tokens}
              rightTokens={rightTokens}
              state={state}
              model={model}
              tokenOfInterest={tokenOfInterest}
              explanations={explanationState}
              onVisibleRowsChange={setVisibleRows}
              onChange={(next) => commit(next)}
              onView={view}
              onAblate={onAblate}
              onTrace={onTrace}
              onTraceInto={onTraceInto}
              json={() =>
                subs.map((s) => ({
                  topKComponents: s.processingResponseDataByName.topKComponents,
                  upvotedOutputTokens: s.processingResponseDataByName.upvotedOutputTokens,
                  inputTokensThatUpvoteMlp: s.processingResponseDataByName.inputTokensThatUpvoteMlp,
                  tokenPairAttribution: s.processingResponseDataByName.tokenPairAttribution,
                }))
              }
            />
          )}
          <div className="extras-grid">
            {state.display.logits && (
              <LogitsCard
                view={buildLogits(left, right, result.state.left, result.state.right)}
                mode={mode}
                tokens={tokens}
                json={() => subs.map((s) => s.processingResponseDataByName.topOutputTokenLogits)}
              />
            )}
            <AttentionPatternCard
              nLayers={info?.nLayers ?? null}
              prompt={result.state.left.prompt}
              head={state.attentionHead}
              suggested={suggestedHead}
              onHead={(attentionHead) => view({ ...state, attentionHead })}
            />
            <LogitLensCard
              tokens={tokens}
              nLayers={info?.nLayers ?? null}
              prompt={result.state.left.prompt}
              tokenIndex={state.lensToken}
              onToken={(lensToken) => view({ ...state, lensToken })}
            />
          </div>
        </div>
      )}
    </div>
  );
}

/**
 * Measures response-received → result committed ("tdb-commit") and → first paint after it ("tdb-render").
 * Entries carry the result's sequence number in `detail`.
 */
function RenderTimer({ seq }: { seq: number }) {
  useLayoutEffect(() => {
    const received = performance.getEntriesByName("/batched_tdb:received", "mark").at(-1);
    if (!received) return;
    performance.measure("tdb-commit", { start: received.startTime, end: performance.now(), detail: { seq } });
    requestAnimationFrame(() =>
      setTimeout(() => {
        performance.measure("tdb-render", {
          start: received.startTime,
          end: performance.now(),
          detail: { seq },
        });
      }, 0),
    );
  }, [seq]);
  return null;
}
