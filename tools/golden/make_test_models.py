"""Writes small random GPT-2 models (Hugging Face layout) plus golden outputs computed by transformers.

Dev tool only: run with `.venv/bin/python tools/golden/make_test_models.py` after
`tools/python/setup-venv.sh`; the outputs are committed and CI never runs Python.

Outputs:
  packages/model/test/fixtures/models/<name>/{config.json, *.safetensors, golden.json}
  packages/model/test/golden/tiny-gpt2.json   (golden values for ../shared/fixtures/tiny-gpt2)

Goldens are always computed in float32: half-precision models are reloaded with dtype=float32,
i.e. the f16/bf16 weights exactly as stored, upcast.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from common import (
    REPO_ROOT,
    TOKENIZER_DIR,
    biome_format,
    golden_for_model,
    golden_header,
    load_tokenizer,
    make_config,
    randomize_,
    write_json,
)
from safetensors import safe_open
from transformers import GPT2LMHeadModel

MODELS_DIR = REPO_ROOT / "packages/model/test/fixtures/models"
GOLDEN_DIR = REPO_ROOT / "packages/model/test/golden"


@dataclass
class Spec:
    name: str
    seed: int
    dtype: torch.dtype
    config: dict[str, object]
    save_kwargs: dict[str, object] = field(default_factory=dict)
    note: str = ""


SPECS = [
    Spec(
        "l3-h2-d32-inner80",
        seed=1,
        dtype=torch.float32,
        config=dict(n_layer=3, n_head=2, n_embd=32, n_inner=80, n_positions=48, layer_norm_epsilon=1e-5),
    ),
    Spec(
        "l1-h4-d16-f16",
        seed=2,
        dtype=torch.float16,
        # n_inner None -> 4*n_embd; n_positions 40 (not 32) so the 14-token IOI prompt + 20 new tokens fit.
        config=dict(n_layer=1, n_head=4, n_embd=16, n_inner=None, n_positions=40, layer_norm_epsilon=1e-5),
        note="weights stored as float16; golden computed in float32 from the float16 weights upcast",
    ),
    Spec(
        "l2-h3-d24-sharded",
        seed=3,
        dtype=torch.float32,
        config=dict(n_layer=2, n_head=3, n_embd=24, n_inner=None, n_positions=40, layer_norm_epsilon=1e-6),
        # wte alone is 4.8 MB, so it gets a shard of its own and the rest goes to a second shard.
        save_kwargs=dict(max_shard_size="2MB"),
        note="saved sharded: model-0000X-of-0000Y.safetensors + model.safetensors.index.json",
    ),
    Spec(
        "l1-h2-d16-bf16",
        seed=4,
        dtype=torch.bfloat16,
        config=dict(n_layer=1, n_head=2, n_embd=16, n_inner=None, n_positions=36, layer_norm_epsilon=1e-5),
        note="weights stored as bfloat16; golden computed in float32 from the bfloat16 weights upcast",
    ),
]


def safetensors_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def stored_keys(folder: Path) -> dict[str, str]:
    keys: dict[str, str] = {}
    for f in safetensors_files(folder):
        with safe_open(str(f), "pt") as st:
            for k in st.keys():
                keys[k] = str(st.get_slice(k).get_dtype())
    return keys


def check_reload_matches(original: GPT2LMHeadModel, reloaded: GPT2LMHeadModel, dtype: torch.dtype) -> None:
    ref = {k: v.to(dtype).to(torch.float32) for k, v in original.state_dict().items()}
    for k, v in reloaded.state_dict().items():
        if k in ref:
            assert torch.equal(ref[k], v), f"reloaded {k} differs from the saved weights"
            assert v.dtype == torch.float32


def build(spec: Spec, tokenizer) -> dict[str, object]:
    folder = MODELS_DIR / spec.name
    if folder.exists():
        shutil.rmtree(folder)
    config = make_config(**spec.config)
    torch.manual_seed(spec.seed)
    model = GPT2LMHeadModel(config)
    randomize_(model, spec.seed)
    model.eval()
    model.to(spec.dtype).save_pretrained(str(folder), **spec.save_kwargs)

    reloaded = GPT2LMHeadModel.from_pretrained(str(folder), dtype=torch.float32, attn_implementation="eager")
    check_reload_matches(model, reloaded, spec.dtype)

    keys = stored_keys(folder)
    golden = golden_header(f"Hugging Face transformers outputs for the random test model {spec.name}.")
    golden.update(
        model=spec.name,
        seed=spec.seed,
        storedDtype=str(spec.dtype).removeprefix("torch."),
        computeDtype="float32",
        note=spec.note,
        files=[f.name for f in sorted(folder.iterdir())],
        storedKeys=sorted(keys),
        config={k: getattr(config, k) for k in ("n_layer", "n_head", "n_embd", "n_inner", "n_positions", "layer_norm_epsilon", "activation_function", "vocab_size")},
    )
    golden.update(golden_for_model(reloaded, tokenizer))
    write_json(folder / "golden.json", golden)
    return {"name": spec.name, "keys": keys}


def build_tiny_gpt2(tokenizer) -> None:
    model = GPT2LMHeadModel.from_pretrained(str(TOKENIZER_DIR), dtype=torch.float32, attn_implementation="eager")
    golden = golden_header("Hugging Face transformers outputs for ../shared/fixtures/tiny-gpt2 (model not copied).")
    golden.update(model="tiny-gpt2", storedDtype="float32", computeDtype="float32")
    golden.update(golden_for_model(model, tokenizer))
    write_json(GOLDEN_DIR / "tiny-gpt2.json", golden)


def main() -> None:
    torch.use_deterministic_algorithms(True)
    tokenizer = load_tokenizer()
    for spec in SPECS:
        info = build(spec, tokenizer)
        keys = info["keys"]
        prefixed = sum(k.startswith("transformer.") for k in keys)
        print(f"{spec.name}: {len(keys)} tensors ({prefixed} with 'transformer.' prefix), dtypes {sorted(set(keys.values()))}")
    build_tiny_gpt2(tokenizer)
    biome_format(MODELS_DIR)
    total = 0
    for f in sorted(MODELS_DIR.rglob("*")) + sorted(GOLDEN_DIR.rglob("*")):
        if f.is_file():
            total += f.stat().st_size
            print(f"{f.stat().st_size:>10}  {f.relative_to(REPO_ROOT)}")
    print(f"{total:>10}  total")


if __name__ == "__main__":
    main()
