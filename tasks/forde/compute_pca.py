"""PCA of a dataset's normalised, flattened training inputs: FoRDE's length scales.

    python tasks/forde/compute_pca.py --config default_configs/forde/pca.yaml

``data.train`` is a set spec of :mod:`tasks.data` (read without augmentation), normalised with
``data.mean`` / ``data.std`` at ``data.input_size``. The second-moment matrix
C = X^T X / (N - 1) of the flattened inputs (not centred: the authors' ``calculate_pca.py``)
is accumulated batch by batch in float64, so the set never sits in memory (TinyImageNet:
100,000 x 12,288 values; C is 12,288^2). Saved to ``save_path`` (.npz) as the authors save it:
``eigenvectors`` [D, D] (columns, by decreasing eigenvalue) and ``eigenvalues`` — the square
roots of C's eigenvalues, the length scales — in float32; with ``layout`` (CHW: how a tensor
flattens here) and the sample count.

:func:`tasks.forde.pca.load_pca` reads the file back, and reads the authors' own files too (flattened HWC: their
eigenvector rows are put in CHW order).
"""
from __future__ import annotations

import time
from typing import Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader

from tasks.common import load_config, save_npz_atomic
from tasks.forde.pca import LAYOUT


def second_moment(loader, dims: int, every: float = 10.0) -> Tuple[np.ndarray, int]:
    """(X^T X in float64, N) over a loader of (images, ...) batches, printing progress."""
    total = torch.zeros(dims, dims, dtype=torch.float64)
    n, last = 0, time.time()
    for batch in loader:
        x = batch[0].flatten(1).double()
        if x.shape[1] != dims:
            raise ValueError(f"images flatten to {x.shape[1]} values, expected {dims} (data.input_size)")
        total.addmm_(x.T, x)
        n += len(x)
        if time.time() - last > every:
            print(f"  {n} images", flush=True)
            last = time.time()
    return total.numpy(), n


def pca_of(moment: np.ndarray, n: int) -> Tuple[np.ndarray, np.ndarray]:
    """(eigenvectors as columns, square roots of the eigenvalues), by decreasing eigenvalue, of
    moment / (n - 1)."""
    if n < 2:
        raise ValueError(f"a PCA needs at least 2 samples, got {n}")
    values, vectors = np.linalg.eigh(moment / (n - 1))
    order = np.argsort(values)[::-1]
    return vectors[:, order], np.sqrt(np.clip(values[order], 0, None))


def main(argv=None) -> None:
    from runner import report
    from tasks.classify.setup import data_config
    from tasks.data import build_set

    cfg = load_config(__doc__.splitlines()[0], argv)
    spec = dict(cfg["data"]["train"], augment=False)
    spec.pop("label_noise", None)
    dataset, _ = build_set(spec, data_config(cfg))
    dims = int(np.prod(cfg["data"]["input_size"]))
    print(f"PCA of {len(dataset)} images of {dims} values", flush=True)
    loader = DataLoader(dataset, batch_size=int(cfg.get("batch_size", 256)), num_workers=int(cfg.get("num_workers", 0)))
    moment, n = second_moment(loader, dims)
    vectors, scales = pca_of(moment, n)
    path = cfg["save_path"]
    save_npz_atomic(path, {"eigenvectors": vectors.astype(np.float32), "eigenvalues": scales.astype(np.float32),
                           "layout": np.array(LAYOUT), "samples": np.array(n),
                           "input_size": np.array(cfg["data"]["input_size"])})
    share = np.cumsum(scales ** 2) / max(float((scales ** 2).sum()), 1e-300)
    top = int(np.searchsorted(share, 0.9) + 1)
    report({"samples": n, "dims": dims, "components_for_90pct": top, "pca_path": path})
    print(f"saved {path}: {top} of {dims} components hold 90% of the second moment", flush=True)


if __name__ == "__main__":
    main()
