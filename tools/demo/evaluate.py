"""Evaluate the demo model and write EVAL.md next to it.

- IOI on held-out prompts (held-out intro and action frames, held-out names): share with logit(IO) − logit(S) > 0,
  mean logit difference, IO top-1; with diagnostic splits (which of templates / names are held out).
- Perplexity on held-out natural text (held-out State of the Union addresses) and held-out synthetic stories.
- Parity: our TypeScript tokenizer gives Python's ids; our TypeScript engine gives transformers' logits; the CLI's
  greedy continuation of the demo prompt (needs `npm run build`; skip with --skip-ts).
"""

import argparse
import json
import math
import random
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import torch
from transformers import AutoTokenizer, GPT2LMHeadModel

import ioi
import lexicon as lx
from train_tokenizer import DOC_SEPARATOR, load_gpt2_style

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def summarize(diffs: list[float], top1: list[bool]) -> dict:
    n = len(diffs)
    ordered = sorted(diffs)
    return {
        "prompts": n,
        "share_positive": sum(d > 0 for d in diffs) / n,
        "mean_diff": sum(diffs) / n,
        "median_diff": ordered[n // 2],
        "io_top1": sum(top1) / n,
    }


@torch.no_grad()
def perplexity(model, tokenizer, path: Path, window: int, max_tokens: int | None) -> dict:
    """Mean next-token loss over non-overlapping windows of each document (every token after a document's first)."""
    docs = [d for d in path.read_text().split(DOC_SEPARATOR) if d.strip()]
    total_nll, total_tokens, total_bytes = 0.0, 0, 0
    for doc in docs:
        ids = tokenizer.encode(doc).ids
        for start in range(0, len(ids) - 1, window):
            chunk = ids[start : start + window + 1]
            if len(chunk) < 2:
                break
            x = torch.tensor([chunk])
            logits = model(input_ids=x[:, :-1]).logits[0].float()
            total_nll += float(torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum"))
            total_tokens += len(chunk) - 1
            total_bytes += len(tokenizer.decode(chunk[1:]).encode("utf-8"))
            if max_tokens is not None and total_tokens >= max_tokens:
                break
        if max_tokens is not None and total_tokens >= max_tokens:
            break
    loss = total_nll / total_tokens
    return {"tokens": total_tokens, "loss": loss, "perplexity": math.exp(loss), "bits_per_byte": total_nll / math.log(2) / total_bytes}


def ts_engine(model_dir: Path, request: dict) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(request, f)
        f.flush()
        out = subprocess.run(
            ["node", str(HERE / "ts_engine.mjs"), str(model_dir), f.name], capture_output=True, text=True, check=True
        )
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=REPO / "assets/demo/model")
    ap.add_argument("--data", type=Path, default=HERE / "data")
    ap.add_argument("--prompts", type=int, default=400)
    ap.add_argument("--synthetic-ppl-tokens", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-ts", action="store_true")
    ap.add_argument("--report", type=Path, default=None, help="default: <model>/EVAL.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    tokenizer = load_gpt2_style(args.model)
    model = GPT2LMHeadModel.from_pretrained(args.model).float().eval()  # F16 weights, F32 arithmetic
    config = model.config
    names = ioi.load_names()
    results: dict = {}

    # --- IOI ---------------------------------------------------------------------------------------------------
    held_out = ioi.held_out_prompts(args.prompts)
    diffs, top1 = ioi.logit_differences(model, tokenizer, held_out)
    results["ioi_heldout"] = summarize(diffs, top1)
    by_order, by_intro, by_action = defaultdict(list), defaultdict(list), defaultdict(list)
    for p, d in zip(held_out, diffs):
        by_order[p.order].append(d)
        by_intro[p.intro].append(d)
        by_action[p.action].append(d)
    rng = random.Random(10)
    splits = {
        "held-out frames, held-out names (primary)": held_out,
        "held-out frames, training names": ioi.make_prompts(
            names["ioi_train_names"], lx.HELD_OUT_INTROS, lx.HELD_OUT_ACTIONS, args.prompts, 9
        ),
        "training frames, held-out names": ioi.make_prompts(
            names["held_out_names"],
            [lx.train_intro(rng) for _ in range(args.prompts)],
            [lx.train_action(rng) for _ in range(args.prompts)],
            args.prompts,
            10,
        ),
        "training frames, training names": ioi.training_distribution_prompts(args.prompts),
    }
    split_rows = []
    for label, prompts in splits.items():
        d, t = (diffs, top1) if prompts is held_out else ioi.logit_differences(model, tokenizer, prompts)
        split_rows.append((label, summarize(d, t)))

    demo_ids = tokenizer.encode(ioi.DEMO_PROMPT).ids
    generated = model.generate(
        torch.tensor([demo_ids]), max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.token_to_id("<|endoftext|>")
    )[0, len(demo_ids) :].tolist()
    demo_continuation = tokenizer.decode(generated)
    with torch.no_grad():
        demo_logits = model(torch.tensor([demo_ids])).logits[0, -1]
    demo_diff = float(demo_logits[ioi.single_token(tokenizer, "Mary")] - demo_logits[ioi.single_token(tokenizer, "John")])

    # --- perplexity ------------------------------------------------------------------------------------------
    window = config.n_positions
    results["ppl_sotu_heldout"] = perplexity(model, tokenizer, args.data / "sotu_heldout.txt", window, None)
    results["ppl_synthetic_heldout"] = perplexity(
        model, tokenizer, args.data / "synthetic_heldout.txt", window, args.synthetic_ppl_tokens
    )

    # --- tokenizer parity with transformers' own GPT-2 tokenizer class -------------------------------------------
    sample_texts = [
        (args.data / "sotu_heldout.txt").read_text()[:300_000],
        (args.data / "synthetic_heldout.txt").read_text()[:300_000],
        ioi.DEMO_PROMPT,
        "  double  spaces\n\n\ttabs café 🙂 It's they'll 1234 <|endoftext|> x",
    ]
    hf_tokenizer = AutoTokenizer.from_pretrained(args.model)
    py_ids = [tokenizer.encode(t).ids for t in sample_texts]
    hf_same = all(hf_tokenizer(t)["input_ids"] == ids for t, ids in zip(sample_texts, py_ids))

    # --- our TypeScript engine ---------------------------------------------------------------------------------
    ts = None
    if not args.skip_ts:
        parity_prompts = [ioi.DEMO_PROMPT, held_out[0].text, "The list was: red fox Mary. Again: red"]
        reply = ts_engine(args.model, {"tokenize": sample_texts, "logits": parity_prompts})
        ts_ids_same = all(a == b for a, b in zip(reply["tokenize"], py_ids))
        max_abs = 0.0
        for prompt, r in zip(parity_prompts, reply["logits"]):
            ids = tokenizer.encode(prompt).ids
            assert r["ids"] == ids, prompt
            with torch.no_grad():
                ref = model(torch.tensor([ids])).logits[0, -1]
            max_abs = max(max_abs, float((ref - torch.tensor(r["last"])).abs().max()))
        cli = subprocess.run(
            ["node", str(REPO / "packages/cli/bin/tdb.js"), "generate", "--model", str(args.model), "--prompt",
             ioi.DEMO_PROMPT, "--max-tokens", "5"],
            capture_output=True, text=True, check=True, cwd=REPO,
        ).stdout.strip()
        ts = {"ids_same": ts_ids_same, "tokens_compared": sum(map(len, py_ids)), "max_abs_logit_diff": max_abs,
              "cli": cli, "parity_prompts": len(parity_prompts)}

    # --- report --------------------------------------------------------------------------------------------------
    h = results["ioi_heldout"]
    lines = [
        "# Demo model evaluation",
        "",
        f"Model: `{args.model.relative_to(REPO) if args.model.is_relative_to(REPO) else args.model}` — GPT-2 architecture, "
        f"{config.n_layer} layers, d_model {config.n_embd}, {config.n_head} heads, context {config.n_positions}, "
        f"vocabulary {config.vocab_size} (byte-level BPE), {sum(p.numel() for p in model.parameters()):,} parameters, "
        f"weights stored as {str(config.dtype).replace('torch.', '')}, evaluated in float32.",
        f"Written by `tools/demo/evaluate.py` (see tools/demo/README.md); held-out names and SOTU files are listed in "
        f"`tools/demo/names.json`, held-out frames in `tools/demo/lexicon.py`.",
        "",
    ]
    log_path = args.model / "train_log.json"
    if log_path.exists():
        log = json.loads(log_path.read_text())
        stages = []
        while log is not None:
            stages.insert(0, log)
            log = log.get("previous_stage")
        for number, stage in enumerate(stages, 1):
            final = stage["evals"][-1] if stage.get("evals") else {}
            kind = "fine-tuning from the previous stage" if stage["args"].get("init_from", "None") != "None" else "from scratch"
            lines += [
                f"Training stage {number} (`train_log.json`, {kind}): {stage['steps']:,} steps, "
                f"{stage['tokens_seen']:,} tokens, {stage['train_seconds']} s on "
                f"{stage.get('device', stage['args']['device'])}, text `{stage['args']['tokens']}`; final "
                f"training-time check: held-out IOI {final.get('ioi_heldout_acc', float('nan')):.1%} of 200 prompts, "
                f"held-out SOTU loss {final.get('sotu_heldout_loss', float('nan'))} on its first 64 windows.",
                "",
            ]
    lines += [
        "",
        "## Indirect-object identification (IOI)",
        "",
        f"Primary: {h['prompts']} prompts built from the {len(lx.HELD_OUT_INTROS)} held-out intro frames × "
        f"{len(lx.HELD_OUT_ACTIONS)} held-out action frames (never in the training text) with the "
        f"{len(names['held_out_names'])} held-out names (in training stories, never in an IOI sentence); half ABBA, "
        "half BABA. Metric: logit(IO) − logit(S) at the last position.",
        "",
        "| prompts | logit(IO) − logit(S) > 0 | mean difference | median | IO is top-1 |",
        "|---|---|---|---|---|",
        f"| {h['prompts']} | **{h['share_positive']:.1%}** | **{h['mean_diff']:.2f}** | {h['median_diff']:.2f} | {h['io_top1']:.1%} |",
        "",
        "Splits (same metric; the first row is the primary set):",
        "",
        "| frames, names | prompts | > 0 | mean difference | IO top-1 |",
        "|---|---|---|---|---|",
    ]
    for label, s in split_rows:
        lines.append(f"| {label} | {s['prompts']} | {s['share_positive']:.1%} | {s['mean_diff']:.2f} | {s['io_top1']:.1%} |")
    lines += ["", "Primary set by order and frame (share > 0, mean difference):", ""]
    lines.append("| group | prompts | > 0 | mean |")
    lines.append("|---|---|---|---|")
    for key in sorted(by_order):
        v = by_order[key]
        lines.append(f"| {key} | {len(v)} | {sum(x > 0 for x in v) / len(v):.1%} | {sum(v) / len(v):.2f} |")
    for i in sorted(by_intro):
        v = by_intro[i]
        lines.append(f"| intro `{lx.HELD_OUT_INTROS[i][0]}` | {len(v)} | {sum(x > 0 for x in v) / len(v):.1%} | {sum(v) / len(v):.2f} |")
    for a in sorted(by_action):
        v = by_action[a]
        lines.append(f"| action `{lx.HELD_OUT_ACTIONS[a]}` | {len(v)} | {sum(x > 0 for x in v) / len(v):.1%} | {sum(v) / len(v):.2f} |")
    lines += [
        "",
        f"Demo prompt `{ioi.DEMO_PROMPT}` (training frame and names): logit(Mary) − logit(John) = {demo_diff:.2f}; "
        f"greedy continuation `{demo_continuation}`.",
        "",
        "## Perplexity on held-out text",
        "",
        f"Non-overlapping {window}-token windows per document; every token after a window's first is scored.",
        "",
        "| text | tokens | loss (nats/token) | perplexity | bits/byte |",
        "|---|---|---|---|---|",
    ]
    for key, label in (("ppl_sotu_heldout", "held-out State of the Union addresses (natural English)"),
                       ("ppl_synthetic_heldout", "held-out synthetic stories (other seed)")):
        r = results[key]
        lines.append(f"| {label} | {r['tokens']:,} | {r['loss']:.3f} | **{r['perplexity']:.1f}** | {r['bits_per_byte']:.3f} |")
    lines += ["", "## Parity", ""]
    lines.append(
        f"- transformers `AutoTokenizer` (GPT2TokenizerFast from vocab.json + merges.txt) gives the same ids as the "
        f"recipe's tokenizer: **{hf_same}** ({sum(map(len, py_ids)):,} tokens of held-out text and edge cases)."
    )
    if ts:
        lines += [
            f"- Our TypeScript tokenizer (`Gpt2Tokenizer.fromVocabAndMerges`) gives the same ids: **{ts['ids_same']}** "
            f"({ts['tokens_compared']:,} tokens).",
            f"- Our TypeScript engine vs transformers, last-position logits on {ts['parity_prompts']} prompts: max |Δ| = "
            f"{ts['max_abs_logit_diff']:.2e}.",
            f"- `npx tdb generate --model assets/demo/model --prompt \"{ioi.DEMO_PROMPT}\" --max-tokens 5` prints "
            f"`{ts['cli']}`.",
        ]
    report = args.report or args.model / "EVAL.md"
    report.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if ts and not (ts["ids_same"] and hf_same and ts["max_abs_logit_diff"] < 1e-3):
        sys.exit("parity check failed")


if __name__ == "__main__":
    main()
