"""How much does sheetrun add over launching the same scripts by hand?

N rows of a trivial script (reads its config, reports two metrics) through
``sheetrun run --jobs 4``, against the same N scripts launched bare with the
same concurrency (a pool of 4 subprocesses; ``report`` is a no-op outside
sheetrun). The two alternate and repeat; the table gives medians, the median
of the per-repeat ratios (target: at most 1.15x), the extra time per row, how
many times the sheet file was rewritten (it is bounded by time, not by rows),
the CPU both used, and the metric writes missing from the sheet (target: 0).

    python bench/runner_overhead.py [--rows 200,3000] [--jobs 4] [--repeats 3]
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import resource
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


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_sheetrun(root: str, sheet: str, jobs: int) -> dict:
    cpu, t0 = _cpu(), time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "runner", "run", sheet, "--jobs", str(jobs)],
                          capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _cpu() - cpu
    if proc.returncode != 0:
        sys.exit(f"sheetrun failed:\n{proc.stderr[-3000:]}")
    with open(sheet, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = sum((r.get("score") != str(int(r["delta:x"]) * 2)) + (r.get("half") in (None, ""))
                  for r in rows)
    record = glob.glob(os.path.join(root, "experiments", "bench", ".launches", "*.json"))
    rewrites = json.load(open(record[0])).get("sheet_rewrites") if len(record) == 1 else None
    return {"wall": wall, "cpu": cpu, "missing": missing, "rewrites": rewrites}


def run_bare(root: str, rows: int, jobs: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHEETRUN_")}

    def one(i: int) -> None:
        subprocess.run([sys.executable, os.path.join(root, "task.py"), "--config",
                        os.path.join(root, f"cfg{i}.yaml")], cwd=root, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    cpu, t0 = _cpu(), time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, range(rows)))
    return {"wall": time.perf_counter() - t0, "cpu": _cpu() - cpu}


def measure(rows: int, jobs: int, repeats: int) -> dict:
    runs = {"sheetrun": [], "bare": []}
    for rep in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            sheet = make_project(tmp, rows)
            order = ("sheetrun", "bare") if rep % 2 == 0 else ("bare", "sheetrun")
            for what in order:
                runs[what].append(run_sheetrun(tmp, sheet, jobs) if what == "sheetrun" else run_bare(tmp, rows, jobs))
        s, b = runs["sheetrun"][-1], runs["bare"][-1]
        print(f"  {rows} rows, repeat {rep + 1}: sheetrun {s['wall']:.2f}s  bare {b['wall']:.2f}s  "
              f"ratio {s['wall'] / b['wall']:.2f}  sheet rewrites {s['rewrites']}", flush=True)
    med = {what: {k: statistics.median(r[k] for r in rs) for k in ("wall", "cpu")} for what, rs in runs.items()}
    ratios = [s["wall"] / b["wall"] for s, b in zip(runs["sheetrun"], runs["bare"])]
    return {"rows": rows, "sheetrun": med["sheetrun"], "bare": med["bare"], "ratio": statistics.median(ratios),
            "per_row_ms": 1000 * (med["sheetrun"]["wall"] - med["bare"]["wall"]) / rows,
            "rewrites": statistics.median(r["rewrites"] or 0 for r in runs["sheetrun"]),
            "missing": sum(r["missing"] for r in runs["sheetrun"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="200", help="comma-separated sheet sizes, e.g. 200,3000")
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    results = [measure(int(n), args.jobs, args.repeats) for n in args.rows.split(",")]
    print(f"\n--jobs {args.jobs}, {os.cpu_count()} cores, medians of {args.repeats} alternating repeats:\n")
    print("| rows | sheetrun | bare | ratio (target <= 1.15) | extra per row | sheet rewrites "
          "| CPU sheetrun / bare | lost metric writes |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['rows']} | {r['sheetrun']['wall']:.2f} s | {r['bare']['wall']:.2f} s | {r['ratio']:.2f}x "
              f"| {r['per_row_ms']:.1f} ms | {r['rewrites']:.0f} | {r['sheetrun']['cpu']:.1f} s / "
              f"{r['bare']['cpu']:.1f} s | {r['missing']} |")


if __name__ == "__main__":
    main()
