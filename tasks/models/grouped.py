"""M networks of one architecture as ONE network with M times the channels (exact, fast on CPU).

:func:`group_members` copies the first member and replaces each layer by its M-member version:

- ``Conv2d(cin, cout, groups=g)`` -> ``Conv2d(M cin, M cout, groups=M g)``, the members' kernels
  stacked: member m's channels are block m of every feature map;
- ``BatchNorm2d(c)`` (evaluation) -> ``BatchNorm2d(M c)`` with the members' statistics stacked;
  ``GroupNorm(G, c)`` -> ``GroupNorm(M G, M c)``;
- ``Linear(i, o)`` -> :class:`MemberLinear`, input [B, M i] read as [B, M, i] -> [B, M o];
- layers without parameters that act per channel (activations, pooling, flatten, dropout in
  evaluation) stay as they are.

The input is repeated M times along channels; the output [B, M K] is read as [M, B, K].
A network with any other layer holding parameters or buffers (attention, LayerNorm, ...) is
refused (``None``); :class:`tasks.models.ensemble.BatchedMembers` (``torch.vmap``) covers those.
"""
from __future__ import annotations

import copy
from typing import Optional, Sequence

import torch
from torch import nn

class MemberLinear(nn.Module):
    def __init__(self, layers: Sequence[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([l.weight.detach() for l in layers]), requires_grad=False)  # [M, o, i]
        bias = [l.bias.detach() if l.bias is not None else torch.zeros(l.out_features) for l in layers]
        self.bias = nn.Parameter(torch.stack(bias), requires_grad=False)                                   # [M, o]
        self.members = len(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        h = x.reshape(b, self.members, -1)
        return (torch.einsum("bmi,moi->bmo", h, self.weight) + self.bias).reshape(b, -1)


def _stack(tensors):
    return torch.cat([t.detach() for t in tensors])


def _group_layer(layers: Sequence[nn.Module]) -> Optional[nn.Module]:
    first, m = layers[0], len(layers)
    if isinstance(first, nn.Conv2d):
        new = nn.Conv2d(first.in_channels * m, first.out_channels * m, first.kernel_size, first.stride,
                        first.padding, first.dilation, first.groups * m, first.bias is not None, first.padding_mode)
        new.weight.data = _stack([l.weight for l in layers])
        if first.bias is not None:
            new.bias.data = _stack([l.bias for l in layers])
        return new
    if isinstance(first, nn.BatchNorm2d):
        if not first.track_running_stats:
            return None
        new = nn.BatchNorm2d(first.num_features * m, first.eps, first.momentum, first.affine)
        new.running_mean.data, new.running_var.data = _stack([l.running_mean for l in layers]), \
            _stack([l.running_var for l in layers])
        if first.affine:
            new.weight.data, new.bias.data = _stack([l.weight for l in layers]), _stack([l.bias for l in layers])
        return new.eval()
    if isinstance(first, nn.GroupNorm):
        new = nn.GroupNorm(first.num_groups * m, first.num_channels * m, first.eps, first.affine)
        if first.affine:
            new.weight.data, new.bias.data = _stack([l.weight for l in layers]), _stack([l.bias for l in layers])
        return new
    if isinstance(first, nn.Linear):
        return MemberLinear(layers)
    return None


def group_members(models: Sequence[nn.Module]) -> Optional[nn.Module]:
    """One network computing all members (see the module docstring), or None if not possible."""
    if len({type(m) for m in models}) != 1:
        return None
    grouped = copy.deepcopy(models[0]).eval()
    named = [dict(m.named_modules()) for m in models]
    for name, module in list(grouped.named_modules()):
        if name == "":
            continue
        if isinstance(module, (nn.Conv2d, nn.BatchNorm2d, nn.GroupNorm, nn.Linear)):
            new = _group_layer([n[name] for n in named])
            if new is None:
                return None
            parent_name, _, attr = name.rpartition(".")
            parent = grouped.get_submodule(parent_name) if parent_name else grouped
            setattr(parent, attr, new)
        elif list(module.parameters(recurse=False)) or list(module.buffers(recurse=False)):
            return None                    # a layer with its own state this module cannot group
    for p in grouped.parameters():
        p.requires_grad_(False)
    return grouped.eval()


class GroupedMembers(nn.Module):
    """``forward(x [B, C, H, W]) -> logits [M, B, K]`` of M members through one grouped network."""

    def __init__(self, grouped: nn.Module, members: int):
        super().__init__()
        # channels-last: oneDNN's grouped convolutions and pooling run ~1.5x faster on CPU in it
        self.net, self.members = grouped.to(memory_format=torch.channels_last), members

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.repeat(1, self.members, *([1] * (x.dim() - 2)))
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        out = self.net(x)
        return out.reshape(x.shape[0], self.members, -1).transpose(0, 1)
