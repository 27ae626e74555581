"""Shared helpers for the golden-value tools (dev only; outputs are committed, CI never runs Python)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKENIZER_DIR = REPO_ROOT.parent / "shared" / "fixtures" / "tiny-gpt2"  # shared/ sits beside the checkout
VOCAB_SIZE = 50257
EOS_ID = 50256

IOI_PROMPT = "When Mary and John went to the store, John gave a drink to"

# Long enough to fill a 64-token context; original text, not copied from any corpus.
LONG_TEXT = (
    "The lighthouse keeper climbed the narrow stairs every evening at dusk. He wound the clock, "
    "trimmed the wick, and polished the great lens until it shone like water. Ships far out at sea "
    "saw the beam sweep across the waves and knew where the rocks were hidden. In winter the wind "
    "howled around the tower, and the keeper wrote letters to his sister by candlelight, telling her "
    "about the gulls, the storms, and the quiet mornings when the fog lay thick over the harbour."
)

# More text for fitting autoencoders: varied register so activations cover more directions.
CORPUS = [
    LONG_TEXT,
    IOI_PROMPT,
    "After lunch, Alice and Bob walked to the park, and Bob handed a book to Alice.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    "The committee will meet on Tuesday, March 4, at 10:30 a.m. in Room 204 to review the budget.",
    "Photosynthesis converts light energy into chemical energy stored in glucose molecules.",
    "She said, \"I can't believe it's already 2024!\" and laughed; nobody else did.",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20",
]


def load_tokenizer() -> GPT2TokenizerFast:
    # transformers 5: GPT2TokenizerFast(vocab_file=..., merges_file=...) silently ignores those
    # kwargs and yields an empty vocabulary; from_pretrained on the folder reads vocab.json + merges.txt.
    return GPT2TokenizerFast.from_pretrained(str(TOKENIZER_DIR))


def make_config(**overrides: object) -> GPT2Config:
    base: dict[str, object] = dict(
        vocab_size=VOCAB_SIZE,
        activation_function="gelu_new",
        attn_pdrop=0.0,
        embd_pdrop=0.0,
        resid_pdrop=0.0,
        summary_first_dropout=0.0,
        bos_token_id=EOS_ID,
        eos_token_id=EOS_ID,
        tie_word_embeddings=True,
    )
    base.update(overrides)
    return GPT2Config(**base)


def randomize_(model: GPT2LMHeadModel, seed: int) -> None:
    """Large-ish random weights so every op (LN affine, all biases, attention pattern) matters."""
    gen = torch.Generator().manual_seed(seed)

    def normal(shape: torch.Size, std: float, mean: float = 0.0) -> torch.Tensor:
        return torch.randn(shape, generator=gen) * std + mean

    # Sorted names: the draw order (hence the weights) depends only on the seed.
    params = dict(model.named_parameters())
    for name in sorted(params):
        p = params[name]
        if name.endswith("wte.weight"):
            new = normal(p.shape, 0.5)
        elif name.endswith("wpe.weight"):
            new = normal(p.shape, 0.8)
        elif "ln_" in name and name.endswith(".weight"):
            new = normal(p.shape, 0.2, mean=1.0)
        elif name.endswith(".bias"):
            new = normal(p.shape, 0.1)
        elif name.endswith("attn.c_attn.weight"):
            new = normal(p.shape, 0.4)
        elif name.endswith("mlp.c_fc.weight"):
            new = normal(p.shape, 0.2)
        elif name.endswith("c_proj.weight"):
            new = normal(p.shape, 0.12)
        else:
            raise ValueError(f"unexpected parameter {name}")
        with torch.no_grad():
            p.copy_(new)


def sig6(x: float) -> float:
    return float(f"{x:.6g}")


def fixed_vocab_ids(tokenizer: GPT2TokenizerFast, count: int = 64, seed: int = 1234) -> list[int]:
    """Meaningful ids (IOI names, punctuation, EOS, edges) plus seeded random fill; sorted."""
    ids = {0, 1, 11, 13, 198, 262, 284, 290, EOS_ID, VOCAB_SIZE - 2}
    ids.update(tokenizer(" Mary John store drink gave").input_ids)
    gen = torch.Generator().manual_seed(seed)
    while len(ids) < count:
        ids.add(int(torch.randint(0, VOCAB_SIZE, (1,), generator=gen)))
    return sorted(ids)


def context_filling_ids(tokenizer: GPT2TokenizerFast, n_positions: int) -> list[int]:
    ids = tokenizer(LONG_TEXT).input_ids
    if len(ids) < n_positions:
        raise ValueError(f"LONG_TEXT has {len(ids)} tokens < {n_positions}")
    return ids[:n_positions]


@torch.no_grad()
def golden_for_model(model: GPT2LMHeadModel, tokenizer: GPT2TokenizerFast) -> dict[str, object]:
    """HF forward outputs (float32) for the three standard prompts plus a greedy generation."""
    model.eval()
    n_positions = model.config.n_positions
    vocab_ids = fixed_vocab_ids(tokenizer)
    ioi_ids = tokenizer(IOI_PROMPT).input_ids
    prompts = [
        ("single-token", tokenizer.decode([ioi_ids[0]]), ioi_ids[:1]),
        ("ioi", IOI_PROMPT, ioi_ids),
        ("full-context", None, context_filling_ids(tokenizer, n_positions)),
    ]
    out_prompts = []
    for name, text, ids in prompts:
        logits = model(torch.tensor([ids])).logits[0].to(torch.float32)
        assert logits.shape == (len(ids), VOCAB_SIZE)
        logits64 = logits.to(torch.float64)
        entry: dict[str, object] = {"name": name}
        if text is not None:
            entry["text"] = text
        entry.update(
            inputIds=ids,
            lastLogits=[sig6(v) for v in logits[-1].tolist()],
            argmax=logits.argmax(dim=-1).tolist(),
            logsumexp=[sig6(v) for v in torch.logsumexp(logits64, dim=-1).tolist()],
            logitsAtVocabIds=[[sig6(v) for v in row] for row in logits[:, vocab_ids].tolist()],
        )
        out_prompts.append(entry)

    max_new = 20
    if len(ioi_ids) + max_new > n_positions:
        raise ValueError(f"n_positions {n_positions} too small for greedy generation")
    result = model.generate(
        torch.tensor([ioi_ids]),
        attention_mask=torch.ones(1, len(ioi_ids), dtype=torch.long),
        do_sample=False,
        max_new_tokens=max_new,
        min_new_tokens=max_new,
        pad_token_id=EOS_ID,
        output_logits=True,
        return_dict_in_generate=True,
    )
    generated = result.sequences[0].tolist()
    # Top-1 minus top-2 logit per step: tiny margins would make the greedy ids fragile across implementations.
    margins = [float(torch.topk(step[0].float(), 2).values.diff().neg()) for step in result.logits]
    assert generated[: len(ioi_ids)] == ioi_ids and len(generated) == len(ioi_ids) + max_new
    return {
        "vocabIds": vocab_ids,
        "prompts": out_prompts,
        "generate": {
            "prompt": "ioi",
            "doSample": False,
            "maxNewTokens": max_new,
            "newTokenIds": generated[len(ioi_ids) :],
            "top2Margins": [sig6(m) for m in margins],
        },
    }


def golden_header(description: str) -> dict[str, object]:
    import safetensors
    import transformers

    return {
        "description": description,
        "generator": "tools/golden/make_test_models.py",
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "safetensors": safetensors.__version__,
        },
        "layout": {
            "lastLogits": "[vocab] logits at the last position",
            "argmax": "[position] argmax over the vocabulary",
            "logsumexp": "[position] logsumexp over the vocabulary (float64 from float32 logits)",
            "logitsAtVocabIds": "[position][i] logits at vocabIds[i]",
            "rounding": "6 significant digits",
        },
    }


def write_json(path: Path, data: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    path.write_text(text + "\n")


def biome_format(folder: Path) -> None:
    """`npm test` runs `biome check .`; HF writes e.g. 1e-05 where Biome wants 1e-5. Golden JSONs exceed
    Biome's 1 MiB limit (it skips them), so only the small JSON files are formatted."""
    small = [str(f) for f in sorted(folder.rglob("*.json")) if f.stat().st_size < 1_000_000]
    if small:
        subprocess.run(["npx", "biome", "format", "--write", *small], cwd=REPO_ROOT, check=True, capture_output=True)
