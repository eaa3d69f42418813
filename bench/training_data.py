"""The training loop's per-sample seeding: an epoch of digits through SeededItems, side by side.

tasks/classify/train.py seeds every sample's augmentation from (data seed, epoch, sample). The
loader reads a digits epoch (plain, as the Jacobian sheets train, and augmented) three ways,
alternating, and prints medians and ratios:

- ``torch.manual_seed`` per sample (what the loop did: it also queues a seed for every CUDA
  device, recording a stack trace per call while CUDA has not started);
- ``SeededItems`` as it is (the CPU generator alone);
- no seeding at all (the floor: the transforms and the collation).

    python bench/training_data.py [--repeats 5] [--batch-size 64]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import DataLoader, Dataset

from tasks.classify.setup import SeededItems, seed_of
from tasks.data import build_set


class TorchSeeded(Dataset):
    def __init__(self, dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        torch.manual_seed(seed_of(self.seed, 0, i))
        return self.dataset[i]


def epoch_seconds(dataset, batch_size: int) -> float:
    started = time.perf_counter()
    for _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        pass
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    for augment in (False, True):
        digits, _ = build_set({"dataset": "digits", "split": "train", "augment": augment},
                              {"input_size": [3, 16, 16], "mean": [0.5] * 3, "std": [0.5] * 3})
        sides = {"torch.manual_seed per sample": TorchSeeded(digits, 0),
                 "SeededItems (CPU generator)": SeededItems(digits, [0]), "no seeding": digits}
        times = {name: [] for name in sides}
        for _ in range(args.repeats):
            for name, dataset in sides.items():
                times[name].append(epoch_seconds(dataset, args.batch_size))
        floor = statistics.median(times["no seeding"])
        print(f"one {'augmented' if augment else 'plain'} epoch of {len(digits)} digits, batch {args.batch_size}, "
              f"median of {args.repeats}:")
        for name, values in times.items():
            median = statistics.median(values)
            print(f"  {name:<30} {median:7.3f} s   {median / floor:5.2f}x no seeding")
        ratio = statistics.median(times["torch.manual_seed per sample"]) / statistics.median(times["SeededItems (CPU generator)"])
        print(f"  SeededItems: {ratio:.1f}x faster than torch.manual_seed per sample\n")


if __name__ == "__main__":
    main()
