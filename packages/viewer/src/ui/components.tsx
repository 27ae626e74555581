/** Shared widgets: cards, the JSON viewer dialog, errors, loading, token pills. */
import { type ReactNode, useEffect, useId, useRef, useState } from "react";
import { formatNumber, formatToken } from "../format.js";

export function Card({
  title,
  actions,
  children,
  json,
  jsonTitle,
  className,
  id,
}: {
  title: ReactNode;
  actions?: ReactNode;
  children: ReactNode;
  /** Data for the card's JSON view; omitted → no JSON button. */
  json?: () => unknown;
  jsonTitle?: string;
  className?: string;
  id?: string;
}) {
  const headingId = useId();
  return (
    <section className={`card ${className ?? ""}`} aria-labelledby={headingId} id={id}>
      <header className="card-header">
        <h2 id={headingId}>{title}</h2>
        <div className="card-actions">
          {actions}
          {json && (
            <JsonButton data={json} title={jsonTitle ?? (typeof title === "string" ? title : "Data")} />
          )}
        </div>
      </header>
      {children}
    </section>
  );
}

export function JsonButton({ data, title }: { data: () => unknown; title: string }) {
  const [open, setOpen] = useState(false);
  return (
    <>
      <button
        type="button"
        className="btn small ghost"
        onClick={() => setOpen(true)}
        aria-label={`JSON of ${title}`}
      >
        {"{ }"} JSON
      </button>
      {open && <JsonDialog title={title} value={data()} onClose={() => setOpen(false)} />}
    </>
  );
}

function JsonDialog({ title, value, onClose }: { title: string; value: unknown; onClose: () => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  const [copied, setCopied] = useState<string | null>(null);
  useEffect(() => {
    const dialog = ref.current;
    if (dialog && !dialog.open) dialog.showModal();
  }, []);
  const copy = async () => {
    const text = JSON.stringify(value, null, 2);
    try {
      await navigator.clipboard.writeText(text);
      setCopied("Copied to the clipboard");
    } catch {
      const url = URL.createObjectURL(new Blob([text], { type: "application/json" }));
      const a = document.createElement("a");
      a.href = url;
      a.download = "data.json";
      a.click();
      URL.revokeObjectURL(url);
      setCopied("Downloaded data.json");
    }
  };
  return (
    <dialog ref={ref} className="json-dialog" onClose={onClose} aria-label={`JSON: ${title}`}>
      <header className="card-header">
        <h2>{title}</h2>
        <div className="card-actions">
          {copied && (
            <span className="muted" role="status">
              {copied}
            </span>
          )}
          <button type="button" className="btn small" onClick={copy}>
            Copy JSON
          </button>
          <button type="button" className="btn small" onClick={() => ref.current?.close()}>
            Close
          </button>
        </div>
      </header>
      <div className="json-body">
        <JsonTree value={value} name="root" depth={0} />
      </div>
    </dialog>
  );
}

const CHUNK = 100;

/** A lazily expanded JSON tree; objects and arrays are <details>, open to depth 2. */
function JsonTree({ value, name, depth }: { value: unknown; name: string; depth: number }) {
  const [open, setOpen] = useState(depth < 2);
  if (value === null || typeof value !== "object") {
    return (
      <div className="json-leaf">
        <span className="json-key">{name}: </span>
        <span className={`json-${value === null ? "null" : typeof value}`}>{JSON.stringify(value)}</span>
      </div>
    );
  }
  const isArray = Array.isArray(value);
  const entries: Array<[string, unknown]> = isArray
    ? value.length > CHUNK
      ? Array.from({ length: Math.ceil(value.length / CHUNK) }, (_, c) => [
          `[${c * CHUNK}…${Math.min(value.length, (c + 1) * CHUNK) - 1}]`,
          Object.fromEntries(
            value.slice(c * CHUNK, (c + 1) * CHUNK).map((v, i) => [String(c * CHUNK + i), v]),
          ),
        ])
      : value.map((v, i) => [String(i), v])
    : Object.entries(value as Record<string, unknown>);
  const summary = isArray ? `[${value.length}]` : `{${entries.length}}`;
  return (
    <details open={open} onToggle={(e) => setOpen((e.target as HTMLDetailsElement).open)}>
      <summary>
        <span className="json-key">{name}</span> <span className="muted">{summary}</span>
      </summary>
      {open && (
        <div className="json-children">
          {entries.map(([k, v]) => (
            <JsonTree key={k} name={k} value={v} depth={depth + 1} />
          ))}
        </div>
      )}
    </details>
  );
}

export function ErrorBox({
  title,
  message,
  onRetry,
}: {
  title?: string;
  message: string;
  onRetry?: () => void;
}) {
  return (
    <div className="error-box" role="alert">
      <strong>{title ?? "The server said no"}</strong>
      <div className="error-message">{message}</div>
      {onRetry && (
        <button type="button" className="btn small" onClick={onRetry}>
          Retry
        </button>
      )}
    </div>
  );
}

export function Note({ children }: { children: ReactNode }) {
  return <div className="note">{children}</div>;
}

export function Loading({ label = "Loading…" }: { label?: string }) {
  return (
    <div className="loading" role="status" aria-live="polite">
      <span className="spinner" aria-hidden="true" />
      {label}
    </div>
  );
}

export function TokenPill({ token, scalar, title }: { token: string; scalar?: number; title?: string }) {
  return (
    <span className="pill" title={title ?? (scalar === undefined ? undefined : formatNumber(scalar))}>
      {formatToken(token)}
    </span>
  );
}

/** A token shown with its index: `·Mary (1)`. */
export function TokenAt({ tokens, index }: { tokens: readonly string[]; index: number | null | undefined }) {
  if (index === null || index === undefined) return <span className="muted">–</span>;
  return (
    <span className="token-at">
      <span className="tok">{formatToken(tokens[index] ?? "?")}</span>{" "}
      <span className="muted">({index})</span>
    </span>
  );
}
