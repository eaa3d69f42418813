"""Google Sheets API requests per row: sheetrun against a naive write-per-cell client.

    python bench/gsheets_requests.py [--rows 100] [--metrics 5] [--jobs 4]

Both talk to the local Sheets v4 server of the tests (tests/sheets_server.py)
through the real gspread client, which counts every request it receives.

- sheetrun: ``sheetrun run URL`` on a sheet of N rows whose script reports M
  metrics, from claiming the rows to the last final status.
- per cell: the same row lifecycle written the way a simple client does it:
  find the row (one read), then one ``update_cell`` per cell: status Running,
  each metric, and status, exit code and walltime at the end.

Prints requests per row for both, and their ratio (target: <= 3 per row).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, REPO)

from sheets_server import SheetsServer  # noqa: E402

KEY = "bench0123456789abcdefghijklmnopqrstuvwx"
URL = f"https://docs.google.com/spreadsheets/d/{KEY}/edit#gid=0"
HEADER = ["path_to_main", "path_to_default_config", "whether_to_run", "delta:x"]


def make_project(folder: str, metrics: int) -> None:
    os.makedirs(os.path.join(folder, "scripts"))
    values = ", ".join(f"m{i}=x * {i + 1}" for i in range(metrics))
    with open(os.path.join(folder, "scripts", "report.py"), "w") as f:
        f.write("import argparse, yaml\nfrom runner import report\n"
                "p = argparse.ArgumentParser(); p.add_argument('--config')\n"
                "x = yaml.safe_load(open(p.parse_args().config))['x']\n"
                f"report({values})\n")
    with open(os.path.join(folder, "config.yaml"), "w") as f:
        f.write("x: 0\n")


def sheetrun_requests(server: SheetsServer, folder: str, rows: int, jobs: int) -> tuple[int, float]:
    server.state.create(KEY, rows=[HEADER] + [["scripts/report.py", "config.yaml", 1, i] for i in range(rows)])
    before = server.state.count()
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "runner", "run", URL, "--root", folder, "--jobs", str(jobs), "--yes"],
                          capture_output=True, text=True, env=dict(os.environ, SHEETRUN_SHEETS_API_URL=server.url))
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return server.state.count() - before, elapsed


def per_cell_requests(server: SheetsServer, rows: int, metrics: int) -> int:
    import gspread
    import requests

    from runner.sheet.gsheet import GOOGLE_API, RebaseAdapter

    key = KEY + "n"
    header = HEADER + ["status", "run_id", "exit_code", "walltime"] + [f"m{i}" for i in range(metrics)]
    server.state.create(key, rows=[header] + [["scripts/report.py", "config.yaml", 1, i, "", f"r{i}"]
                                              for i in range(rows)])
    session = requests.Session()
    session.mount(GOOGLE_API, RebaseAdapter(server.url))
    ws = gspread.Client(auth=None, session=session).open_by_key(key).sheet1
    col = {name: i + 1 for i, name in enumerate(header)}
    before = server.state.count()
    for i in range(rows):
        row = ws.find(f"r{i}", in_column=col["run_id"]).row                 # locate the row by its id
        ws.update_cell(row, col["status"], "Running")
        for m in range(metrics):
            ws.update_cell(row, col[f"m{m}"], i * (m + 1))
        ws.update_cell(row, col["status"], "Completed")
        ws.update_cell(row, col["exit_code"], 0)
        ws.update_cell(row, col["walltime"], "0:00:00.3")
    return server.state.count() - before


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=100)
    p.add_argument("--metrics", type=int, default=5)
    p.add_argument("--jobs", type=int, default=4)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as folder, SheetsServer() as server:
        make_project(folder, a.metrics)
        ours, seconds = sheetrun_requests(server, folder, a.rows, a.jobs)
        naive = per_cell_requests(server, a.rows, a.metrics)
    print(f"{a.rows} rows, {a.metrics} metrics each, --jobs {a.jobs}")
    print(f"  sheetrun run : {ours:5d} requests, {ours / a.rows:5.2f} per row  ({seconds:.1f} s)")
    print(f"  per cell     : {naive:5d} requests, {naive / a.rows:5.2f} per row")
    print(f"  ratio        : {naive / max(1, ours):5.1f}x fewer requests  (target: <= 3 per row)")


if __name__ == "__main__":
    main()
