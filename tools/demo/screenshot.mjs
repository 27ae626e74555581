/**
 * Re-makes the README's screenshot (docs/images/demo-ioi.png, 1280×800): `tdb serve` with no arguments (the demo
 * bundle in assets/demo) opened on the IOI example URL it prints, node table sorted by direct effect.
 *
 *   npm run build && node tools/demo/screenshot.mjs [OUT.png] [--ablated --head L:H]
 *
 * OUT.png defaults to docs/images/demo-ioi.png. `--ablated --head 2:7` also writes OUT-ablated.png after clicking
 * Ablate on attn_L2_7 at the last token (README guide step 2). Needs Debian's /usr/bin/chromium (driven by
 * playwright-core) and a build (packages/cli/dist, packages/viewer/dist). The first start of the server may spend
 * a few minutes building assets/demo/datasets/demo.db. Run from the repository root.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

// Debian's Chromium and the flags it needs here, shared with the viewer's e2e test.
const LAUNCH = JSON.parse(readFileSync(new URL("../chromium-launch.json", import.meta.url), "utf8"));
const CHROMIUM = LAUNCH.executablePath;
const SERVER_START_TIMEOUT_MS = 10 * 60_000;
const PAGE_TIMEOUT_MS = 120_000;

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { ablated: { type: "boolean", default: false }, head: { type: "string" } },
});
const out = resolve(positionals[0] ?? "docs/images/demo-ioi.png");
let head = null;
if (values.ablated) {
  const match = /^(\d+):(\d+)$/.exec(values.head ?? "");
  if (!match) fail("--ablated needs --head L:H (e.g. --head 2:7)");
  head = `attn_L${match[1]}_${match[2]}`;
}
for (const [path, hint] of [
  ["packages/cli/dist/main.js", "run npm run build"],
  ["packages/viewer/dist/index.html", "run npm run build"],
  [CHROMIUM, "apt-get install chromium"],
]) {
  if (!existsSync(path)) fail(`${path} is missing: ${hint} (and run this from the repository root)`);
}

const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(0)} s`;
let server = null;
let browser = null;
process.on("SIGINT", () => cleanUp().then(() => process.exit(130)));
process.on("SIGTERM", () => cleanUp().then(() => process.exit(143)));

try {
  const url = await startServer();
  console.error(`screenshot: server ready after ${elapsed()}: ${url}`);
  browser = await chromium.launch(LAUNCH);
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(PAGE_TIMEOUT_MS);
  page.on("pageerror", (error) => console.error(`screenshot: page error: ${error.message}`));
  await page.goto(url);
  let seq = await waitForResult(page, 0);
  await page.locator(".node-table tbody tr.node-row").first().waitFor();
  await page.locator(".loss-line").waitFor();
  await page.locator(".logits-card").waitFor();
  // README guide step 1: the node table sorted by direct effect, largest first (the viewer's default).
  const directEffect = page.getByRole("columnheader", { name: /Direct effect/ });
  for (let i = 0; i < 2 && (await directEffect.getAttribute("aria-sort")) !== "descending"; i++) {
    await directEffect.getByRole("button").click();
  }
  if ((await directEffect.getAttribute("aria-sort")) !== "descending")
    throw new Error("could not sort the node table by direct effect");
  await shoot(page, out);

  if (head) {
    seq = await ablate(page, head, seq);
    await shoot(page, out.replace(/(\.png)?$/, "-ablated.png"));
  }
  console.error(`screenshot: done in ${elapsed()}`);
} catch (error) {
  console.error(`screenshot: failed after ${elapsed()}: ${error instanceof Error ? error.message : error}`);
  process.exitCode = 1;
} finally {
  await cleanUp();
}

function fail(message) {
  console.error(`screenshot: ${message}`);
  process.exit(2);
}

/** Starts `tdb serve` (demo bundle, a free port) and resolves with the TDB page URL it prints. */
function startServer() {
  // Its own process group, so the collation it may run on first start goes down with it.
  const child = spawn(process.execPath, ["packages/cli/bin/tdb.js", "serve", "--port", "0", "--quiet"], {
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  server = child;
  return new Promise((resolveUrl, reject) => {
    let output = "";
    const timer = setTimeout(
      () => reject(new Error("tdb serve printed no TDB URL within 10 min (its output is above)")),
      SERVER_START_TIMEOUT_MS,
    );
    const onData = (chunk) => {
      const text = chunk.toString();
      output += text;
      // Progress lines (model loading, the first-start dataset build) go through, prefixed.
      for (const line of text.split(/[\r\n]+/)) if (line.trim()) console.error(`  [tdb serve] ${line}`);
      const match = /^TDB: (http:\/\/\S+tdb_alpha\S*)/m.exec(output);
      if (match) {
        clearTimeout(timer);
        resolveUrl(match[1]);
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      server = null;
      reject(
        new Error(`tdb serve exited (${signal ?? `code ${code}`}) before printing its URL (output above)`),
      );
    });
  });
}

/** Waits until the TDB page shows a result newer than `after`; returns its sequence number. */
async function waitForResult(page, after) {
  await page.waitForFunction(
    (previous) => {
      const el = document.querySelector(".tdb-page");
      return el?.dataset.status === "ready" && Number(el.dataset.resultSeq) > previous;
    },
    after,
    { timeout: PAGE_TIMEOUT_MS },
  );
  return page.$eval(".tdb-page", (el) => Number(el.dataset.resultSeq));
}

/** Clicks Ablate on `name` at the last token it appears at (where the direction of interest is read). */
async function ablate(page, name, seq) {
  const filter = page.getByRole("searchbox", { name: "Filter nodes" });
  await filter.fill(name);
  const prefix = `Ablate ${name} at token `;
  await page
    .waitForFunction(
      (p) => [...document.querySelectorAll(".node-table button")].some((b) => b.ariaLabel?.startsWith(p)),
      prefix,
      { timeout: 10_000 },
    )
    .catch(() => {
      throw new Error(`no Ablate button for ${name} in the node table (is --head right for this model?)`);
    });
  const labels = await page.$$eval(
    ".node-table button",
    (buttons, p) => buttons.map((b) => b.ariaLabel ?? "").filter((l) => l.startsWith(p)),
    prefix,
  );
  const last = Math.max(...labels.map((l) => Number(l.slice(prefix.length))));
  await page.getByRole("button", { name: `${prefix}${last}`, exact: true }).click();
  const next = await waitForResult(page, seq);
  await filter.fill("");
  await page.waitForFunction(() => document.querySelectorAll(".node-table tr.node-row").length > 1);
  return next;
}

async function shoot(page, path) {
  mkdirSync(dirname(path), { recursive: true });
  // No focus ring (the filter box after an ablation) and the page's top, as a reader first sees it.
  await page.evaluate(() => {
    if (document.activeElement instanceof HTMLElement) document.activeElement.blur();
    window.scrollTo(0, 0);
  });
  await page.screenshot({ path, fullPage: false });
  console.log(`wrote ${path} (${statSync(path).size} bytes, 1280×800)`);
}

/** Closes the browser and stops the server (its whole process group), SIGKILL if it lingers. */
async function cleanUp() {
  await browser?.close().catch(() => {});
  browser = null;
  const child = server;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((done) => child.once("exit", done));
  const signalGroup = (signal) => {
    try {
      process.kill(-child.pid, signal);
    } catch {
      // Already gone.
    }
  };
  signalGroup("SIGTERM");
  const timer = setTimeout(() => signalGroup("SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}
