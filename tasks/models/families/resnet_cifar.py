"""ResNet-18 for 32-pixel images (He et al. 2016, as commonly used on CIFAR): a 3x3 stride-1
stem without max pooling, four stages of two BasicBlocks of ``width`` x (1, 2, 4, 8) channels
(``width`` 64: 64 ... 512; other widths are the base-width family ResNet-18-k of Nakkiran et al.).

``norm: batch`` (default) puts batch norm after every convolution, the shortcut's included, and
drops the convolutions' biases. ``norm: none`` is the Jacobian-statistics authors' ResNet-18-k
(seed 003, magamba/overparameterization ``models/resnet.py`` without ``batch_norm``): the 3x3
convolutions keep their biases, the 1x1 shortcut convolution has none, nothing is normalised.

``padding``: ``torch`` pads every 3x3 convolution by 1 on each side; ``same`` is TensorFlow /
Haiku's ``SAME`` (the FoRDE authors' networks): a stride-2 3x3 convolution of an even-sized map
pads 0 before and 1 after, so its windows are centred on the odd pixels (:class:`SamePad2d`).
Stride-1 and 1x1 convolutions pad the same either way.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from tasks.models import MODELS

NORMS = ("batch", "none")
PADDINGS = ("torch", "same")


class SamePad2d(nn.Module):
    """TensorFlow's ``SAME`` padding for a ``kernel`` x ``kernel`` convolution of ``stride``: the
    output has ceil(n / stride) positions; the total pad max((out - 1) stride + kernel - n, 0) is
    split with the smaller half before (rows and columns alike)."""

    def __init__(self, kernel: int, stride: int):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    @staticmethod
    def split(n: int, kernel: int, stride: int) -> tuple:
        total = max((-(-n // stride) - 1) * stride + kernel - n, 0)
        return total // 2, total - total // 2

    def forward(self, x):
        top, bottom = self.split(x.shape[-2], self.kernel, self.stride)
        left, right = self.split(x.shape[-1], self.kernel, self.stride)
        return F.pad(x, (left, right, top, bottom))


def conv3x3(cin: int, cout: int, stride: int, bias: bool, padding: str) -> tuple:
    """(the pad before it, the 3x3 convolution) for ``padding`` torch or same."""
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if padding == "same":
        return SamePad2d(3, stride), nn.Conv2d(cin, cout, 3, stride, 0, bias=bias)
    return nn.Identity(), nn.Conv2d(cin, cout, 3, stride, 1, bias=bias)


def _norm(norm: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if norm == "batch" else nn.Identity()


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm: str = "batch", padding: str = "torch"):
        super().__init__()
        bias = norm == "none"
        self.pad1, self.conv1 = conv3x3(cin, cout, stride, bias, padding)
        self.bn1 = _norm(norm, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=bias)
        self.bn2 = _norm(norm, cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _norm(norm, cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(self.pad1(x))))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def stages(block, blocks, width: int, **kwargs) -> tuple:
    """ResNet stages: ``blocks[i]`` blocks of ``width * 2^i`` channels, stride 2 at the start of every
    stage but the first. Returns (an ``nn.Sequential`` of the blocks, the output channels)."""
    layers, cin = [], width
    for i, n in enumerate(blocks):
        cout = width * 2 ** i
        for j in range(n):
            layers.append(block(cin, cout, 2 if (i > 0 and j == 0) else 1, **kwargs))
            cin = cout
    return nn.Sequential(*layers), cin


class CifarResNet(nn.Module):
    def __init__(self, blocks=(2, 2, 2, 2), num_classes: int = 10, in_chans: int = 3, width: int = 64,
                 norm: str = "batch", padding: str = "torch"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        self.stem = nn.Sequential(nn.Conv2d(in_chans, width, 3, 1, 1, bias=norm == "none"), _norm(norm, width),
                                  nn.ReLU())
        self.layers, cin = stages(BasicBlock, blocks, width, norm=norm, padding=padding)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1).flatten(1))


@MODELS.register("cifar_resnet18")
def cifar_resnet18(num_classes: int = 10, in_chans: int = 3, width: int = 64, norm: str = "batch",
                   padding: str = "torch") -> nn.Module:
    return CifarResNet((2, 2, 2, 2), num_classes, in_chans, width, norm, padding)
