"""Many short row ranges of an HDF5 dataset, read at memory speed.

A streamed shuffle (:mod:`tasks.sed.features`) reads thousands of short,
scattered row ranges per window. Through h5py each range costs a read call
of ~70 us of HDF5 bookkeeping, which for ranges of a few dozen rows is most
of the time. Cache files are written uncompressed (:class:`tasks.sed.cache.
CacheWriter`), so each HDF5 chunk is a plain C-ordered array at a fixed place
in the file: :class:`RowBlocks` looks those places up once (HDF5's own chunk
index, ``chunk_iter``) and copies rows out of a read-only memory map of the
file. Datasets that are compressed, filtered, not chunked or of a foreign
byte order are read through h5py instead (same results, slower).
"""
from __future__ import annotations

import h5py
import numpy as np


class RowBlocks:
    """``read(starts, stops, out)``: rows ``[a, b)`` for each pair, one after another, into ``out``."""

    def __init__(self, path: str, dataset: h5py.Dataset):
        self.dataset = dataset
        self.row_shape = dataset.shape[1:]
        self.offsets = self._chunk_offsets(dataset)
        if self.offsets is not None:
            self.chunk_rows = dataset.chunks[0]
            self.map = np.memmap(path, dtype=np.uint8, mode="r")
            self.row_bytes = dataset.dtype.itemsize * int(np.prod(self.row_shape, dtype=np.int64))
            self.dtype = dataset.dtype

    @staticmethod
    def _chunk_offsets(d: h5py.Dataset):
        """File offset of each chunk along the first axis, or None where rows are not plain bytes."""
        if d.chunks is None or d.chunks[1:] != d.shape[1:] or not d.dtype.isnative:
            return None
        if d.id.get_create_plist().get_nfilters() != 0:
            return None
        offsets = np.full(-(-d.shape[0] // d.chunks[0]), -1, dtype=np.int64)
        try:
            d.id.chunk_iter(lambda info: offsets.__setitem__(info.chunk_offset[0] // d.chunks[0],
                                                             info.byte_offset))
        except (AttributeError, RuntimeError, OSError):
            return None
        return None if (offsets < 0).any() else offsets

    @property
    def fast(self) -> bool:
        return self.offsets is not None

    def read(self, starts, stops, out: np.ndarray) -> None:
        at = 0
        if self.offsets is None:
            space = self.dataset.id.get_space()
            for a, b in zip(starts, stops):
                space.select_hyperslab((a,) + (0,) * len(self.row_shape), (b - a,) + self.row_shape)
                self.dataset.id.read(h5py.h5s.create_simple((b - a,) + self.row_shape), space, out[at:at + b - a])
                at += b - a
            return
        flat = out.reshape(len(out), -1).view(np.uint8) if out.ndim > 1 else out.view(np.uint8).reshape(-1, out.itemsize)
        cr, rb = self.chunk_rows, self.row_bytes
        for a, b in zip(starts, stops):
            while a < b:                                   # a range may cross a chunk boundary
                chunk, r = divmod(a, cr)
                n = min(b - a, cr - r)
                start = self.offsets[chunk] + r * rb
                flat[at:at + n] = self.map[start:start + n * rb].reshape(n, rb)
                at += n
                a += n
