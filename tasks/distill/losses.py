"""Ensemble distribution distillation losses (docs/methods.md, section 2), on a batch.

``student_logits`` z [B, K]; ``teacher_probs`` pi [M, B, K] (the members' softmax on the same,
augmented, inputs). Dirichlet terms are computed in float64, with the student's concentrations
clipped to [``MIN_ALPHA``, ``MAX_ALPHA``]; every loss checks that it is finite.

- forward_kl:  mean_b sum_k pi_bar_k (log pi_bar_k - log softmax(z)_k)
- proxy:       KL(Dir(beta) || Dir(alpha)),  alpha = exp(z) + model_offset,
               beta_k = pi_bar_k beta0 + target_offset,  beta0 = (K - 1) / (2 MKL + eps),
               MKL = mean_m KL(pi_bar || pi_m);
               KL = lnG(beta0') - sum lnG(beta_k) + sum lnG(alpha_k) - lnG(alpha0)
                    + sum_k (beta_k - alpha_k)(psi(beta_k) - psi(beta0'))
- dirichlet_likelihood (EnD^2):  -mean_m log Dir(pi_m | alpha)
               = sum_k lnG(alpha_k) - lnG(alpha0) - sum_k (alpha_k - 1) mean_m log pi_m
"""
from __future__ import annotations

from typing import Callable, Dict

import torch

EPS = 1e-8
MIN_ALPHA, MAX_ALPHA = 1e-6, 1e6
LOSSES: Dict[str, Callable[..., torch.Tensor]] = {}


def loss(name: str):
    def wrap(fn):
        LOSSES[name] = fn
        return fn
    return wrap


def _finite(value: torch.Tensor, name: str) -> torch.Tensor:
    if not torch.isfinite(value).all():
        raise FloatingPointError(f"the {name} distillation loss is not finite ({value})")
    return value


def concentrations(student_logits: torch.Tensor, model_offset: float) -> torch.Tensor:
    """alpha = exp(z) + model_offset, in float64, clipped to [MIN_ALPHA, MAX_ALPHA]."""
    z = student_logits.double().clamp(max=float(torch.log(torch.tensor(MAX_ALPHA))))
    return (z.exp() + model_offset).clamp(MIN_ALPHA, MAX_ALPHA)


def proxy_targets(teacher_probs: torch.Tensor, target_offset: float) -> torch.Tensor:
    """beta [B, K] of the proxy Dirichlet target (float64)."""
    p = teacher_probs.double().clamp_min(1e-12)
    mean = p.mean(0)
    mkl = (mean.unsqueeze(0) * (mean.log().unsqueeze(0) - p.log())).sum(-1).mean(0).clamp_min(0)
    beta0 = (p.shape[-1] - 1) / (2 * mkl + EPS)
    return (mean * beta0.clamp(max=MAX_ALPHA).unsqueeze(-1) + target_offset).clamp(MIN_ALPHA, MAX_ALPHA)


def dirichlet_kl(beta: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """KL(Dir(beta) || Dir(alpha)) per sample [B] (float64)."""
    b0, a0 = beta.sum(-1), alpha.sum(-1)
    return (torch.lgamma(b0) - torch.lgamma(beta).sum(-1) + torch.lgamma(alpha).sum(-1) - torch.lgamma(a0)
            + ((beta - alpha) * (torch.digamma(beta) - torch.digamma(b0).unsqueeze(-1))).sum(-1))


@loss("forward_kl")
def forward_kl(student_logits, teacher_probs, **_) -> torch.Tensor:
    mean = teacher_probs.double().mean(0).clamp_min(1e-12)
    logq = torch.log_softmax(student_logits.double(), -1)
    return _finite((mean * (mean.log() - logq)).sum(-1).mean(), "forward_kl")


@loss("proxy")
def proxy(student_logits, teacher_probs, model_offset: float = 1.0, target_offset: float = 1.0, **_) -> torch.Tensor:
    alpha = concentrations(student_logits, model_offset)
    beta = proxy_targets(teacher_probs, target_offset)
    return _finite(dirichlet_kl(beta, alpha).mean(), "proxy")


@loss("dirichlet_likelihood")
def dirichlet_likelihood(student_logits, teacher_probs, model_offset: float = 1.0, **_) -> torch.Tensor:
    alpha = concentrations(student_logits, model_offset)
    mean_log = teacher_probs.double().clamp_min(1e-12).log().mean(0)
    nll = torch.lgamma(alpha).sum(-1) - torch.lgamma(alpha.sum(-1)) - ((alpha - 1) * mean_log).sum(-1)
    return _finite(nll.mean(), "dirichlet_likelihood")
