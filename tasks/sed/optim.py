"""PyTorch's optimizers over the rows of an ensemble's ``[M, P]`` weight matrix.

Each member's row of ``EnsembleHeads.flat`` is handed to ``torch.optim`` as a
parameter of its own: a tensor that shares the row's memory, so the
optimizer's in-place update *is* the update of the weight matrix. A step
gives gradients only to the members that took part in it; ``torch.optim``
skips parameters without a gradient, so the members that sat the step out
keep their weights, their moment estimates and their own step counts (AdamW's
bias correction ``1 - b^t`` uses each member's own t) exactly as they were.

That keeps the optimizer's bookkeeping at M tensors (not M x weights per
head) and lets PyTorch use its fused kernel for all of them in one call:

    AdamW:  p <- p (1 - lr wd);  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
            p <- p - lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)
    SGD:    g <- g + wd p;  buf <- mu buf + g;  p <- p - lr (g + mu buf if Nesterov else buf)

``make_optimizer(flat, cfg)`` picks one by ``cfg["name"]`` from :data:`OPTIMIZERS`.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import torch

OPTIMIZERS: Dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adamw": lambda params, o, **kw: torch.optim.AdamW(
        params, lr=o["lr"], betas=tuple(o.get("betas", (0.9, 0.999))), eps=o.get("eps", 1e-8),
        weight_decay=o.get("weight_decay", 0.01), **kw),
    "sgd": lambda params, o, **kw: torch.optim.SGD(
        params, lr=o["lr"], momentum=o.get("momentum", 0.9), nesterov=bool(o.get("nesterov", False)),
        weight_decay=o.get("weight_decay", 0.0), **kw),
}

# Fused SGD assumes every parameter takes its first momentum step together, which members
# that sit steps out do not; it runs as PyTorch's default multi-tensor ("foreach") SGD.
FUSED = ("adamw",)


class MemberOptimizer:
    """A ``torch.optim`` optimizer with one parameter per row (member) of ``flat``."""

    def __init__(self, flat: torch.Tensor, o: dict):
        if o.get("name") not in OPTIMIZERS:
            raise ValueError(f"optim.name must be one of {sorted(OPTIMIZERS)}, got {o.get('name')!r}")
        self.lr = float(o["lr"])
        self.members = [torch.nn.Parameter(flat.data[i]) for i in range(flat.shape[0])]   # share flat's memory
        self.torch_optimizer = None
        if o["name"] in FUSED:   # one kernel for all members, where this PyTorch has it for this device
            try:
                self.torch_optimizer = OPTIMIZERS[o["name"]](self.members, o, fused=True)
            except (RuntimeError, TypeError, ValueError):
                pass
        if self.torch_optimizer is None:
            self.torch_optimizer = OPTIMIZERS[o["name"]](self.members, o)

    @torch.no_grad()
    def step(self, grad: torch.Tensor, members: Optional[Sequence[int]] = None, lr: Optional[float] = None) -> None:
        """Apply ``grad`` ([k, P]: row j belongs to member ``members[j]``; all members when None)."""
        idx = range(len(self.members)) if members is None else [int(m) for m in members]
        for j, m in enumerate(idx):
            self.members[m].grad = grad[j]
        for group in self.torch_optimizer.param_groups:
            group["lr"] = self.lr if lr is None else float(lr)
        self.torch_optimizer.step()
        for m in idx:
            self.members[m].grad = None

    def state_dict(self) -> dict:
        return self.torch_optimizer.state_dict()

    def load_state_dict(self, saved: dict) -> None:
        self.torch_optimizer.load_state_dict(saved)


def make_optimizer(flat: torch.Tensor, o: dict) -> MemberOptimizer:
    """The optimizer ``o["name"]`` (adamw or sgd, settings from ``o``) over the rows of ``flat``."""
    return MemberOptimizer(flat, o)
