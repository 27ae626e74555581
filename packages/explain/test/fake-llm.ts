/**
 * A local stand-in for an OpenAI-compatible chat-completions server (node:http on 127.0.0.1): answers in the
 * API's shapes, and can be told to fail (status codes, malformed bodies, no answer at all) request by request.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface ChatBody {
  model: string;
  messages: { role: string; content: string }[];
  max_tokens: number;
  temperature: number;
  logprobs?: boolean;
  top_logprobs?: number;
}

export type FakeReply =
  | { kind: "chat"; content: string; topLogprobs?: { token: string; logprob: number }[] }
  | { kind: "status"; status: number; body: string; headers?: Record<string, string> }
  | { kind: "raw"; body: string }
  /** Never answers (the client must time out). */
  | { kind: "hang" };

export interface FakeLlm {
  /** Base URL, ending in /v1. */
  baseUrl: string;
  /** Every request received, in order. */
  requests: { body: ChatBody; authorization: string | undefined; path: string }[];
  /** Highest number of requests in progress at once. */
  maxInFlight: () => number;
  /** Replies queued for the next requests (consumed first), then `respond` answers. */
  queue: FakeReply[];
  respond: (body: ChatBody) => FakeReply;
  /** Each chat answer waits this long (to observe concurrency). */
  delayMs: number;
  close: () => Promise<void>;
}

export function chatCompletion(content: string, topLogprobs?: { token: string; logprob: number }[]): object {
  return {
    id: "chatcmpl-fake",
    object: "chat.completion",
    created: 0,
    model: "fake",
    choices: [
      {
        index: 0,
        message: { role: "assistant", content },
        logprobs: topLogprobs
          ? {
              content: [
                {
                  token: topLogprobs[0]?.token ?? "",
                  logprob: topLogprobs[0]?.logprob ?? 0,
                  top_logprobs: topLogprobs,
                },
              ],
            }
          : null,
        finish_reason: "stop",
      },
    ],
    usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
  };
}

export async function startFakeLlm(respond: (body: ChatBody) => FakeReply): Promise<FakeLlm> {
  let inFlight = 0;
  let maxInFlight = 0;
  const hanging = new Set<ServerResponse>();
  const fake: FakeLlm = {
    baseUrl: "",
    requests: [],
    maxInFlight: () => maxInFlight,
    queue: [],
    respond,
    delayMs: 0,
    close: async () => {},
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", async () => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      try {
        if (req.method !== "POST" || req.url !== "/v1/chat/completions") {
          res.writeHead(404, { "Content-Type": "application/json" });
          res.end(JSON.stringify({ error: { message: `no route ${req.method} ${req.url}` } }));
          return;
        }
        const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as ChatBody;
        fake.requests.push({ body, authorization: req.headers.authorization, path: req.url });
        const reply = fake.queue.shift() ?? fake.respond(body);
        if (fake.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, fake.delayMs));
        switch (reply.kind) {
          case "chat":
            res.writeHead(200, { "Content-Type": "application/json" });
            res.end(JSON.stringify(chatCompletion(reply.content, reply.topLogprobs)));
            return;
          case "status":
            res.writeHead(reply.status, { "Content-Type": "application/json", ...reply.headers });
            res.end(reply.body);
            return;
          case "raw":
            res.writeHead(200, { "Content-Type": "application/json" });
            res.end(reply.body);
            return;
          case "hang":
            hanging.add(res);
            return;
        }
      } finally {
        inFlight--;
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  fake.baseUrl = `http://127.0.0.1:${port}/v1`;
  fake.close = () =>
    new Promise((resolve) => {
      for (const res of hanging) res.destroy();
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return fake;
}

/** The last user message of a request. */
export function lastUser(body: ChatBody): string {
  for (let i = body.messages.length - 1; i >= 0; i--)
    if (body.messages[i].role === "user") return body.messages[i].content;
  return "";
}

/**
 * A tiny "model" following simple rules, so expected scores can be computed independently:
 * - neuron explainer: names the (trimmed) token with the highest activation in the last block;
 * - simulator: 10 on tokens whose trimmed text is quoted in to_find, else 0;
 * - head explainer: "attends to the previous token";
 * - pair scorer: p("1") = 0.9 when the marked "to" token directly precedes the "from" token, else 0.2.
 */
export function ruleBasedModel(body: ChatBody): FakeReply {
  const user = lastUser(body);
  if (user.trimEnd().endsWith("this neuron activates for")) {
    const block = user.slice(user.lastIndexOf("Activations:"));
    let best = "";
    let bestValue = -1;
    for (const line of block.split("\n")) {
      const tab = line.lastIndexOf("\t");
      if (tab < 0) continue;
      const value = Number(line.slice(tab + 1));
      if (value > bestValue) {
        bestValue = value;
        best = line.slice(0, tab).trim();
      }
    }
    return { kind: "chat", content: ` the token "${best}".` };
  }
  if (user.trimEnd().endsWith("this attention head")) {
    return { kind: "chat", content: " attends to the previous token." };
  }
  if (body.logprobs) {
    const adjacent = user.includes("**[[");
    const one = adjacent ? 0.9 : 0.2;
    return {
      kind: "chat",
      content: adjacent ? "1" : "0",
      topLogprobs: [
        { token: adjacent ? "1" : "0", logprob: Math.log(adjacent ? one : 1 - one) },
        { token: adjacent ? "0" : "1", logprob: Math.log(adjacent ? 1 - one : one) },
      ],
    };
  }
  const request = JSON.parse(user) as { to_find: string; activations: { token: string }[] };
  const wanted = [...request.to_find.matchAll(/"([^"]*)"/g)].map((m) => m[1]);
  return {
    kind: "chat",
    content: JSON.stringify({
      to_find: request.to_find,
      document: request.activations.map((a) => a.token).join(""),
      activations: request.activations.map((a) => ({
        token: a.token,
        activation: wanted.includes(a.token.trim()) ? 10 : 0,
      })),
    }),
  };
}
