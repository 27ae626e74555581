"""Train the demo GPT-2 (Hugging Face GPT2LMHeadModel) on the tokenised demo corpus. Seeded; CPU or CUDA.

Each training sequence is seq_len + 1 tokens: with probability --natural-fraction a window at a random offset of
the State of the Union text, otherwise a window that starts at the beginning of a synthetic story (so prompts that
begin at position 0 without <|endoftext|>, as in TDB, are in distribution).
"""

import argparse
import copy
import json
import math
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

from train_tokenizer import biome_format, load_gpt2_style

HERE = Path(__file__).resolve().parent


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=Path, default=HERE / "data/tokens")
    ap.add_argument("--tokenizer", type=Path, default=HERE.parent.parent / "assets/demo/model")
    ap.add_argument("--out", type=Path, default=HERE.parent.parent / "assets/demo/model")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--n-positions", type=int, default=256)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps (default: from --time-budget-s)")
    ap.add_argument("--time-budget-s", type=float, default=None, help="choose --steps from measured speed")
    ap.add_argument("--max-steps", type=int, default=100_000, help="cap for --time-budget-s")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--natural-fraction", type=float, default=0.2)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--checkpoint-each-eval", action="store_true", help="also save at each evaluation")
    ap.add_argument("--save-dtype", choices=["float32", "float16"], default="float16")
    ap.add_argument("--init-from", type=Path, default=None, help="start from these weights (fine-tuning stage)")
    ap.add_argument("--hard-stop-s", type=float, default=None, help="stop early (and still save) after this long")
    return ap.parse_args()


def read_tokens(path: Path) -> torch.Tensor:
    return torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint16).to(torch.int64)


def read_starts(path: Path) -> torch.Tensor:
    return torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.int32).to(torch.int64)


class Batches:
    """Random training windows drawn with a seeded CPU generator (the same windows on every device)."""

    def __init__(self, tokens_dir: Path, split: str, seq_len: int, device, seed: int, natural_fraction: float):
        self.synthetic = read_tokens(tokens_dir / f"synthetic_{split}.tokens.bin").to(device)
        self.synthetic_starts = read_starts(tokens_dir / f"synthetic_{split}.starts.bin")
        self.natural = read_tokens(tokens_dir / f"sotu_{split}.tokens.bin").to(device)
        self.window = seq_len + 1
        # Story starts whose window stays inside the stream.
        self.synthetic_starts = self.synthetic_starts[self.synthetic_starts + self.window <= len(self.synthetic)]
        self.generator = torch.Generator().manual_seed(seed)
        self.natural_fraction = natural_fraction
        self.offsets = torch.arange(self.window, device=device)

    def sample(self, batch_size: int) -> torch.Tensor:
        g = self.generator
        n_natural = int(torch.binomial(torch.tensor(float(batch_size)), torch.tensor(self.natural_fraction), generator=g))
        n_synthetic = batch_size - n_natural
        picks = torch.randint(len(self.synthetic_starts), (n_synthetic,), generator=g)
        syn_starts = self.synthetic_starts[picks].to(self.offsets.device)
        nat_starts = torch.randint(len(self.natural) - self.window, (n_natural,), generator=g).to(self.offsets.device)
        rows = [self.synthetic[syn_starts[:, None] + self.offsets], self.natural[nat_starts[:, None] + self.offsets]]
        return torch.cat(rows)


def loss_on(model, windows: torch.Tensor, autocast) -> torch.Tensor:
    with autocast():
        logits = model(input_ids=windows[:, :-1]).logits
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))


@torch.no_grad()
def evaluate(model, tokens_dir: Path, seq_len: int, device, autocast, tokenizer) -> dict:
    import ioi

    model.eval()
    out = {}
    for name in ("synthetic_heldout", "sotu_heldout"):
        stream = read_tokens(tokens_dir / f"{name}.tokens.bin")
        n = min((len(stream) - 1) // seq_len, 64)
        windows = torch.stack([stream[i * seq_len : i * seq_len + seq_len + 1] for i in range(n)]).to(device)
        out[f"{name}_loss"] = round(float(loss_on(model, windows, autocast)), 4)
    diffs, top1 = ioi.logit_differences(model, tokenizer, ioi.held_out_prompts(200), device)
    out["ioi_heldout_acc"] = round(sum(d > 0 for d in diffs) / len(diffs), 4)
    out["ioi_heldout_mean_diff"] = round(sum(diffs) / len(diffs), 3)
    model.train()
    return out


def save(model, args, log: dict, step: int, seconds: float) -> None:
    log["steps"] = step
    log["tokens_seen"] = step * args.batch_size * args.seq_len
    log["train_seconds"] = round(seconds)
    args.out.mkdir(parents=True, exist_ok=True)
    copy.deepcopy(model).to("cpu").to(getattr(torch, args.save_dtype)).save_pretrained(
        args.out, safe_serialization=True
    )
    gen_config = args.out / "generation_config.json"
    if gen_config.exists():
        gen_config.unlink()
    for name in ("vocab.json", "merges.txt"):
        if (args.tokenizer / name).resolve() != (args.out / name).resolve():
            shutil.copyfile(args.tokenizer / name, args.out / name)
    (args.out / "train_log.json").write_text(json.dumps(log, indent=2) + "\n")
    biome_format([args.out / name for name in ("config.json", "vocab.json", "train_log.json")])


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)


    tokenizer = load_gpt2_style(args.tokenizer)
    eot = tokenizer.token_to_id("<|endoftext|>")
    config = GPT2Config(
        vocab_size=tokenizer.get_vocab_size(),
        n_positions=args.n_positions,
        n_embd=args.d_model,
        n_layer=args.layers,
        n_head=args.heads,
        activation_function="gelu_new",
        resid_pdrop=args.dropout,
        embd_pdrop=args.dropout,
        attn_pdrop=args.dropout,
        layer_norm_epsilon=1e-5,
        bos_token_id=eot,
        eos_token_id=eot,
        tie_word_embeddings=True,
    )
    if args.init_from is not None:
        model = GPT2LMHeadModel.from_pretrained(args.init_from, dtype=torch.float32).to(device)
        if model.config.vocab_size != config.vocab_size:
            raise SystemExit(f"{args.init_from} has another vocabulary than {args.tokenizer}")
    else:
        model = GPT2LMHeadModel(config).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params:,} parameters, device {device}", flush=True)

    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.95),
        **({"fused": True} if cuda else {}),
    )
    batches = Batches(args.tokens, "train", args.seq_len, device, args.seed, args.natural_fraction)

    total_steps = args.steps
    calibrate_steps = 30 if total_steps is None else 0
    if total_steps is None and args.time_budget_s is None:
        raise SystemExit("give --steps or --time-budget-s")

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        horizon = total_steps if total_steps is not None else args.max_steps
        progress = min(1.0, (step - args.warmup) / max(1, horizon - args.warmup))
        return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))

    log = {"args": {k: str(v) for k, v in vars(args).items()}, "parameters": n_params, "evals": []}
    if args.init_from is not None and (args.init_from / "train_log.json").exists():
        # The earlier stage's record travels with the weights (evaluate.py reports both stages).
        log["previous_stage"] = json.loads((args.init_from / "train_log.json").read_text())
    model.train()
    start = time.time()
    step = 0
    tokens_per_step = args.batch_size * args.seq_len
    calibrate_from = None
    while total_steps is None or step < total_steps:
        if total_steps is None and step in (5, calibrate_steps):
            if cuda:
                torch.cuda.synchronize()
            if step == 5:  # the first steps include one-off start-up costs
                calibrate_from = time.time()
        if step == calibrate_steps and total_steps is None:
            rate = (step - 5) / (time.time() - calibrate_from)
            total_steps = max(step + 1, min(args.max_steps, int(args.time_budget_s * rate)))
            print(f"calibrated: {rate:.1f} steps/s -> {total_steps} steps", flush=True)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        loss = loss_on(model, batches.sample(args.batch_size), autocast)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        elapsed = time.time() - start
        if step % args.log_every == 0 or step == 1:
            print(
                f"step {step}/{total_steps} loss {loss.item():.4f} lr {lr_at(step - 1):.2e} "
                f"{step * tokens_per_step / elapsed:,.0f} tok/s {elapsed:.0f}s",
                flush=True,
            )
        if step % args.eval_every == 0 or step == total_steps:
            metrics = {"step": step, "elapsed_s": round(elapsed), "train_loss": round(loss.item(), 4)}
            metrics.update(evaluate(model, args.tokens, args.seq_len, device, autocast, tokenizer))
            log["evals"].append(metrics)
            print(json.dumps(metrics), flush=True)
            if args.checkpoint_each_eval and step != total_steps:
                save(model, args, log, step, elapsed)
        if args.hard_stop_s is not None and elapsed > args.hard_stop_s:
            print(f"hard stop after {elapsed:.0f}s at step {step}", flush=True)
            break

    save(model, args, log, step, time.time() - start)
    print(f"saved {args.out} ({step} steps, {log['tokens_seen']:,} tokens, {log['train_seconds']}s)", flush=True)


if __name__ == "__main__":
    main()
