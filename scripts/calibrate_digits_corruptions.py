"""Calibrate the digits corruptions' strengths so that severity means the same harm for every type.

    python scripts/calibrate_digits_corruptions.py [--backbone models/sed_digits_vit.pt]

The demo's images are 8x8 digits upsampled to 32 pixels: already blurry and
high-contrast, so ImageNet-C's CIFAR strengths barely touch them (Gaussian
blur at severity 5 left the demo backbone at 98% against 97% clean). This
script sweeps each corruption's strength on the validation split with the
demo backbone (``tasks/sed/pretrain_backbone.py`` with the default config) and
picks, per severity s, the mildest strength on the grid whose accuracy falls
to ``TARGET[s] x clean accuracy``; it prints the sweep and the resulting
``levels`` for :mod:`tasks.data.corruptions`, which hold the chosen values.
``tests/test_sed_data.py`` checks the result: accuracy falls with severity
for every type and severity 5 clearly hurts.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tasks.data import build_set  # noqa: E402
from tasks.data.corruptions import CORRUPTIONS, corrupt_with  # noqa: E402
from tasks.sed.backbones import data_config, load_backbone  # noqa: E402

TARGET = (0.94, 0.86, 0.76, 0.64, 0.50)          # accuracy at severities 1-5, relative to clean

# strengths from mild to extreme, per corruption (the parameter each corruption takes)
GRIDS = {
    "gaussian_noise": np.round(np.arange(0.05, 1.001, 0.025), 3),
    "shot_noise": np.round(np.geomspace(200, 0.5, 48), 3),
    "impulse_noise": np.round(np.arange(0.02, 0.801, 0.02), 3),
    "defocus_blur": np.round(np.arange(1.0, 14.01, 0.25), 2),
    "gaussian_blur": np.round(np.arange(0.5, 10.01, 0.125), 3),
    "motion_blur": np.round(np.arange(3, 40.1, 1.0), 1),
    "zoom_blur": np.round(np.arange(1.06, 4.51, 0.04), 2),
    "contrast": np.round(np.arange(0.75, 0.009, -0.01), 3),
    "brightness": np.round(np.arange(0.1, 1.001, 0.025), 3),
    "pixelate": np.round(np.arange(2.0, 12.01, 0.25), 2),
}


def accuracy(model, images: torch.Tensor, labels: torch.Tensor, mean, std) -> float:
    x = (images - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    with torch.no_grad():
        return (model(x).argmax(-1) == labels).float().mean().item()


def calibrate(model, images, labels, mean, std, name: str, seed: int = 0):
    clean = accuracy(model, images, labels, mean, std)
    sweep = []
    for strength in GRIDS[name]:
        rng = np.random.default_rng([seed, 12345])
        sweep.append((float(strength), accuracy(model, corrupt_with(images, name, float(strength), rng),
                                                labels, mean, std)))
    levels = []
    for t in TARGET:
        hit = next((s for s, a in sweep if a <= t * clean), sweep[-1][0])
        levels.append(hit)
    return clean, sweep, levels


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default=os.path.join(REPO, "models", "sed_digits_vit.pt"))
    a = p.parse_args()
    model = load_backbone({"checkpoint": a.backbone}).eval()
    dc = data_config(model)
    ds, _ = build_set({"dataset": "digits", "split": "val"}, dc)
    images = ds.images                                # [N, C, H, W] in [0, 1], before normalisation
    labels = torch.as_tensor(ds.labels)
    for name in sorted(CORRUPTIONS):
        clean, sweep, levels = calibrate(model, images, labels, dc["mean"], dc["std"], name)
        print(f"{name:18s} clean {clean:.3f}  levels {levels}")
        print("    " + "  ".join(f"{s:g}:{acc:.2f}" for s, acc in sweep))


if __name__ == "__main__":
    main()
