/** Routes that run the model (TDB's inference_routes.py), all through the FIFO queue, plus /model_info. */
import * as attribution from "@tdb/attribution";
import {
  type BatchedRequest,
  BatchedRequestSchema,
  type BatchedResponse,
  BatchedResponseSchema,
  BatchedTdbRequestSchema,
  DerivedAttentionScalarsRequestSchema,
  DerivedAttentionScalarsResponseSchema,
  DerivedScalarsRequestSchema,
  DerivedScalarsResponseSchema,
  handleBatchedTdb,
  type InferenceRequestSpec,
  type ModelInfoResponse,
  ModelInfoResponseSchema,
  MultipleTopKDerivedScalarsRequestSchema,
  MultipleTopKDerivedScalarsResponseSchema,
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

type BatchedHandler = (ctx: TdbContext, request: BatchedRequest) => BatchedResponse;

/** The generic /batched implementation, once @tdb/attribution provides it (another engineer's work). */
function batchedHandler(): BatchedHandler | null {
  const candidate = (attribution as Record<string, unknown>).handleBatched;
  return typeof candidate === "function" ? (candidate as BatchedHandler) : null;
}

function runBatched(app: AppContext, request: BatchedRequest, closed: () => boolean, route: string) {
  const handle = batchedHandler();
  if (!handle)
    throw new HttpError(501, `${route} is not implemented yet (the generic batched handler is missing)`);
  checkCount(app, request.inferenceSubRequests.length, "inferenceSubRequests");
  request.inferenceSubRequests.forEach((sub, i) => {
    checkInference(app, sub.inferenceRequestSpec, `inferenceSubRequests[${i}].inferenceRequestSpec`);
    for (const [name, spec] of Object.entries(sub.processingRequestSpecByName)) {
      checkProcessing(app, spec, `inferenceSubRequests[${i}].processingRequestSpecByName.${name}`);
    }
  });
  return app.queue.run(() => handle(app.tdb, request), closed);
}

/** The single-spec routes are one-sub-request batches; the answer keeps that spec's data under its own key. */
async function runSingle(
  app: AppContext,
  inferenceRequestSpec: InferenceRequestSpec,
  spec: ProcessingRequestSpec,
  responseKey: string,
  closed: () => boolean,
  route: string,
): Promise<Record<string, unknown>> {
  const response = await runBatched(
    app,
    {
      inferenceSubRequests: [{ inferenceRequestSpec, processingRequestSpecByName: { [responseKey]: spec } }],
    },
    closed,
    route,
  );
  const sub = response.inferenceSubResponses[0];
  return {
    inferenceAndTokenData: sub.inferenceResponse.inferenceAndTokenData,
    [responseKey]: sub.processingResponseDataByName[responseKey],
  };
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
    errors: [400, 413, 501, 503],
    handle: (app, body, info) => runBatched(app, body, info.closed, "/batched"),
  }),
  defineRoute({
    path: "/derived_scalars",
    methods: ["POST"],
    tag: "inference",
    summary: "One derived scalar per token for one node (node page).",
    request: { name: "DerivedScalarsRequest", schema: DerivedScalarsRequestSchema },
    response: { name: "DerivedScalarsResponse", schema: DerivedScalarsResponseSchema },
    errors: [400, 413, 501, 503],
    handle: (app, body, info) =>
      runSingle(
        app,
        body.inferenceRequestSpec,
        body.derivedScalarsRequestSpec,
        "derivedScalarsResponseData",
        info.closed,
        "/derived_scalars",
      ),
  }),
  defineRoute({
    path: "/derived_attention_scalars",
    methods: ["POST"],
    tag: "inference",
    summary: "Token-pair scalars for one attention head or attention latent (node page).",
    request: { name: "DerivedAttentionScalarsRequest", schema: DerivedAttentionScalarsRequestSchema },
    response: { name: "DerivedAttentionScalarsResponse", schema: DerivedAttentionScalarsResponseSchema },
    errors: [400, 413, 501, 503],
    handle: (app, body, info) =>
      runSingle(
        app,
        body.inferenceRequestSpec,
        body.derivedAttentionScalarsRequestSpec,
        "derivedAttentionScalarsResponseData",
        info.closed,
        "/derived_attention_scalars",
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
    errors: [400, 413, 501, 503],
    handle: (app, body, info) =>
      runSingle(
        app,
        body.inferenceRequestSpec,
        body.multipleTopKDerivedScalarsRequestSpec,
        "multipleTopKDerivedScalarsResponseData",
        info.closed,
        "/multiple_top_k_derived_scalars",
      ),
  }),
];
