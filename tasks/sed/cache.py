"""HDF5 feature caches: content-hashed names, resumable writing, and an index.

Layout of one cache file (docs/methods.md, section 1): datasets ``embed`` float32
[N*E, D], ``label`` int64 [N*E, 1], ``index`` int64 [N*E, 1], resizable along
the first axis; E augmented passes over N samples, pass after pass. The file
name is ``<key>_<set name>.hdf5`` where ``key`` is a blake2b digest (10 bytes,
20 hex characters) of everything that determines the features: the backbone
(its config and its checkpoint file's content), the set spec, the input
configuration and the number of passes. Equal configs map to the same file.

A file is written as ``<name>.hdf5.partial`` and renamed when complete, with
attributes ``complete``, ``n_total`` and ``n_written`` (updated after every
flushed batch). So a finished file is reused; an interrupted one is resumed
from ``n_written`` (or rebuilt if it cannot be read); and a truncated or
otherwise incomplete file is never used: :func:`open_cache` refuses it.

``<cache dir>/index.json`` maps set names to files, so training and
evaluation configs name sets (``in_val``) or groups (``C-1``) instead of
hashes. ``<cache dir>/heads/<backbone id>.pt`` holds the backbone's head, from
which ensemble members start.
"""
from __future__ import annotations

import json
import os
import re
from typing import Dict, List, Optional

import h5py
import numpy as np
from filelock import FileLock

from runner.core.rundir import write_json
from tasks.common import digest  # noqa: F401  (re-exported: the cache key)

CACHE_FORMAT = 1
INDEX = "index.json"


def cache_key(backbone_id: str, set_spec: dict, data_cfg: dict) -> str:
    return digest({"format": CACHE_FORMAT, "backbone": backbone_id, "set": set_spec, "input": data_cfg})


def cache_filename(key: str, set_name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._+-]+", "_", set_name)
    return f"{key}_{safe}.hdf5"


class IncompleteCache(RuntimeError):
    pass


def check_complete(path: str) -> dict:
    """The attributes of a finished, intact cache file; raises IncompleteCache otherwise."""
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            n = int(attrs.get("n_total", -1))
            if not attrs.get("complete"):
                raise IncompleteCache(f"{path} was not finished")
            lengths = {len(f["embed"]), len(f["label"]), len(f["index"])}
            if lengths != {n}:
                raise IncompleteCache(f"{path} holds {sorted(lengths)} rows, expected {n}")
            f["embed"][n - 1]        # the last row must be readable (catches truncated files)
    except IncompleteCache:
        raise
    except (OSError, KeyError, ValueError) as e:
        raise IncompleteCache(f"{path} is damaged or truncated ({e})") from e
    return attrs


def open_cache(path: str) -> h5py.File:
    """Open a cache for reading, refusing unfinished or truncated files."""
    check_complete(path)
    return h5py.File(path, "r")


class CacheWriter:
    """Appends feature batches to ``<path>.partial``; :meth:`finish` renames it to ``path``.

    If a ``.partial`` file with the same key exists, writing resumes after its
    last flushed row (``start``); if it cannot be read, it is rebuilt.
    """

    def __init__(self, path: str, key: str, n_total: int, dim: int, attrs: Optional[dict] = None):
        self.path, self.partial = path, path + ".partial"
        self.start = 0
        self.resumed = False
        if os.path.exists(self.partial):
            try:
                f = h5py.File(self.partial, "r+")
                ok = f.attrs.get("key") == key and f["embed"].shape[1] == dim
                if ok:
                    self.start = int(f.attrs["n_written"])
                    for name in ("embed", "label", "index"):
                        f[name].resize(self.start, axis=0)
                    self.file, self.resumed = f, True
                else:
                    f.close()
            except (OSError, KeyError, ValueError):
                pass
            if not self.resumed:
                os.remove(self.partial)
        if not self.resumed:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            f = h5py.File(self.partial, "w")
            rows = max(1, min(1024, (1 << 20) // (4 * dim)))    # ~1 MiB chunks
            f.create_dataset("embed", (0, dim), maxshape=(None, dim), dtype="float32", chunks=(rows, dim))
            f.create_dataset("label", (0, 1), maxshape=(None, 1), dtype="int64", chunks=(rows * 16, 1))
            f.create_dataset("index", (0, 1), maxshape=(None, 1), dtype="int64", chunks=(rows * 16, 1))
            for k, v in (attrs or {}).items():
                f.attrs[k] = v
            f.attrs.update({"key": key, "n_total": n_total, "n_written": 0, "complete": False})
            self.file = f
        self.n = self.start

    def write(self, embed: np.ndarray, label: np.ndarray, index: np.ndarray) -> None:
        b = len(embed)
        f = self.file
        for name, value in (("embed", embed), ("label", label.reshape(-1, 1)), ("index", index.reshape(-1, 1))):
            f[name].resize(self.n + b, axis=0)
            f[name][self.n:self.n + b] = value
        self.n += b
        f.flush()                       # rows first, then the counter that vouches for them
        f.attrs["n_written"] = self.n

    def finish(self) -> str:
        if self.n != int(self.file.attrs["n_total"]):
            raise RuntimeError(f"cache has {self.n} rows, expected {self.file.attrs['n_total']}")
        self.file.attrs["complete"] = True
        self.file.close()
        os.replace(self.partial, self.path)
        return self.path

    def close(self) -> None:
        if self.file.id.valid:
            self.file.close()


# --- the index: set name -> file ---------------------------------------------------------

def read_index(cache_dir: str) -> Dict[str, dict]:
    path = os.path.join(cache_dir, INDEX)
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def register_sets(cache_dir: str, entries: Dict[str, dict]) -> None:
    """Add or replace index entries, under a lock (several caching rows may run at once)."""
    path = os.path.join(cache_dir, INDEX)
    with FileLock(os.path.join(cache_dir, ".index.json.lock")):
        index = read_index(cache_dir)
        index.update(entries)
        write_json(path, dict(sorted(index.items())))


def resolve_sets(cache_dir: str, name: str) -> List[dict]:
    """Index entries for a set name, or for every set of a group (``C-1``)."""
    index = read_index(cache_dir)
    if not index:
        raise FileNotFoundError(f"no cached sets in {cache_dir} (run tasks/sed/cache_features.py first)")
    if name in index:
        found = [dict(index[name], name=name)]
    else:
        found = [dict(e, name=n) for n, e in sorted(index.items()) if e.get("group") == name]
    if not found:
        groups = sorted({e["group"] for e in index.values() if e.get("group")})
        raise KeyError(f"no cached set or group {name!r} in {cache_dir}; sets: {', '.join(sorted(index))}"
                       + (f"; groups: {', '.join(groups)}" if groups else ""))
    return [dict(e, path=os.path.join(cache_dir, e["file"])) for e in found]
