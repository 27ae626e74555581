"""Golden ids for the TypeScript GPT-2 tokenizer, from Hugging Face transformers.

Run with the repo's dev venv (see tools/python/setup-venv.sh):
    .venv/bin/python tools/golden/tokenizer_golden.py
    npx biome format --write packages/model/test/golden/tokenizer-hf*.json
Loads the tokenizer from ../shared/fixtures/tiny-gpt2 (GPT-2's vocab.json + merges.txt) and writes
  packages/model/test/golden/tokenizer-hf.json           [{text, ids}]  (ids from the Rust fast tokenizer)
  packages/model/test/golden/tokenizer-hf-skeleton.json   HF's own tokenizer.json minus vocab and merges
"""

import json
import sys
from pathlib import Path

import transformers
from transformers import GPT2TokenizerFast

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO.parent / "shared" / "fixtures" / "tiny-gpt2"
OUT_DIR = REPO / "packages" / "model" / "test" / "golden"

TEXTS = [
    "Hello world",
    " Hello world",
    "<|endoftext|>Paris, France. Ottawa,",
    "When Mary and John went to the store, John gave a drink to",
    "I'm sure they'll say it's ours; we've, you're, he'd, don't. IT'S O'NEIL'S 'twas",
    "Café naïve façade résumé — 日本語のテキスト, 中文字符, 한국어, Ελληνικά, русский",
    "🙂 👩‍👩‍👧‍👦 👍🏽 🏳️‍🌈 ❤️ 🇫🇷",
    "  leading\tand\ttabs\n\n  trailing   \n\r\n   ",
    "In 2024, 3.14159 and 1,000,000 or ٣٤٥ and ½ ²³",
    "def f(x):\n    return x**2  # square\n\tif (a && b) { c[i] += 1; }\n",
    "a<|endoftext|>b <|endoftext|> c<|endoftext|><|endoftext|>",
    # Whitespace edge cases where JavaScript's \s differs from Unicode White_Space (U+0085, U+FEFF).
    "x\u0085y \u0085 z\u0085\u0085 w\ufeff v \ufeffu\u00a0t\u3000s\u2028r\u1680q\u180ep\u200bo\x1cn \x1c m",
    "\ufeffBOM at start and \u0085 \u0085\n",
    "line one \u0085next line\u0085\u0085(x) !\u0085 tab\t\u0085x",
    "a" * 100 + " " + "=" * 80 + " " + "1234567890" * 5,
    "नमस्ते दुनिया مرحبا بالعالم",
    "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX!!! ...?!",
    "",
]


def main() -> None:
    fast = GPT2TokenizerFast.from_pretrained(str(FIXTURE))
    records = []
    for text in TEXTS:
        ids = fast.encode(text)
        assert fast.decode(ids) == text or "\ufeff" in text, f"fast tokenizer does not round-trip {text!r}"
        records.append({"text": text, "ids": ids})

    # The pure-Python tokenizer (GPT2Tokenizer, `regex` module) as a second opinion; only reported.
    try:
        from transformers import GPT2Tokenizer

        slow = GPT2Tokenizer.from_pretrained(str(FIXTURE))
        if type(slow) is not type(fast):
            for record in records:
                slow_ids = slow.encode(record["text"])
                if slow_ids != record["ids"]:
                    print(f"note: GPT2Tokenizer differs on {record['text']!r}", file=sys.stderr)
    except Exception as error:  # noqa: BLE001 - the slow tokenizer is optional
        print(f"note: GPT2Tokenizer unavailable ({error})", file=sys.stderr)

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "tokenizer-hf.json").write_text(json.dumps(records, ensure_ascii=False, indent=1) + "\n")

    skeleton = json.loads(fast.backend_tokenizer.to_str())
    merges = skeleton["model"]["merges"]
    skeleton["model"]["vocab"] = {}
    skeleton["model"]["merges"] = merges[:3]  # keeps the merges format this version writes
    skeleton["transformers_version"] = transformers.__version__
    (OUT_DIR / "tokenizer-hf-skeleton.json").write_text(json.dumps(skeleton, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {len(records)} texts with transformers {transformers.__version__}")


if __name__ == "__main__":
    main()
