/**
 * Explainers and scorers on hand-made records whose answer is known (golden scores follow from the rule
 * that made the record), the metrics against numpy, and the LLM explainer / simulators against a local
 * fake endpoint whose rule-based "model" makes the expected predictions computable here.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  absoluteDeviationExplained,
  ChatClient,
  type ComponentRecord,
  correlation,
  keywordPairModel,
  keywordTokenModel,
  LlmExplainer,
  NotActivatedError,
  normalizeActivations,
  OfflineExplainer,
  parseSimulation,
  quantile,
  rocAuc,
  rSquared,
  splitRecord,
} from "../src/index.js";
import { type FakeLlm, lastUser, ruleBasedModel, startFakeLlm } from "./fake-llm.js";
import { afterGaveNeuron, bobNeuron, previousTokenHead, tokenRecord } from "./synthetic.js";

const neuron = (record: ComponentRecord["record"]): ComponentRecord => ({
  kind: "mlp_neuron",
  layer: 0,
  index: 0,
  record,
});
const head = (record: ComponentRecord["record"]): ComponentRecord => ({
  kind: "attention_head",
  layer: 0,
  index: 0,
  record,
});

describe("metrics (golden values from numpy)", () => {
  const real = [0.1, 2.0, -0.3, 4.5, 0.0, 1.2, 3.3, -1.0];
  const predicted = [0, 5, 0, 9, 1, 2, 7, 0];
  it("correlation, R², absolute deviation explained", () => {
    expect(correlation(real, predicted)).toBeCloseTo(0.9803685133060502, 12);
    expect(rSquared(real, predicted)).toBeCloseTo(-0.21231422505307873, 12);
    expect(absoluteDeviationExplained(real, predicted)).toBeCloseTo(-0.16129032258064524, 12);
    // TDB: NaN → 0 for a constant prediction.
    expect(
      correlation(
        real,
        real.map(() => 3),
      ),
    ).toBe(0);
  });
  it("quantiles (numpy's linear method)", () => {
    const sorted = [0.9, 0.1, 0.5, 0.3, 0.3, 0.7, 0.2, 0.8].sort((a, b) => a - b);
    expect([0.1, 0.25, 0.5, 0.75, 0.9].map((q) => quantile(sorted, q))).toEqual([
      expect.closeTo(0.17, 12),
      expect.closeTo(0.275, 12),
      expect.closeTo(0.4, 12),
      expect.closeTo(0.725, 12),
      expect.closeTo(0.83, 12),
    ]);
  });
  it("ROC-AUC counts ties half (7.5 of 9 pairs ordered, by hand)", () => {
    expect(rocAuc([1, 1, 0, 0, 1, 0], [0.9, 0.4, 0.4, 0.2, 0.8, 0.5])).toBeCloseTo(7.5 / 9, 12);
    expect(rocAuc([1, 1], [0.2, 0.3])).toBeNull();
  });
  it("activations scaled to 0–10 as TDB (floor, relu, capped)", () => {
    expect(normalizeActivations([0, 0.5, 1, -1, 0.99, 1.5], 1)).toEqual([0, 5, 10, 0, 9, 10]);
    expect(normalizeActivations([0.3, -2], 0)).toEqual([0, 0]);
  });
});

describe("splits", () => {
  it("uses TDB's slices with 20 top and 15 random records", () => {
    const record = tokenRecord(() => 1, 3);
    const { train, valid, scheme } = splitRecord(record);
    const top = record.mostPositiveActivationRecords;
    const random = record.randomSample;
    expect(scheme).toBe("tdb");
    expect(train).toEqual([0, 4, 8, 12, 16].map((i) => top[i]));
    expect(valid).toEqual([
      ...[2, 6, 10, 14, 18].map((i) => top[i]),
      ...[1, 4, 7, 10, 13].map((i) => random[i]),
    ]);
  });
  it("alternates top records between train and held-out when there are fewer", () => {
    const record = tokenRecord(() => 1, 3, 5, 4);
    const { train, valid, scheme } = splitRecord(record);
    const top = record.mostPositiveActivationRecords;
    expect(scheme).toBe("interleaved");
    expect(train).toEqual([top[0], top[2], top[4]]);
    expect(valid).toEqual([top[1], top[3], ...record.randomSample]);
  });
});

describe("offline explainer", () => {
  const offline = new OfflineExplainer();

  it("names the token a neuron fires on and predicts the held-out records exactly", async () => {
    const outcome = await offline.explainAndScore(neuron(bobNeuron));
    expect(outcome.explanation.startsWith('tokens " Bob"')).toBe(true);
    expect(outcome.scoreKind).toBe("correlation");
    expect(outcome.score).toBeCloseTo(1, 12);
    expect(outcome.details).toMatchObject({ split: "tdb", trainSequences: 5, scoredSequences: 10 });
  });

  it("names the preceding token of a previous-token neuron", async () => {
    const outcome = await offline.explainAndScore(neuron(afterGaveNeuron));
    expect(outcome.explanation).toMatch(/^after " gave"/);
    expect(outcome.score).toBeCloseTo(1, 12);
  });

  it("finds a previous-token head (ROC-AUC 1)", async () => {
    const outcome = await offline.explainAndScore(head(previousTokenHead));
    expect(outcome.explanation).toMatch(/^attends to the previous token/);
    expect(outcome.scoreKind).toBe("roc_auc");
    expect(outcome.score).toBe(1);
  });

  it("scores free text by keyword overlap", async () => {
    expect((await offline.score(neuron(bobNeuron), 'the name "Bob"')).score).toBeCloseTo(1, 12);
    expect((await offline.score(neuron(bobNeuron), "mentions of Bob")).score).toBeCloseTo(1, 12);
    const wrong = await offline.score(neuron(bobNeuron), 'the name "Alice"');
    expect(wrong.method).toBe("offline-keyword-overlap");
    expect(wrong.score!).toBeLessThan(0.2);
    expect((await offline.score(neuron(afterGaveNeuron), 'after "gave"')).score).toBeCloseTo(1, 12);
    expect((await offline.score(head(previousTokenHead), "the previous token")).score).toBe(1);
    expect((await offline.score(head(previousTokenHead), "attends to itself")).score!).toBeLessThan(0.6);
  });

  it("reads its own explanations back as keyword simulators", () => {
    expect(keywordTokenModel('tokens " Bob", ";"; after " gave"; e.g. "…Alice gave[ Bob]"')).toMatchObject({
      tokens: [
        [" Bob", 1],
        [";", 1],
      ],
      previous: [[" gave", 1]],
    });
    expect(
      keywordPairModel('attends to the previous token, the token 3 back; to " Bob"; from " gave"'),
    ).toMatchObject({
      offsets: [
        [1, 1],
        [3, 1],
      ],
      to: [[" Bob", 1]],
      from: [[" gave", 1]],
    });
  });

  it("refuses a component that never activates", async () => {
    const dead = tokenRecord(() => -0.1, 5);
    await expect(offline.explainAndScore(neuron(dead))).rejects.toThrow(NotActivatedError);
  });
});

describe("simulator answers", () => {
  it("reads fenced JSON and bare lists; unusable answers give zeros as TDB", () => {
    const body = JSON.stringify({
      activations: [
        { token: "a", activation: 3 },
        { token: "b", activation: "7" },
      ],
    });
    expect(parseSimulation(`Sure!\n\`\`\`json\n${body}\n\`\`\``, 2)).toEqual({
      activations: [3, 7],
      failure: null,
    });
    expect(parseSimulation("[1, 11, -2, 4]", 4).activations).toEqual([1, 0, 0, 4]);
    expect(parseSimulation(body, 3)).toEqual({
      activations: [0, 0, 0],
      failure: "2 activations for 3 tokens",
    });
    expect(parseSimulation("I cannot help with that.", 2).activations).toEqual([0, 0]);
  });
});

describe("LLM explainer against a fake endpoint", () => {
  let fake: FakeLlm;
  let explainer: LlmExplainer;
  beforeAll(async () => {
    fake = await startFakeLlm(ruleBasedModel);
    explainer = new LlmExplainer(
      new ChatClient({
        baseUrl: fake.baseUrl,
        model: "fake-model",
        apiKey: null,
        timeoutMs: 5000,
        maxConcurrent: 4,
        maxRetries: 2,
        retryBaseMs: 1,
        maxRetryDelayMs: 10,
        cacheDir: null,
      }),
    );
  });
  afterAll(async () => {
    await fake.close();
  });

  it("explains from the train records and scores by simulating the held-out ones", async () => {
    fake.requests.length = 0;
    const outcome = await explainer.explainAndScore(neuron(bobNeuron));
    expect(outcome.explanation).toBe('the token "Bob"');
    expect(outcome.method).toBe("llm:fake-model");
    expect(outcome.score).toBeCloseTo(1, 12);
    const [explain, ...simulations] = fake.requests.map((r) => r.body);
    expect(explain).toMatchObject({ model: "fake-model", max_tokens: 60, temperature: 1 });
    const prompt = lastUser(explain);
    expect(prompt.match(/<start>/g)).toHaveLength(5);
    expect(prompt).toContain(" Bob\t10\n");
    expect(simulations).toHaveLength(10);
    expect(simulations[0]).toMatchObject({ max_tokens: 2000, temperature: 0 });
    expect(JSON.parse(lastUser(simulations[0]))).toMatchObject({ to_find: 'the token "Bob"' });
  });

  it("scores only the first maxSequences held-out records (top ones first)", async () => {
    fake.requests.length = 0;
    // (Other wording than above: the client's memory would answer repeated requests.)
    const scored = await explainer.score(neuron(bobNeuron), 'the word "Bob"', { maxSequences: 2 });
    expect(fake.requests).toHaveLength(2);
    expect(scored).toMatchObject({ scoreKind: "correlation", method: "llm-simulator:fake-model" });
    expect(scored.score).toBeCloseTo(1, 12);
  });

  it("counts unusable simulator answers as all-zero predictions (score 0)", async () => {
    fake.queue.push(
      ...Array.from({ length: 10 }, () => ({ kind: "chat" as const, content: "I am not sure." })),
    );
    const scored = await explainer.score(neuron(bobNeuron), "something else entirely");
    expect(scored.score).toBe(0);
    expect(scored.details.unusableAnswers).toBe(10);
  });

  it("explains a head from its top pairs and scores it by ROC-AUC over logprobs", async () => {
    fake.requests.length = 0;
    const outcome = await explainer.explainAndScore(head(previousTokenHead));
    expect(outcome.explanation).toBe("attends to the previous token");
    expect(outcome.scoreKind).toBe("roc_auc");
    expect(outcome.score).toBe(1);
    const [explain, ...pairs] = fake.requests.map((r) => r.body);
    expect(explain).toMatchObject({ max_tokens: 50 });
    expect(lastUser(explain).match(/\*\*\[\[/g)).toHaveLength(5);
    expect(pairs).toHaveLength(10);
    expect(pairs[0]).toMatchObject({ max_tokens: 1, logprobs: true, top_logprobs: 15 });
  });

  it("reads a head prediction from the answer's text when the server gives no logprobs", async () => {
    fake.requests.length = 0;
    const saved = fake.respond;
    fake.respond = (body) => {
      const reply = ruleBasedModel(body);
      return reply.kind === "chat" ? { kind: "chat", content: reply.content } : reply;
    };
    try {
      const scored = await explainer.score(head(previousTokenHead), "attends to the previous token");
      expect(scored.score).toBe(1);
    } finally {
      fake.respond = saved;
    }
  });
});
