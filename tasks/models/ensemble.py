"""Ensembles whose members share an architecture, run as one batched computation.

``BatchedMembers(models)`` stacks the members' parameters and buffers
([M, ...] each, ``torch.func.stack_module_state``) and evaluates them with
``torch.vmap`` over ``torch.func.functional_call`` of one stateless copy:
one forward for all members instead of a Python loop, the same math.
Members of several architectures are grouped (:class:`Ensemble`), one batched
computation per group: a single grouped network (:mod:`tasks.models.grouped`: convolutions
with M x the channels, batch norm folded into them by ``torch.fx``'s conv-BN fusion) where every
layer allows it, else the vmap above.
Evaluation mode only (batch norm uses running statistics).
"""
from __future__ import annotations

import copy
from typing import List, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state


class BatchedMembers(nn.Module):
    """M members of one architecture: ``forward(x [B, ...]) -> logits [M, B, K]``."""

    def __init__(self, models: Sequence[nn.Module]):
        super().__init__()
        if not models:
            raise ValueError("an ensemble needs at least one member")
        models = [m.eval() for m in models]
        params, buffers = stack_module_state(list(models))
        self.params = nn.ParameterDict({k.replace(".", "__"): nn.Parameter(v, requires_grad=False)
                                        for k, v in params.items()})
        for k, v in buffers.items():
            self.register_buffer("buf__" + k.replace(".", "__"), v)
        self._names = list(params), list(buffers)
        self.base = [copy.deepcopy(models[0]).to("meta")]        # a list: not a registered submodule
        self.members = len(models)

    def _call(self, p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.base[0], (p, b), (x,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pnames, bnames = self._names
        p = {k: self.params[k.replace(".", "__")] for k in pnames}
        b = {k: getattr(self, "buf__" + k.replace(".", "__")) for k in bnames}
        return torch.vmap(self._call, in_dims=(0, 0, None), randomness="same")(p, b, x)


def batched(models: Sequence[nn.Module]) -> nn.Module:
    """Members of one architecture as one computation: one grouped network where every layer
    allows it (:mod:`tasks.models.grouped`, fastest), else ``torch.vmap`` (:class:`BatchedMembers`)."""
    from tasks.models.grouped import GroupedMembers, group_members

    grouped = group_members(models) if len(models) > 1 else None
    if grouped is None:
        return BatchedMembers(models)
    try:        # fold each evaluation-mode batch norm into the convolution before it (exact up to rounding)
        from torch.fx.experimental.optimization import fuse

        grouped = fuse(grouped)
    except Exception:  # noqa: BLE001 - a network fx cannot trace runs unfused
        pass
    return GroupedMembers(grouped, len(models))


class Ensemble(nn.Module):
    """Members grouped by architecture, each group batched: ``forward(x) -> logits [M, B, K]``
    in the order the members were given."""

    def __init__(self, models: Sequence[nn.Module], keys: Sequence[str]):
        super().__init__()
        groups: dict = {}
        for i, (m, k) in enumerate(zip(models, keys)):
            groups.setdefault(k, []).append((i, m))
        self.groups = nn.ModuleList(batched([m for _, m in g]) for g in groups.values())
        order: List[int] = [i for g in groups.values() for i, _ in g]
        self.register_buffer("inverse", torch.argsort(torch.tensor(order)), persistent=False)
        self.members = len(models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([g(x) for g in self.groups])
        return out[self.inverse]
