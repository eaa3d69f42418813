"""A small width-parametrised CNN: ``depth`` stages of conv3x3 -> norm -> ReLU (-> 2x2 max pool),
channels ``width`` x 2^stage, global average pooling and a linear classifier. Sized for 8-32 pixel
images (the digits demo) and for width sweeps."""
from __future__ import annotations

from torch import nn

from tasks.models import MODELS


NORMS = {"batch": nn.BatchNorm2d, "group": lambda c: nn.GroupNorm(min(8, c), c), "none": None}


@MODELS.register("small_cnn")
def small_cnn(num_classes: int = 10, in_chans: int = 3, width: int = 32, depth: int = 3,
              norm: str = "batch") -> nn.Module:
    """``norm``: batch | group | none (none and group keep every sample independent of the batch)."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {sorted(NORMS)}, got {norm!r}")
    layers, cin = [], in_chans
    for i in range(depth):
        cout = width * 2 ** i
        layers.append(nn.Conv2d(cin, cout, 3, 1, 1, bias=NORMS[norm] is None))
        if NORMS[norm] is not None:
            layers.append(NORMS[norm](cout))
        layers.append(nn.ReLU())
        if i < depth - 1:
            layers.append(nn.MaxPool2d(2))
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)
