"""The README's Quick start is what CI runs, and the demo sheet is valid."""
import os
import re
import shutil
import subprocess
import sys

from conftest import REPO


def quick_start_commands():
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, re.S)


def test_quick_start_has_exactly_two_commands_and_ci_runs_the_test_one():
    commands = quick_start_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    install_and_run, install_and_test = commands
    assert "sheetrun run result_sheets/demo.csv" in install_and_run
    assert "scripts/generate_result_tables.py result_sheets/demo.csv" in install_and_run
    lines = open(os.path.join(REPO, ".ci", "run")).read().splitlines()
    assert install_and_run in lines and install_and_test in lines          # CI runs both, as written,
    assert lines.index(install_and_run) < lines.index(install_and_test)   # in the README's order,
    venv = next(i for i, line in enumerate(lines) if "-m venv" in line)    # in a fresh environment
    assert venv < lines.index(install_and_run)


def test_quickstart_sheet_runs(tmp_path):
    root = tmp_path / "copy"
    for part in ("tasks", "default_configs", "result_sheets"):
        shutil.copytree(os.path.join(REPO, part), root / part)
    subprocess.run([sys.executable, "-m", "runner", "reset", str(root / "result_sheets/quickstart.csv")],
                   check=True, capture_output=True)          # whatever state the tracked sheet is in
    proc = subprocess.run([sys.executable, "-m", "runner", "run", str(root / "result_sheets/quickstart.csv"),
                           "--jobs", "2"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    import csv
    rows = list(csv.DictReader(open(root / "result_sheets/quickstart.csv")))
    assert all(r["status"] == "Completed" for r in rows)
    assert all(float(r["val_acc"]) > 0.8 for r in rows)


def test_the_own_experiment_walkthrough_runs_as_written(tmp_path):
    """The README's "Your own experiment": its three files and its commands, as a newcomer types them."""
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    section = text.split("## Your own experiment", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(\w*)\n(.*?)\n```", section, re.S)
    files = {body.splitlines()[0][2:].strip(): body.split("\n", 1)[1] + "\n"
             for _, body in blocks if body.startswith("# ")}
    assert set(files) == {"tasks/mine/train.py", "default_configs/mine/train.yaml", "result_sheets/mine.csv"}
    for rel, body in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(body)
    commands = [line.split("#")[0].split() for kind, body in blocks if kind == "bash" for line in body.splitlines()]
    assert [c[:2] for c in commands] == [["sheetrun", "run"], ["sheetrun", "summarize"]]
    outs = []
    for command in commands:
        proc = subprocess.run([sys.executable, "-m", "runner", *command[1:]], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append(proc.stdout)
    import csv
    rows = list(csv.DictReader(open(tmp_path / "result_sheets/mine.csv")))
    runs = [r for r in rows if r["sweep"] and "/" in r["name"]]
    assert len(runs) == 6 and all(r["status"] == "Completed" and r["acc"] for r in runs)
    summary = outs[1]
    # acc at the last epoch: 1 - 0.5 ** (5 lr) + 0.01 seed, seeds 0, 1, 2: mean at seed 1, std 0.01
    for lr in (0.1, 0.5):
        mean = 1 - 0.5 ** (5 * lr) + 0.01
        line = next(line for line in summary.splitlines() if f"lr={lr}" in line)
        assert f"{mean:.4g} ± 0.01 (3)" in line, (line, mean)
