"""Uncertainty measures of an ensemble and of a Dirichlet model, per sample.

Notation (docs/methods.md, section 2): M members, B samples, K classes;
``probs`` [M, B, K] member probabilities pi_m, pi_bar = mean_m pi_m,
H[p] = -sum_k p_k log p_k; ``alpha`` [B, K] Dirichlet concentrations,
alpha0 = sum_k alpha_k, p = alpha / alpha0; psi = digamma.

Each function returns {measure: tensor [B]}, so they run batch by batch.
:data:`MEASURES` says which way each one points: every measure except
``confidence`` grows with uncertainty.
"""
from __future__ import annotations

from typing import Dict

import torch

EPS = 1e-12
# measure -> higher means more uncertain
MEASURES = {"confidence": False, "total_uncertainty": True, "data_uncertainty": True,
            "knowledge_uncertainty": True, "epkl": True}


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(EPS))).sum(-1)


def _check_probs(probs: torch.Tensor) -> torch.Tensor:
    if not isinstance(probs, torch.Tensor) or probs.dim() != 3 or probs.shape[-1] < 2:
        raise ValueError("expected member probabilities as a tensor [members, samples, classes]")
    return probs.double()


def ensemble_uncertainty(probs: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Ensemble measures from member probabilities [M, B, K]:

    - confidence = max_k pi_bar_k
    - total = H[pi_bar];  data = mean_m H[pi_m];  knowledge = total - data (mutual information)
    - epkl = mean over ordered pairs i != j of KL(pi_i || pi_j)   (0 for a single member)
    """
    p = _check_probs(probs)
    m = p.shape[0]
    mean = p.mean(0)
    total, data = _entropy(mean), _entropy(p).mean(0)
    if m > 1:
        logp = torch.log(p.clamp_min(EPS))                                   # [M, B, K]
        # sum_{i,j} KL(pi_i||pi_j) = sum_i sum_j sum_k pi_i (log pi_i - log pi_j)
        cross = torch.einsum("ibk,jbk->b", p, logp)                           # sum_{i,j} sum_k pi_i log pi_j
        self_ = (p * logp).sum(-1).sum(0)                                     # sum_i sum_k pi_i log pi_i
        epkl = (m * self_ - cross) / (m * (m - 1))
    else:
        epkl = torch.zeros_like(total)
    return {"confidence": mean.max(-1).values, "total_uncertainty": total, "data_uncertainty": data,
            "knowledge_uncertainty": total - data, "epkl": epkl.clamp_min(0)}


def dirichlet_uncertainty(alpha: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Measures of Dir(alpha) [B, K] (a distilled Dirichlet student):

    - confidence = max_k p_k, p = alpha / alpha0
    - total = H[p]
    - data (expected entropy) = -sum_k p_k (psi(alpha_k + 1) - psi(alpha0 + 1))
    - knowledge = total - data (mutual information)
    - epkl = (K - 1) / alpha0
    """
    if not isinstance(alpha, torch.Tensor) or alpha.dim() != 2 or alpha.shape[-1] < 2:
        raise ValueError("expected concentrations as a tensor [samples, classes]")
    a = alpha.double()
    if not torch.isfinite(a).all() or (a <= 0).any():
        raise ValueError("Dirichlet concentrations must be finite and positive")
    a0 = a.sum(-1, keepdim=True)
    p = a / a0
    total = _entropy(p)
    data = -(p * (torch.digamma(a + 1) - torch.digamma(a0 + 1))).sum(-1)
    return {"confidence": p.max(-1).values, "total_uncertainty": total, "data_uncertainty": data,
            "knowledge_uncertainty": total - data, "epkl": (a.shape[-1] - 1) / a0.squeeze(-1)}


def proxy_dirichlet(probs: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """The proxy Dirichlet of an ensemble [M, B, K] -> alpha [B, K]:

        MKL = mean_m KL(pi_bar || pi_m),  beta0 = (K - 1) / (2 MKL + eps),  alpha = pi_bar * beta0
    """
    p = _check_probs(probs)
    mean = p.mean(0)
    mkl = (mean.unsqueeze(0) * (torch.log(mean.clamp_min(EPS)).unsqueeze(0)
                                 - torch.log(p.clamp_min(EPS)))).sum(-1).mean(0)
    beta0 = (p.shape[-1] - 1) / (2 * mkl.clamp_min(0) + eps)
    return (mean * beta0.unsqueeze(-1)).clamp_min(EPS)
