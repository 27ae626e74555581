/** Prompt(s) and tokens of interest: drafts until Submit (tdb-spec §2.1.1, T1–T5). */
// biome-ignore-all lint/suspicious/noArrayIndexKey: tokens and positions are lists that may repeat.
import { type FormEvent, type KeyboardEvent, useId, useState } from "react";
import { Card } from "../ui/components.js";
import { type PromptParams, promptWarnings } from "./state.js";

interface Props {
  left: PromptParams;
  right: PromptParams | null;
  busy: boolean;
  onSubmit: (left: PromptParams, right: PromptParams | null) => void;
}

export function PromptCard({ left, right, busy, onSubmit }: Props) {
  const [leftDraft, setLeftDraft] = useState(() => structuredClone(left));
  const [rightDraft, setRightDraft] = useState(() => (right ? structuredClone(right) : null));
  const submit = (event?: FormEvent) => {
    event?.preventDefault();
    onSubmit(leftDraft, rightDraft);
  };
  const submitOnCtrlEnter = (event: KeyboardEvent) => {
    if (event.key === "Enter" && (event.metaKey || event.ctrlKey)) {
      event.preventDefault();
      submit();
    }
  };
  return (
    <Card
      title={rightDraft ? "Prompts and tokens of interest" : "Prompt and tokens of interest"}
      className="prompt-card"
      json={() => ({ left: leftDraft, right: rightDraft })}
      jsonTitle="Prompt drafts (not yet submitted)"
    >
      <form onSubmit={submit} onKeyDown={submitOnCtrlEnter} aria-label="Prompt and tokens of interest">
        <div className={rightDraft ? "prompt-pair" : undefined}>
          <PromptFields side={rightDraft ? "Left" : null} params={leftDraft} onChange={setLeftDraft} />
          {rightDraft && <PromptFields side="Right" params={rightDraft} onChange={setRightDraft} />}
        </div>
        <div className="row gap">
          <button type="submit" className="btn primary" aria-busy={busy}>
            Submit
          </button>
          {rightDraft ? (
            <button type="button" className="btn" onClick={() => onSubmit(leftDraft, null)}>
              Remove second prompt
            </button>
          ) : (
            <button
              type="button"
              className="btn"
              onClick={() => onSubmit(leftDraft, structuredClone(leftDraft))}
            >
              Add second prompt
            </button>
          )}
          <span className="muted small">Ctrl+Enter submits</span>
        </div>
      </form>
    </Card>
  );
}

function PromptFields({
  side,
  params,
  onChange,
}: {
  side: "Left" | "Right" | null;
  params: PromptParams;
  onChange: (p: PromptParams) => void;
}) {
  const id = useId();
  const warnings = promptWarnings(params);
  const label = side ? `${side} prompt` : "Prompt";
  return (
    <fieldset className="prompt-fields">
      {side && <legend>{side}</legend>}
      <label htmlFor={`${id}-prompt`} className="field-label">
        {label}
      </label>
      <textarea
        id={`${id}-prompt`}
        className="prompt-input mono"
        rows={3}
        value={params.prompt}
        spellCheck={false}
        title="Typically begins with <|endoftext|>"
        onChange={(e) => onChange({ ...params, prompt: e.target.value })}
      />
      <div className="tokens-grid">
        <TokenList
          label={side ? `${side} target token(s)` : "Target token(s)"}
          shortLabel="Target"
          tokens={params.targetTokens}
          minimum={1}
          onChange={(targetTokens) => onChange({ ...params, targetTokens })}
        />
        <button
          type="button"
          className="btn small swap"
          onClick={() =>
            onChange({
              ...params,
              targetTokens: params.distractorTokens,
              distractorTokens: params.targetTokens,
            })
          }
          disabled={params.distractorTokens.length === 0}
          aria-label={`Swap ${side ? `${side.toLowerCase()} ` : ""}target and distractor tokens`}
          title="Swap target and distractor tokens"
        >
          ⇅ Swap
        </button>
        <TokenList
          label={side ? `${side} distractor token(s)` : "Distractor token(s)"}
          shortLabel="Distractor"
          tokens={params.distractorTokens}
          minimum={0}
          onChange={(distractorTokens) => onChange({ ...params, distractorTokens })}
        />
      </div>
      {warnings.length > 0 && (
        <ul className="warnings" aria-live="polite">
          {warnings.map((w) => (
            <li key={w}>⚠ {w}</li>
          ))}
        </ul>
      )}
    </fieldset>
  );
}

function TokenList({
  label,
  shortLabel,
  tokens,
  minimum,
  onChange,
}: {
  label: string;
  shortLabel: string;
  tokens: string[];
  minimum: number;
  onChange: (tokens: string[]) => void;
}) {
  return (
    <fieldset className="token-list">
      <legend className="field-label">{label}</legend>
      <div className="row gap wrap">
        {tokens.map((token, i) => (
          <input
            key={i}
            className="token-input mono"
            value={token}
            aria-label={`${shortLabel} token ${i + 1}`}
            spellCheck={false}
            onChange={(e) => onChange(tokens.map((t, j) => (j === i ? e.target.value : t)))}
          />
        ))}
        {tokens.length === 0 && <span className="muted small">none (direction = mean target logit)</span>}
        <button
          type="button"
          className="btn small"
          onClick={() => onChange([...tokens, ""])}
          aria-label={`Add ${shortLabel.toLowerCase()} token`}
        >
          + Add
        </button>
        <button
          type="button"
          className="btn small"
          onClick={() => onChange(tokens.slice(0, -1))}
          disabled={tokens.length <= minimum}
          aria-label={`Remove last ${shortLabel.toLowerCase()} token`}
        >
          − Remove
        </button>
      </div>
    </fieldset>
  );
}
