"""A small, independent plain-PyTorch GPT-2 with TDB's attribution semantics (dev only).

Everything TDB-specific is expressed with autograd: ablations are tensor edits, the in-graph autoencoder is
`decode(z') + (x - decode(z))`, detached LayerNorm scales are `.detach()`, and traces are scalars recomputed
from the (attached) residual before the traced block. Semantics: ../shared/docs/tdb-spec.md §3.3, §4.1-§4.7.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

EPS = 1e-5


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def layer_norm(x: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor, detach_scale: bool) -> torch.Tensor:
    centred = x - x.mean(-1, keepdim=True)
    scale = torch.sqrt((centred**2).mean(-1, keepdim=True) + EPS)
    if detach_scale:
        scale = scale.detach()
    return centred / scale * gain + bias


def read_safetensors(path: Path, dtype: torch.dtype) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k).to(dtype) for k in f.keys()}, (f.metadata() or {})


class Gpt2:
    def __init__(self, folder: Path, n_head: int, dtype: torch.dtype = torch.float32):
        w, _ = read_safetensors(folder / "model.safetensors", dtype)
        self.w = {k.removeprefix("transformer."): v for k, v in w.items()}
        self.n_head = n_head
        self.n_layer = 1 + max(int(k.split(".")[1]) for k in self.w if k.startswith("h."))
        self.d = self.w["wte.weight"].shape[1]
        # Tied embeddings unless the checkpoint carries its own head.
        self.unembed = self.w.get("lm_head.weight", self.w["wte.weight"])

    def p(self, layer: int, name: str) -> torch.Tensor:
        return self.w[f"h.{layer}.{name}"]

    def qkv(self, layer: int, x_pre: torch.Tensor, detach_scale: bool):
        """Per-head q, k, v [T, H, dh] from the residual before the attention block."""
        h = layer_norm(x_pre, self.p(layer, "ln_1.weight"), self.p(layer, "ln_1.bias"), detach_scale)
        qkv = h @ self.p(layer, "attn.c_attn.weight") + self.p(layer, "attn.c_attn.bias")
        T = x_pre.shape[0]
        q, k, v = (t.reshape(T, self.n_head, -1) for t in qkv.split(self.d, dim=-1))
        return q, k, v

    def scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Pre-softmax logits S[t, u, h] = q·k/sqrt(dh), -inf above the diagonal."""
        T, _, dh = q.shape
        s = torch.einsum("thd,uhd->tuh", q, k) / math.sqrt(dh)
        future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        return s.masked_fill(future[:, :, None], float("-inf"))

    def attn_out(self, layer: int, probs: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        vout = torch.einsum("tuh,uhd->thd", probs, v).reshape(probs.shape[0], self.d)
        return vout @ self.p(layer, "attn.c_proj.weight") + self.p(layer, "attn.c_proj.bias")

    def w_o(self, layer: int, head: int) -> torch.Tensor:
        dh = self.d // self.n_head
        return self.p(layer, "attn.c_proj.weight")[head * dh : (head + 1) * dh]

    def mlp_pre(self, layer: int, x_mid: torch.Tensor, detach_scale: bool) -> torch.Tensor:
        h = layer_norm(x_mid, self.p(layer, "ln_2.weight"), self.p(layer, "ln_2.bias"), detach_scale)
        return h @ self.p(layer, "mlp.c_fc.weight") + self.p(layer, "mlp.c_fc.bias")

    def mlp_out(self, layer: int, post: torch.Tensor) -> torch.Tensor:
        return post @ self.p(layer, "mlp.c_proj.weight") + self.p(layer, "mlp.c_proj.bias")

    def logits(self, x_final: torch.Tensor) -> torch.Tensor:
        # TDB always detaches the final LayerNorm scale.
        return layer_norm(x_final, self.w["ln_f.weight"], self.w["ln_f.bias"], True) @ self.unembed.T


class Autoencoder:
    """OpenAI sparse_autoencoder: pre = (x - pre_bias)·W_encᵀ + latent_bias; decode(z) = z·W_decᵀ + pre_bias."""

    def __init__(self, path: Path, dtype: torch.dtype = torch.float32):
        t, meta = read_safetensors(path, dtype)
        self.pre_bias, self.enc, self.latent_bias, self.dec = (
            t["pre_bias"],
            t["encoder.weight"],
            t["latent_bias"],
            t["decoder.weight"],
        )
        self.activation = meta.get("activation", "ReLU")
        self.k = int(meta["k"]) if self.activation == "TopK" else None
        self.n_latents = self.enc.shape[0]

    def encode_pre_act(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.pre_bias) @ self.enc.T + self.latent_bias

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        if self.activation == "ReLU":
            return torch.relu(pre)
        if self.activation == "TopK":
            values, idx = torch.topk(pre, self.k, dim=-1)
            return torch.zeros_like(pre).scatter(-1, idx, torch.relu(values))
        raise ValueError(self.activation)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.dec.T + self.pre_bias


@dataclass
class Ablation:
    kind: str  # mlp_neuron | attention_head | mlp_latent | attention_latent
    layer: int
    token: int
    index: int
    value: float


@dataclass
class SiteAblation:
    """TDB's forward-pass AblationSpec at an activation location: the addressed entries become `value` (constants).
    `indices` has one entry per dimension of the hook's value ("All" = the whole dimension); shapes as in
    packages/model/src/hooks.ts (attn.q/k scaled by dh^-1/4, qk_logits after the causal mask, logits [T, V])."""

    point: str
    layer: int | None
    indices: list[int | str]
    value: float


@dataclass
class Trace:
    kind: str
    layer: int
    token: int
    index: int
    key_token: int | None = None
    attention_trace_type: str | None = None
    # V traces: the node whose reconstituted scalar defines the downstream gradient instead of the loss.
    downstream: "Trace | None" = None


@dataclass
class Loss:
    name: str
    targets: list[int]
    distractors: list[int] | None


@dataclass
class Result:
    loss: float | None
    traced_value: float | None
    last_logits: torch.Tensor
    # Per layer; an entry is None where the site does not exist (autoencoder not loaded).
    mlp_post_act: list[torch.Tensor] = field(default_factory=list)
    mlp_post_act_grad: list[torch.Tensor] = field(default_factory=list)
    attn_probs: list[torch.Tensor] = field(default_factory=list)
    attn_probs_grad: list[torch.Tensor] = field(default_factory=list)
    mlp_latents: list[torch.Tensor | None] = field(default_factory=list)
    mlp_latents_grad: list[torch.Tensor | None] = field(default_factory=list)
    attn_latents: list[torch.Tensor | None] = field(default_factory=list)
    attn_latents_grad: list[torch.Tensor | None] = field(default_factory=list)
    final_residual_grad: torch.Tensor | None = None
    latent_decision_margin: float = math.inf


def loss_value(loss: Loss, last_logits: torch.Tensor) -> torch.Tensor:
    targets = last_logits[loss.targets].mean()
    if loss.name == "logit_diff":
        if loss.distractors:
            return targets - last_logits[loss.distractors].mean()
        return targets
    if loss.name == "logit_minus_mean":
        return targets - last_logits.mean()
    if loss.name == "probs":
        return torch.softmax(last_logits, -1)[loss.targets].sum()
    if loss.name == "zero":
        return 0.0 * last_logits.sum()
    raise ValueError(loss.name)


def decision_margin(ae: Autoencoder, pre: torch.Tensor) -> float:
    """Smallest gap between the k-th and (k+1)-th pre-activation of a TopK autoencoder: a near tie would let
    another float32 implementation select a different latent (a jump in z). ReLU is continuous: no margin."""
    if ae.activation != "TopK":
        return math.inf
    top = torch.topk(pre.detach(), ae.k + 1, dim=-1).values
    return float((top[:, ae.k - 1] - top[:, ae.k]).min())


def splice(
    ae: Autoencoder, x: torch.Tensor, ablations: list[Ablation]
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """TDB's fwd2 autoencoder: out = decode(z') + (x - decode(z)); z' = z with ablations.
    Returns (out, z', decision margin)."""
    pre = ae.encode_pre_act(x)
    z = ae.activate(pre)
    z_edited = z.clone()
    for a in ablations:
        z_edited[a.token, a.index] = a.value
    return ae.decode(z_edited) + (x - ae.decode(z)), z_edited, decision_margin(ae, pre)


def edit_site(sites: list[SiteAblation], point: str, layer: int | None, value: torch.Tensor) -> torch.Tensor:
    """Applies the site ablations at (point, layer): a clone with the addressed entries overwritten."""
    mine = [a for a in sites if a.point == point and a.layer == layer]
    if not mine:
        return value
    out = value.clone()
    for a in mine:
        out[tuple(slice(None) if i == "All" else i for i in a.indices)] = a.value
    return out


def run(
    model: Gpt2,
    ids: list[int],
    ablations: list[Ablation | SiteAblation],
    loss: Loss | None,
    trace: Trace | None,
    mlp_aes: dict[int, Autoencoder],
    attn_aes: dict[int, Autoencoder],
) -> Result:
    w = model.w
    T = len(ids)
    sites = [a for a in ablations if isinstance(a, SiteAblation)]
    components = [a for a in ablations if isinstance(a, Ablation)]
    of = lambda kind, layer: [a for a in components if a.kind == kind and a.layer == layer]  # noqa: E731
    at = lambda point, layer, value: edit_site(sites, point, layer, value)  # noqa: E731
    dh = model.d // model.n_head
    c = dh**-0.25

    # The embedding is the graph's leaf: weights are constants.
    x = at("resid.post_emb", None, (w["wte.weight"][ids] + w["wpe.weight"][:T]).requires_grad_(True))
    x_pre: list[torch.Tensor] = []
    x_mid: list[torch.Tensor] = []
    probs: list[torch.Tensor] = []
    post: list[torch.Tensor] = []
    mlp_z: list[torch.Tensor | None] = []
    attn_z: list[torch.Tensor | None] = []
    margins: list[float] = []
    for layer in range(model.n_layer):
        x_pre.append(x)
        h = at(
            "resid.post_attn_ln",
            layer,
            layer_norm(x, model.p(layer, "ln_1.weight"), model.p(layer, "ln_1.bias"), False),
        )
        qkv = h @ model.p(layer, "attn.c_attn.weight") + model.p(layer, "attn.c_attn.bias")
        q, k, v = (t.reshape(T, model.n_head, -1) for t in qkv.split(model.d, dim=-1))
        # Hooks see q and k scaled by dh^-1/4 (q·k is then the attention logit).
        if any(a.point == "attn.q" and a.layer == layer for a in sites):
            q = at("attn.q", layer, q * c) / c
        if any(a.point == "attn.k" and a.layer == layer for a in sites):
            k = at("attn.k", layer, k * c) / c
        v = at("attn.v", layer, v)
        a = torch.softmax(at("attn.qk_logits", layer, model.scores(q, k)), dim=1)
        a_edit = at("attn.qk_probs", layer, a.clone())
        for ab in of("attention_head", layer):
            a_edit[ab.token, :, ab.index] = ab.value  # the whole query row, every key; no renormalisation
        probs.append(a_edit)
        vout = at("attn.v_out", layer, torch.einsum("tuh,uhd->thd", a_edit, v))
        delta = vout.reshape(T, model.d) @ model.p(layer, "attn.c_proj.weight") + model.p(layer, "attn.c_proj.bias")
        delta = at("resid.delta_attn", layer, delta)
        if layer in attn_aes:
            delta, z, margin = splice(attn_aes[layer], delta, of("attention_latent", layer))
            attn_z.append(z)
            margins.append(margin)
        else:
            attn_z.append(None)
        x = at("resid.post_attn", layer, x + delta)
        x_mid.append(x)
        h2 = at(
            "resid.post_mlp_ln",
            layer,
            layer_norm(x, model.p(layer, "ln_2.weight"), model.p(layer, "ln_2.bias"), False),
        )
        pre = at("mlp.pre_act", layer, h2 @ model.p(layer, "mlp.c_fc.weight") + model.p(layer, "mlp.c_fc.bias"))
        act_edit = at("mlp.post_act", layer, gelu_new(pre))
        for ab in of("mlp_neuron", layer):
            act_edit = act_edit.clone()
            act_edit[ab.token, ab.index] = ab.value
        post.append(act_edit)
        spliced = act_edit
        if layer in mlp_aes:
            spliced, z, margin = splice(mlp_aes[layer], act_edit, of("mlp_latent", layer))
            mlp_z.append(z)
            margins.append(margin)
        else:
            mlp_z.append(None)
        x = at("resid.post_mlp", layer, x + at("resid.delta_mlp", layer, model.mlp_out(layer, spliced)))
    x_final = x
    # TDB always detaches the final LayerNorm scale.
    h_final = at("resid.post_ln_f", None, layer_norm(x_final, w["ln_f.weight"], w["ln_f.bias"], True))
    last_logits = at("logits", None, h_final @ model.unembed.T)[-1]
    loss_t = loss_value(loss, last_logits) if loss else None

    traced: torch.Tensor | None = None
    if trace is None:
        if loss_t is None:
            raise ValueError("need a loss or a trace")
        target, location = loss_t, x_final
    else:
        traced, location = reconstitute(model, trace, x_pre, x_mid, x_final, loss, mlp_aes, attn_aes)
        target = traced

    wrt = [location, *probs, *post, *[z for z in mlp_z + attn_z if z is not None]]
    grads = torch.autograd.grad(target, wrt, allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for t, g in zip(wrt, grads, strict=True)]
    g_location, rest = grads[0], grads[1:]
    n = model.n_layer
    g_probs, g_post, g_z = rest[:n], rest[n : 2 * n], iter(rest[2 * n :])
    g_mlp_z = [None if z is None else next(g_z) for z in mlp_z]
    g_attn_z = [None if z is None else next(g_z) for z in attn_z]
    return Result(
        loss=None if loss_t is None else float(loss_t.detach()),
        traced_value=None if traced is None else float(traced.detach()),
        last_logits=last_logits.detach(),
        mlp_post_act=[t.detach() for t in post],
        mlp_post_act_grad=g_post,
        attn_probs=[t.detach() for t in probs],
        attn_probs_grad=g_probs,
        mlp_latents=[None if z is None else z.detach() for z in mlp_z],
        mlp_latents_grad=g_mlp_z,
        attn_latents=[None if z is None else z.detach() for z in attn_z],
        attn_latents_grad=g_attn_z,
        final_residual_grad=g_location,
        latent_decision_margin=min(margins, default=math.inf),
    )


def reconstitute(
    model: Gpt2,
    trace: Trace,
    x_pre: list[torch.Tensor],
    x_mid: list[torch.Tensor],
    x_final: torch.Tensor,
    loss: Loss | None,
    mlp_aes: dict[int, Autoencoder],
    attn_aes: dict[int, Autoencoder],
) -> tuple[torch.Tensor, torch.Tensor]:
    """The traced scalar recomputed from the residual before its block (block input LN scale detached)."""
    L, t, i = trace.layer, trace.token, trace.index
    if trace.kind == "mlp_neuron":
        return model.mlp_pre(L, x_mid[L], detach_scale=True)[t, i], x_mid[L]
    if trace.kind == "mlp_latent":
        act = gelu_new(model.mlp_pre(L, x_mid[L], detach_scale=True))
        return mlp_aes[L].encode_pre_act(act[t])[i], x_mid[L]
    resid = x_pre[L]
    q, k, v = model.qkv(L, resid, detach_scale=True)
    if trace.kind == "attention_latent":
        out = model.attn_out(L, torch.softmax(model.scores(q, k), dim=1), v)
        return attn_aes[L].encode_pre_act(out[t])[i], resid
    assert trace.kind == "attention_head"
    u, h, kind = trace.key_token or 0, i, trace.attention_trace_type or "QK"
    if kind == "V":
        if trace.downstream is None:
            # g_D: d loss / d x_final through ln_f (scale detached) and the unembedding only; a constant.
            assert loss is not None
            xf = x_final.detach().requires_grad_(True)
            (g_d,) = torch.autograd.grad(loss_value(loss, model.logits(xf)[-1]), xf)
        else:
            # g_D: the downstream node's scalar, reconstituted from a detached copy of the residual before its block.
            down = trace.downstream
            mlp_side = down.kind in ("mlp_neuron", "mlp_latent")
            copies = [list(x_pre), list(x_mid)]
            resid_d = (x_mid if mlp_side else x_pre)[down.layer].detach().requires_grad_(True)
            copies[1 if mlp_side else 0][down.layer] = resid_d
            value_d, _ = reconstitute(model, down, copies[0], copies[1], x_final, None, mlp_aes, attn_aes)
            (g_d,) = torch.autograd.grad(value_d, resid_d)
        a = torch.softmax(model.scores(q.detach(), k.detach()), dim=1)
        de = (a[t, u, h] * v[u, h]) @ (model.w_o(L, h) @ g_d[t])
        return de, resid
    if kind == "Q":
        k = k.detach()
    elif kind == "K":
        q = q.detach()
    dh = q.shape[-1]
    return (q[t, h] @ k[u, h]) / math.sqrt(dh), resid
