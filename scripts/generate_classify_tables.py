"""Result tables of classifier evaluations (tasks/classify/evaluate.py): distillation, MIMO, ensembles.

    python scripts/generate_classify_tables.py                      # every sheet in result_sheets/
    python scripts/generate_classify_tables.py result_sheets/distillation.csv --out result_tables/distillation

Reads the Completed rows whose run folder holds an ``eval_metrics.json`` and writes to ``--out``
(default ``result_tables/classify``); one table row per sheet row (named ``sheet: row name``
when several sheets are read, so a copy of a sheet run with another seed stays apart):

- ``domains.md`` / ``domains.csv``: one row per model; per domain (in-distribution, each
  shifted domain or group mean such as ``mean/C-5``) accuracy, NLL, ECE, Brier and the
  prediction rejection ratio of total uncertainty;
- ``ood.md`` / ``ood.csv``: one row per model, OOD-detection AUROC per OOD set and measure;
- ``results.png``: accuracy and ECE per domain, and the AUROC heat map.
"""
from __future__ import annotations

import argparse
import os
import sys

import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tables import collect, default_sheets, markdown  # noqa: E402

DOMAIN_METRICS = {"acc (%)": ("acc1", 100.0), "NLL": ("NLL", 1.0), "ECE": ("ECE", 1.0), "Brier": ("brier", 1.0),
                  "PRR": ("PRR_total_uncertainty", 1.0)}


def domain_names(results: dict) -> list:
    """The domains to show, in order: each domain not in a group, and each group's mean."""
    names, members = [], set()
    for r in results.values():
        members.update(n for group in r.get("groups", {}).values() for n in group)
        names += [d for d in r["results"] if not d.startswith(("ood/", "pooled/")) and d not in names]
    return [d for d in names if d not in members]


# what eval_metrics.json says besides the model kind's own description (tasks/classify/kinds)
NOT_KIND = ("models", "results", "groups", "class_subset_protocol", "calibration_confidence_one", "training",
            "in_distribution")


def models_table(results: dict) -> pd.DataFrame:
    """How each model was read: its kind, members and the kind's choices, as evaluate.py wrote them."""
    rows = {model: {k: v for k, v in r.items() if k not in NOT_KIND} for model, r in results.items()}
    table = pd.DataFrame(rows).T.fillna("")
    first = [c for c in ("kind", "members") if c in table.columns]
    return table[first + sorted(c for c in table.columns if c not in first)]


def tables(results: dict):
    domains = domain_names(results)
    dom = {}
    for model, r in results.items():
        row = {}
        for label, (key, scale) in DOMAIN_METRICS.items():
            for d in domains:
                value = r["results"].get(d, {}).get(key)
                row[(label, d.replace("mean/", ""))] = None if value is None else scale * value
        dom[model] = row
    dom_df = pd.DataFrame(dom).T
    if len(dom_df):
        dom_df.columns = pd.MultiIndex.from_tuples(dom_df.columns, names=["metric", "domain"])
    ood = {}
    for model, r in results.items():
        for d, values in r["results"].items():
            if d.startswith("ood/"):
                for k, v in values.items():
                    ood.setdefault(model, {})[(d[4:], k.replace("AUROC_", ""))] = v
    ood_df = pd.DataFrame(ood).T
    if len(ood_df):
        ood_df.columns = pd.MultiIndex.from_tuples(ood_df.columns, names=["ood set", "measure"])
    return dom_df.dropna(axis=1, how="all"), ood_df


def figure(dom: pd.DataFrame, ood: pd.DataFrame, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(19, max(4.5, 0.35 * len(dom) + 2)))
    for ax, metric, label in ((axes[0], "acc (%)", "accuracy (%)"), (axes[1], "ECE", "ECE")):
        if metric in dom.columns.get_level_values(0):
            dom[metric].T.plot(ax=ax, marker="o", rot=30)
            ax.set_ylabel(label)
            ax.set_title(f"{label} per domain")
            ax.legend(fontsize=7)
    if not ood.empty:
        im = axes[2].imshow(ood.values.astype(float), cmap="viridis", vmin=0.5, vmax=1.0, aspect="auto")
        axes[2].set_xticks(range(ood.shape[1]), [f"{a} / {b}" for a, b in ood.columns], rotation=40, ha="right",
                           fontsize=7)
        axes[2].set_yticks(range(len(ood)), list(ood.index), fontsize=8)
        for i in range(ood.shape[0]):
            for j in range(ood.shape[1]):
                v = float(ood.values[i, j])
                axes[2].text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                             color="white" if v < 0.75 else "black")
        fig.colorbar(im, ax=axes[2], label="AUROC")
        axes[2].set_title("OOD detection AUROC")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sheets", nargs="*", help="sheets with evaluation rows (default: every sheet in result_sheets/)")
    parser.add_argument("--out", default=os.path.join("result_tables", "classify"))
    args = parser.parse_args(argv)
    sheets = args.sheets or default_sheets()
    results = collect(sheets, "eval_metrics.json")
    if not results:
        print("no classifier evaluations found (Completed rows with eval_metrics.json in their run folder); "
              "run one first, e.g. sheetrun run result_sheets/distillation.csv", file=sys.stderr)
        return 1
    dom, ood = tables(results)
    kinds = models_table(results)
    os.makedirs(args.out, exist_ok=True)
    kinds.to_csv(os.path.join(args.out, "models.csv"))
    dom.round(4).to_csv(os.path.join(args.out, "domains.csv"))
    ood.round(4).to_csv(os.path.join(args.out, "ood.csv"))
    parts = []
    for metric in dict.fromkeys(dom.columns.get_level_values(0)):
        best = "max" if metric in ("acc (%)", "PRR") else "min"
        parts.append(f"**{metric}**\n\n" + markdown(dom[metric], 1 if metric == "acc (%)" else 3, best))
    dom_md = "\n\n".join(parts)
    ood_md = "\n\n".join(f"**AUROC, {s}**\n\n" + markdown(ood[s], 3) for s in dict.fromkeys(ood.columns.get_level_values(0)))
    kinds_md = markdown(kinds, None, best="none")
    for name, text in (("models.md", kinds_md), ("domains.md", dom_md), ("ood.md", ood_md)):
        with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
            f.write(text + "\n")
    figure(dom, ood, os.path.join(args.out, "results.png"))
    print(f"Models, as read (tasks/classify/kinds)\n\n{kinds_md}\n")
    print(f"Per domain ({len(results)} models)\n")
    print(dom_md)
    print("\nOOD detection\n")
    print(ood_md)
    print(f"\nwritten to {args.out}/: models.md/.csv, domains.md/.csv, ood.md/.csv, results.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
