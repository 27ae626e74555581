"""Tokenise the demo corpus for train.py: for each split, tokens/<split>.tokens.bin (little-endian uint16; documents
each followed by <|endoftext|>) and tokens/<split>.starts.bin (little-endian int32 offsets where documents begin).
Raw files so that train.py needs only torch."""

import argparse
from pathlib import Path

import numpy as np

from train_tokenizer import documents, load_gpt2_style

HERE = Path(__file__).resolve().parent
SPLITS = ["synthetic_train", "synthetic_heldout", "sotu_train", "sotu_heldout"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=HERE / "data")
    ap.add_argument("--tokens", type=Path, default=HERE / "data/tokens", help="output folder")
    ap.add_argument("--model", type=Path, default=HERE.parent.parent / "assets/demo/model")
    args = ap.parse_args()

    tokenizer = load_gpt2_style(args.model)
    args.tokens.mkdir(parents=True, exist_ok=True)
    eot = tokenizer.token_to_id("<|endoftext|>")
    assert tokenizer.get_vocab_size() <= 65536
    for split in SPLITS:
        docs = list(documents(args.data / f"{split}.txt"))
        encoded = tokenizer.encode_batch(docs)
        lengths = np.array([len(e.ids) + 1 for e in encoded], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype("<i4")
        tokens = np.empty(int(lengths.sum()), dtype="<u2")
        for start, e in zip(starts, encoded):
            tokens[start : start + len(e.ids)] = e.ids
            tokens[start + len(e.ids)] = eot
        (args.tokens / f"{split}.tokens.bin").write_bytes(tokens.tobytes())
        (args.tokens / f"{split}.starts.bin").write_bytes(starts.tobytes())
        chars = sum(len(d) for d in docs)
        print(f"{split}: {len(docs)} documents, {len(tokens):,} tokens ({chars / len(tokens):.2f} characters/token)")


if __name__ == "__main__":
    main()
