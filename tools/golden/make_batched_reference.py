"""PyTorch golden values for the /batched derived-scalar routes (dev only; the output is committed).

Run: `.venv/bin/python tools/golden/make_batched_reference.py` → packages/attribution/test/golden/batched-reference.json

Everything is computed from the checkpoint weights with plain PyTorch (autograd where gradients enter), following
the definitions of tdb-spec §4 and TDB's activation server (interactive_model.py, read_routes.py), not our code:

- tiny-gpt2 on the IOI prompt (loss logit_diff " Mary" − " John", final LayerNorm scale detached): per-layer
  residual norms and projections on the final-residual gradient, attention logits, per-token attention write
  norms / direct effects / act×grad, LayerNorm scales, logits row sums; the losses logit_minus_mean and probs
  with their MLP act×grad per token;
- the node page's LogitLens (prompt "a"): output tokens of a neuron / latent forced to 1, input tokens
  (vocab_token_write_to_input_direction) of a neuron / latent; /derived_scalars output tokens of a neuron whose
  activation at token 0 is negative (TDB swaps the lists);
- /derived_attention_scalars: a head's write-norm matrix with TDB's in/out statistics and normalisation, with
  and without an extra record sequence;
- a V trace into a downstream MLP neuron (tiny-gpt2, tdb_torch autograd), as the TDB page's "Into" sends it;
- the TDB page's residual-stream logit lens (tiny-gpt2, IOI prompt, last token): Hugging Face's hidden state after
  each layer through ln_f and the unembedding, top logits per depth (the viewer asks /batched for these by
  zero-ablating resid.delta_attn / resid.delta_mlp of the later layers at that token);
- l3-sae (TopK resid_delta_attn autoencoders): attn_write_to_latent_summed_over_heads of one latent, its
  token-pair attribution, and the output tokens of that latent forced to 1.

Top/bottom token lists keep 110 entries (the tests compare the first 100, tolerating near-ties at the cut); the
596 least-common GPT-2 strings (TDB's list) are resolved with the Hugging Face tokenizer and excluded.
"""

from __future__ import annotations

import json
import math
import re

import torch
from common import IOI_PROMPT, REPO_ROOT, load_tokenizer, write_json
from make_attribution_reference import nested, sig7
from tdb_torch import Ablation, Autoencoder, Gpt2, decision_margin, gelu_new, layer_norm, run
from tdb_torch import Trace as TraceSpec

TINY = REPO_ROOT.parent / "shared/fixtures/tiny-gpt2"
L3_SAE = REPO_ROOT / "packages/attribution/test/fixtures/l3-sae"
OUT = REPO_ROOT / "packages/attribution/test/golden/batched-reference.json"
LEAST_COMMON = REPO_ROOT / "packages/attribution/src/least-common-tokens.ts"
N_HEAD = 4
KEEP = 110
EPS = 1e-5


def least_common_ids(tokenizer) -> list[int]:
    """TDB's LEAST_COMMON_GPT2_TOKEN_STRS (the strings, copied as data into least-common-tokens.ts) → ids."""
    text = LEAST_COMMON.read_text()
    block = text[text.index("LEAST_COMMON_GPT2_TOKEN_STRS") : text.index("LEAST_COMMON_GPT2_TOKEN_IDS")]
    body = block[block.index("[") + 1 : block.rindex("]")]
    strings = []
    # The array mixes "…" (JSON escapes) and '…' literals (strings containing a double quote).
    for m in re.finditer(r'"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\'', body):
        if m.group(1) is not None:
            strings.append(json.loads(f'"{m.group(1)}"'))
        else:
            raw = m.group(2).replace("\\'", "'").replace('"', '\\"')
            strings.append(json.loads(f'"{raw}"'))
    ids = []
    for s in strings:
        enc = tokenizer(s).input_ids
        if len(enc) != 1:
            raise ValueError(f"least-common string {s!r} is {len(enc)} tokens")
        ids.append(enc[0])
    if len(ids) != 596:
        raise ValueError(f"expected 596 least-common strings, got {len(ids)}")
    return ids


def ranked(scores: torch.Tensor, excluded: list[int]) -> dict:
    """TDB's top/bottom token lists: excluded ids never listed; top descending, bottom ascending."""
    top_scores = scores.clone()
    top_scores[excluded] = -math.inf
    bottom_scores = scores.clone()
    bottom_scores[excluded] = math.inf
    top = torch.topk(top_scores, KEEP)
    bottom = torch.topk(bottom_scores, KEEP, largest=False)
    return {
        "topIds": top.indices.tolist(),
        "topScalars": [sig7(v) for v in top.values.tolist()],
        "bottomIds": bottom.indices.tolist(),
        "bottomScalars": [sig7(v) for v in bottom.values.tolist()],
    }


def output_scores(model: Gpt2, write: torch.Tensor) -> torch.Tensor:
    """TokenWriteConverter: write·(W_U ⊙ γ_f), minus its mean over the vocabulary."""
    s = (write * model.w["ln_f.weight"]) @ model.unembed.T
    return s - s.mean()


def ln(x: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return layer_norm(x, gain, bias, detach_scale=False)


def ln_scale(x: torch.Tensor) -> torch.Tensor:
    c = x - x.mean(-1, keepdim=True)
    return torch.sqrt((c**2).mean(-1) + EPS)


class Trace:
    """Every intermediate of one plain forward pass (no ablations, no autoencoders), kept for autograd."""

    def __init__(self, model: Gpt2, ids: list[int]):
        w = model.w
        T = len(ids)
        self.ids = ids
        x = w["wte.weight"][ids] + w["wpe.weight"][:T]
        if torch.is_grad_enabled():
            x.requires_grad_(True)
        self.emb = x
        self.x_pre, self.q, self.k, self.v, self.scores, self.probs, self.vout = [], [], [], [], [], [], []
        self.delta_attn, self.x_mid, self.pre, self.post, self.delta_mlp, self.x_post = [], [], [], [], [], []
        for layer in range(model.n_layer):
            self.x_pre.append(x)
            q, k, v = model.qkv(layer, x, detach_scale=False)
            s = model.scores(q, k)
            a = torch.softmax(s, dim=1)
            if a.requires_grad:
                a.retain_grad()
            vout = torch.einsum("tuh,uhd->thd", a, v)
            delta = vout.reshape(T, -1) @ model.p(layer, "attn.c_proj.weight") + model.p(layer, "attn.c_proj.bias")
            x = x + delta
            pre = model.mlp_pre(layer, x, detach_scale=False)
            post = gelu_new(pre)
            if post.requires_grad:
                post.retain_grad()
            dm = model.mlp_out(layer, post)
            self.q.append(q)
            self.k.append(k)
            self.v.append(v)
            self.scores.append(s)
            self.probs.append(a)
            self.vout.append(vout)
            self.delta_attn.append(delta)
            self.x_mid.append(x)
            self.pre.append(pre)
            self.post.append(post)
            self.delta_mlp.append(dm)
            x = x + dm
            self.x_post.append(x)
        self.x_final = x
        if x.requires_grad:
            x.retain_grad()
        self.logits = model.logits(x)  # ln_f scale detached (TDB's backward pass)


def ioi_dsts(model: Gpt2, tokenizer) -> dict:
    ids = tokenizer(IOI_PROMPT).input_ids
    T = len(ids)
    n = model.n_layer
    mary, john = tokenizer(" Mary").input_ids[0], tokenizer(" John").input_ids[0]
    tr = Trace(model, ids)
    loss = tr.logits[-1, mary] - tr.logits[-1, john]
    loss.backward()
    g = tr.x_final.grad
    dh = model.d // model.n_head
    out: dict[str, object] = {"tokens": ids, "loss": sig7(float(loss.detach()))}
    per_layer: dict[str, list] = {
        k: []
        for k in [
            "attnQkLogits",
            "attnWriteNormPerSequenceToken",
            "attnWriteToFinalResidualGradPerSequenceToken",
            "attnActTimesGradPerSequenceToken",
            "residPostMlpNorm",
            "residPostAttnNorm",
            "mlpLayerWriteNorm",
            "attnLayerWriteNorm",
            "residPostMlpProjToFinalResidualGrad",
            "residPostAttnProjToFinalResidualGrad",
            "mlpLayerWriteToFinalResidualGrad",
            "attnLayerWriteToFinalResidualGrad",
            "attnInputLayerNormScale",
            "mlpInputLayerNormScale",
        ]
    }
    with torch.no_grad():
        for L in range(n):
            s = tr.scores[L].clone()
            s[torch.isinf(s)] = 0.0  # masked pairs: not compared
            per_layer["attnQkLogits"].append(nested(s))
            writes = torch.stack(
                [tr.vout[L][:, h] @ model.w_o(L, h) for h in range(model.n_head)], dim=1
            )  # [T, H, d]
            per_layer["attnWriteNormPerSequenceToken"].append(nested(writes.norm(dim=-1)))
            per_layer["attnWriteToFinalResidualGradPerSequenceToken"].append(
                nested(torch.einsum("thd,td->th", writes, g))
            )
            per_layer["attnActTimesGradPerSequenceToken"].append(
                nested((tr.probs[L] * tr.probs[L].grad).sum(dim=1))
            )
            per_layer["residPostMlpNorm"].append(nested(tr.x_post[L].norm(dim=-1)))
            per_layer["residPostAttnNorm"].append(nested(tr.x_mid[L].norm(dim=-1)))
            per_layer["mlpLayerWriteNorm"].append(nested(tr.delta_mlp[L].norm(dim=-1)))
            per_layer["attnLayerWriteNorm"].append(nested(tr.delta_attn[L].norm(dim=-1)))
            # TDB's precedence: a residual quantity projects on g only if it comes strictly before the final
            # residual (resid.post_mlp of the last layer); that one itself gets 0.
            proj_post_mlp = (tr.x_post[L] * g).sum(-1) if L < n - 1 else torch.zeros(T)
            per_layer["residPostMlpProjToFinalResidualGrad"].append(nested(proj_post_mlp))
            per_layer["residPostAttnProjToFinalResidualGrad"].append(nested((tr.x_mid[L] * g).sum(-1)))
            per_layer["mlpLayerWriteToFinalResidualGrad"].append(nested((tr.delta_mlp[L] * g).sum(-1)))
            per_layer["attnLayerWriteToFinalResidualGrad"].append(nested((tr.delta_attn[L] * g).sum(-1)))
            per_layer["attnInputLayerNormScale"].append(nested(ln_scale(tr.x_pre[L])))
            per_layer["mlpInputLayerNormScale"].append(nested(ln_scale(tr.x_mid[L])))
        out.update(per_layer)
        out["finalLayerNormScale"] = nested(ln_scale(tr.x_final))
        full_logits = ln(tr.x_final, model.w["ln_f.weight"], model.w["ln_f.bias"]) @ model.unembed.T
        out["logitRowSums"] = nested(full_logits.double().sum(-1))
        out["headDim"] = dh

    # The other loss functions (tdb-spec §4.2), each with the MLP act×grad summed over layers and neurons. The
    # target is the most likely next token, so that "probs" is not vanishingly small.
    target = int(tr.logits[-1].argmax())
    target_text = tokenizer.decode([target])
    if tokenizer(target_text).input_ids != [target]:
        raise ValueError(f"{target_text!r} does not encode back to [{target}]")
    losses: dict[str, object] = {"target": target_text}
    for name in ("logit_minus_mean", "probs"):
        tr2 = Trace(model, ids)
        last = tr2.logits[-1]
        value = last[target] - last.mean() if name == "logit_minus_mean" else torch.softmax(last, -1)[target]
        value.backward()
        atg = sum((p * p.grad).sum(-1) for p in tr2.post)
        losses[name] = {"value": sig7(float(value.detach())), "mlpActTimesGradByToken": nested(atg)}
    out["losses"] = losses
    return out


def logit_lens(model: Gpt2, tokenizer, excluded: list[int], mlp_ae: Autoencoder) -> dict:
    w = model.w
    out: dict[str, object] = {}
    with torch.no_grad():
        # Output tokens: the node forced to 1 at token 0 writes its own weight row.
        neuron_write = model.p(1, "mlp.c_proj.weight")[169]
        out["outputNeuron"] = {"layer": 1, "neuron": 169, **ranked(output_scores(model, neuron_write), excluded)}
        latent_write = mlp_ae.dec[:, 120] @ model.p(0, "mlp.c_proj.weight")
        out["outputLatent"] = {"layer": 0, "latent": 120, **ranked(output_scores(model, latent_write), excluded)}
        # Input tokens: the node's pre-activation with the raw token embedding as the block input.
        emb = w["wte.weight"]
        pre1 = ln(emb, model.p(1, "ln_2.weight"), model.p(1, "ln_2.bias")) @ model.p(1, "mlp.c_fc.weight")
        pre1 = pre1[:, 169] + model.p(1, "mlp.c_fc.bias")[169]
        out["inputNeuron"] = {"layer": 1, "neuron": 169, **ranked(pre1, excluded)}
        pre0 = ln(emb, model.p(0, "ln_2.weight"), model.p(0, "ln_2.bias")) @ model.p(0, "mlp.c_fc.weight")
        pre0 = pre0 + model.p(0, "mlp.c_fc.bias")
        latent_pre = (gelu_new(pre0) - mlp_ae.pre_bias) @ mlp_ae.enc[120] + mlp_ae.latent_bias[120]
        out["inputLatent"] = {"layer": 0, "latent": 120, **ranked(latent_pre, excluded)}
        out["inputNeuronScoreOfToken0"] = sig7(float(pre1[0]))

        # /derived_scalars numTopTokens on the IOI prompt for a neuron negative at token 0: TDB swaps the lists.
        ids = tokenizer(IOI_PROMPT).input_ids
        tr = Trace(model, ids)
        post0 = tr.post[1][0]
        neuron = int(torch.argmin(post0))
        a0 = float(post0[neuron])
        scores = output_scores(model, a0 * model.p(1, "mlp.c_proj.weight")[neuron])
        r = ranked(scores, excluded)
        out["negativeNeuron"] = {
            "layer": 1,
            "neuron": neuron,
            "activation0": sig7(a0),
            "activations": nested(tr.post[1][:, neuron]),
            # Swapped: "top" lists the most negative scores (ascending), "bottom" the most positive.
            "topIds": r["bottomIds"],
            "topScalars": r["bottomScalars"],
            "bottomIds": r["topIds"],
            "bottomScalars": r["topScalars"],
        }
    return out


def attention_statistics(sequences: list[list[list[float]]]) -> list[list[dict]]:
    """read_routes.normalize_attention_token_scalars, written from its definition."""

    def scale(values: list[float]):
        m = max([max(v, 0.0) for v in values] + [0.0])
        return lambda x: max(x / (m - 1e-5), 0.0)

    def stats(rows: list[list[float]]):
        n = len(rows)
        tin = [sum(r) for r in rows]
        min_ = [max(r) for r in rows]
        cols = [[rows[i][j] for i in range(j, n) if j < len(rows[i])] for j in range(n)]
        return tin, min_, [sum(c) for c in cols], [max(c) for c in cols]

    all_stats = [stats(rows) for rows in sequences]
    scalar_scale = scale([x for rows in sequences for r in rows for x in r])
    scales = [scale([x for st in all_stats for x in st[i]]) for i in range(4)]
    out = []
    for rows, st in zip(sequences, all_stats, strict=True):
        seq = []
        for i, r in enumerate(rows):
            seq.append(
                {
                    "scalars": [sig7(x) for x in r],
                    "normalizedScalars": [sig7(scalar_scale(x)) for x in r],
                    "totalScalarIn": sig7(st[0][i]),
                    "normalizedTotalScalarIn": sig7(scales[0](st[0][i])),
                    "maxScalarIn": sig7(st[1][i]),
                    "normalizedMaxScalarIn": sig7(scales[1](st[1][i])),
                    "totalScalarOut": sig7(st[2][i]),
                    "normalizedTotalScalarOut": sig7(scales[2](st[2][i])),
                    "maxScalarOut": sig7(st[3][i]),
                    "normalizedMaxScalarOut": sig7(scales[3](st[3][i])),
                }
            )
        out.append(seq)
    return out


def attention_head(model: Gpt2, tokenizer) -> dict:
    ids = tokenizer(IOI_PROMPT).input_ids
    L, h = 1, 3
    with torch.no_grad():
        tr = Trace(model, ids)
        vo = tr.v[L][:, h] @ model.w_o(L, h)  # [u, d]
        matrix = tr.probs[L][:, :, h] * vo.norm(dim=-1)[None, :]
    rows = [[float(matrix[t, u]) for u in range(t + 1)] for t in range(len(ids))]
    record = [[2.5], [0.25, 4.0], [0.5, 0.125, 1.0]]
    return {
        "layer": L,
        "head": h,
        "tokens": ids,
        "alone": attention_statistics([rows])[0],
        "recordSequences": [record],
        "withRecord": attention_statistics([rows, record])[0],
    }


def l3_sae_attention_latent(tokenizer, excluded: list[int]) -> dict:
    model = Gpt2(L3_SAE, N_HEAD)
    L = 1
    ae = Autoencoder(L3_SAE / f"autoencoders/resid_delta_attn/{L}.safetensors")
    ids = tokenizer(IOI_PROMPT).input_ids
    T = len(ids)
    with torch.no_grad():
        tr = Trace(model, ids)
    x_in = tr.delta_attn[L].detach().clone().requires_grad_(True)
    pre = ae.encode_pre_act(x_in)
    z = ae.activate(pre)
    counts = (z > 0).sum(0)
    latent = int(torch.argmax(counts))
    (grad,) = torch.autograd.grad(z[:, latent].sum(), x_in)  # ∂(Σ_t z[t, ℓ]) / ∂x_in, per token
    with torch.no_grad():
        writes = torch.einsum("tuh,uhd->tuhd", tr.probs[L], tr.v[L])  # A·V per head
        w_o = model.p(L, "attn.c_proj.weight").reshape(N_HEAD, -1, model.d)
        per_head = torch.einsum("tuhd,hde,te->tuh", writes, w_o, grad)
        summed = per_head.sum(-1)
        active = [t for t in range(T) if z[t, latent] > 0]
        attributions = {}
        for t in active:
            top = torch.topk(summed[t, : t + 1], min(3, t + 1))
            attributions[str(t)] = {"tokenIndices": top.indices.tolist(), "attributions": [sig7(v) for v in top.values.tolist()]}
        output = ranked(output_scores(model, ae.dec[:, latent]), excluded)
    margin = decision_margin(ae, pre.detach())
    if margin < 5e-4:
        raise ValueError(f"TopK selection margin {margin} too small for a stable golden")
    return {
        "layer": L,
        "latent": latent,
        "tokens": ids,
        "activeTokens": active,
        "latentValues": nested(z[:, latent]),
        "attnWriteToLatentSummedOverHeads": nested(summed),
        "tokenPairAttribution": attributions,
        "outputLatent": output,
        "topKMargin": sig7(margin),
    }


def residual_lens(tokenizer, token: int = 13, keep: int = 12) -> dict:
    """Top logits of LN_f(residual after k layers)[token] · W_U for k = 0..N, from Hugging Face's hidden states."""
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(TINY, dtype=torch.float32).eval()
    ids = tokenizer(IOI_PROMPT).input_ids
    with torch.no_grad():
        out = hf(torch.tensor([ids]), output_hidden_states=True)
        n = hf.config.n_layer
        rows = [hf.lm_head(hf.transformer.ln_f(out.hidden_states[k][0, token])) for k in range(n)]
        # HF's last hidden state already went through ln_f: its logits are the model's own.
        rows.append(out.logits[0, token])
    depths = []
    for row in rows:
        values, top = torch.topk(row, keep)
        depths.append(
            {
                "ids": top.tolist(),
                "tokens": [tokenizer.decode([i]) for i in top.tolist()],
                "logits": [sig7(float(v)) for v in values],
            }
        )
    return {"prompt": IOI_PROMPT, "tokens": ids, "token": token, "depths": depths}


def value_trace_into_neuron(model: Gpt2, tokenizer) -> dict:
    """A V trace into a downstream node on tiny-gpt2 (tdb_torch autograd): the scalar the viewer shows."""
    ids = tokenizer(IOI_PROMPT).input_ids
    upstream = {"nodeType": "attention_head", "tensorIndices": [13, 8, 0], "layerIndex": 0, "passType": "forward"}
    downstream = {"nodeType": "mlp_neuron", "tensorIndices": [13, 67], "layerIndex": 0, "passType": "forward"}
    trace = TraceSpec("attention_head", 0, 13, 0, 8, "V", TraceSpec("mlp_neuron", 0, 13, 67))
    r = run(model, ids, list[Ablation](), None, trace, {}, {})
    return {
        "prompt": IOI_PROMPT,
        "upstreamNodeToTrace": {"nodeIndex": upstream, "attentionTraceType": "V"},
        "downstreamNodeToTrace": {"nodeIndex": downstream},
        "activationValueForBackwardPass": sig7(r.traced_value),
    }


def main() -> None:
    torch.set_grad_enabled(True)
    tokenizer = load_tokenizer()
    excluded = least_common_ids(tokenizer)
    model = Gpt2(TINY, N_HEAD)
    mlp_ae = Autoencoder(TINY / "autoencoders/mlp_post_act/0.safetensors")
    ioi = ioi_dsts(model, tokenizer)
    ref_loss = 2.2672808
    if abs(ioi["loss"] - ref_loss) > 1e-5:
        raise SystemExit(f"IOI loss {ioi['loss']} differs from reference.json {ref_loss}")
    data = {
        "description": __doc__.strip().splitlines()[0],
        "generator": "tools/golden/make_batched_reference.py",
        "torch": torch.__version__,
        "ioi": ioi,
        "logitLens": logit_lens(model, tokenizer, excluded, mlp_ae),
        "residualLens": residual_lens(tokenizer),
        "valueTraceIntoNeuron": value_trace_into_neuron(model, tokenizer),
        "attentionHead": attention_head(model, tokenizer),
        "l3SaeAttentionLatent": l3_sae_attention_latent(tokenizer, excluded),
    }
    write_json(OUT, data)
    print(f"wrote {OUT.relative_to(REPO_ROOT)} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
