"""Batches of cached features, in memory when they fit, streamed from HDF5 when not.

    feats = CachedFeatures(entry["path"], max_memory_gb=4)
    for x, y in feats.batches(256, seed=0, epoch=3):   # shuffled, reproducible per epoch
        ...
    for x, y in feats.batches(1024, shuffle=False):      # in file order
        ...

Shuffling is a function of ``(seed, epoch)`` only, so a run resumed in the
middle of an epoch sees exactly the batches it would have seen.

A cache larger than ``max_memory_gb`` (ImageNet train, 4 augmented passes:
5.1 M x 768 floats, 15.7 GB) is streamed. Caches are written in the order of
their folders, i.e. sorted by class, so shuffling inside long contiguous
blocks would give batches of a few classes (52 of 1000 per batch of 256 on
that layout, against ~226 for a uniform shuffle). The stream instead

1. cuts the file into many *short* blocks (``block_rows``, at most one HDF5
   chunk, so every read is one contiguous read);
2. takes the blocks in a random order, a *window* of ``window_blocks`` of them
   at a time (a window fills about half the memory budget), reads the
   window's blocks in file order into one buffer;
3. draws batches from a uniform permutation of the window's rows.

Each batch is thus a uniform sample of a window that holds ~4096 short
blocks scattered over the whole file: batches hold as many classes as a
uniform shuffle's (within a few percent; ``tests/test_sed_shuffle.py``), at
the read speed of large sequential reads (``bench/streaming_shuffle.py``).
"""
from __future__ import annotations

from typing import Iterator, Optional, Tuple

import numpy as np
import torch

from tasks.sed.cache import open_cache
from tasks.sed.h5blocks import RowBlocks


class CachedFeatures:
    WINDOW_BLOCKS = 4096      # blocks per window: several per class of a 1000-class set

    def __init__(self, path: str, max_memory_gb: float = 4.0):
        self.path = path
        self.file = open_cache(path)
        self.n, self.dim = self.file["embed"].shape
        self.class_subset = self.file.attrs.get("class_subset")
        row_bytes = self.dim * 4 + 8
        self.in_memory = self.n * row_bytes <= max_memory_gb * 2 ** 30
        # streaming: a window fills about half the budget (the rest: a batch, its copy, the reader)
        self.window_rows = max(1, int(max_memory_gb * 2 ** 30 / 2 / row_bytes))
        chunk = self.file["embed"].chunks
        chunk_rows = chunk[0] if chunk else self.n
        self.block_rows = int(max(1, min(chunk_rows, self.window_rows // self.WINDOW_BLOCKS)))
        if self.in_memory:
            self.embed = torch.from_numpy(self.file["embed"][:])
            self.label = torch.from_numpy(self.file["label"][:, 0])
            self.file.close()

    def __len__(self) -> int:
        return self.n

    def num_batches(self, batch_size: int, drop_last: bool = False, span: Optional[Tuple[int, int]] = None) -> int:
        n = self.n if span is None else span[1] - span[0]
        return n // batch_size if drop_last else -(-n // batch_size)

    def _read(self, start: int, stop: int) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.in_memory:
            return self.embed[start:stop], self.label[start:stop]
        return (torch.from_numpy(self.file["embed"][start:stop]),
                torch.from_numpy(self.file["label"][start:stop, 0]))

    def batches(self, batch_size: int, seed: int = 0, epoch: int = 0, shuffle: bool = True,
                drop_last: bool = False, device: Optional[torch.device] = None,
                skip: int = 0, span: Optional[Tuple[int, int]] = None) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(features [b, D], labels [b])``; ``skip`` leaves out the first batches;
        ``span=(start, stop)`` takes only those rows (an epoch over one chunk of the file)."""
        lo, hi = (0, self.n) if span is None else (int(span[0]), int(span[1]))
        if not 0 <= lo < hi <= self.n:
            raise ValueError(f"span {span} is outside the cache's {self.n} rows")
        rng = np.random.default_rng([seed, epoch])
        if not shuffle:
            chunks = self._ordered(batch_size, lo, hi)
        elif self.in_memory:
            perm = torch.from_numpy(lo + rng.permutation(hi - lo))
            chunks = ((self.embed[idx], self.label[idx]) for idx in perm.split(batch_size))
        else:
            chunks = self._streamed(batch_size, rng, lo, hi)
        for i, (x, y) in enumerate(chunks):
            if drop_last and len(y) < batch_size:
                break
            if i < skip:
                continue
            yield (x.to(device), y.to(device)) if device is not None else (x, y)

    def _ordered(self, batch_size: int, lo: int, hi: int):
        for start in range(lo, hi, batch_size):
            yield self._read(start, min(hi, start + batch_size))

    def _streamed(self, batch_size: int, rng: np.random.Generator, lo: int, hi: int):
        """Uniform batches from windows of short blocks taken in random order (module docstring)."""
        starts = np.arange(lo, hi, self.block_rows)
        per_window = max(1, self.window_rows // self.block_rows)
        order = rng.permutation(len(starts))
        embed, label = RowBlocks(self.path, self.file["embed"]), RowBlocks(self.path, self.file["label"])
        carry_x = torch.empty(0, self.dim)
        carry_y = torch.empty(0, dtype=torch.int64)
        for w in range(0, len(order), per_window):
            blocks = np.sort(starts[order[w:w + per_window]])    # read in file order
            stops = np.minimum(blocks + self.block_rows, hi)
            rows = int((stops - blocks).sum())
            x = np.empty((rows, self.dim), dtype=np.float32)
            y = np.empty((rows, 1), dtype=np.int64)
            embed.read(blocks.tolist(), stops.tolist(), x)
            label.read(blocks.tolist(), stops.tolist(), y)
            x, y = torch.from_numpy(x), torch.from_numpy(y[:, 0])
            perm = torch.from_numpy(rng.permutation(rows))
            i = 0
            if len(carry_y):                         # finish the batch the last window started
                idx = perm[:batch_size - len(carry_y)]
                carry_x, carry_y = torch.cat([carry_x, x[idx]]), torch.cat([carry_y, y[idx]])
                i = len(idx)
                if len(carry_y) < batch_size:        # a window smaller than a batch: keep filling
                    continue
                yield carry_x, carry_y
                carry_x, carry_y = carry_x[:0], carry_y[:0]
            while i + batch_size <= rows:
                idx = perm[i:i + batch_size]
                yield x[idx], y[idx]
                i += batch_size
            if i < rows:
                carry_x, carry_y = x[perm[i:]], y[perm[i:]]
        if len(carry_y):
            yield carry_x, carry_y

    def close(self) -> None:
        if not self.in_memory and self.file.id.valid:
            self.file.close()
