"""Small helpers the task scripts share: config loading, devices, atomic saves, progress, digests."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from typing import Optional

import yaml


def load_config(description: str, argv=None) -> dict:
    """Parse ``--config PATH`` (the sheetrun convention) and return the YAML as a dict."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="YAML config (sheetrun writes one per run)")
    args = parser.parse_args(argv)
    with open(args.config, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    if not isinstance(cfg, dict):
        raise ValueError(f"{args.config}: the config must be a mapping")
    return cfg


def pick_device(name: Optional[str] = "auto"):
    import torch

    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def save_atomic(obj, path: str) -> None:
    """torch.save to a temporary file, then rename: readers never see half a file."""
    import torch

    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_npz_atomic(path: str, arrays: dict, compressed: bool = False) -> None:
    """numpy arrays as one .npz (``compressed``: np.savez_compressed), via a temporary file and a
    rename: readers never see half a file."""
    import numpy as np

    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}.npz"
    (np.savez_compressed if compressed else np.savez)(tmp, **arrays)
    os.replace(tmp, path)


def progress(total: int, desc: str, initial: int = 0):
    """A tqdm bar on stdout; in a log file (not a terminal) it prints a line every 10 s."""
    from tqdm import tqdm

    tty = sys.stdout.isatty()
    return tqdm(total=total, initial=initial, desc=desc, file=sys.stdout, dynamic_ncols=tty,
                mininterval=0.1 if tty else 10.0, ascii=not tty, unit="img")


def run_dir() -> Optional[str]:
    """The sheetrun run folder of this job, if it runs under sheetrun."""
    return os.environ.get("SHEETRUN_RUN_DIR")


def digest(obj, size: int = 10) -> str:
    """blake2b digest (``size`` bytes, hex) of a JSON-serialisable object."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=size).hexdigest()
