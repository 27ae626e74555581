/**
 * 20 different valid /batched_tdb requests sent at once to `tdb serve` (the built CLI) get the same answers as
 * the same requests sent one at a time: the FIFO queue keeps inferences from interfering.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { postJson, type ServeProcess, startServe, TINY_ARGS } from "./serve-process.js";

let serve: ServeProcess;
beforeAll(async () => {
  serve = await startServe(TINY_ARGS);
});
afterAll(async () => {
  expect(await serve?.stop()).toBe(0);
});

const PROMPTS = [
  ["When Mary and John went", " Mary", " John"],
  ["The cat sat on the", " mat", " dog"],
  ["Paris is the capital of", " France", " Germany"],
  ["One, two, three,", " four", " five"],
  ["She opened the door and", " saw", " heard"],
] as const;

function request(i: number) {
  const [prompt, target, distractor] = PROMPTS[i % PROMPTS.length];
  const sub: Record<string, unknown> = {
    prompt,
    targetTokens: [target],
    distractorTokens: i % 3 === 0 ? [] : [distractor],
    componentTypeForMlp: "neuron",
    componentTypeForAttention: "attention_head",
    topAndBottomKForNodeTable: 1 + (i % 2),
    hideEarlyLayersWhenAblating: true,
  };
  if (i % 4 === 1) {
    sub.nodeAblations = [
      {
        nodeIndex: {
          nodeType: "mlp_neuron",
          tensorIndices: [2, (i * 37) % 256],
          layerIndex: i % 2,
          passType: "forward",
        },
        value: 0,
      },
    ];
  }
  if (i % 4 === 2) {
    sub.nodeAblations = [
      {
        nodeIndex: {
          nodeType: "attention_head",
          tensorIndices: [3, 1, i % 4],
          layerIndex: 1,
          passType: "forward",
        },
        value: 0,
      },
    ];
  }
  if (i % 5 === 3) {
    sub.upstreamNodeToTrace = {
      nodeIndex: { nodeType: "attention_head", tensorIndices: [3, 1, 2], layerIndex: 1, passType: "forward" },
      attentionTraceType: ["Q", "K", "QK", "V"][i % 4],
    };
  }
  // Some requests compare two prompts of the same length.
  const subRequests = i % 6 === 5 ? [sub, { ...sub, prompt: prompt.replace(/^\S+/, "Then") }] : [sub];
  return { subRequests };
}

/** The answer without its timing (the only field that legitimately differs between runs). */
function comparable(json: unknown): string {
  return JSON.stringify(json).replace(/"inferenceTime":[^,]*/g, "");
}

describe("concurrent requests", () => {
  it("20 at once give the same answers as one by one", async () => {
    const requests = Array.from({ length: 20 }, (_, i) => request(i));
    const together = await Promise.all(requests.map((r) => postJson(`${serve.url}/batched_tdb`, r)));
    const alone = [];
    for (const r of requests) alone.push(await postJson(`${serve.url}/batched_tdb`, r));
    for (let i = 0; i < requests.length; i++) {
      expect(together[i].status, JSON.stringify(together[i].json).slice(0, 300)).toBe(200);
      expect(alone[i].status).toBe(200);
      expect(comparable(together[i].json), `request ${i}`).toBe(comparable(alone[i].json));
    }
    // The answers really differ from one another (the comparison is not vacuous).
    expect(new Set(together.map((r) => comparable(r.json))).size).toBe(20);
  });

  it("model_info is answered while inferences are queued", async () => {
    const queued = Array.from({ length: 6 }, (_, i) => postJson(`${serve.url}/batched_tdb`, request(i)));
    const info = await postJson(`${serve.url}/model_info`, null);
    expect(info.status).toBe(200);
    expect((info.json as { modelName: string }).modelName).toBe("tiny-gpt2");
    for (const r of await Promise.all(queued)) expect(r.status).toBe(200);
  });
});
