"""An ensemble of M trainable heads, computed as one batched model.

All members' weights live in one ``[M, P]`` tensor (``EnsembleHeads.flat``,
one row per member); each named weight of a head (``fc1.weight``, ...) is a
view into a column range of it. A forward pass takes the rows of the
requested members and runs them all at once with batched matrix products
(``torch.baddbmm``) — a fixed number of tensor operations however many
members there are, where a Python loop over members would issue that many per
member. Training differentiates only the active members' rows
(:meth:`EnsembleHeads.rows`) and updates them with a row-wise optimizer
(:mod:`tasks.sed.optim`), so the cost of a step does not grow with the
members that sit it out. :meth:`EnsembleHeads.forward_loop` does the same
math member by member with ``F.linear``; the tests check the two agree and
``bench/ensemble_training.py`` times them.

Head kinds (``head["kind"]``, from :func:`tasks.sed.backbones.split_backbone`):

- ``vit_mlp``: x + ls2 * fc2(gelu(fc1(LN2(x)))), then LN, then the classifier;
- ``linear``: the classifier only;
- ``mlp``: fc2(gelu(fc1(x))), hidden size ``head["hidden"]`` (randomly
  initialised; see :func:`mlp_head`).

All members start from the same weights (the pretrained head), optionally
plus Gaussian noise of scale ``init_noise``.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

Params = Dict[str, torch.Tensor]

HEAD_FORMAT = "sheetrun_ensemble/1"


def mlp_head(dim: int, hidden: int, num_classes: int, seed: int = 0) -> dict:
    """A freshly initialised two-layer MLP head description (PyTorch's Linear init)."""
    g = torch.Generator().manual_seed(seed)

    def linear(n_in, n_out):
        bound = 1 / math.sqrt(n_in)
        return ((torch.rand(n_out, n_in, generator=g) * 2 - 1) * bound,
                (torch.rand(n_out, generator=g) * 2 - 1) * bound)
    w1, b1 = linear(dim, hidden)
    w2, b2 = linear(hidden, num_classes)
    return {"kind": "mlp", "dim": dim, "hidden": hidden, "num_classes": num_classes,
            "state": {"fc1.weight": w1, "fc1.bias": b1, "fc2.weight": w2, "fc2.bias": b2}}


def _affine(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batched x @ w^T + b for stacked weights: x [M, B, I], w [M, O, I], b [M, O]."""
    return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))


def _layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], eps=eps) * w.unsqueeze(1) + b.unsqueeze(1)


def stacked_forward(head: dict, p: Params, x: torch.Tensor) -> torch.Tensor:
    """Logits [M, B, K] of M stacked members (``p[name]`` is [M, ...]) on features x [B, D]."""
    m = next(iter(p.values())).shape[0]
    x = x.unsqueeze(0).expand(m, -1, -1)
    kind = head["kind"]
    if kind == "vit_mlp":
        eps, approx = head["eps"], head.get("gelu_approximate", "none")
        h = _layer_norm(x, p["norm2.weight"], p["norm2.bias"], eps)
        h = _affine(F.gelu(_affine(h, p["fc1.weight"], p["fc1.bias"]), approximate=approx),
                    p["fc2.weight"], p["fc2.bias"])
        if "ls2.gamma" in p:
            h = h * p["ls2.gamma"].unsqueeze(1)
        x = _layer_norm(x + h, p["norm.weight"], p["norm.bias"], eps)
        return _affine(x, p["head.weight"], p["head.bias"])
    if kind == "linear":
        return _affine(x, p["head.weight"], p["head.bias"])
    if kind == "mlp":
        return _affine(F.gelu(_affine(x, p["fc1.weight"], p["fc1.bias"])), p["fc2.weight"], p["fc2.bias"])
    raise ValueError(f"unknown head kind {kind!r}")


def single_forward(head: dict, p: Params, x: torch.Tensor) -> torch.Tensor:
    """Logits [B, K] of one member, written the plain way (F.linear, F.layer_norm)."""
    kind = head["kind"]
    if kind == "vit_mlp":
        eps, approx = head["eps"], head.get("gelu_approximate", "none")
        h = F.layer_norm(x, x.shape[-1:], p["norm2.weight"], p["norm2.bias"], eps)
        h = F.linear(F.gelu(F.linear(h, p["fc1.weight"], p["fc1.bias"]), approximate=approx),
                     p["fc2.weight"], p["fc2.bias"])
        if "ls2.gamma" in p:
            h = h * p["ls2.gamma"]
        x = F.layer_norm(x + h, x.shape[-1:], p["norm.weight"], p["norm.bias"], eps)
        return F.linear(x, p["head.weight"], p["head.bias"])
    if kind == "linear":
        return F.linear(x, p["head.weight"], p["head.bias"])
    if kind == "mlp":
        return F.linear(F.gelu(F.linear(x, p["fc1.weight"], p["fc1.bias"])), p["fc2.weight"], p["fc2.bias"])
    raise ValueError(f"unknown head kind {kind!r}")


class EnsembleHeads(nn.Module):
    """M heads of one kind; ``forward(x, members)`` gives logits [len(members), B, K]."""

    def __init__(self, head: dict, num_members: int, init_noise: float = 0.0, seed: int = 0):
        super().__init__()
        if num_members < 1:
            raise ValueError("an ensemble needs at least one member")
        self.head = {k: v for k, v in head.items() if k != "state"}
        self.names = sorted(head["state"])
        self.layout: Dict[str, Tuple[int, int, torch.Size]] = {}    # name -> (start, end, shape)
        start = 0
        for name in self.names:
            shape = head["state"][name].shape
            self.layout[name] = (start, start + shape.numel(), shape)
            start += shape.numel()
        one = torch.cat([head["state"][name].detach().float().reshape(-1) for name in self.names])
        flat = one.repeat(num_members, 1)
        if init_noise:
            g = torch.Generator().manual_seed(seed)
            flat += init_noise * torch.randn(flat.shape, generator=g)
        self.flat = nn.Parameter(flat)

    @property
    def num_members(self) -> int:
        return self.flat.shape[0]

    @property
    def num_classes(self) -> int:
        return int(self.head["num_classes"])

    def unflatten(self, rows: torch.Tensor) -> Params:
        """Named views [k, ...] into rows [k, P] of the weight matrix (one ``split``, so the
        backward pass assembles the rows' gradient with one concatenation)."""
        parts = rows.split([b - a for a, b, _ in self.layout.values()], dim=1)
        return {name: part.view(rows.shape[0], *shape)
                for (name, (_, _, shape)), part in zip(self.layout.items(), parts)}

    def rows(self, members: Optional[Sequence[int]] = None) -> torch.Tensor:
        """The weights of some members as a new autograd leaf [k, P]: differentiate it, then
        hand its ``.grad`` to a :mod:`tasks.sed.optim` optimizer with the same ``members``.
        A copy of those rows, or, for all members, the weight matrix's own memory (no copy)."""
        if members is None:
            return self.flat.detach().requires_grad_(True)
        return self.flat.detach()[_index(members, self.flat)].requires_grad_(True)

    def member_params(self, m: int) -> Params:
        return {name: t[0] for name, t in self.unflatten(self.flat[m:m + 1]).items()}

    def stacked(self, members: Optional[Sequence[int]] = None) -> Params:
        return self.unflatten(self.flat if members is None else self.flat[_index(members, self.flat)])

    def forward(self, x: torch.Tensor, members: Optional[Sequence[int]] = None) -> torch.Tensor:
        return stacked_forward(self.head, self.stacked(members), x)

    def forward_rows(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Logits of the members whose weights are ``rows`` (from :meth:`rows`)."""
        return stacked_forward(self.head, self.unflatten(rows), x)

    def forward_loop(self, x: torch.Tensor, members: Optional[Sequence[int]] = None) -> torch.Tensor:
        idx = range(self.num_members) if members is None else members
        return torch.stack([single_forward(self.head, self.member_params(m), x) for m in idx])

    def soup(self) -> Params:
        """The uniform average of the members' weights, as a one-member stack."""
        return self.unflatten(self.flat.mean(0, keepdim=True))

    def soup_forward(self, x: torch.Tensor, soup: Optional[Params] = None) -> torch.Tensor:
        return stacked_forward(self.head, soup if soup is not None else self.soup(), x)[0]

    # --- saving -------------------------------------------------------------------------
    def to_file_dict(self, extra: Optional[dict] = None) -> dict:
        stacked = {name: t.detach().clone() for name, t in self.stacked().items()}
        return {"format": HEAD_FORMAT, "head": self.head, "params": stacked, **(extra or {})}

    @classmethod
    def from_file_dict(cls, saved: dict) -> "EnsembleHeads":
        if saved.get("format") != HEAD_FORMAT:
            raise ValueError("not an ensemble file written by tasks/sed/train_ensemble.py")
        params = saved["params"]
        m = next(iter(params.values())).shape[0]
        heads = cls({**saved["head"], "state": {k: v[0] for k, v in params.items()}}, m)
        with torch.no_grad():
            heads.flat.copy_(torch.cat([params[name].reshape(m, -1) for name in heads.names], dim=1))
        return heads


def _index(members: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    if isinstance(members, torch.Tensor):
        return members.to(like.device)
    return torch.as_tensor(list(members), dtype=torch.long, device=like.device)
