"""How much does sheetrun add over launching the same scripts by hand?

N rows of a trivial script (reads its config, reports two metrics) through
``sheetrun run --jobs 4``, against what a user without sheetrun runs: the same
script printing its two numbers instead of reporting them (no sheetrun import),
launched with the same concurrency (a pool of 4 subprocesses). Two more bare
sides show where sheetrun's cost goes: the script with ``from runner import
report`` (a no-op outside sheetrun), and that script started through
``setpriv --pdeathsig KILL`` as sheetrun starts every job. The sides rotate and
repeat; the table gives medians, the median of the per-repeat ratios to the
bare script (target: at most 1.15x), the extra time per row, how many times the
sheet file was rewritten (it is bounded by time, not by rows), the CPU each
used, and the metric writes missing from the sheet (target: 0). The second
table splits sheetrun's extra CPU per row into its parts: the import, setpriv,
the runner process (its run folders and its sheet writes, from cProfile), and
the job host.

    python bench/runner_overhead.py [--rows 200,3000] [--jobs 4] [--repeats 3]
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runner.core.procs import pdeathsig_prefix  # noqa: E402

SCRIPT = """\
import argparse, yaml
from runner import report
parser = argparse.ArgumentParser()
parser.add_argument("--config", required=True)
cfg = yaml.safe_load(open(parser.parse_args().config))
report(score=cfg["x"] * 2, half=cfg["x"] / 2)
"""
BARE_SCRIPT = """\
import argparse, yaml
parser = argparse.ArgumentParser()
parser.add_argument("--config", required=True)
cfg = yaml.safe_load(open(parser.parse_args().config))
print(f"score={cfg['x'] * 2} half={cfg['x'] / 2}")
"""


def make_project(root: str, rows: int) -> str:
    os.makedirs(os.path.join(root, "result_sheets"))
    with open(os.path.join(root, "task.py"), "w") as f:
        f.write(SCRIPT)
    with open(os.path.join(root, "bare_task.py"), "w") as f:
        f.write(BARE_SCRIPT)
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


# `python -m runner` under cProfile counting CPU time (process_time), not the wall time it waits; the job
# host it forks is not profiled (a profiler left running there made the host look 2-3x its cost)
PROFILED = """\
import cProfile, os, runpy, sys, time
out, sys.argv = sys.argv[1], ["sheetrun", *sys.argv[2:]]
profiler = cProfile.Profile(time.process_time)
os.register_at_fork(after_in_child=profiler.disable)
try:
    profiler.runcall(runpy.run_module, "runner", run_name="__main__", alter_sys=True)
except SystemExit as exit:
    code = exit.code
else:
    code = 0
profiler.dump_stats(out)
sys.exit(code)
"""


def run_sheetrun(root: str, sheet: str, jobs: int, profiled: bool = False) -> dict:
    profile = os.path.join(root, "runner.prof")
    python = [sys.executable, "-c", PROFILED, profile] if profiled else [sys.executable]
    cpu, t0 = _cpu(), time.perf_counter()
    command = [*python, "run", sheet, "--jobs", str(jobs)] if profiled else \
        [*python, "-m", "runner", "run", sheet, "--jobs", str(jobs)]
    proc = subprocess.run(command, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _cpu() - cpu
    if proc.returncode != 0:
        sys.exit(f"sheetrun failed:\n{proc.stderr[-3000:]}")
    with open(sheet, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = sum((r.get("score") != str(int(r["delta:x"]) * 2)) + (r.get("half") in (None, ""))
                  for r in rows)
    record = glob.glob(os.path.join(root, "experiments", "bench", ".launches", "*.json"))
    rewrites = json.load(open(record[0])).get("sheet_rewrites") if len(record) == 1 else None
    return {"wall": wall, "cpu": cpu, "missing": missing, "rewrites": rewrites,
            **(runner_parts(profile) if profiled else {})}


def runner_parts(profile: str) -> dict:
    """CPU seconds of the runner process (cProfile's total over process_time; its own cost included),
    and the cumulative seconds of its run-folder preparation and of its sheet writes."""
    stats = pstats.Stats(profile).stats
    total = sum(tt for (_cc, _nc, tt, _ct, _callers) in stats.values())

    def cumulative(file_end: str, name: str) -> float:
        return sum(ct for (path, _line, fn), (_cc, _nc, _tt, ct, _c) in stats.items()
                   if fn == name and path.endswith(file_end))
    return {"runner": total, "run_folders": cumulative("launch/pipeline.py", "prepare"),
            "sheet_writes": cumulative("sheet/csv_sheet.py", "transact")}


SIDES = ("sheetrun", "bare", "bare+import", "bare+import+setpriv", "sheetrun, profiled")


def run_bare(root: str, rows: int, jobs: int, side: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHEETRUN_")}
    script = os.path.join(root, "bare_task.py" if side == "bare" else "task.py")
    prefix = list(pdeathsig_prefix()) if side.endswith("setpriv") else []

    def one(i: int) -> None:
        subprocess.run([*prefix, sys.executable, script, "--config", os.path.join(root, f"cfg{i}.yaml")],
                       cwd=root, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    cpu, t0 = _cpu(), time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, range(rows)))
    return {"wall": time.perf_counter() - t0, "cpu": _cpu() - cpu}


def measure(rows: int, jobs: int, repeats: int) -> dict:
    runs = {side: [] for side in SIDES}
    for rep in range(repeats):
        for side in SIDES[rep % len(SIDES):] + SIDES[:rep % len(SIDES)]:
            with tempfile.TemporaryDirectory() as tmp:         # a fresh project each side
                sheet = make_project(tmp, rows)
                runs[side].append(run_sheetrun(tmp, sheet, jobs, profiled=side != "sheetrun")
                                  if side.startswith("sheetrun") else run_bare(tmp, rows, jobs, side))
        s, b = runs["sheetrun"][-1], runs["bare"][-1]
        print(f"  {rows} rows, repeat {rep + 1}: sheetrun {s['wall']:.2f}s  bare {b['wall']:.2f}s  "
              f"ratio {s['wall'] / b['wall']:.2f}  sheet rewrites {s['rewrites']}", flush=True)
    med = {side: {k: statistics.median(r[k] for r in rs) for k in rs[0] if k not in ("missing", "rewrites")}
           for side, rs in runs.items()}
    ratios = {side: statistics.median(s["wall"] / b["wall"] for s, b in zip(runs[side], runs["bare"]))
              for side in SIDES}
    if any(r["missing"] for r in runs["sheetrun, profiled"]):
        sys.exit("the profiled run lost metric writes")
    return {"rows": rows, "med": med, "ratios": ratios,
            "per_row_ms": 1000 * (med["sheetrun"]["wall"] - med["bare"]["wall"]) / rows,
            "rewrites": statistics.median(r["rewrites"] or 0 for r in runs["sheetrun"]),
            "missing": sum(r["missing"] for r in runs["sheetrun"])}


def parts(r: dict) -> list:
    """sheetrun's extra CPU per row (ms), part by part."""
    med, n = r["med"], r["rows"]
    s = med["sheetrun, profiled"]

    def per_row(seconds: float) -> float:
        return 1000 * seconds / n
    return [("from runner import report, in each script", per_row(med["bare+import"]["cpu"] - med["bare"]["cpu"])),
            ("setpriv --pdeathsig, in each job's start", per_row(med["bare+import+setpriv"]["cpu"]
                                                              - med["bare+import"]["cpu"])),
            ("runner: run folders (config, job.json)", per_row(s["run_folders"])),
            ("runner: sheet writes", per_row(s["sheet_writes"])),
            ("runner: the rest (plan, claim, launch loop, its start)",
             per_row(s["runner"] - s["run_folders"] - s["sheet_writes"])),
            ("job host (starts, watches, forwards metrics)",
             per_row(s["cpu"] - s["runner"] - med["bare+import+setpriv"]["cpu"])),
            ("total (profiled)", per_row(s["cpu"] - med["bare"]["cpu"])),
            ("total (not profiled)", per_row(med["sheetrun"]["cpu"] - med["bare"]["cpu"]))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="200", help="comma-separated sheet sizes, e.g. 200,3000")
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    results = [measure(int(n), args.jobs, args.repeats) for n in args.rows.split(",")]
    print(f"\n--jobs {args.jobs}, {os.cpu_count()} cores, medians of {args.repeats} rotating repeats; "
          "ratios to the bare script (no sheetrun import):\n")
    print("| rows | sheetrun | bare | ratio (target <= 1.15) | bare + import | bare + import + setpriv "
          "| extra per row | sheet rewrites | CPU sheetrun / bare | lost metric writes |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        med, ratio = r["med"], r["ratios"]
        print(f"| {r['rows']} | {med['sheetrun']['wall']:.2f} s | {med['bare']['wall']:.2f} s | "
              f"{ratio['sheetrun']:.2f}x | {ratio['bare+import']:.2f}x | {ratio['bare+import+setpriv']:.2f}x "
              f"| {r['per_row_ms']:.1f} ms | {r['rewrites']:.0f} | {med['sheetrun']['cpu']:.1f} s / "
              f"{med['bare']['cpu']:.1f} s | {r['missing']} |")
    print("\nsheetrun's extra CPU per row, by part (ms; the runner's parts from cProfile, which adds its own cost):\n")
    print("| part | " + " | ".join(f"{r['rows']} rows" for r in results) + " |")
    print("|---|" + "---|" * len(results))
    for i, (name, _) in enumerate(parts(results[0])):
        print(f"| {name} | " + " | ".join(f"{parts(r)[i][1]:.2f}" for r in results) + " |")


if __name__ == "__main__":
    main()
