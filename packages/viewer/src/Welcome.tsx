/** Welcome page (N1): model info, link to TDB, dataset list, jump box. */
import { type FormEvent, useId, useState } from "react";
import { api } from "./api.js";
import { nodeTypeForDatasetDst } from "./datasets.js";
import { isUnavailable, useAsync, useModelInfo } from "./hooks.js";
import { Link, navigate } from "./router.js";
import { defaultState, searchFromState } from "./tdb/state.js";
import { Card, ErrorBox, Loading, Note } from "./ui/components.js";

const JUMP_TYPES = [
  ["mlp_neuron", "MLP neuron"],
  ["attention_head", "Attention head"],
  ["mlp_autoencoder_latent", "MLP autoencoder latent"],
  ["attention_autoencoder_latent", "Attention autoencoder latent"],
] as const;

/** TDB's showcase (indirect-object identification); the demo model and GPT-2 small both solve it. */
const IOI_EXAMPLE_SEARCH = searchFromState({
  ...defaultState(),
  left: {
    prompt: "When Mary and John went to the store, John gave a drink to",
    targetTokens: [" Mary"],
    distractorTokens: [" John"],
  },
});

export function Welcome() {
  const modelInfo = useModelInfo();
  const datasets = useAsync("datasets", (signal) => api.neuronDatasetsMetadata(signal));
  const info = modelInfo.status === "ready" ? modelInfo.data : null;
  const modelName = info?.modelName ?? "model";
  const tdbSegment = [modelName, info?.mlpAutoencoderName, info?.attentionAutoencoderName]
    .filter(Boolean)
    .join("_");
  return (
    <div className="page welcome">
      <h1>Transformer Debugger</h1>
      <div className="welcome-grid">
        <Card title="Model">
          {modelInfo.status === "loading" && <Loading />}
          {modelInfo.status === "error" && (
            <ErrorBox
              title="Unable to look up model info"
              message={`Is the activation server running? ${modelInfo.error.message}`}
            />
          )}
          {info && (
            <>
              <dl className="facts">
                <dt>Model</dt>
                <dd className="mono">{info.modelName ?? "(unnamed)"}</dd>
                <dt>Layers</dt>
                <dd>{info.nLayers}</dd>
                <dt>MLP autoencoder</dt>
                <dd className="mono">
                  {info.hasMlpAutoencoder ? (info.mlpAutoencoderName ?? "yes") : "none"}
                </dd>
                <dt>Attention autoencoder</dt>
                <dd className="mono">
                  {info.hasAttentionAutoencoder ? (info.attentionAutoencoderName ?? "yes") : "none"}
                </dd>
              </dl>
              <Link className="btn primary big" href={`/${encodeURIComponent(tdbSegment)}/tdb_alpha`}>
                Open the Transformer Debugger →
              </Link>
              <p>
                <Link href={`/${encodeURIComponent(tdbSegment)}/tdb_alpha${IOI_EXAMPLE_SEARCH}`}>
                  Start from the IOI example
                </Link>{" "}
                <span className="muted small">
                  (“When Mary and John went to the store, John gave a drink to” → Mary)
                </span>
              </p>
            </>
          )}
        </Card>
        <Card title="Go to a component">
          <JumpBox model={modelName} />
        </Card>
        <Card title="Neuron datasets">
          {datasets.status === "loading" && <Loading />}
          {datasets.status === "error" &&
            (isUnavailable(datasets.error) ? (
              <Note>
                No dataset loaded on this server. Node pages still show live activations and logit-lens
                tokens; dataset examples and explanations need collated datasets. ({datasets.error.message})
              </Note>
            ) : (
              <ErrorBox title="Failed to load dataset metadata" message={datasets.error.message} />
            ))}
          {datasets.status === "ready" &&
            (datasets.data.length === 0 ? (
              <Note>The server lists no datasets.</Note>
            ) : (
              <ul className="dataset-list">
                {datasets.data.map((d) => {
                  const nodeType = nodeTypeForDatasetDst(d.derivedScalarType);
                  return (
                    <li key={`${d.shortName}-${d.derivedScalarType}`}>
                      {nodeType ? (
                        <Link href={`/${encodeURIComponent(d.shortName)}/${nodeType}/0/0`}>
                          {d.userVisibleName}
                        </Link>
                      ) : (
                        <span>{d.userVisibleName}</span>
                      )}{" "}
                      <span className="muted small mono">
                        {d.shortName} · {d.derivedScalarType}
                      </span>
                    </li>
                  );
                })}
              </ul>
            ))}
        </Card>
      </div>
    </div>
  );
}

function JumpBox({ model }: { model: string }) {
  const id = useId();
  const [nodeType, setNodeType] = useState<string>("mlp_neuron");
  const [text, setText] = useState("");
  const [error, setError] = useState<string | null>(null);
  const go = (event: FormEvent) => {
    event.preventDefault();
    const match = /^\s*(\d+)\s*[:/ ,]\s*(\d+)\s*$/.exec(text);
    if (!match) {
      setError("Type layer:index, e.g. 1:42");
      return;
    }
    navigate(`/${encodeURIComponent(model)}/${nodeType}/${match[1]}/${match[2]}`);
  };
  return (
    <form onSubmit={go} className="jump-box">
      <label htmlFor={`${id}-type`} className="field-label">
        Component type
      </label>
      <select id={`${id}-type`} value={nodeType} onChange={(e) => setNodeType(e.target.value)}>
        {JUMP_TYPES.map(([value, label]) => (
          <option key={value} value={value}>
            {label}
          </option>
        ))}
      </select>
      <label htmlFor={`${id}-where`} className="field-label">
        Layer and index
      </label>
      <div className="row gap">
        <input
          id={`${id}-where`}
          placeholder="{layerIndex}:{nodeIndex}"
          value={text}
          onChange={(e) => {
            setText(e.target.value);
            setError(null);
          }}
          aria-invalid={error !== null}
          aria-describedby={error ? `${id}-error` : undefined}
        />
        <button type="submit" className="btn">
          Go
        </button>
      </div>
      {error && (
        <div id={`${id}-error`} className="field-error">
          {error}
        </div>
      )}
    </form>
  );
}
