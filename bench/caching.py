"""cache_features throughput against the bare backbone forward on the same batches.

The bare side runs the featurizer over batches already in memory (loading
excluded); the cached side runs ``tasks.sed.cache_features.cache_set`` on the same
set: loading, forward, and writing HDF5 (in a background thread). Runs
alternate and repeat; medians and their ratio are printed. Target: <= 1.10.

    python bench/caching.py [--model vit_small_patch16_224] [--image-size 224] [--repeats 3]

The backbone has random weights (throughput does not depend on them); the set
is the digits validation split upsampled to the model's input size.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import timm
import torch
from torch.utils.data import DataLoader

from tasks.sed.cache_features import cache_set
from tasks.data import build_set
from tasks.sed.backbones import data_config, split_backbone


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vit_small_patch16_224")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    model = timm.create_model(a.model, pretrained=False, img_size=a.image_size, num_classes=5).eval()
    featurizer, head = split_backbone(model)
    data_cfg = data_config(model)
    spec = {"dataset": "digits", "split": "val"}
    dataset, _ = build_set(spec, data_cfg)
    batches = [images for images, _, _ in DataLoader(dataset, batch_size=a.batch_size)]
    n = sum(len(b) for b in batches)

    def bare() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            for images in batches:
                featurizer(images).float().cpu().numpy()
        return time.perf_counter() - start

    def cached(folder: str) -> float:
        cfg = {"cache_dir": folder, "batch_size": a.batch_size, "num_workers": 0}
        start = time.perf_counter()
        cache_set(featurizer, head["dim"], "in_val", spec, data_cfg, "bench", cfg, torch.device("cpu"))
        elapsed = time.perf_counter() - start
        for f in os.listdir(folder):
            os.remove(os.path.join(folder, f))
        return elapsed

    with tempfile.TemporaryDirectory() as folder:
        bare()
        bare_t, cache_t = [], []
        for _ in range(a.repeats):
            bare_t.append(bare())
            cache_t.append(cached(folder))
    b, c = statistics.median(bare_t), statistics.median(cache_t)
    print(f"{a.model} ({head['kind']} cut, {head['dim']}-d features), {n} images at {a.image_size}px, "
          f"batch {a.batch_size}, {torch.get_num_threads()} threads")
    print(f"  bare forward  : {b:7.2f} s  ({n / b:7.1f} img/s)")
    print(f"  cache_features: {c:7.2f} s  ({n / c:7.1f} img/s)  loading + forward + HDF5")
    print(f"  ratio         : {c / b:.3f}  (per-repeat: {', '.join(f'{y / x:.3f}' for x, y in zip(bare_t, cache_t))})")


if __name__ == "__main__":
    main()
