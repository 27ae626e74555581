/** Data-loading hooks: one async call per key, aborted when the key changes or the component unmounts. */
import type { ModelInfoResponse } from "@tdb/attribution";
import { useEffect, useState } from "react";
import { ApiError, api } from "./api.js";

export type Async<T> =
  | { status: "idle" }
  | { status: "loading" }
  | { status: "ready"; data: T }
  | { status: "error"; error: ApiError | Error };

/** Runs `load` whenever `key` changes (null = do nothing); the latest call wins. */
export function useAsync<T>(key: string | null, load: (signal: AbortSignal) => Promise<T>): Async<T> {
  const [state, setState] = useState<Async<T>>({ status: key === null ? "idle" : "loading" });
  // biome-ignore lint/correctness/useExhaustiveDependencies: `key` names everything `load` depends on.
  useEffect(() => {
    if (key === null) {
      setState({ status: "idle" });
      return;
    }
    const controller = new AbortController();
    setState({ status: "loading" });
    load(controller.signal).then(
      (data) => {
        if (!controller.signal.aborted) setState({ status: "ready", data });
      },
      (error: unknown) => {
        if (!controller.signal.aborted) {
          setState({ status: "error", error: error instanceof Error ? error : new Error(String(error)) });
        }
      },
    );
    return () => controller.abort();
  }, [key]);
  return state;
}

let modelInfoPromise: Promise<ModelInfoResponse> | null = null;

/** /model_info, asked once per page load. */
export function useModelInfo(): Async<ModelInfoResponse> {
  return useAsync("model_info", () => {
    if (!modelInfoPromise) {
      modelInfoPromise = api.modelInfo();
      modelInfoPromise.catch(() => {
        modelInfoPromise = null;
      });
    }
    return modelInfoPromise;
  });
}

export function isUnavailable(error: Error): boolean {
  return error instanceof ApiError && error.unavailable;
}
