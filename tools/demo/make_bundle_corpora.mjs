// Text for the demo bundle's autoencoders and datasets, from the recipe's corpus (tools/demo/data, made by
// make_corpus.py) and the held-out IOI prompts (ioi.py). Deterministic: fixed slices and a seeded shuffle.
//   node tools/demo/make_bundle_corpora.mjs
// writes tools/demo/data/sae_train.jsonl (training split only: stories + SOTU) and
// assets/demo/corpus/heldout.jsonl (held-out SOTU addresses, held-out stories, held-out IOI episodes).

import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";

const here = new URL(".", import.meta.url).pathname;
const data = `${here}data`;
const SEP = "<|endoftext|>";

function docs(file) {
  return readFileSync(`${data}/${file}`, "utf8")
    .split(SEP)
    .map((d) => d.trim())
    .filter((d) => d.length > 0);
}

// mulberry32: a seeded order that does not depend on the platform.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
function shuffle(items, seed) {
  const r = rng(seed);
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}
// SOTU addresses cut into runs of sentences of about `chars` characters (documents of window size).
function chunks(addresses, chars) {
  const out = [];
  for (const address of addresses) {
    let current = "";
    for (const sentence of address.split(/(?<=[.!?])\s+/)) {
      current = current ? `${current} ${sentence}` : sentence;
      if (current.length >= chars) {
        out.push(current);
        current = "";
      }
    }
    if (current) out.push(current);
  }
  return out;
}
function take(list, chars) {
  const out = [];
  let total = 0;
  for (const item of list) {
    if (total >= chars) break;
    out.push(item);
    total += item.length;
  }
  return out;
}
const jsonl = (list) => `${list.map((text) => JSON.stringify({ text })).join("\n")}\n`;

// Training text for the autoencoders: 75 % stories, 25 % SOTU (by characters), training splits only.
const TRAIN_CHARS = Number(process.env.SAE_TRAIN_CHARS ?? 400_000);
const stories = take(docs("synthetic_train.txt"), TRAIN_CHARS * 0.75);
const sotu = take(shuffle(chunks(docs("sotu_train.txt"), 1200), 1), TRAIN_CHARS * 0.25);
writeFileSync(`${data}/sae_train.jsonl`, jsonl(shuffle([...stories, ...sotu], 2)));

// Held-out text for collation: IOI episodes with held-out frames and names, held-out stories, held-out SOTU.
const prompts = JSON.parse(
  execFileSync(
    "python3",
    [
      "-c",
      "import json,ioi;print(json.dumps([p.text+' '+p.io+'.' for p in ioi.held_out_prompts(200, seed=11)]))",
    ],
    { cwd: here, encoding: "utf8" },
  ),
);
const ioiDocs = [];
for (let i = 0; i < prompts.length; i += 4) ioiDocs.push(prompts.slice(i, i + 4).join(" "));
const heldStories = take(shuffle(docs("synthetic_heldout.txt"), 3), 40_000);
const heldSotu = take(shuffle(chunks(docs("sotu_heldout.txt"), 1200), 4), 40_000);
mkdirSync(`${here}../../assets/demo/corpus`, { recursive: true });
writeFileSync(
  `${here}../../assets/demo/corpus/heldout.jsonl`,
  jsonl(shuffle([...ioiDocs, ...heldStories, ...heldSotu], 5)),
);
console.log(
  `sae_train.jsonl: ${stories.length} stories + ${sotu.length} SOTU chunks; heldout.jsonl: ${ioiDocs.length} IOI docs, ` +
    `${heldStories.length} stories, ${heldSotu.length} SOTU chunks`,
);
