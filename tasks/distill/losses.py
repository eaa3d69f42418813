"""Ensemble distribution distillation losses (docs/methods.md, section 2), on a batch.

``student_logits`` z [B, K]; ``teacher_probs`` pi [M, B, K] (the members' softmax on the same,
augmented, inputs). Dirichlet terms are computed in float64; every loss checks that it is finite.

Caps (options of the losses, in the ``distill`` section of a student's config):

- ``max_alpha`` (default 1e6): the student's concentrations are at most this, the logits
  clamped at ln(max_alpha) — a logit above it gets no gradient. ``null``: the authors' cap,
  float64's largest value / K - 1 (``get_dirichlet_parameters``), no clamp of the logits.
- ``max_precision`` (default 1e6): the proxy target's beta0 is at most this; ``null``: no cap
  but ``eps`` (the authors').
- ``eps`` (default 1e-8): beta0 = (K - 1) / (2 MKL + eps); the authors use float32's machine
  epsilon (1.19e-7), which caps beta0 near (K - 1) / 1.19e-7.

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

from typing import Callable

import torch

from tasks.registry import Registry

EPS = 1e-8
MIN_ALPHA, MAX_ALPHA = 1e-6, 1e6
LOSSES: Registry[Callable[..., torch.Tensor]] = Registry("distillation loss", key="distill.loss")
loss = LOSSES.register


def _finite(value: torch.Tensor, name: str) -> torch.Tensor:
    if not torch.isfinite(value).all():
        raise FloatingPointError(f"the {name} distillation loss is not finite ({value})")
    return value


AUTHORS_EPS = float(torch.finfo(torch.float32).eps)


def concentrations(student_logits: torch.Tensor, model_offset: float, max_alpha: float | None = MAX_ALPHA) -> torch.Tensor:
    """alpha = exp(z) + model_offset, in float64, at least MIN_ALPHA and at most ``max_alpha``
    (the logits clamped at its log); ``max_alpha=None``: the authors' float64 max / K - 1."""
    z = student_logits.double()
    if max_alpha is None:
        top = torch.finfo(torch.float64).max / z.shape[-1] - 1
        return (z.exp() + model_offset).clamp(MIN_ALPHA, top)
    z = z.clamp(max=float(torch.log(torch.tensor(float(max_alpha)))))
    return (z.exp() + model_offset).clamp(MIN_ALPHA, float(max_alpha))


def proxy_targets(teacher_probs: torch.Tensor, target_offset: float, max_precision: float | None = MAX_ALPHA,
                  eps: float = EPS) -> torch.Tensor:
    """beta [B, K] of the proxy Dirichlet target (float64); beta0 at most ``max_precision``."""
    p = teacher_probs.double().clamp_min(1e-12)
    mean = p.mean(0)
    mkl = (mean.unsqueeze(0) * (mean.log().unsqueeze(0) - p.log())).sum(-1).mean(0).clamp_min(0)
    beta0 = (p.shape[-1] - 1) / (2 * mkl + eps)
    if max_precision is not None:
        beta0 = beta0.clamp(max=float(max_precision))
    return (mean * beta0.unsqueeze(-1) + target_offset).clamp_min(MIN_ALPHA)


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
def proxy(student_logits, teacher_probs, model_offset: float = 1.0, target_offset: float = 1.0,
          max_alpha: float | None = MAX_ALPHA, max_precision: float | None = MAX_ALPHA, eps: float = EPS,
          **_) -> torch.Tensor:
    alpha = concentrations(student_logits, model_offset, max_alpha)
    beta = proxy_targets(teacher_probs, target_offset, max_precision, eps)
    return _finite(dirichlet_kl(beta, alpha).mean(), "proxy")


@loss("dirichlet_likelihood")
def dirichlet_likelihood(student_logits, teacher_probs, model_offset: float = 1.0,
                         max_alpha: float | None = MAX_ALPHA, **_) -> torch.Tensor:
    alpha = concentrations(student_logits, model_offset, max_alpha)
    mean_log = teacher_probs.double().clamp_min(1e-12).log().mean(0)
    nll = torch.lgamma(alpha).sum(-1) - torch.lgamma(alpha.sum(-1)) - ((alpha - 1) * mean_log).sum(-1)
    return _finite(nll.mean(), "dirichlet_likelihood")
