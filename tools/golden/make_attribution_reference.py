"""PyTorch-autograd golden values for TDB's attribution maths on the l3-sae fixture (dev only).

Run: `.venv/bin/python tools/golden/make_attribution_reference.py`; the output is committed.

Reads tools/golden/scenarios/l3-sae-scenarios.json and the fixture packages/attribution/test/fixtures/l3-sae,
runs each scenario through tdb_torch.py (an independent plain-PyTorch GPT-2 with TDB's semantics done with
autograd) and writes packages/attribution/test/golden/l3-sae-reference.json.

Before that it re-derives the PyTorch values of ../shared/fixtures/tiny-gpt2/reference.json with the same
code and stops if they disagree, so the semantics here are pinned to an outside reference. Each scenario is
also run in float64: the float32 values written must agree with it, and every TopK selection must have a
margin, so that another float32 implementation selects the same latents.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch
from common import REPO_ROOT, load_tokenizer, write_json
from tdb_torch import Ablation, Autoencoder, Gpt2, Loss, Result, SiteAblation, Trace, run

SCENARIOS = REPO_ROOT / "tools/golden/scenarios/l3-sae-scenarios.json"
FIXTURE = REPO_ROOT / "packages/attribution/test/fixtures/l3-sae"
OUT = REPO_ROOT / "packages/attribution/test/golden/l3-sae-reference.json"
TINY = REPO_ROOT.parent / "shared" / "fixtures" / "tiny-gpt2"
N_HEAD = 4
N_LOGIT_SAMPLES = 32
SEED = 7
MIN_DECISION_MARGIN = 5e-4


def sig7(x: float) -> float:
    return float(f"{x:.7g}")


def nested(t: torch.Tensor) -> list:
    """Nested lists rounded to 7 significant digits; exact zeros stay 0."""
    return torch.as_tensor(t).detach().to(torch.float64).apply_(sig7).tolist()


def max_abs(a: torch.Tensor, b: object) -> float:
    return float((torch.as_tensor(a, dtype=torch.float64) - torch.as_tensor(b, dtype=torch.float64)).abs().max())


def check_tiny_reference() -> None:
    """Our semantics against the shared tiny-gpt2 PyTorch references (tolerance 1e-5 absolute)."""
    ref = json.loads((TINY / "reference.json").read_text())
    model = Gpt2(TINY, 4)
    ids = ref["tokens"]
    loss = Loss("logit_diff", [ref["targetToken"]], [ref["distractorToken"]])
    ae = {0: Autoencoder(TINY / "autoencoders/mlp_post_act/0.safetensors")}
    diffs: dict[str, float] = {}

    base = run(model, ids, [], loss, None, {}, {})
    diffs["logitDiff"] = abs(base.loss - ref["logitDiff"])
    diffs["finalResidualGrad"] = max_abs(base.final_residual_grad, ref["tdbNodeTable"]["finalResidualGrad"])
    for layer in range(model.n_layer):
        diffs[f"mlpGrad{layer}"] = max_abs(base.mlp_post_act_grad[layer], ref["grad"]["tdb"]["mlpPostAct"][layer])
        # The reference leaves the (irrelevant) gradient at masked keys u > t as 0; compare act×grad instead.
        atg = (base.attn_probs[layer] * base.attn_probs_grad[layer]).permute(2, 0, 1)
        diffs[f"attnActTimesGrad{layer}"] = max_abs(atg, ref["actTimesGrad"]["tdb"]["attnProbs"][layer])

    kinds = {"mlp_neuron": "mlp_neuron", "attention_head": "attention_head", "mlp_autoencoder_latent": "mlp_latent"}
    for name, case in ref["ablations"].items():
        node = case["node"]
        kind, ti = kinds[node["nodeType"]], node["tensorIndices"]
        index = ti[2] if kind == "attention_head" else ti[1]
        r = run(model, ids, [Ablation(kind, node["layerIndex"], ti[0], index, case["value"])], loss, None, ae, {})
        diffs[name] = abs(r.loss - case["logitDiff"])
    for name, case in ref["traces"].items():
        node = case["node"]
        kind, ti = kinds[node["nodeType"]], node["tensorIndices"]
        if kind == "attention_head":
            trace = Trace(kind, node["layerIndex"], ti[0], ti[2], ti[1], name.rsplit("_", 1)[1].upper())
        else:
            trace = Trace(kind, node["layerIndex"], ti[0], ti[1])
        r = run(model, ids, [], loss if trace.attention_trace_type == "V" else None, trace, ae, {})
        diffs[name] = abs(r.traced_value - case["tracedValue"])
        for layer, v in enumerate(case.get("actTimesGrad", {}).get("mlpPostAct", [])):
            diffs[f"{name}.mlp{layer}"] = max_abs(r.mlp_post_act[layer] * r.mlp_post_act_grad[layer], v)
        for layer, v in enumerate(case.get("actTimesGrad", {}).get("attnProbs", [])):
            atg = (r.attn_probs[layer] * r.attn_probs_grad[layer]).permute(2, 0, 1)
            diffs[f"{name}.attn{layer}"] = max_abs(atg, v)

    with_ae = run(model, ids, [], loss, None, ae, {})
    z, g = with_ae.mlp_latents[0], with_ae.mlp_latents_grad[0]
    nonzero = ref["autoencoder"]["nonzeroLatents"]
    if int((z != 0).sum()) != len(nonzero):
        sys.exit("tiny-gpt2 check: number of active latents differs")
    diffs["aeLatents"] = max(abs(float(z[t, l]) - a) for t, l, a, _ in nonzero)
    diffs["aeLatentActTimesGrad"] = max(abs(float(z[t, l] * g[t, l]) - x) for t, l, _, x in nonzero)
    worst = max(diffs, key=lambda k: diffs[k])
    print(f"tiny-gpt2 reference.json: {len(diffs)} checks, worst {worst} {diffs[worst]:.2e}")
    if diffs[worst] > 1e-5:
        sys.exit(f"tiny-gpt2 check failed: {json.dumps(diffs, indent=1)}")


def one_token(tokenizer, text: str) -> int:
    ids = tokenizer(text).input_ids
    if len(ids) != 1:
        raise ValueError(f"{text!r} is {len(ids)} GPT-2 tokens, expected 1")
    return ids[0]


def run_scenario(scenario: dict, model: Gpt2, aes: dict, ids: list[int], tokenizer) -> Result:
    spec_loss = scenario["loss"]
    loss = None
    if spec_loss:
        distractors = spec_loss["distractors"]
        loss = Loss(
            spec_loss["name"],
            [one_token(tokenizer, t) for t in spec_loss["targets"]],
            None if distractors is None else [one_token(tokenizer, t) for t in distractors],
        )
    ablations = [
        SiteAblation(a["point"], a["layer"], a["indices"], a["value"])
        if a["kind"] == "site"
        else Ablation(a["kind"], a["layer"], a["token"], a["index"], a["value"])
        for a in scenario["ablations"]
    ]

    def trace_of(tr: dict | None) -> Trace | None:
        if tr is None:
            return None
        return Trace(
            tr["kind"],
            tr["layer"],
            tr["token"],
            tr["index"],
            tr.get("keyToken"),
            tr.get("attentionTraceType"),
            trace_of(tr.get("downstream")),
        )

    trace = trace_of(scenario["trace"])
    use = scenario["autoencoders"]
    return run(
        model,
        ids,
        ablations,
        loss,
        trace,
        aes["mlp"] if use["mlp"] else {},
        aes["attention"] if use["attention"] else {},
    )


def result_tensors(r: Result) -> dict[str, torch.Tensor]:
    """Every number written, flattened, for the float32-vs-float64 comparison."""
    out = {"lastLogits": r.last_logits, "finalResidualGrad": r.final_residual_grad}
    for layer in range(len(r.mlp_post_act)):
        out[f"mlp{layer}"] = r.mlp_post_act[layer] * r.mlp_post_act_grad[layer]
        out[f"attn{layer}"] = r.attn_probs[layer] * r.attn_probs_grad[layer]
        for name, z, g in (
            ("mlpLatents", r.mlp_latents[layer], r.mlp_latents_grad[layer]),
            ("attnLatents", r.attn_latents[layer], r.attn_latents_grad[layer]),
        ):
            if z is not None:
                out[f"{name}{layer}"] = z
                out[f"{name}ActTimesGrad{layer}"] = z * g
    for name, v in (("loss", r.loss), ("traced", r.traced_value)):
        if v is not None:
            out[name] = torch.tensor([v])
    return {k: v.detach().to(torch.float64).flatten() for k, v in out.items()}


def scenario_entry(scenario: dict, ids: list[int], r: Result, sample_ids: list[int], tokenizer) -> dict:
    loss = scenario["loss"]
    layers = []
    for layer in range(len(r.mlp_post_act)):
        entry: dict[str, object] = {
            "mlpActTimesGrad": nested(r.mlp_post_act[layer] * r.mlp_post_act_grad[layer]),
            "attnActTimesGrad": nested(r.attn_probs[layer] * r.attn_probs_grad[layer]),
            "mlpLatents": None,
            "mlpLatentActTimesGrad": None,
            "attnLatents": None,
            "attnLatentActTimesGrad": None,
        }
        if r.mlp_latents[layer] is not None:
            entry["mlpLatents"] = nested(r.mlp_latents[layer])
            entry["mlpLatentActTimesGrad"] = nested(r.mlp_latents[layer] * r.mlp_latents_grad[layer])
        if r.attn_latents[layer] is not None:
            entry["attnLatents"] = nested(r.attn_latents[layer])
            entry["attnLatentActTimesGrad"] = nested(r.attn_latents[layer] * r.attn_latents_grad[layer])
        layers.append(entry)
    return {
        "name": scenario["name"],
        "tokens": ids,
        "targetIds": [one_token(tokenizer, t) for t in loss["targets"]] if loss else None,
        "distractorIds": (
            [one_token(tokenizer, t) for t in loss["distractors"]] if loss and loss["distractors"] is not None else None
        ),
        "loss": None if r.loss is None else sig7(r.loss),
        "activationValueForBackwardPass": None if r.traced_value is None else sig7(r.traced_value),
        "lastLogits": {
            "sample": [sig7(float(r.last_logits[i])) for i in sample_ids],
            "argmax": int(r.last_logits.argmax()),
        },
        "finalResidualGrad": nested(r.final_residual_grad),
        "layers": layers,
    }


def logit_sample_ids(scenarios: list[dict], tokenizer, vocab: int) -> list[int]:
    ids: set[int] = set()
    for s in scenarios:
        if s["loss"]:
            ids.update(one_token(tokenizer, t) for t in s["loss"]["targets"] + (s["loss"]["distractors"] or []))
    gen = torch.Generator().manual_seed(SEED)
    while len(ids) < N_LOGIT_SAMPLES:
        ids.add(int(torch.randint(0, vocab, (1,), generator=gen)))
    return sorted(ids)


def main() -> None:
    torch.use_deterministic_algorithms(True)
    check_tiny_reference()

    tokenizer = load_tokenizer()
    scenarios = json.loads(SCENARIOS.read_text())["scenarios"]
    models = {dtype: Gpt2(FIXTURE, N_HEAD, dtype) for dtype in (torch.float32, torch.float64)}
    aes = {
        dtype: {
            family: {
                layer: Autoencoder(FIXTURE / f"autoencoders/{folder}/{layer}.safetensors", dtype)
                for layer in range(models[dtype].n_layer)
            }
            for family, folder in (("mlp", "mlp_post_act"), ("attention", "resid_delta_attn"))
        }
        for dtype in models
    }
    sample_ids = logit_sample_ids(scenarios, tokenizer, models[torch.float32].unembed.shape[0])
    entries = []
    lengths = set()
    for scenario in scenarios:
        ids = tokenizer(scenario["prompt"]).input_ids
        lengths.add(len(ids))
        r32 = run_scenario(scenario, models[torch.float32], aes[torch.float32], ids, tokenizer)
        r64 = run_scenario(scenario, models[torch.float64], aes[torch.float64], ids, tokenizer)
        if r32.latent_decision_margin < MIN_DECISION_MARGIN:
            sys.exit(f"{scenario['name']}: a TopK selection is decided by {r32.latent_decision_margin:.1e}")
        t32, t64 = result_tensors(r32), result_tensors(r64)
        # In units of the TS test's tolerance (1e-4 absolute + 1e-3 relative).
        errors = {k: float(((t32[k] - t64[k]).abs() / (1e-4 + 1e-3 * t64[k].abs())).max()) for k in t64}
        worst = max(errors.values())
        if worst > 0.1:
            sys.exit(f"{scenario['name']}: float32 and float64 disagree ({errors})")
        largest = {k: float(v.abs().max()) for k, v in t32.items() if k[-1].isdigit()}
        print(
            f"{scenario['name']:<52} loss {r32.loss!s:.10} traced {r32.traced_value!s:.10} "
            f"TopK margin {r32.latent_decision_margin:.2g}  f32 vs f64 {worst:.1e} of the tolerance; "
            f"largest |value| per layer: "
            + " ".join(f"{k}={v:.2g}" for k, v in largest.items() if not k.startswith(("mlpLatents", "attnLatents")))
        )
        entries.append(scenario_entry(scenario, ids, r32, sample_ids, tokenizer))
    if len(lengths) != 1:
        sys.exit(f"prompts must have equal token lengths, got {sorted(lengths)}")

    import safetensors
    import transformers

    data = {
        "description": (
            "Plain-PyTorch autograd references (float32) for TDB inference on the l3-sae fixture, one entry per "
            "scenario of tools/golden/scenarios/l3-sae-scenarios.json (same order). TDB semantics: ln_f scale "
            "detached; traces recompute the node's scalar from the residual before its block with that block's "
            "input LN scale detached; autoencoders spliced in as decode(z') + (x - decode(z))."
        ),
        "generator": "tools/golden/make_attribution_reference.py (model: tools/golden/tdb_torch.py)",
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "safetensors": safetensors.__version__,
        },
        "layout": {
            "logitSampleIds": "vocabulary ids of lastLogits.sample",
            "lastLogits": "logits at the last token: sample (at logitSampleIds) and argmax",
            "finalResidualGrad": "[token][d]: d target / d residual at the end (no trace) or before the traced block",
            "mlpActTimesGrad": "[token][neuron]: mlp.post_act (after ablation) * its gradient",
            "attnActTimesGrad": "[query][key][head]: attention probs (after ablation) * d target / d probs",
            "mlpLatents, attnLatents": "[token][latent]: latents after ablation (null: autoencoder not loaded)",
            "mlpLatentActTimesGrad, attnLatentActTimesGrad": "[token][latent]: latents * gradient at the latents",
            "rounding": "7 significant digits",
        },
        "logitSampleIds": sample_ids,
        "scenarios": entries,
    }
    write_json(OUT, data)
    print(f"wrote {OUT.relative_to(REPO_ROOT)} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
