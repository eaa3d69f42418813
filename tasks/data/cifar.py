"""CIFAR-10 / -100, their -C corruptions, TinyImageNet and TinyImageNet-C, read from local files
in their published layouts (never downloaded).

- ``cifar10`` / ``cifar100``: the "python version" folders (``cifar-10-batches-py``:
  ``data_batch_1..5``, ``test_batch``; ``cifar-100-python``: ``train``, ``test``), pickled dicts of
  uint8 rows [N, 3072] and labels; ``split: train | test``.
- ``cifar10_c`` / ``cifar100_c``: ``<root>/<corruption>.npy`` [5 x n, 32, 32, 3] and
  ``<root>/labels.npy`` [5 x n], the five severities one after another (the published files:
  n = 10000); severity s is rows (s - 1) n .. s n.
- ``tiny_imagenet``: ``<root>/wnids.txt``, ``train/<wnid>/images/*.JPEG``, ``val/images/*.JPEG``
  with ``val/val_annotations.txt`` (file, wnid, box); ``split: train | val``.
- ``tiny_imagenet_c``: ``<root>/<corruption>/<severity>/<wnid>/*.JPEG``, classes from ``wnids``
  (a path to TinyImageNet's ``wnids.txt``) or the sorted folder names.

Items are ``(image tensor, label, index)`` like every set of :mod:`tasks.data`.
"""
from __future__ import annotations

import os
import pickle
from typing import List, Optional

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from tasks.data.folders import ImageFiles, list_images

CIFAR_FILES = {
    10: {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"], "labels": b"labels"},
    100: {"train": ["train"], "test": ["test"], "labels": b"fine_labels"},
}
SEVERITIES = 5


class ArrayImages(Dataset):
    """uint8 images [N, H, W, C] with labels, each transformed from a PIL image."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform=None, offset: int = 0):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels, self.transform, self.offset = images, np.asarray(labels), transform, offset

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        img = Image.fromarray(self.images[i])
        return (self.transform(img) if self.transform else img), int(self.labels[i]), self.offset + i


def _unpickle(path: str) -> dict:
    if not os.path.exists(path):
        raise FileNotFoundError(f"CIFAR file not found: {path} (give the folder of the python version)")
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


def cifar(root: str, classes: int, split: str, transform) -> ArrayImages:
    files = CIFAR_FILES[classes]
    if split not in ("train", "test"):
        raise ValueError(f"CIFAR split must be train or test, got {split!r}")
    data, labels = [], []
    for name in files[split]:
        batch = _unpickle(os.path.join(root, name))
        data.append(np.asarray(batch[b"data"], dtype=np.uint8))
        labels += list(batch[files["labels"]])
    images = np.concatenate(data).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return ArrayImages(np.ascontiguousarray(images), np.asarray(labels, dtype=np.int64), transform)


def cifar_c(root: str, corruption: str, severity: int, transform) -> ArrayImages:
    path = os.path.join(root, f"{corruption}.npy")
    if not os.path.exists(path):
        raise FileNotFoundError(f"CIFAR-C corruption not found: {path}")
    if not 1 <= int(severity) <= 5:
        raise ValueError(f"severity must be 1-5, got {severity!r}")
    images = np.load(path, mmap_mode="r")
    labels = np.load(os.path.join(root, "labels.npy"), mmap_mode="r")
    if len(images) != len(labels) or len(labels) % SEVERITIES:
        raise ValueError(f"{path}: {len(images)} images and {len(labels)} labels; CIFAR-C holds the same number "
                         f"of each, {SEVERITIES} severities of equal size")
    n = len(labels) // SEVERITIES
    a, b = (int(severity) - 1) * n, int(severity) * n
    images, labels = images[a:b], np.asarray(labels[a:b])
    return ArrayImages(images, labels.astype(np.int64), transform, offset=a)


def read_wnids(path: str) -> List[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def tiny_imagenet(root: str, split: str, transform) -> ImageFiles:
    wnids = read_wnids(os.path.join(root, "wnids.txt"))
    position = {w: i for i, w in enumerate(wnids)}
    if split == "train":
        samples = [(p, position[w]) for w in wnids for p in list_images(os.path.join(root, "train", w))]
    elif split == "val":
        samples = []
        with open(os.path.join(root, "val", "val_annotations.txt"), encoding="utf-8") as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) >= 2:
                    samples.append((os.path.join(root, "val", "images", parts[0]), position[parts[1]]))
        samples.sort()
    else:
        raise ValueError(f"TinyImageNet split must be train or val, got {split!r}")
    return ImageFiles(samples, transform)


def tiny_imagenet_c(root: str, corruption: str, severity: int, transform, wnids: Optional[str] = None) -> ImageFiles:
    folder = os.path.join(root, corruption, str(severity))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"TinyImageNet-C folder not found: {folder}")
    names = read_wnids(wnids) if wnids else sorted(os.listdir(folder))
    position = {w: i for i, w in enumerate(names)}
    samples = [(p, position[w]) for w in sorted(os.listdir(folder)) for p in list_images(os.path.join(folder, w))]
    return ImageFiles(samples, transform)
