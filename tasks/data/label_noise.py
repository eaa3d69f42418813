"""Label noise as a data-spec option, for any labelled dataset:

    train: {dataset: digits, split: train, label_noise: {fraction: 0.2, seed: 7}}

``kind: symmetric`` (the only kind): exactly round(N x fraction) of the N labelled samples,
chosen by ``seed``, get another class, drawn uniformly from the K - 1 others (never their
own). K is ``num_classes`` when given, else the largest label + 1. ``draw`` says how ``seed``
chooses them: ``sheetrun`` (default) picks the samples, then their shifts; ``authors`` is the
Jacobian-statistics authors' ``corrupt_labels`` (seed 003, core/data.py), number for number:
shifts u in 1..K-1 for the first round(N p) positions, then a permutation of all N positions
carries them to their samples, y <- (y + u) mod K — the same seed and sample order give their
labels exactly (every sample labelled). The dataset's items are
``(image, noisy label, index)`` as before; the clean labels stay with it
(``dataset.clean_labels``, ``dataset.noisy`` marks the changed samples, by position).
"""
from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

KINDS = ("symmetric",)
KEYS = {"fraction", "seed", "kind", "num_classes", "draw"}
DRAWS = ("sheetrun", "authors")


def labels_of(dataset) -> np.ndarray:
    """Every sample's label without loading any image (the datasets keep them apart)."""
    if hasattr(dataset, "indices") and hasattr(dataset, "dataset"):          # torch.utils.data.Subset
        return labels_of(dataset.dataset)[np.asarray(dataset.indices, dtype=np.int64)]
    if hasattr(dataset, "labels"):
        return np.asarray(dataset.labels, dtype=np.int64)
    if hasattr(dataset, "samples"):
        return np.asarray([label for _, label in dataset.samples], dtype=np.int64)
    raise ValueError(f"label_noise: cannot read the labels of a {type(dataset).__name__} dataset")


def noisy_labels(labels, fraction: float, seed: int, num_classes: int | None = None, draw: str = "sheetrun") -> np.ndarray:
    """The labels with exactly round(N x fraction) of the N labelled ones (label >= 0) changed,
    each to a different class, uniformly; which ones and to what is decided by ``seed`` (and
    ``draw``: see the module docstring)."""
    y = np.asarray(labels, dtype=np.int64)
    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"label_noise.fraction must be in [0, 1], got {fraction}")
    labelled = np.flatnonzero(y >= 0)
    k = int(num_classes) if num_classes is not None else int(y.max()) + 1
    if k < 2:
        raise ValueError("label_noise needs at least 2 classes")
    if len(labelled) and y[labelled].max() >= k:
        raise ValueError(f"label_noise.num_classes is {k}, but a label is {int(y[labelled].max())}")
    rng = np.random.default_rng(int(seed))
    count = int(round(len(labelled) * float(fraction)))
    if draw == "authors":
        if len(labelled) != len(y):
            raise ValueError("label_noise.draw: authors needs every sample labelled")
        shift = np.zeros(len(y), dtype=np.int64)
        shift[:count] = rng.integers(1, k, count)
        return (y + shift[rng.permutation(len(y))]) % k
    if draw != "sheetrun":
        raise ValueError(f"label_noise.draw must be one of {DRAWS}, got {draw!r}")
    chosen = rng.choice(labelled, size=count, replace=False)
    out = y.copy()
    out[chosen] = (y[chosen] + rng.integers(1, k, size=len(chosen))) % k
    return out


class NoisyLabels(Dataset):
    """``dataset`` with its labels replaced by :func:`noisy_labels`; the clean ones kept beside them."""

    def __init__(self, dataset, options: dict):
        unknown = set(options) - KEYS
        if unknown:
            raise ValueError(f"label_noise does not take {', '.join(sorted(unknown))} (it takes {', '.join(sorted(KEYS))})")
        if options.get("kind", "symmetric") not in KINDS:
            raise ValueError(f"label_noise.kind must be one of {KINDS}, got {options.get('kind')!r}")
        if "fraction" not in options or "seed" not in options:
            raise ValueError("label_noise needs a fraction and its own seed")
        self.dataset = dataset
        self.clean_labels = labels_of(dataset)
        self.labels = noisy_labels(self.clean_labels, options["fraction"], options["seed"], options.get("num_classes"),
                                   options.get("draw", "sheetrun"))
        self.noisy = self.labels != self.clean_labels

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        image, _, index = self.dataset[i]
        return image, int(self.labels[i]), index
