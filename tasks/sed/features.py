"""Batches of cached features, in memory when they fit, streamed from HDF5 when not.

    feats = CachedFeatures(entry["path"], max_memory_gb=4)
    for x, y in feats.batches(256, seed=0, epoch=3):   # shuffled, reproducible per epoch
        ...
    for x, y in feats.batches(1024, shuffle=False):      # in file order
        ...

Shuffling is a function of ``(seed, epoch)`` only, so a run resumed in the
middle of an epoch sees exactly the batches it would have seen. Streaming
shuffles at the level of contiguous blocks (read in one HDF5 call each) and
then within each block — the usual compromise for datasets larger than memory
(ImageNet train, 4 augmented passes: 5.1 M x 768 floats, 15.7 GB).
"""
from __future__ import annotations

from typing import Iterator, Optional, Tuple

import numpy as np
import torch

from tasks.sed.cache import open_cache


class CachedFeatures:
    def __init__(self, path: str, max_memory_gb: float = 4.0, block_rows: int = 1 << 16):
        self.path = path
        self.file = open_cache(path)
        self.n, self.dim = self.file["embed"].shape
        self.block_rows = block_rows
        self.class_subset = self.file.attrs.get("class_subset")
        self.in_memory = self.n * self.dim * 4 <= max_memory_gb * 2 ** 30
        if self.in_memory:
            self.embed = torch.from_numpy(self.file["embed"][:])
            self.label = torch.from_numpy(self.file["label"][:, 0])
            self.file.close()

    def __len__(self) -> int:
        return self.n

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        return self.n // batch_size if drop_last else -(-self.n // batch_size)

    def _read(self, start: int, stop: int) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.in_memory:
            return self.embed[start:stop], self.label[start:stop]
        return (torch.from_numpy(self.file["embed"][start:stop]),
                torch.from_numpy(self.file["label"][start:stop, 0]))

    def batches(self, batch_size: int, seed: int = 0, epoch: int = 0, shuffle: bool = True,
                drop_last: bool = False, device: Optional[torch.device] = None,
                skip: int = 0) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(features [b, D], labels [b])``; ``skip`` leaves out the first batches."""
        rng = np.random.default_rng([seed, epoch])
        if not shuffle:
            chunks = self._ordered(batch_size)
        elif self.in_memory:
            perm = torch.from_numpy(rng.permutation(self.n))
            chunks = ((self.embed[idx], self.label[idx]) for idx in perm.split(batch_size))
        else:
            chunks = self._streamed(batch_size, rng)
        for i, (x, y) in enumerate(chunks):
            if drop_last and len(y) < batch_size:
                break
            if i < skip:
                continue
            yield (x.to(device), y.to(device)) if device is not None else (x, y)

    def _ordered(self, batch_size: int):
        for start in range(0, self.n, batch_size):
            yield self._read(start, min(self.n, start + batch_size))

    def _streamed(self, batch_size: int, rng: np.random.Generator):
        starts = np.arange(0, self.n, self.block_rows)
        carry_x, carry_y = None, None
        for s in rng.permutation(starts):
            x, y = self._read(int(s), int(min(self.n, s + self.block_rows)))
            perm = torch.from_numpy(rng.permutation(len(y)))
            x, y = x[perm], y[perm]
            if carry_x is not None:
                x, y = torch.cat([carry_x, x]), torch.cat([carry_y, y])
            full = len(y) // batch_size * batch_size
            for i in range(0, full, batch_size):
                yield x[i:i + batch_size], y[i:i + batch_size]
            carry_x, carry_y = x[full:], y[full:]
        if carry_x is not None and len(carry_y):
            yield carry_x, carry_y

    def close(self) -> None:
        if not self.in_memory and self.file.id.valid:
            self.file.close()
