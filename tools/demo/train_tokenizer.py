"""Train the demo model's byte-level BPE (GPT-2 scheme) and save it as GPT-2-style vocab.json + merges.txt.

Ids: the 256 byte tokens and the merges from Hugging Face `tokenizers`, then <|endoftext|> as the last id, as in
GPT-2. Fails if any IOI name (training or held-out) is not one token with a leading space.
"""

import argparse
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

HERE = Path(__file__).resolve().parent
EOT = "<|endoftext|>"
DOC_SEPARATOR = f"\n{EOT}\n"


def biome_format(paths: list[Path]) -> None:
    """`npm test` runs `biome check .`, so JSON written into the repository is put in Biome's format (values are
    unchanged). Skipped outside the repository or where npx is missing (e.g. on a bare GPU machine)."""
    repo = HERE.parent.parent
    inside = [str(p) for p in paths if p.resolve().is_relative_to(repo) and p.exists()]
    if inside and shutil.which("npx") and (repo / "node_modules/.bin/biome").exists():
        subprocess.run(["npx", "biome", "format", "--write", *inside], cwd=repo, check=True, capture_output=True)


def documents(path: Path, max_chars: int | None = None):
    text = path.read_text()
    if max_chars is not None:
        text = text[:max_chars]
    for doc in text.split(DOC_SEPARATOR):
        if doc.strip():
            yield doc


def load_gpt2_style(model_dir: Path) -> Tokenizer:
    """The tokenizer exactly as a GPT-2 loader sees vocab.json + merges.txt (no prefix space, byte-level regex)."""
    tokenizer = Tokenizer(
        models.BPE.from_file(str(model_dir / "vocab.json"), str(model_dir / "merges.txt"), fuse_unk=False)
    )
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([EOT])
    return tokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=HERE / "data")
    ap.add_argument("--out", type=Path, default=HERE.parent.parent / "assets/demo/model")
    ap.add_argument("--vocab-size", type=int, default=4096, help="including <|endoftext|>")
    ap.add_argument("--synthetic-mb", type=float, default=20.0, help="how much synthetic text the BPE sees")
    args = ap.parse_args()

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=args.vocab_size - 1,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )

    def corpus():
        yield from documents(args.data / "synthetic_train.txt", int(args.synthetic_mb * 1e6))
        yield from documents(args.data / "sotu_train.txt")

    tokenizer.train_from_iterator(corpus(), trainer=trainer)

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.model.save(tmp)
        vocab = json.loads((Path(tmp) / "vocab.json").read_text())
        merges = (Path(tmp) / "merges.txt").read_text()
    assert len(vocab) == args.vocab_size - 1, len(vocab)
    vocab[EOT] = len(vocab)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    if not merges.startswith("#version"):
        merges = "#version: 0.2\n" + merges
    (args.out / "merges.txt").write_text(merges)
    biome_format([args.out / "vocab.json"])

    loaded = load_gpt2_style(args.out)
    names = json.loads((HERE / "names.json").read_text())
    bad = []
    for name in names["ioi_train_names"] + names["held_out_names"]:
        ids = loaded.encode(" " + name).ids
        if len(ids) != 1:
            bad.append((name, loaded.encode(" " + name).tokens))
    eot_ids = loaded.encode(f"a{EOT}b").ids
    print(f"vocab {loaded.get_vocab_size()} tokens, <|endoftext|> = {loaded.token_to_id(EOT)}; 'a<eot>b' -> {eot_ids}")
    if bad:
        raise SystemExit(f"{len(bad)} IOI names are not single tokens: {bad[:20]}")
    print(f"all {len(names['ioi_train_names']) + len(names['held_out_names'])} IOI names are single tokens")


if __name__ == "__main__":
    main()
