/** The node table: 4 metrics × left/diff/right, sorting, filter, pages, detail rows, actions (T15–T18). */
// biome-ignore-all lint/suspicious/noArrayIndexKey: tokens and positions are lists that may repeat.
import type { AttentionTraceType, MirroredNodeIndexOut, TopTokens } from "@tdb/attribution";
import { Fragment, type ReactNode, useEffect, useMemo, useState } from "react";
import { divergingColor, formatNumber, formatToken } from "../format.js";
import { Link } from "../router.js";
import { Card, Note, TokenAt, TokenPill } from "../ui/components.js";
import { type ExplanationEntry, type ExplanationState, explanationKey } from "./explanations.js";
import { SortArrow } from "./LogitsCard.js";
import {
  earliestAblatedLayer,
  filterRows,
  isAttentionType,
  METRICS,
  metricScale,
  type NodeRow,
  sortRows,
  topTokenSides,
} from "./results.js";
import {
  isValueTrace,
  type MetricId,
  nodeIndexKey,
  type PairingMode,
  type Side,
  type TdbState,
} from "./state.js";

const PAGE_SIZES = [20, 50, 100];

export interface NodeTableProps {
  rows: NodeRow[];
  mode: PairingMode;
  tokens: readonly string[];
  rightTokens: readonly string[] | null;
  state: TdbState;
  model: string;
  tokenOfInterest: number;
  explanations: ExplanationState;
  onVisibleRowsChange: (rows: NodeRow[]) => void;
  onChange: (next: TdbState) => void;
  onView: (next: TdbState) => void;
  onAblate: (node: MirroredNodeIndexOut) => void;
  onTrace: (node: MirroredNodeIndexOut, type: AttentionTraceType | null) => void;
  /** While a "V" trace is active: trace its value path into this node. */
  onTraceInto: (node: MirroredNodeIndexOut) => void;
  json: () => unknown;
}

export function NodeTable(props: NodeTableProps) {
  const { rows, mode, tokens, rightTokens, state, model, tokenOfInterest, explanations } = props;
  const [page, setPage] = useState(0);
  const [pageSize, setPageSize] = useState(PAGE_SIZES[0]);
  const [expanded, setExpanded] = useState<ReadonlySet<string>>(() => new Set());
  const [expandAll, setExpandAll] = useState(false);
  const paired = mode !== "single";
  const sideNames: Record<Side, string> =
    mode === "baseline"
      ? { left: "Ablated", diff: "Diff", right: "Baseline" }
      : { left: "Left", diff: "Diff", right: "Right" };
  const sides: Side[] = paired ? ["left", "diff", "right"] : ["left"];

  const minAblatedLayer = earliestAblatedLayer(state.nodeAblations);
  const hideBefore = state.hideEarlyLayersWhenAblating ? minAblatedLayer : null;
  const scales = useMemo(() => {
    const out = {} as Record<MetricId, number>;
    for (const m of METRICS) out[m.id] = metricScale(rows, m.id);
    return out;
  }, [rows]);
  const visible = useMemo(() => {
    const shown = hideBefore === null ? rows : rows.filter((r) => (r.layer ?? -1) >= hideBefore);
    return sortRows(filterRows(shown, state.filter, tokens), state.sort, tokens);
  }, [rows, hideBefore, state.filter, state.sort, tokens]);
  const hiddenCount = hideBefore === null ? 0 : rows.filter((r) => (r.layer ?? -1) < hideBefore).length;
  const pageCount = Math.max(1, Math.ceil(visible.length / pageSize));
  const currentPage = Math.min(page, pageCount - 1);
  const pageRows = visible.slice(currentPage * pageSize, (currentPage + 1) * pageSize);

  // Back to the first page when the ordering or the data changes.
  // biome-ignore lint/correctness/useExhaustiveDependencies: reset triggers only.
  useEffect(() => setPage(0), [rows, state.sort.column, state.sort.descending, state.filter, hideBefore]);
  const pageKey = pageRows.map((r) => r.key).join("|");
  // biome-ignore lint/correctness/useExhaustiveDependencies: pageKey summarises pageRows.
  useEffect(() => props.onVisibleRowsChange(pageRows), [pageKey]);

  const ablated = new Set(state.nodeAblations.map((a) => nodeIndexKey(a.nodeIndex)));
  const tracedKey = state.upstreamNodeToTrace ? nodeIndexKey(state.upstreamNodeToTrace.nodeIndex) : null;
  const downstreamKey = state.downstreamNodeToTrace
    ? nodeIndexKey(state.downstreamNodeToTrace.nodeIndex)
    : null;
  // A "V" trace can continue into a node after the traced head: a later layer, or its own layer's MLP.
  const valueTraceLayer = isValueTrace(state)
    ? (state.upstreamNodeToTrace?.nodeIndex.layerIndex ?? null)
    : null;
  const canTraceInto = (row: NodeRow) =>
    valueTraceLayer !== null &&
    row.node.nodeType !== "layer" &&
    row.key !== downstreamKey &&
    row.layer !== null &&
    (row.layer > valueTraceLayer || (row.layer === valueTraceLayer && !isAttentionType(row.node.nodeType)));
  const attentionLatents = state.componentTypeForAttention === "autoencoder_latent";
  const promptsOfInterest = [state.left.prompt, ...(state.right ? [state.right.prompt] : [])].join("߷");
  const columnCount = 5 + METRICS.length * sides.length;

  const setSort = (column: string) => {
    const descending =
      state.sort.column === column
        ? !state.sort.descending
        : !["name", "layer", "from", "to"].includes(column);
    props.onView({ ...state, sort: { column, descending } });
  };
  const sortHeader = (
    column: string,
    label: ReactNode,
    title?: string,
    extra?: { colSpan?: number; rowSpan?: number; className?: string },
  ) => (
    <th
      scope="col"
      aria-sort={state.sort.column === column ? (state.sort.descending ? "descending" : "ascending") : "none"}
      title={title}
      {...extra}
    >
      <button type="button" className="sort-button" onClick={() => setSort(column)}>
        {label}
        <SortArrow active={state.sort.column === column} descending={state.sort.descending} />
      </button>
    </th>
  );

  const toggle = (key: string) =>
    setExpanded((s) => {
      const next = new Set(s);
      if (next.has(key)) next.delete(key);
      else next.add(key);
      return next;
    });

  return (
    <Card
      title="Node table"
      className="node-table-card"
      json={props.json}
      actions={
        <>
          <TopKInput
            value={state.topAndBottomKForNodeTable}
            onApply={(k) => props.onChange({ ...state, topAndBottomKForNodeTable: k })}
          />
          <label className="filter-input">
            <span className="visually-hidden">Filter nodes</span>
            <input
              type="search"
              placeholder="Filter: attn, mlp L1, Mary…"
              value={state.filter}
              onChange={(e) => props.onView({ ...state, filter: e.target.value })}
            />
          </label>
        </>
      }
    >
      <div className="table-toolbar row gap wrap small">
        <span>
          {visible.length === rows.length
            ? `${rows.length} nodes`
            : `${visible.length} of ${rows.length} nodes`}
        </span>
        {minAblatedLayer !== null && (
          <label className="checkbox" title="Nodes in layers before the earliest ablation">
            <input
              type="checkbox"
              checked={state.hideEarlyLayersWhenAblating}
              onChange={(e) => props.onView({ ...state, hideEarlyLayersWhenAblating: e.target.checked })}
            />
            Hide layers before the earliest ablation (L{minAblatedLayer})
            {hiddenCount > 0 && <span className="muted"> · {hiddenCount} hidden</span>}
          </label>
        )}
        <button
          type="button"
          className="btn small ghost"
          onClick={() => {
            setExpandAll((v) => !v);
            setExpanded(new Set());
          }}
          aria-pressed={expandAll}
        >
          {expandAll ? "Collapse all details" : "Expand all details"}
        </button>
        {explanations.unavailable && (
          <span className="muted" title={explanations.unavailable}>
            Explanations: no dataset loaded
          </span>
        )}
      </div>
      <div className="scroll-x">
        <table className="grid node-table">
          <thead>
            {paired ? (
              <>
                <tr>
                  <th scope="col" rowSpan={2} className="expand-col">
                    <span className="visually-hidden">Details</span>
                  </th>
                  {sortHeader("name", "Name", undefined, { rowSpan: 2, className: "name-col" })}
                  {sortHeader(
                    "to",
                    attentionLatents ? "Attributed to" : "Attended to",
                    "Key token of an attention node",
                    { rowSpan: 2 },
                  )}
                  {sortHeader("from", "Token", "Query token (attended from) / the token the node is at", {
                    rowSpan: 2,
                  })}
                  {METRICS.map((m) => (
                    <th key={m.id} scope="colgroup" colSpan={3} title={m.help} className="group-head">
                      {m.label}
                    </th>
                  ))}
                  <th scope="col" rowSpan={2}>
                    Actions
                  </th>
                </tr>
                <tr>
                  {METRICS.map((m) =>
                    sides.map((side) => (
                      <Fragment key={`${m.id}.${side}`}>
                        {sortHeader(
                          `${m.id}.${side}`,
                          sideNames[side],
                          `${m.label}, ${sideNames[side].toLowerCase()}`,
                          {
                            className: `num ${side === "diff" ? "diff-col" : ""}`,
                          },
                        )}
                      </Fragment>
                    )),
                  )}
                </tr>
              </>
            ) : (
              <tr>
                <th scope="col" className="expand-col">
                  <span className="visually-hidden">Details</span>
                </th>
                {sortHeader("name", "Name", undefined, { className: "name-col" })}
                {sortHeader(
                  "to",
                  attentionLatents ? "Attributed to" : "Attended to",
                  "Key token of an attention node",
                )}
                {sortHeader("from", "Token", "Query token (attended from) / the token the node is at")}
                {METRICS.map((m) => (
                  <Fragment key={m.id}>
                    {sortHeader(`${m.id}.left`, m.label, m.help, { className: "num" })}
                  </Fragment>
                ))}
                <th scope="col">Actions</th>
              </tr>
            )}
          </thead>
          <tbody>
            {pageRows.map((row) => {
              const isOpen = expandAll ? !expanded.has(row.key) : expanded.has(row.key);
              const isAblated = ablated.has(row.key);
              const explanation = explanations.entries.get(
                explanationKey(
                  row.node.nodeType,
                  row.layer,
                  row.node.tensorIndices[row.node.tensorIndices.length - 1] ?? 0,
                ),
              );
              return (
                <Fragment key={row.key}>
                  <tr
                    className={`node-row ${row.key === tracedKey ? "traced" : ""} ${isAblated ? "ablated" : ""}`}
                    data-node={row.name}
                  >
                    <td className="expand-col">
                      <button
                        type="button"
                        className="btn icon"
                        aria-expanded={isOpen}
                        aria-label={`Details for ${row.name} at token ${row.from}`}
                        onClick={() => toggle(row.key)}
                      >
                        {isOpen ? "▾" : "▸"}
                      </button>
                    </td>
                    <td className="name-col">
                      <NodeName row={row} model={model} prompts={promptsOfInterest} />
                      {isAblated && <span className="tag warn">ablated</span>}
                      {row.key === tracedKey && <span className="tag info">traced</span>}
                      {row.key === downstreamKey && <span className="tag info">downstream</span>}
                    </td>
                    <td>
                      {attentionLatents && isAttentionType(row.node.nodeType) ? (
                        <AttributedTo row={row} tokens={tokens} />
                      ) : (
                        <PairedToken index={row.to} tokens={tokens} rightTokens={rightTokens} />
                      )}
                    </td>
                    <td className={row.from === tokenOfInterest ? "of-interest" : undefined}>
                      <PairedToken index={row.from} tokens={tokens} rightTokens={rightTokens} />
                    </td>
                    {METRICS.map((m) =>
                      sides.map((side) => {
                        const value = row.metrics[m.id][side];
                        return (
                          <td
                            key={`${m.id}.${side}`}
                            className={`num ${side === "diff" ? "diff-col" : ""}`}
                            style={{ background: divergingColor(value, scales[m.id]) }}
                          >
                            {formatNumber(value)}
                          </td>
                        );
                      }),
                    )}
                    <td className="actions">
                      <RowActions
                        row={row}
                        isAblated={isAblated}
                        onAblate={() => props.onAblate(row.node)}
                        onTrace={(type) => props.onTrace(row.node, type)}
                        onTraceInto={canTraceInto(row) ? () => props.onTraceInto(row.node) : null}
                      />
                    </td>
                  </tr>
                  {isOpen && (
                    <tr className="detail-row">
                      <td colSpan={columnCount}>
                        <NodeDetails
                          row={row}
                          mode={mode}
                          tokens={tokens}
                          explanation={explanation}
                          explanationsUnavailable={explanations.unavailable}
                          sideNames={sideNames}
                        />
                      </td>
                    </tr>
                  )}
                </Fragment>
              );
            })}
            {pageRows.length === 0 && (
              <tr>
                <td colSpan={columnCount} className="muted center">
                  No nodes match.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      <nav className="pager row gap" aria-label="Node table pages">
        <button
          type="button"
          className="btn small"
          disabled={currentPage === 0}
          onClick={() => setPage(0)}
          aria-label="First page"
        >
          «
        </button>
        <button
          type="button"
          className="btn small"
          disabled={currentPage === 0}
          onClick={() => setPage(currentPage - 1)}
        >
          ‹ Previous
        </button>
        <span className="small" aria-live="polite">
          Page {currentPage + 1} of {pageCount} · rows {visible.length === 0 ? 0 : currentPage * pageSize + 1}
          –{Math.min(visible.length, (currentPage + 1) * pageSize)} of {visible.length}
        </span>
        <button
          type="button"
          className="btn small"
          disabled={currentPage >= pageCount - 1}
          onClick={() => setPage(currentPage + 1)}
        >
          Next ›
        </button>
        <button
          type="button"
          className="btn small"
          disabled={currentPage >= pageCount - 1}
          onClick={() => setPage(pageCount - 1)}
          aria-label="Last page"
        >
          »
        </button>
        <label className="small">
          Rows per page{" "}
          <select
            value={pageSize}
            onChange={(e) => {
              setPageSize(Number(e.target.value));
              setPage(0);
            }}
          >
            {PAGE_SIZES.map((n) => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </select>
        </label>
      </nav>
    </Card>
  );
}

function NodeName({ row, model, prompts }: { row: NodeRow; model: string; prompts: string }) {
  const n = row.node;
  const cls = isAttentionType(n.nodeType) ? "node-link attn" : "node-link mlp";
  if (n.nodeType === "layer") return <span className="mono">embedding</span>;
  const index = n.tensorIndices[n.tensorIndices.length - 1];
  const href = `/${encodeURIComponent(model)}/${n.nodeType}/${n.layerIndex ?? 0}/${index}?promptsOfInterest=${encodeURIComponent(prompts)}`;
  return (
    <Link href={href} className={`mono ${cls}`} title={`Open the ${n.nodeType.replace(/_/g, " ")} page`}>
      {row.name}
    </Link>
  );
}

function PairedToken({
  index,
  tokens,
  rightTokens,
}: {
  index: number | null;
  tokens: readonly string[];
  rightTokens: readonly string[] | null;
}) {
  if (index === null) return <span className="muted">–</span>;
  const right = rightTokens?.[index];
  if (right !== undefined && right !== tokens[index]) {
    return (
      <span className="token-at">
        <span className="tok">{formatToken(tokens[index] ?? "?")}</span> /{" "}
        <span className="tok">{formatToken(right)}</span> <span className="muted">({index})</span>
      </span>
    );
  }
  return <TokenAt tokens={tokens} index={index} />;
}

function AttributedTo({ row, tokens }: { row: NodeRow; tokens: readonly string[] }) {
  const pairs = row.tokenPairs[0];
  const first = pairs?.tokenIndices[0];
  if (first === undefined) return <span className="muted">–</span>;
  return <TokenAt tokens={tokens} index={first} />;
}

function RowActions({
  row,
  isAblated,
  onAblate,
  onTrace,
  onTraceInto,
}: {
  row: NodeRow;
  isAblated: boolean;
  onAblate: () => void;
  onTrace: (type: AttentionTraceType | null) => void;
  onTraceInto: (() => void) | null;
}) {
  const type = row.node.nodeType;
  // The embedding row can be neither ablated nor traced (TDB offered both; the server rejects them).
  if (type === "layer") return <span className="muted small">–</span>;
  const label = `${row.name} at token ${row.from}`;
  return (
    <div className="row-actions">
      <button
        type="button"
        className="btn tiny"
        onClick={onAblate}
        disabled={isAblated}
        aria-label={`Ablate ${label}`}
        title="Zero-ablate this node (forward pass)"
      >
        {isAblated ? "Ablated" : "Ablate"}
      </button>
      {type === "attention_head" ? (
        (["Q", "K", "QK", "V"] as const).map((t) => (
          <button
            key={t}
            type="button"
            className="btn tiny"
            onClick={() => onTrace(t)}
            aria-label={`Trace ${label} through ${{ Q: "query", K: "key", QK: "query and key", V: "value" }[t]}`}
            title={`Trace through ${{ Q: "query", K: "key", QK: "query and key", V: "value" }[t]}`}
          >
            {t}
          </button>
        ))
      ) : (
        <button
          type="button"
          className="btn tiny"
          onClick={() => onTrace(null)}
          aria-label={`Trace ${label}`}
          title="What caused this activation?"
        >
          Trace
        </button>
      )}
      {onTraceInto && (
        <button
          type="button"
          className="btn tiny"
          onClick={onTraceInto}
          aria-label={`Trace V into ${label}`}
          title="Trace the value path into this node: its pre-activation (a head: its query·key logit) replaces the direction of interest"
        >
          Into
        </button>
      )}
    </div>
  );
}

function TopTokenLine({ label, tokens }: { label: string; tokens: TopTokens }) {
  return (
    <div className="top-token-line">
      <span className="line-label">{label}</span>
      <span className="muted">top</span>
      {tokens.top.map((t, i) => (
        <TokenPill key={i} token={t.token} scalar={t.scalar} />
      ))}
      <span className="muted">bottom</span>
      {tokens.bottom.map((t, i) => (
        <TokenPill key={i} token={t.token} scalar={t.scalar} />
      ))}
    </div>
  );
}

function NodeDetails({
  row,
  mode,
  tokens,
  explanation,
  explanationsUnavailable,
  sideNames,
}: {
  row: NodeRow;
  mode: PairingMode;
  tokens: readonly string[];
  explanation: ExplanationEntry | undefined;
  explanationsUnavailable: string | null;
  sideNames: Record<Side, string>;
}) {
  const sideLabel = (i: 0 | 1) => (mode === "single" ? "" : `${i === 0 ? sideNames.left : sideNames.right} `);
  const lines: ReactNode[] = [];
  for (const i of topTokenSides(mode, row.upvoted)) {
    const t = row.upvoted[i];
    if (t)
      lines.push(<TopTokenLine key={`up${i}`} label={`${sideLabel(i)}upvoted output tokens`} tokens={t} />);
  }
  for (const i of topTokenSides(mode, row.inputUpvoting)) {
    const t = row.inputUpvoting[i];
    if (t)
      lines.push(
        <TopTokenLine key={`in${i}`} label={`${sideLabel(i)}input tokens that upvote`} tokens={t} />,
      );
  }
  const pairs = row.tokenPairs[0];
  return (
    <div className="node-details">
      <div className="explanation">
        <span className="line-label">Explanation</span>
        <ExplanationText entry={explanation} unavailable={explanationsUnavailable} />
      </div>
      {lines}
      {pairs && (
        <div className="top-token-line">
          <span className="line-label">token-pair attribution</span>
          {pairs.tokenIndices.map((t, i) => (
            <span key={t} className="pill">
              {formatToken(tokens[t] ?? "?")} ({t}) {formatNumber(pairs.attributions[i])}
            </span>
          ))}
        </div>
      )}
      {lines.length === 0 && !pairs && <Note>No top tokens for this node.</Note>}
    </div>
  );
}

function ExplanationText({
  entry,
  unavailable,
}: {
  entry: ExplanationEntry | undefined;
  unavailable: string | null;
}) {
  if (!entry) return <span className="muted">{unavailable ? "no dataset loaded" : "queued…"}</span>;
  if (entry.status === "loading") return <span className="muted">Loading…</span>;
  if (entry.status === "error") {
    return (
      <span className="muted" title={entry.message}>
        {unavailable ? "no dataset loaded" : `unavailable: ${entry.message}`}
      </span>
    );
  }
  if (entry.explanations.length === 0) return <span className="muted">none</span>;
  return (
    <span>
      {entry.explanations.map((e, i) => (
        <span key={e} className="explanation-text">
          <span className="score">{i === 0 && entry.score !== null ? entry.score.toFixed(2) : "?"}</span> {e}
        </span>
      ))}
    </span>
  );
}

function TopKInput({ value, onApply }: { value: number; onApply: (k: number) => void }) {
  const [draft, setDraft] = useState(String(value));
  useEffect(() => setDraft(String(value)), [value]);
  const apply = () => {
    const k = Number(draft);
    if (Number.isInteger(k) && k >= 1 && k <= 1000 && k !== value) onApply(k);
    else setDraft(String(value));
  };
  return (
    <label
      className="topk-input small"
      title="k top and k bottom nodes per metric and node type; larger is slower"
    >
      Top k per column{" "}
      <input
        type="number"
        min={1}
        max={1000}
        value={draft}
        onChange={(e) => setDraft(e.target.value)}
        onBlur={apply}
        onKeyDown={(e) => {
          if (e.key === "Enter") apply();
        }}
      />
    </label>
  );
}
