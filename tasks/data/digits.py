"""The embedded default dataset: scikit-learn's digits, as an image-classification
benchmark with distribution shifts. Ships inside scikit-learn, so it works offline.

- in-distribution: classes ``0-4`` (configurable), split into ``train`` / ``val``
  with a stratified, seeded split;
- ``unseen_classes``: every image of the other classes (semantic OOD; label -1);
- covariate shift: the ``val`` split with an ImageNet-C style corruption at
  severity 1-5 (see :mod:`tasks.data.corruptions`).

The 8x8 images are upsampled (bilinear) to the backbone's input size, made
3-channel and normalised with the backbone's mean / std.
"""
from __future__ import annotations

import functools
import zlib
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset

from tasks.data.corruptions import corrupt

SPLITS = ("train", "val", "unseen_classes")


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    return load_digits(return_X_y=True)


def digits_images(image_size: int, indices=None) -> tuple[torch.Tensor, np.ndarray]:
    """Digits as float images [n, 3, S, S] in [0, 1] (all 1797, or those at ``indices``), and
    the labels of all 1797."""
    x, y = _digits()
    if indices is not None:
        x = x[indices]
    img = torch.from_numpy(x.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    img = F.interpolate(img, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return img.clamp(0, 1).expand(-1, 3, -1, -1).contiguous(), y


def digits_split(labels: np.ndarray, split: str, id_classes: Sequence[int], val_fraction: float,
                 seed: int) -> np.ndarray:
    """Indices (into the full digits set) of one split."""
    if split not in SPLITS:
        raise ValueError(f"digits split must be one of {SPLITS}, got {split!r}")
    is_id = np.isin(labels, list(id_classes))
    if split == "unseen_classes":
        return np.flatnonzero(~is_id)
    ids = np.flatnonzero(is_id)
    train, val = train_test_split(ids, test_size=val_fraction, random_state=seed, stratify=labels[ids])
    return np.sort(train if split == "train" else val)


class DigitsDataset(Dataset):
    """One split of the digits benchmark; items are ``(image, label, index)``.

    ``label`` is the class position in ``id_classes`` (so 0-4 by default) and -1
    for unseen classes; ``index`` is the sample's position in the full digits set.
    """

    def __init__(self, split: str, image_size: int, mean: Sequence[float], std: Sequence[float],
                 id_classes: Sequence[int] = (0, 1, 2, 3, 4), val_fraction: float = 0.25, seed: int = 0,
                 augment: bool = False, corruption: Union[str, Sequence[str], None] = None, severity: Optional[int] = None):
        labels = _digits()[1]
        self.indices = digits_split(labels, split, id_classes, val_fraction, seed)
        images, _ = digits_images(image_size, self.indices)   # upsample only this split
        if corruption:
            # a list of corruptions takes turns over the images (a mixed, "OOD-like" set).
            # One fixed draw per (corruption, severity), so a cached set is reproducible
            # (crc32 of the name: adding a corruption never changes the others' draws)
            names = [corruption] if isinstance(corruption, str) else list(corruption)
            for k, name in enumerate(names[:len(images)]):
                rng = np.random.default_rng([seed, zlib.crc32(name.encode()), int(severity)])
                images[k::len(names)] = corrupt(images[k::len(names)], name, severity, rng)
        self.images = images
        position = {c: i for i, c in enumerate(id_classes)}
        self.labels = torch.tensor([position.get(int(c), -1) for c in labels[self.indices]])
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.augment = None
        if augment:
            from torchvision.transforms import v2
            self.augment = v2.Compose([
                v2.RandomResizedCrop(image_size, scale=(0.8, 1.0), ratio=(0.9, 1.1), antialias=True),
                v2.RandomAffine(degrees=8, translate=(0.05, 0.05)),
            ])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        img = self.images[i]
        if self.augment is not None:
            img = self.augment(img)
        return (img - self.mean) / self.std, int(self.labels[i]), int(self.indices[i])
