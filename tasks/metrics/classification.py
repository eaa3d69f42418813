"""Classification and calibration metrics: pure functions over arrays.

Notation: N samples, K classes; ``probs`` [N, K] predicted probabilities,
``labels`` [N] integer classes, ``correct`` [N] booleans (prediction == label),
``uncertainty`` [N] (higher = less sure). Every function validates its inputs
and returns a float.
"""
from __future__ import annotations

import numpy as np


def _probs_labels(probs, labels):
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels)
    if p.ndim != 2 or y.ndim != 1 or len(p) != len(y) or len(y) == 0:
        raise ValueError(f"expected probs [N, K] and labels [N], got {p.shape} and {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"labels must be integers in [0, {p.shape[1]})")
    if not np.isfinite(p).all() or p.min() < 0 or np.abs(p.sum(1) - 1).max() > 1e-3:
        raise ValueError("probs must be finite, non-negative rows that sum to 1")
    return p, y


def sample_scores(log_probs, labels, k: int = 5) -> dict:
    """Each sample's scores, from predictions given as log-probabilities ``log_probs`` [N, K] (a torch
    tensor on any device: an evaluation scores batch by batch where the model runs) and ``labels``
    [N] (classes; a negative label, an unlabelled sample, is scored as class 0 and is for the caller
    to leave out). With p_i = exp(log_probs_i):

    - ``correct``: 1[argmax_k p_ik = y_i]; ``topk``: 1[y_i among the k most probable] (k <= K);
    - ``confidence``: max_k p_ik;
    - ``nll``: -log p_i[y_i], from the log-probability itself (exact however small p_i[y_i] is);
    - ``brier``: sum_k (p_ik - 1[k = y_i])^2.

    Their means are :func:`top_k_accuracy`, :func:`nll` and :func:`brier`."""
    import torch

    if log_probs.dim() != 2 or labels.dim() != 1 or len(log_probs) != len(labels):
        raise ValueError(f"expected log_probs [N, K] and labels [N], got {tuple(log_probs.shape)} and "
                         f"{tuple(labels.shape)}")
    y = labels.clamp_min(0).unsqueeze(-1)
    p = log_probs.exp()
    confidence, predicted = p.max(-1)
    top = p.topk(min(k, p.shape[-1]), -1).indices
    onehot = torch.zeros_like(p).scatter_(-1, y, 1.0)
    return {"correct": predicted == labels, "topk": (top == y).any(-1), "confidence": confidence,
            "nll": -log_probs.gather(-1, y).squeeze(-1), "brier": ((p - onehot) ** 2).sum(-1)}


def top_k_accuracy(probs, labels, k: int = 1) -> float:
    """Fraction of samples whose label is among the k most probable classes:
    acc@k = mean_i 1[y_i in top-k(p_i)]."""
    p, y = _probs_labels(probs, labels)
    if not 1 <= k <= p.shape[1]:
        raise ValueError(f"k must be in [1, {p.shape[1]}], got {k}")
    top = np.argpartition(-p, k - 1, axis=1)[:, :k]
    return float((top == y[:, None]).any(1).mean())


def nll(probs, labels, eps: float = 0.0) -> float:
    """Negative log-likelihood: NLL = -mean_i log max(p_i[y_i], eps). No clamp by default: a label
    given probability 0 makes it infinite (for tiny probabilities, compute log p directly)."""
    p, y = _probs_labels(probs, labels)
    with np.errstate(divide="ignore"):
        return float(-np.log(np.maximum(p[np.arange(len(y)), y], eps)).mean())


def brier(probs, labels) -> float:
    """Brier score: mean_i sum_k (p_ik - 1[k = y_i])^2, in [0, 2]."""
    p, y = _probs_labels(probs, labels)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(((p - onehot) ** 2).sum(1).mean())


CONFIDENCE_ONE = ("last_bin", "own_bin")


def calibration_errors(confidence, correct, bins: int = 10, confidence_one: str = "last_bin") -> tuple[float, float]:
    """Expected and maximum calibration error over ``bins`` equal-width confidence bins B_b of [0, 1]:

        ECE = sum_b |B_b| / N * |acc(B_b) - conf(B_b)|,   MCE = max_b |acc(B_b) - conf(B_b)|

    over non-empty bins; acc / conf are the bin's mean correctness / confidence. Bin b holds
    the confidences in [b / bins, (b + 1) / bins). A confidence of exactly 1 (a saturated
    softmax) falls in the last bin with ``confidence_one="last_bin"`` (the last bin is
    closed, [1 - 1 / bins, 1]); ``"own_bin"`` gives the ones a bin of their own, as the
    distillation authors' ``np.digitize(probs, np.linspace(0, 1, bins + 1))`` does (ECE is
    the same sum either way up to how those samples are grouped; MCE can differ).
    """
    c = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    if c.ndim != 1 or c.shape != ok.shape or len(c) == 0:
        raise ValueError("confidence and correct must be 1-d arrays of one length")
    if not np.isfinite(c).all() or c.min() < 0 or c.max() > 1:
        raise ValueError("confidence must be in [0, 1]")
    if int(bins) < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if confidence_one not in CONFIDENCE_ONE:
        raise ValueError(f"confidence_one must be one of {CONFIDENCE_ONE}, got {confidence_one!r}")
    top = bins - 1 if confidence_one == "last_bin" else bins
    idx = np.minimum((c * bins).astype(int), top)
    count = np.bincount(idx, minlength=top + 1)
    gap = np.abs(np.bincount(idx, ok, top + 1) - np.bincount(idx, c, top + 1))      # per bin: |sum acc - sum conf|
    filled = count > 0
    ece = gap[filled].sum() / len(c)
    mce = (gap[filled] / count[filled]).max()
    return float(ece), float(mce)


def _error_curve_area(order, errors) -> float:
    """Area under the error rate after rejecting the first k samples of ``order`` (k = 0..N),
    x = k / N, trapezoids; rejected samples count as correct (handed to an oracle)."""
    n = len(errors)
    removed = np.concatenate([[0.0], np.cumsum(errors[order])])
    remaining = (errors.sum() - removed) / n
    return float(np.trapezoid(remaining, dx=1.0 / n) if hasattr(np, "trapezoid") else np.trapz(remaining, dx=1.0 / n))


def prediction_rejection_ratio(uncertainty, correct) -> float:
    """Prediction rejection ratio (Malinin et al.): how much of the oracle's gain over random
    rejection the uncertainty achieves, rejecting the most uncertain predictions first:

        PRR = (AUC_random - AUC_uncertainty) / (AUC_random - AUC_oracle)

    AUC_* is the area under the error rate (errors left / N) against the fraction rejected;
    the oracle rejects the errors first, random rejection removes errors in proportion.
    1 for an oracle-like uncertainty, ~0 for a random one, negative when worse than random.
    Ties in ``uncertainty`` are rejected together (the mean of their orders).

    Undefined (NaN, never an error) when the oracle does no better than random: every
    prediction right, or every one wrong (a single sample is one of the two);
    :func:`prediction_rejection_undefined` says which.
    """
    u = np.asarray(uncertainty, dtype=np.float64)
    err = 1.0 - np.asarray(correct, dtype=np.float64)
    if u.ndim != 1 or u.shape != err.shape or len(u) == 0:
        raise ValueError("uncertainty and correct must be 1-d arrays of one length")
    if not np.isfinite(u).all():
        raise ValueError("uncertainty must be finite")
    if prediction_rejection_undefined(correct):
        return float("nan")
    n = len(u)
    order = np.argsort(-u, kind="stable")
    # ties: spread each tie group's errors evenly over its positions (order within a tie is arbitrary)
    su = u[order]
    e = err[order].copy()
    starts = np.flatnonzero(np.r_[True, su[1:] != su[:-1]])
    ends = np.r_[starts[1:], n]
    for a, b in zip(starts, ends):
        if b - a > 1:
            e[a:b] = e[a:b].mean()
    auc_unc = _error_curve_area(np.arange(n), e)
    auc_orc = _error_curve_area(np.argsort(-err, kind="stable"), err)
    auc_rnd = float(err.sum() / n / 2)              # the error rate falls linearly to 0
    return float((auc_rnd - auc_unc) / (auc_rnd - auc_orc))


def prediction_rejection_undefined(correct) -> str | None:
    """Why the prediction rejection ratio of these predictions is undefined, or None if it is not."""
    ok = np.asarray(correct, dtype=bool)
    if ok.size == 0:
        return "no samples"
    if ok.all():
        return "every prediction is right: there is nothing to reject"
    if not ok.any():
        return "every prediction is wrong: no order of rejection does better than random"
    return None
