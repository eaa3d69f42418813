"""FoRDE's repulsion: ensemble members pushed apart in the space of their input gradients.

For member m and sample n of a batch of N, g_mn = d z_{m, y_n}(x) / d x (the gradient of the
member's true-class logit with respect to the input, flattened to D values). Each is
projected and normalised to unit length, then stretched by the length scales::

    u_mn = s * (U^T g_mn) / sqrt(|U^T g_mn|^2 + eps)

``U``: the eigenvectors of the training inputs' second-moment matrix and ``s`` the square roots
of its eigenvalues (``pca``, :mod:`tasks.forde.compute_pca`), or U = I, s = 1 (``identity``).
With the squared distances d_mkn = |u_mn - sg(u_kn)|^2 (``sg``: no gradient flows through the
member repelled from) and the median heuristic per member k and sample n,
h_kn = median_m sg(d_mkn) / log M + 1e-12, the repulsion is::

    R = (1 / B) sum_m log( (1 / N) sum_{k, n} exp(-d_mkn / h_kn) )

B is the batch size of one process (N = B on one process; with several, N is the global batch
gathered from all of them). The training loss is sum_m CE_m + R: minimising R lowers the
kernel density of each member's gradients around the others', pushing the members apart.
This is the authors' ``get_repulsive_term`` (AaltoPML/FoRDE, train_forde.py), term for term:
the median over the first member axis (the mean of the two middle values for even M, as
``jnp.median``), the log-sum-exp over members and samples together.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

KINDS = ("pca", "identity", "none")


def repulsion(grads: torch.Tensor, batch_size: Optional[int] = None, eigenvectors: Optional[torch.Tensor] = None,
              scales: Optional[torch.Tensor] = None, eps: float = 1e-12) -> Tuple[torch.Tensor, torch.Tensor]:
    """(R, the mean bandwidth h) of input gradients ``grads`` [M, N, D] (see the module docstring).

    ``eigenvectors`` [D, D] (columns) and ``scales`` [D]: the PCA length scales (None: identity);
    ``batch_size``: B (default N)."""
    if grads.dim() != 3:
        raise ValueError(f"grads must be [members, samples, features], got shape {tuple(grads.shape)}")
    m, n, d = grads.shape
    if m < 2:
        raise ValueError("the repulsion needs at least 2 members (the bandwidth divides by log M)")
    u = grads.float()
    if eigenvectors is not None:
        if eigenvectors.shape != (d, d):
            raise ValueError(f"the PCA has {tuple(eigenvectors.shape)} eigenvectors; the inputs have {d} values")
        u = u @ eigenvectors.float()
    # float64 from here: the distances below are differences of large squared norms (the length
    # scales reach ~30), and members that barely differ must not get rounding noise as distances
    u = u.double()
    u = u / torch.sqrt(u.square().sum(-1, keepdim=True) + eps)
    if scales is not None:
        u = u * scales.double()
    fixed = u.detach()
    # d[m, k, n] = |u_mn - sg(u_kn)|^2, expanded: no [M, M, N, D] tensor (clamped: rounding can go below 0)
    cross = torch.einsum("mnd,knd->mkn", u, fixed)
    sq = (u.square().sum(-1).unsqueeze(1) + fixed.square().sum(-1).unsqueeze(0) - 2 * cross).clamp_min(0)
    median = torch.quantile(sq.detach(), 0.5, dim=0)                         # [K, N]
    bandwidth = median / math.log(m) + 1e-12
    kernel = torch.logsumexp((-sq / bandwidth).flatten(1), dim=1) - math.log(n)   # [M]
    return (kernel.sum() / (batch_size or n)).float(), bandwidth.mean().float()


def repulsion_reference(grads: torch.Tensor, batch_size: Optional[int] = None,
                        eigenvectors: Optional[torch.Tensor] = None, scales: Optional[torch.Tensor] = None,
                        eps: float = 1e-12) -> torch.Tensor:
    """R computed member by member, pair by pair, sample by sample (slow; for the tests)."""
    m, n, _ = grads.shape
    u = []
    for i in range(m):
        row = []
        for j in range(n):
            g = grads[i, j].double()
            if eigenvectors is not None:
                g = eigenvectors.double().T @ g
            g = g / torch.sqrt((g * g).sum() + eps)
            row.append(g * scales.double() if scales is not None else g)
        u.append(row)
    total = grads.new_zeros((), dtype=torch.float64)
    for i in range(m):
        terms = []
        for k in range(m):
            for j in range(n):
                dists = sorted(float(((u[a][j] - u[k][j]) ** 2).sum().detach()) for a in range(m))
                median = (dists[(m - 1) // 2] + dists[m // 2]) / 2
                h = median / math.log(m) + 1e-12
                terms.append(-((u[i][j] - u[k][j].detach()) ** 2).sum() / h)
        total = total + torch.logsumexp(torch.stack(terms), 0) - math.log(n)
    return total / (batch_size or n)
