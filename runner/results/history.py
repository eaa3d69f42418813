"""Looking at results: a row's earlier runs, and metric curves as a picture.

``history(row, root, sheet_runs)`` follows a row's runs back from its current
run folder: each claim records the run folder the row had before
(``job.json``'s ``previous_run_folder``); runs the chain does not reach (made
before it was recorded, or before a ``sheetrun reset``) are found among the
sheet's run folders by the row's name, or its number when it has none.

``curves(rds, metric)`` reads the metric's values from each run's
``metrics.jsonl``, against ``step`` or ``epoch`` when the script reported one
of them with it, else against the order of the reports; ``plot`` draws them
into a PNG.
"""
from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field

from runner.core import columns as C
from runner.core.records import JobRecord
from runner.core.rundir import RunDir, format_walltime, read_json_quietly

X_KEYS = ("step", "epoch")


@dataclass
class PastRun:
    folder: str
    run_id: str
    attempt: int
    status: str
    started: float | None
    walltime: str
    metrics: dict = field(default_factory=dict)


def _past_run(folder: str) -> PastRun:
    rd = RunDir(folder)
    job = rd.read_job() or JobRecord(sheet="", run_id="", argv=[], cwd="")
    record = rd.read_exit()
    wrapper = rd.read_wrapper()
    status = (record and record.status) or ("never started" if wrapper is None else "no exit record")
    walltime = format_walltime(record.walltime_s) if record and record.walltime_s is not None else ""
    return PastRun(folder, job.run_id, int(job.attempt or 1), status,
                   (wrapper and wrapper.started) or job.created or None, walltime,
                   read_json_quietly(rd.metrics, {}) or {})


def history(row, root: str, sheet_runs: str) -> list[PastRun]:
    """The row's runs, newest first: the chain back from its current run folder, and the folders
    in ``sheet_runs`` (the sheet's runs) that were claimed for this row — by its name when it has
    one (rows move), else by its number — which also finds them after ``sheetrun reset``."""
    seen, runs = set(), []
    current = row.get(C.RUN_FOLDER)
    folder = os.path.normpath(os.path.join(root, current)) if current else ""
    if folder:
        sheet_runs = os.path.dirname(folder)
    while folder and folder not in seen and os.path.isdir(folder):
        seen.add(folder)
        runs.append(_past_run(folder))
        job = RunDir(folder).read_job()
        folder = job.previous_run_folder if job is not None else ""
    name = " ".join(row.get(C.NAME).split())
    for older in sorted(glob.glob(os.path.join(glob.escape(sheet_runs), "*_row*_r*")), reverse=True):
        if older in seen or not os.path.isdir(older):
            continue
        job = RunDir(older).read_job()
        mine = (" ".join(job.name.split()) == name if name and job is not None and job.name is not None
                else os.path.basename(older).split("_row", 1)[1].startswith(f"{row.number}_"))
        if mine:
            seen.add(older)
            runs.append(_past_run(older))
    runs.sort(key=lambda r: r.started or 0, reverse=True)
    return runs


def curve(rd: RunDir, metric: str) -> tuple[str, list[float], list[float]]:
    """(x axis name, xs, ys) of one run's reports of ``metric``."""
    points, x_name = [], None
    try:
        with open(rd.metrics_log, "rb") as f:
            lines = f.readlines()
    except OSError:
        lines = []
    for i, line in enumerate(lines):
        try:
            values = json.loads(line).get("values", {})
        except (ValueError, AttributeError):
            continue
        if not isinstance(values, dict) or not isinstance(values.get(metric), (int, float)) \
                or isinstance(values.get(metric), bool):
            continue
        key = next((k for k in X_KEYS if isinstance(values.get(k), (int, float))), None)
        x_name = x_name or key
        points.append((values[key] if key == x_name and key else len(points), values[metric]))
    if x_name is None:
        x_name = "report"
    return x_name, [p[0] for p in points], [float(p[1]) for p in points]


def figure(series: list[tuple[str, str, list[float], list[float]]], metric: str):
    """A matplotlib figure of ``(label, x name, xs, ys)`` curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    x_names = {x_name for _, x_name, _, _ in series}
    for label, _, xs, ys in series:
        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=label)
    ax.set_xlabel(" / ".join(sorted(x_names)))
    if all(float(x).is_integer() for _, _, xs, _ in series for x in xs):      # epochs, steps: no 0.5 ticks
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(metric)
    ax.set_title(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def plot(series: list[tuple[str, str, list[float], list[float]]], metric: str, out: str) -> str:
    """Draw ``(label, x name, xs, ys)`` curves into the PNG ``out``; returns ``out``."""
    import matplotlib.pyplot as plt

    fig = figure(series, metric)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
