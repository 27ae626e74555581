"""PyTorch baseline for the model benchmarks (dev only): GPT-2-small-shaped random model, 32 tokens, one thread.

Prints JSON lines: forward, and forward + backward to every activation (a single-logit-difference loss, as TDB).
Run: OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python tools/bench/torch_gpt2.py
"""

import json
import os
import statistics
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

# TDB_BENCH_THREADS=2 (set by run.js for the *-2t lines, with the BLAS thread variables to match).
THREADS = int(os.environ.get("TDB_BENCH_THREADS", "1"))
SUFFIX = "" if THREADS == 1 else f"-{THREADS}t"
torch.set_num_threads(THREADS)
torch.manual_seed(0)
model = GPT2LMHeadModel(GPT2Config(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, n_positions=1024))
model.eval()
for p in model.parameters():
    p.requires_grad_(False)
ids = torch.randint(0, 50257, (1, 32))


def median_ms(fn, warmup=2, reps=9):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 2)


def forward():
    with torch.no_grad():
        model(ids)


def forward_backward():
    # Gradients w.r.t. every activation (hidden states), not parameters: the TDB workload.
    embeds = model.transformer.wte(ids).detach().requires_grad_(True)
    out = model(inputs_embeds=embeds, output_hidden_states=True)
    for h in out.hidden_states:
        h.retain_grad()
    loss = out.logits[0, -1, 1] - out.logits[0, -1, 2]
    loss.backward()


# Like for like with one TDB request: the same forward+backward, plus the scored-token lists a request computes
# (232 directions — 165 node-table writes and 67 MLP input reads — each against the 50257-token vocabulary, then
# the top and bottom 10 of each row). Not the goal's baseline; it shows how much of the gap is that extra work.
directions = torch.randn(232, 768)


def forward_backward_scoring():
    forward_backward()
    with torch.no_grad():
        scores = directions @ model.transformer.wte.weight.T
        torch.topk(scores, 10, dim=1)
        torch.topk(scores, 10, dim=1, largest=False)


print(json.dumps({"bench": "torch-gpt2-small-forward-t32" + SUFFIX, "median_ms": median_ms(forward)}))
print(json.dumps({"bench": "torch-gpt2-small-forward-backward-t32" + SUFFIX, "median_ms": median_ms(forward_backward)}))
print(
    json.dumps(
        {
            "bench": "torch-gpt2-small-forward-backward-scoring-t32" + SUFFIX,
            "median_ms": median_ms(forward_backward_scoring),
        }
    )
)
