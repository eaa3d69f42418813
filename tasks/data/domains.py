"""Reference-versus-shifted examples as one labelled set: the data of a domain classifier (seed 002).

    {dataset: domains, reference: <set spec>, shifted: <set spec>, max_reference: 100000,
     reference_classes: all, seed: 0, folds: 10, fold: 3, part: train}

The union lists the reference examples first, then every shifted example, with label 0
(reference) or 1 (shifted); items are ``(image, domain, position in the union)``. Built the way
the seed's authors build it (``splitting_shifts/imagenet.py``, ``density_ratio_estimation.py``):

- ``max_reference``: the reference examples are ``RandomState(seed).choice(candidates, size,
  replace=False)`` in the order drawn (the authors: 100,000 ImageNet training images), else all
  of them in order. ``reference_classes: shifted`` makes the candidates the reference examples
  whose class the shifted set has (its class subset: ImageNet-R's 200 classes), as theirs for R;
- the folds: ``KFold(folds, shuffle=True, random_state=seed)`` over positions in the union;
  ``fold: k, part: train`` is every other fold, ``part: held_out`` is fold k. ``fold: tune`` is
  the authors' learning-rate split: ``train_test_split(train_size=(folds - 1) / folds,
  random_state=seed)``, ``train`` and ``held_out`` its two parts. ``part: all`` (the default)
  is the whole union.

So every training row of a fold and the split that reads its scores see the same examples in
the same places (tasks/robustness/split_shift.py checks the keys agree).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
from torch.utils.data import Dataset

# the keys that fix the union and its folds (a fold's model and the split that reads it must agree on them)
UNION_KEYS = ("reference", "shifted", "max_reference", "reference_classes", "seed", "folds")
PARTS = ("all", "train", "held_out")


def union_of(spec: dict) -> dict:
    """The keys of ``spec`` that fix its union and folds (:data:`UNION_KEYS`), defaults filled in."""
    return {"reference": spec["reference"], "shifted": spec["shifted"], "max_reference": spec.get("max_reference"),
            "reference_classes": spec.get("reference_classes", "all"), "seed": int(spec.get("seed", 0)),
            "folds": int(spec.get("folds", 10))}


def reference_draw(labels: np.ndarray, limit, seed: int, classes=None) -> np.ndarray:
    """The reference examples used, as indices into the reference set, in the order drawn."""
    candidates = np.arange(len(labels))
    if classes is not None:
        candidates = candidates[np.isin(labels, np.asarray(list(classes)))]
    if limit is None or int(limit) >= len(candidates):
        return candidates
    return np.random.RandomState(int(seed)).choice(candidates, size=int(limit), replace=False)


def fold_parts(n: int, folds: int, fold, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """(train positions, held-out positions) of ``fold`` (an index, or ``tune``) over ``n`` examples."""
    from sklearn.model_selection import KFold, train_test_split

    if not 2 <= int(folds) <= n:
        raise ValueError(f"domains: folds must be between 2 and the number of examples ({n}), got {folds}")
    if fold == "tune":
        train, held = train_test_split(np.arange(n), train_size=(int(folds) - 1) / int(folds), random_state=int(seed))
        return np.asarray(train), np.asarray(held)
    if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or not 0 <= int(fold) < int(folds):
        raise ValueError(f"domains: fold must be 0 ... {int(folds) - 1} or tune, got {fold!r}")
    for k, (train, held) in enumerate(KFold(int(folds), shuffle=True, random_state=int(seed)).split(np.arange(n))):
        if k == int(fold):
            return train, held
    raise AssertionError("unreachable")


@dataclass
class DomainUnion(Dataset):
    """Reference examples ``reference_index`` of ``reference``, then all of ``shifted``."""
    reference: Dataset
    shifted: Dataset
    reference_index: np.ndarray

    @property
    def is_shifted(self) -> np.ndarray:
        return np.concatenate([np.zeros(len(self.reference_index), bool), np.ones(len(self.shifted), bool)])

    @property
    def labels(self) -> np.ndarray:                # what label_noise.labels_of reads
        return self.is_shifted.astype(np.int64)

    def __len__(self) -> int:
        return len(self.reference_index) + len(self.shifted)

    def __getitem__(self, i: int):
        n_ref = len(self.reference_index)
        if i < n_ref:
            return self.reference[int(self.reference_index[i])][0], 0, i
        return self.shifted[i - n_ref][0], 1, i


def build_union(spec: dict, build) -> DomainUnion:
    """The union of a ``domains`` spec; ``build(set_spec)`` -> (dataset, class subset)."""
    from tasks.data.label_noise import labels_of

    spec = union_of(spec)
    reference, _ = build(spec["reference"])
    shifted, subset = build(spec["shifted"])
    which = spec["reference_classes"]
    if which not in ("all", "shifted"):
        raise ValueError(f"domains: reference_classes must be all or shifted, got {which!r}")
    classes = None
    if which == "shifted":
        classes = subset if subset is not None else np.unique(labels_of(shifted))
    labels = labels_of(reference) if classes is not None else np.zeros(len(reference), np.int64)
    index = reference_draw(labels, spec["max_reference"], spec["seed"], classes)
    if len(index) == 0 or len(shifted) == 0:
        raise ValueError(f"domains: {len(index)} reference and {len(shifted)} shifted examples; both must be some")
    return DomainUnion(reference, shifted, index)


def domains_set(spec: dict, build):
    """The part of the union a ``domains`` spec names (a torch Subset, or the union itself)."""
    from torch.utils.data import Subset

    part = spec.get("part", "all")
    if part not in PARTS:
        raise ValueError(f"domains: part must be one of {PARTS}, got {part!r}")
    union = build_union(spec, build)
    if part == "all":
        return union
    if spec.get("fold") is None:
        raise ValueError(f"domains: part {part} needs a fold (0 ... folds - 1, or tune)")
    keys = union_of(spec)
    train, held = fold_parts(len(union), keys["folds"], spec["fold"], keys["seed"])
    return Subset(union, (train if part == "train" else held).tolist())
