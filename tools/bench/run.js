// Benchmark runner (`npm run bench`): prints one JSON object per result line. With --json nothing else is printed.
// Benchmarks import the built packages, so run `npm run build` first.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { benchCollate } from "./collate.mjs";
import { benchGemm } from "./gemm.mjs";
import { benchModel, benchRequestAgain } from "./model.mjs";

const jsonOnly = process.argv.includes("--json");
const suites = [
  ["gemm", benchGemm],
  ["model", benchModel],
  ["torch baseline (dev machines with .venv only)", () => benchTorch("torch_gpt2.py", 1)],
  ["our request again, after the torch baseline (host drift)", benchRequestAgain],
  ["torch baseline, 2 threads", () => benchTorch("torch_gpt2.py", 2)],
  ["collate", benchCollate],
  ["torch forward, collation shapes (dev machines with .venv only)", () => benchTorch("torch_forward.py", 1)],
  ["torch forward, collation shapes, 2 threads", () => benchTorch("torch_forward.py", 2)],
];

/** PyTorch's numbers on this machine in the same run, so ratios compare like with like. */
async function benchTorch(file, threads) {
  const python = new URL("../../.venv/bin/python", import.meta.url).pathname;
  if (!existsSync(python)) return [];
  const script = new URL(`./${file}`, import.meta.url).pathname;
  const n = String(threads);
  const env = {
    ...process.env,
    OMP_NUM_THREADS: n,
    OPENBLAS_NUM_THREADS: n,
    MKL_NUM_THREADS: n,
    TDB_BENCH_THREADS: n,
  };
  const out = execFileSync(python, [script], { env, encoding: "utf8" });
  return out
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line));
}

// `--suite N` runs suite N alone and prints its result lines (the runner's child processes).
const suiteArg = process.argv.indexOf("--suite");
if (suiteArg >= 0) {
  const [, run] = suites[Number(process.argv[suiteArg + 1])];
  for (const result of await run()) console.log(JSON.stringify(result));
  process.exit(0);
}

// Each suite runs in a fresh process, so that what one leaves behind cannot slow the next: models not yet
// collected keep their prepacked weight copies (~650 MB after the model suite), which count against the GEMM's
// prepack budget, and the heap stays grown.
const all = new Map();
for (const [index, [name]] of suites.entries()) {
  if (!jsonOnly) console.log(`# ${name}`);
  const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), "--suite", String(index)], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    maxBuffer: 64 * 1024 * 1024,
  });
  for (const line of out.split("\n").filter((l) => l.startsWith("{"))) {
    const result = JSON.parse(line);
    all.set(result.bench, result);
    console.log(JSON.stringify(result));
  }
}
// Ratios against PyTorch measured in this same run (> 1 means we are faster).
const ratio = (ours, theirs, label = "") => {
  const a = all.get(ours);
  const b = all.get(theirs);
  if (a && b)
    console.log(
      JSON.stringify({
        bench: `${ours}-vs-torch${label}`,
        speedup: Number((b.median_ms / a.median_ms).toFixed(3)),
      }),
    );
};
// The ratio uses our request line from before PyTorch's; this one, from after it, shows the host's drift.
ratio("gpt2-small-tdb-request-t32-after-torch", "torch-gpt2-small-forward-backward-t32");
// One thread against one thread, and two against two (the -2t lines).
for (const suffix of ["", "-2t"]) {
  ratio(`gpt2-small-forward-t32${suffix}`, `torch-gpt2-small-forward-t32${suffix}`);
  ratio(`gpt2-small-tdb-request-t32${suffix}`, `torch-gpt2-small-forward-backward-t32${suffix}`);
  // Like for like: PyTorch's forward+backward plus the same vocabulary scorings (not the baseline).
  ratio(
    `gpt2-small-tdb-request-t32${suffix}`,
    `torch-gpt2-small-forward-backward-scoring-t32${suffix}`,
    "-scoring",
  );
  // Collation throughput against PyTorch's forward on the same shapes (8 sequences of 64 tokens, batched); the
  // -steady line (sequences 41–56 of a run, one thread only) against the same baseline.
  for (const window of suffix === "" ? ["", "-steady"] : [""]) {
    const ours = all.get(`collate-gpt2-small-shaped${suffix}${window}`);
    const theirs = all.get(`torch-gpt2-small-forward-8x64${suffix}`);
    if (ours && theirs)
      console.log(
        JSON.stringify({
          bench: `collate-gpt2-small-shaped${suffix}${window}-vs-torch-forward`,
          speedup: Number((ours.tokens_per_s / theirs.tokens_per_s).toFixed(3)),
        }),
      );
  }
}
