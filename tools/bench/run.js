// Benchmark runner (`npm run bench`): prints one JSON object per result line. With --json nothing else is printed.
// Benchmarks import the built packages, so run `npm run build` first.
import { benchGemm } from "./gemm.mjs";

const jsonOnly = process.argv.includes("--json");
const suites = [["gemm", benchGemm]];

for (const [name, run] of suites) {
  if (!jsonOnly) console.log(`# ${name}`);
  for (const result of await run()) console.log(JSON.stringify(result));
}
