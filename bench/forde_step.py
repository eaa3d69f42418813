"""One FoRDE training step of M members, each way ``forde.members`` offers: joint, loop, vmap.

    python bench/forde_step.py                   # result_sheets/forde.csv's setting: 10 x small_cnn width 8, 16x16
    python bench/forde_step.py --width 32 --size 32                                          # 4x the channels, 4x the pixels
    python bench/forde_step.py --model cifar_resnet18 --width 64 --batch 128 --device cuda   # the seed's setting

Every side is tasks/forde/train_forde.py's objective (:class:`~tasks.forde.train_forde.FordeObjective`,
PCA length scales from a random orthogonal basis) on its own copy of one
:class:`~tasks.models.joint.JointEnsemble`, then one backward and an SGD step: every member's
forward on its copy of the batch, its true-class logits' input gradient with ``create_graph``
(double backprop), the repulsion, the summed cross-entropies. ``joint``: one grouped network;
``loop``: member after member; ``vmap``: ``torch.vmap`` over the members (tests/test_forde.py
checks the three give the same loss and gradients). Repeats rotate the sides; the medians, each
way's speed against the loop, and the way ``auto`` takes on this device are printed.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tasks.forde.train_forde import FordeObjective, members_way  # noqa: E402
from tasks.models import create_model  # noqa: E402
from tasks.models.joint import WAYS  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def objective(way: str, members: int, size: int, pca_path: str, device) -> FordeObjective:
    cfg = {"model": {"joint_members": members}, "data": {"input_size": [3, size, size]},
           "forde": {"repulsion": "pca", "pca_path": pca_path, "members": way}}
    return FordeObjective(cfg, device)


def step(model, opt, loss_of, x, y):
    loss = loss_of(model, x, y)[0]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def timed(fn, device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def random_pca(path: str, d: int) -> None:
    vectors = np.linalg.qr(np.random.default_rng(0).standard_normal((d, d)))[0]
    np.savez(path, eigenvectors=vectors.astype(np.float32), eigenvalues=np.linspace(3, 0.01, d).astype(np.float32),
             layout="CHW")


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
    joint = create_model(args.model, args.classes, width=args.width, init="haiku",
                         joint_members=args.members).to(device).train()
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, args.classes, (args.batch,), device=device)
    with tempfile.TemporaryDirectory() as tmp:
        pca = os.path.join(tmp, "pca.npz")
        random_pca(pca, 3 * args.size * args.size)
        sides = {}
        for way in WAYS:
            model = copy.deepcopy(joint)
            opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True)
            sides[way] = (model, opt, objective(way, args.members, args.size, pca, device))
    times = {way: [] for way in WAYS}
    for repeat in range(args.repeats + 2):                            # 2 warm-ups (allocator, kernels)
        for way in WAYS[repeat % len(WAYS):] + WAYS[:repeat % len(WAYS)]:
            spent = timed(lambda: step(*sides[way], x, y), device)
            if repeat >= 2:
                times[way].append(spent)
    medians = {way: statistics.median(t) for way, t in times.items()}
    auto = members_way("auto", device, joint, x.shape)
    print(f"{args.members} x {args.model} (width {args.width}), batch {args.batch} of {args.size}x{args.size}, "
          f"{device} ({torch.get_num_threads()} threads), medians of {args.repeats}:")
    for way in WAYS:
        mark = "   <- auto" if way == auto else ""
        print(f"  {way:6s} {medians[way] * 1000:9.1f} ms / step   {medians['loop'] / medians[way]:5.2f}x the loop{mark}")


if __name__ == "__main__":
    main()
