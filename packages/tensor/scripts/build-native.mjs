// Builds the optional native GEMM (native/gemm.c → native/build/Release/tdb_gemm.node) with node-gyp, from source,
// against the Node headers already on this machine (nothing is downloaded). Run by the root `npm run build`.
// Where it cannot be built (no C compiler, no headers, not x86-64) it says why and exits 0: the WebAssembly kernel
// is used instead. TDB_REQUIRE_NATIVE_GEMM=1 makes a failed build an error (CI); TDB_NATIVE_GEMM=0 skips it.
import { spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { arch } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const nativeDir = join(dirname(fileURLToPath(import.meta.url)), "..", "native");
const output = join(nativeDir, "build", "Release", "tdb_gemm.node");
const sources = [
  "gemm.c",
  "screen.c",
  "screen.h",
  "heads.c",
  "heads.h",
  "elementwise.c",
  "elementwise.h",
  "napi-args.h",
  "binding.gyp",
].map((name) => join(nativeDir, name));
const required = process.env.TDB_REQUIRE_NATIVE_GEMM === "1";

function skip(reason) {
  const message = `native GEMM not built: ${reason}; the WebAssembly kernel will be used`;
  if (required) {
    console.error(`build-native: ${message} (TDB_REQUIRE_NATIVE_GEMM=1)`);
    process.exit(1);
  }
  console.warn(`build-native: ${message}`);
  process.exit(0);
}

if (process.env.TDB_NATIVE_GEMM === "0") skip("TDB_NATIVE_GEMM=0");
if (arch() !== "x64") skip(`its kernels are for x86-64, this is ${arch()}`);
if (existsSync(output)) {
  const built = statSync(output).mtimeMs;
  if (sources.every((file) => statSync(file).mtimeMs <= built)) process.exit(0);
}

// npm hands its bundled node-gyp to scripts; outside npm, look where npm installs it beside node.
const nodeGyp = [
  process.env.npm_config_node_gyp,
  join(
    dirname(process.execPath),
    "..",
    "lib",
    "node_modules",
    "npm",
    "node_modules",
    "node-gyp",
    "bin",
    "node-gyp.js",
  ),
].find((path) => path && existsSync(path));
if (!nodeGyp) skip("node-gyp was not found (it comes with npm)");

// Headers: npm's nodedir setting, else the ones installed beside this node (Debian's nodejs, official tarballs).
const localPrefix = join(dirname(process.execPath), "..");
const nodedir =
  process.env.npm_config_nodedir ||
  (existsSync(join(localPrefix, "include", "node", "node_api.h")) ? localPrefix : undefined);
if (!nodedir) skip("no Node headers on this machine (set npm's nodedir)");

const result = spawnSync(process.execPath, [nodeGyp, "rebuild", `--nodedir=${nodedir}`], {
  cwd: nativeDir,
  encoding: "utf8",
  env: { ...process.env, npm_config_nodedir: nodedir },
});
if (result.status !== 0 || !existsSync(output)) {
  const log = `${result.stdout ?? ""}${result.stderr ?? ""}`
    .split("\n")
    .filter((line) => !line.startsWith("gyp info"));
  console.warn(log.slice(-20).join("\n"));
  skip(`node-gyp failed (exit ${result.status ?? result.error?.message})`);
}
console.log(`build-native: built ${output}`);
