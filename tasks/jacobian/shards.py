"""The Jacobian statistics' batch files (``batch*.json``, format ``sheetrun_jacobian/1``): one per
batch of one run, epoch and split, written by compute_stats.py, read back by aggregate.py and
width_sweep.py."""
from __future__ import annotations

import glob
import json
import os
from typing import List

import numpy as np
import pandas as pd

FORMAT = "sheetrun_jacobian/1"


def write_json(obj: dict, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


KEYS = ["run", "epoch", "split", "normalization", "sample_id"]
STATISTICS = ("frobenius", "operator")


def read_batches(folders: List[str]) -> pd.DataFrame:
    """One line per sample x normalisation x statistic of every batch file under ``folders``."""
    lines = []
    files = sorted(f for folder in folders for f in glob.glob(os.path.join(folder, "**", "batch*.json"), recursive=True))
    for path in files:
        with open(path, encoding="utf-8") as f:
            batch = json.load(f)
        if batch.get("format") != FORMAT:
            continue
        meta = batch["metadata"]
        noise = (meta.get("label_noise") or {}).get("fraction", 0.0) if meta["split"] == "train" else 0.0
        noisy = np.asarray(batch["targets"]) != np.asarray(batch["ground_truths"])
        for norm, values in batch["stats"].items():
            for stat in STATISTICS:
                if stat not in values:
                    continue
                for i, sample in enumerate(batch["sample_ids"]):
                    lines.append((meta["run"], int(meta["epoch"]), meta["split"], norm, int(sample), stat,
                                  float(values[stat][i]), "noisy" if noisy[i] else "clean", noise,
                                  meta.get("network"), (meta.get("network_kwargs") or {}).get("width")))
    columns = KEYS + ["statistic", "value", "labels", "label_noise", "network", "width"]
    df = pd.DataFrame(lines, columns=columns)
    if df.empty:
        raise FileNotFoundError(f"no Jacobian statistics (batch*.json of {FORMAT}) under {', '.join(folders)}")
    repeated = df.duplicated(KEYS + ["statistic"], keep=False)
    if repeated.any():
        spread = df[repeated].groupby(KEYS + ["statistic"])["value"].agg(lambda v: v.max() - v.min())
        if (spread > 1e-6 * (1 + df[repeated]["value"].abs().max())).any():
            bad = spread[spread > 0].index[0]
            raise ValueError(f"sample {bad[4]} of {bad[0]} epoch {bad[1]} {bad[2]} ({bad[3]}) has two different "
                             "values in two files: two rows computed it differently")
        df = df.drop_duplicates(KEYS + ["statistic"])
    return df
