"""Splitting a shift into the part the reference distribution covers and the part it does not (seed 002).

    folds = cross_fit(features, is_shifted, train_and_score, folds=10, seed=0)
    alpha = calibrate(folds.logits, is_shifted)
    r = density_ratios(folds.logits, alpha, n_ref, n_shift)
    out = out_of_support(r[is_shifted], [0.01, 0.1])       # {eps: mask over the shifted examples}

A domain classifier learns to tell shifted examples (label 1) from reference ones (label 0).
Every example is scored by a classifier that never saw it (k-fold cross-fitting: fold k is
scored by the model trained on the other folds; :class:`CrossFit` keeps which model scored what
and what each trained on). The out-of-fold logits l are calibrated by one temperature, alpha
minimising the binary cross-entropy of sigmoid(alpha l) (the authors': SGD with rate 1 for 1000
steps from alpha = 1). With p = sigmoid(alpha l), the density ratio of the shifted to the
reference distribution at an example is

    r = p / (1 - p) * n_ref / n_shift

(the classifier's odds, corrected for the two sets' sizes). A shifted example is out of the
reference's support at level eps when r >= 1 / eps: the reference is at least 1/eps times less
likely to produce it than the shift. Larger eps puts more of the shift out of support; the rest
is its in-support part.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Sequence

import numpy as np


@dataclass
class CrossFit:
    logits: np.ndarray                       # [n] out-of-fold logit of "shifted" for every example
    fold_of: np.ndarray                      # [n] the fold that scored each example
    trained_on: List[np.ndarray] = field(default_factory=list)   # per fold: the examples its model saw


def cross_fit(inputs, is_shifted: np.ndarray, train_and_score: Callable, folds: int = 10, seed: int = 0,
              groups: np.ndarray | None = None) -> CrossFit:
    """Out-of-fold domain logits. ``train_and_score(train_inputs, train_labels, score_inputs)`` trains
    a fresh classifier and returns the logits of ``score_inputs``. Folds are shuffled with ``seed``
    (sklearn's KFold, as the authors); with ``groups``, examples of a group stay in one fold."""
    from sklearn.model_selection import GroupKFold, KFold

    is_shifted = np.asarray(is_shifted, dtype=bool)
    n = len(is_shifted)
    if folds < 2 or folds > n:
        raise ValueError(f"cross-fitting needs 2 <= folds <= examples ({n}), got {folds}")
    if is_shifted.all() or not is_shifted.any():
        raise ValueError("cross-fitting needs both reference and shifted examples")
    splitter = GroupKFold(n_splits=folds) if groups is not None else KFold(n_splits=folds, shuffle=True,
                                                                             random_state=seed)
    out = CrossFit(np.full(n, np.nan), np.full(n, -1, dtype=np.int64))
    for k, (train, score) in enumerate(splitter.split(np.arange(n), groups=groups)):
        labels = is_shifted[train].astype(np.int64)
        out.logits[score] = np.asarray(train_and_score(_take(inputs, train), labels, _take(inputs, score)),
                                       dtype=np.float64).reshape(-1)
        out.fold_of[score] = k
        out.trained_on.append(np.asarray(train))
    return out


def _take(inputs, index):
    return inputs[index] if hasattr(inputs, "__getitem__") and not isinstance(inputs, list) else [inputs[i] for i in index]


def calibrate(logits: np.ndarray, is_shifted: np.ndarray, lr: float = 1.0, steps: int = 1000) -> float:
    """The temperature alpha minimising mean BCE(sigmoid(alpha l), label), by the authors' SGD."""
    import torch

    x = torch.tensor(np.asarray(logits, dtype=np.float64))
    y = torch.tensor(np.asarray(is_shifted, dtype=np.float64))
    alpha = torch.nn.Parameter(torch.tensor(1.0, dtype=torch.float64))
    opt = torch.optim.SGD([alpha], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(x * alpha, y).backward()
        opt.step()
    return float(alpha.detach())


def density_ratios(logits: np.ndarray, alpha: float, n_ref: int, n_shift: int) -> np.ndarray:
    """r = p / (1 - p) * n_ref / n_shift with p = sigmoid(alpha l), i.e. exp(alpha l) * n_ref / n_shift."""
    return np.exp(alpha * np.asarray(logits, dtype=np.float64)) * (n_ref / n_shift)


def out_of_support(ratios: np.ndarray, epsilons: Sequence[float]) -> Dict[float, np.ndarray]:
    """{eps: mask, True where r >= 1 / eps} over the shifted examples' density ratios."""
    if any(not 0 < e <= 1 for e in epsilons):
        raise ValueError(f"epsilons must be in (0, 1], got {list(epsilons)}")
    ratios = np.asarray(ratios, dtype=np.float64)
    return {float(e): ratios >= 1.0 / e for e in epsilons}


def logistic_domain_classifier(c: float = 1.0, seed: int = 0) -> Callable:
    """``train_and_score`` for :func:`cross_fit`: scikit-learn's logistic regression on flattened,
    standardised inputs (the digits' domain classifier; at full scale a fine-tuned network)."""
    def train_and_score(train_x, train_y, score_x):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed))
        model.fit(np.asarray(train_x).reshape(len(train_y), -1), train_y)
        return model.decision_function(np.asarray(score_x).reshape(len(score_x), -1))
    return train_and_score
