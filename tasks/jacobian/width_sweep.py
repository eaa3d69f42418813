"""Test error and Jacobian norms against model width, at each run's last epoch (seed 003's width sweep).

    python tasks/jacobian/width_sweep.py results/jacobian_width --out result_tables/jacobian_width
    python tasks/jacobian/width_sweep.py --config CONFIG    # as a sheet's row: `inputs`, `out` in the YAML

Reads the ``batch*.json`` files of tasks/jacobian/compute_stats.py under ``inputs`` (one run per
width and label-noise level, its ``train`` and ``test`` splits computed at the run's last epoch)
and writes to ``out`` (as a row: its run folder):

- ``width_sweep.csv`` / ``.md``: per run (width, label noise): the test error (the fraction of
  test samples predicted other than their label), the training error on the labels trained on,
  and the median of each statistic (``normalization``, default none) over the training samples
  with clean labels, those with changed labels, and the test samples;
- ``width_sweep.png``: the test error and each statistic against width (log scale), one colour
  per label-noise level; solid: training samples with clean labels, dashed: with changed
  labels, dotted: test samples.

Whatever shape comes out is what the runs measured: the figure draws the points, it fits nothing.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from typing import List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tasks.jacobian.shards import FORMAT, STATISTICS, read_batches  # noqa: E402

GROUPS = {("train", "clean"): ("train, clean labels", "-"), ("train", "noisy"): ("train, changed labels", "--"),
          ("test", "clean"): ("test", ":")}


def read_errors(folders: List[str]) -> pd.DataFrame:
    """One line per run, epoch and split: the fraction of samples predicted other than their clean
    label (``error``) and other than the label trained on (``error_on_targets``)."""
    counts: dict = {}
    files = sorted(f for folder in folders for f in glob.glob(os.path.join(folder, "**", "batch*.json"), recursive=True))
    for path in files:
        with open(path, encoding="utf-8") as f:
            batch = json.load(f)
        if batch.get("format") != FORMAT or "predictions" not in batch:
            continue
        meta = batch["metadata"]
        key = (meta["run"], int(meta["epoch"]), meta["split"])
        seen = counts.setdefault(key, {})
        for sample, pred, truth, target in zip(batch["sample_ids"], batch["predictions"], batch["ground_truths"],
                                               batch["targets"]):
            seen[int(sample)] = (pred != truth, pred != target)        # a shard counted twice counts once
    lines = [(run, epoch, split, np.mean([v[0] for v in seen.values()]), np.mean([v[1] for v in seen.values()]),
              len(seen)) for (run, epoch, split), seen in counts.items()]
    return pd.DataFrame(lines, columns=["run", "epoch", "split", "error", "error_on_targets", "samples"])


def sweep(stats: pd.DataFrame, errors: pd.DataFrame, normalization: str = "none") -> pd.DataFrame:
    """One line per run at its last epoch: width, label noise, errors and the statistics' medians."""
    stats = stats[stats["normalization"] == normalization]
    if stats.empty:
        raise ValueError(f"no statistics with normalization {normalization!r} in the inputs")
    last = stats.groupby("run")["epoch"].max()
    stats = stats[stats["epoch"] == stats["run"].map(last)]
    lines = []
    for run, part in stats.groupby("run", sort=False):
        train = part[part["split"] == "train"]
        line = {"run": run, "network": part["network"].iloc[0], "width": part["width"].iloc[0],
                "label_noise": float(train["label_noise"].iloc[0]) if len(train) else np.nan,
                "epoch": int(last[run])}
        for split in ("test", "train"):
            found = errors[(errors["run"] == run) & (errors["epoch"] == last[run]) & (errors["split"] == split)]
            line[f"{split}_error"] = float(found["error_on_targets"].iloc[0]) if len(found) else np.nan
        for stat in STATISTICS:
            for (split, labels), _ in GROUPS.items():
                values = part[(part["split"] == split) & (part["labels"] == labels) & (part["statistic"] == stat)]
                line[f"{stat}_{split}_{labels}"] = float(values["value"].median()) if len(values) else np.nan
        lines.append(line)
    return pd.DataFrame(lines).sort_values(["label_noise", "width"]).reset_index(drop=True)


def markdown(table: pd.DataFrame) -> str:
    stats = [s for s in STATISTICS if table[[c for c in table.columns if c.startswith(s)]].notna().any().any()]
    head = ["width", "label noise", "epoch", "test error (%)", "train error (%)"]
    head += [f"{s} median: {GROUPS[g][0]}" for s in stats for g in GROUPS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table.to_dict("records"):
        cells = [str(int(r["width"])), f"{100 * r['label_noise']:.0f}%", str(r["epoch"]),
                 f"{100 * r['test_error']:.1f}", f"{100 * r['train_error']:.1f}"]
        cells += ["" if pd.isna(r[f"{s}_{g[0]}_{g[1]}"]) else f"{r[f'{s}_{g[0]}_{g[1]}']:.4g}" for s in stats for g in GROUPS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure(table: pd.DataFrame, path: str, normalization: str = "none") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = [s for s in STATISTICS if table[[c for c in table.columns if c.startswith(s)]].notna().any().any()]
    fig, axes = plt.subplots(1, 1 + len(stats), figsize=(4.6 * (1 + len(stats)), 3.8), squeeze=False)
    colours = plt.get_cmap("tab10")
    for k, (noise, part) in enumerate(table.groupby("label_noise", sort=True)):
        colour, label = colours(k % 10), f"{100 * noise:.0f}% labels changed"
        axes[0][0].plot(part["width"], 100 * part["test_error"], "o-", color=colour, label=label)
        for ax, stat in zip(axes[0][1:], stats):
            for (split, labels), (name, style) in GROUPS.items():
                values = part[f"{stat}_{split}_{labels}"]
                if values.notna().any():
                    ax.plot(part["width"], values, style, marker="o", ms=3, color=colour, label=f"{label}: {name}")
    axes[0][0].set_ylabel("test error (%)")
    for ax, stat in zip(axes[0][1:], stats):
        ax.set_ylabel(f"median {stat} norm ({normalization})")
        ax.set_yscale("log")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    widths = sorted(int(w) for w in table["width"].unique())
    for ax in axes[0]:
        ax.set_xscale("log", base=2)
        ax.set_xticks(widths)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("width")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if stats:
        axes[0][-1].legend(fontsize=7)
    fig.suptitle("Test error and input-Jacobian norms against width, at the last epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> pd.DataFrame:
    from tasks.common import run_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="*", help="folders of compute_stats.py's files")
    parser.add_argument("--config", help="a YAML with inputs, out and normalization (a sheet's row)")
    parser.add_argument("--out", help="where the table and figure go (default: the row's run folder, else .)")
    args = parser.parse_args(argv)
    cfg = {}
    if args.config:
        import yaml

        with open(args.config, encoding="utf-8") as f:
            cfg = yaml.safe_load(f) or {}
    inputs = args.inputs or cfg.get("inputs") or ["results/jacobian_width"]
    inputs = [inputs] if isinstance(inputs, str) else list(inputs)
    out = args.out or cfg.get("out") or run_dir() or "."
    normalization = cfg.get("normalization", "none")
    table = sweep(read_batches(inputs), read_errors(inputs), normalization)
    os.makedirs(out, exist_ok=True)
    table.to_csv(os.path.join(out, "width_sweep.csv"), index=False)
    text = markdown(table)
    with open(os.path.join(out, "width_sweep.md"), "w", encoding="utf-8") as f:
        f.write(text)
    figure(table, os.path.join(out, "width_sweep.png"), normalization)
    print(text, flush=True)
    print(f"{len(table)} runs -> {out}/width_sweep.md, width_sweep.csv, width_sweep.png", flush=True)
    from runner import report

    report({"runs": int(len(table)), "table": os.path.join(out, "width_sweep.md")})
    return table


if __name__ == "__main__":
    main()
