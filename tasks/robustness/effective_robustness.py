"""Effective robustness of a sheet's evaluated models above the line of its from-scratch baselines (seed 002).

    python tasks/robustness/effective_robustness.py --config default_configs/robustness/effective_robustness.yaml

Reads the Completed rows of ``sheets`` (default: the sheet this row runs in) whose run folder
holds tasks/classify/evaluate.py's ``eval_metrics.json``, and takes from each the accuracy on
``reference`` (default ``in_distribution``) and on ``shifted`` (one of its domains). The rows
whose names match ``baselines`` (shell-style patterns, e.g. ``baseline *``) fix the line
(tasks/robustness/fit.py: least squares in ``scale`` axes, probit by default, with its
``1 - alpha`` confidence band); every other row is a model measured against it:

    effective_robustness = shifted accuracy - the line's shifted accuracy at its reference accuracy

(in accuracy points, x 100), with ``<column>_low`` / ``_high`` from the band's upper and lower
edge. With ``write_rows: true`` these go into each evaluated row of the sheet, in the column
``column`` (default ``effective_robustness``; one per shift when a sheet measures several), baselines
too (theirs are their residuals); the row that runs this script gets the line. Its run folder (or ``out``)
gets ``effective_robustness.md`` / ``.csv`` and ``effective_robustness.png``: every model in
``scale`` axes, the line and its band, baselines and the others in two colours.

Copies of one model (rows trained alike but for their seed) are named by ``copies``, a regular
expression whose first group is the model's name (``"^(.*) \\d+$"``: ``CLIP (FT) 1`` .. ``4`` are
copies of ``CLIP (FT)``). Each row keeps its own effective robustness; each model gets the
effective robustness of its copies' mean point (mean reference and mean shifted accuracy), in
``effective_robustness_models.csv`` and the table. What the ER row reports as ``mean_er``
(``aggregate``): ``rows`` — the mean over the evaluated rows; ``models`` — the authors' (their
experiment manager's copy means, their notebook's mean over models): the mean over models of
each model's effective robustness, with ``mean_er_low`` / ``mean_er_high`` the means of the
models' band edges.
"""
from __future__ import annotations

import os
import sys
from typing import List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tasks.robustness.fit import SCALES, effective_robustness, fit_line, resolve_clip  # noqa: E402


def collect(sheets: List[str], reference: str, shifted: str, baselines: List[str]) -> pd.DataFrame:
    """One line per evaluated row: sheet, row, run_id, name, group, ref / shift accuracy (fractions)."""
    from tasks.sheets import evaluated_rows, matches

    lines = []
    for sheet in sheets:
        for r in evaluated_rows(sheet, "eval_metrics.json"):
            results = r["results"].get("results", {})
            if reference not in results or shifted not in results:
                continue
            if "acc1" not in results[reference] or "acc1" not in results[shifted]:
                continue
            group = "baseline" if matches(r["name"], baselines) else "evaluated"
            lines.append({"location": sheet, "sheet": r["sheet"], "row": r["row"], "run_id": r["run_id"],
                          "name": r["name"], "group": group, "ref": float(results[reference]["acc1"]),
                          "shift": float(results[shifted]["acc1"]),
                          "samples": min(int(results[d].get("labelled", results[d].get("n", 0)) or 0)
                                         for d in (reference, shifted))})
    return pd.DataFrame(lines)


AGGREGATES = ("rows", "models")


def model_names(names, copies: str | None) -> list:
    """The model each row is a copy of: the first group of the pattern ``copies`` matched against its
    name, or the name itself (no pattern, or no match: a model of one copy)."""
    import re

    if not copies:
        return list(names)
    pattern = re.compile(copies)
    if pattern.groups < 1:
        raise ValueError(f"copies must be a regular expression with a group naming the model, got {copies!r}")
    found = [pattern.search(str(n)) for n in names]
    return [m.group(1).strip() if m else n for n, m in zip(names, found)]


def per_model(evaluated: pd.DataFrame, line, copies: str | None) -> pd.DataFrame:
    """One line per model: its copies' mean reference and shifted accuracy, and the effective
    robustness (with its band) of that mean point, in accuracy points."""
    if evaluated.empty:
        return pd.DataFrame(columns=["model", "copies", "ref", "shift", "effective_robustness", "er_low", "er_high"])
    named = evaluated.assign(model=model_names(evaluated["name"], copies))
    models = named.groupby("model", sort=False).agg(copies=("name", "size"), ref=("ref", "mean"),
                                                   shift=("shift", "mean")).reset_index()
    lower, _, upper = line.predict(models["ref"])
    models["effective_robustness"] = 100 * effective_robustness(line, models["ref"], models["shift"])
    models["er_low"], models["er_high"] = 100 * (models["shift"] - upper), 100 * (models["shift"] - lower)
    return models


def headline(evaluated: pd.DataFrame, models: pd.DataFrame, aggregate: str) -> dict:
    """The ER row's summary: the mean effective robustness over rows or over models (``aggregate``)."""
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
    over = evaluated if aggregate == "rows" else models
    if over.empty:
        return {}
    return {"mean_er": round(float(over["effective_robustness"].mean()), 3),
            "mean_er_low": round(float(over["er_low"].mean()), 3),
            "mean_er_high": round(float(over["er_high"].mean()), 3), "models": int(len(models))}


def figure(df: pd.DataFrame, line, path: str, reference: str, shifted: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    forward, _ = SCALES[line.scale]
    clip = line.clip if line.clip is not None else 1e-4
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    lo_x, hi_x = np.clip([df["ref"].min(), df["ref"].max()], clip, 1 - clip)
    grid = np.linspace(max(clip, lo_x - 0.05), min(1 - clip, hi_x + 0.05), 200)
    lower, mid, upper = line.predict(grid)
    gx = forward(grid)
    ax.fill_between(gx, forward(np.clip(lower, clip, 1 - clip)), forward(np.clip(upper, clip, 1 - clip)),
                    color="0.6", alpha=0.3, label=f"{100 * (1 - line.alpha):.0f}% band")
    ax.plot(gx, forward(np.clip(mid, clip, 1 - clip)), color="0.3", lw=1.5,
            label=f"baseline fit: {line.slope:.2f} x {'+' if line.intercept >= 0 else '-'} {abs(line.intercept):.2f}")
    ax.plot(gx, gx, ":", color="0.5", lw=1, label="y = x")
    for group, colour, marker in (("baseline", "tab:blue", "o"), ("evaluated", "tab:red", "*")):
        part = df[df["group"] == group]
        if not part.empty:
            ax.scatter(forward(np.clip(part["ref"], clip, 1 - clip)), forward(np.clip(part["shift"], clip, 1 - clip)),
                       c=colour, marker=marker, s=40 if marker == "o" else 110, label=f"{group} ({len(part)})",
                       edgecolors="k", linewidths=0.4, zorder=3)
    ticks = np.array([0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99])
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_ticks(forward(ticks))
        axis.set_ticklabels([f"{100 * t:g}" for t in ticks])
    ax.set_xlim(gx.min(), gx.max())
    ys = np.concatenate([forward(np.clip(df["shift"], clip, 1 - clip)), forward(np.clip(mid, clip, 1 - clip))])
    ax.set_ylim(ys.min() - 0.15, ys.max() + 0.15)
    ax.set_xlabel(f"{reference} accuracy (%, {line.scale} axis)")
    ax.set_ylabel(f"{shifted} accuracy (%, {line.scale} axis)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv=None) -> pd.DataFrame:
    from runner import report
    from tasks.common import load_config, run_dir
    from tasks.sheets import as_list, config_sheets

    cfg = load_config(__doc__.splitlines()[0], argv)
    sheets = config_sheets(cfg)
    if not sheets:
        raise ValueError("sheets: give the sheets whose evaluations to read (as a sheet's row: its own by default)")
    reference, shifted = cfg.get("reference", "in_distribution"), cfg.get("shifted")
    if not shifted:
        raise ValueError("shifted: name the evaluation domain of the shifted distribution")
    baselines = as_list(cfg.get("baselines"), ["baseline*"])
    if cfg.get("aggregate", "rows") not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}, got {cfg.get('aggregate')!r}")
    model_names([], cfg.get("copies"))                    # a pattern without a group is refused before any work
    df = collect(sheets, reference, shifted, baselines)
    base = df[df["group"] == "baseline"] if not df.empty else df
    if len(base) < 3:
        raise ValueError(f"{len(base)} evaluated rows match baselines {baselines} with both {reference!r} and "
                         f"{shifted!r} accuracies; the line needs at least 3")
    line = fit_line(base["ref"], base["shift"], scale=cfg.get("scale", "probit"), alpha=float(cfg.get("alpha", 0.05)),
                    interval=cfg.get("interval", "exact"),
                    clip=resolve_clip(cfg.get("clip"), int(df["samples"].max()) if df["samples"].max() > 0 else 1))
    add_effective_robustness(df, line)
    out = cfg.get("out") or run_dir() or "."
    os.makedirs(out, exist_ok=True)
    evaluated = df[df["group"] == "evaluated"]
    models = per_model(evaluated, line, cfg.get("copies"))
    write_tables(out, df, models, line, reference, shifted, cfg.get("interval", "exact"))
    figure(df, line, os.path.join(out, "effective_robustness.png"), reference, shifted)
    if cfg.get("write_rows", True):
        write_rows(df, cfg.get("column") or "effective_robustness")
    report({"baselines": int(len(base)), "evaluated": int(len(evaluated)), "slope": round(line.slope, 4),
            "intercept": round(line.intercept, 4), **headline(evaluated, models, cfg.get("aggregate", "rows"))})
    print(f"line over {len(base)} baselines: {line.slope:.3f} x + {line.intercept:.3f} ({line.scale}); "
          f"{len(evaluated)} models; -> {out}/effective_robustness.md, .csv, .png", flush=True)
    return df


def add_effective_robustness(df: pd.DataFrame, line) -> None:
    """Each row's point on the line (``predicted``), its ER and the ER's band, in points."""
    lower, mid, upper = line.predict(df["ref"])
    df["predicted"] = mid
    df["effective_robustness"] = 100 * effective_robustness(line, df["ref"], df["shift"])
    df["er_low"], df["er_high"] = 100 * (df["shift"] - upper), 100 * (df["shift"] - lower)


def write_tables(out: str, df: pd.DataFrame, models: pd.DataFrame, line, reference: str, shifted: str,
                 interval: str) -> None:
    """``effective_robustness.csv`` (every row), ``_models.csv`` (every model) and the Markdown of both."""
    table = df[["sheet", "name", "group", "ref", "shift", "predicted", "effective_robustness", "er_low", "er_high"]]
    table.to_csv(os.path.join(out, "effective_robustness.csv"), index=False)
    models.to_csv(os.path.join(out, "effective_robustness_models.csv"), index=False)
    with open(os.path.join(out, "effective_robustness.md"), "w", encoding="utf-8") as f:
        f.write(f"| row | group | {reference} acc (%) | {shifted} acc (%) | line (%) | ER (points) | ER band |\n"
                "|---|---|---|---|---|---|---|\n")
        for r in df.sort_values(["group", "effective_robustness"], ascending=[False, False]).itertuples():
            f.write(f"| {r.name} | {r.group} | {100 * r.ref:.2f} | {100 * r.shift:.2f} | {100 * r.predicted:.2f} | "
                    f"{r.effective_robustness:+.2f} | [{r.er_low:+.2f}, {r.er_high:+.2f}] |\n")
        f.write(f"\nLine ({line.scale} axes, {line.n} baselines): {line.slope:.4f} x "
                f"{'+' if line.intercept >= 0 else '-'} {abs(line.intercept):.4f}; "
                f"{100 * (1 - line.alpha):.0f}% band ({interval}).\n")
        f.write(f"\nPer model (the mean point of its copies):\n\n| model | copies | {reference} acc (%) | "
                f"{shifted} acc (%) | ER (points) | ER band |\n|---|---|---|---|---|---|\n")
        for r in models.itertuples():
            f.write(f"| {r.model} | {r.copies} | {100 * r.ref:.2f} | {100 * r.shift:.2f} | "
                    f"{r.effective_robustness:+.2f} | [{r.er_low:+.2f}, {r.er_high:+.2f}] |\n")


def write_rows(df: pd.DataFrame, column: str) -> None:
    """Each evaluated row's ER and its band into its own row (``column``, ``column_low``, ``column_high``)."""
    from runner.sheet import open_sheet

    for location, rows in df.groupby("location"):
        values = {r.run_id: {column: round(r.effective_robustness, 3), f"{column}_low": round(r.er_low, 3),
                             f"{column}_high": round(r.er_high, 3)}
                  for r in rows.itertuples() if r.run_id}
        missed = open_sheet(location).update_many(values)
        if missed:
            print(f"{location}: {len(missed)} rows were gone before their effective robustness was written",
                  flush=True)


if __name__ == "__main__":
    main()
