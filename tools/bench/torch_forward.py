"""PyTorch forward throughput on the collation benchmark's shapes (dev only): GPT-2-small-shaped random model,
sequences of 64 tokens, one thread, no gradients.

Collation needs every layer's activations but no logits, so the measured forward is the transformer body
(GPT2Model, no LM head), with attention probabilities returned as collation needs them. Prints JSON lines:
8 sequences one at a time ([1, 64] each) and as one batch ([8, 64]).
Run: OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python tools/bench/torch_forward.py
"""

import json
import os
import statistics
import time

import torch
from transformers import GPT2Config, GPT2Model

# TDB_BENCH_THREADS=2 (set by run.js for the *-2t lines, with the BLAS thread variables to match).
THREADS = int(os.environ.get("TDB_BENCH_THREADS", "1"))
SUFFIX = "" if THREADS == 1 else f"-{THREADS}t"
torch.set_num_threads(THREADS)
torch.manual_seed(0)
SEQUENCES, SEQ_LEN = 8, 64
config = GPT2Config(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, n_positions=1024)
config._attn_implementation = "eager"  # returns attention probabilities, as collation needs them
model = GPT2Model(config).eval()
ids = torch.randint(0, 50257, (SEQUENCES, SEQ_LEN))


def median_s(fn, warmup=1, reps=5):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@torch.no_grad()
def one_at_a_time():
    for i in range(SEQUENCES):
        model(ids[i : i + 1], output_attentions=True)


@torch.no_grad()
def batched():
    model(ids, output_attentions=True)


tokens = SEQUENCES * SEQ_LEN
for name, fn in [("1x64", one_at_a_time), ("8x64", batched)]:
    seconds = median_s(fn)
    print(json.dumps({"bench": f"torch-gpt2-small-forward-{name}{SUFFIX}", "tokens_per_s": round(tokens / seconds, 1)}))
