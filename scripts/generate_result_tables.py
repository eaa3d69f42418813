"""The SED paper's two result tables, from evaluation results.

    python scripts/generate_result_tables.py result_sheets/demo.csv
    python scripts/generate_result_tables.py result_sheets/evaluation.csv --out result_tables
    python scripts/generate_result_tables.py --results a.json b.json

Reads every Completed row of the given sheets whose run folder holds an
``eval_results.json`` (written by tasks/evaluate.py), or the JSON files given
with ``--results``, and writes to ``--out`` (default ``result_tables/``):

- ``ood_gen.md`` / ``ood_gen.csv``: OOD generalization, ensemble accuracy (%)
  on in_val, any natural shifts, C-1 and C-5;
- ``ood_det.md`` / ``ood_det.csv``: OOD detection AUROC, one row per model and
  score, one column per OOD set;
- ``results.png``: both as a figure.

Both Markdown tables are printed; the best value of each column is in bold.
A model is named by its row's ``name`` cell, else its file name.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import pandas as pd

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from runner.sheet import open_sheet  # noqa: E402


def results_from_sheet(location: str) -> dict:
    """{model name: eval results} for the Completed evaluation rows of a sheet."""
    table = open_sheet(location).read()
    root = os.path.dirname(os.path.dirname(os.path.abspath(location)))
    found = {}
    for row in table:
        folder = row.get("run_folder")
        if row.get("status") != "Completed" or not folder:
            continue
        path = os.path.join(folder if os.path.isabs(folder) else os.path.join(root, folder), "eval_results.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                results = json.load(f)
            name = row.get("name") or os.path.splitext(os.path.basename(results["model"]))[0]
            found[name] = results
    return found


def tables(results: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    gen = pd.DataFrame({name: {s: 100 * a["ensemble_acc"] for s, a in r["accuracy"].items()}
                        for name, r in results.items()}).T
    det = {}
    for name, r in results.items():
        for ood_set, scores in r["ood_detection"].items():
            for score, value in scores.items():
                det.setdefault((name, score), {})[ood_set] = value
    det_df = pd.DataFrame(det).T
    if len(det_df):
        det_df.index.names = ["model", "score"]
    return gen, det_df


def markdown(df: pd.DataFrame, digits: int) -> str:
    """A Markdown table with the best value of each column in bold."""
    if df.empty:
        return "(no results)"
    index_names = [n or "" for n in (df.index.names if df.index.nlevels > 1 else [df.index.name])]
    header = "| " + " | ".join(index_names + [str(c) for c in df.columns]) + " |"
    lines = [header, "|" + "---|" * (len(index_names) + len(df.columns))]
    best = df.max()
    for idx, row in df.iterrows():
        cells = list(idx) if isinstance(idx, tuple) else [idx]
        for col in df.columns:
            v = row[col]
            text = "" if pd.isna(v) else f"{v:.{digits}f}"
            if not pd.isna(v) and v == best[col] and len(df) > 1:
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def figure(gen: pd.DataFrame, det: pd.DataFrame, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, max(4.0, 0.28 * len(det) + 1.5)),
                             gridspec_kw={"width_ratios": [1.2, 1]})
    gen.T.plot.bar(ax=axes[0], rot=0)
    axes[0].set_ylabel("ensemble accuracy (%)")
    axes[0].set_title("OOD generalization")
    axes[0].set_ylim(max(0, gen.min().min() - 10), 100)
    axes[0].legend(fontsize=8)
    if not det.empty:
        im = axes[1].imshow(det.values, cmap="viridis", vmin=0.5, vmax=1.0, aspect="auto")
        axes[1].set_xticks(range(len(det.columns)), det.columns, rotation=30, ha="right")
        axes[1].set_yticks(range(len(det)), [f"{m} / {s}" for m, s in det.index], fontsize=7)
        for i in range(det.shape[0]):
            for j in range(det.shape[1]):
                axes[1].text(j, i, f"{det.values[i, j]:.2f}", ha="center", va="center", fontsize=6,
                             color="white" if det.values[i, j] < 0.75 else "black")
        fig.colorbar(im, ax=axes[1], label="AUROC")
    axes[1].set_title("OOD detection AUROC")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write the SED result tables (Markdown, CSV, PNG).")
    parser.add_argument("sheets", nargs="*", help="result sheets with evaluation rows")
    parser.add_argument("--results", nargs="*", default=[], help="eval_results.json files")
    parser.add_argument("--out", default="result_tables", help="output folder (default result_tables/)")
    args = parser.parse_args(argv)
    results = {}
    for sheet in args.sheets:
        results.update(results_from_sheet(sheet))
    for path in args.results:
        with open(path, encoding="utf-8") as f:
            r = json.load(f)
        results[os.path.splitext(os.path.basename(r["model"]))[0]] = r
    if not results:
        print("no evaluation results found (Completed rows with eval_results.json in their run folder)",
              file=sys.stderr)
        return 1
    gen, det = tables(results)
    os.makedirs(args.out, exist_ok=True)
    gen.round(2).to_csv(os.path.join(args.out, "ood_gen.csv"))
    det.round(4).to_csv(os.path.join(args.out, "ood_det.csv"))
    gen_md, det_md = markdown(gen, 1), markdown(det, 3)
    for name, text in (("ood_gen.md", gen_md), ("ood_det.md", det_md)):
        with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
            f.write(text + "\n")
    figure(gen, det, os.path.join(args.out, "results.png"))
    print("OOD generalization: ensemble accuracy (%)\n")
    print(gen_md)
    print("\nOOD detection: AUROC against in-distribution validation data\n")
    print(det_md)
    print(f"\nwritten to {args.out}/: ood_gen.md/.csv, ood_det.md/.csv, results.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
