"""Ensemble scores for OOD detection, and AUROC.

Notation: M members, B samples, K classes; ``logits`` is a tensor [M, B, K]
(member m's logits z_m); pi_m = softmax(z_m); pi_bar = mean_m pi_m;
H[p] = -sum_k p_k log p_k. Every score is a per-sample tensor [B], so they
can be computed batch by batch and only B scalars per score are kept. Every score
is computed in float64, whatever the logits' type: the mutual information of
near-identical members is a difference of two nearly equal entropies, which
float32 turns into noise (and negative values).
Orientation: higher means "more OOD", except the confidences and the max
logits (higher = more in-distribution); :data:`SCORES` records it.
"""
from __future__ import annotations

from typing import Callable, Dict, Tuple

import numpy as np
import torch


def _check(logits: torch.Tensor) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3:
        raise ValueError("expected logits as a tensor [members, samples, classes]")
    if logits.shape[0] < 1 or logits.shape[2] < 2:
        raise ValueError(f"need at least 1 member and 2 classes, got shape {tuple(logits.shape)}")
    return logits.double()


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-12))).sum(-1)


def pds(logits: torch.Tensor) -> torch.Tensor:
    """Predictive diversity score: PDS = sum_c max_m pi_m(c), in [1, M]; 1 when all members agree."""
    return _check(logits).softmax(-1).max(0).values.sum(-1)


def distinct_predictions(logits: torch.Tensor) -> torch.Tensor:
    """Number of distinct argmax_c z_m(c) over the members m, in [1, min(M, K)]."""
    preds = _check(logits).argmax(-1)                                   # [M, B]
    k = logits.shape[-1]
    seen = torch.zeros(preds.shape[1], k, dtype=torch.bool, device=preds.device)
    seen.scatter_(1, preds.t(), True)
    return seen.sum(1).float()


def ensemble_confidence(logits: torch.Tensor) -> torch.Tensor:
    """max_c softmax(mean_m z_m)(c) — confidence of the mean-logits prediction (higher = in-distribution)."""
    return _check(logits).mean(0).softmax(-1).max(-1).values


def ensemble_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Total uncertainty H[pi_bar], pi_bar = mean_m softmax(z_m)."""
    return _entropy(_check(logits).softmax(-1).mean(0))


def average_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Data uncertainty mean_m H[pi_m]."""
    return _entropy(_check(logits).softmax(-1)).mean(0)


def mutual_information(logits: torch.Tensor) -> torch.Tensor:
    """Knowledge uncertainty H[pi_bar] - mean_m H[pi_m] (>= 0)."""
    p = _check(logits).softmax(-1)
    return _entropy(p.mean(0)) - _entropy(p).mean(0)


def energy(logits: torch.Tensor) -> torch.Tensor:
    """Energy score -mean_m logsumexp_c z_m(c)."""
    return -torch.logsumexp(_check(logits), -1).mean(0)


def max_logit(logits: torch.Tensor) -> torch.Tensor:
    """mean_m max_c z_m(c): each member's own largest logit, averaged (higher = in-distribution).

    The SED authors' ``average_max_logit``."""
    return _check(logits).max(-1).values.mean(0)


def max_mean_logit(logits: torch.Tensor) -> torch.Tensor:
    """max_c mean_m z_m(c), the largest logit of the mean logits (higher = in-distribution)."""
    return _check(logits).mean(0).max(-1).values


def mean_member_confidence(logits: torch.Tensor) -> torch.Tensor:
    """mean_m max_c pi_m(c): the members' own confidences, averaged (higher = in-distribution)."""
    return _check(logits).softmax(-1).max(-1).values.mean(0)


def a2d_score(logits: torch.Tensor) -> torch.Tensor:
    """The SED authors' A2D disagreement score (higher = more disagreement = more OOD):

        a2d = mean_a mean_{j != a} log( p1_j (1 - p2_aj) + p2_aj (1 - p1_j) + 1e-9 ),
        p1_j = max_c pi_j(c),  c_j = argmax_c pi_j(c),  p2_aj = pi_a(c_j)

    i.e. minus the A2D training loss, with every member taking its turn as the
    anchor a. 0 for a single member (nothing to disagree with)."""
    p = _check(logits).softmax(-1)                                       # [M, B, K]
    m, b, _ = p.shape
    if m < 2:
        return p.new_zeros(b)
    p1, c = p.max(-1)                                                    # [M, B]
    # p2[a, j, i] = pi_a(c_j(i))
    p2 = torch.gather(p.unsqueeze(1).expand(m, m, b, p.shape[-1]), -1,
                      c.unsqueeze(0).expand(m, m, b).unsqueeze(-1)).squeeze(-1)
    term = torch.log(p1.unsqueeze(0) * (1 - p2) + p2 * (1 - p1.unsqueeze(0)) + 1e-9)
    off = ~torch.eye(m, dtype=torch.bool, device=p.device)
    return (term * off.unsqueeze(-1)).sum(1).div(m - 1).mean(0)


# name -> (function, higher_means_ood)
SCORES: Dict[str, Tuple[Callable[[torch.Tensor], torch.Tensor], bool]] = {
    "pds": (pds, True),
    "distinct_predictions": (distinct_predictions, True),
    "ensemble_confidence": (ensemble_confidence, False),
    "ensemble_entropy": (ensemble_entropy, True),
    "average_entropy": (average_entropy, True),
    "mutual_information": (mutual_information, True),
    "energy": (energy, True),
    "max_logit": (max_logit, False),
    "max_mean_logit": (max_mean_logit, False),
    "mean_member_confidence": (mean_member_confidence, False),
    "a2d_score": (a2d_score, True),
}


def all_scores(logits: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Every score of :data:`SCORES` for one batch of logits [M, B, K]."""
    return {name: fn(logits) for name, (fn, _) in SCORES.items()}


def auroc(scores_in, scores_out) -> float:
    """Area under the ROC curve for separating OOD (positives) from in-distribution samples,
    with higher scores meaning OOD:

        AUROC = P(s_out > s_in) + 0.5 P(s_out = s_in)

    computed from ranks (Mann-Whitney U with midranks for ties), O(n log n).
    """
    a = np.asarray(scores_in, dtype=np.float64).ravel()
    b = np.asarray(scores_out, dtype=np.float64).ravel()
    if len(a) == 0 or len(b) == 0:
        raise ValueError("auroc needs at least one in-distribution and one OOD score")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("auroc: scores must be finite")
    both = np.concatenate([a, b])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(len(both), dtype=np.float64)
    sorted_vals = both[order]
    # midranks for ties: positions where values change delimit the tie groups
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    ends = np.r_[starts[1:], len(both)]
    mid = (starts + ends + 1) / 2.0                      # 1-based average rank of each group
    ranks[order] = np.repeat(mid, ends - starts)
    u = ranks[len(a):].sum() - len(b) * (len(b) + 1) / 2.0
    return float(u / (len(a) * len(b)))
