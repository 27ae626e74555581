/**
 * The server in-process (sources, no build needed): CORS, static viewer files and path safety, the placeholder
 * page, /openapi.json, body limits, the FIFO queue.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  BatchedResponseSchema,
  DerivedAttentionScalarsResponseSchema,
  DerivedScalarsResponseSchema,
  MultipleTopKDerivedScalarsResponseSchema,
  type TdbContext,
} from "@tdb/attribution";
import { loadModel } from "@tdb/model/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseCorsOrigins } from "../src/cors.js";
import { CancelledError, InferenceQueue } from "../src/queue.js";
import { ALL_ROUTES, createTdbServer, type TdbServer, type TdbServerOptions } from "../src/server.js";
import { SHARED } from "./serve-process.js";

let tdb: TdbContext;
const servers: TdbServer[] = [];
const scratch = mkdtempSync(join(tmpdir(), "tdb-server-test-"));

beforeAll(async () => {
  const { model, tokenizer } = await loadModel(`${SHARED}fixtures/tiny-gpt2`);
  tdb = { model, tokenizer, modelName: "tiny-gpt2" };
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
  rmSync(scratch, { recursive: true, force: true });
});

async function start(options: Partial<TdbServerOptions> = {}, host = "127.0.0.1"): Promise<string> {
  const server = createTdbServer({ tdb, logRequests: false, ...options });
  servers.push(server);
  return (await server.listen(0, host)).url;
}

/** A request with a chosen Host header (fetch does not allow setting it). */
function statusWithHost(url: string, host: string, origin: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const req = httpRequest(
      {
        host: "127.0.0.1",
        port: target.port,
        path: "/model_info",
        method: "POST",
        headers: { Host: host, Origin: origin },
      },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on("error", reject);
    req.end();
  });
}

describe("CORS", () => {
  it("echoes localhost origins, refuses others, answers preflights", async () => {
    const url = await start();
    for (const origin of [
      "http://localhost:1234",
      "https://127.0.0.1",
      "http://[::1]:8080",
      "http://localhost",
    ]) {
      const response = await fetch(`${url}/model_info`, { method: "POST", headers: { Origin: origin } });
      expect(response.status, origin).toBe(200);
      expect(response.headers.get("access-control-allow-origin")).toBe(origin);
      expect(response.headers.get("vary")).toBe("Origin");
    }
    for (const origin of [
      "http://localhost.evil.com",
      "http://evil.com",
      "file://",
      "http://127.0.0.1.nip.io",
    ]) {
      const response = await fetch(`${url}/model_info`, { method: "POST", headers: { Origin: origin } });
      expect(response.status, origin).toBe(403);
      expect(response.headers.get("access-control-allow-origin")).toBeNull();
    }
    const preflight = await fetch(`${url}/batched_tdb`, {
      method: "OPTIONS",
      headers: {
        Origin: "http://localhost:1234",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-methods")).toContain("POST");
    expect(preflight.headers.get("access-control-allow-headers")).toBe("content-type");
    // Errors carry the CORS headers too, so a page can read them.
    const error = await fetch(`${url}/batched_tdb`, {
      method: "POST",
      headers: { Origin: "http://localhost:1234" },
      body: "{",
    });
    expect(error.status).toBe(422);
    expect(error.headers.get("access-control-allow-origin")).toBe("http://localhost:1234");
  });

  it("same-origin pages are trusted only on a non-loopback bind (no DNS rebinding on localhost)", async () => {
    const wide = await start({}, "0.0.0.0");
    const port = new URL(wide).port;
    expect(await statusWithHost(wide, `10.1.2.3:${port}`, `http://10.1.2.3:${port}`)).toBe(200);
    expect(await statusWithHost(wide, `10.1.2.3:${port}`, `http://evil.example:${port}`)).toBe(403);
    const local = await start();
    const localPort = new URL(local).port;
    expect(
      await statusWithHost(local, `rebound.example:${localPort}`, `http://rebound.example:${localPort}`),
    ).toBe(403);
  });

  it("--cors-origin widens the policy", async () => {
    const listed = await start({ cors: parseCorsOrigins(["https://tdb.example.org"]) });
    const ok = await fetch(`${listed}/model_info`, { headers: { Origin: "https://tdb.example.org" } });
    expect(ok.status).toBe(200);
    const other = await fetch(`${listed}/model_info`, { headers: { Origin: "https://other.example.org" } });
    expect(other.status).toBe(403);
    const any = await start({ cors: parseCorsOrigins(["*"]) });
    const anyone = await fetch(`${any}/model_info`, { headers: { Origin: "https://other.example.org" } });
    expect(anyone.headers.get("access-control-allow-origin")).toBe("https://other.example.org");
    expect(() => parseCorsOrigins(["example.org"])).toThrow(/not an origin/);
    expect(() => parseCorsOrigins(["https://example.org/path"])).toThrow(/no path/);
  });
});

describe("viewer files", () => {
  it("serves files, falls back to index.html for page paths, never leaves the folder", async () => {
    const viewer = join(scratch, "viewer");
    mkdirSync(join(viewer, "assets"), { recursive: true });
    writeFileSync(join(viewer, "index.html"), "<html>viewer index</html>");
    writeFileSync(join(viewer, "assets", "app.js"), "console.log('app')");
    writeFileSync(join(viewer, ".env"), "SECRET=1");
    writeFileSync(join(scratch, "outside.txt"), "outside");
    symlinkSync(join(scratch, "outside.txt"), join(viewer, "link.txt"));
    const url = await start({ viewerDir: viewer });

    const get = async (path: string) => {
      const response = await fetch(url + path);
      return {
        status: response.status,
        type: response.headers.get("content-type"),
        text: await response.text(),
      };
    };
    expect(await get("/")).toMatchObject({ status: 200, text: "<html>viewer index</html>" });
    expect(await get("/tiny-gpt2/tdb_alpha")).toMatchObject({
      status: 200,
      text: "<html>viewer index</html>",
    });
    expect(await get("/assets/app.js")).toMatchObject({
      status: 200,
      type: "text/javascript; charset=utf-8",
    });
    expect((await get("/assets/missing.js")).status).toBe(404);
    expect((await get("/link.txt")).status).toBe(404);
    expect((await get("/..%2foutside.txt")).status).toBe(404);
    expect((await get("/assets/..%2f..%2foutside.txt")).status).toBe(404);
    expect((await get("/%2e%2e/outside.txt")).status).toBe(404);
    for (const path of ["/.env", "/assets/%2e%2e/.env"]) {
      const hidden = await get(path);
      expect(hidden.text).not.toContain("SECRET");
    }
    // API paths are not shadowed by the viewer.
    expect((await get("/model_info")).status).toBe(200);
  });

  it("without a built viewer: a page saying so, and TDB's hello for JSON clients", async () => {
    const url = await start({ viewerDir: null });
    const page = await fetch(`${url}/tiny-gpt2/tdb_alpha`);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain("viewer isn't built");
    expect(html).toContain("tiny-gpt2");
    const hello = await fetch(`${url}/`, { headers: { Accept: "application/json" } });
    expect(await hello.json()).toEqual({ Hello: "World" });
  });
});

describe("/openapi.json", () => {
  it("describes every route from the validation schemas, with resolvable references", async () => {
    const url = await start();
    const doc = (await (await fetch(`${url}/openapi.json`)).json()) as {
      openapi: string;
      paths: Record<string, Record<string, { requestBody?: unknown; responses: Record<string, unknown> }>>;
      components: { schemas: Record<string, unknown> };
    };
    expect(doc.openapi).toBe("3.1.0");
    // tdb-spec §3.1 (the viewer's "/" aside).
    const expected: Record<string, string[]> = {
      "/force_client_code_generation": ["get"],
      "/dump_memory_snapshot": ["get"],
      "/existing_explanations": ["post"],
      "/neuron_record": ["post"],
      "/attention_head_record": ["post"],
      "/neuron_datasets_metadata": ["post", "get"],
      "/explain": ["post"],
      "/score": ["post"],
      "/derived_scalars": ["post"],
      "/derived_attention_scalars": ["post"],
      "/multiple_top_k_derived_scalars": ["post"],
      "/batched": ["post"],
      "/batched_tdb": ["post"],
      "/model_info": ["post", "get"],
    };
    for (const [path, methods] of Object.entries(expected)) {
      expect(Object.keys(doc.paths[path] ?? {}).sort(), path).toEqual([...methods].sort());
    }
    expect(Object.keys(doc.paths).length).toBe(ALL_ROUTES.length);
    expect(JSON.stringify(doc.paths["/batched_tdb"].post.requestBody)).toContain(
      "#/components/schemas/BatchedTdbRequest",
    );
    const text = JSON.stringify(doc);
    const refs = [...text.matchAll(/"\$ref":"([^"]+)"/g)].map((m) => m[1]);
    expect(refs.length).toBeGreaterThan(20);
    for (const ref of refs) {
      expect(ref.startsWith("#/components/schemas/"), ref).toBe(true);
      expect(doc.components.schemas[ref.slice("#/components/schemas/".length)], ref).toBeDefined();
    }
    // Field names are the camelCase wire names.
    const tdbSpec = JSON.stringify(doc.components.schemas.BatchedTdbRequest);
    expect(tdbSpec).toContain("topAndBottomKForNodeTable");
    expect(tdbSpec).toContain("upstreamNodeToTrace");
  });
});

describe("limits", () => {
  it("refuses bodies beyond the configured size with 413 and a message", async () => {
    const url = await start({ limits: { maxBodyBytes: 2000 } });
    const big = await fetch(`${url}/batched_tdb`, {
      method: "POST",
      body: JSON.stringify({ pad: "x".repeat(3000) }),
    });
    expect(big.status).toBe(413);
    expect((await big.json()).message).toMatch(/limit is 2000 bytes/);
    const small = await fetch(`${url}/batched_tdb`, { method: "POST", body: JSON.stringify({ pad: "x" }) });
    expect(small.status).toBe(422);
  });

  it("accepts snake_case field names and GET /model_info", async () => {
    const url = await start();
    const info = await (await fetch(`${url}/model_info`)).json();
    expect(info).toEqual({
      modelName: "tiny-gpt2",
      hasMlpAutoencoder: false,
      mlpAutoencoderName: null,
      hasAttentionAutoencoder: false,
      attentionAutoencoderName: null,
      nLayers: 2,
    });
    const response = await fetch(`${url}/batched_tdb`, {
      method: "POST",
      body: JSON.stringify({
        sub_requests: [
          {
            prompt: "Hello there",
            target_tokens: [" friend"],
            distractor_tokens: [],
            component_type_for_mlp: "neuron",
            component_type_for_attention: "attention_head",
            top_and_bottom_k_for_node_table: 1,
            hide_early_layers_when_ablating: false,
          },
        ],
      }),
    });
    expect(response.status).toBe(200);
  });
});

describe("derived-scalar routes", () => {
  it("/batched, /derived_scalars, /derived_attention_scalars, /multiple_top_k_derived_scalars answer in TDB's shapes", async () => {
    const url = await start();
    const inferenceRequestSpec = {
      prompt: "When Mary and John went",
      lossFnConfig: { name: "logit_diff", targetTokens: [" Mary"], distractorTokens: [" John"] },
    };
    const post = async (path: string, body: unknown) => {
      const response = await fetch(url + path, { method: "POST", body: JSON.stringify(body) });
      return { status: response.status, json: await response.json() };
    };
    const topK = {
      specType: "multiple_top_k_derived_scalars_request_spec",
      dstListByGroupId: { activation: ["mlp_post_act"] },
      tokenIndex: null,
      topAndBottomK: 3,
    };
    const batched = await post("/batched", {
      inferenceSubRequests: [{ inferenceRequestSpec, processingRequestSpecByName: { top: topK } }],
    });
    expect(batched.status, JSON.stringify(batched.json)).toBe(200);
    BatchedResponseSchema.parse(batched.json);
    const derived = await post("/derived_scalars", {
      inferenceRequestSpec,
      derivedScalarsRequestSpec: { dst: "mlp_post_act", layerIndex: 1, activationIndex: 7, numTopTokens: 3 },
    });
    expect(derived.status, JSON.stringify(derived.json)).toBe(200);
    DerivedScalarsResponseSchema.parse(derived.json);
    const attention = await post("/derived_attention_scalars", {
      inferenceRequestSpec,
      derivedAttentionScalarsRequestSpec: {
        dst: "unflattened_attn_write_norm",
        layerIndex: 0,
        activationIndex: 2,
      },
    });
    expect(attention.status, JSON.stringify(attention.json)).toBe(200);
    DerivedAttentionScalarsResponseSchema.parse(attention.json);
    const multi = await post("/multiple_top_k_derived_scalars", {
      inferenceRequestSpec,
      multipleTopKDerivedScalarsRequestSpec: topK,
    });
    expect(multi.status, JSON.stringify(multi.json)).toBe(200);
    MultipleTopKDerivedScalarsResponseSchema.parse(multi.json);
    expect(multi.json.multipleTopKDerivedScalarsResponseData.activationsByGroupId).toEqual(
      batched.json.inferenceSubResponses[0].processingResponseDataByName.top.activationsByGroupId,
    );
    const tooMany = await post("/multiple_top_k_derived_scalars", {
      inferenceRequestSpec,
      multipleTopKDerivedScalarsRequestSpec: { ...topK, topAndBottomK: 10_000 },
    });
    expect(tooMany.status).toBe(400);
    const unknownDst = await post("/derived_scalars", {
      inferenceRequestSpec,
      derivedScalarsRequestSpec: { dst: "flattened_attn_post_softmax", layerIndex: 0, activationIndex: 0 },
    });
    expect(unknownDst.status).toBeLessThan(500);
  });
});

describe("InferenceQueue", () => {
  it("runs jobs one at a time in arrival order and refuses beyond the waiting limit", async () => {
    const queue = new InferenceQueue(2);
    const order: number[] = [];
    let running = 0;
    const job = (n: number) => async () => {
      running++;
      expect(running).toBe(1);
      await new Promise((r) => setTimeout(r, 5));
      order.push(n);
      running--;
      return n;
    };
    const results = [queue.run(job(1)), queue.run(job(2)), queue.run(job(3))];
    await expect(queue.run(job(4))).rejects.toMatchObject({ status: 503 });
    expect(await Promise.all(results)).toEqual([1, 2, 3]);
    expect(order).toEqual([1, 2, 3]);
  });

  it("skips the job of a client that went away", async () => {
    const queue = new InferenceQueue(4);
    let ran = false;
    const first = queue.run(() => 1);
    const gone = queue.run(
      () => {
        ran = true;
      },
      () => true,
    );
    await expect(gone).rejects.toBeInstanceOf(CancelledError);
    expect(await first).toBe(1);
    expect(ran).toBe(false);
  });
});
