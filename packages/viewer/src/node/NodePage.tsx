/** Node page (`/:model/:nodeType/:layer/:index`, N2–N10). */
// biome-ignore-all lint/suspicious/noArrayIndexKey: tokens and positions are lists that may repeat.
import type {
  AttentionHeadRecordResponse,
  BatchedRequest,
  NeuronDatasetMetadata,
  NeuronRecordResponse,
  NodeIdAndDatasets,
  NodeType,
  TopTokens,
} from "@tdb/attribution";
import { type KeyboardEvent, useEffect, useId, useMemo, useState } from "react";
import { api } from "../api.js";
import { datasetNamesFor, derivedScalarTypeFor, isTokenPairNode, nodeTypeFromSegment } from "../datasets.js";
import { formatNumber } from "../format.js";
import { type Async, isUnavailable, useAsync, useModelInfo } from "../hooks.js";
import { Link, navigate, useLocation } from "../router.js";
import { attentionPatternRequest, PatternGrid, unflattenLowerTriangle } from "../tdb/AttentionPatternCard.js";
import { Card, ErrorBox, Loading, Note, TokenPill } from "../ui/components.js";
import { type HeatToken, TokenHeatmap, TokenHeatmap2d } from "./Heatmaps.js";

const PROMPTS_SEPARATOR = "߷";

interface Props {
  model: string;
  nodeTypeSegment: string;
  layer: number;
  index: number;
}

export function NodePage({ model, nodeTypeSegment, layer, index }: Props) {
  const nodeType = nodeTypeFromSegment(nodeTypeSegment);
  const { search } = useLocation();
  const modelInfo = useModelInfo();
  const nLayers = modelInfo.status === "ready" ? modelInfo.data.nLayers : null;
  const metadata = useAsync<NeuronDatasetMetadata[] | null>("datasets", (signal) =>
    api.neuronDatasetsMetadata(signal).catch(() => null),
  );

  const go = (l: number, i: number) =>
    navigate(`/${encodeURIComponent(model)}/${nodeTypeSegment}/${l}/${i}${search}`);
  const canPrevLayer = layer > 0;
  const canNextLayer = nLayers === null || layer < nLayers - 1;
  useEffect(() => {
    const onKey = (event: globalThis.KeyboardEvent) => {
      const target = event.target as HTMLElement | null;
      if (event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
      if (target?.closest("input, textarea, select, [contenteditable], [data-own-arrows], dialog")) return;
      if (event.key === "ArrowLeft" && index > 0) go(layer, index - 1);
      else if (event.key === "ArrowRight") go(layer, index + 1);
      else if (event.key === "ArrowUp" && canNextLayer) go(layer + 1, index);
      else if (event.key === "ArrowDown" && canPrevLayer) go(layer - 1, index);
      else return;
      event.preventDefault();
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  });

  if (!nodeType) {
    return (
      <div className="page">
        <ErrorBox
          title="Unknown node type"
          message={`"${nodeTypeSegment}" is not a node type this viewer knows.`}
        />
      </div>
    );
  }
  const datasets = datasetNamesFor(nodeType, model, metadata.status === "ready" ? metadata.data : null);
  const offlineDst = derivedScalarTypeFor(nodeType, false);
  const nodeId: NodeIdAndDatasets | null = offlineDst
    ? { dst: offlineDst, layerIndex: layer, activationIndex: index, datasets }
    : null;
  const prompts =
    new URLSearchParams(search)
      .get("promptsOfInterest")
      ?.split(PROMPTS_SEPARATOR)
      .filter((p) => p !== "") ?? [];
  const base = `/${encodeURIComponent(model)}/${nodeTypeSegment}`;
  const title = nodeTitle(nodeType, layer, index);

  return (
    <div className="page node-page" data-node-type={nodeType}>
      <nav className="node-nav" aria-label="Neighbouring components">
        <Link href="/">Home</Link>
        <Link
          href={`${base}/${layer}/${Math.max(0, index - 1)}${search}`}
          aria-disabled={index === 0}
          className={index === 0 ? "disabled" : undefined}
        >
          ← Previous node
        </Link>
        <Link href={`${base}/${layer}/${index + 1}${search}`}>Next node →</Link>
        <Link
          href={`${base}/${Math.max(0, layer - 1)}/${index}${search}`}
          className={canPrevLayer ? undefined : "disabled"}
          aria-disabled={!canPrevLayer}
        >
          ↓ Previous layer
        </Link>
        <Link
          href={`${base}/${canNextLayer ? layer + 1 : layer}/${index}${search}`}
          className={canNextLayer ? undefined : "disabled"}
          aria-disabled={!canNextLayer}
        >
          ↑ Next layer
        </Link>
        <span className="muted small">arrow keys work too</span>
      </nav>
      <h1>
        {title}{" "}
        <span className="muted mono small">
          {layer}:{index}
        </span>
      </h1>
      {nLayers !== null && layer >= nLayers && (
        <ErrorBox title="No such layer" message={`This model has ${nLayers} layers (0–${nLayers - 1}).`} />
      )}
      {metadata.status === "loading" && <Loading label="Looking up datasets…" />}
      {nodeId && metadata.status !== "loading" && (
        <Body
          key={`${layer}/${index}`}
          nodeType={nodeType}
          layer={layer}
          index={index}
          nodeId={nodeId}
          prompts={prompts}
        />
      )}
    </div>
  );
}

function nodeTitle(nodeType: NodeType, layer: number, index: number): string {
  switch (nodeType) {
    case "attention_head":
      return `Attention head attn_L${layer}_${index}`;
    case "mlp_neuron":
      return `MLP neuron mlp_L${layer}_${index}`;
    case "mlp_autoencoder_latent":
      return `MLP autoencoder latent mlp_ae_L${layer}_${index}`;
    case "attention_autoencoder_latent":
      return `Attention autoencoder latent attn_ae_L${layer}_${index}`;
    default:
      return `${nodeType.replace(/_/g, " ")} L${layer} #${index}`;
  }
}

type AnyRecord =
  | { kind: "tokens"; data: NeuronRecordResponse }
  | { kind: "pairs"; data: AttentionHeadRecordResponse };

function Body({
  nodeType,
  layer,
  index,
  nodeId,
  prompts,
}: {
  nodeType: NodeType;
  layer: number;
  index: number;
  nodeId: NodeIdAndDatasets;
  prompts: string[];
}) {
  const pairs = isTokenPairNode(nodeType);
  const record = useAsync<AnyRecord>(JSON.stringify(nodeId), async (signal) =>
    pairs
      ? { kind: "pairs", data: await api.attentionHeadRecord(nodeId, signal) }
      : { kind: "tokens", data: await api.neuronRecord(nodeId, signal) },
  );
  const [extraPrompts, setExtraPrompts] = useState<string[]>([]);
  const [scored, setScored] = useState<string[]>([]);
  const recordReady = record.status === "ready" || record.status === "error";
  const normalizeWith = record.status === "ready" ? nodeId : null;
  return (
    <>
      {(prompts.length > 0 || extraPrompts.length > 0) && (
        <Card title="Activations on prompts">
          {!recordReady && <Loading label="Looking for the dataset record…" />}
          {recordReady &&
            [...prompts, ...extraPrompts].map((p, i) => (
              <ActivationsForPrompt
                key={`${i}-${p}`}
                prompt={p}
                nodeType={nodeType}
                layer={layer}
                index={index}
                normalizeWith={normalizeWith}
              />
            ))}
        </Card>
      )}
      <Interact
        perToken={!pairs}
        onPrompt={(p) => setExtraPrompts((list) => [...list, p])}
        onExplanation={(e) => setScored((list) => [...list, e])}
      />
      {scored.length > 0 && (
        <Card title="Scored explanations">
          {scored.map((e, i) => (
            <ScoreExplanation key={i} explanation={e} nodeId={nodeId} />
          ))}
        </Card>
      )}
      <ExplanationsPane nodeId={nodeId} />
      <DatasetExamples record={record} />
      <LogitLensPane nodeType={nodeType} layer={layer} index={index} />
    </>
  );
}

function Interact({
  perToken,
  onPrompt,
  onExplanation,
}: {
  perToken: boolean;
  onPrompt: (p: string) => void;
  onExplanation: (e: string) => void;
}) {
  const id = useId();
  const [tool, setTool] = useState<"prompt" | "score">("prompt");
  const [text, setText] = useState("");
  const run = () => {
    if (text.trim() === "") return;
    if (tool === "prompt") onPrompt(text);
    else onExplanation(text);
    setText("");
  };
  const onKey = (event: KeyboardEvent) => {
    if (event.key === "Enter" && (event.metaKey || event.ctrlKey)) {
      event.preventDefault();
      run();
    }
  };
  return (
    <Card title="Interact with the model">
      <div className="row gap" role="radiogroup" aria-label="Tool">
        <label className="checkbox">
          <input
            type="radio"
            name={`${id}-tool`}
            checked={tool === "prompt"}
            onChange={() => setTool("prompt")}
          />
          Get activations for a prompt
        </label>
        {perToken && (
          <label className="checkbox">
            <input
              type="radio"
              name={`${id}-tool`}
              checked={tool === "score"}
              onChange={() => setTool("score")}
            />
            Score an explanation
          </label>
        )}
      </div>
      <label htmlFor={`${id}-text`} className="visually-hidden">
        {tool === "prompt" ? "Prompt" : "Explanation"}
      </label>
      <textarea
        id={`${id}-text`}
        className="prompt-input mono"
        rows={2}
        placeholder={
          tool === "prompt" ? "Type a prompt; Ctrl+Enter to run" : "Type an explanation; Ctrl+Enter to score"
        }
        value={text}
        onChange={(e) => setText(e.target.value)}
        onKeyDown={onKey}
      />
      <button type="button" className="btn primary" onClick={run} disabled={text.trim() === ""}>
        {tool === "prompt" ? "Get activations" : "Score"}
      </button>
    </Card>
  );
}

function ActivationsForPrompt({
  prompt,
  nodeType,
  layer,
  index,
  normalizeWith,
}: {
  prompt: string;
  nodeType: NodeType;
  layer: number;
  index: number;
  normalizeWith: NodeIdAndDatasets | null;
}) {
  const pairs = isTokenPairNode(nodeType);
  const dst = derivedScalarTypeFor(nodeType, true);
  const key = JSON.stringify([prompt, nodeType, layer, index, normalizeWith]);
  const result = useAsync(dst ? key : null, async (signal) => {
    if (!dst) throw new Error("unsupported node type");
    if (pairs) {
      const response = await api.derivedAttentionScalars(
        {
          inferenceRequestSpec: {
            prompt,
            activationIndexForWithinLayerGrad:
              nodeType === "autoencoder_latent_by_token_pair"
                ? {
                    activationLocationType: "online_autoencoder_latent",
                    tensorIndices: ["All", index],
                    layerIndex: layer,
                    passType: "forward",
                  }
                : null,
          },
          derivedAttentionScalarsRequestSpec: {
            specType: "derived_attention_scalars_request_spec",
            dst,
            layerIndex: layer,
            activationIndex: index,
            normalizeActivationsUsingNeuronRecord: normalizeWith,
          },
        },
        signal,
      );
      return { kind: "pairs" as const, response };
    }
    const response = await api.derivedScalars(
      {
        inferenceRequestSpec: { prompt },
        derivedScalarsRequestSpec: {
          specType: "derived_scalars_request_spec",
          dst,
          layerIndex: layer,
          activationIndex: index,
          normalizeActivationsUsingNeuronRecord: normalizeWith,
          passType: "forward",
        },
      },
      signal,
    );
    return { kind: "tokens" as const, response };
  });
  return (
    <div className="prompt-activations">
      {result.status === "loading" && <Loading label="Running the model…" />}
      {result.status === "error" && <ErrorBox title="Failed to load data" message={result.error.message} />}
      {result.status === "ready" && result.data.kind === "tokens" && (
        <PerTokenActivations
          tokens={result.data.response.inferenceAndTokenData.tokensAsStrings}
          activations={result.data.response.derivedScalarsResponseData.activations}
          normalized={result.data.response.derivedScalarsResponseData.normalizedActivations}
        />
      )}
      {result.status === "ready" && result.data.kind === "pairs" && (
        <TokenHeatmap2d
          tokens={result.data.response.derivedAttentionScalarsResponseData.tokenAndAttentionScalarsList}
          label={`Token pairs for: ${prompt}`}
        />
      )}
      {nodeType === "attention_head" && <HeadPattern prompt={prompt} layer={layer} head={index} />}
    </div>
  );
}

/** Beyond TDB: the head's attention pattern (post-softmax) on the same prompt. */
function HeadPattern({ prompt, layer, head }: { prompt: string; layer: number; head: number }) {
  const [open, setOpen] = useState(false);
  const pattern = useAsync(open ? JSON.stringify([prompt, layer, head]) : null, (signal) =>
    api.derivedScalars(attentionPatternRequest(prompt, layer, head), signal),
  );
  return (
    <details className="head-pattern" onToggle={(e) => setOpen((e.target as HTMLDetailsElement).open)}>
      <summary>Attention pattern on this prompt</summary>
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
    </details>
  );
}

function PerTokenActivations({
  tokens,
  activations,
  normalized,
}: {
  tokens: string[];
  activations: number[];
  normalized: number[] | null;
}) {
  // Without a dataset record the server sends no normalisation; colours then scale to this prompt's max.
  const max = Math.max(0, ...activations);
  const heat: HeatToken[] = tokens.map((token, i) => ({
    token,
    scalar: activations[i] ?? 0,
    normalized: normalized ? (normalized[i] ?? 0) : max > 0 ? Math.max(0, (activations[i] ?? 0) / max) : 0,
  }));
  return (
    <div>
      <TokenHeatmap tokens={heat} />
      <div className="muted small">
        max {formatNumber(Math.max(...activations), 3)}, min {formatNumber(Math.min(...activations), 3)}
        {normalized
          ? " · colours relative to the dataset's max activation"
          : " · colours relative to this prompt's max"}
      </div>
    </div>
  );
}

function ScoreExplanation({ explanation, nodeId }: { explanation: string; nodeId: NodeIdAndDatasets }) {
  const result = useAsync(JSON.stringify([explanation, nodeId]), (signal) =>
    api.score({ ...nodeId, explanation, maxSequences: 2 }, signal),
  );
  return (
    <div className="scored">
      <span className="pill">{explanation}</span>{" "}
      {result.status === "loading" && <Loading label="Scoring…" />}
      {result.status === "ready" && (
        <span>
          score <strong>{formatNumber(result.data.score, 2)}</strong>
        </span>
      )}
      {result.status === "error" && <span className="field-error">{result.error.message}</span>}
    </div>
  );
}

function ExplanationsPane({ nodeId }: { nodeId: NodeIdAndDatasets }) {
  const { search } = useLocation();
  const explanationDatasets = new URLSearchParams(search)
    .get("explanation_datasets")
    ?.split(",")
    .filter(Boolean);
  const request = {
    dst: nodeId.dst,
    layerIndex: nodeId.layerIndex,
    activationIndex: nodeId.activationIndex,
    explanationDatasets: explanationDatasets ?? [],
    neuronDataset: explanationDatasets ? null : (nodeId.datasets[0] ?? null),
  };
  const result = useAsync(JSON.stringify(request), (signal) => api.existingExplanations(request, signal));
  return (
    <Card title="Explanations" json={() => (result.status === "ready" ? result.data : null)}>
      {result.status === "loading" && <Loading />}
      {result.status === "error" &&
        (isUnavailable(result.error) ? (
          <Note>No dataset loaded: no stored explanations for this node. ({result.error.message})</Note>
        ) : (
          <ErrorBox title="Failed to load explanations" message={result.error.message} />
        ))}
      {result.status === "ready" &&
        (result.data.length === 0 ? (
          <Note>No explanations stored for this node.</Note>
        ) : result.data.length === 1 ? (
          <blockquote className="explanation-quote">
            <em>{result.data[0].explanation}</em>
            <div className="muted small">
              score: {result.data[0].score === null ? "undefined" : formatNumber(result.data[0].score, 2)} ·{" "}
              {result.data[0].datasetName}
            </div>
          </blockquote>
        ) : (
          <table className="compact">
            <thead>
              <tr>
                <th scope="col">Dataset</th>
                <th scope="col">Explanation</th>
                <th scope="col">Score</th>
              </tr>
            </thead>
            <tbody>
              {result.data.map((e, i) => (
                <tr key={i}>
                  <td className="mono small">{e.datasetName}</td>
                  <td>{e.explanation}</td>
                  <td className="num">{e.score === null ? "–" : formatNumber(e.score, 2)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        ))}
    </Card>
  );
}

function DatasetExamples({ record }: { record: Async<AnyRecord> }) {
  return (
    <Card title="Dataset examples" json={() => (record.status === "ready" ? record.data.data : null)}>
      {record.status === "loading" && <Loading />}
      {record.status === "error" &&
        (isUnavailable(record.error) ? (
          <Note>
            No dataset loaded: top-activating and random examples appear once the server has a collated
            dataset for this node. ({record.error.message})
          </Note>
        ) : (
          <ErrorBox title="Failed to load the dataset record" message={record.error.message} />
        ))}
      {record.status === "ready" && record.data.kind === "tokens" && (
        <>
          <p className="muted small">
            {record.data.data.dataset} · max activation {formatNumber(record.data.data.maxActivation, 3)}
          </p>
          <ExampleList
            title="Top activating"
            initial={6}
            items={record.data.data.topActivations.map((seq, i) => (
              <TokenHeatmap
                key={i}
                tokens={seq.map((t) => ({
                  token: t.token,
                  scalar: t.scalar,
                  normalized: t.normalizedScalar,
                }))}
              />
            ))}
          />
          <ExampleList
            title="Random"
            initial={3}
            items={record.data.data.randomSample.map((seq, i) => (
              <TokenHeatmap
                key={i}
                tokens={seq.map((t) => ({
                  token: t.token,
                  scalar: t.scalar,
                  normalized: t.normalizedScalar,
                }))}
              />
            ))}
          />
        </>
      )}
      {record.status === "ready" && record.data.kind === "pairs" && (
        <>
          <p className="muted small">
            {record.data.data.dataset} · max {formatNumber(record.data.data.maxAttentionActivation, 3)} · at
            rest a token shows its strongest incoming (magenta) and outgoing (cyan) value; hover one, or focus
            a sequence and use ← →, to see which later tokens attend to it.
          </p>
          <ExampleList
            title="Top activating"
            initial={6}
            items={record.data.data.mostPositiveTokenSequences.map((seq, i) => (
              <TokenHeatmap2d key={i} tokens={seq} />
            ))}
          />
          <ExampleList
            title="Random"
            initial={3}
            items={record.data.data.randomTokenSequences.map((seq, i) => (
              <TokenHeatmap2d key={i} tokens={seq} />
            ))}
          />
        </>
      )}
    </Card>
  );
}

function ExampleList({
  title,
  initial,
  items,
}: {
  title: string;
  initial: number;
  items: React.ReactNode[];
}) {
  const [all, setAll] = useState(false);
  return (
    <section className="examples">
      <div className="row gap">
        <h3>{title}</h3>
        {items.length > initial && (
          <button type="button" className="btn small" onClick={() => setAll(!all)} aria-expanded={all}>
            {all ? "Show fewer" : `Show all ${items.length}`}
          </button>
        )}
      </div>
      <div className="example-grid">
        {(all ? items : items.slice(0, initial)).map((item, i) => (
          <div key={i} className="example-card">
            {item}
          </div>
        ))}
      </div>
    </section>
  );
}

/** Where the logit-lens pane reads or forces the node (TDB's `getActivationLocationType`). */
function lensLocation(nodeType: NodeType) {
  switch (nodeType) {
    case "mlp_neuron":
      return "mlp.post_act" as const;
    case "mlp_autoencoder_latent":
      return "online_mlp_autoencoder_latent" as const;
    case "attention_autoencoder_latent":
      return "online_attention_autoencoder_latent" as const;
    default:
      return null;
  }
}

export function logitLensPaneRequest(
  nodeType: NodeType,
  layer: number,
  index: number,
): BatchedRequest | null {
  const location = lensLocation(nodeType);
  const onlineDst = derivedScalarTypeFor(nodeType, true);
  if (!location || !onlineDst) return null;
  const at = (passType: "forward" | "backward") => ({
    activationLocationType: location,
    tensorIndices: [0, index],
    layerIndex: layer,
    passType,
  });
  const subRequests: BatchedRequest["inferenceSubRequests"] = [];
  if (nodeType !== "attention_autoencoder_latent") {
    subRequests.push({
      inferenceRequestSpec: {
        prompt: "a",
        ablationSpecs: [{ index: at("backward"), value: 1 }],
        lossFnConfig: { name: "zero" },
      },
      processingRequestSpecByName: {
        singleton: {
          specType: "derived_scalars_request_spec",
          dst: "vocab_token_write_to_input_direction",
          layerIndex: null,
          activationIndex: 0,
          numTopTokens: 100,
          passType: "forward",
        },
      },
    });
  }
  subRequests.push({
    inferenceRequestSpec: { prompt: "a", ablationSpecs: [{ index: at("forward"), value: 1 }] },
    processingRequestSpecByName: {
      singleton: {
        specType: "derived_scalars_request_spec",
        dst: onlineDst,
        layerIndex: layer,
        activationIndex: index,
        numTopTokens: 100,
        passType: "forward",
      },
    },
  });
  return { inferenceSubRequests: subRequests };
}

function LogitLensPane({ nodeType, layer, index }: { nodeType: NodeType; layer: number; index: number }) {
  const request = useMemo(() => logitLensPaneRequest(nodeType, layer, index), [nodeType, layer, index]);
  const result = useAsync(request ? JSON.stringify(request) : null, (signal) =>
    api.batched(request as BatchedRequest, signal),
  );
  if (!request) return null;
  const lists: Array<{ kind: "input" | "output"; tokens: TopTokens | null }> = [];
  if (result.status === "ready") {
    result.data.inferenceSubResponses.forEach((sub, i) => {
      const data = sub.processingResponseDataByName.singleton;
      const kind = request.inferenceSubRequests.length === 2 && i === 0 ? "input" : "output";
      lists.push({
        kind,
        tokens: data?.responseDataType === "derived_scalars_response_data" ? data.topTokens : null,
      });
    });
  }
  return (
    <Card
      title="Logit lens"
      json={() => ({ request, response: result.status === "ready" ? result.data : null })}
    >
      {result.status === "loading" && <Loading />}
      {result.status === "error" && (
        <ErrorBox title="Failed to load the logit lens" message={result.error.message} />
      )}
      {result.status === "ready" && (
        <div className="lens-columns">
          {lists.map(({ kind, tokens }) => (
            <div key={kind}>
              {tokens ? (
                <>
                  <TokenColumn
                    title={
                      kind === "input"
                        ? "Input tokens that upvote this component"
                        : "Output tokens upvoted by this component"
                    }
                    tokens={tokens.top}
                  />
                  <TokenColumn
                    title={
                      kind === "input"
                        ? "Input tokens that downvote this component"
                        : "Output tokens downvoted by this component"
                    }
                    tokens={tokens.bottom}
                    negative
                  />
                </>
              ) : (
                <Note>No {kind} tokens for this component.</Note>
              )}
            </div>
          ))}
        </div>
      )}
    </Card>
  );
}

function TokenColumn({
  title,
  tokens,
  negative,
}: {
  title: string;
  tokens: Array<{ token: string; scalar: number; normalizedScalar: number }>;
  negative?: boolean;
}) {
  const [all, setAll] = useState(false);
  const shown = all ? tokens : tokens.slice(0, 20);
  return (
    <div className="token-column">
      <h3 className={negative ? "negative" : undefined}>{title}</h3>
      <div className="pills">
        {shown.map((t, i) => (
          <TokenPill
            key={i}
            token={t.token}
            title={`${formatNumber(t.normalizedScalar, 2)} (${formatNumber(t.scalar, 3)})`}
          />
        ))}
      </div>
      {tokens.length > 20 && (
        <button type="button" className="btn small ghost" onClick={() => setAll(!all)} aria-expanded={all}>
          {all ? "Show fewer" : `Show all ${tokens.length}`}
        </button>
      )}
    </div>
  );
}
