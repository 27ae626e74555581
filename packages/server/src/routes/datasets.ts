/** TDB's read routes and explainer routes, answered by the configured DatasetSource / Explainer (else 503). */
import {
  AttentionHeadRecordResponseSchema,
  AttributedScoredExplanationSchema,
  ExistingExplanationsRequestSchema,
  ExplanationResultSchema,
  NeuronDatasetMetadataSchema,
  NeuronRecordResponseSchema,
  NodeIdAndDatasetsSchema,
  ScoreRequestSchema,
  ScoreResultSchema,
} from "@tdb/attribution";
import type { DatasetSource, Explainer } from "../datasets.js";
import { HttpError } from "../http.js";
import { type AppContext, defineRoute, type Route } from "./route.js";

function datasets(app: AppContext): DatasetSource {
  if (!app.datasets) {
    throw new HttpError(
      503,
      "No neuron datasets are configured on this server (start it with --datasets …); dataset records and explanations are unavailable",
    );
  }
  return app.datasets;
}

function explainer(app: AppContext): Explainer {
  if (!app.explainer) {
    throw new HttpError(
      503,
      "No explainer is configured on this server; generating and scoring explanations is unavailable",
    );
  }
  return app.explainer;
}

export const datasetRoutes: Route[] = [
  defineRoute({
    path: "/neuron_datasets_metadata",
    methods: ["POST", "GET"],
    tag: "read",
    summary: "The neuron datasets this server can read (welcome page).",
    response: { name: "NeuronDatasetMetadata", schema: NeuronDatasetMetadataSchema, array: true },
    errors: [503],
    handle: (app) => datasets(app).neuronDatasetsMetadata(),
  }),
  defineRoute({
    path: "/neuron_record",
    methods: ["POST"],
    tag: "read",
    summary: "Top-activating and random dataset examples of one neuron or latent.",
    request: { name: "NodeIdAndDatasets", schema: NodeIdAndDatasetsSchema },
    response: { name: "NeuronRecordResponse", schema: NeuronRecordResponseSchema },
    errors: [404, 503],
    handle: (app, body) => datasets(app).neuronRecord(body),
  }),
  defineRoute({
    path: "/attention_head_record",
    methods: ["POST"],
    tag: "read",
    summary: "Top-activating and random token-pair examples of one attention head or latent.",
    request: { name: "NodeIdAndDatasets", schema: NodeIdAndDatasetsSchema },
    response: { name: "AttentionHeadRecordResponse", schema: AttentionHeadRecordResponseSchema },
    errors: [404, 503],
    handle: (app, body) => datasets(app).attentionHeadRecord(body),
  }),
  defineRoute({
    path: "/existing_explanations",
    methods: ["POST"],
    tag: "read",
    summary: "Stored explanations (with scores) of one node.",
    request: { name: "ExistingExplanationsRequest", schema: ExistingExplanationsRequestSchema },
    response: {
      name: "AttributedScoredExplanation",
      schema: AttributedScoredExplanationSchema,
      array: true,
    },
    errors: [404, 503],
    handle: (app, body) => datasets(app).existingExplanations(body),
  }),
  defineRoute({
    path: "/explain",
    methods: ["POST"],
    tag: "explainer",
    summary: "Explanations of one node (cached, else generated).",
    request: { name: "NodeIdAndDatasets", schema: NodeIdAndDatasetsSchema },
    response: { name: "ExplanationResult", schema: ExplanationResultSchema },
    errors: [404, 503],
    handle: (app, body) => explainer(app).explain(body),
  }),
  defineRoute({
    path: "/score",
    methods: ["POST"],
    tag: "explainer",
    summary: "Scores an explanation of one node by simulation.",
    request: { name: "ScoreRequest", schema: ScoreRequestSchema },
    response: { name: "ScoreResult", schema: ScoreResultSchema },
    errors: [404, 503],
    handle: (app, body) => explainer(app).score(body),
  }),
];
