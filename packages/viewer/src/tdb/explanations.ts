/**
 * Explanations for the node table's visible rows (T22): /explain, then /score of the first explanation,
 * at most two nodes in flight. A 503/404 means the server has no dataset or explainer: stop asking.
 */
import { useEffect, useRef, useState } from "react";
import { ApiError, api } from "../api.js";
import { derivedScalarTypeFor } from "../datasets.js";

export type ExplanationEntry =
  | { status: "loading" }
  | { status: "ready"; explanations: string[]; score: number | null }
  | { status: "error"; message: string };

export interface ExplanationState {
  entries: ReadonlyMap<string, ExplanationEntry>;
  /** Set once the server says explanations are unavailable. */
  unavailable: string | null;
}

export interface ExplainTarget {
  /** `${nodeType}.${layer}.${index}`: one entry per component, whatever token it fired at. */
  key: string;
  nodeType: string;
  layer: number;
  index: number;
}

export function explanationKey(nodeType: string, layer: number | null, index: number): string {
  return `${nodeType}.${layer ?? 0}.${index}`;
}

const MAX_IN_FLIGHT = 2;

export function useExplanations(
  targets: readonly ExplainTarget[],
  datasets: (nodeType: string) => string[],
): ExplanationState {
  const [entries, setEntries] = useState<Map<string, ExplanationEntry>>(() => new Map());
  const [unavailable, setUnavailable] = useState<string | null>(null);
  const queue = useRef<ExplainTarget[]>([]);
  const inFlight = useRef(0);
  const known = useRef(new Set<string>());
  const stopped = useRef(false);
  const datasetsRef = useRef(datasets);
  datasetsRef.current = datasets;
  const mounted = useRef(true);
  useEffect(() => {
    mounted.current = true;
    return () => {
      mounted.current = false;
    };
  }, []);

  const targetKey = targets.map((t) => t.key).join("|");
  // biome-ignore lint/correctness/useExhaustiveDependencies: targetKey summarises targets.
  useEffect(() => {
    if (stopped.current) return;
    const set = (key: string, entry: ExplanationEntry) => {
      if (mounted.current) setEntries((m) => new Map(m).set(key, entry));
    };
    const pump = () => {
      while (!stopped.current && inFlight.current < MAX_IN_FLIGHT && queue.current.length > 0) {
        const target = queue.current.shift();
        if (!target) break;
        inFlight.current++;
        run(target).finally(() => {
          inFlight.current--;
          pump();
        });
      }
    };
    const run = async (t: ExplainTarget) => {
      const dst = derivedScalarTypeFor(t.nodeType, false);
      if (!dst) {
        set(t.key, { status: "error", message: "no explanations for this node type" });
        return;
      }
      const request = {
        dst,
        layerIndex: t.layer,
        activationIndex: t.index,
        datasets: datasetsRef.current(t.nodeType),
      };
      set(t.key, { status: "loading" });
      try {
        const result = await api.explain(request);
        const first = result.explanations[0];
        if (first === undefined) {
          set(t.key, { status: "ready", explanations: [], score: null });
          return;
        }
        set(t.key, { status: "ready", explanations: result.explanations, score: null });
        const score = await api.score({ ...request, explanation: first, maxSequences: 2 });
        set(t.key, { status: "ready", explanations: result.explanations, score: score.score });
      } catch (error) {
        if (error instanceof ApiError && (error.status === 503 || error.status === 0)) {
          stopped.current = true;
          queue.current = [];
          if (mounted.current) setUnavailable(error.message);
          set(t.key, { status: "error", message: error.message });
          return;
        }
        set(t.key, { status: "error", message: (error as Error).message });
      }
    };
    // Rows that scrolled out of view before their turn are dropped (and asked again when seen again).
    const wanted = new Set(targets.map((t) => t.key));
    for (const t of queue.current) if (!wanted.has(t.key)) known.current.delete(t.key);
    queue.current = queue.current.filter((t) => wanted.has(t.key));
    for (const t of targets) {
      if (known.current.has(t.key)) continue;
      known.current.add(t.key);
      queue.current.push(t);
    }
    pump();
  }, [targetKey]);
  return { entries, unavailable };
}
