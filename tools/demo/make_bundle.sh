#!/usr/bin/env bash
# The demo bundle's autoencoders and measurements (after tools/demo/make_corpus.py and `npm run build`).
# Run from the repository root. The datasets are not shipped: `tdb serve` rebuilds assets/demo/datasets/demo.db
# on first start (packages/cli/src/demo-bundle.ts), with the same commands as the last step here.
set -euo pipefail
tdb() { node packages/cli/bin/tdb.js "$@"; }

# 1. Text: tools/demo/data/sae_train.jsonl (training splits: 75 % stories, 25 % SOTU, 400 KB, ~90 K tokens)
#    and assets/demo/corpus/heldout.jsonl (held-out IOI episodes, stories and SOTU addresses; committed).
node tools/demo/make_bundle_corpora.mjs

# 2. TopK autoencoders (k = 32) for all four layers per site, one pass through the model each; the harvested
#    activations stay in memory (--cache-mb), so epochs after the first skip the forward pass.
tdb train-sae --model assets/demo/model --site mlp_post_act --layer all --corpus tools/demo/data/sae_train.jsonl \
  --out tools/demo/data/sae/mlp_post_act --latents 1024 --k 32 --steps 700 --batch-tokens 512 --lr 0.002 \
  --threads 1 --cache-mb 2000
tdb train-sae --model assets/demo/model --site resid_delta_attn --layer all --corpus tools/demo/data/sae_train.jsonl \
  --out tools/demo/data/sae/resid_delta_attn --latents 512 --k 32 --steps 1500 --batch-tokens 512 --lr 0.004 \
  --threads 1 --cache-mb 600

# 3. Stored as F16 (half the size; the loader widens to float32).
for site in mlp_post_act resid_delta_attn; do
  python3 tools/demo/sae_to_f16.py "tools/demo/data/sae/$site" "assets/demo/autoencoders/$site"
done

# 4. Datasets and explanations (what `tdb serve` does on first start), timed.
rm -f assets/demo/datasets/demo.db assets/demo/datasets/demo.db.partial
mkdir -p assets/demo/datasets
time tdb collate --model assets/demo/model --corpus assets/demo/corpus/heldout.jsonl \
  --mlp-autoencoder assets/demo/autoencoders/mlp_post_act --attn-autoencoder assets/demo/autoencoders/resid_delta_attn \
  --out assets/demo/datasets/demo.db.partial --seq-len 64 --top-k 20 --random 10 --seed 0
time tdb explain --datasets assets/demo/datasets/demo.db.partial --offline
mv assets/demo/datasets/demo.db.partial assets/demo/datasets/demo.db

# 5. Measurements for assets/demo/EVAL-bundle.md.
node tools/demo/eval_bundle.mjs > tools/demo/data/eval-bundle.json
