"""The SED paper's result tables, from evaluation results.

    python scripts/generate_result_tables.py                       # every sheet in result_sheets/
    python scripts/generate_result_tables.py result_sheets/demo.csv
    python scripts/generate_result_tables.py result_sheets/evaluation.csv --out result_tables
    python scripts/generate_result_tables.py --results a.json b.json

Reads every Completed row of the given sheets (default: every sheet in
``result_sheets/`` that has such rows) whose run folder holds an
``eval_results.json`` (written by tasks/sed/evaluate.py), or the JSON files given
with ``--results``, and writes to ``--out`` (default ``result_tables/``):

- ``ood_gen.md`` / ``ood_gen.csv``: OOD generalization, one row per model,
  for each evaluation set (in_val, natural shifts, C-1, C-5): the accuracy (%)
  of the ensemble, of its best member and of the soup, and the ensemble's mean
  #distinct predictions and mean PDS — the columns of the paper's table;
- ``ood_det.md`` / ``ood_det.csv``: OOD detection AUROC, one row per model and
  score, one column per OOD set;
- ``results.png``: all of it as a figure.

The Markdown tables are printed; the best accuracy / AUROC of each column is
in bold. A model is named by its row's ``name`` cell, else its file name.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tables import collect, default_sheets, markdown  # noqa: E402


GEN_METRICS = {                    # column block -> (how to read it from the results, digits)
    "ensemble acc (%)": ("acc", "ensemble_acc"),
    "best member acc (%)": ("acc", "best_member_acc"),
    "soup acc (%)": ("acc", "soup_acc"),
    "#distinct predictions": ("score", "distinct_predictions"),
    "PDS": ("score", "pds"),
}


def mean_score(r: dict, set_name: str, score: str) -> float:
    """The mean of a per-sample score over a set, or over the sets of a group (C-1)."""
    sets = r["sets"]
    members = [s for s, v in sets.items() if s == set_name or v.get("group") == set_name]
    values = [sets[s]["mean_scores"][score] for s in members if score in sets[s].get("mean_scores", {})]
    return sum(values) / len(values) if values else float("nan")


def tables(results: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(OOD generalization: models x (metric, set); OOD detection: (model, score) x OOD set)."""
    gen = {}
    for name, r in results.items():
        row = {}
        for metric, (kind, key) in GEN_METRICS.items():
            for s, a in r["accuracy"].items():
                row[(metric, s)] = 100 * a[key] if kind == "acc" else mean_score(r, s, key)
        gen[name] = row
    gen_df = pd.DataFrame(gen).T
    if len(gen_df):
        gen_df.columns = pd.MultiIndex.from_tuples(gen_df.columns, names=["metric", "set"])
    det = {}
    for name, r in results.items():
        for ood_set, scores in r["ood_detection"].items():
            for score, value in scores.items():
                det.setdefault((name, score), {})[ood_set] = value
    det_df = pd.DataFrame(det).T
    if len(det_df):
        det_df.index.names = ["model", "score"]
    return gen_df, det_df


def figure(gen: pd.DataFrame, det: pd.DataFrame, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(19, max(4.5, 0.26 * len(det) + 1.5)),
                             gridspec_kw={"width_ratios": [1.3, 1, 1]})
    acc = gen["ensemble acc (%)"]
    acc.T.plot.bar(ax=axes[0], rot=0, alpha=0.85)
    sets = list(acc.columns)
    width = 0.8 / max(1, len(acc))
    for i, model in enumerate(acc.index):          # best member and soup as markers on each bar
        x = [j - 0.4 + width * (i + 0.5) for j in range(len(sets))]
        axes[0].scatter(x, gen.loc[model, "best member acc (%)"][sets], marker="_", s=120, color="black",
                        label="best member" if i == 0 else None, zorder=3)
        axes[0].scatter(x, gen.loc[model, "soup acc (%)"][sets], marker="o", s=12, color="red",
                        label="soup" if i == 0 else None, zorder=3)
    axes[0].set_ylabel("accuracy (%)")
    axes[0].set_title("OOD generalization: ensemble (bars), best member, soup")
    axes[0].set_ylim(max(0, acc.min().min() - 10), 100)
    axes[0].legend(fontsize=7)
    pds = gen["PDS"]
    for model in pds.index:
        axes[1].plot(sets, pds.loc[model, sets], marker="o", label=model)
    axes[1].set_ylabel("mean PDS (1 = members agree)")
    axes[1].set_title("Ensemble diversity per set")
    axes[1].legend(fontsize=7)
    if not det.empty:
        im = axes[2].imshow(det.values, cmap="viridis", vmin=0.5, vmax=1.0, aspect="auto")
        axes[2].set_xticks(range(len(det.columns)), det.columns, rotation=30, ha="right")
        axes[2].set_yticks(range(len(det)), [f"{m} / {s}" for m, s in det.index], fontsize=6)
        for i in range(det.shape[0]):
            for j in range(det.shape[1]):
                axes[2].text(j, i, f"{det.values[i, j]:.2f}", ha="center", va="center", fontsize=5,
                             color="white" if det.values[i, j] < 0.75 else "black")
        fig.colorbar(im, ax=axes[2], label="AUROC")
    axes[2].set_title("OOD detection AUROC")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write the SED result tables (Markdown, CSV, PNG).")
    parser.add_argument("sheets", nargs="*",
                        help="result sheets with evaluation rows (default: every sheet in result_sheets/)")
    parser.add_argument("--results", nargs="*", default=[], help="eval_results.json files")
    parser.add_argument("--out", default="result_tables", help="output folder (default result_tables/)")
    args = parser.parse_args(argv)
    sheets = args.sheets or ([] if args.results else default_sheets())
    results = collect(sheets, "eval_results.json",
                      None if args.sheets else lambda sheet, n: print(f"{os.path.relpath(sheet)}: {n} evaluated model(s)"))
    for path in args.results:
        with open(path, encoding="utf-8") as f:
            r = json.load(f)
        label = os.path.splitext(os.path.basename(r["model"]))[0]
        results[label if label not in results else os.path.relpath(path)] = r
    if not results:
        looked = ", ".join(os.path.relpath(x) for x in sheets) or "the --results files"
        print(f"no evaluation results found in {looked} (Completed rows with eval_results.json in their "
              "run folder); run an evaluation sheet first, e.g. sheetrun run result_sheets/demo.csv",
              file=sys.stderr)
        return 1
    gen, det = tables(results)
    os.makedirs(args.out, exist_ok=True)
    gen.round(2).to_csv(os.path.join(args.out, "ood_gen.csv"))
    det.round(4).to_csv(os.path.join(args.out, "ood_det.csv"))
    gen_md = "\n\n".join(f"**{metric}**\n\n" + markdown(gen[metric], 1 if "acc" in metric else 2,
                                                           best="max" if "acc" in metric else "none")
                         for metric in GEN_METRICS)
    det_md = markdown(det, 3)
    for name, text in (("ood_gen.md", gen_md), ("ood_det.md", det_md)):
        with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
            f.write(text + "\n")
    figure(gen, det, os.path.join(args.out, "results.png"))
    print("OOD generalization, per evaluation set\n")
    print(gen_md)
    print("\nOOD detection: AUROC against in-distribution validation data\n")
    print(det_md)
    print(f"\nwritten to {args.out}/: ood_gen.md/.csv, ood_det.md/.csv, results.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
