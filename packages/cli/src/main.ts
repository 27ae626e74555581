import { parseArgs } from "node:util";
import { generate } from "@tdb/model";
import { createProgressBar, loadModel } from "@tdb/model/node";
import { applyThreadsFlag } from "./threads.js";

export class UsageError extends Error {
  override name = "UsageError";
}

const USAGE = `usage: tdb <command> [options]      (tdb <command> --help for a command's options)

commands:
  serve      [--model DIR|NAME] [--mlp-autoencoder DIR] [--attn-autoencoder DIR] [--datasets FILE|openai]
             [--host 127.0.0.1] [--port 8000]
             Starts TDB's activation server and viewer (default model: the embedded demo model).
  generate   --model DIR|NAME --prompt TEXT [--max-tokens N] [--temperature T] [--top-p P] [--seed S]
             Prints the prompt followed by its continuation (greedy unless --temperature > 0).
  collate    --model DIR|NAME --corpus FILE|NAME --out FILE [--seq-len 64] [--top-k 20] [--shard I/N]
             Collates top-activating dataset examples into an SQLite file; 'collate merge' joins shards.
  explain    --datasets FILE [--offline | --endpoint URL --llm-model NAME]
             Writes explanations and scores for a collated dataset's components.
  train-sae  --model DIR|NAME --site SITE --layer L --corpus FILE|NAME --out DIR
             Trains a sparse autoencoder on one layer's activations.

generate, serve and collate take --threads N: matrix products over N threads (default 2 where 2+ cores; 1 = one
thread). They use the native GEMM where npm run build could compile it, else WebAssembly (TDB_GEMM=wasm|native).

A NAME is one of gpt2, gpt2-medium, gpt2-large, gpt2-xl, distilgpt2 (downloaded once from the Hugging Face
hub into $HF_HOME; HF_ENDPOINT is honoured). A DIR is a folder in Hugging Face layout.`;

type Command = (argv: string[]) => Promise<number>;

const COMMANDS: Record<string, Command> = {
  generate: generateCommand,
  serve: async (argv) => (await import("./serve.js")).serveCommand(argv),
  "train-sae": async (argv) => (await import("./train-sae.js")).trainSaeCommand(argv),
  collate: async (argv) => (await import("./collate.js")).collateCommand(argv),
  explain: async (argv) => (await import("./explain.js")).explainCommand(argv),
};

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    console.log(USAGE);
    return command === undefined ? 2 : 0;
  }
  const run = COMMANDS[command];
  if (!run) {
    console.error(`tdb: unknown command '${command}'\n\n${USAGE}`);
    return 2;
  }
  try {
    return await run(["generate", "serve", "collate"].includes(command) ? applyThreadsFlag(rest) : rest);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      console.error(`tdb ${command}: ${message}\n\n${USAGE}`);
      return 2;
    }
    console.error(`tdb ${command}: ${message}`);
    return 1;
  }
}

/** A finite number from a flag, or a usage error naming the flag. */
export function numberFlag(
  name: string,
  value: string | undefined,
  fallback: number,
  integer = false,
): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    throw new UsageError(`--${name} expects ${integer ? "a whole number" : "a number"}, got '${value}'`);
  }
  return n;
}

const GENERATE_USAGE = `usage: tdb generate --model DIR|NAME --prompt TEXT [options]

Prints the prompt followed by its continuation.

  --model DIR|NAME     model folder (Hugging Face layout) or hub name (gpt2, gpt2-medium, …)
  --prompt TEXT        the text to continue
  --max-tokens N       new tokens (default 20; stops at the model's context)
  --temperature T      0 (default) = greedy; > 0 samples
  --top-p P            nucleus sampling mass in (0, 1] (default 1)
  --seed S             sampling seed (default 0)
  --threads N          matrix products over N threads (1 = one thread)`;

async function generateCommand(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(GENERATE_USAGE);
    return 0;
  }
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: "string" },
      prompt: { type: "string" },
      "max-tokens": { type: "string" },
      temperature: { type: "string" },
      "top-p": { type: "string" },
      seed: { type: "string" },
    },
    strict: true,
  });
  if (!values.model) throw new UsageError("--model is required");
  if (values.prompt === undefined) throw new UsageError("--prompt is required");
  const maxNewTokens = numberFlag("max-tokens", values["max-tokens"], 20, true);
  const temperature = numberFlag("temperature", values.temperature, 0);
  const topP = numberFlag("top-p", values["top-p"], 1);
  const seed = numberFlag("seed", values.seed, 0, true);
  if (maxNewTokens < 0) throw new UsageError("--max-tokens must be ≥ 0");
  if (temperature < 0) throw new UsageError("--temperature must be ≥ 0");
  if (!(topP > 0 && topP <= 1)) throw new UsageError("--top-p must be in (0, 1]");

  const { model, tokenizer } = await loadModel(values.model, { onProgress: createProgressBar() });
  const prompt = tokenizer.encode(values.prompt);
  if (prompt.length === 0) throw new UsageError("--prompt must not be empty");
  const room = model.config.nPositions - prompt.length;
  if (room < 0)
    throw new UsageError(
      `the prompt has ${prompt.length} tokens; the model's context is ${model.config.nPositions}`,
    );
  process.stdout.write(values.prompt);
  // Decode incrementally so multi-byte characters split across tokens print correctly.
  const produced: number[] = [];
  let printed = "";
  generate(model, prompt, {
    maxNewTokens: Math.min(maxNewTokens, room),
    temperature,
    topP,
    seed,
    onToken: (id) => {
      produced.push(id);
      const text = tokenizer.decode(produced);
      const stable = text.endsWith("\uFFFD") ? text.slice(0, text.lastIndexOf("\uFFFD")) : text;
      if (stable.length > printed.length) {
        process.stdout.write(stable.slice(printed.length));
        printed = stable;
      }
    },
  });
  const text = tokenizer.decode(produced);
  process.stdout.write(`${text.slice(printed.length)}\n`);
  if (maxNewTokens > room)
    console.error(`tdb generate: stopped at the model's context of ${model.config.nPositions} tokens`);
  return 0;
}
