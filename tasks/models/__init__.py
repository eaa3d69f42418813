"""Image classifiers by name: ``create_model`` is the one entry point.

    from tasks.models import create_model
    net = create_model("cifar_resnet18", num_classes=10)            # a family of this folder
    net = create_model("resnet50", num_classes=1000)                # any timm architecture
    net = create_model("resnet50", num_classes=1000, weights="models/r50.pth")   # local weights
    net = create_model("small_cnn", num_classes=5, in_chans=1, width=32, mimo=3)  # MIMO, 3 subnetworks
    net = create_model("small_cnn", num_classes=5, joint_members=10, member_seeds=range(10))  # 10 networks as one

Families that timm lacks register themselves in :data:`MODELS` (one file
each in ``families/``: ``resnet_cifar.py``, ``preact_resnet.py``, ``small_cnn.py``); every
other name goes to ``timm.create_model`` with ``pretrained=False`` (weights
never download: give ``weights``, a local file). ``mimo=M`` wraps the network
as M subnetworks (:mod:`tasks.models.mimo`); ``joint_members=M`` builds M networks (member m
from ``member_seeds[m]``) trained as one (:mod:`tasks.models.joint`). ``init``: ``torch`` (each
layer's default) or ``haiku`` (the FoRDE authors': weights of convolutions and linear layers
from a truncated normal of standard deviation 1 / sqrt(fan-in) before truncation at 2 — haiku's
``VarianceScaling`` — biases 0, the classifier's weights 0).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from tasks.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model", discover="tasks.models.families")


def _build(name: str, num_classes: int, in_chans: int, **kwargs) -> nn.Module:
    if name in MODELS:
        return MODELS.get(name)(num_classes=num_classes, in_chans=in_chans, **kwargs)
    import timm

    if not timm.is_model(name):
        raise ValueError(f"unknown model {name!r}: not one of {MODELS.names()} nor a timm architecture")
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)


INITS = ("torch", "haiku")


@torch.no_grad()
def haiku_init(model: nn.Module) -> nn.Module:
    """The FoRDE authors' initialisation (haiku's defaults and their ResNet's zero classifier)."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for layer in layers:
        fan_in = layer.weight[0].numel()
        std = (1.0 / fan_in) ** 0.5 / 0.87962566103423978     # haiku: the std before truncation at 2 std
        nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
        if layer.bias is not None:
            layer.bias.zero_()
    if layers and isinstance(layers[-1], nn.Linear):
        layers[-1].weight.zero_()
    return model


def _network(name: str, num_classes: int, in_chans: int, mimo: int, init: str, **kwargs) -> nn.Module:
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if mimo and int(mimo) >= 1:
        from tasks.models.mimo import MIMO

        model: nn.Module = MIMO(lambda c, k: _build(name, k, c, **kwargs), int(mimo), num_classes, in_chans)
    else:
        model = _build(name, num_classes, in_chans, **kwargs)
    return haiku_init(model) if init == "haiku" else model


def create_model(name: str, num_classes: int, in_chans: int = 3, weights: Optional[str] = None,
                 mimo: int = 0, joint_members: int = 0, member_seeds=None, init: str = "torch",
                 weights_exclude: Optional[str] = None, zero_shot_head=None, **kwargs) -> nn.Module:
    """The network ``name`` with ``num_classes`` outputs (``mimo=M``: M subnetworks, see mimo.py;
    ``joint_members=M``: M networks as one, see joint.py, member m initialised from
    ``member_seeds[m]`` when given).

    ``weights``: a local file with a state dict (``.safetensors``: timm's hub files), a checkpoint holding one under ``model``, or a
    model saved by tasks/classify/train.py (its ``state_dict``). ``weights_exclude``: a regular
    expression; the parameters whose names it matches keep their fresh initialisation (a new
    classifier when fine-tuning: ``"^fc\\."``); every other one must be in the file.

    ``zero_shot_head``: a file of class text embeddings (tasks/robustness/zero_shot_head.py): the network,
    built with as many outputs as the embedding has dimensions and given ``weights``, becomes the image
    tower of a :class:`tasks.models.zero_shot.ZeroShotClassifier` with ``num_classes`` classes (an
    integer instead of a file: the embedding size, for a structure whose weights come later)."""
    if joint_members and int(joint_members) >= 1:
        from tasks.models.joint import JointEnsemble

        seeds = list(member_seeds) if member_seeds is not None else None
        if seeds is not None and len(seeds) != int(joint_members):
            raise ValueError(f"{joint_members} members but {len(seeds)} member seeds")
        members = []
        for m in range(int(joint_members)):
            if seeds is not None:
                torch.manual_seed(int(seeds[m]))
            members.append(_network(name, num_classes, in_chans, mimo, init, **kwargs))
        model: nn.Module = JointEnsemble(members)
    elif zero_shot_head is not None:
        from tasks.models.zero_shot import ZeroShotClassifier, read_head

        if mimo:
            raise ValueError("a zero-shot head goes on one network, not MIMO")
        head = read_head(zero_shot_head) if isinstance(zero_shot_head, str) else \
            torch.zeros(num_classes, int(zero_shot_head))
        if head.shape[0] != num_classes:
            raise ValueError(f"{zero_shot_head} has {head.shape[0]} classes, the model {num_classes}")
        tower = _network(name, head.shape[1], in_chans, 0, init, **kwargs)
        if weights:
            load_weights(tower, weights, weights_exclude)
        return ZeroShotClassifier(tower, head)
    else:
        model = _network(name, num_classes, in_chans, mimo, init, **kwargs)
    if weights:
        load_weights(model, weights, weights_exclude)
    return model


def load_weights(model: nn.Module, path: str, exclude: Optional[str] = None) -> None:
    """Load ``path`` into ``model`` (see :func:`create_model`'s ``weights`` and ``weights_exclude``)."""
    import re

    if str(path).endswith(".safetensors"):                          # timm's / Hugging Face's files
        from safetensors.torch import load_file

        state = load_file(path, device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict) and "format" in state:
        state = state["state_dict"]                                   # a tasks/classify model file
    elif isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not exclude:
        model.load_state_dict(state)
        return
    pattern = re.compile(exclude)
    kept = {k: v for k, v in state.items() if not pattern.search(k)}
    try:
        missing, unexpected = model.load_state_dict(kept, strict=False)
    except RuntimeError as exc:                 # shapes that differ
        raise ValueError(f"{path} does not fit the network: {str(exc).splitlines()[-1].strip()}") from None
    missing = [k for k in missing if not pattern.search(k)]
    if missing or unexpected:
        raise ValueError(f"{path} does not fit the network: missing {missing[:5]}, unexpected {unexpected[:5]} "
                         f"(weights_exclude {exclude!r} leaves out only what it matches)")

