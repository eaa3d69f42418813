"""Jacobian statistics: the batched mode against the low-memory mode, and batched power iteration
against one sample at a time, with the peak memory of each.

    python bench/jacobian.py                                       # jacobian.csv's setting: small CNN, 16x16
    python bench/jacobian.py --model cifar_resnet18 --width 64 --norm none --size 32 --batch 140 --device cuda

Both modes compute every sample's K x D Jacobian of the logits (tasks/jacobian/jacobian.py;
tests/test_jacobian.py checks they agree): ``batched`` with vmap(jacrev), ``low_memory`` with one
backward pass per class. Repeats alternate the two; medians of samples per second are printed
with their ratio. The power iteration (operator norm, fixed 10 iterations and no tolerance, so
both sides do the same work) runs over the batch's Jacobians at once and in a loop of one sample
at a time. The four normalisations the full-scale sheet asks for (none, softmax, logsoftmax,
crossentropy): one Jacobian per normalisation (what compute_stats.py did) against one Jacobian of
the logits with the others derived by K x K products (``jacobians``, what it does now), in each mode. Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` over one batch; on CPU, in a
fresh process that has computed two samples already (libraries loaded), the highest resident set
sampled every 0.5 ms while it computes the batch, less the resident set before it (so one
measurement cannot hide another's).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tasks.jacobian.jacobian import jacobian, jacobians, operator_norm, start_vectors  # noqa: E402
from tasks.models import create_model  # noqa: E402


def setup(args):
    torch.manual_seed(0)
    device = torch.device(args.device)
    kwargs = {"width": args.width, **({"norm": args.norm} if args.norm else {})}
    model = create_model(args.model, args.classes, **kwargs).to(device).eval()
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    return device, model, x


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_of(args, mode: str) -> float:
    """MiB of memory one batch of ``mode`` takes at its peak (see the module docstring)."""
    if args.device.startswith("cuda"):
        device, model, x = setup(args)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        jacobian(model, x, "none", None, mode)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    argv = [sys.executable, __file__, "--peak-only", mode] + [a for a in sys.argv[1:] if a != "--peak-only"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mib"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--norm", default=None, help="the family's norm option (cifar_resnet18: none as the authors)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--peak-only", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peak_only:                                     # the child of peak_of on a CPU
        import threading

        import psutil

        device, model, x = setup(args)
        jacobian(model, x[:2], "none", None, args.peak_only)          # libraries and kernels loaded
        me, peak, done = psutil.Process(), [0], threading.Event()
        base = me.memory_info().rss

        def watch():                                       # the ops release the GIL: sample the RSS meanwhile
            while not done.is_set():
                peak[0] = max(peak[0], me.memory_info().rss)
                time.sleep(0.0005)
        watcher = threading.Thread(target=watch)
        watcher.start()
        jacobian(model, x, "none", None, args.peak_only)
        done.set()
        watcher.join()
        print(json.dumps({"peak_mib": max(0, peak[0] - base) / 2 ** 20}))
        return
    device, model, x = setup(args)
    for mode in ("batched", "low_memory"):
        jacobian(model, x, "none", None, mode)
    times = {"batched": [], "low_memory": []}
    for _ in range(args.repeats):
        for mode in times:
            sync(device)
            start = time.perf_counter()
            jac = jacobian(model, x, "none", None, mode)
            sync(device)
            times[mode].append(time.perf_counter() - start)
    rate = {m: args.batch / statistics.median(t) for m, t in times.items()}
    peaks = {m: peak_of(args, m) for m in times}

    starts = start_vectors(range(args.batch), jac.shape[1], 0).to(device)
    power = {"batched": lambda: operator_norm(jac, 10, 0.0, starts),
             "one at a time": lambda: [operator_norm(jac[i:i + 1], 10, 0.0, starts[i:i + 1]) for i in range(len(jac))]}
    prate = rates(power, args.batch, device, args.repeats)
    nrate = {mode: normalisation_rates(model, x, device, args.repeats, mode) for mode in ("batched", "low_memory")}
    d = x[0].numel()
    print(f"{args.model} (width {args.width}{', norm ' + args.norm if args.norm else ''}), batch {args.batch} of "
          f"{args.size}x{args.size}, K = {args.classes}, D = {d}, {device} ({torch.get_num_threads()} threads), "
          f"medians of {args.repeats}:")
    print("| work | mode | samples / s | peak memory |\n|---|---|---|---|")
    for m in times:
        print(f"| Jacobian (K x D) | {m} | {rate[m]:.1f} | {peaks[m]:.0f} MiB |")
    for m in prate:
        print(f"| operator norm, 10 power iterations | {m} | {prate[m]:.0f} | |")
    for mode, by_way in nrate.items():
        for m, r in by_way.items():
            print(f"| Jacobians of {', '.join(NORMALIZATIONS)}: {m} | {mode} | {r:.1f} | |")
    print(f"batched / low-memory: {rate['batched'] / rate['low_memory']:.2f}x; "
          f"batched / one-at-a-time power iteration: {prate['batched'] / prate['one at a time']:.1f}x; "
          "all normalisations, derived / one each: "
          + ", ".join(f"{r['derived'] / r['one each']:.2f}x ({mode})" for mode, r in nrate.items()))


NORMALIZATIONS = ("none", "softmax", "logsoftmax", "crossentropy")


def normalisation_rates(model, x, device, repeats: int, mode: str) -> dict:
    """Samples / s computing the Jacobians of every normalisation: each directly, or all from one."""
    y = torch.zeros(len(x), dtype=torch.long, device=device)
    ways = {"one each": lambda: [jacobian(model, x, n, y, mode) for n in NORMALIZATIONS],
            "derived": lambda: jacobians(model, x, NORMALIZATIONS, y, mode)}
    return rates(ways, len(x), device, repeats)


def rates(ways: dict, samples: int, device, repeats: int) -> dict:
    """Samples / s of each way (a warm-up call each, then alternating repeats; the median)."""
    times = {m: [] for m in ways}
    for fn in ways.values():
        fn()
    for _ in range(repeats):
        for m, fn in ways.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[m].append(time.perf_counter() - start)
    return {m: samples / statistics.median(t) for m, t in times.items()}


if __name__ == "__main__":
    main()
