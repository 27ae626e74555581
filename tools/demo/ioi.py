"""IOI prompts for evaluation: "<intro><joiner><action>" ending right before the indirect object (IO)."""

import json
import random
from dataclasses import dataclass
from pathlib import Path

import lexicon as lx

HERE = Path(__file__).resolve().parent
DEMO_PROMPT = "When Mary and John went to the store, John gave a drink to"


@dataclass(frozen=True)
class IoiPrompt:
    text: str
    io: str  # the expected next name
    s: str  # the repeated subject (distractor)
    order: str  # "ABBA" (IO mentioned first) or "BABA"
    intro: int
    action: int


def load_names() -> dict:
    return json.loads((HERE / "names.json").read_text())


def make_prompts(names: list[str], intros, actions, count: int, seed: int) -> list[IoiPrompt]:
    """`count` prompts cycling over every intro×action pair, half ABBA and half BABA, names drawn at random."""
    rng = random.Random(seed)
    # A prompt that starts with a name would give it no leading space, so such intros are skipped.
    pairs = [(i, a) for i in range(len(intros)) if not intros[i][0].startswith("{") for a in range(len(actions))]
    rng.shuffle(pairs)
    prompts = []
    for k in range(count):
        i, a = pairs[k % len(pairs)]
        intro, joiner = intros[i]
        io, s = rng.sample(names, 2)
        order = "ABBA" if k % 2 == 0 else "BABA"
        x, y = (io, s) if order == "ABBA" else (s, io)
        noun, article = rng.choice(lx.OBJECTS)
        place = rng.choice(lx.PLACES)
        action = actions[a].format(S=s, O=noun, aO=f"{article} {noun}")
        text = intro.format(X=x, Y=y, P=place) + joiner + action
        prompts.append(IoiPrompt(text, io, s, order, i, a))
    return prompts


def held_out_prompts(count: int = 400, seed: int = 7) -> list[IoiPrompt]:
    """Unseen templates (held-out intro and held-out action frames) with held-out names."""
    return make_prompts(load_names()["held_out_names"], lx.HELD_OUT_INTROS, lx.HELD_OUT_ACTIONS, count, seed)


def training_distribution_prompts(count: int = 400, seed: int = 8) -> list[IoiPrompt]:
    """Frames drawn like the training ones, with training names (in-distribution reference)."""
    rng = random.Random(seed)
    intros = [lx.train_intro(rng) for _ in range(count)]
    actions = [lx.train_action(rng) for _ in range(count)]
    return make_prompts(load_names()["ioi_train_names"], intros, actions, count, seed)


def logit_differences(model, tokenizer, prompts: list[IoiPrompt], device="cpu", batch_size=100):
    """logit(IO) − logit(S) at the last position of each prompt, and whether IO is the top-1 token."""
    import torch

    diffs, top1 = [], []
    for b in range(0, len(prompts), batch_size):
        chunk = prompts[b : b + batch_size]
        encoded = [tokenizer.encode(p.text).ids for p in chunk]
        width = max(len(e) for e in encoded)
        ids = torch.zeros((len(chunk), width), dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, e in enumerate(encoded):
            ids[r, : len(e)] = torch.tensor(e)  # right padding: the causal prefix is unaffected
            mask[r, : len(e)] = 1
        with torch.no_grad():
            logits = model(input_ids=ids.to(device)).logits.float().cpu()
        for r, (p, e) in enumerate(zip(chunk, encoded)):
            last = logits[r, len(e) - 1]
            io_id = single_token(tokenizer, p.io)
            s_id = single_token(tokenizer, p.s)
            diffs.append(float(last[io_id] - last[s_id]))
            top1.append(int(last.argmax()) == io_id)
    return diffs, top1


def single_token(tokenizer, name: str) -> int:
    ids = tokenizer.encode(" " + name).ids
    if len(ids) != 1:
        raise ValueError(f"' {name}' is {len(ids)} tokens")
    return ids[0]
