"""Synthetic distribution shifts as a data-spec option, for any labelled set (seed 002):

    train: {dataset: digits, split: train, shift: {kind: tint, p: 0.5, seed: 0}}   # the reference
    target: {dataset: digits, split: val, shift: {kind: tint, p: 0.0, seed: 0}}    # the shifted set
    flipped: {dataset: digits, split: val, shift: {kind: vflip}}

A shift acts on the image in pixel space ([0, 1], before the normalisation: the set's
normalisation is undone, the shift applied, the normalisation redone), as the authors' loaders do:

- ``tint``: x' = (1 - alpha) x + alpha c, with c the colour of class t. Each class gets one
  colour, uniform in [0, 1]^3; each sample (by its index in the set) is tinted with its own
  class's colour (t = y, the true label) with probability ``p``, else with the colour of a class
  drawn uniformly. Samples are taken by their position in the set. All of it is drawn from ``seed`` with numpy's RandomState, in the authors' order
  (colours [K, 3], then a random class per sample, then the per-sample coin), over
  ``num_examples`` samples (default: the set's size; the authors' ImageNet: 1,281,167), so a
  reference set (p > 0) and a target set (p = 0) with the same seed share the colours. At p = 1
  the colour alone tells the class; at p = 0 it tells nothing.
- ``vflip``: the image upside down.

A list of shifts applies them in order (``[{kind: tint, ...}, {kind: vflip}]``: tinted, then
flipped).

A shifted set's ``record`` is what a result file keeps of its shift (tasks/classify/evaluate.py
writes it into ``eval_metrics.json``): the options and, for a tint, the class colours themselves.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from tasks.registry import Registry

SHIFTS: Registry[Callable] = Registry("shift", key="shift.kind")     # info: the keys each shift takes
shift = SHIFTS.register


def tint_draws(num_classes: int, num_examples: int, p: float, seed: int):
    """(colours [K, 3], tint class of each sample [N] given its label is not yet known: (random class, coin))."""
    rng = np.random.RandomState(int(seed))
    colours = rng.uniform(size=(num_classes, 3))
    random_class = rng.choice(num_classes, size=(num_examples,))
    own_class = rng.uniform(size=(num_examples,)) < float(p)
    return colours, random_class, own_class


@shift("tint", keys={"kind", "p", "alpha", "seed", "num_classes", "num_examples"})
def _tint(options: dict, labels: np.ndarray, length: int):
    p, alpha = float(options.get("p", 0.5)), float(options.get("alpha", 0.25))
    if not 0 <= p <= 1 or not 0 <= alpha <= 1:
        raise ValueError(f"tint needs 0 <= p <= 1 and 0 <= alpha <= 1, got p={p}, alpha={alpha}")
    if "seed" not in options:
        raise ValueError("shift: tint needs its own seed (the class colours and the coin flips come from it)")
    k = int(options.get("num_classes") or int(labels.max()) + 1)
    n = int(options.get("num_examples") or length)
    colours, random_class, own = tint_draws(k, n, p, int(options["seed"]))
    colours_t = torch.tensor(colours, dtype=torch.float32)

    def apply(x: torch.Tensor, y: int, position: int) -> torch.Tensor:
        if position >= n:
            raise IndexError(f"tint drew {n} samples (num_examples) but sample {position} was asked for")
        t = y if own[position] else int(random_class[position])
        return x * (1 - alpha) + colours_t[t].view(3, 1, 1) * alpha
    return apply


@shift("vflip", keys={"kind"})
def _vflip(options: dict, labels: np.ndarray, length: int):
    return lambda x, y, position: torch.flip(x, dims=[-2])


class ShiftedImages(Dataset):
    """``dataset`` (items ``(normalised image, label, index)``) with a shift applied in pixel space."""

    def __init__(self, dataset, options: dict, mean, std):
        from tasks.data.label_noise import labels_of

        kind = options.get("kind")
        make = SHIFTS.get(kind)
        unknown = set(options) - SHIFTS.info[kind]["keys"]
        if unknown:
            raise ValueError(f"shift {kind} does not take {', '.join(sorted(unknown))}")
        self.dataset = dataset
        self.mean = torch.tensor(list(mean), dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32).view(-1, 1, 1)
        labels = labels_of(dataset)
        self.labels = labels
        self.apply = make(options, labels, len(dataset))
        self.record = dict(options)
        if kind == "tint":
            k = int(options.get("num_classes") or int(labels.max()) + 1)
            self.record["colours"] = np.round(tint_draws(k, 1, 0.0, int(options["seed"]))[0], 6).tolist()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        x, y, index = self.dataset[i]
        pixels = x * self.std + self.mean
        return (self.apply(pixels, int(y), i) - self.mean) / self.std, y, index


def shifted(dataset, shifts, mean, std) -> Dataset:
    """``dataset`` with one shift (a dict) or several (a list, applied in order); its ``record`` is
    the shift's record, or the list of them."""
    steps = [shifts] if isinstance(shifts, dict) else list(shifts)
    if not steps or not all(isinstance(s, dict) for s in steps):
        raise ValueError(f"shift must be a mapping or a list of them, got {shifts!r}")
    for step in steps:
        dataset = ShiftedImages(dataset, dict(step), mean, std)
    if len(steps) > 1:
        records, inner = [], dataset
        while isinstance(inner, ShiftedImages):
            records.insert(0, inner.record)
            inner = inner.dataset
        dataset.record = records
    return dataset
