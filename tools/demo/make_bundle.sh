#!/usr/bin/env bash
# The demo bundle's autoencoders and measurements (after tools/demo/make_corpus.py and `npm run build`).
# Run from the repository root. The datasets are not shipped: `tdb serve` rebuilds assets/demo/datasets/demo.db
# on first start (packages/cli/src/demo-bundle.ts), with the same commands as the last step here.
set -euo pipefail
tdb() { node packages/cli/bin/tdb.js "$@"; }

# 1. Text: tools/demo/data/sae_train.jsonl (training splits: 75 % stories, 25 % SOTU, 1.6 MB, ~370 K tokens)
#    and assets/demo/corpus/heldout.jsonl (held-out IOI episodes, stories and SOTU addresses; committed).
SAE_TRAIN_CHARS=1600000 node tools/demo/make_bundle_corpora.mjs

# 2. TopK autoencoders (k = 32), trained on our engine; the harvested activations stay in memory (--cache-mb),
#    so epochs after the first skip the forward pass. Two processes of one thread each use both cores: layers 1–3
#    in one; layer 0 (2 048 latents: its activations are close to a per-token lookup and 1 024 latents left it
#    under 0.8) and then the attention autoencoders in the other. A layer trained in a several-layer pass ends
#    byte-identical to training it alone.
mkdir -p tools/demo/data/sae
mlp() { # LAYERS LATENTS STEPS OUT
  tdb train-sae --model assets/demo/model --site mlp_post_act --layer "$1" --corpus tools/demo/data/sae_train.jsonl \
    --out "tools/demo/data/sae/$4" --latents "$2" --k 32 --steps "$3" --batch-tokens 1024 --lr 0.003 --threads 1 \
    --cache-mb 6000
}
mlp 1,2,3 1024 3000 mlp_l123 > tools/demo/data/sae/mlp_l123.log 2>&1 &
(
  mlp 0 2048 4500 mlp_l0 > tools/demo/data/sae/mlp_l0.log 2>&1
  tdb train-sae --model assets/demo/model --site resid_delta_attn --layer all \
    --corpus tools/demo/data/sae_train.jsonl --out tools/demo/data/sae/resid_delta_attn --latents 512 --k 32 \
    --steps 3000 --batch-tokens 1024 --lr 0.004 --threads 1 --cache-mb 2000 > tools/demo/data/sae/attn.log 2>&1
) &
wait
mkdir -p tools/demo/data/sae/mlp_post_act
cp tools/demo/data/sae/mlp_l0/0.safetensors tools/demo/data/sae/mlp_l123/{1,2,3}.safetensors \
  tools/demo/data/sae/mlp_post_act/

# 3. Stored as F16 (half the size; the loader widens to float32).
for site in mlp_post_act resid_delta_attn; do
  python3 tools/demo/sae_to_f16.py "tools/demo/data/sae/$site" "assets/demo/autoencoders/$site"
done

# 4. Datasets and explanations, built exactly as `tdb serve` does on first start (with its input record), timed.
rm -f assets/demo/datasets/demo.db*
time node --input-type=module \
  -e 'const { buildDemoDatasets } = await import("./packages/cli/dist/demo-bundle.js"); await buildDemoDatasets("assets/demo");'

# 5. Measurements for assets/demo/EVAL-bundle.md.
node tools/demo/eval_bundle.mjs > tools/demo/data/eval-bundle.json
