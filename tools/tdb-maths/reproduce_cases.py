"""Independent PyTorch re-derivation of TDB's /batched_tdb answers for the tiny-gpt2 fixture.

Dev-only check of docs/tdb-maths.md: it follows the recipe written there (not TDB's code), runs every recorded
case in ../shared/fixtures/tdb-cases and writes our answer for each to an output folder, in the wire format,
so the recorded and re-derived responses can be compared (tools/tdb-maths/compare_cases.test.ts does that with
packages/attribution/test/case-compare.ts).

    tools/python venv:  .venv/bin/python tools/tdb-maths/reproduce_cases.py [out_dir]
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import GPT2TokenizerFast

SHARED = Path(__file__).resolve().parents[2].parent / "shared"  # beside the checkout
MODEL_DIR = SHARED / "fixtures/tiny-gpt2"
CASES_DIR = SHARED / "fixtures/tdb-cases"
REPO = Path(__file__).resolve().parents[2]

torch.set_grad_enabled(True)
W = {k.removeprefix("transformer."): v.float() for k, v in load_file(str(MODEL_DIR / "model.safetensors")).items()}
AE = {k: v for k, v in load_file(str(MODEL_DIR / "autoencoders/mlp_post_act/0.safetensors")).items()}
TOK = GPT2TokenizerFast.from_pretrained(str(MODEL_DIR))
N_LAYERS, D, N_HEADS = 2, 64, 4
D_HEAD = D // N_HEADS
N_VOCAB = W["wte.weight"].shape[0]


def _least_common_ids() -> list[int]:
    """LEAST_COMMON_GPT2_TOKEN_IDS from packages/attribution/src/least-common-tokens.ts."""
    source = (REPO / "packages/attribution/src/least-common-tokens.ts").read_text()
    body = source.split("LEAST_COMMON_GPT2_TOKEN_IDS: readonly number[] = [", 1)[1].split("];", 1)[0]
    return [int(x) for x in body.replace("\n", " ").split(",") if x.strip()]


LEAST_COMMON_IDS = _least_common_ids()
assert len(LEAST_COMMON_IDS) == 596


def decode(token: int) -> str:
    return TOK.decode([token], clean_up_tokenization_spaces=False)


def encode_single(token_str: str) -> int:
    ids = TOK.encode(token_str)
    if len(ids) != 1:
        raise ValueError(f"'{token_str}' decoded to {ids}; wanted exactly 1 token")
    return ids[0]


def layer_norm(x: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor, detach_scale: bool) -> torch.Tensor:
    centred = x - x.mean(-1, keepdim=True)
    scale = torch.sqrt((centred**2).mean(-1, keepdim=True) + 1e-5)
    if detach_scale:
        scale = scale.detach()
    return centred / scale * gain + bias


def gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def qkv(layer: int, resid: torch.Tensor, detach_scale: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    h = layer_norm(resid, W[f"h.{layer}.ln_1.weight"], W[f"h.{layer}.ln_1.bias"], detach_scale)
    out = h @ W[f"h.{layer}.attn.c_attn.weight"] + W[f"h.{layer}.attn.c_attn.bias"]
    q, k, v = out.split(D, dim=-1)
    t = resid.shape[0]
    scale = D_HEAD**-0.25
    return q.view(t, N_HEADS, D_HEAD) * scale, k.view(t, N_HEADS, D_HEAD) * scale, v.view(t, N_HEADS, D_HEAD)


def attn_logits(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    t = q.shape[0]
    s = torch.einsum("thd,uhd->tuh", q, k)
    mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
    return s.masked_fill(mask[:, :, None], float("-inf"))


def mlp_pre(layer: int, resid: torch.Tensor, detach_scale: bool) -> torch.Tensor:
    h = layer_norm(resid, W[f"h.{layer}.ln_2.weight"], W[f"h.{layer}.ln_2.bias"], detach_scale)
    return h @ W[f"h.{layer}.mlp.c_fc.weight"] + W[f"h.{layer}.mlp.c_fc.bias"]


def ae_encode_pre(a: torch.Tensor) -> torch.Tensor:
    return (a - AE["pre_bias"]) @ AE["encoder.weight"].T + AE["latent_bias"]


def ae_decode(z: torch.Tensor) -> torch.Tensor:
    return z @ AE["decoder.weight"].T + AE["pre_bias"]


W_OUT = [W[f"h.{l}.mlp.c_proj.weight"] for l in range(N_LAYERS)]  # [ff, d]
W_O = [W[f"h.{l}.attn.c_proj.weight"].view(N_HEADS, D_HEAD, D) for l in range(N_LAYERS)]  # [h, dh, d]
AE_WRITE = AE["decoder.weight"].T @ W_OUT[0]  # [latents, d]: latent -> mlp_post_act -> residual
UNEMBED_WITH_GAIN = W["wte.weight"].T * W["ln_f.weight"][:, None]  # [d, vocab]


# ---------------------------------------------------------------------------------------------------------------
# one inference (forward with ablations, backward from loss or trace scalar)


def run(spec: dict, with_ae: bool) -> dict:
    tokens = TOK.encode(spec["prompt"])
    t_len = len(tokens)
    target = [encode_single(s) for s in spec["targetTokens"]]
    distractor = [encode_single(s) for s in spec["distractorTokens"]]
    ablations = spec.get("nodeAblations") or []
    up = spec.get("upstreamNodeToTrace")

    def ablate(x: torch.Tensor, kind: str, layer: int) -> torch.Tensor:
        kinds = {"attention_head": {"attention_head"}, "mlp_neuron": {"mlp_neuron"}}.get(
            kind, {"autoencoder_latent", "mlp_autoencoder_latent"}
        )
        mine = [a for a in ablations if a["nodeIndex"]["layerIndex"] == layer and a["nodeIndex"]["nodeType"] in kinds]
        if not mine:
            return x
        x = x.clone()
        for a in mine:
            ti = a["nodeIndex"]["tensorIndices"]
            if kind == "attention_head":
                x[ti[0], :, ti[-1]] = a["value"]
            else:
                x[ti[0], ti[-1]] = a["value"]
        return x

    st: dict[str, object] = {"tokens": tokens}
    emb = (W["wte.weight"][tokens] + W["wpe.weight"][:t_len]).requires_grad_(True)
    st["emb"] = emb
    x = emb
    resid_pre, resid_mid, probs, values, post, latents, qk_logits = [], [], [], [], [], [], []
    for layer in range(N_LAYERS):
        resid_pre.append(x)
        q, k, v = qkv(layer, x, False)
        a_probs = torch.softmax(attn_logits(q, k), dim=1)
        a_probs = ablate(a_probs, "attention_head", layer)
        a_probs.retain_grad()
        probs.append(a_probs)
        values.append(v)
        vout = torch.einsum("tuh,uhd->thd", a_probs, v).reshape(t_len, D)
        x = x + vout @ W[f"h.{layer}.attn.c_proj.weight"] + W[f"h.{layer}.attn.c_proj.bias"]
        x.retain_grad()
        resid_mid.append(x)
        act = gelu(mlp_pre(layer, x, False))
        act = ablate(act, "mlp_neuron", layer)
        act.retain_grad()
        post.append(act)
        if with_ae and layer == 0:
            z = torch.relu(ae_encode_pre(act))
            z_hooked = ablate(z.clone(), "autoencoder_latent", layer)  # mlp_autoencoder_latent matches too
            z_hooked.retain_grad()
            latents.append(z_hooked)
            act_out = ae_decode(z_hooked) + (act - ae_decode(z.clone()))
        else:
            act_out = act
        x = x + act_out @ W_OUT[layer] + W[f"h.{layer}.mlp.c_proj.bias"]
        if layer < N_LAYERS - 1:
            x.retain_grad()
    final = x
    final.retain_grad()
    logits = layer_norm(final, W["ln_f.weight"], W["ln_f.bias"], True) @ W["wte.weight"].T

    def logit_diff(lg: torch.Tensor) -> torch.Tensor:
        t_mean = lg[-1, target].mean()
        return t_mean - lg[-1, distractor].mean() if distractor else t_mean

    loss = logit_diff(logits)
    trace_value = None
    if up is None:
        backward_from = loss
        final_grad_site = ("final", None)
    else:
        node = up["nodeIndex"]
        layer, ti, kind = node["layerIndex"], node["tensorIndices"], node["nodeType"]
        trace_type = up.get("attentionTraceType")
        if kind == "mlp_neuron":
            trace_value = mlp_pre(layer, resid_mid[layer], True)[ti[0], ti[1]]
            final_grad_site = ("mid", layer)
        elif kind == "mlp_autoencoder_latent":
            trace_value = ae_encode_pre(gelu(mlp_pre(layer, resid_mid[layer], True)))[ti[0], ti[1]]
            final_grad_site = ("mid", layer)
        elif kind == "attention_head" and trace_type in ("Q", "K", "QK"):
            q, k, _ = qkv(layer, resid_pre[layer], True)
            if trace_type == "Q":
                k = k.detach()
            if trace_type == "K":
                q = q.detach()
            trace_value = attn_logits(q, k)[ti[0], ti[1], ti[2]]
            final_grad_site = ("pre", layer)
        elif kind == "attention_head" and trace_type == "V":
            # gradient of the loss at the final residual, recomputed locally from a detached copy
            final_copy = final.detach().requires_grad_(True)
            local = logit_diff(layer_norm(final_copy, W["ln_f.weight"], W["ln_f.bias"], True) @ W["wte.weight"].T)
            (g_down,) = torch.autograd.grad(local, final_copy)
            q, k, v = qkv(layer, resid_pre[layer], True)
            a_probs = torch.softmax(attn_logits(q.detach(), k.detach()), dim=1)
            t, u, h = ti
            write = (a_probs[t, u, h] * v[u, h]) @ W_O[layer][h]
            trace_value = write @ g_down[t]
            final_grad_site = ("pre", layer)
        else:
            raise NotImplementedError(up)
        backward_from = trace_value
    backward_from.backward()

    def grad(x: torch.Tensor) -> torch.Tensor:
        return x.grad if x.grad is not None else torch.zeros_like(x)

    kind, layer = final_grad_site
    if kind == "final":
        g_final = grad(final)
    elif kind == "mid":
        g_final = grad(resid_mid[layer])
    else:
        g_final = grad(emb) if layer == 0 else grad(resid_pre[layer])
    has_loss = up is None or (up.get("attentionTraceType") == "V")
    st.update(
        emb=emb.detach(),
        emb_grad=grad(emb),
        probs=[p.detach() for p in probs],
        probs_grad=[grad(p) for p in probs],
        values=[v.detach() for v in values],
        post=[p.detach() for p in post],
        post_grad=[grad(p) for p in post],
        latents=[z.detach() for z in latents],
        latents_grad=[grad(z) for z in latents],
        resid_mid=[r.detach() for r in resid_mid],
        resid_pre=[r.detach() for r in resid_pre],
        logits=logits.detach(),
        g_final=g_final,
        final_site=final_grad_site,
        loss=loss.item() if has_loss else None,
        trace_value=None if trace_value is None else trace_value.item(),
    )
    return st


# ---------------------------------------------------------------------------------------------------------------
# derived scalars: per node type, a tensor over (layer, indices...) for each group


def precedes(node_kind: str, layer: int | None, site: tuple[str, int | None]) -> bool:
    """Direct effects count only for nodes strictly upstream of the residual the gradient is taken at."""
    kind, site_layer = site
    if layer is None or kind == "final":
        return True
    assert site_layer is not None
    order = {"attn": 1, "mlp": 3}[node_kind]
    site_order = {"pre": 0, "mid": 2}[kind]
    return layer < site_layer or (layer == site_layer and order < site_order)


def derived_scalars(st: dict, mlp_as_latents: bool) -> dict[str, dict[str, dict]]:
    """{group: {node_type: {layer: tensor}}} with TDB's node tensor layouts."""
    g = st["g_final"]
    site = st["final_site"]
    out: dict[str, dict[str, dict]] = {k: {} for k in ("write_norm", "act_times_grad", "direction_write", "activation")}
    emb = st["emb"]
    out["write_norm"]["layer"] = {None: emb.norm(dim=-1)[:, None]}
    out["act_times_grad"]["layer"] = {None: (emb * st["emb_grad"]).sum(-1)[:, None]}
    out["direction_write"]["layer"] = {None: (emb * g).sum(-1)[:, None]}
    out["activation"]["layer"] = {None: torch.ones(emb.shape[0], 1)}
    for group in out:
        out[group]["attention_head"] = {}
    for layer in range(N_LAYERS):
        a = st["probs"][layer]
        v = st["values"][layer]
        vw = torch.einsum("uhd,hde->uhe", v, W_O[layer])  # value write per (u, h)
        out["write_norm"]["attention_head"][layer] = a * vw.norm(dim=-1)[None]
        out["act_times_grad"]["attention_head"][layer] = a * st["probs_grad"][layer]
        de = a * torch.einsum("uhe,te->tuh", vw, g)
        out["direction_write"]["attention_head"][layer] = de if precedes("attn", layer, site) else torch.zeros_like(a)
        out["activation"]["attention_head"][layer] = a
    mlp_kind = "mlp_autoencoder_latent" if mlp_as_latents else "mlp_neuron"
    for group in out:
        out[group][mlp_kind] = {}
    for layer in range(N_LAYERS):
        if mlp_as_latents:
            if layer != 0:
                continue
            act, act_grad, write = st["latents"][0], st["latents_grad"][0], AE_WRITE
        else:
            act, act_grad, write = st["post"][layer], st["post_grad"][layer], W_OUT[layer]
        out["write_norm"][mlp_kind][layer] = act * write.norm(dim=-1)[None]
        out["act_times_grad"][mlp_kind][layer] = act * act_grad
        de = act * (g @ write.T)
        out["direction_write"][mlp_kind][layer] = de if precedes("mlp", layer, site) else torch.zeros_like(act)
        out["activation"][mlp_kind][layer] = act
    return out


DST_NAMES = {
    ("write_norm", "layer"): "resid_post_embedding_norm",
    ("act_times_grad", "layer"): "token_attribution",
    ("direction_write", "layer"): "resid_post_embedding_proj_to_final_residual_grad",
    ("activation", "layer"): "always_one",
    ("write_norm", "mlp_neuron"): "mlp_write_norm",
    ("act_times_grad", "mlp_neuron"): "mlp_act_times_grad",
    ("direction_write", "mlp_neuron"): "mlp_write_to_final_residual_grad",
    ("activation", "mlp_neuron"): "mlp_post_act",
    ("write_norm", "mlp_autoencoder_latent"): "online_mlp_autoencoder_write_norm",
    ("act_times_grad", "mlp_autoencoder_latent"): "online_mlp_autoencoder_act_times_grad",
    ("direction_write", "mlp_autoencoder_latent"): "online_mlp_autoencoder_write_to_final_residual_grad",
    ("activation", "mlp_autoencoder_latent"): "online_mlp_autoencoder_latent",
    ("write_norm", "attention_head"): "unflattened_attn_write_norm",
    ("act_times_grad", "attention_head"): "unflattened_attn_act_times_grad",
    ("direction_write", "attention_head"): "unflattened_attn_write_to_final_residual_grad",
    ("activation", "attention_head"): "attn_qk_probs",
}
GROUP_ORDER = ("write_norm", "act_times_grad", "direction_write", "activation")


def node_key(node: dict) -> tuple:
    return (node["nodeType"], node["layerIndex"], tuple(node["tensorIndices"]))


def make_node(node_type: str, layer: int | None, indices: tuple) -> dict:
    return {"nodeType": node_type, "tensorIndices": list(indices), "layerIndex": layer, "passType": "forward"}


def select_group(per_type: dict[str, dict], k: int) -> list[dict]:
    """Top-k and bottom-k of each node type's tensor (over all layers and positions), merged by value."""
    top, bottom = [], []
    for node_type, by_layer in per_type.items():
        flat = []
        for layer, tensor in by_layer.items():
            values = tensor.flatten()
            order = torch.argsort(values, descending=True)
            picks = torch.cat([order[:k], order[-k:]]).unique()
            for i in picks.tolist():
                idx = tuple(int(j) for j in torch.unravel_index(torch.tensor(i), tensor.shape))
                flat.append((values[i].item(), make_node(node_type, layer, idx)))
        flat.sort(key=lambda e: -e[0])
        top += flat[: min(k, len(flat))]
        bottom += sorted(flat, key=lambda e: e[0])[: min(k, len(flat))]
    top.sort(key=lambda e: -e[0])
    bottom.sort(key=lambda e: -e[0])
    return [n for _, n in top] + [n for _, n in bottom]


def value_at(per_type: dict[str, dict], node: dict) -> float:
    return per_type[node["nodeType"]][node["layerIndex"]][tuple(node["tensorIndices"])].item()


def intermediate_sums(ds: dict) -> dict:
    sums = {}
    for group in GROUP_ORDER:
        sums[group] = {}
        for node_type, by_layer in ds[group].items():
            total = None
            for tensor in by_layer.values():
                kept = tensor.sum(-1)  # drop the node dimension (neuron, head, latent, singleton)
                total = kept if total is None else total + kept
            dst = DST_NAMES[(group, node_type)]
            sums[group][dst] = tensor_nd(total)
    return sums


def tensor_nd(x: torch.Tensor) -> dict:
    def clean(v: float) -> float:
        return v if math.isfinite(v) else -999

    if x.ndim == 1:
        return {"tensorType": "tensor_1d", "value": [clean(v) for v in x.tolist()]}
    if x.ndim == 2:
        return {"tensorType": "tensor_2d", "value": [[clean(v) for v in row] for row in x.tolist()]}
    raise NotImplementedError(x.ndim)


# ---------------------------------------------------------------------------------------------------------------
# scored tokens


def top_tokens(scores: torch.Tensor, n: int) -> dict:
    up = scores.clone()
    up[LEAST_COMMON_IDS] = float("-inf")
    down = scores.clone()
    down[LEAST_COMMON_IDS] = float("inf")
    top_v, top_i = torch.topk(up, n, largest=True)
    bot_v, bot_i = torch.topk(down, n, largest=False)
    denom = max(abs(top_v[0].item()), abs(bot_v[0].item()))

    def pack(values: torch.Tensor, ids: torch.Tensor) -> list[dict]:
        return [
            {"token": decode(int(i)), "scalar": float(v), "normalizedScalar": 0.0 if denom == 0 else float(v) / denom}
            for v, i in zip(values.tolist(), ids.tolist())
        ]

    return {"top": pack(top_v, top_i), "bottom": pack(bot_v, bot_i)}


def write_vector(st: dict, node: dict) -> torch.Tensor:
    layer, ti = node["layerIndex"], node["tensorIndices"]
    match node["nodeType"]:
        case "layer":
            return st["emb"][ti[0]]
        case "mlp_neuron":
            return st["post"][layer][ti[0], ti[1]] * W_OUT[layer][ti[1]]
        case "mlp_autoencoder_latent":
            return st["latents"][0][ti[0], ti[1]] * AE_WRITE[ti[1]]
        case "attention_head":
            t, u, h = ti
            return (st["probs"][layer][t, u, h] * st["values"][layer][u, h]) @ W_O[layer][h]
    raise NotImplementedError(node)


def read_vector(st: dict, node: dict) -> torch.Tensor | None:
    """Gradient of the node's pre-activation w.r.t. the residual before its block, at the node's token."""
    layer, ti = node["layerIndex"], node["tensorIndices"]
    if node["nodeType"] not in ("mlp_neuron", "mlp_autoencoder_latent"):
        return None
    resid = st["resid_mid"][layer][ti[0]].clone().requires_grad_(True)
    pre = mlp_pre(layer, resid[None], True)[0]
    value = pre[ti[1]] if node["nodeType"] == "mlp_neuron" else ae_encode_pre(gelu(pre))[ti[1]]
    (g,) = torch.autograd.grad(value, resid)
    return g


# ---------------------------------------------------------------------------------------------------------------
# /batched_tdb


def batched_tdb(request: dict, with_ae: bool) -> dict:
    subs = request["subRequests"]
    states = [run(spec, with_ae) for spec in subs]
    dss = [derived_scalars(st, spec["componentTypeForMlp"] == "autoencoder_latent") for st, spec in zip(states, subs)]
    dss_neurons = [derived_scalars(st, False) for st in states]
    current_token = [
        spec["upstreamNodeToTrace"]["nodeIndex"]["tensorIndices"][0] if spec.get("upstreamNodeToTrace") else -1
        for spec in subs
    ]

    def union(per_sub: list[list[dict]]) -> list[dict]:
        seen, out = set(), []
        for nodes in per_sub:
            for n in nodes:
                if node_key(n) not in seen:
                    seen.add(node_key(n))
                    out.append(n)
        return out

    def top_k_nodes(ds: dict, k: int) -> list[dict]:
        return union([select_group(ds[g], k) for g in GROUP_ORDER])

    components = union([top_k_nodes(ds, spec["topAndBottomKForNodeTable"]) for ds, spec in zip(dss, subs)])
    sums_nodes = union([top_k_nodes(ds, 1) for ds in dss_neurons])
    logit_nodes = []
    for st, tok in zip(states, current_token):
        row = st["logits"][tok]
        picks = select_group({"vocab_token": {None: row[None]}}, 100)  # rows: the one token sliced out
        logit_nodes.append([make_node("vocab_token", None, (tok, n["tensorIndices"][1])) for n in picks])
    logit_nodes_all = union(logit_nodes)

    responses = []
    for st, ds, ds_n, spec, tok in zip(states, dss, dss_neurons, subs, current_token):

        def multi(nodes: list[dict], dsx: dict) -> dict:
            return {
                "responseDataType": "multiple_top_k_derived_scalars_response_data",
                "activationsByGroupId": {g: [value_at(dsx[g], n) for n in nodes] for g in GROUP_ORDER},
                "nodeIndices": nodes,
                "vocabTokenStringsForIndices": None,
                "intermediateSumActivationsByDstByGroupId": intermediate_sums(dsx),
            }

        writes = torch.stack([write_vector(st, n) for n in components])
        token_writes = writes @ UNEMBED_WITH_GAIN
        token_writes = token_writes - token_writes.mean(dim=1, keepdim=True)
        upvoted = [top_tokens(row, 10) for row in token_writes]
        reads = [read_vector(st, n) for n in components]
        input_tokens = [None if r is None else top_tokens(W["wte.weight"] @ r, 10) for r in reads]

        def scored(lst: list) -> dict:
            return {"responseDataType": "scored_tokens_response_data", "nodeIndices": components, "topTokensList": lst}

        logit_row = st["logits"][tok]
        by_name = {
            "topKComponents": multi(components, ds),
            "componentSumsForTokenDisplay": multi(sums_nodes, ds_n),
            "upvotedOutputTokens": scored(upvoted),
            "inputTokensThatUpvoteMlp": scored(input_tokens),
            "inputTokensThatUpvoteAttnQ": scored([None] * len(components)),
            "inputTokensThatUpvoteAttnK": scored([None] * len(components)),
            "tokenPairAttribution": {
                "responseDataType": "token_pair_attribution_response_data",
                "nodeIndices": components,
                "topTokensAttendedToList": [None] * len(components),
            },
            "topOutputTokenLogits": {
                "responseDataType": "multiple_top_k_derived_scalars_response_data",
                "activationsByGroupId": {
                    "logits": [logit_row[n["tensorIndices"][1]].item() for n in logit_nodes_all]
                },
                "nodeIndices": logit_nodes_all,
                "vocabTokenStringsForIndices": [decode(n["tensorIndices"][1]) for n in logit_nodes_all],
                "intermediateSumActivationsByDstByGroupId": {"logits": {"logits": tensor_nd(st["logits"].sum(-1))}},
            },
        }
        responses.append(
            {
                "inferenceResponse": {
                    "inferenceAndTokenData": {
                        "inferenceTime": 0.0,
                        "memoryUsedBefore": None,
                        "memoryUsedAfter": None,
                        "log": None,
                        "loss": st["loss"],
                        "activationValueForBackwardPass": st["trace_value"],
                        "tokensAsInts": st["tokens"],
                        "tokensAsStrings": [decode(t) for t in st["tokens"]],
                    }
                },
                "processingResponseDataByName": by_name,
            }
        )
    return {"inferenceSubResponses": responses}


def main() -> None:
    # Default: the repository's git-ignored test-artifacts/, where compare_cases.test.ts looks.
    default = Path(__file__).resolve().parents[2] / "test-artifacts" / "tdb-reproduced"
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(CASES_DIR.glob("tdb_*.json")):
        case = json.loads(path.read_text())
        with_ae = case["server"]["mlpAutoencoderName"] is not None
        try:
            response, status = batched_tdb(case["request"], with_ae), 200
        except ValueError as e:
            response, status = {"message": str(e)}, 400
        (out_dir / path.name).write_text(json.dumps({"status": status, "response": response}))
        print(path.name, status)


if __name__ == "__main__":
    main()
