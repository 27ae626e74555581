/**
 * End to end: Debian's Chromium (playwright-core) drives the built viewer served by a real `tdb serve` on the
 * tiny fixture model. Each step saves a screenshot under test-artifacts/viewer-e2e/. Needs /usr/bin/chromium
 * (.ci/run installs it) and a build (`npm run build`); the viewer bundle is rebuilt here when it is stale.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { openDatasetStore } from "@tdb/datasets";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const REPO = fileURLToPath(new URL("../../../../", import.meta.url));
/** Debian's Chromium and the flags it needs here (shared with tools/demo/screenshot.mjs). */
const LAUNCH = JSON.parse(readFileSync(join(REPO, "tools/chromium-launch.json"), "utf8")) as {
  executablePath: string;
  args: string[];
};
const CHROMIUM = LAUNCH.executablePath;
const VIEWER = join(REPO, "packages/viewer");
const ARTIFACTS = join(REPO, "test-artifacts/viewer-e2e");
const TINY = fileURLToPath(new URL("../../../../../shared/fixtures/tiny-gpt2", import.meta.url));
const IOI_PROMPT = "When Mary and John went to the store, John gave a drink to";
/** Independent values (PyTorch / Hugging Face, tools/golden/make_batched_reference.py). */
const GOLDEN = JSON.parse(
  readFileSync(join(REPO, "packages/attribution/test/golden/batched-reference.json"), "utf8"),
) as {
  residualLens: { token: number; depths: { tokens: string[]; logits: number[] }[] };
  valueTraceIntoNeuron: {
    upstreamNodeToTrace: unknown;
    downstreamNodeToTrace: unknown;
    activationValueForBackwardPass: number;
  };
};
/** The viewer's token display (packages/viewer/src/format.ts). */
const shownToken = (token: string) => token.replace(/\n/g, "↵").replace(/\t/g, "⇥").replace(/ /g, "·");
/** Read routes answer 503 while the server has no datasets; those failures are expected, nothing else is. */
const READ_ROUTES = [
  "/neuron_datasets_metadata",
  "/neuron_record",
  "/attention_head_record",
  "/existing_explanations",
  "/explain",
  "/score",
];

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

/** Builds packages/viewer/dist when it is missing or older than the sources. */
function ensureViewerBuilt(): void {
  const index = join(VIEWER, "dist/index.html");
  const sources = Math.max(newestMtime(join(VIEWER, "src")), statSync(join(VIEWER, "index.html")).mtimeMs);
  if (existsSync(index) && statSync(index).mtimeMs >= sources) return;
  const vite = join(REPO, "node_modules/.bin/vite");
  const result = spawnSync(vite, ["build", "--logLevel", "warn"], { cwd: VIEWER, encoding: "utf8" });
  if (result.status !== 0) throw new Error(`vite build failed:\n${result.stdout}\n${result.stderr}`);
}

/** Collates the tiny model over the built-in corpus and writes offline explanations (a real dataset, ~1 s). */
function collateTinyDataset(dir: string): string {
  const cli = join(REPO, "packages/cli/bin/tdb.js");
  const file = join(dir, "tiny.sqlite");
  const run = (args: string[]) => {
    const result = spawnSync(process.execPath, [cli, ...args], { cwd: REPO, encoding: "utf8" });
    if (result.status !== 0) throw new Error(`tdb ${args[0]} failed:\n${result.stdout}\n${result.stderr}`);
  };
  run([
    "collate",
    "--model",
    TINY,
    "--corpus",
    "builtin:tiny",
    "--out",
    file,
    "--seq-len",
    "32",
    "--top-k",
    "8",
    "--random",
    "4",
  ]);
  run(["explain", "--datasets", file, "--offline"]);
  return file;
}

/** `tdb serve` on the tiny model (extra flags, e.g. --datasets FILE); resolves once it listens. */
function startServer(extraArgs: string[] = []): Promise<{ child: ChildProcess; url: string }> {
  const cli = join(REPO, "packages/cli/bin/tdb.js");
  if (!existsSync(join(REPO, "packages/cli/dist/main.js")))
    throw new Error("packages/cli is not built: run npm run build");
  const child = spawn(
    process.execPath,
    [cli, "serve", "--model", TINY, "--model-name", "tiny-gpt2", "--port", "0", "--quiet", ...extraArgs],
    { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] },
  );
  return new Promise((resolve, reject) => {
    let output = "";
    const timer = setTimeout(() => reject(new Error(`tdb serve did not start:\n${output}`)), 60_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /listening on (http:\/\/\S+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve({ child, url: match[1].replace(/\/$/, "") });
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`tdb serve exited with ${code}:\n${output}`));
    });
  });
}

interface Problems {
  consoleErrors: string[];
  unexpectedResponses: string[];
}

function watch(page: Page, problems: Problems): void {
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    // Chromium logs every non-2xx fetch; those are checked by URL below.
    if (message.text().startsWith("Failed to load resource: the server responded with a status of")) return;
    problems.consoleErrors.push(message.text());
  });
  page.on("pageerror", (error) => problems.consoleErrors.push(`pageerror: ${error.message}`));
  page.on("response", (response) => {
    if (response.status() < 400) return;
    const path = new URL(response.url()).pathname;
    if (response.status() === 503 && READ_ROUTES.includes(path)) return;
    problems.unexpectedResponses.push(`${response.status()} ${path}`);
  });
}

const resultSeq = (page: Page) =>
  page.$eval(".tdb-page", (el) => Number((el as HTMLElement).dataset.resultSeq ?? 0));

/** Waits until the TDB page shows a result newer than `after`. */
async function waitForResult(page: Page, after: number): Promise<number> {
  await page.waitForFunction(
    (previous) => {
      const el = document.querySelector<HTMLElement>(".tdb-page");
      return el?.dataset.status === "ready" && Number(el.dataset.resultSeq) > previous;
    },
    after,
    { timeout: 30_000 },
  );
  return resultSeq(page);
}

/** Visible rows of the node table: name and the text of every cell. */
function tableRows(page: Page): Promise<string[][]> {
  return page.$$eval(".node-table tbody tr.node-row", (rows) =>
    rows.map((row) => Array.from(row.querySelectorAll("td")).map((td) => (td.textContent ?? "").trim())),
  );
}

/** Response received → result committed / painted, for result `seq` (performance entries of the page). */
async function renderTimes(page: Page, seq: number): Promise<{ commitMs: number; paintMs: number }> {
  await page.waitForFunction(
    (n) =>
      performance.getEntriesByName("tdb-render").some((m) => (m as PerformanceMeasure).detail?.seq === n),
    seq,
  );
  return page.evaluate((n) => {
    const find = (name: string) =>
      (performance.getEntriesByName(name) as PerformanceMeasure[]).find((m) => m.detail?.seq === n)
        ?.duration ?? -1;
    return { commitMs: find("tdb-commit"), paintMs: find("tdb-render") };
  }, seq);
}

const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`viewer e2e skipped: ${CHROMIUM} is missing (apt-get install chromium)`);

describe.skipIf(!haveChromium)("viewer in Chromium against tdb serve", () => {
  let server: { child: ChildProcess; url: string };
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  const problems: Problems = { consoleErrors: [], unexpectedResponses: [] };
  const timings: Record<string, { commitMs: number; paintMs: number }> = {};
  let step = 0;
  const shot = async (name: string, target: Page = page) => {
    step += 1;
    await target.screenshot({
      path: join(ARTIFACTS, `${String(step).padStart(2, "0")}-${name}.png`),
      fullPage: true,
    });
  };
  let sharedUrl = "";
  let sharedSnapshot: { rows: string[][]; trace: string; loss: string; sort: string | null } | null = null;

  beforeAll(async () => {
    rmSync(ARTIFACTS, { recursive: true, force: true });
    mkdirSync(ARTIFACTS, { recursive: true });
    ensureViewerBuilt();
    server = await startServer();
    browser = await chromium.launch(LAUNCH);
    context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.url });
    page = await context.newPage();
    watch(page, problems);
  });

  afterAll(async () => {
    writeFileSync(join(ARTIFACTS, "timings.json"), `${JSON.stringify(timings, null, 2)}\n`);
    await browser?.close();
    server?.child.kill();
  });

  it("welcome page: model info and the link to TDB", async () => {
    await page.goto(`${server.url}/`);
    await page.getByRole("link", { name: /Open the Transformer Debugger/ }).waitFor();
    expect(await page.locator(".facts").textContent()).toContain("tiny-gpt2");
    expect(await page.textContent("body")).toContain("No dataset loaded");
    await shot("welcome");
    await page.getByRole("link", { name: /Open the Transformer Debugger/ }).click();
    await page.waitForURL(/\/tiny-gpt2\/tdb_alpha$/);
    await waitForResult(page, 0);
  });

  it("submits the IOI prompt and shows the node table", async () => {
    const before = await resultSeq(page);
    await page.getByLabel("Prompt", { exact: true }).fill(IOI_PROMPT);
    await page.getByLabel("Target token 1").fill(" Mary");
    await page.getByLabel("Distractor token 1").fill(" John");
    await page.getByRole("button", { name: "Submit", exact: true }).click();
    const seq = await waitForResult(page, before);
    const rows = await tableRows(page);
    expect(rows.length).toBe(20);
    // Default order: direct effect, descending — the original TDB page showed attn_L1_3 first (1.33).
    expect(rows[0][1]).toContain("attn_L1_3");
    expect(rows[0]).toContain("1.33");
    expect(await page.locator(".node-table-card").textContent()).toContain("118 nodes");
    expect(await page.locator(".loss-line").textContent()).toContain("2.267");
    expect(new URL(page.url()).searchParams.get("prompt")).toBe(IOI_PROMPT);
    timings.ioi = await renderTimes(page, seq);
    await shot("ioi-node-table");
  });

  it("computes the residual-stream logit lens at the last token (/batched, later layers' writes zeroed)", async () => {
    const { token, depths } = GOLDEN.residualLens;
    await page
      .locator(".lens-card")
      .getByRole("button", { name: `Compute the logit lens at token ${token}` })
      .click();
    const table = page.getByRole("table", { name: `Logit lens at token ${token}` });
    await table.waitFor();
    const rows = await table.locator("tr").evaluateAll((trs) =>
      trs.map((tr) => ({
        label: tr.querySelector("th")?.textContent ?? "",
        tokens: Array.from(tr.querySelectorAll(".pill")).map((pill) => pill.textContent ?? ""),
        logits: Array.from(tr.querySelectorAll(".pill")).map((pill) =>
          Number((pill.getAttribute("title") ?? "").replace("logit ", "")),
        ),
      })),
    );
    expect(rows.map((r) => r.label)).toEqual(["embeddings", "after L0", "L1 (output)"]);
    // Each depth: ln_f + unembedding of Hugging Face's hidden state after that many layers.
    rows.forEach((row, depth) => {
      expect(row.tokens).toEqual(depths[depth].tokens.slice(0, 8).map(shownToken));
      row.logits.forEach((logit, i) => {
        expect(Math.abs(logit - depths[depth].logits[i])).toBeLessThan(1.5e-3);
      });
    });
    expect(new URL(page.url()).searchParams.get("lensToken")).toBe(String(token));
    await shot("logit-lens");
  });

  it("shows the server's 400 readably for a multi-token target", async () => {
    const before = await resultSeq(page);
    await page.getByLabel("Target token 1").fill(" Maryxyz");
    await page.getByRole("button", { name: "Submit", exact: true }).click();
    const alert = page.getByRole("alert");
    await alert.waitFor();
    expect(await alert.textContent()).toContain(
      "' Maryxyz' decoded to [5335, 5431, 89]; wanted exactly 1 token",
    );
    await shot("single-token-error");
    // The readable error came from a 400 we provoked on purpose.
    problems.unexpectedResponses = problems.unexpectedResponses.filter((r) => r !== "400 /batched_tdb");
    await page.goBack();
    await waitForResult(page, before);
  });

  it("sorts by direct effect", async () => {
    const header = page.getByRole("columnheader", { name: /Direct effect/ });
    expect(await header.getAttribute("aria-sort")).toBe("descending");
    await header.getByRole("button").click();
    await page.waitForFunction(() =>
      document.querySelector('.node-table th[aria-sort="ascending"]')?.textContent?.includes("Direct effect"),
    );
    const ascending = (await tableRows(page)).map((r) => Number(r[6]));
    expect([...ascending].sort((a, b) => a - b)).toEqual(ascending);
    expect(new URL(page.url()).searchParams.get("sort")).toBe("direction_write.left:asc");
    await shot("sorted-ascending");
    await header.getByRole("button").click();
    await page.waitForFunction(() =>
      document
        .querySelector('.node-table th[aria-sort="descending"]')
        ?.textContent?.includes("Direct effect"),
    );
    expect((await tableRows(page))[0][1]).toContain("attn_L1_3");
  });

  it("ablates a node and shows the diff columns against the automatic baseline", async () => {
    const before = await resultSeq(page);
    await page.getByRole("button", { name: "Ablate attn_L1_3 at token 13" }).click();
    const seq = await waitForResult(page, before);
    timings.ablation = await renderTimes(page, seq);
    for (const name of ["Ablated", "Diff", "Baseline"]) {
      expect(await page.locator(".node-table").getByRole("columnheader", { name, exact: true }).count()).toBe(
        4,
      );
    }
    // Zeroed, the ablated node leaves the first page; the filter finds it.
    await page.getByRole("searchbox", { name: "Filter nodes" }).fill("attn_L1_3");
    await page.waitForFunction(() => document.querySelectorAll(".node-table tr.node-row").length < 20);
    const rows = await tableRows(page);
    expect(rows.every((r) => r[1].startsWith("attn_L1_3"))).toBe(true);
    const row = rows.find((r) => r[1].startsWith("attn_L1_3") && r[3] === "·to (13)" && r[2] === ", (8)");
    // Activation: ablated 0, diff −0.67, baseline 0.67 (the baseline value TDB showed).
    expect(row?.slice(4, 7)).toEqual(["0.00", "-0.67", "0.67"]);
    const ablations = page.getByRole("region", { name: "Active ablations" });
    expect(await ablations.textContent()).toContain("attn_L1_3");
    await shot("ablated-diff");
    await page.getByRole("searchbox", { name: "Filter nodes" }).fill("");
    const next = await resultSeq(page);
    await ablations.getByRole("button", { name: "Remove ablation of attn_L1_3" }).click();
    await waitForResult(page, next);
    expect(await page.getByRole("region", { name: "Active ablations" }).count()).toBe(0);
  });

  it("traces a head through V", async () => {
    const before = await resultSeq(page);
    await page.getByRole("button", { name: "Trace attn_L1_3 at token 13 through value" }).click();
    timings.traceV = await renderTimes(page, await waitForResult(page, before));
    const trace = page.getByRole("region", { name: "Trace" });
    expect(await trace.textContent()).toContain("Tracing through value");
    // tdb-maths §7.4: the V trace's scalar is that node's baseline direct effect, 1.326116.
    expect(await page.locator(".loss-line").textContent()).toContain("1.326");
    await shot("trace-v");
  });

  it("traces a head's value path into a downstream node (Into)", async () => {
    const g = GOLDEN.valueTraceIntoNeuron;
    const into = await context.newPage();
    watch(into, problems);
    const query = new URLSearchParams({
      prompt: IOI_PROMPT,
      targetTokens: '[" Mary"]',
      distractorTokens: '[" John"]',
      upstreamNodeToTrace: JSON.stringify(g.upstreamNodeToTrace),
    });
    await into.goto(`${server.url}/tiny-gpt2/tdb_alpha?${query}`);
    const traced = await waitForResult(into, 0);
    await into.getByRole("searchbox", { name: "Filter nodes" }).fill("mlp_L0_67");
    await into.getByRole("button", { name: "Trace V into mlp_L0_67 at token 13" }).click();
    await waitForResult(into, traced);
    expect(JSON.parse(new URL(into.url()).searchParams.get("downstreamNodeToTrace") ?? "null")).toEqual(
      g.downstreamNodeToTrace,
    );
    expect(await into.getByRole("region", { name: "Trace" }).textContent()).toContain(
      "increase mlp_L0_67 at ·to (13)",
    );
    const line = (await into.locator(".loss-line").textContent()) ?? "";
    expect(line).toContain("value-path direct effect on mlp_L0_67");
    // PyTorch autograd (tdb_torch.py) on the same trace; the loss is not computed with a downstream node.
    expect(line).toContain(g.activationValueForBackwardPass.toFixed(3));
    expect(line).not.toContain("Direction of interest");
    expect(await into.locator("tr.node-row", { hasText: "downstream" }).count()).toBe(1);
    await shot("trace-v-into-neuron", into);
    const before = await resultSeq(into);
    await into.getByRole("button", { name: "Back to the direction of interest" }).click();
    await waitForResult(into, before);
    expect(await into.locator(".loss-line").textContent()).toContain("Direction of interest");
    expect(new URL(into.url()).searchParams.get("downstreamNodeToTrace")).toBeNull();
    await into.close();
  });

  it("reopens the same investigation from a copied URL", async () => {
    sharedUrl = page.url();
    const header = page.getByRole("columnheader", { name: /Estimated total effect/ });
    await header.getByRole("button").click();
    await page.waitForFunction(
      () => new URL(location.href).searchParams.get("sort") === "act_times_grad.left:desc",
    );
    await page.getByRole("button", { name: "Copy link" }).click();
    await page.getByRole("button", { name: "Link copied" }).waitFor();
    sharedUrl = await page.evaluate(() => navigator.clipboard.readText());
    expect(sharedUrl).toBe(page.url());
    sharedSnapshot = {
      rows: await tableRows(page),
      trace: (await page.getByRole("region", { name: "Trace" }).textContent()) ?? "",
      loss: (await page.locator(".loss-line").textContent()) ?? "",
      sort: new URL(sharedUrl).searchParams.get("sort"),
    };
    const fresh = await context.newPage();
    watch(fresh, problems);
    await fresh.goto(sharedUrl);
    timings.reload = await renderTimes(fresh, await waitForResult(fresh, 0));
    expect(await tableRows(fresh)).toEqual(sharedSnapshot.rows);
    expect(await fresh.getByRole("region", { name: "Trace" }).textContent()).toBe(sharedSnapshot.trace);
    expect(await fresh.locator(".loss-line").textContent()).toBe(sharedSnapshot.loss);
    expect(await fresh.getByLabel("Prompt", { exact: true }).inputValue()).toBe(IOI_PROMPT);
    expect(
      await fresh.getByRole("columnheader", { name: /Estimated total effect/ }).getAttribute("aria-sort"),
    ).toBe("descending");
    await shot("reloaded-url", fresh);
    await fresh.close();
  });

  it("compares two prompts (swap, left/diff/right)", async () => {
    const before = await resultSeq(page);
    await page.getByRole("button", { name: "Clear trace" }).click();
    const cleared = await waitForResult(page, before);
    await page.getByRole("button", { name: "Add second prompt" }).click();
    const added = await waitForResult(page, cleared);
    await page
      .getByLabel("Right prompt", { exact: true })
      .fill(IOI_PROMPT.replace(", John gave", ", Mary gave"));
    await page.getByRole("button", { name: "Swap right target and distractor tokens" }).click();
    await page.getByRole("button", { name: "Submit", exact: true }).click();
    await waitForResult(page, added);
    for (const name of ["Left", "Diff", "Right"]) {
      expect(await page.locator(".node-table").getByRole("columnheader", { name, exact: true }).count()).toBe(
        4,
      );
    }
    expect(await page.locator(".index-cell.mismatch").count()).toBe(1);
    await shot("compare-prompts");
    const done = await resultSeq(page);
    await page.getByRole("button", { name: "Remove second prompt" }).click();
    await waitForResult(page, done);
  });

  it("is usable at 1280×800 and every control is reachable by keyboard", async () => {
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow).toBeLessThanOrEqual(0);
    // Nothing clickable is a bare div/span: every control is a button, link, or form field.
    const clickableNonControls = await page.$$eval(
      "[onclick], div[role=button], span[role=button]",
      (els) => els.length,
    );
    expect(clickableNonControls).toBe(0);
    const focusables = await page.$$eval(
      "a[href], button:not([disabled]), input:not([disabled]), select, textarea, summary, [tabindex='0']",
      (els) =>
        els
          .filter((el) => (el as HTMLElement).offsetParent !== null || el.tagName === "BODY")
          .map((el, i) => {
            (el as HTMLElement).dataset.e2eFocus = String(i);
            return i;
          }).length,
    );
    expect(focusables).toBeGreaterThan(40);
    await page.evaluate(() => (document.activeElement as HTMLElement | null)?.blur());
    const reached = new Set<string>();
    let focusStyled = 0;
    for (let i = 0; i < focusables + 20; i++) {
      await page.keyboard.press("Tab");
      const info = await page.evaluate(() => {
        const el = document.activeElement as HTMLElement | null;
        if (!el || el === document.body) return null;
        const style = getComputedStyle(el);
        return {
          id: el.dataset.e2eFocus ?? null,
          outlined: style.outlineStyle !== "none" && style.outlineWidth !== "0px",
        };
      });
      if (info?.id) reached.add(info.id);
      if (info?.outlined) focusStyled += 1;
    }
    expect(reached.size).toBe(focusables);
    // Keyboard focus is visible (a :focus-visible outline) on everything reached.
    expect(focusStyled).toBeGreaterThanOrEqual(focusables);
    await page.keyboard.press("Shift+Tab");
    await shot("keyboard-focus");
  });

  it("opens a node page and navigates with the arrow keys", async () => {
    await page.getByRole("link", { name: "mlp_L0_191" }).first().click();
    await page.waitForURL(/\/tiny-gpt2\/mlp_neuron\/0\/191\?promptsOfInterest=/);
    await page.getByRole("heading", { name: /MLP neuron mlp_L0_191/ }).waitFor();
    await page.locator(".prompt-activations .heat-tok").first().waitFor();
    expect(await page.locator(".prompt-activations .heat-tok").count()).toBe(14);
    await page.getByText("Output tokens upvoted by this component").waitFor();
    expect(await page.textContent("body")).toContain("No dataset loaded");
    await shot("node-page-mlp");
    await page.keyboard.press("ArrowRight");
    await page.waitForURL(/\/mlp_neuron\/0\/192\?/);
    await page.keyboard.press("ArrowUp");
    await page.waitForURL(/\/mlp_neuron\/1\/192\?/);
    await page.getByRole("heading", { name: /mlp_L1_192/ }).waitFor();
    await page.goBack();
    await page.goBack();
    await page.waitForURL(/\/mlp_neuron\/0\/191\?/);

    await page.goto(
      `${server.url}/tiny-gpt2/attention_head/1/3?promptsOfInterest=${encodeURIComponent(IOI_PROMPT)}`,
    );
    const heatmap = page.getByRole("slider", { name: /Token pairs/ });
    await heatmap.waitFor();
    await page.locator(".heat-tok.pair").nth(8).hover();
    await page.waitForFunction(() => document.querySelectorAll(".heat-tok.pair.active").length === 1);
    await page.getByText("Attention pattern on this prompt").click();
    await page.locator(".head-pattern .pattern-cell").first().waitFor();
    await page.locator(".heat-tok.pair").nth(8).hover();
    await page.waitForTimeout(600); // the colours fade in over 500 ms
    await shot("node-page-head-hover");
  });

  it("with a collated dataset (tdb serve --datasets FILE): dataset list, examples, explanations in the node table and on node pages", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tdb-viewer-e2e-"));
    const file = collateTinyDataset(dir);
    // What the pages should show, read from the file before the server opens it.
    const store = openDatasetStore(file, { readonly: true });
    const stored = store.explanations("mlp_neuron", 0, 191)[0];
    const topCount = store.neuronRecord("mlp_neuron", 0, 191)?.topActivations.length ?? 0;
    const headRecord = store.attentionHeadRecord(1, 3);
    store.close();
    expect(stored?.score).not.toBeNull();
    expect(topCount).toBeGreaterThan(6);
    expect(headRecord).not.toBeNull();
    const withDatasets = await startServer(["--datasets", file]);
    const withData = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const p = await withData.newPage();
    watch(p, problems);
    try {
      await p.goto(`${withDatasets.url}/`);
      await p.getByRole("link", { name: /tiny: MLP neurons/ }).waitFor();
      expect(await p.textContent("body")).not.toContain("No dataset loaded");
      await shot("welcome-datasets", p);

      const ioi = `prompt=${encodeURIComponent(IOI_PROMPT)}&targetTokens=${encodeURIComponent('[" Mary"]')}&distractorTokens=${encodeURIComponent('[" John"]')}`;
      await p.goto(`${withDatasets.url}/tiny-gpt2/tdb_alpha?${ioi}`);
      await waitForResult(p, 0);
      await p.getByRole("button", { name: "Details for mlp_L0_191 at token 13" }).click();
      const detail = p.locator(".detail-row .explanation");
      await detail.getByText(stored.explanation, { exact: false }).waitFor();
      // Then /score of that explanation: the stored one keeps its stored score.
      await expect
        .poll(() => detail.textContent(), { timeout: 10_000 })
        .toContain((stored.score ?? 0).toFixed(2));
      await shot("node-table-explanation", p);

      await p.goto(`${withDatasets.url}/tiny-gpt2/mlp_neuron/0/191`);
      await p.getByRole("heading", { name: "Top activating" }).waitFor();
      expect(await p.locator(".example-card").count()).toBe(6 + 3);
      await p.getByRole("button", { name: `Show all ${topCount}` }).click();
      expect(await p.locator(".example-card").count()).toBe(topCount + 3);
      expect(await p.locator(".explanation-quote").textContent()).toContain(stored.explanation);
      // Scoring the stored explanation again returns its stored score (TDB keeps scores of known texts).
      await p.getByRole("radio", { name: "Score an explanation" }).check();
      await p.getByLabel("Explanation", { exact: true }).fill(stored.explanation);
      await p.getByRole("button", { name: "Score", exact: true }).click();
      await p
        .locator(".scored")
        .getByText(`score ${(stored.score ?? 0).toFixed(2)}`)
        .waitFor();
      // A new explanation is scored by the server's offline simulator.
      await p.getByLabel("Explanation", { exact: true }).fill("numbers and degrees");
      await p.getByRole("button", { name: "Score", exact: true }).click();
      const fresh = p.locator(".scored", { hasText: "numbers and degrees" }).locator("strong");
      await fresh.waitFor();
      expect(await fresh.textContent()).toMatch(/^-?\d+\.\d\d$/);
      await shot("node-page-dataset", p);

      await p.goto(`${withDatasets.url}/tiny-gpt2/attention_head/1/3`);
      await p.locator(".example-card [role=slider]").first().waitFor();
      expect(await p.locator(".example-card [role=slider]").count()).toBe(6 + 3);
      await p.locator(".example-card .heat-tok.pair").nth(5).hover();
      await p.waitForTimeout(600);
      await shot("node-page-head-dataset", p);
    } finally {
      await withData.close();
      withDatasets.child.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("logs no console errors and no unexpected failed requests", () => {
    expect(problems.consoleErrors).toEqual([]);
    expect(problems.unexpectedResponses).toEqual([]);
  });

  it("measures response → first paint of each TDB result (reported, not asserted)", () => {
    const measured = Object.entries(timings);
    expect(measured.length).toBe(4);
    for (const [, t] of measured) expect(t.paintMs).toBeGreaterThanOrEqual(t.commitMs);
    console.log(
      `viewer e2e, response received → committed / painted (ms): ${measured
        .map(([name, t]) => `${name} ${t.commitMs.toFixed(0)} / ${t.paintMs.toFixed(0)}`)
        .join(", ")}`,
    );
  });
});
