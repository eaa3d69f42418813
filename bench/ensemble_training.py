"""Vectorised ensemble training against a per-member Python loop doing the same math.

One training step = forward of the active members on one batch of cached
features, SED's loss (CE + budget-weighted A2D), backward, AdamW step.

- vectorised (what tasks/sed/train_ensemble.py runs): the members' weights are
  rows of one [M, P] matrix; the active rows are run with batched matmuls
  (``EnsembleHeads.forward_rows``) and updated by the row-wise AdamW of
  ``tasks.sed.optim``.
- member loop (what one writes with one module per member): each member owns
  its tensors, the forward calls ``F.linear`` / ``F.layer_norm`` member by
  member (``tasks.sed.heads.single_forward``), and ``torch.optim.AdamW``
  (fused where this PyTorch has it) steps the members that have a gradient.

Same weights, same data, same loss, same update rule (the tests check the two
agree numerically). The two alternate within one run; medians of the repeats
and their ratio are printed for each setting:

    python bench/ensemble_training.py [--members 50] [--steps 20] [--repeats 5]

Settings: the demo's ViT head (96-d features, 384 hidden, 5 classes) and a
linear head (the pre-logits cut of CNN backbones), at batch 128 and 16, with
all members active (every member trains on every batch) and with SED's 2
random active members per batch.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from tasks.sed.heads import EnsembleHeads, single_forward
from tasks.sed.losses import sed_loss
from tasks.sed.optim import make_optimizer

OPTIM = {"name": "adamw", "lr": 1e-3, "weight_decay": 0.01}


def vit_head(dim: int, hidden: int, classes: int) -> dict:
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g) * 0.05  # noqa: E731
    return {"kind": "vit_mlp", "dim": dim, "hidden": hidden, "num_classes": classes, "eps": 1e-6,
            "state": {"norm2.weight": 1 + r(dim), "norm2.bias": r(dim), "fc1.weight": r(hidden, dim),
                      "fc1.bias": r(hidden), "fc2.weight": r(dim, hidden), "fc2.bias": r(dim),
                      "ls2.gamma": 0.1 + r(dim), "norm.weight": 1 + r(dim), "norm.bias": r(dim),
                      "head.weight": r(classes, dim), "head.bias": r(classes)}}


def linear_head(dim: int, classes: int) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"kind": "linear", "dim": dim, "num_classes": classes,
            "state": {"head.weight": torch.randn(classes, dim, generator=g) * 0.05, "head.bias": torch.zeros(classes)}}


def loss_of(logits, y, anchor):
    return sed_loss(logits, y, None, None, lam=0.5, lam_manual=0.5, budget=True, anchor=anchor)[0]


class Vectorised:
    def __init__(self, heads: EnsembleHeads):
        self.heads, self.opt = heads, make_optimizer(heads.flat, OPTIM)

    def step(self, x, y, active, anchor):
        members = None if len(active) == self.heads.num_members else torch.as_tensor(active)
        rows = self.heads.rows(members)
        loss_of(self.heads.forward_rows(x, rows), y, anchor).backward()
        self.opt.step(rows.grad, members)


class MemberLoop:
    def __init__(self, heads: EnsembleHeads):
        self.head = heads.head
        self.members = [{n: torch.nn.Parameter(t.detach().clone()) for n, t in heads.member_params(m).items()}
                        for m in range(heads.num_members)]
        leaves = [p for member in self.members for p in member.values()]
        try:
            self.opt = torch.optim.AdamW(leaves, lr=OPTIM["lr"], weight_decay=OPTIM["weight_decay"], fused=True)
        except (RuntimeError, TypeError, ValueError):
            self.opt = torch.optim.AdamW(leaves, lr=OPTIM["lr"], weight_decay=OPTIM["weight_decay"])

    def step(self, x, y, active, anchor):
        logits = torch.stack([single_forward(self.head, self.members[m], x) for m in active])
        self.opt.zero_grad(set_to_none=True)
        loss_of(logits, y, anchor).backward()
        self.opt.step()


def time_steps(trainer, x, y, plan, steps: int) -> float:
    start = time.perf_counter()
    for active, anchor in plan[:steps]:
        trainer.step(x, y, active, anchor)
    return (time.perf_counter() - start) / steps


def measure(head: dict, members: int, active_n: int, batch: int, steps: int, repeats: int):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, head["dim"], generator=g)
    y = torch.randint(0, head["num_classes"], (batch,), generator=g)
    rng = np.random.default_rng(0)
    plan = [(sorted(rng.choice(members, active_n, replace=False).tolist()), int(rng.integers(active_n)))
            for _ in range(steps)]
    heads = EnsembleHeads(head, members, init_noise=0.01)
    vec, loop = Vectorised(heads), MemberLoop(heads)
    with torch.no_grad():                     # the two paths compute the same logits
        torch.testing.assert_close(heads(x, plan[0][0]), torch.stack(
            [single_forward(head, loop.members[m], x) for m in plan[0][0]]), rtol=1e-4, atol=1e-5)
    for t in (vec, loop):
        time_steps(t, x, y, plan, 3)          # warm-up
    times = {"vec": [], "loop": []}
    for _ in range(repeats):
        times["vec"].append(time_steps(vec, x, y, plan, steps))
        times["loop"].append(time_steps(loop, x, y, plan, steps))
    v, lo = statistics.median(times["vec"]), statistics.median(times["loop"])
    ratios = [b / a for a, b in zip(times["vec"], times["loop"])]
    return v, lo, ratios


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=50)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    heads = {"vit_mlp 96-384-5": vit_head(96, 384, 5), "linear 96-5": linear_head(96, 5)}
    print(f"{a.members} members, AdamW, {torch.get_num_threads()} threads; ms per training step, "
          f"median of {a.repeats} x {a.steps} steps")
    print(f"{'head':<18} {'batch':>5} {'active':>6} {'vectorised':>11} {'loop':>9} {'speed-up':>9}  per repeat")
    for name, head in heads.items():
        for batch in (128, 16):
            for active_n in (a.members, 2):
                v, lo, ratios = measure(head, a.members, active_n, batch, a.steps, a.repeats)
                print(f"{name:<18} {batch:>5} {active_n:>6} {1000 * v:>11.2f} {1000 * lo:>9.2f} {lo / v:>8.1f}x  "
                      + ", ".join(f"{r:.1f}" for r in ratios), flush=True)


if __name__ == "__main__":
    main()
