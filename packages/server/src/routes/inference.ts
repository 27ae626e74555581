/** Routes that run the model (TDB's inference_routes.py), all through the FIFO queue, plus /model_info. */
import {
  type BatchedContext,
  type BatchedRequest,
  BatchedRequestSchema,
  BatchedResponseSchema,
  BatchedTdbRequestSchema,
  DerivedAttentionScalarsRequestSchema,
  DerivedAttentionScalarsResponseSchema,
  DerivedScalarsRequestSchema,
  DerivedScalarsResponseSchema,
  handleBatched,
  handleBatchedTdb,
  handleDerivedAttentionScalars,
  handleDerivedScalars,
  handleMultipleTopKDerivedScalars,
  type InferenceRequestSpec,
  type ModelInfoResponse,
  ModelInfoResponseSchema,
  MultipleTopKDerivedScalarsRequestSchema,
  MultipleTopKDerivedScalarsResponseSchema,
  type NodeIdAndDatasets,
  type NormalizationRecord,
  type ProcessingRequestSpec,
  type TdbContext,
} from "@tdb/attribution";
import { HttpError } from "../http.js";
import { type AppContext, defineRoute, type Route } from "./route.js";

export function modelInfo(tdb: TdbContext): ModelInfoResponse {
  return {
    modelName: tdb.modelName,
    hasMlpAutoencoder: Boolean(tdb.mlpAutoencoder),
    mlpAutoencoderName: tdb.mlpAutoencoder?.name ?? null,
    hasAttentionAutoencoder: Boolean(tdb.attentionAutoencoder),
    attentionAutoencoderName: tdb.attentionAutoencoder?.name ?? null,
    nLayers: tdb.model.config.nLayer,
  };
}

function checkCount(app: AppContext, count: number, what: string): void {
  if (count === 0) throw new HttpError(400, `${what} must hold at least one request`);
  if (count > app.limits.maxSubRequests) {
    throw new HttpError(
      400,
      `${what} holds ${count} requests; this server accepts at most ${app.limits.maxSubRequests} per call`,
    );
  }
}

function checkPrompt(app: AppContext, prompt: string, where: string): void {
  if (prompt.length > app.limits.maxPromptChars) {
    throw new HttpError(
      400,
      `${where} is ${prompt.length} characters long; prompts must be less than ${app.limits.maxPromptTokens} tokens (at most ${app.limits.maxPromptChars} characters are read)`,
    );
  }
}

function checkTopAndBottomK(app: AppContext, k: number | null | undefined, where: string): void {
  if (k != null && k > app.limits.maxTopAndBottomK) {
    throw new HttpError(400, `${where} is ${k}; this server allows at most ${app.limits.maxTopAndBottomK}`);
  }
}

function checkInference(app: AppContext, spec: InferenceRequestSpec, where: string): void {
  checkPrompt(app, spec.prompt, `${where}.prompt`);
}

function checkProcessing(app: AppContext, spec: ProcessingRequestSpec, where: string): void {
  if (spec.specType === "multiple_top_k_derived_scalars_request_spec") {
    checkTopAndBottomK(app, spec.topAndBottomK, `${where}.topAndBottomK`);
  }
}

/**
 * Dataset records named by normalizeActivationsUsingNeuronRecord, fetched before the job is queued (the
 * computation asks for them synchronously); a record that cannot be read leaves the activations unnormalised.
 */
async function normalizationContext(
  app: AppContext,
  specs: readonly ProcessingRequestSpec[],
): Promise<BatchedContext> {
  const records = new Map<string, NormalizationRecord | null>();
  const key = (node: NodeIdAndDatasets) => JSON.stringify(node);
  const datasets = app.datasets;
  if (datasets) {
    for (const spec of specs) {
      if (
        spec.specType !== "derived_scalars_request_spec" &&
        spec.specType !== "derived_attention_scalars_request_spec"
      ) {
        continue;
      }
      const node = spec.normalizeActivationsUsingNeuronRecord;
      if (!node || records.has(key(node))) continue;
      let record: NormalizationRecord | null = null;
      try {
        if (spec.specType === "derived_scalars_request_spec") {
          record = { maxActivation: (await datasets.neuronRecord(node)).maxActivation };
        } else {
          const response = await datasets.attentionHeadRecord(node);
          record = {
            maxActivation: response.maxAttentionActivation,
            attentionSequences: response.mostPositiveTokenSequences.map((sequence) =>
              sequence.map((t) => t.scalars),
            ),
          };
        }
      } catch {
        record = null;
      }
      records.set(key(node), record);
    }
  }
  return { ...app.tdb, normalizationRecord: (node) => records.get(key(node)) ?? null };
}

function checkBatched(app: AppContext, request: BatchedRequest): ProcessingRequestSpec[] {
  checkCount(app, request.inferenceSubRequests.length, "inferenceSubRequests");
  const specs: ProcessingRequestSpec[] = [];
  request.inferenceSubRequests.forEach((sub, i) => {
    checkInference(app, sub.inferenceRequestSpec, `inferenceSubRequests[${i}].inferenceRequestSpec`);
    for (const [name, spec] of Object.entries(sub.processingRequestSpecByName)) {
      checkProcessing(app, spec, `inferenceSubRequests[${i}].processingRequestSpecByName.${name}`);
      specs.push(spec);
    }
  });
  return specs;
}

/** The single-spec routes: the same checks, the records, then the computation in the queue. */
async function runSingle<T>(
  app: AppContext,
  inferenceRequestSpec: InferenceRequestSpec,
  spec: ProcessingRequestSpec,
  closed: () => boolean,
  compute: (ctx: BatchedContext) => T,
): Promise<T> {
  checkInference(app, inferenceRequestSpec, "inferenceRequestSpec");
  checkProcessing(app, spec, "the processing spec");
  const ctx = await normalizationContext(app, [spec]);
  return app.queue.run(() => compute(ctx), closed);
}

export const inferenceRoutes: Route[] = [
  defineRoute({
    path: "/model_info",
    methods: ["POST", "GET"],
    tag: "inference",
    summary: "The served model and autoencoders (TDB: POST; GET also accepted here).",
    response: { name: "ModelInfoResponse", schema: ModelInfoResponseSchema },
    errors: [],
    handle: (app) => modelInfo(app.tdb),
  }),
  defineRoute({
    path: "/batched_tdb",
    methods: ["POST"],
    tag: "inference",
    summary: "TDB's main request: node table, token displays and logits for one or more prompts.",
    request: { name: "BatchedTdbRequest", schema: BatchedTdbRequestSchema },
    response: { name: "BatchedResponse", schema: BatchedResponseSchema },
    errors: [400, 413, 503],
    handle: (app, body, info) => {
      checkCount(app, body.subRequests.length, "subRequests");
      body.subRequests.forEach((spec, i) => {
        checkPrompt(app, spec.prompt, `subRequests[${i}].prompt`);
        checkTopAndBottomK(
          app,
          spec.topAndBottomKForNodeTable,
          `subRequests[${i}].topAndBottomKForNodeTable`,
        );
      });
      return app.queue.run(() => handleBatchedTdb(app.tdb, body), info.closed);
    },
  }),
  defineRoute({
    path: "/batched",
    methods: ["POST"],
    tag: "inference",
    summary: "Generic batch of inference sub-requests with named processing specs.",
    request: { name: "BatchedRequest", schema: BatchedRequestSchema },
    response: { name: "BatchedResponse", schema: BatchedResponseSchema },
    errors: [400, 413, 503],
    handle: async (app, body, info) => {
      const ctx = await normalizationContext(app, checkBatched(app, body));
      return app.queue.run(() => handleBatched(ctx, body), info.closed);
    },
  }),
  defineRoute({
    path: "/derived_scalars",
    methods: ["POST"],
    tag: "inference",
    summary: "One derived scalar per token for one node (node page).",
    request: { name: "DerivedScalarsRequest", schema: DerivedScalarsRequestSchema },
    response: { name: "DerivedScalarsResponse", schema: DerivedScalarsResponseSchema },
    errors: [400, 413, 503],
    handle: (app, body, info) =>
      runSingle(app, body.inferenceRequestSpec, body.derivedScalarsRequestSpec, info.closed, (ctx) =>
        handleDerivedScalars(ctx, body),
      ),
  }),
  defineRoute({
    path: "/derived_attention_scalars",
    methods: ["POST"],
    tag: "inference",
    summary: "Token-pair scalars for one attention head or attention latent (node page).",
    request: { name: "DerivedAttentionScalarsRequest", schema: DerivedAttentionScalarsRequestSchema },
    response: { name: "DerivedAttentionScalarsResponse", schema: DerivedAttentionScalarsResponseSchema },
    errors: [400, 413, 503],
    handle: (app, body, info) =>
      runSingle(app, body.inferenceRequestSpec, body.derivedAttentionScalarsRequestSpec, info.closed, (ctx) =>
        handleDerivedAttentionScalars(ctx, body),
      ),
  }),
  defineRoute({
    path: "/multiple_top_k_derived_scalars",
    methods: ["POST"],
    tag: "inference",
    summary: "Top and bottom k nodes over groups of derived scalars.",
    request: { name: "MultipleTopKDerivedScalarsRequest", schema: MultipleTopKDerivedScalarsRequestSchema },
    response: {
      name: "MultipleTopKDerivedScalarsResponse",
      schema: MultipleTopKDerivedScalarsResponseSchema,
    },
    errors: [400, 413, 503],
    handle: (app, body, info) =>
      runSingle(
        app,
        body.inferenceRequestSpec,
        body.multipleTopKDerivedScalarsRequestSpec,
        info.closed,
        (ctx) => handleMultipleTopKDerivedScalars(ctx, body),
      ),
  }),
];
