"""PreAct ResNet-18 (He et al. 2016, "Identity mappings"): BN -> ReLU -> conv in every block,
a 3x3 stem for 32-pixel images, widths 64..512 x ``width`` / 64; ``padding`` torch or same
(Haiku's, as :mod:`tasks.models.families.resnet_cifar`)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from tasks.models import MODELS
from tasks.models.families.resnet_cifar import conv3x3, stages


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, padding: str = "torch"):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.pad1, self.conv1 = conv3x3(cin, cout, stride, False, padding)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(self.pad1(out))
        return self.conv2(F.relu(self.bn2(out))) + skip


class PreActResNet(nn.Module):
    def __init__(self, blocks=(2, 2, 2, 2), num_classes: int = 10, in_chans: int = 3, width: int = 64,
                 padding: str = "torch"):
        super().__init__()
        self.stem = nn.Conv2d(in_chans, width, 3, 1, 1, bias=False)
        self.layers, cin = stages(PreActBlock, blocks, width, padding=padding)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        out = F.relu(self.bn(self.layers(self.stem(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


@MODELS.register("preact_resnet18")
def preact_resnet18(num_classes: int = 10, in_chans: int = 3, width: int = 64, padding: str = "torch") -> nn.Module:
    return PreActResNet((2, 2, 2, 2), num_classes, in_chans, width, padding)
