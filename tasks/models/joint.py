"""M networks of one architecture trained as ONE network (FoRDE's ensembles, tasks/forde/).

:func:`tasks.models.grouped.group_members` stacks the members along channels (grouped
convolutions, batch norms over M x c channels, :class:`~tasks.models.grouped.MemberLinear`);
here the stacked network keeps its gradients and trains. Every layer acts on each member's
channels alone, so the joint network computes exactly what the M networks compute apart —
outputs, input gradients and parameter gradients (batch norm in training mode too: its batch
statistics are per channel) — in one forward and one backward instead of M.

    joint = JointEnsemble([create_model("small_cnn", 5) for _ in range(10)])
    logits = joint(x)            # x [B, C, H, W]: every member sees it        -> [M, B, K]
    logits = joint(xm)           # xm [M, B, C, H, W]: member m sees xm[m]     -> [M, B, K]
    net = joint.member(3, create_model("small_cnn", 5))   # member 3 as a network of its own

Give each member its own copy of the input (``xm``) to take each member's input gradient:
the gradient with respect to ``xm[m]`` is member m's alone.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from tasks.models.grouped import group_members


class JointEnsemble(nn.Module):
    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if len(members) < 1:
            raise ValueError("a joint ensemble needs at least one member")
        grouped = group_members(list(members))
        if grouped is None:
            raise ValueError(f"{type(members[0]).__name__} cannot be trained as a joint ensemble: every layer with "
                             "parameters must be a Conv2d, BatchNorm2d, GroupNorm or Linear")
        for p in grouped.parameters():
            p.requires_grad_(True)
        self.net = grouped.train()
        self.members = len(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W] (shared) or [M, B, C, H, W] (one copy per member) -> logits [M, B, K]."""
        if x.dim() == 4:
            x = x.unsqueeze(0).expand(self.members, *x.shape)
        m, b = x.shape[:2]
        if m != self.members:
            raise ValueError(f"expected inputs for {self.members} members, got {m}")
        out = self.net(x.transpose(0, 1).reshape(b, m * x.shape[2], *x.shape[3:]))
        return out.reshape(b, m, -1).transpose(0, 1)

    @torch.no_grad()
    def member(self, m: int, template: nn.Module) -> nn.Module:
        """Member ``m``'s weights and statistics, loaded into ``template`` (a network of the members'
        architecture), returned in evaluation mode."""
        if not 0 <= m < self.members:
            raise IndexError(f"member {m} of {self.members}")
        own = template.state_dict()
        state = {}
        for name, value in self.net.state_dict().items():
            if name not in own:
                raise ValueError(f"{name} is not a parameter of the template network")
            # every stacked tensor is the members' tensors along its first axis (a scalar: shared)
            state[name] = value if value.dim() == 0 else value.chunk(self.members)[m].reshape(own[name].shape)
        template.load_state_dict(state)
        return template.eval()
