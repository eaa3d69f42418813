"""A saved PCA of the inputs (an ``.npz`` of ``eigenvectors``, ``eigenvalues`` and ``layout``): what
compute_pca.py writes and FoRDE's repulsion reads; the authors' files (HWC rows) load too."""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch

LAYOUT = "CHW"


def load_pca(path: str, input_size: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(eigenvectors [D, D], length scales [D]) of a saved PCA, rows in this project's CHW order."""
    with np.load(path) as f:
        vectors, scales = f["eigenvectors"], f["eigenvalues"]
        layout = str(f["layout"]) if "layout" in f.files else "HWC"          # the authors' files: HWC
    c, h, w = (int(v) for v in input_size)
    if vectors.shape != (c * h * w, c * h * w):
        raise ValueError(f"{path} holds a PCA of {vectors.shape[0]} values; inputs of {list(input_size)} have "
                         f"{c * h * w}")
    if layout == "HWC":
        order = np.arange(c * h * w).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)   # CHW position -> HWC row
        vectors = vectors[order]
    elif layout != LAYOUT:
        raise ValueError(f"{path}: unknown layout {layout!r}")
    return torch.from_numpy(np.ascontiguousarray(vectors)).float(), torch.from_numpy(scales.copy()).float()
