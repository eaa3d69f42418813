"""One FoRDE training step of M members: the joint network against a loop over members.

    python bench/forde_step.py                   # result_sheets/forde.csv's setting: 10 x small_cnn width 8, 16x16
    python bench/forde_step.py --width 32 --size 32                                          # 4x the channels, 4x the pixels
    python bench/forde_step.py --model cifar_resnet18 --width 64 --batch 128 --device cuda   # the seed's setting

Both sides compute the same thing (tests/test_forde.py checks the joint members equal separate
networks): every member's forward on its own copy of the batch, its true-class logits'
input gradient with ``create_graph`` (double backprop), the repulsion over the M gradients
(:func:`tasks.forde.repulsion.repulsion`, with PCA length scales of the input size), the
summed cross-entropies, one backward and an SGD step. ``joint``: the members as one grouped
network (:class:`tasks.models.joint.JointEnsemble`); ``loop``: M networks, one after another.
Repeats alternate the two sides; the medians and their ratio are printed, with the repulsion's
share of the joint step and the joint step's top operators (torch.profiler).
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tasks.forde.repulsion import repulsion  # noqa: E402
from tasks.models import create_model  # noqa: E402
from tasks.models.joint import JointEnsemble  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def joint_step(joint, opt, x, y, pca):
    m = joint.members
    xm = x.unsqueeze(0).expand(m, *x.shape).clone().requires_grad_(True)
    logits = joint(xm)
    ce = sum(F.cross_entropy(logits[i], y) for i in range(m))
    true = logits.gather(-1, y.view(1, -1, 1).expand(m, -1, 1)).sum()
    (grads,) = torch.autograd.grad(true, xm, create_graph=True)
    r, _ = repulsion(grads.flatten(2), len(y), *pca)
    opt.zero_grad(set_to_none=True)
    (ce + r).backward()
    opt.step()


def loop_step(nets, opts, x, y, pca):
    ces, grads = [], []
    for net in nets:
        xi = x.clone().requires_grad_(True)
        logits = net(xi)
        ces.append(F.cross_entropy(logits, y))
        (g,) = torch.autograd.grad(logits.gather(-1, y.view(-1, 1)).sum(), xi, create_graph=True)
        grads.append(g.flatten(1))
    r, _ = repulsion(torch.stack(grads), len(y), *pca)
    for opt in opts:
        opt.zero_grad(set_to_none=True)
    (sum(ces) + r).backward()
    for opt in opts:
        opt.step()


def timed(fn, device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=16, help="input height and width")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    nets = [create_model(args.model, args.classes, width=args.width, init="haiku").to(device).train()
            for _ in range(args.members)]
    joint = JointEnsemble([copy.deepcopy(n) for n in nets]).to(device).train()
    opts = [torch.optim.SGD(n.parameters(), lr=1e-3, momentum=0.9, nesterov=True) for n in nets]
    jopt = torch.optim.SGD(joint.parameters(), lr=1e-3, momentum=0.9, nesterov=True)
    d = 3 * args.size * args.size
    pca = (torch.linalg.qr(torch.randn(d, d, device=device))[0], torch.rand(d, device=device) * 3)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, args.classes, (args.batch,), device=device)
    for _ in range(2):                                                    # warm-up (allocator, kernels)
        joint_step(joint, jopt, x, y, pca)
        loop_step(nets, opts, x, y, pca)
    times = {"joint": [], "loop": []}
    for _ in range(args.repeats):
        times["joint"].append(timed(lambda: joint_step(joint, jopt, x, y, pca), device))
        times["loop"].append(timed(lambda: loop_step(nets, opts, x, y, pca), device))
    grads = torch.randn(args.members, args.batch, d, device=device, requires_grad=True)

    def repulsion_only():
        r, _ = repulsion(grads, args.batch, *pca)
        r.backward()
    for _ in range(2):
        repulsion_only()
    rep = statistics.median(timed(repulsion_only, device) for _ in range(args.repeats))
    joint_s, loop_s = statistics.median(times["joint"]), statistics.median(times["loop"])
    print(f"{args.members} x {args.model} (width {args.width}), batch {args.batch} of {args.size}x{args.size}, "
          f"{device} ({torch.get_num_threads()} threads), medians of {args.repeats}:")
    print(f"  loop over members  {loop_s * 1000:9.1f} ms / step")
    print(f"  joint network      {joint_s * 1000:9.1f} ms / step")
    print(f"  ratio (loop / joint): {loop_s / joint_s:.2f}x")
    print(f"  repulsion (forward + backward, D = {d}): {rep * 1000:.1f} ms = {100 * rep / joint_s:.1f}% of the joint step")
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        joint_step(joint, jopt, x, y, pca)
        sync(device)
    key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    print("\njoint step, top operators:")
    print(prof.key_averages().table(sort_by=key, row_limit=12, max_name_column_width=45))


if __name__ == "__main__":
    main()
