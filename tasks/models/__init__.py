"""Image classifiers by name: ``create_model`` is the one entry point.

    from tasks.models import create_model
    net = create_model("cifar_resnet18", num_classes=10)            # a family of this folder
    net = create_model("resnet50", num_classes=1000)                # any timm architecture
    net = create_model("resnet50", num_classes=1000, weights="models/r50.pth")   # local weights
    net = create_model("small_cnn", num_classes=5, in_chans=1, width=32, mimo=3)  # MIMO, 3 subnetworks

Families that timm lacks register themselves in :data:`MODELS` (one file
each: ``resnet_cifar.py``, ``preact_resnet.py``, ``small_cnn.py``); every
other name goes to ``timm.create_model`` with ``pretrained=False`` (weights
never download: give ``weights``, a local file). ``mimo=M`` wraps the network
as M subnetworks (:mod:`tasks.models.mimo`).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
from torch import nn

MODELS: Dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    def wrap(fn):
        MODELS[name] = fn
        return fn
    return wrap


def _build(name: str, num_classes: int, in_chans: int, **kwargs) -> nn.Module:
    if name in MODELS:
        return MODELS[name](num_classes=num_classes, in_chans=in_chans, **kwargs)
    import timm

    if not timm.is_model(name):
        raise ValueError(f"unknown model {name!r}: not one of {sorted(MODELS)} nor a timm architecture")
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)


def create_model(name: str, num_classes: int, in_chans: int = 3, weights: Optional[str] = None,
                 mimo: int = 0, **kwargs) -> nn.Module:
    """The network ``name`` with ``num_classes`` outputs (``mimo=M``: M subnetworks, see mimo.py).

    ``weights``: a local file with a state dict (or a checkpoint holding one under ``model``)."""
    if mimo and int(mimo) >= 1:
        from tasks.models.mimo import MIMO

        model: nn.Module = MIMO(lambda c, k: _build(name, k, c, **kwargs), int(mimo), num_classes, in_chans)
    else:
        model = _build(name, num_classes, in_chans, **kwargs)
    if weights:
        state = torch.load(weights, map_location="cpu", weights_only=False)
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        model.load_state_dict(state)
    return model


from tasks.models import preact_resnet, resnet_cifar, small_cnn  # noqa: E402,F401  (they register)
