"""runner.report from inside scripts: light, validated, never failing the job for the sheet."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import BASE, CFG, wait_for

from runner import report
from runner.core.rundir import RunDir
from runner.report import read_metrics_log

HEAVY = ("pandas", "torch", "gspread", "numpy", "rich", "timm", "h5py")


@pytest.mark.parametrize("module", ["runner", "runner.jobwrapper"])
def test_job_side_imports_nothing_heavy(module):
    code = f"import sys, {module}; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_importing_report_loads_nothing_but_itself():
    """``from runner import report`` in a training script: no module beyond the two of its own (what
    a call needs, json and the column names, comes with the first call)."""
    code = "import sys; before = set(sys.modules); from runner import report; print(sorted(set(sys.modules) - before))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['runner', 'runner.report']"


def test_outside_sheetrun_report_is_a_no_op(monkeypatch, capsys):
    monkeypatch.setattr(sys.modules["runner.report"], "_warned", set())       # said once per process: maybe already
    monkeypatch.delenv("SHEETRUN_RUN_DIR", raising=False)
    assert report(acc=np.float32(0.5), step=np.int64(3)) == {"acc": 0.5, "step": 3}
    assert "not running under sheetrun" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [{"status": 1}, {"Status": 1}, {"DELTA:x": 1}, {"delta:x": 1}, {"": 1}, {"  ": 1}, {" acc": 1},
                                 {"name": "x"}, {"Name": "x"}, {"sweep": 1}, {"depends_on": 2}, {"time_limit": 5},
                                 {"a\nb": 1}, {7: 1}, {"x" * 101: 1}, {"x": [1, 2]}, {"x": np.ones(3)},
                                 {"x": object()}])
def test_bad_metrics_are_left_out_with_a_warning_and_the_rest_kept(bad, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys.modules["runner.report"], "_warned", set())       # each problem is said once per process
    monkeypatch.setenv("SHEETRUN_RUN_DIR", str(tmp_path))
    assert report({**bad, "ok": 1}) == {"ok": 1}         # never raises: a metric never kills a run
    assert "not recorded" in capsys.readouterr().err
    assert [json.loads(line)["values"] for line in open(tmp_path / "metrics.jsonl")] == [{"ok": 1}]


NAMES_ITSELF = """
from runner import report
report(name="from the script", sweep="sw 1/2", acc=0.5)
"""


def test_a_script_cannot_create_or_change_a_column_sheetrun_reads(project):
    project.write("scripts/names.py", NAMES_ITSELF)
    path = project.sheet(BASE + ["notes"], [["scripts/names.py", CFG, "1", ""]])      # no name column yet
    project.sheetrun("run", path, check=0)
    row = project.read()[0]
    assert row["status"] == "Completed" and row["acc"] == "0.5"
    assert "name" not in row and "sweep" not in row and "name (metric)" not in row
    import os
    said = open(os.path.join(project.root, row["run_folder"], "stderr.log")).read()   # what the script was told
    assert "'name' is a sheetrun column" in said and "'sweep' is a sheetrun column" in said
    assert "row 1: 1 run(s)" in project.sheetrun("history", path, "1", check=0).stdout


def test_report_into_a_run_folder_that_cannot_be_written_warns_and_goes_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys.modules["runner.report"], "_warned", set())
    monkeypatch.setenv("SHEETRUN_RUN_DIR", str(tmp_path / "gone"))
    assert report(acc=0.5) == {"acc": 0.5}
    assert "cannot record metrics" in capsys.readouterr().err


def test_report_appends_to_the_metrics_log(tmp_path):
    env = dict(os.environ, SHEETRUN_RUN_DIR=str(tmp_path))
    code = "from runner import report; report(acc=0.5); report({'acc': 0.9, 'val loss': 0.1})"
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    lines = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
    assert [l["values"] for l in lines] == [{"acc": 0.5}, {"acc": 0.9, "val loss": 0.1}]
    merged, offset = read_metrics_log(str(tmp_path / "metrics.jsonl"))
    assert merged == {"acc": 0.9, "val loss": 0.1} and offset == os.path.getsize(tmp_path / "metrics.jsonl")
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"t": 1, "values": {"acc"')          # a line still being written
    assert read_metrics_log(str(tmp_path / "metrics.jsonl"), offset) == ({}, offset)


def test_unreachable_sheet_keeps_updates_for_sync(project, tmp_path):
    gate = str(tmp_path / "gate")
    path = project.sheet(BASE + ["delta:name", "delta:gate"], [["scripts/wait.py", CFG, "1", "a", gate]])
    runner = project.popen("run", path)
    wait_for(lambda: project.read()[0].get("progress") == "1", what="job start")
    runner.kill()                                  # the job goes on without its runner
    runner.wait()
    run_dir = os.path.join(project.root, project.read()[0]["run_folder"])
    away = path + ".away"
    os.rename(path, away)                          # the sheet becomes unreachable
    open(gate, "w").close()
    wait_for(lambda: os.path.exists(os.path.join(run_dir, "exit.json")), what="job end")
    # the exit record is written first, then the row's final values, kept when the sheet is away
    # (a Running the job host wrote for itself late, on a busy machine, may be kept before them)
    pending = wait_for(lambda: [u for u in RunDir(run_dir).read_pending() if u["values"].get("status") == "Completed"],
                       what="the final values to be kept")
    assert pending[-1]["values"]["status"] == "Completed"
    os.rename(away, path)
    assert project.read()[0]["status"] == "Running"
    project.sheetrun("sync", path, check=0)
    row = project.read()[0]
    assert row["status"] == "Completed" and row["progress"] == "2" and row["whether_to_run"] == "0"
    assert not os.path.exists(os.path.join(run_dir, "pending_updates.jsonl"))


def _row_sheet(tmp_path, status):
    path = tmp_path / "s.csv"
    path.write_text(f"path_to_main,path_to_default_config,whether_to_run,run_id,status\nx.py,c.yaml,1,rX,{status}\n")
    return str(path)


def test_a_held_back_running_write_never_lands_after_the_final_status(tmp_path):
    from runner.core.columns import Status
    from runner.job.delivery import push_to_sheet
    from runner.runs.sync import deliver_pending
    from runner.sheet import open_sheet

    rd = RunDir(str(tmp_path))
    rd.add_pending({"status": "Running", "job_id": 7}, Status.TERMINAL)   # the sheet was away
    path = _row_sheet(tmp_path, "Submitted")
    assert push_to_sheet(rd, path, "rX", {"status": "Completed", "acc": 0.5})
    assert rd.read_pending() == []
    assert deliver_pending(open_sheet(path), rd, "rX") == 0
    row = open_sheet(path).read().rows[0]
    assert row.get("status") == "Completed" and row.get("job_id") == "7" and row.get("acc") == "0.5"


def test_delivered_writes_keep_their_order_and_conditions(tmp_path):
    from runner.core.columns import Status
    from runner.runs.sync import deliver_pending
    from runner.sheet import open_sheet

    rd = RunDir(str(tmp_path))
    rd.add_pending({"status": "Running"}, Status.TERMINAL)
    path = _row_sheet(tmp_path, "Cancelled")
    assert deliver_pending(open_sheet(path), rd, "rX") == 1
    assert open_sheet(path).read().rows[0].get("status") == "Cancelled"   # voided: row is terminal
    rd.add_pending({"status": "Running"}, Status.TERMINAL)
    rd.add_pending({"status": "Completed", "acc": 1})
    path = _row_sheet(tmp_path, "Submitted")
    assert deliver_pending(open_sheet(path), rd, "rX") == 2
    row = open_sheet(path).read().rows[0]
    assert row.get("status") == "Completed" and row.get("acc") == "1"
