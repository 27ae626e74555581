/** `tdb explain`: explanations and scores for the components of collated datasets, stored beside them. */
import { existsSync } from "node:fs";
import { parseArgs } from "node:util";
import { openDatasetStore } from "@tdb/datasets";
import {
  ChatClient,
  type ComponentExplainer,
  type ExplainProgress,
  explainDataset,
  formatScoreTable,
  LlmExplainer,
  NoEndpointError,
  OfflineExplainer,
  parseComponentSpecs,
  resolveLlmConfig,
  selectComponents,
  summarizeByKind,
} from "@tdb/explain";
import { numberFlag, UsageError } from "./main.js";

export const EXPLAIN_USAGE = `usage: tdb explain --datasets FILE [options]

Explains and scores the components of a collated dataset (made by tdb collate) and stores the explanations,
with their scores and method, in the file's explanations table, where tdb serve finds them. Components that
already have an explanation by the same method are skipped, so an interrupted run resumes where it stopped.

  --datasets FILE        a collated dataset (repeatable)
  --components SPEC      all (default), mlp, heads, latents, mlp_latents, attn_latents, KIND:LAYER or
                         KIND:LAYER:INDEX (KIND: mlp_neuron, attention_head, mlp_autoencoder_latent,
                         attention_autoencoder_latent, or the short names); comma-separated or repeated
  --offline              no language model: lists the tokens and contexts behind the top activations, scored
                         by a simulator built from that list on the top (train) records only
  --endpoint URL         OpenAI-compatible base URL including /v1 (llama.cpp, vLLM, Ollama, OpenAI); default
                         $TDB_LLM_BASE_URL or $OPENAI_BASE_URL, else OpenAI when $OPENAI_API_KEY is set
  --llm-model NAME       default $TDB_LLM_MODEL (gpt-4o on OpenAI)
  --llm-api-key KEY      default $TDB_LLM_API_KEY or $OPENAI_API_KEY (the environment is the safer place)
  --concurrency N        language-model requests in flight (default 5)
  --timeout SECONDS      per request (default 60); failed requests are retried with backoff
  --llm-cache DIR        answers cached by request (default $XDG_CACHE_HOME/tdb-ts/llm)
  --no-llm-cache         do not cache answers on disk
  --max-sequences N      score on the first N held-out sequences only (TDB's valid split: top ones first)
  --force                explain again components already explained by this method
  --quiet                no progress bar

Scores: correlation between simulated and real activations on held-out sequences for neurons and latents;
ROC-AUC over strong and weak token pairs for attention heads (0.5 = chance).`;

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** A one-line bar on a terminal; a line every 10 s otherwise. */
function progressBar(
  stream: NodeJS.WriteStream,
  label: string,
): (p: ExplainProgress, final?: boolean) => void {
  let lastDraw = 0;
  return (p, final = false) => {
    const now = Date.now();
    if (!final && now - lastDraw < (stream.isTTY ? 200 : 10_000)) return;
    lastDraw = now;
    const worked = p.done - p.skipped;
    const rate = p.elapsedSeconds > 0 ? worked / p.elapsedSeconds : 0;
    const eta = rate > 0 ? (p.total - p.done) / rate : Number.POSITIVE_INFINITY;
    const done = p.total > 0 ? p.done / p.total : 1;
    const width = 30;
    const filled = Math.min(width, Math.round(done * width));
    const line =
      `${label} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${p.done}/${p.total} components` +
      (p.skipped > 0 ? ` (${p.skipped} already explained)` : "") +
      `, ${rate.toFixed(1)}/s, ${final ? `took ${formatDuration(p.elapsedSeconds)}` : `ETA ${formatDuration(eta)}`}`;
    if (stream.isTTY) stream.write(`\r${line}\x1b[K${final ? "\n" : ""}`);
    else stream.write(`${line}\n`);
  };
}

export async function explainCommand(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(EXPLAIN_USAGE);
    return 0;
  }
  const { values } = parseArgs({
    args: argv,
    options: {
      datasets: { type: "string", multiple: true },
      components: { type: "string", multiple: true },
      offline: { type: "boolean" },
      endpoint: { type: "string" },
      "llm-model": { type: "string" },
      "llm-api-key": { type: "string" },
      concurrency: { type: "string" },
      timeout: { type: "string" },
      "llm-cache": { type: "string" },
      "no-llm-cache": { type: "boolean" },
      "max-sequences": { type: "string" },
      force: { type: "boolean" },
      quiet: { type: "boolean" },
    },
    strict: true,
  });
  const files = values.datasets ?? [];
  if (files.length === 0) throw new UsageError(`--datasets FILE is required\n\n${EXPLAIN_USAGE}`);
  for (const file of files) if (!existsSync(file)) throw new UsageError(`--datasets: no file '${file}'`);
  let selectors: ReturnType<typeof parseComponentSpecs>;
  try {
    selectors = parseComponentSpecs(values.components ?? []);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const maxSequencesFlag = values["max-sequences"];
  const maxSequences =
    maxSequencesFlag === undefined ? null : numberFlag("max-sequences", maxSequencesFlag, 0, true);
  if (maxSequences !== null && maxSequences < 1) throw new UsageError("--max-sequences must be ≥ 1");
  const concurrency = numberFlag("concurrency", values.concurrency, 5, true);
  if (concurrency < 1) throw new UsageError("--concurrency must be ≥ 1");
  const timeoutSeconds = numberFlag("timeout", values.timeout, 60);
  if (!(timeoutSeconds > 0)) throw new UsageError("--timeout must be > 0");

  let explainer: ComponentExplainer;
  let client: ChatClient | null = null;
  if (values.offline) {
    for (const flag of ["endpoint", "llm-model", "llm-api-key"] as const) {
      if (values[flag] !== undefined) throw new UsageError(`--${flag} and --offline exclude each other`);
    }
    explainer = new OfflineExplainer();
  } else {
    try {
      client = new ChatClient(
        resolveLlmConfig({
          baseUrl: values.endpoint,
          model: values["llm-model"],
          apiKey: values["llm-api-key"],
          timeoutMs: timeoutSeconds * 1000,
          maxConcurrent: concurrency,
          cacheDir: values["no-llm-cache"] ? null : values["llm-cache"],
        }),
        { log: (line) => process.stderr.write(`${line}\n`) },
      );
    } catch (error) {
      if (error instanceof NoEndpointError) {
        console.error(`tdb explain: ${error.message}`);
        return 2;
      }
      throw new UsageError((error as Error).message);
    }
    explainer = new LlmExplainer(client);
  }

  let interrupted = false;
  const onSigint = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write(
      "\ninterrupted: finishing the components in progress (Ctrl-C again to quit at once)\n",
    );
  };
  process.on("SIGINT", onSigint);
  try {
    console.error(`tdb explain: ${explainer.description}; method ${explainer.method}`);
    for (const file of files) {
      const store = openDatasetStore(file);
      try {
        const components = selectComponents(store, selectors);
        const draw = values.quiet ? null : progressBar(process.stderr, store.name);
        const result = await explainDataset(store, {
          explainer,
          components,
          force: values.force ?? false,
          maxSequences,
          // Each component waits on several requests; keep the endpoint busy.
          concurrency: client ? concurrency * 2 : 1,
          onProgress: draw ? (p) => draw(p) : undefined,
          shouldStop: () => interrupted,
        });
        draw?.(result.progress, true);
        const p = result.progress;
        console.log(
          `${store.name}: ${p.explained} explained, ${p.skipped} already explained, ${p.inactive} not activated` +
            ` (${components.length} components, method ${explainer.method})` +
            (client ? `; ${client.stats.requests} requests, ${client.stats.cacheHits} cached` : ""),
        );
        console.log(formatScoreTable(summarizeByKind(result.scores)));
        if (result.stopped) {
          console.error(`tdb explain: stopped; run the same command again to continue`);
          return 130;
        }
      } finally {
        store.close();
      }
    }
    return 0;
  } finally {
    process.off("SIGINT", onSigint);
  }
}
