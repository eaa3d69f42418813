"""MIMO (Havasi et al. 2021): M subnetworks inside one network.

The M members' inputs are stacked on the channel axis (in_chans x M channels
in) and the output layer has K x M units; member m reads its K logits from
slice m. Training (:func:`mimo_batch`) draws each member's inputs from the
batch independently, except that with probability ``rho`` (input repetition)
a sample is given to every member, and the batch is repeated ``batch_reps``
times first. At test time every member sees the same input and the logits are
averaged (:meth:`MIMO.forward` with a plain [B, C, H, W] batch).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class MIMO(nn.Module):
    def __init__(self, build: Callable[[int, int], nn.Module], members: int, num_classes: int, in_chans: int = 3):
        super().__init__()
        self.members, self.num_classes, self.in_chans = int(members), int(num_classes), int(in_chans)
        self.net = build(self.in_chans * self.members, self.num_classes * self.members)

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, M, C, H, W] (member m's input in slot m) -> logits [B, M, K]."""
        b, m = x.shape[:2]
        if m != self.members:
            raise ValueError(f"expected {self.members} member inputs, got {m}")
        return self.net(x.reshape(b, m * x.shape[2], *x.shape[3:])).view(b, m, self.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W]: the same input for every member, logits averaged -> [B, K];
        [B, M, C, H, W]: per-member logits [B, M, K]."""
        if x.dim() == 5:
            return self.member_logits(x)
        return self.member_logits(x.unsqueeze(1).expand(-1, self.members, *x.shape[1:])).mean(1)


SHARING = ("bernoulli", "exact")


def mimo_batch(x: torch.Tensor, y: torch.Tensor, members: int, rho: float, batch_reps: int,
               generator: torch.Generator, sharing: str = "bernoulli") -> tuple:
    """A MIMO training batch from (x [B, ...], y [B]): (x [B*r, M, ...], y [B*r, M]).

    The batch is repeated ``batch_reps`` = r times. ``sharing``:

    - ``bernoulli``: member 0 takes the rows in order, every other member a random
      permutation of them, except for the rows (each with probability ``rho``) that every
      member shares;
    - ``exact`` (the seed's ``train_mimo.py``): the B*r rows are shuffled once; the first
      int(B*r*(1 - rho)) of them are permuted again for every member on its own, the rest are
      shared — exactly a ``rho`` fraction of shared rows in every batch."""
    if sharing not in SHARING:
        raise ValueError(f"mimo sharing must be one of {SHARING}, got {sharing!r}")
    x = x.repeat(batch_reps, *([1] * (x.dim() - 1)))
    y = y.repeat(batch_reps)
    n = len(y)
    if sharing == "exact":
        main = torch.randperm(n, generator=generator)
        k = int(n * (1 - rho))
        idx = [torch.cat([main[:k][torch.randperm(k, generator=generator)], main[k:]]) for _ in range(members)]
    else:
        idx = [torch.arange(n)]
        shared = torch.rand(n, generator=generator) < rho
        for _ in range(members - 1):
            perm = torch.randperm(n, generator=generator)
            idx.append(torch.where(shared, torch.arange(n), perm))
    idx = torch.stack(idx, 1).to(x.device)                          # [n, M]
    return x[idx], y.to(x.device)[idx]
