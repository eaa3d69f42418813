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

The members' weights always live stacked in the grouped network (one state dict, one optimiser,
one DDP module); ``way`` says how a forward walks them, the same numbers each way:

- ``joint``: the grouped network, one forward over M x C channels (fastest while everything stays
  in cache: few members, narrow layers, small inputs);
- ``loop``: member after member, each a network of the members' architecture run on its slices
  of the stacked tensors (``torch.func.functional_call``; views, so gradients and batch-norm
  statistics land in the stacked tensors). On a CPU, batch norm's double backward over M x C
  channels is memory-bound, and a loop over members keeps each member's activations in cache;
- ``vmap``: ``torch.vmap`` of that member network over the stacked tensors viewed as [M, ...].
"""
from __future__ import annotations

import copy
from typing import Dict, List, Sequence

import torch
from torch import nn
from torch.func import functional_call

from tasks.models.grouped import group_members


WAYS = ("joint", "loop", "vmap")


def _tensors(module: nn.Module) -> List[tuple]:
    """(name, tensor) of every parameter and buffer of ``module``."""
    return [*module.named_parameters(), *module.named_buffers()]


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
        # the members' structure, without tensors of its own (a tuple: not a submodule, so the state
        # dict, .to() and DDP see only the stacked network)
        self._template = (copy.deepcopy(members[0]).to("meta"),)
        self._shapes: Dict[str, torch.Size] = {name: t.shape for name, t in _tensors(members[0])}

    def forward(self, x: torch.Tensor, way: str = "joint") -> torch.Tensor:
        """x [B, C, H, W] (shared) or [M, B, C, H, W] (one copy per member) -> logits [M, B, K],
        computed the ``way`` given (see the module docstring)."""
        if x.dim() == 4:
            x = x.unsqueeze(0).expand(self.members, *x.shape)
        m, b = x.shape[:2]
        if m != self.members:
            raise ValueError(f"expected inputs for {self.members} members, got {m}")
        if way == "loop":
            return torch.stack([self._call_member(t, x[i]) for i, t in enumerate(self._member_tensors())])
        if way == "vmap":
            return self._vmap(x)
        if way != "joint":
            raise ValueError(f"way must be one of {WAYS}, got {way!r}")
        out = self.net(x.transpose(0, 1).reshape(b, m * x.shape[2], *x.shape[3:]))
        return out.reshape(b, m, -1).transpose(0, 1)

    def largest_feature_map(self, input_shape: Sequence[int]) -> int:
        """Values in the largest output of any layer, all members together, for inputs of
        ``input_shape`` [B, C, H, W] (a forward of the members' structure on the meta device: no
        computation)."""
        template, sizes = self._template[0], []

        def record(_module, _inputs, out):
            if isinstance(out, torch.Tensor):
                sizes.append(out.numel())
        hooks = [module.register_forward_hook(record) for module in template.modules()]
        try:
            with torch.no_grad():
                template(torch.empty(*input_shape, device="meta"))
        finally:
            for hook in hooks:
                hook.remove()
        return self.members * max(sizes)

    def _call_member(self, tensors, x: torch.Tensor) -> torch.Tensor:
        template = self._template[0]
        template.train(self.training)
        return functional_call(template, tensors, (x,))

    def _member_tensors(self) -> List[Dict[str, torch.Tensor]]:
        """Member m's parameters and buffers: views of its block of every stacked tensor. A scalar
        (batch norm's ``num_batches_tracked``) is shared: member 0 counts in it, the others in copies."""
        shapes, m = self._shapes, self.members
        tensors: List[Dict[str, torch.Tensor]] = [{} for _ in range(m)]
        for name, stacked in _tensors(self.net):
            if stacked.dim() == 0:
                for i in range(m):
                    tensors[i][name] = stacked if i == 0 else stacked.clone()
                continue
            # one chunk call: its backward gathers the M members' gradients into one stacked gradient
            for i, block in enumerate(stacked.chunk(m)):
                tensors[i][name] = block.view(shapes[name])
        return tensors

    def _vmap(self, x: torch.Tensor) -> torch.Tensor:
        shapes, m = self._shapes, self.members
        batched: Dict[str, torch.Tensor] = {}
        shared: Dict[str, torch.Tensor] = {}
        for name, stacked in _tensors(self.net):
            if stacked.dim() == 0:
                shared[name] = stacked                         # counted once, outside the vmap's batch
            else:
                batched[name] = stacked.view(m, *shapes[name])
        return torch.vmap(lambda p, xi: self._call_member((p, shared), xi), randomness="different")(batched, x)

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
