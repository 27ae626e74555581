/** `tdb serve`: loads a model (and autoencoders) and starts TDB's activation server. */
import { existsSync, readdirSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { AutoencoderFamily, TdbContext } from "@tdb/attribution";
import { defaultExcludedTokenIds } from "@tdb/attribution";
import { type DatasetStore, openDatasetStore } from "@tdb/datasets";
import { AUTOENCODER_SITES, type AutoencoderSite, type Gpt2Config } from "@tdb/model";
import { createProgressBar, loadAutoencoderFamily, loadModel } from "@tdb/model/node";
import {
  CombinedDatasetSource,
  createTdbServer,
  type DatasetSource,
  LOCALHOST_ONLY,
  LocalDatasetSource,
  PublicDatasetSource,
  parseCorsOrigins,
  setupExplanations,
  tdbPagePath,
} from "@tdb/server";
import { buildDemoDatasets, ioiExampleQuery } from "./demo-bundle.js";
import { numberFlag, UsageError } from "./main.js";

const SERVE_USAGE = `usage: tdb serve [options]

  --model DIR|NAME              model folder (Hugging Face layout) or hub name; default: assets/demo/model,
                                else ../shared/fixtures/tiny-gpt2 (relative to the repository)
  --model-name NAME             name shown to the viewer (default: the folder name)
  --mlp-autoencoder DIR         autoencoders for the MLP: {layer}.pt / {layer}.safetensors or SAELens folders
  --mlp-autoencoder-name NAME   (default: the folder name)
  --mlp-autoencoder-site SITE   mlp_post_act or resid_delta_mlp, when the files and folder name don't say
  --attn-autoencoder DIR        autoencoders for attention (resid_delta_attn)
  --attn-autoencoder-name NAME  (default: the folder name)
  --datasets SOURCE             neuron datasets for the read routes (repeatable): a file made by tdb collate
                                (short name = its base name), "openai" for OpenAI's public collated datasets,
                                or an https:// base URL laid out the same way. Default with the demo model:
                                assets/demo/datasets/*.db
  --datasets-cache DIR          on-disk cache for downloaded records (default: $XDG_CACHE_HOME/tdb-ts/datasets)
  --llm-endpoint URL            OpenAI-compatible base URL for /explain and /score (default $TDB_LLM_BASE_URL or
                                $OPENAI_BASE_URL, else OpenAI when $OPENAI_API_KEY is set); none: offline explainer
  --llm-model NAME              (default $TDB_LLM_MODEL; gpt-4o on OpenAI)
  --host HOST                   interface to bind (default 127.0.0.1)
  --port PORT                   default 8000; 0 picks a free port
  --cors-origin ORIGIN|*        also allow pages from ORIGIN (repeatable; * allows any origin)
  --quiet                       no per-request log lines
  --threads N                   matrix products over N threads (handled by tdb for every command)`;

/** The repository root, from packages/cli/{src,dist}/serve.{ts,js}. */
const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

export function defaultModelDir(
  root = REPO_ROOT,
): { model: string; autoencoders: string | null; datasets: string[] } | null {
  const demo = join(root, "assets", "demo");
  // The demo model is trained in place; until its config.json is written the folder is not a model yet.
  if (existsSync(join(demo, "model", "config.json"))) {
    const datasetsDir = join(demo, "datasets");
    const datasets = isDirectory(datasetsDir)
      ? readdirSync(datasetsDir)
          .filter((f) => f.endsWith(".db"))
          .sort()
          .map((f) => join(datasetsDir, f))
      : [];
    return { model: join(demo, "model"), autoencoders: join(demo, "autoencoders"), datasets };
  }
  const tiny = resolve(root, "..", "shared", "fixtures", "tiny-gpt2");
  if (isDirectory(tiny)) return { model: tiny, autoencoders: null, datasets: [] };
  return null;
}

function parseSite(value: string | undefined, flag: string): AutoencoderSite | undefined {
  if (value === undefined) return undefined;
  if (!(AUTOENCODER_SITES as readonly string[]).includes(value)) {
    throw new UsageError(`--${flag} must be one of ${AUTOENCODER_SITES.join(", ")}, got '${value}'`);
  }
  return value as AutoencoderSite;
}

function requireFolder(path: string, flag: string): string {
  if (!existsSync(path)) throw new UsageError(`--${flag}: folder '${path}' does not exist`);
  if (!isDirectory(path)) throw new UsageError(`--${flag}: '${path}' is not a folder`);
  return path;
}

/** The family must attach where its role says and fit the model's layers and widths. */
export function checkAutoencoderFits(
  family: AutoencoderFamily,
  role: "mlp" | "attention",
  config: Gpt2Config,
  flag: string,
): void {
  const allowed: AutoencoderSite[] =
    role === "mlp" ? ["mlp_post_act", "resid_delta_mlp"] : ["resid_delta_attn"];
  if (!allowed.includes(family.site)) {
    throw new Error(
      `--${flag}: these autoencoders attach at ${family.site}; ${role} autoencoders attach at ${allowed.join(" or ")}`,
    );
  }
  const width = family.site === "mlp_post_act" ? config.nInner : config.nEmbd;
  for (const [layer, ae] of family.byLayer) {
    if (layer >= config.nLayer) {
      throw new Error(
        `--${flag}: there is an autoencoder for layer ${layer}, but the model has ${config.nLayer} layers`,
      );
    }
    if (ae.nInputs !== width) {
      throw new Error(
        `--${flag}: layer ${layer} reads ${ae.nInputs} values, but ${family.site} of this model has ${width}`,
      );
    }
  }
}

function describeFamily(family: AutoencoderFamily & { droppedDeadLatents?: number }): string {
  const layers = [...family.byLayer.keys()];
  const latents = [...new Set([...family.byLayer.values()].map((ae) => ae.nLatents))].join("/");
  const dropped = family.droppedDeadLatents ? `, ${family.droppedDeadLatents} dead latents dropped` : "";
  return `${family.name} (${family.site}, layer${layers.length > 1 ? "s" : ""} ${layers.join(",")}, ${latents} latents${dropped})`;
}

function defaultCacheDir(): string {
  const base = process.env.XDG_CACHE_HOME || join(process.env.HOME || ".", ".cache");
  return join(base, "tdb-ts", "datasets");
}

export async function serveCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: "string" },
      "model-name": { type: "string" },
      "mlp-autoencoder": { type: "string" },
      "mlp-autoencoder-name": { type: "string" },
      "mlp-autoencoder-site": { type: "string" },
      "attn-autoencoder": { type: "string" },
      "attn-autoencoder-name": { type: "string" },
      datasets: { type: "string", multiple: true },
      "datasets-cache": { type: "string" },
      "llm-endpoint": { type: "string" },
      "llm-model": { type: "string" },
      host: { type: "string" },
      port: { type: "string" },
      "cors-origin": { type: "string", multiple: true },
      quiet: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    console.log(SERVE_USAGE);
    return 0;
  }
  const port = numberFlag("port", values.port, 8000, true);
  if (port < 0 || port > 65535) throw new UsageError(`--port must be between 0 and 65535, got ${port}`);
  const host = values.host ?? "127.0.0.1";
  if (host.trim() === "") throw new UsageError("--host must not be empty");
  let cors = LOCALHOST_ONLY;
  try {
    cors = parseCorsOrigins(values["cors-origin"] ?? []);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const mlpSite = parseSite(values["mlp-autoencoder-site"], "mlp-autoencoder-site");
  if (mlpSite === "resid_delta_attn") {
    throw new UsageError("--mlp-autoencoder-site must be mlp_post_act or resid_delta_mlp");
  }
  const mlpDir = values["mlp-autoencoder"] && requireFolder(values["mlp-autoencoder"], "mlp-autoencoder");
  const attnDir = values["attn-autoencoder"] && requireFolder(values["attn-autoencoder"], "attn-autoencoder");
  for (const [flag, dir] of [
    ["mlp-autoencoder-name", values["mlp-autoencoder"]],
    ["attn-autoencoder-name", values["attn-autoencoder"]],
  ] as const) {
    if (values[flag] !== undefined && !dir)
      throw new UsageError(`--${flag} needs --${flag.replace(/-name$/, "")}`);
  }
  const datasetSources: DatasetSource[] = [];
  const stores: DatasetStore[] = [];
  for (const spec of values.datasets ?? []) {
    if (spec === "openai") {
      datasetSources.push(
        new PublicDatasetSource({ cacheDir: values["datasets-cache"] ?? defaultCacheDir() }),
      );
    } else if (/^https?:\/\//.test(spec)) {
      datasetSources.push(
        new PublicDatasetSource({ baseUrl: spec, cacheDir: values["datasets-cache"] ?? defaultCacheDir() }),
      );
    } else {
      stores.push(openLocalDataset(spec));
    }
  }

  // Model: the flag, else the demo model (with its autoencoders), else the tiny test fixture.
  let modelSource = values.model;
  let demoAutoencoders: string | null = null;
  if (modelSource === undefined) {
    const fallback = defaultModelDir();
    if (!fallback) {
      throw new UsageError(
        `no --model given, and neither ${join(REPO_ROOT, "assets/demo/model")} nor ${resolve(REPO_ROOT, "../shared/fixtures/tiny-gpt2")} exists`,
      );
    }
    modelSource = fallback.model;
    demoAutoencoders = fallback.autoencoders;
    if (values.datasets === undefined) {
      // demo.db is (re)built when missing or built from another bundle; other .db files there are served as found.
      const demoDb = join(dirname(modelSource), "datasets", "demo.db");
      const wantsDemo = fallback.datasets.length === 0 || fallback.datasets.includes(demoDb);
      const built = demoAutoencoders && wantsDemo && (await buildDemoDatasets(dirname(modelSource)));
      const files = built ? [...new Set([...fallback.datasets, built])] : fallback.datasets;
      for (const file of files) stores.push(openLocalDataset(file));
    }
    console.error(`tdb serve: no --model given; serving ${modelSource}`);
  }
  const loaded = await loadModel(modelSource, { onProgress: createProgressBar() });
  const modelName =
    values["model-name"] ?? (demoAutoencoders ? "demo" : basename(modelSource.replace(/[/\\]+$/, "")));

  // Explicit folders must load; the demo's own autoencoders are optional (they may still be training).
  const mlpDemo = !mlpDir && demoAutoencoders ? existingFolder(join(demoAutoencoders, "mlp_post_act")) : null;
  const attnDemo =
    !attnDir && demoAutoencoders ? existingFolder(join(demoAutoencoders, "resid_delta_attn")) : null;
  const loadRole = async (
    folder: string,
    role: "mlp" | "attention",
    optional: boolean,
  ): Promise<AutoencoderFamily | null> => {
    const flag = role === "mlp" ? "mlp-autoencoder" : "attn-autoencoder";
    try {
      // TDB's viewer splits page paths at "_", so the demo folders (mlp_post_act, …) are named with "-".
      const name = values[`${flag}-name`] ?? (optional ? basename(folder).replaceAll("_", "-") : undefined);
      const options = { name, site: role === "mlp" ? mlpSite : undefined };
      const family = await loadAutoencoderFamily(folder, options).catch((error: Error) => {
        // An attention family can only sit at resid_delta_attn, so an unlabelled one is taken to be that.
        if (role === "attention" && /cannot tell where/.test(error.message)) {
          return loadAutoencoderFamily(folder, { ...options, site: "resid_delta_attn" });
        }
        throw error;
      });
      checkAutoencoderFits(family, role, loaded.config, flag);
      return family;
    } catch (error) {
      if (!optional) throw error;
      console.error(`tdb serve: skipping the demo autoencoders in ${folder}: ${(error as Error).message}`);
      return null;
    }
  };
  const mlpFolder = mlpDir || mlpDemo;
  const attnFolder = attnDir || attnDemo;
  const mlpAutoencoder = mlpFolder ? await loadRole(mlpFolder, "mlp", !mlpDir) : null;
  const attentionAutoencoder = attnFolder ? await loadRole(attnFolder, "attention", !attnDir) : null;

  const tdb: TdbContext = {
    model: loaded.model,
    tokenizer: loaded.tokenizer,
    modelName,
    mlpAutoencoder,
    attentionAutoencoder,
    excludedTokenIds: defaultExcludedTokenIds(loaded.tokenizer),
  };
  const viewerDir = join(REPO_ROOT, "packages", "viewer", "dist");
  if (stores.length > 0) datasetSources.unshift(new LocalDatasetSource(stores));
  const datasets =
    datasetSources.length === 0
      ? null
      : datasetSources.length === 1
        ? datasetSources[0]
        : new CombinedDatasetSource(datasetSources);
  // /explain, /score, /existing_explanations (packages/explain); local dataset files go in `stores`.
  const explanations =
    datasets &&
    setupExplanations({
      source: datasets,
      stores,
      llm: { baseUrl: values["llm-endpoint"], model: values["llm-model"] },
      cacheDir: join(values["datasets-cache"] ?? defaultCacheDir(), "..", "explanations"),
      log: (line) => console.error(line),
    });
  const server = createTdbServer({
    tdb,
    datasets: explanations ? explanations.datasets : datasets,
    explainer: explanations ? explanations.explainer : null,
    cors,
    viewerDir: isDirectory(viewerDir) ? viewerDir : null,
    logRequests: !values.quiet,
  });

  // Signal handlers go in before anything is printed: a supervisor may signal as soon as it sees the URL.
  const stopped = new Promise<number>((resolveExit) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        console.error(`tdb serve: ${signal} again, exiting now`);
        process.exit(130);
      }
      stopping = true;
      console.error(`tdb serve: ${signal}, finishing open requests and shutting down`);
      const force = setTimeout(() => {
        console.error("tdb serve: requests still open after 10 s; closing them");
        server.server.closeAllConnections();
      }, 10_000);
      force.unref();
      server.close().then(() => {
        process.off("SIGINT", onInt);
        process.off("SIGTERM", onTerm);
        resolveExit(0);
      });
    };
    const onInt = () => stop("SIGINT");
    const onTerm = () => stop("SIGTERM");
    process.on("SIGINT", onInt);
    process.on("SIGTERM", onTerm);
  });

  let address: { host: string; port: number; url: string };
  try {
    address = await server.listen(port, host);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EADDRINUSE") {
      throw new Error(
        `port ${port} on ${host} is already in use; pick another with --port (0 picks a free one)`,
      );
    }
    if (code === "EACCES")
      throw new Error(`not allowed to listen on ${host}:${port} (ports below 1024 need privileges)`);
    if (code === "EADDRNOTAVAIL" || code === "ENOTFOUND") {
      throw new Error(`cannot bind --host ${host}: no such local address`);
    }
    throw error;
  }
  const { config } = loaded;
  console.log(`tdb serve: ${modelName} (${config.nLayer} layers, d=${config.nEmbd}) from ${loaded.dir}`);
  if (mlpAutoencoder) console.log(`tdb serve: MLP autoencoder ${describeFamily(mlpAutoencoder)}`);
  if (attentionAutoencoder)
    console.log(`tdb serve: attention autoencoder ${describeFamily(attentionAutoencoder)}`);
  if (datasets) console.log(`tdb serve: datasets from ${datasets.description}`);
  if (explanations) console.log(`tdb serve: explanations by ${explanations.explainer.description}`);
  if (modelName.includes("_")) {
    console.log(
      `tdb serve: note: TDB's viewer splits page paths at "_", so a model name with "_" confuses it`,
    );
  }
  const wildcard = address.host === "0.0.0.0" || address.host === "::";
  if (!["127.0.0.1", "::1"].includes(address.host)) {
    console.log(
      `tdb serve: warning: listening on ${address.host}; anyone who can reach this port can run the model`,
    );
  }
  const openHost = wildcard ? "127.0.0.1" : address.host.includes(":") ? `[${address.host}]` : address.host;
  // The demo opens on its IOI example.
  const query = demoAutoencoders ? ioiExampleQuery() : "";
  console.log(`TDB: http://${openHost}:${address.port}${tdbPagePath(tdb)}${query}`);
  console.log(`listening on ${address.url}`);

  return stopped;
}

/** A collated dataset file from `tdb collate`; its short name is the base name without extension. */
function openLocalDataset(file: string): DatasetStore {
  if (!existsSync(file)) {
    throw new UsageError(
      `--datasets '${file}': no such file (expected "openai", an https:// URL or a tdb collate file)`,
    );
  }
  try {
    return openDatasetStore(file);
  } catch (error) {
    throw new UsageError(`--datasets '${file}': not a readable dataset file: ${(error as Error).message}`);
  }
}

function existingFolder(path: string): string | null {
  return isDirectory(path) ? path : null;
}

export { SERVE_USAGE };
