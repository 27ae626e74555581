"""Writes a 3-layer random GPT-2 plus per-layer sparse autoencoders in OpenAI's state-dict format.

Dev tool only: run with `.venv/bin/python tools/golden/make_sae_model.py`; outputs are committed.

Output: packages/attribution/test/fixtures/l3-sae/
  config.json, model.safetensors (HF layout, float32)
  autoencoders/mlp_post_act/{layer}.{safetensors,pt}       ReLU, 64 latents over the 128 MLP neurons
  autoencoders/resid_delta_attn/{layer}.{safetensors,pt}   TopK(k=4, postact ReLU), 48 latents over d_model 32

Conventions follow ../shared/fixtures/tiny-gpt2/autoencoders/mlp_post_act/0.*: tensors pre_bias,
encoder.weight [n_latents, n_in], latent_bias, decoder.weight [n_in, n_latents], and the buffers
stats_last_nonzero (int64), latents_activation_frequency, latents_mean_square (float32). Safetensors
metadata: format "pt", layer, n_latents, input, activation; TopK adds k and postact_fn (strings) and
activation_state_dict (JSON of the .pt's activation_state_dict). The .pt holds the same state dict plus
"activation" and "activation_state_dict", as TDB's Autoencoder.from_state_dict expects.

The autoencoders are not trained: the encoder directions are random, latent biases are set from
quantiles of the pre-activations on a small corpus so each latent fires on a chosen share of tokens,
and the decoder is a ridge least-squares fit of the centred input from the latents. The last few
latents of each mlp_post_act layer are dead on purpose (3, 2, 4 for layers 0, 1, 2), to exercise
TDB's omit_dead_latents rule (drop the minimum dead count, 2, from the end of every layer).
The buffers hold statistics measured on the corpus.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import torch
from common import CORPUS, REPO_ROOT, biome_format, load_tokenizer, make_config, randomize_
from safetensors.torch import save_file
from transformers import GPT2LMHeadModel

OUT_DIR = REPO_ROOT / "packages/attribution/test/fixtures/l3-sae"
SEED = 5
N_LAYER = 3
MLP_LATENTS = 64
ATTN_LATENTS = 48
TOPK_K = 4
DEAD_MLP_LATENTS = [3, 2, 4]
DEAD_BIAS = -50.0


@torch.no_grad()
def collect_activations(model: GPT2LMHeadModel, tokenizer) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per layer: mlp post-activation [tokens, d_ff] and attention block output (incl. c_proj bias) [tokens, d]."""
    n_positions = model.config.n_positions
    mlp: list[list[torch.Tensor]] = [[] for _ in range(N_LAYER)]
    attn: list[list[torch.Tensor]] = [[] for _ in range(N_LAYER)]
    handles = []
    for i, block in enumerate(model.transformer.h):
        handles.append(block.mlp.act.register_forward_hook(lambda _m, _i, out, i=i: mlp[i].append(out[0])))
        handles.append(block.attn.register_forward_hook(lambda _m, _i, out, i=i: attn[i].append(out[0][0])))
    for text in CORPUS:
        ids = tokenizer(text).input_ids[:n_positions]
        model(torch.tensor([ids]))
    for h in handles:
        h.remove()
    return [torch.cat(x) for x in mlp], [torch.cat(x) for x in attn]


def topk_relu(pre: torch.Tensor, k: int) -> torch.Tensor:
    values, indices = torch.topk(pre, k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))


def build_autoencoder(
    x: torch.Tensor, n_latents: int, activation: str, n_dead: int, gen: torch.Generator
) -> dict[str, torch.Tensor]:
    x = x.to(torch.float64)
    n_in = x.shape[1]
    pre_bias = x.mean(0)
    centred = x - pre_bias
    directions = torch.randn(n_latents, n_in, generator=gen, dtype=torch.float64)
    directions /= directions.norm(dim=1, keepdim=True)
    proj = centred @ directions.T
    # Unit-variance pre-activations on the corpus.
    encoder = directions / proj.std(0).unsqueeze(1)
    proj = centred @ encoder.T
    if activation == "ReLU":
        # Firing rates spread from 50% down to 5%; the last n_dead latents never fire.
        rates = torch.linspace(0.5, 0.05, n_latents, dtype=torch.float64)
        latent_bias = -torch.stack([torch.quantile(proj[:, j], 1 - rates[j]) for j in range(n_latents)])
        if n_dead:
            latent_bias[-n_dead:] = DEAD_BIAS
        z = torch.relu(proj + latent_bias)
    else:
        latent_bias = 0.3 * torch.randn(n_latents, generator=gen, dtype=torch.float64)
        for _ in range(5):
            z = topk_relu(proj + latent_bias, TOPK_K)
            never = ~(z > 0).any(0)
            if not never.any():
                break
            # Lift a never-selected latent just above the k-th value on its most favourable token.
            kth = torch.topk(proj + latent_bias, TOPK_K, dim=-1).values[:, -1:]
            latent_bias[never] = (kth - proj[:, never]).clamp(min=0).min(0).values + 0.05
        z = topk_relu(proj + latent_bias, TOPK_K)
    # Ridge fit of the centred input from the latents; unused latents get random unit columns.
    ridge = 1e-3 * torch.eye(n_latents, dtype=torch.float64)
    decoder_t = torch.linalg.solve(z.T @ z + ridge, z.T @ centred)  # [n_latents, n_in]
    fired = (z > 0).any(0)
    random_cols = torch.randn(n_latents, n_in, generator=gen, dtype=torch.float64)
    random_cols /= random_cols.norm(dim=1, keepdim=True)
    decoder_t[~fired] = random_cols[~fired]
    return {
        "pre_bias": pre_bias.float(),
        "encoder.weight": encoder.float().contiguous(),
        "latent_bias": latent_bias.float(),
        "decoder.weight": decoder_t.T.float().contiguous(),
        "stats_last_nonzero": torch.where(fired, 0, x.shape[0]).to(torch.int64),
        "latents_activation_frequency": (z > 0).double().mean(0).float(),
        "latents_mean_square": (z**2).mean(0).float(),
    }


def reconstruction_report(x: torch.Tensor, sd: dict[str, torch.Tensor], activation: str) -> str:
    pre = (x - sd["pre_bias"]) @ sd["encoder.weight"].T + sd["latent_bias"]
    z = torch.relu(pre) if activation == "ReLU" else topk_relu(pre, TOPK_K)
    recon = z @ sd["decoder.weight"].T + sd["pre_bias"]
    fvu = float(((x - recon) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
    active = int((sd["latents_activation_frequency"] > 0).sum())
    l0 = float((z > 0).float().sum(1).mean())
    return f"alive {active}/{z.shape[1]}, mean L0 {l0:.1f}, FVU {fvu:.3f}"


def save_safetensors_deterministic(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """save_file writes __metadata__ from a hash map (random key order); rewrite the header sorted."""
    save_file(tensors, str(path), metadata=metadata)
    raw = path.read_bytes()
    header_len = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + header_len])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + raw[8 + header_len :])


def save_autoencoder(sd: dict[str, torch.Tensor], input_name: str, layer: int, activation: str) -> None:
    folder = OUT_DIR / "autoencoders" / input_name
    folder.mkdir(parents=True, exist_ok=True)
    n_latents = sd["latent_bias"].shape[0]
    metadata = {"format": "pt", "layer": str(layer), "n_latents": str(n_latents), "input": input_name, "activation": activation}
    activation_state: dict[str, object] = {}
    if activation == "TopK":
        activation_state = {"k": TOPK_K, "postact_fn": "ReLU"}
        metadata.update(k=str(TOPK_K), postact_fn="ReLU", activation_state_dict=json.dumps(activation_state))
    save_safetensors_deterministic(sd, folder / f"{layer}.safetensors", metadata)
    torch.save({**sd, "activation": activation, "activation_state_dict": activation_state}, folder / f"{layer}.pt")


def main() -> None:
    torch.use_deterministic_algorithms(True)
    if OUT_DIR.exists():
        shutil.rmtree(OUT_DIR)
    config = make_config(n_layer=N_LAYER, n_head=4, n_embd=32, n_inner=None, n_positions=64, layer_norm_epsilon=1e-5)
    torch.manual_seed(SEED)
    model = GPT2LMHeadModel(config)
    randomize_(model, SEED)
    model.eval()
    model.save_pretrained(str(OUT_DIR))
    model = GPT2LMHeadModel.from_pretrained(str(OUT_DIR), dtype=torch.float32, attn_implementation="eager").eval()

    mlp_acts, attn_acts = collect_activations(model, load_tokenizer())
    gen = torch.Generator().manual_seed(SEED)
    for layer in range(N_LAYER):
        sd = build_autoencoder(mlp_acts[layer], MLP_LATENTS, "ReLU", DEAD_MLP_LATENTS[layer], gen)
        save_autoencoder(sd, "mlp_post_act", layer, "ReLU")
        print(f"layer {layer} mlp_post_act ReLU: {reconstruction_report(mlp_acts[layer], sd, 'ReLU')}")
        sd = build_autoencoder(attn_acts[layer], ATTN_LATENTS, "TopK", 0, gen)
        save_autoencoder(sd, "resid_delta_attn", layer, "TopK")
        print(f"layer {layer} resid_delta_attn TopK: {reconstruction_report(attn_acts[layer], sd, 'TopK')}")
    print(f"{mlp_acts[0].shape[0]} corpus tokens")
    biome_format(OUT_DIR)

    total = 0
    for f in sorted(OUT_DIR.rglob("*")):
        if f.is_file():
            total += f.stat().st_size
            print(f"{f.stat().st_size:>10}  {f.relative_to(REPO_ROOT)}")
    print(f"{total:>10}  total")


if __name__ == "__main__":
    main()
