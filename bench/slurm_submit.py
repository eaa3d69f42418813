"""Submitting a sheet to SLURM as job arrays against one sbatch per row.

    python bench/slurm_submit.py [--rows 500] [--repeats 3]

Uses the cluster in SLURM_CONF, or starts a throwaway one
(scripts/slurm_cluster.py). Each repeat, side by side:

- sheetrun: ``sheetrun run SHEET --backend slurm`` on a fresh sheet of N rows,
  wall time until it returns (every row's job queued, run folders written,
  job ids in the sheet), and the scheduler commands it made;
- per row: ``sbatch`` once per row (the one-job-per-row way of older tools),
  wall time for the N calls alone (no sheet, no run folders).

All jobs are submitted with ``--begin=now+1hour`` (a project default in
sheetrun.yaml) so none runs during the measurement; they are cancelled after
each repeat. Then one ``sheetrun sync`` over the N queued rows is timed, with
the number of squeue calls it made. Medians and the ratio are printed.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from runner.runs.sync import sync  # noqa: E402
from runner.sheet import open_sheet  # noqa: E402
from runner.slurm import SlurmClient  # noqa: E402

SCRIPT = "import sys\nprint('hello')\n"


def load_cluster_module():
    spec = importlib.util.spec_from_file_location("slurm_cluster", os.path.join(REPO, "scripts", "slurm_cluster.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_project(folder: str, rows: int) -> str:
    os.makedirs(os.path.join(folder, "result_sheets"))
    os.makedirs(os.path.join(folder, "scripts"))
    with open(os.path.join(folder, "scripts", "hello.py"), "w") as f:
        f.write(SCRIPT)
    with open(os.path.join(folder, "config.yaml"), "w") as f:
        f.write("x: 0\n")
    with open(os.path.join(folder, "sheetrun.yaml"), "w") as f:
        f.write("slurm:\n  begin: now+3600\n")
    sheet = os.path.join(folder, "result_sheets", "bench.csv")
    with open(sheet, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path_to_main", "path_to_default_config", "whether_to_run", "delta:x"])
        for i in range(rows):
            w.writerow(["scripts/hello.py", "config.yaml", 1, i])
    return sheet


def cancel_all() -> None:
    subprocess.run(["scancel", f"--user={os.environ.get('USER') or 'root'}"], capture_output=True)
    time.sleep(0.5)


def time_sheetrun(folder: str, rows: int) -> tuple[float, int]:
    sheet = make_project(folder, rows)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "runner", "run", sheet, "--backend", "slurm"],
                          capture_output=True, text=True, cwd=folder)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    calls = int(proc.stderr.split("(")[-1].split()[0])       # "... (N scheduler calls)"
    return elapsed, calls


def time_per_row(folder: str, rows: int) -> float:
    script = os.path.join(folder, "job.sh")
    with open(script, "w") as f:
        f.write(f"#!/bin/bash\n{sys.executable} -c 'print(1)'\n")
    start = time.perf_counter()
    for _ in range(rows):
        subprocess.run(["sbatch", "--parsable", "--begin=now+3600", f"--output={os.devnull}", script],
                       check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    cluster_dir = None
    if not os.environ.get("SLURM_CONF"):
        cluster = load_cluster_module()
        cluster_dir = tempfile.mkdtemp(prefix="sheetrun-bench-slurm-")
        os.environ["SLURM_CONF"] = cluster.start(cluster_dir)
    work = tempfile.mkdtemp(prefix="sheetrun-bench-")
    try:
        ours, calls, theirs = [], [], []
        for r in range(a.repeats):
            folder = os.path.join(work, f"p{r}")
            t, c = time_sheetrun(folder, a.rows)
            ours.append(t)
            calls.append(c)
            client = SlurmClient(min_poll_s=0)
            start = time.perf_counter()
            sync(open_sheet(os.path.join(folder, "result_sheets", "bench.csv")), folder, client)
            sync_s, sync_calls = time.perf_counter() - start, client.calls
            cancel_all()
            theirs.append(time_per_row(work, a.rows))
            cancel_all()
            print(f"repeat {r + 1}: sheetrun {t:.2f} s ({c} scheduler calls), one sbatch per row "
                  f"{theirs[-1]:.2f} s ({a.rows} calls); sync of {a.rows} queued rows {sync_s:.2f} s "
                  f"({sync_calls} squeue call)", flush=True)
        o, t = statistics.median(ours), statistics.median(theirs)
        print(f"\n{a.rows} rows, median of {a.repeats}:")
        print(f"  sheetrun run --backend slurm : {o:6.2f} s  ({statistics.median(calls):.0f} scheduler calls)")
        print(f"  one sbatch per row           : {t:6.2f} s  ({a.rows} scheduler calls)")
        print(f"  speed-up                     : {t / o:6.1f}x  (per repeat: "
              + ", ".join(f"{b / c:.1f}" for b, c in zip(theirs, ours)) + ")")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if cluster_dir:
            load_cluster_module().stop(cluster_dir)
            shutil.rmtree(cluster_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
