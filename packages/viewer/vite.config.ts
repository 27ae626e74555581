import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// `npm run dev -w @tdb/viewer` proxies API calls to a running `tdb serve` (TDB_SERVER, default port 8000).
const server = process.env.TDB_SERVER ?? "http://127.0.0.1:8000";
const apiRoutes = [
  "/batched_tdb",
  "/batched",
  "/model_info",
  "/derived_scalars",
  "/derived_attention_scalars",
  "/multiple_top_k_derived_scalars",
  "/neuron_record",
  "/attention_head_record",
  "/neuron_datasets_metadata",
  "/existing_explanations",
  "/explain",
  "/score",
];

export default defineConfig({
  plugins: [react()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: true, chunkSizeWarningLimit: 1000 },
  server: { proxy: Object.fromEntries(apiRoutes.map((route) => [route, server])) },
});
