"""ResNet-18 for 32-pixel images (He et al. 2016, as commonly used on CIFAR): a 3x3 stride-1
stem without max pooling, four stages of two BasicBlocks (64, 128, 256, 512 x ``width`` / 64)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from tasks.models import register


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def stages(block, blocks, width: int) -> tuple:
    """ResNet stages: ``blocks[i]`` blocks of ``width * 2^i`` channels, stride 2 at the start of every
    stage but the first. Returns (an ``nn.Sequential`` of the blocks, the output channels)."""
    layers, cin = [], width
    for i, n in enumerate(blocks):
        cout = width * 2 ** i
        for j in range(n):
            layers.append(block(cin, cout, 2 if (i > 0 and j == 0) else 1))
            cin = cout
    return nn.Sequential(*layers), cin


class CifarResNet(nn.Module):
    def __init__(self, blocks=(2, 2, 2, 2), num_classes: int = 10, in_chans: int = 3, width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chans, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.layers, cin = stages(BasicBlock, blocks, width)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1).flatten(1))


@register("cifar_resnet18")
def cifar_resnet18(num_classes: int = 10, in_chans: int = 3, width: int = 64) -> nn.Module:
    return CifarResNet((2, 2, 2, 2), num_classes, in_chans, width)
