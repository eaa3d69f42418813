"""FoRDE against deep ensembles: mean ± std over seeds per method, from a sheet's evaluations.

    python scripts/generate_forde_tables.py result_sheets/forde.csv [--out result_tables/forde]
    python scripts/generate_forde_tables.py --config CONFIG   # as a sheet's row: `sheets`, `out` in the YAML

Reads the Completed rows whose run folder holds the ``eval_metrics.json`` of a FoRDE or deep
ensemble (tasks/classify/evaluate.py on a tasks/forde/train_forde.py model) and groups them by
method (the model's ``forde.repulsion``: pca -> FoRDE-PCA, identity -> FoRDE-identity, none ->
Deep ensemble), and by dataset when there are several. Per method, over its seeds: NLL, accuracy and ECE on the clean test set, and
cA / cNLL / cECE, each severity's corruptions pooled (``pooled/C-<s>``) and then averaged over
severities, as the FoRDE paper reports them; ± is the sample standard deviation (n - 1) over
seeds. Beside the means, each method's difference to the deep ensemble paired by seed (the runs
with the same ``seed.init``): mean ± standard error over the seeds both have, so a gap can be
read against the seed noise. Writes ``forde.md``, ``forde.csv``, ``forde_differences.csv`` and
``forde.png`` (accuracy and NLL against severity, one line per method) to ``--out`` (as a row:
its run folder).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tables import default_sheets, evaluated_rows  # noqa: E402

METHODS = {"pca": "FoRDE-PCA", "identity": "FoRDE-identity", "none": "Deep ensemble"}
BASELINE = METHODS["none"]
LABELS = ("sheet", "row", "data", "seed", "method")
COLUMNS = {"NLL": ("NLL", 1, "min"), "acc (%)": ("acc1", 100, "max"), "ECE": ("ECE", 1, "min"),
           "cA (%)": ("acc1", 100, "max"), "cNLL": ("NLL", 1, "min"), "cECE": ("ECE", 1, "min")}


def severities(results: dict) -> Dict[int, dict]:
    """{severity: the pooled results of that severity's corruptions}."""
    out = {}
    for name, values in results.items():
        if name.startswith("pooled/C-") and "acc1" in values:
            out[int(name.rsplit("-", 1)[1])] = values
    return dict(sorted(out.items()))


def per_run(rows: List[dict]) -> pd.DataFrame:
    """One line per evaluated FoRDE / deep-ensemble row: its method and numbers."""
    lines = []
    for r in rows:
        forde = (r["results"].get("training") or {}).get("forde")
        if not forde:
            continue
        res = r["results"]["results"]
        clean, shifted = res["in_distribution"], severities(res)
        data = (r["results"].get("in_distribution") or {}).get("dataset", "")
        seed = (r["results"]["training"].get("seed") or {}).get("init")
        line = {"sheet": r["sheet"], "row": r["name"], "data": data, "seed": seed,
                "method": METHODS.get(forde["repulsion"], forde["repulsion"])}
        for column, (key, scale, _) in COLUMNS.items():
            if column.startswith("c"):
                line[column] = scale * float(np.mean([s[key] for s in shifted.values()])) if shifted else np.nan
            else:
                line[column] = scale * clean[key]
        for s, values in shifted.items():
            line[f"acc {s}"], line[f"NLL {s}"] = 100 * values["acc1"], values["NLL"]
        line["acc 0"], line["NLL 0"] = 100 * clean["acc1"], clean["NLL"]
        lines.append(line)
    return pd.DataFrame(lines)


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of every column, per method (and per dataset and sheet when the rows
    have several); the methods in METHODS' order within each."""
    keys = [k for k in ("sheet", "data") if runs[k].nunique() > 1] + ["method"]
    numbers = [c for c in runs.columns if c not in LABELS]
    grouped = runs.groupby(keys, sort=False)[numbers]
    table = pd.concat({"mean": grouped.mean(), "std": grouped.std(ddof=1)}, axis=1)
    table[("seeds", "")] = grouped.size()
    order = {m: i for i, m in enumerate(METHODS.values())}
    index = [idx if isinstance(idx, tuple) else (idx,) for idx in table.index]
    return table.iloc[sorted(range(len(table)), key=lambda i: (index[i][:-1], order.get(index[i][-1], 99)))]


def paired_differences(runs: pd.DataFrame) -> pd.DataFrame:
    """Per method other than the deep ensemble (and per dataset and sheet): the mean and the standard
    error, std (n - 1) / sqrt(n), of method − deep ensemble over the seeds both were run with."""
    places = [k for k in ("sheet", "data") if runs[k].nunique() > 1]
    numbers = [c for c in runs.columns if c not in LABELS]
    lines = []
    for where, group in (runs.groupby(places, sort=False) if places else [((), runs)]):
        where = where if isinstance(where, tuple) else (where,)
        base = group[group["method"] == BASELINE].dropna(subset=["seed"]).set_index("seed")[numbers]
        for method in [m for m in METHODS.values() if m != BASELINE]:
            mine = group[group["method"] == method].dropna(subset=["seed"]).set_index("seed")[numbers]
            seeds = sorted(set(mine.index) & set(base.index))
            if not seeds:
                continue
            diff = mine.loc[seeds] - base.loc[seeds]
            line = dict(zip(places, where), method=method, seeds=len(seeds))
            for c in numbers:
                line[f"{c} mean"] = float(diff[c].mean())
                line[f"{c} se"] = float(diff[c].std(ddof=1) / np.sqrt(len(seeds))) if len(seeds) > 1 else np.nan
            lines.append(line)
    return pd.DataFrame(lines)


def markdown_differences(diffs: pd.DataFrame) -> str:
    """Each method − deep ensemble, paired by seed: `mean ± standard error`; a difference larger than
    twice its standard error in bold."""
    header = f"| method − {BASELINE.lower()} | paired seeds | " + " | ".join(COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    digits = lambda c: 2 if "%" in c else 3  # noqa: E731
    for _, line in diffs.iterrows():
        label = " / ".join(str(line[k]) for k in ("sheet", "data", "method") if k in line)
        cells = [label, str(int(line["seeds"]))]
        for c in COLUMNS:
            mean, se = line[f"{c} mean"], line[f"{c} se"]
            text = "" if pd.isna(mean) else f"{mean:+.{digits(c)}f}" + ("" if pd.isna(se) else f" ± {se:.{digits(c)}f}")
            cells.append(f"**{text}**" if not pd.isna(se) and abs(mean) > 2 * se else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(table: pd.DataFrame) -> str:
    """The headline columns as `mean ± std`, the best mean of each in bold."""
    header = "| method | seeds | " + " | ".join(COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    best = {c: (table[("mean", c)].min() if how == "min" else table[("mean", c)].max())
            for c, (_, _, how) in COLUMNS.items()}
    digits = lambda c: 2 if "%" in c else 3  # noqa: E731
    for idx, line in table.iterrows():
        cells = [" / ".join(idx) if isinstance(idx, tuple) else str(idx), str(int(line[("seeds", "")]))]
        for c in COLUMNS:
            mean, std = line[("mean", c)], line[("std", c)]
            text = "" if pd.isna(mean) else f"{mean:.{digits(c)}f}" + ("" if pd.isna(std) else f" ± {std:.{digits(c)}f}")
            cells.append(f"**{text}**" if len(table) > 1 and mean == best[c] else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(table: pd.DataFrame, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted(int(c.split()[1]) for c in table["mean"].columns if c.startswith("acc ") and c != "acc (%)")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for idx, line in table.iterrows():
        label = " / ".join(idx) if isinstance(idx, tuple) else str(idx)
        for ax, metric in zip(axes, ("acc", "NLL")):
            mean = [line[("mean", f"{metric} {s}")] for s in levels]
            std = [line[("std", f"{metric} {s}")] for s in levels]
            ax.errorbar(levels, mean, yerr=np.nan_to_num(std), marker="o", capsize=3, label=label)
    for ax, name in zip(axes, ("accuracy (%)", "NLL")):
        ax.set_xlabel("corruption severity (0: clean)")
        ax.set_ylabel(name)
        ax.set_xticks(levels)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("FoRDE vs deep ensembles: mean ± std over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sheets", nargs="*", help="sheets with FoRDE evaluation rows (default: every sheet in result_sheets/)")
    parser.add_argument("--out", default=None, help="folder for the table and figure (default: result_tables/forde)")
    parser.add_argument("--config", help="a row's YAML: sheets, out (default: the run folder)")
    args = parser.parse_args(argv)
    sheets, out = args.sheets, args.out
    if args.config:
        import yaml

        from tasks.common import run_dir

        with open(args.config, encoding="utf-8") as f:
            cfg = yaml.safe_load(f) or {}
        sheets = sheets or list(cfg.get("sheets") or [])
        out = out or cfg.get("out") or run_dir()
    sheets = sheets or default_sheets()
    out = out or os.path.join("result_tables", "forde")
    rows = [r for sheet in sheets for r in evaluated_rows(sheet, "eval_metrics.json")]
    runs = per_run(rows)
    if runs.empty:
        print("no FoRDE evaluations found (Completed rows whose eval_metrics.json is of a tasks/forde model); "
              "run one first, e.g. sheetrun run result_sheets/forde.csv", file=sys.stderr)
        return 1
    table, diffs = summary(runs), paired_differences(runs)
    os.makedirs(out, exist_ok=True)
    text = markdown(table)
    if not diffs.empty:
        text += ("\n\nDifference to the deep ensemble, paired by seed (mean ± standard error over the paired "
                 "seeds; bold: more than twice its standard error):\n\n" + markdown_differences(diffs))
        diffs.round(5).to_csv(os.path.join(out, "forde_differences.csv"), index=False)
    with open(os.path.join(out, "forde.md"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    table.round(5).to_csv(os.path.join(out, "forde.csv"))
    runs.round(5).to_csv(os.path.join(out, "forde_runs.csv"), index=False)
    figure(table, os.path.join(out, "forde.png"))
    print(f"FoRDE vs deep ensembles ({len(runs)} evaluations; mean ± std over seeds)\n\n{text}\n")
    print(f"written to {out}/: forde.md, forde.csv, forde_runs.csv{', forde_differences.csv' if not diffs.empty else ''}, "
          "forde.png")
    if args.config:
        from runner import report

        report({"methods": int(len(table)), "evaluations": int(len(runs)), "table": os.path.join(out, "forde.md")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
