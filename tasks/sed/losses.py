"""SED's training loss (docs/methods.md, section 1), on stacked logits [m, B, K].

    L = (1 - lam) * mean_{m in A} CE(z_m, y_smooth) + lam_manual * lam * D

where A is the set of active members, y_smooth = y (1 - eps) + eps / K, and D
the diversity term on the diversity batch:

- ``a2d``: mean_i [ w_i * l_i ], with l_i the A2D disagreement of
  :func:`a2d_disagreement` against a random anchor member;
- ``divdis``: the mean pairwise mutual information between members'
  predictions over the batch (:func:`divdis_mutual_information`), the w_i
  weighting the samples;
- ``none``: 0.

w_i = CE_i(z_bar) / (mean_batch CE(z_bar))^2 without gradient ("budget"
weighting; z_bar = mean of the active members' logits), or 1 when off.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

DIVERSITY = ("none", "a2d", "divdis")


def ensemble_ce(logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """mean_m CE(z_m, y_smooth) over stacked logits [m, B, K]."""
    m, b, k = logits.shape
    return F.cross_entropy(logits.reshape(m * b, k), y.repeat(m), label_smoothing=label_smoothing)


def a2d_disagreement(probs: torch.Tensor, anchor: int) -> torch.Tensor:
    """Per-sample A2D term [B] for member probabilities [m, B, K] (m >= 2).

    For each member j != anchor a: p1 = max_c pi_j(c), c_hat = argmax_c pi_j(c),
    p2 = pi_a(c_hat); l = -log(p1 (1 - p2) + p2 (1 - p1) + 1e-9), averaged over j.
    """
    m = probs.shape[0]
    if m < 2:
        raise ValueError("A2D needs at least two active members")
    others = torch.tensor([j for j in range(m) if j != anchor], device=probs.device)
    pj = probs.index_select(0, others)                          # [m-1, B, K]
    p1, c_hat = pj.max(-1)                                      # [m-1, B]
    p2 = probs[anchor].unsqueeze(0).expand_as(pj).gather(-1, c_hat.unsqueeze(-1)).squeeze(-1)
    return -torch.log(p1 * (1 - p2) + p2 * (1 - p1) + 1e-9).mean(0)


def divdis_mutual_information(probs: torch.Tensor, weights: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean over member pairs (i < j) of the mutual information of their predictions over
    the batch: joint = sum_b w_b pi_i(b) pi_j(b)^T / sum_b w_b, MI = KL(joint || marg_i marg_j)."""
    m, b, _ = probs.shape
    if m < 2:
        raise ValueError("DivDis needs at least two active members")
    w = torch.ones(b, device=probs.device) if weights is None else weights
    w = w / w.sum()
    total, pairs = probs.new_zeros(()), 0
    for i in range(m):
        for j in range(i + 1, m):
            joint = torch.einsum("b,bk,bl->kl", w, probs[i], probs[j])
            indep = joint.sum(1, keepdim=True) * joint.sum(0, keepdim=True)
            total = total + (joint * (torch.log(joint + 1e-12) - torch.log(indep + 1e-12))).sum()
            pairs += 1
    return total / pairs


def budget_weights(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """w_i = CE_i(z_bar) / (mean_batch CE(z_bar))^2 (no gradient); z_bar = mean member logits."""
    with torch.no_grad():
        ce = F.cross_entropy(logits.mean(0), y, reduction="none")
        return ce / ce.mean().clamp_min(1e-12) ** 2


def sed_loss(logits: torch.Tensor, y: torch.Tensor, div_logits: Optional[torch.Tensor],
             div_y: Optional[torch.Tensor], *, lam: float, lam_manual: float, diversity: str = "a2d",
             budget: bool = False, label_smoothing: float = 0.0,
             anchor: int = 0) -> Tuple[torch.Tensor, Dict[str, float]]:
    """The loss above and its parts (``ce``, ``div``) for reporting.

    ``logits`` [m, B, K] on the labelled batch; ``div_logits`` [m, B', K] on the
    diversity batch (None: use the labelled batch); ``div_y`` its labels (needed for
    budget weighting).
    """
    if diversity is None:              # a sheet cell "none" / "None" decodes to null
        diversity = "none"
    if diversity not in DIVERSITY:
        raise ValueError(f"diversity must be one of {DIVERSITY}, got {diversity!r}")
    ce = ensemble_ce(logits, y, label_smoothing)
    if div_logits is None:
        div_logits, div_y = logits, y
    div = logits.new_zeros(())
    if diversity != "none" and logits.shape[0] >= 2:
        w = None
        if budget:
            if div_y is None or (div_y < 0).any():
                raise ValueError("budget weighting needs a labelled diversity set")
            w = budget_weights(div_logits, div_y)
        probs = div_logits.softmax(-1)
        if diversity == "a2d":
            per_sample = a2d_disagreement(probs, anchor)
            div = (per_sample if w is None else w * per_sample).mean()
        else:
            div = divdis_mutual_information(probs, w)
    loss = (1 - lam) * ce + lam_manual * lam * div
    return loss, {"ce": float(ce.detach()), "div": float(div.detach())}
