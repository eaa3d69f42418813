"""Jacobian statistics of a sheet's rows, from their per-batch files, as one table and one figure.

    python tasks/jacobian/aggregate.py results/jacobian --out result_tables/jacobian
    python tasks/jacobian/aggregate.py --config CONFIG     # as a sheet's row: `inputs`, `out` in the YAML

Reads every ``batch*.json`` that tasks/jacobian/compute_stats.py wrote under the ``inputs``
folders. A sample counted twice for the same run, epoch, split and normalisation (two rows
covering the same shard) is counted once if its numbers agree and refused if they do not.
Writes to ``out`` (as a row: its run folder):

- ``jacobian.csv``: one line per run x epoch x split x clean / noisy x normalisation x
  statistic: samples, mean, median, std;
- ``jacobian.md``: the same, the runs' final epochs first, as a Markdown table;
- ``jacobian.png``: each statistic against epoch, the training samples with clean and with
  noisy labels as separate lines (solid / dashed), one colour per run, a panel per
  normalisation (columns) and statistic (rows).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import pandas as pd  # noqa: E402

from tasks.jacobian.shards import STATISTICS, read_batches  # noqa: E402

def table(df: pd.DataFrame) -> pd.DataFrame:
    """samples / mean / median / std per run, epoch, split, label group, normalisation, statistic."""
    group = ["run", "network", "width", "label_noise", "split", "epoch", "labels", "normalization", "statistic"]
    out = df.groupby(group, dropna=False)["value"].agg(samples="count", mean="mean", median="median", std="std")
    return out.reset_index().sort_values(group)


def markdown(summary: pd.DataFrame) -> str:
    lines = ["| run | split | epoch | labels | normalization | statistic | samples | mean | median | std |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary.itertuples():
        lines.append(f"| {r.run} | {r.split} | {r.epoch} | {r.labels} | {r.normalization} | {r.statistic} | "
                     f"{r.samples} | {r.mean:.4g} | {r.median:.4g} | {r.std:.3g} |")
    return "\n".join(lines) + "\n"


def figure(summary: pd.DataFrame, path: str, split: str = "train") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = summary[summary["split"] == split]
    if data.empty:
        data, split = summary, "all splits"
    norms = list(dict.fromkeys(data["normalization"]))
    stats = [s for s in STATISTICS if s in set(data["statistic"])]
    runs = list(dict.fromkeys(data["run"]))
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(len(stats), len(norms), figsize=(4.2 * len(norms), 3.2 * len(stats)), squeeze=False)
    for i, stat in enumerate(stats):
        for j, norm in enumerate(norms):
            ax = axes[i][j]
            if data[(data["normalization"] == norm) & (data["statistic"] == stat)].empty:
                ax.text(0.5, 0.5, f"{norm}: a gradient,\nits {stat} norm is its 2-norm\n(the frobenius panel)",
                        ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.4")
                ax.set_axis_off()
                continue
            for k, run in enumerate(runs):
                for labels, style in (("clean", "-"), ("noisy", "--")):
                    line = data[(data["run"] == run) & (data["normalization"] == norm) & (data["statistic"] == stat)
                                & (data["labels"] == labels)].sort_values("epoch")
                    if not line.empty:
                        ax.plot(line["epoch"], line["median"], style, marker="o", ms=3, color=colours(k % 10),
                                label=f"{run} ({labels})")
            panel = data[(data["normalization"] == norm) & (data["statistic"] == stat)]
            zeros = sorted(set(panel.loc[panel["median"] <= 0, "epoch"]))
            if zeros:                     # e.g. the authors' power-iteration rule reports 0 under its tolerance
                ax.text(0.02, 0.02, f"median 0 at epoch {', '.join(map(str, zeros))}: not on this log scale",
                        transform=ax.transAxes, fontsize=7, color="0.35")
            ax.set_title(f"{stat} norm, {norm}", fontsize=10)
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"median over {split} samples")
            ax.set_yscale("log")
            ax.grid(alpha=0.3)
    found = {}
    for ax in axes.flat:                                  # every line once, whichever panel has it
        for handle, label in zip(*ax.get_legend_handles_labels()):
            found.setdefault(label, handle)
    handles, labels = list(found.values()), list(found)
    fig.legend(handles, labels, loc="lower center", ncol=min(4, max(1, len(labels))), fontsize=8,
               bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(labels) // 4), 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def aggregate(inputs: List[str], out: str, split: str = "train") -> pd.DataFrame:
    df = read_batches(inputs)
    summary = table(df)
    os.makedirs(out, exist_ok=True)
    summary.to_csv(os.path.join(out, "jacobian.csv"), index=False)
    with open(os.path.join(out, "jacobian.md"), "w", encoding="utf-8") as f:
        f.write(markdown(summary))
    figure(summary, os.path.join(out, "jacobian.png"), split)
    return summary


def main(argv=None) -> None:
    from tasks.common import run_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="*", help="folders of compute_stats.py's files")
    parser.add_argument("--config", help="a YAML with inputs, out and figure_split (a sheet's row)")
    parser.add_argument("--out", help="where the table and figure go (default: the row's run folder, else .)")
    parser.add_argument("--figure-split", default=None, help="the split the figure shows (default: train)")
    args = parser.parse_args(argv)
    cfg = {}
    if args.config:
        import yaml

        with open(args.config, encoding="utf-8") as f:
            cfg = yaml.safe_load(f) or {}
    inputs = args.inputs or cfg.get("inputs") or ["results/jacobian"]
    inputs = [inputs] if isinstance(inputs, str) else list(inputs)
    out = args.out or cfg.get("out") or run_dir() or "."
    summary = aggregate(inputs, out, args.figure_split or cfg.get("figure_split") or "train")
    runs = summary.groupby("run")["epoch"].nunique()
    print(f"{len(summary)} lines from {len(runs)} runs ({', '.join(f'{r}: {n} epochs' for r, n in runs.items())}) "
          f"-> {out}/jacobian.md, jacobian.csv, jacobian.png", flush=True)
    from runner import report

    report({"runs": int(len(runs)), "lines": int(len(summary)), "table": os.path.join(out, "jacobian.md")})


if __name__ == "__main__":
    main()
