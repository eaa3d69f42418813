"""Read throughput of the streamed (uniform) shuffle against a sequential read of the same cache.

A class-ordered cache (like ImageNet's train cache: classes one after the
other) several times larger than the memory limit is written once; then, in
alternation, one epoch is read

* sequentially: the file in large contiguous slices, cut into batches (the
  fastest a cache can be read; no shuffling at all);
* shuffled: ``CachedFeatures.batches`` streaming uniform batches.

Both sides touch every row once and hand out the same batch tensors; the OS
page cache is warmed first (a full read), so the ratio measures the reader,
not the disk. Medians over ``--repeats`` and their ratio are printed, with the
distinct classes per batch of each side. Target: shuffled >= 0.5x sequential.

    python bench/streaming_shuffle.py [--rows 600000] [--dim 768] [--memory-gb 0.5] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import h5py
import numpy as np
import torch

from tasks.sed.cache import CacheWriter
from tasks.sed.features import CachedFeatures


def write_cache(path: str, rows: int, dim: int, classes: int) -> None:
    writer = CacheWriter(path, "bench", rows, dim)
    labels = np.repeat(np.arange(classes), -(-rows // classes))[:rows]
    rng = np.random.default_rng(0)
    for a in range(0, rows, 32768):
        b = min(rows, a + 32768)
        writer.write(rng.standard_normal((b - a, dim), dtype=np.float32), labels[a:b], np.arange(a, b))
    writer.finish()


def sequential(path: str, batch: int, slice_rows: int):
    with h5py.File(path, "r") as f:
        embed, label = f["embed"], f["label"]
        for a in range(0, len(embed), slice_rows):
            x = torch.from_numpy(embed[a:a + slice_rows])
            y = torch.from_numpy(label[a:a + slice_rows, 0])
            for i in range(0, len(y), batch):
                yield x[i:i + batch], y[i:i + batch]


def timed(batches) -> tuple:
    start = time.perf_counter()
    rows, classes = 0, []
    for x, y in batches:
        rows += len(y)
        if len(classes) < 400:
            classes.append(len(torch.unique(y)))
    return time.perf_counter() - start, rows, float(np.median(classes))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=600_000)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--memory-gb", type=float, default=0.5)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dir", default=None, help="where to write the cache (default: a temporary folder)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(dir=a.dir) as folder:
        path = os.path.join(folder, "train.hdf5")
        print(f"writing a class-ordered cache: {a.rows} rows x {a.dim} floats, {a.classes} classes ...", flush=True)
        write_cache(path, a.rows, a.dim, a.classes)
        size_gb = os.path.getsize(path) / 2 ** 30
        feats = CachedFeatures(path, a.memory_gb)
        assert not feats.in_memory, "the cache fits in memory: raise --rows or lower --memory-gb"
        timed(sequential(path, a.batch_size, feats.window_rows))        # warm the page cache
        seq_t, shuf_t = [], []
        for r in range(a.repeats):
            t, n, seq_classes = timed(sequential(path, a.batch_size, feats.window_rows))
            seq_t.append(t)
            t, n2, shuf_classes = timed(feats.batches(a.batch_size, seed=0, epoch=r))
            shuf_t.append(t)
            assert n == n2 == a.rows
        feats.close()
    s, u = statistics.median(seq_t), statistics.median(shuf_t)
    gb = a.rows * (a.dim * 4 + 8) / 2 ** 30
    print(f"cache {size_gb:.2f} GB, memory limit {a.memory_gb} GB ({size_gb / a.memory_gb:.1f}x smaller); "
          f"windows of {feats.window_rows} rows read as blocks of {feats.block_rows} rows; batch {a.batch_size}")
    print(f"  sequential: {s:6.2f} s  ({gb / s:5.2f} GB/s)  classes per batch (median) {seq_classes:.0f}")
    print(f"  shuffled  : {u:6.2f} s  ({gb / u:5.2f} GB/s)  classes per batch (median) {shuf_classes:.0f}")
    print(f"  throughput ratio shuffled / sequential: {s / u:.2f}  "
          f"(per repeat: {', '.join(f'{x / y:.2f}' for x, y in zip(seq_t, shuf_t))})")


if __name__ == "__main__":
    main()
