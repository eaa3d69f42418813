"""How much does sheetrun add over launching the same scripts by hand?

200 rows of a trivial script (reads its config, reports two metrics) through
``sheetrun run --jobs 4``, against the same 200 scripts launched bare with
the same concurrency (a pool of 4 subprocesses; ``report`` is a no-op outside
sheetrun). Runs alternate and repeat; medians and their ratio are printed,
with the number of metric writes missing from the sheet (target: 0).

    python bench/runner_overhead.py [--rows 200] [--jobs 4] [--repeats 3]
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

SCRIPT = """\
import argparse, yaml
from runner import report
parser = argparse.ArgumentParser()
parser.add_argument("--config", required=True)
cfg = yaml.safe_load(open(parser.parse_args().config))
report(score=cfg["x"] * 2, half=cfg["x"] / 2)
"""


def make_project(root: str, rows: int) -> str:
    os.makedirs(os.path.join(root, "result_sheets"))
    with open(os.path.join(root, "task.py"), "w") as f:
        f.write(SCRIPT)
    with open(os.path.join(root, "base.yaml"), "w") as f:
        f.write("x: 0\n")
    sheet = os.path.join(root, "result_sheets", "bench.csv")
    with open(sheet, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path_to_main", "path_to_default_config", "whether_to_run", "delta:x"])
        for i in range(rows):
            w.writerow(["task.py", "base.yaml", "1", i])
    for i in range(rows):
        with open(os.path.join(root, f"cfg{i}.yaml"), "w") as f:
            f.write(f"x: {i}\n")
    return sheet


def run_sheetrun(root: str, sheet: str, jobs: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "runner", "run", sheet, "--jobs", str(jobs)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"sheetrun failed:\n{proc.stderr[-3000:]}")
    with open(sheet, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = sum((r.get("score") != str(int(r["delta:x"]) * 2)) + (r.get("half") in (None, ""))
                  for r in rows)
    return wall, missing


def run_bare(root: str, rows: int, jobs: int) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHEETRUN_")}

    def one(i: int) -> None:
        subprocess.run([sys.executable, os.path.join(root, "task.py"), "--config",
                        os.path.join(root, f"cfg{i}.yaml")], cwd=root, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, range(rows)))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    sheet_times, bare_times, lost = [], [], 0
    for rep in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            sheet = make_project(tmp, args.rows)
            order = ("sheetrun", "bare") if rep % 2 == 0 else ("bare", "sheetrun")
            for what in order:
                if what == "bare":
                    bare_times.append(run_bare(tmp, args.rows, args.jobs))
                else:
                    wall, missing = run_sheetrun(tmp, sheet, args.jobs)
                    sheet_times.append(wall)
                    lost += missing
        print(f"repeat {rep + 1}: sheetrun {sheet_times[-1]:.2f}s  bare {bare_times[-1]:.2f}s  "
              f"ratio {sheet_times[-1] / bare_times[-1]:.2f}", flush=True)
    s, b = statistics.median(sheet_times), statistics.median(bare_times)
    print(f"\n{args.rows} rows, --jobs {args.jobs}, {os.cpu_count()} cores, median of {args.repeats}:")
    print(f"  sheetrun run : {s:6.2f} s")
    print(f"  bare launch  : {b:6.2f} s")
    ratios = [x / y for x, y in zip(sheet_times, bare_times)]
    print(f"  ratio        : {s / b:6.2f}x of medians, {statistics.median(ratios):.2f}x median "
          f"of per-repeat ratios   (target <= 2.0)")
    print(f"  lost metric writes: {lost}   (target 0)")


if __name__ == "__main__":
    main()
