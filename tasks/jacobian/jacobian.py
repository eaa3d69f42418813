"""Input-output Jacobians of a classifier, per sample, and their norms (seed 003).

    J = jacobian(model, x, "softmax", mode="batched")        # [N, K, D]
    fro = frobenius(J)                                       # [N]
    sigma, iters, settled = operator_norm(J, max_iters=50, tol=1e-6, starts=start_vectors(ids, K, seed=0))

For a sample x (D input values) and the network's logits z(x) (K classes), J = d g(z(x)) / d x
with the output ``g`` chosen by the normalisation (:data:`OUTPUTS`):

- ``none``: g = z, J is K x D;
- ``softmax``: g = softmax(z); ``logsoftmax``: g = log softmax(z);
- ``crossentropy``: g = CE(z, y) with the sample's training label y, a scalar: J is its input
  gradient, 1 x D (its Frobenius and operator norms are both the gradient's 2-norm, reported once,
  as ``frobenius``).

Every normalisation follows from the logits' Jacobian J_z by a K x K product (p = softmax(z)):
J_softmax = (diag p - p p^T) J_z, J_logsoftmax = (I - 1 p^T) J_z, and the cross-entropy's
gradient is -(row y of J_logsoftmax). :func:`jacobians` computes J_z once per sample and derives
the normalisations asked for from it (what compute_stats.py does); :func:`jacobian` computes one
normalisation directly (the reference they are tested against).

The network is read in evaluation mode, so a sample's Jacobian never depends on the other samples
of its batch. Two ways to compute J, equal to float rounding (tests/test_jacobian.py):

- ``low_memory``: one backward pass per output row (K passes over the batch);
- ``batched``: ``torch.func.vmap(torch.func.jacrev(g))``, all K rows of every sample in one
  vectorised pass (about K times the activation memory).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

MODES = ("batched", "low_memory")
OUTPUTS: Dict[str, Callable] = {
    "none": lambda z, y: z,
    "softmax": lambda z, y: torch.softmax(z, -1),
    "logsoftmax": lambda z, y: torch.log_softmax(z, -1),
    "crossentropy": lambda z, y: F.cross_entropy(z, y, reduction="none"),
}


def jacobian(model: torch.nn.Module, x: torch.Tensor, normalization: str = "none",
             targets: Optional[torch.Tensor] = None, mode: str = "batched") -> torch.Tensor:
    """J [N, R, D] of ``g(model(x))`` with respect to x (see the module docstring), detached.

    ``targets`` [N] are needed by ``crossentropy`` only. ``model`` must be in evaluation mode."""
    if normalization not in OUTPUTS:
        raise ValueError(f"normalization must be one of {sorted(OUTPUTS)}, got {normalization!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if model.training:
        raise ValueError("the Jacobian of a model in training mode would mix the samples of a batch: call .eval()")
    if normalization == "crossentropy" and targets is None:
        raise ValueError("the crossentropy normalization needs the samples' labels")
    out = OUTPUTS[normalization]
    n = x.shape[0]
    if targets is None:
        targets = torch.zeros(n, dtype=torch.long, device=x.device)
    if mode == "batched":
        def g(xi, yi):
            return out(model(xi.unsqueeze(0)), yi.unsqueeze(0))[0]
        jac = torch.func.vmap(torch.func.jacrev(g), in_dims=(0, 0))(x, targets)
        return jac.reshape(n, -1 if normalization != "crossentropy" else 1, x[0].numel()).detach()
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        values = out(model(xg), targets)
        values = values.unsqueeze(1) if values.dim() == 1 else values          # [N, R]
        rows = []
        for k in range(values.shape[1]):
            (grad,) = torch.autograd.grad(values[:, k].sum(), xg, retain_graph=k + 1 < values.shape[1])
            rows.append(grad.reshape(n, -1))
    return torch.stack(rows, 1)


def jacobians(model: torch.nn.Module, x: torch.Tensor, normalizations: Sequence[str],
              targets: Optional[torch.Tensor] = None, mode: str = "batched") -> Dict[str, torch.Tensor]:
    """{normalisation: J [N, R, D]} for each of ``normalizations``, from one Jacobian of the logits:
    with J_z [N, K, D], p = softmax(z) and m = sum_k p_k J_z[k] (the p-weighted mean row),

    - ``none``: J_z;  ``logsoftmax``: J_z[k] - m;  ``softmax``: p_k (J_z[k] - m);
    - ``crossentropy``: -(J_z[y] - m), the input gradient of -log p_y (one row).

    The K x K products run in float64; equal to :func:`jacobian`'s direct ones to float rounding."""
    unknown = [n for n in normalizations if n not in OUTPUTS]
    if unknown:
        raise ValueError(f"normalization must be one of {sorted(OUTPUTS)}, got {unknown}")
    if "crossentropy" in normalizations and targets is None:
        raise ValueError("the crossentropy normalization needs the samples' labels")
    logits_jac = jacobian(model, x, "none", None, mode)                     # [N, K, D]
    out: Dict[str, torch.Tensor] = {}
    if "none" in normalizations:
        out["none"] = logits_jac
    derived = [n for n in normalizations if n != "none"]
    if not derived:
        return out
    with torch.no_grad():
        p = torch.softmax(model(x).double(), -1)                            # [N, K]
    jz = logits_jac.double()
    centred = jz - torch.einsum("nk,nkd->nd", p, jz).unsqueeze(1)           # J_logsoftmax [N, K, D]
    for name in derived:
        if name == "logsoftmax":
            out[name] = centred.to(logits_jac.dtype)
        elif name == "softmax":
            out[name] = (p.unsqueeze(-1) * centred).to(logits_jac.dtype)
        else:                                                               # crossentropy
            rows = centred[torch.arange(len(x), device=x.device), targets.to(x.device)]
            out[name] = (-rows).unsqueeze(1).to(logits_jac.dtype)
    return {name: out[name] for name in normalizations}


def frobenius(jac: torch.Tensor) -> torch.Tensor:
    """||J||_F = sqrt(sum_ij J_ij^2) per sample: [N, R, D] -> [N]."""
    return jac.flatten(1).norm(dim=1)


def start_vectors(sample_ids: Sequence[int], rows: int, seed: int) -> torch.Tensor:
    """The power iteration's start vector of each sample [N, R], a function of (seed, sample id) only,
    so a sample's result does not depend on the batch or shard it falls in."""
    return torch.from_numpy(np.stack([np.random.default_rng([int(seed), int(i)]).standard_normal(rows)
                                      for i in sample_ids])).float()


REPORTS = ("current", "last_moved")


def operator_norm(jac: torch.Tensor, max_iters: int = 10, tol: float = 1e-2,
                  starts: Optional[torch.Tensor] = None,
                  report: str = "current") -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The largest singular value of each J [N, R, D] by power iteration, all samples at once.

    From v (a unit vector in output space, R values): u = J^T v / ||J^T v||, w = J u,
    sigma = ||w||, v = w / sigma. A sample stops once |sigma - sigma_previous| < ``tol``
    (absolute, as the authors' ``atol``; sigma_previous starts at 0), or after ``max_iters``
    iterations. sigma never exceeds the true norm and rises to it at a rate set by the ratio of
    the top two singular values.

    ``report``: ``current`` — the sigma of the last iteration; ``last_moved`` — the authors' rule
    (``spectral_norm`` in their core/metric_helpers.py): a sigma is kept only while it moves by
    at least ``tol``, so a sample reports the last value that did (the one before the iteration
    that stopped it), and a sample whose first sigma is below ``tol`` reports exactly 0.
    Returns (sigma [N], iterations used [N], settled [N]: False where the cap stopped it)."""
    if max_iters < 1 or tol < 0:
        raise ValueError(f"power iteration needs max_iters >= 1 and tol >= 0, got {max_iters}, {tol}")
    if report not in REPORTS:
        raise ValueError(f"power_iteration.report must be one of {REPORTS}, got {report!r}")
    n, r, _ = jac.shape
    jac = jac.double()
    v = (starts if starts is not None else torch.randn(n, r)).to(jac).reshape(n, r)
    v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-300)
    sigma = torch.zeros(n, dtype=torch.float64, device=jac.device)
    iters = torch.full((n,), max_iters, dtype=torch.long, device=jac.device)
    settled_all = torch.zeros(n, dtype=torch.bool, device=jac.device)
    active = torch.arange(n, device=jac.device)
    for it in range(1, max_iters + 1):
        j = jac[active]
        u = torch.einsum("nrd,nr->nd", j, v[active])
        u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-300)
        w = torch.einsum("nrd,nd->nr", j, u)
        s = w.norm(dim=1)
        v[active] = w / s.unsqueeze(1).clamp_min(1e-300)
        settled = (s - sigma[active]).abs() < tol
        if report == "current":
            sigma[active] = s
        else:
            sigma[active[~settled]] = s[~settled]
        iters[active[settled]] = it
        settled_all[active[settled]] = True
        active = active[~settled]
        if len(active) == 0:
            break
    return sigma.float(), iters, settled_all


def statistics(jac: torch.Tensor, names: Sequence[str], power: dict, sample_ids: Sequence[int]) -> dict:
    """{statistic: per-sample values} of one J [N, R, D]: ``frobenius``, ``operator`` (with
    ``operator_iterations`` and ``operator_settled``). A one-row J (the cross-entropy's gradient)
    has one norm, its 2-norm, reported as ``frobenius`` whichever of the two is asked for."""
    unknown = set(names) - {"frobenius", "operator"}
    if unknown:
        raise ValueError(f"statistics must be frobenius and/or operator, got {sorted(unknown)}")
    out = {}
    if "frobenius" in names or jac.shape[1] == 1:
        out["frobenius"] = frobenius(jac)
    if "operator" in names and jac.shape[1] > 1:
        starts = start_vectors(sample_ids, jac.shape[1], int(power.get("seed", 0)))
        out["operator"], out["operator_iterations"], out["operator_settled"] = operator_norm(
            jac, int(power.get("max_iters", 10)), float(power.get("tol", 1e-2)), starts,
            str(power.get("report", "current")))
    return out
