/** "Next token candidates": top and bottom 100 logits with pinned tokens of interest (T11). */
import { useMemo, useState } from "react";
import { formatNumber, formatToken } from "../format.js";
import { Card } from "../ui/components.js";
import type { LogitRow, LogitsView } from "./results.js";
import type { PairingMode } from "./state.js";

type Column = "token" | "left" | "diff" | "right";

export function LogitsCard({
  view,
  mode,
  tokens,
  json,
}: {
  view: LogitsView;
  mode: PairingMode;
  tokens: readonly string[];
  json: () => unknown;
}) {
  const [sort, setSort] = useState<{ column: Column; descending: boolean }>({
    column: "left",
    descending: true,
  });
  const [relative, setRelative] = useState(false);
  const paired = mode !== "single";
  const names = mode === "baseline" ? ["Ablated", "Baseline"] : ["Left", "Right"];
  const zero = relative ? view.pinned[0] : undefined;
  const shift = (row: LogitRow, side: "left" | "right" | "diff"): number | null => {
    const v = row[side];
    if (v === null || !zero) return v;
    const base = side === "diff" ? (zero.left ?? 0) - (zero.right ?? 0) : (zero[side] ?? 0);
    return v - base;
  };
  const sorted = useMemo(() => {
    const sign = sort.descending ? -1 : 1;
    return [...view.rows].sort((a, b) => {
      if (sort.column === "token") return sign * a.token.localeCompare(b.token);
      const va = a[sort.column];
      const vb = b[sort.column];
      // Missing values sort last in either direction.
      if (va === null) return vb === null ? 0 : 1;
      if (vb === null) return -1;
      return sign * (va - vb);
    });
  }, [view.rows, sort]);
  const position = view.tokenIndex < 0 ? tokens.length - 1 : view.tokenIndex;
  const columns: Array<{ id: Column; label: string }> = [
    { id: "token", label: "Token" },
    { id: "left", label: paired ? `${names[0]} logit` : "Logit" },
    ...(paired
      ? [
          { id: "diff" as const, label: "Diff" },
          { id: "right" as const, label: `${names[1]} logit` },
        ]
      : []),
  ];
  const renderRow = (row: LogitRow, pinned: boolean) => (
    <tr key={`${pinned ? "pin" : "row"}-${row.vocabId}`} className={pinned ? "pinned" : undefined}>
      <td className="mono">
        {formatToken(row.token)}
        {row.pin && <span className="tag">{row.pin}</span>}
      </td>
      <td className="num">{formatNumber(shift(row, "left"))}</td>
      {paired && <td className="num">{formatNumber(shift(row, "diff"), 3)}</td>}
      {paired && <td className="num">{formatNumber(shift(row, "right"))}</td>}
    </tr>
  );
  return (
    <Card
      title="Next-token logits"
      className="logits-card"
      json={json}
      actions={
        view.pinned.length > 0 ? (
          <label
            className="checkbox small"
            title="TDB's zero point: subtract the first token of interest's logit"
          >
            <input type="checkbox" checked={relative} onChange={(e) => setRelative(e.target.checked)} />
            relative to {formatToken(view.pinned[0].token)}
          </label>
        ) : undefined
      }
    >
      <p className="muted small">
        Top and bottom 100 at <span className="mono">{formatToken(tokens[position] ?? "?")}</span> ({position}
        )
        {view.missing.length > 0 && (
          <>
            {" "}
            · outside the top/bottom 100:{" "}
            {view.missing.map((m) => (
              <span key={m.token} className="mono">
                {formatToken(m.token)} <span className="tag">{m.pin}</span>{" "}
              </span>
            ))}
          </>
        )}
      </p>
      <div className="scroll-box">
        <table className="grid">
          <thead>
            <tr>
              {columns.map((c) => (
                <th
                  key={c.id}
                  scope="col"
                  aria-sort={sort.column === c.id ? (sort.descending ? "descending" : "ascending") : "none"}
                >
                  <button
                    type="button"
                    className="sort-button"
                    onClick={() =>
                      setSort((s) => ({
                        column: c.id,
                        descending: s.column === c.id ? !s.descending : c.id !== "token",
                      }))
                    }
                  >
                    {c.label}
                    <SortArrow active={sort.column === c.id} descending={sort.descending} />
                  </button>
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {view.pinned.map((row) => renderRow(row, true))}
            {sorted.map((row) => renderRow(row, false))}
          </tbody>
        </table>
      </div>
    </Card>
  );
}

export function SortArrow({ active, descending }: { active: boolean; descending: boolean }) {
  return (
    <span className={`sort-arrow ${active ? "active" : ""}`} aria-hidden="true">
      {active ? (descending ? "↓" : "↑") : "↕"}
    </span>
  );
}
