#!/usr/bin/env bash
# The demo bundle's autoencoders and measurements (after tools/demo/make_corpus.py and `npm run build`).
# Run from the repository root. The datasets are not shipped: `tdb serve` rebuilds assets/demo/datasets/demo.db
# on first start (packages/cli/src/demo-bundle.ts), with the same commands as the last step here.
set -euo pipefail
tdb() { node packages/cli/bin/tdb.js "$@"; }

# 1. Text: tools/demo/data/sae_train.jsonl (training splits: 75 % stories, 25 % SOTU, 400 KB, ~90 K tokens)
#    and assets/demo/corpus/heldout.jsonl (held-out IOI episodes, stories and SOTU addresses; committed).
node tools/demo/make_bundle_corpora.mjs

# 2. TopK autoencoders (k = 32), trained on our engine; the harvested activations stay in memory (--cache-mb),
#    so epochs after the first skip the forward pass. A layer trained in a several-layer pass ends byte-identical
#    to training it alone, so the shipped files come from these runs (steps chosen per layer until the held-out
#    FVE passed 0.8: layer 3 after 700 steps, layers 1–2 after 1800, layer 0 after 3000).
mlp() { # LAYERS STEPS LR OUT
  tdb train-sae --model assets/demo/model --site mlp_post_act --layer "$1" --corpus tools/demo/data/sae_train.jsonl \
    --out "tools/demo/data/sae/$4" --latents 1024 --k 32 --steps "$2" --batch-tokens 512 --lr "$3" --threads 1 \
    --cache-mb 2000
}
mlp 3 700 0.002 mlp_l3
mlp 1,2 1800 0.003 mlp_l12
mlp 0 3000 0.003 mlp_l0
mkdir -p tools/demo/data/sae/mlp_post_act
cp tools/demo/data/sae/mlp_l3/3.safetensors tools/demo/data/sae/mlp_l12/{1,2}.safetensors \
  tools/demo/data/sae/mlp_l0/0.safetensors tools/demo/data/sae/mlp_post_act/
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
