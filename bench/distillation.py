"""Batched teachers against a loop over teachers, and evaluation memory against the set size.

    python bench/distillation.py [--members 10] [--batch 64] [--repeats 5]

1. One distillation step at the digits sizes (small CNN students and teachers, 16x16 inputs):
   teacher forward (10 members) + proxy loss + student backward + SGD step, with the teachers
   as one batched computation (tasks.models.ensemble) against a Python loop over the same
   teachers; the same math (checked), alternating, medians. A profile of the batched step
   says where its time goes.
2. Ensemble evaluation (10 members, tasks.classify.evaluate's per-batch work) both ways.
3. Peak RSS of evaluating a 10-member ensemble on 50,000 synthetic samples against 5,000,
   each in a fresh process (target: within 1.5x).
"""
from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time

import torch

from tasks.distill.losses import proxy
from tasks.metrics.uncertainty import ensemble_uncertainty
from tasks.models import create_model
from tasks.models.ensemble import Ensemble


def teachers(m: int):
    torch.manual_seed(0)
    return [create_model("small_cnn", num_classes=5, width=16).eval() for _ in range(m)]


def timed(fn, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def memory_child(n: int, members: int) -> None:
    from torch.utils.data import Dataset

    from tasks.classify.scoring import evaluate_domain, summarise

    class Synthetic(Dataset):
        def __len__(self):
            return n

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            return torch.randn(3, 16, 16, generator=g), i % 5, i

    class Predict:
        def __init__(self):
            self.net = Ensemble(teachers(members), ["cnn"] * members)

        @torch.no_grad()
        def __call__(self, x, classes=None):
            probs = self.net(x).double().softmax(-1)
            return probs.mean(0), ensemble_uncertainty(probs)

    arrays = evaluate_domain(Predict(), Synthetic(), 512, torch.device("cpu"))
    summarise(arrays, 10)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)          # KiB on Linux


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--memory-child", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.memory_child:
        memory_child(a.memory_child, a.members)
        return
    ts = teachers(a.members)
    batched = Ensemble(ts, ["cnn"] * a.members)
    student = create_model("small_cnn", num_classes=5, width=16)
    opt = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(a.batch, 3, 16, 16)

    def step(teacher_logits):
        def run():
            with torch.no_grad():
                probs = teacher_logits(x).softmax(-1)
            loss = proxy(student(x), probs, model_offset=1.0, target_offset=1.0).float()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return run

    def loop_logits(inp):
        return torch.stack([t(inp) for t in ts])

    with torch.no_grad():
        assert torch.allclose(batched(x), loop_logits(x), atol=1e-5), "batched teachers differ from the loop"
    rows = []
    for label, fb, fl in (("distillation step", step(batched), step(loop_logits)),
                          ("ensemble evaluation", lambda: ensemble_uncertainty(batched(x).softmax(-1)),
                           lambda: ensemble_uncertainty(loop_logits(x).softmax(-1)))):
        with torch.no_grad() if label.startswith("ensemble") else torch.enable_grad():
            fb(), fl()                                     # warm up
            b, lo = [], []
            for _ in range(a.repeats):
                b.append(timed(fb, a.steps))
                lo.append(timed(fl, a.steps))
        rows.append((label, statistics.median(b), statistics.median(lo)))
    print(f"{a.members} teachers (small CNN, width 16), batch {a.batch} at 16x16, {torch.get_num_threads()} threads; "
          f"medians of {a.repeats} x {a.steps} steps")
    print("| work | batched | loop | speed-up |\n|---|---|---|---|")
    for label, b, lo in rows:
        print(f"| {label} | {1e3 * b:.1f} ms | {1e3 * lo:.1f} ms | {lo / b:.2f}x |")

    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(batched)()
    print("\nwhere the batched step's time goes (top 8 by self CPU time):")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))

    rss = {}
    for n in (5_000, 50_000):
        out = subprocess.run([sys.executable, __file__, "--memory-child", str(n), "--members", str(a.members)],
                             capture_output=True, text=True, check=True).stdout
        rss[n] = int(out.strip().splitlines()[-1]) / 1024
    print(f"peak RSS evaluating {a.members} members: 5,000 samples {rss[5_000]:.0f} MiB, "
          f"50,000 samples {rss[50_000]:.0f} MiB, ratio {rss[50_000] / rss[5_000]:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
