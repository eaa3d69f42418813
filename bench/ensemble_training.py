"""Vectorised ensemble heads against a per-member Python loop doing the same math.

One training step = forward of every member on the same batch of cached
features, SED's loss (CE + budget-weighted A2D), backward, AdamW step. The
vectorised path stacks the members' weights and runs batched matmuls
(``EnsembleHeads.forward``); the loop calls ``F.linear`` / ``F.layer_norm``
member by member (``EnsembleHeads.forward_loop``). Same weights, same data,
same loss function; timings alternate between the two and the medians and
their ratio are printed.

    python bench/ensemble_training.py [--members 50] [--dim 96] [--hidden 384] [--classes 5] [--batch 128]

The defaults are the demo's ViT head (96-d features, 384 hidden, 5 classes).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from tasks.sed.heads import EnsembleHeads
from tasks.sed.losses import sed_loss
from tasks.train_ensemble import make_optimizer


def vit_head(dim: int, hidden: int, classes: int) -> dict:
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g) * 0.05  # noqa: E731
    return {"kind": "vit_mlp", "dim": dim, "hidden": hidden, "num_classes": classes, "eps": 1e-6,
            "state": {"norm2.weight": 1 + r(dim), "norm2.bias": r(dim), "fc1.weight": r(hidden, dim),
                      "fc1.bias": r(hidden), "fc2.weight": r(dim, hidden), "fc2.bias": r(dim),
                      "ls2.gamma": 0.1 + r(dim), "norm.weight": 1 + r(dim), "norm.bias": r(dim),
                      "head.weight": r(classes, dim), "head.bias": r(classes)}}


def time_steps(heads: EnsembleHeads, forward, x, y, steps: int) -> float:
    opt = make_optimizer(heads.parameters(), {"name": "adamw", "lr": 1e-3})
    members = list(range(heads.num_members))
    start = time.perf_counter()
    for _ in range(steps):
        loss, _ = sed_loss(forward(x, members), y, None, None, lam=0.5, lam_manual=0.5, budget=True, anchor=0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=50)
    p.add_argument("--dim", type=int, default=96)
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--classes", type=int, default=5)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    head = vit_head(a.dim, a.hidden, a.classes)
    x, y = torch.randn(a.batch, a.dim), torch.randint(0, a.classes, (a.batch,))
    heads = EnsembleHeads(head, a.members, init_noise=0.01)
    with torch.no_grad():                     # the two paths compute the same logits
        torch.testing.assert_close(heads(x), heads.forward_loop(x), rtol=1e-4, atol=1e-5)
    for fwd in (heads.forward, heads.forward_loop):
        time_steps(heads, fwd, x, y, 2)       # warm-up
    vec, loop = [], []
    for _ in range(a.repeats):
        vec.append(time_steps(heads, heads.forward, x, y, a.steps))
        loop.append(time_steps(heads, heads.forward_loop, x, y, a.steps))
    v, lo = statistics.median(vec), statistics.median(loop)
    print(f"{a.members} members, features {a.dim}, hidden {a.hidden}, {a.classes} classes, batch {a.batch}, "
          f"{torch.get_num_threads()} threads")
    print(f"  vectorised : {1000 * v:8.2f} ms / step (median of {a.repeats} x {a.steps} steps)")
    print(f"  member loop: {1000 * lo:8.2f} ms / step")
    print(f"  speed-up   : {lo / v:.1f}x  (per-repeat: {', '.join(f'{b / c:.1f}' for b, c in zip(loop, vec))})")


if __name__ == "__main__":
    main()
