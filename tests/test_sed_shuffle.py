"""Streamed shuffles of caches larger than memory are as mixed as a uniform shuffle.

Caches are written in class order (image folders are read class by class), so
a stream that shuffles only inside long contiguous blocks feeds every batch a
handful of classes. These tests write such a class-ordered cache 20 times
larger than the memory limit and compare the classes per batch of the stream
with those of a uniform permutation of the same file.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from tasks.sed.cache import CacheWriter
from tasks.sed.features import CachedFeatures


def class_ordered_cache(path, n, classes, dim):
    w = CacheWriter(str(path), "key", n, dim)
    labels = np.repeat(np.arange(classes), n // classes)
    step = 64_000
    for a in range(0, n, step):
        b = min(n, a + step)
        rows = np.arange(a, b)
        embed = np.repeat(rows[:, None], dim, axis=1).astype(np.float32)   # embed encodes the row
        w.write(embed, labels[a:b], rows)
    return w.finish()


def budget_gb(n, dim, times_smaller):
    return n * (dim * 4 + 8) / times_smaller / 2 ** 30


def distinct_classes(feats, batches, seed=0, epoch=0):
    it = feats.batches(256, seed=seed, epoch=epoch, drop_last=True)
    return np.array([len(np.unique(y.numpy())) for _, y in itertools.islice(it, batches)])


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory):
    """640,000 rows of 1000 classes (640 each), class after class, like ImageNet's train cache."""
    return class_ordered_cache(tmp_path_factory.mktemp("shuffle") / "train.hdf5", 640_000, 1000, 2)


def test_streamed_batches_hold_as_many_classes_as_a_uniform_shuffle(imagenet_like):
    streamed = CachedFeatures(imagenet_like, budget_gb(640_000, 2, 20))
    uniform = CachedFeatures(imagenet_like, 1.0)
    assert not streamed.in_memory and uniform.in_memory
    assert streamed.block_rows > 1          # real multi-row reads, not row-by-row
    s = distinct_classes(streamed, 300)
    u = distinct_classes(uniform, 300)
    # a uniform shuffle: 1000 * (1 - (1 - 1/1000)^256) ~ 226 classes per batch of 256
    assert 220 <= np.median(u) <= 232
    assert np.median(s) >= 0.97 * np.median(u), (np.median(s), np.median(u))
    assert np.percentile(s, 5) >= 0.95 * np.percentile(u, 5)


def test_stream_stays_within_the_memory_limit(imagenet_like):
    limit = budget_gb(640_000, 2, 20)
    feats = CachedFeatures(imagenet_like, limit)
    row_bytes = 2 * 4 + 8
    assert feats.window_rows * row_bytes <= limit * 2 ** 30 / 2
    assert feats.window_rows * 20 < 640_000          # the file is many windows long


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory):
    return class_ordered_cache(tmp_path_factory.mktemp("shuffle_small") / "s.hdf5", 100_000, 100, 2)


def test_every_row_once_per_epoch_reproducible_and_new_each_epoch(small_cache):
    feats = CachedFeatures(small_cache, budget_gb(100_000, 2, 2))
    assert not feats.in_memory and feats.block_rows > 1
    epochs = []
    for epoch in (0, 0, 1):
        xs, ys = zip(*feats.batches(300, seed=3, epoch=epoch))
        rows = np.concatenate([x[:, 0].numpy() for x in xs]).astype(np.int64)
        labels = np.concatenate([y.numpy() for y in ys])
        assert sorted(rows.tolist()) == list(range(100_000))       # every row exactly once
        assert (labels == rows // 1000).all()                       # features and labels stay paired
        assert all(len(y) == 300 for y in ys[:-1])                 # full batches across windows
        epochs.append(rows)
    assert (epochs[0] == epochs[1]).all()                          # a function of (seed, epoch)
    assert not (epochs[0] == epochs[2]).all()


def test_skip_resumes_the_same_batches(small_cache):
    feats = CachedFeatures(small_cache, budget_gb(100_000, 2, 2))
    full = [x[:, 0].numpy() for x, _ in feats.batches(128, seed=1, epoch=2, drop_last=True)]
    resumed = [x[:, 0].numpy() for x, _ in feats.batches(128, seed=1, epoch=2, drop_last=True, skip=50)]
    assert len(resumed) == len(full) - 50
    assert all((a == b).all() for a, b in zip(full[50:], resumed))


def test_window_smaller_than_a_batch(tmp_path):
    path = class_ordered_cache(tmp_path / "tiny.hdf5", 4_000, 10, 2)
    feats = CachedFeatures(path, budget_gb(4_000, 2, 40))       # windows of 50 rows, batches of 256
    assert feats.window_rows < 256
    xs, ys = zip(*feats.batches(256, seed=0))
    assert [len(y) for y in ys] == [256] * 15 + [160]
    assert sorted(np.concatenate([x[:, 0].numpy() for x in xs]).astype(int).tolist()) == list(range(4_000))


def test_row_blocks_read_the_same_rows_as_h5py(small_cache, tmp_path):
    import h5py

    from tasks.sed.h5blocks import RowBlocks

    rng = np.random.default_rng(0)
    starts = np.sort(rng.choice(100_000 - 700, 300, replace=False))
    stops = starts + rng.integers(1, 700, size=300)          # many cross a chunk boundary
    with h5py.File(small_cache, "r") as f:
        expected = np.concatenate([f["embed"][a:b] for a, b in zip(starts, stops)])
        labels = np.concatenate([f["label"][a:b] for a, b in zip(starts, stops)])
        fast = RowBlocks(small_cache, f["embed"])
        assert fast.fast
        out = np.empty_like(expected)
        fast.read(starts.tolist(), stops.tolist(), out)
        assert (out == expected).all()
        out_y = np.empty_like(labels)
        RowBlocks(small_cache, f["label"]).read(starts.tolist(), stops.tolist(), out_y)
        assert (out_y == labels).all()
    compressed = tmp_path / "gz.hdf5"                        # not plain bytes on disk: read through h5py
    with h5py.File(compressed, "w") as g:
        g.create_dataset("embed", data=expected, chunks=(64, 2), compression="gzip")
    with h5py.File(compressed, "r") as g:
        slow = RowBlocks(str(compressed), g["embed"])
        assert not slow.fast
        starts2 = np.arange(0, len(expected) - 10, 97)
        out = np.empty((len(starts2) * 10, 2), dtype=np.float32)
        slow.read(starts2.tolist(), (starts2 + 10).tolist(), out)
        assert (out == np.concatenate([expected[a:a + 10] for a in starts2])).all()


def test_an_epoch_over_one_chunk_streams_exactly_that_chunk(small_cache):
    """epoch_rows: an epoch is one chunk of the file; streamed or in memory, every row of it once."""
    for limit in (budget_gb(100_000, 2, 8), 1.0):
        feats = CachedFeatures(small_cache, limit)
        rows = np.concatenate([x[:, 0].numpy() for x, _ in feats.batches(256, seed=0, epoch=1, span=(1001, 51007))])
        assert sorted(rows.astype(int).tolist()) == list(range(1001, 51007)), feats.in_memory
        assert feats.num_batches(256, drop_last=True, span=(1001, 51007)) == 50006 // 256
    with pytest.raises(ValueError, match="outside"):
        next(feats.batches(10, span=(0, 200_000)))
