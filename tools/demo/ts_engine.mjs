// Runs our TypeScript tokenizer and engine for evaluate.py (needs `npm run build` first).
// usage: node ts_engine.mjs MODEL_DIR REQUEST.json  → JSON on stdout
// REQUEST: { "tokenize": [text, ...], "logits": [prompt, ...] }
//   tokenize → ids per text; logits → ids and last-position logits per prompt.
import { readFileSync } from "node:fs";
import { loadTokenizer } from "@tdb/model/node";

const [modelDir, requestPath] = process.argv.slice(2);
const request = JSON.parse(readFileSync(requestPath, "utf8"));
const result = {};
const tokenizer = loadTokenizer(modelDir);
if (request.tokenize) result.tokenize = request.tokenize.map((text) => tokenizer.encode(text));
if (request.logits) {
  const { loadModel } = await import("@tdb/model/node");
  const { model } = await loadModel(modelDir);
  result.logits = request.logits.map((prompt) => {
    const ids = tokenizer.encode(prompt);
    const { logits } = model.forward(ids, { logitRows: [ids.length - 1], cache: false });
    return { ids, last: Array.from(logits) };
  });
}
process.stdout.write(JSON.stringify(result));
