"""Attacked as an operator would: two launches at once, poisoned results, a full disk,
killed wrappers and daemons, hostile metric names, ragged rows, unwritable sheets.

Each test here failed on the runner before the exclusive claim, the single writer and
the process handling were built (issue 10).
"""
import json
import os
import signal
import subprocess
import time

import psutil
import pytest
from conftest import BASE, CFG, fill_up, job_host_pid, wait_for
from filelock import FileLock

from runner.core.rundir import RunDir


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- 1. a row's claim is exclusive ----------------------------------------------------------------

@pytest.mark.parametrize("start", ["under a held lock", "under a held lock, longer", "at the same instant",
                                   "0.1 s apart", "0.3 s apart"])
def test_two_runners_started_together_run_each_row_exactly_once(project, tmp_path, start):
    log = str(tmp_path / "starts.log")
    gate = str(tmp_path / "gate")
    # no row ends before the later runner has claimed (it waits at its gate until then): it sees all ten held
    project.write("scripts/gated_stamp.py", "import os, sys, time, yaml\ncfg = yaml.safe_load(open(sys.argv[2]))\n"
                  "open(cfg['log'], 'a').write(f\"start {cfg['name']}\\n\")\n"
                  "while not os.path.exists(cfg['gate']):\n    time.sleep(0.02)\n")
    rows = [["scripts/gated_stamp.py", CFG, "1", f"n{i}", log, gate] for i in range(10)]
    path = project.sheet(BASE + ["delta:name", "delta:log", "delta:gate"], rows)
    from runner.sheet.csv_sheet import CsvSheet
    lock = FileLock(CsvSheet(path).lock_path)
    held = start.startswith("under")
    if held:
        lock.acquire()               # a third program holds the sheet while both start
    try:
        first = project.popen("run", path, "--jobs", "4")
        if start.endswith("apart"):
            time.sleep(float(start.split()[0]))
        second = project.popen("run", path, "--jobs", "4")
        if held:
            time.sleep(1.3 if start.endswith("longer") else 0.8)
    finally:
        if held:
            lock.release()
    try:                                 # the runner that claimed nothing ends; then the rows may
        wait_for(lambda: first.poll() is not None or second.poll() is not None, timeout=120,
                 what="the runner that found every row held to end")
    finally:
        open(gate, "w").close()
    outs = [p.communicate(timeout=120) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outs
    starts = [line.split()[1] for line in open(log) if line.startswith("start")]
    assert sorted(starts) == sorted(f"n{i}" for i in range(10)), "a row ran twice, or not at all"
    assert all(r["status"] == "Completed" for r in project.read())
    named = _skipped_rows("".join(err for _, err in outs))       # the loser names every row, and why
    assert named == set(range(1, 11)), named


def _collect(stream):
    """What a pipe says, line by line, as it says it (read on a thread of its own, which ends with it)."""
    import threading

    lines: list[str] = []
    reader = threading.Thread(target=lambda: [lines.append(line) for line in stream], daemon=True)
    reader.start()
    return lines, reader


def _exits(project) -> list[str]:
    import glob

    return glob.glob(os.path.join(project.root, "experiments", "*", "*", "exit.json"))


def _skipped_rows(stderr: str) -> set[int]:
    import re

    out = set()
    for spec in re.findall(r"rows? ([\d,-]+) not started: still held by an earlier run \(", stderr):
        for part in spec.split(","):
            lo, _, hi = part.partition("-")
            out.update(range(int(lo), int(hi or lo) + 1))
    return out


def test_sync_never_takes_a_row_a_live_runner_holds(project, tmp_path):
    gate = str(tmp_path / "gate")
    path = project.sheet(BASE + ["delta:name", "delta:gate"],
                         [["scripts/wait.py", CFG, "1", "a", gate], ["scripts/ok.py", CFG, "1", "b", ""]])
    runner = project.popen("run", path, "--jobs", "1")
    try:
        wait_for(lambda: project.read()[0].get("progress") == "1", what="the first job")
        out = project.sheetrun("sync", path, check=0).stdout
        rows = project.read()
        assert [r["status"] for r in rows] == ["Running", "Submitted"]    # queued row: not Lost
        assert "queued in a live sheetrun" in out
        open(gate, "w").close()
        assert runner.wait(60) == 0
    finally:
        runner.kill()
    assert [r["status"] for r in project.read()] == ["Completed", "Completed"]


# -- 2. no reported value crashes the runner or sync ------------------------------------------------

POISON = """
import json, os
with open(os.path.join(os.environ["SHEETRUN_RUN_DIR"], "results.json"), "w") as f:
    json.dump({"": 1, "bad\\nname": 2, "status": "hijack", "nested": {"a": 1}, "good": 3}, f)
"""


def test_poisoned_results_and_pending_writes_never_stop_run_or_sync(project):
    project.write("scripts/poison.py", POISON)
    path = project.sheet(BASE + ["delta:name"], [["scripts/poison.py", CFG, "1", "p"],
                                                 ["scripts/ok.py", CFG, "1", "b"],
                                                 ["scripts/ok.py", CFG, "1", "c"]])
    proc = project.sheetrun("run", path)
    assert proc.returncode == 0, proc.stderr
    first, second, third = project.read()
    assert first["status"] == "Completed" and first["good"] == "3"
    assert "a metric name cannot be empty" in first["error"] and "hijack" not in json.dumps(first)
    from runner.sheet import open_sheet
    header = open_sheet(path).read().header
    assert "" not in header and not any("\n" in name for name in header) and "nested" not in header
    # a job left writes it could not deliver, some of them poisoned; another row was left Running
    folder = os.path.join(project.root, second["run_folder"])
    with open(os.path.join(folder, "pending_updates.jsonl"), "w") as f:
        f.write(json.dumps({"values": {"": 1, "x\ny": 2, "late": 4}, "skip_statuses": []}) + "\n")
        f.write("not json at all\n")
        f.write(json.dumps({"values": ["not", "a", "mapping"]}) + "\n")
    text = open(path).read().replace(",Completed," + third["run_id"], ",Running," + third["run_id"])
    open(path, "w").write(text)
    assert project.read()[2]["status"] == "Running"
    for _ in range(2):                      # and again: nothing is left to poison a later sync
        proc = project.sheetrun("sync", path)
        assert proc.returncode == 0, proc.stderr
    rows = project.read()
    assert [r["status"] for r in rows] == ["Completed"] * 3
    assert rows[1]["late"] == "4"
    assert not os.path.exists(os.path.join(folder, "pending_updates.jsonl"))


# -- 3. a full disk -----------------------------------------------------------------------------------

def test_full_runs_disk_settles_every_row_with_the_cause(project, tmpfs):
    runs = tmpfs("1m", "runs")
    path = project.sheet(BASE + ["delta:name", "delta:log"],
                         [["scripts/fill.py", CFG, "1", "filler", os.path.join(runs, "fill.bin")]]
                         + [["scripts/ok.py", CFG, "1", f"r{i}", ""] for i in range(4)])
    proc = project.sheetrun("run", path, "--runs-dir", runs, "--jobs", "1")
    assert "Traceback" not in proc.stderr, proc.stderr
    rows = project.read()
    # the script that filled the disk exited 0: Completed, and the row says what could not be saved
    assert rows[0]["status"] == "Completed" and rows[0]["exit_code"] == "0"
    assert "disk full" in rows[0]["error"]
    for row in rows[1:]:              # every later row is settled, with the cause
        assert row["status"] in ("Completed", "Failed"), row
        if row["status"] == "Failed":
            assert "disk full" in row["error"], row
    assert all(r["status"] != "Lost" for r in rows)


def test_full_sheet_disk_runs_every_row_and_delivers_when_space_returns(project, tmpfs, tmp_path):
    sheet_dir = tmpfs("256k", "sheets")
    path = os.path.join(sheet_dir, "sheet.csv")
    gate = str(tmp_path / "gate")
    rows = [["scripts/wait.py", CFG, "1", "a", gate]] + [["scripts/ok.py", CFG, "1", f"r{i}", ""] for i in range(6)]
    header = ",".join(BASE + ["delta:name", "delta:gate"]) + "\n"
    with open(path, "w") as f:
        f.write(header + "".join(",".join(r) + "\n" for r in rows))
    runner = project.popen("run", path, "--root", project.root, "--jobs", "1")
    try:
        wait_for(lambda: open(path).read().count("Running") == 1 and "progress" in open(path).read(),
                 what="the first job to report")
        filler = fill_up(sheet_dir)         # the sheet's filesystem fills up mid-run
        open(gate, "w").close()
        out, err = runner.communicate(timeout=120)
    finally:
        runner.kill()
    assert runner.returncode == 0, err       # every row ran and completed; only the sheet is behind
    assert "Traceback" not in err and "disk full" in err and "sheetrun sync" in err
    from runner.sheet import open_sheet
    assert [r.get("status") for r in open_sheet(path).read().rows].count("Submitted") == 6
    os.unlink(filler)                        # space comes back
    proc = project.sheetrun("sync", path, "--root", project.root)
    assert proc.returncode == 0, proc.stderr
    table = open_sheet(path).read()
    assert [r.get("status") for r in table.rows] == ["Completed"] * 7
    assert [r.get("score") for r in table.rows][1:] == ["2"] * 6 and table.rows[0].get("progress") == "2"


def test_sheet_disk_full_for_a_while_loses_nothing_and_needs_no_sync(project, tmpfs, tmp_path):
    sheet_dir = tmpfs("256k", "sheets")
    path = os.path.join(sheet_dir, "sheet.csv")
    gate = str(tmp_path / "gate")
    with open(path, "w") as f:
        f.write(",".join(BASE + ["delta:name", "delta:gate"]) + "\n")
        f.write(f"scripts/wait.py,{CFG},1,a,{gate}\n")
        f.write("".join(f"scripts/ok.py,{CFG},1,r{i},\n" for i in range(4)))
        f.write(f"scripts/wait.py,{CFG},1,z,{gate}2\n")
    runner = project.popen("run", path, "--root", project.root, "--jobs", "1")
    try:
        wait_for(lambda: "progress" in open(path).read(), what="the first job to report")
        filler = fill_up(sheet_dir)
        said, reader = _collect(runner.stderr)
        open(gate, "w").close()
        # rows run and end while the sheet cannot be written, and the runner has said so
        wait_for(lambda: len(_exits(project)) == 5 and "disk full" in "".join(said), timeout=60,
                 what="five rows to end while the sheet's disk is full")
        os.unlink(filler)
        open(gate + "2", "w").close()
        runner.wait(timeout=120)
        reader.join(30)
        err = "".join(said)
    finally:
        runner.kill()
    assert runner.returncode == 0, err
    assert "disk full" in err and "can be written again" in err
    from runner.sheet import open_sheet
    assert [r.get("status") for r in open_sheet(path).read().rows] == ["Completed"] * 6


# -- 4. no process outlives its row -------------------------------------------------------------------

def test_killing_a_wrapper_ends_its_script_and_its_setsid_daemon(project, tmp_path):
    pidfile = str(tmp_path / "pids")
    path = project.sheet(BASE + ["delta:name", "delta:pidfile"],
                         [["scripts/daemon.py", CFG, "1", "linger", pidfile],
                          ["scripts/ok.py", CFG, "1", "next", ""]])
    runner = project.popen("run", path, "--jobs", "1")
    try:
        wait_for(lambda: os.path.exists(pidfile) and open(pidfile).read(), what="the job to start")
        script, daemon = map(int, open(pidfile).read().split())
        wrapper = job_host_pid(project, project.read()[0])
        os.kill(wrapper, signal.SIGKILL)
        wait_for(lambda: not _alive(script), timeout=5, what="the script to die with its wrapper")
        wait_for(lambda: not _alive(daemon), timeout=10, what="the daemon to be ended")
        _, err = runner.communicate(timeout=60)
    finally:
        runner.kill()
    first, second = project.read()
    assert first["status"] == "Lost" and "killed by SIGKILL" in first["error"], first
    assert second["status"] == "Completed"


def test_a_daemon_left_by_a_finished_script_is_ended_with_its_row(project, tmp_path):
    pidfile = str(tmp_path / "pids")
    path = project.sheet(BASE + ["delta:name", "delta:pidfile"], [["scripts/daemon.py", CFG, "1", "quick", pidfile]])
    project.sheetrun("run", path, check=0)
    script, daemon = map(int, open(pidfile).read().split())
    assert project.read()[0]["status"] == "Completed"
    wait_for(lambda: not _alive(daemon), timeout=5, what="the daemon to be ended")


def test_sync_does_not_call_lost_a_job_whose_processes_still_run_and_cancel_ends_them(project, tmp_path):
    pidfile = str(tmp_path / "pids")
    path = project.sheet(BASE + ["delta:name", "delta:pidfile"], [["scripts/daemon.py", CFG, "1", "linger", pidfile]])
    runner = project.popen("run", path)
    try:
        wait_for(lambda: os.path.exists(pidfile) and open(pidfile).read(), what="the job to start")
        script, daemon = map(int, open(pidfile).read().split())
        wrapper = job_host_pid(project, project.read()[0])
        runner.kill()                          # the runner dies first, then the wrapper
        runner.wait()
        os.kill(wrapper, signal.SIGKILL)
        wait_for(lambda: not _alive(script), timeout=5, what="the script to die with its wrapper")
        assert _alive(daemon)                  # nobody was left to end it
        out = project.sheetrun("sync", path, check=0).stdout
        assert project.read()[0]["status"] == "Running" and "still run" in out
        # and a second run does not start the row while its processes run
        second = project.sheetrun("run", path, check=0)
        assert "row 1 not started: still held" in second.stderr
        project.sheetrun("cancel", path, check=0)
        wait_for(lambda: not _alive(daemon), timeout=10, what="cancel to end the daemon")
    finally:
        runner.kill()
        if _alive(daemon):
            os.kill(daemon, signal.SIGKILL)
    assert project.read()[0]["status"] == "Cancelled"


# -- 5. a person's cells are never written -------------------------------------------------------------

HIJACK = """
from runner import report
report(notes="from the script", comment="script comment", acc=0.5)
"""


def test_report_cannot_change_a_persons_cell(project):
    project.write("scripts/hijack.py", HIJACK)
    path = project.sheet(BASE + ["delta:name", "notes", "comment"],
                         [["scripts/hijack.py", CFG, "1", "a", "my notes, keep them", ""],
                          ["scripts/hijack.py", CFG, "0", "b", "", ""]])
    proc = project.sheetrun("run", path, check=0)
    rows = project.read()
    assert rows[0]["notes"] == "my notes, keep them" and rows[1]["notes"] == ""
    assert rows[0]["notes (metric)"] == "from the script"
    assert rows[0]["comment"] == "script comment"        # an empty column is free to take
    assert rows[0]["acc"] == "0.5"
    assert "went to column 'notes (metric)'" in proc.stderr
    # rerun: the script's own columns are reused, the person's cell is still untouched
    text = open(path).read()
    open(path, "w").write(text.replace("hijack.py,default_configs/base.yaml,0,b", "hijack.py,default_configs/base.yaml,1,b"))
    project.sheetrun("run", path, check=0)
    rows = project.read()
    assert rows[0]["notes"] == "my notes, keep them" and rows[1]["notes"] == ""
    assert rows[1]["notes (metric)"] == "from the script" and rows[1]["comment"] == "script comment"


def test_ragged_rows_are_errors_and_never_written(project):
    header = ",".join(BASE + ["delta:name"])
    ok = f"scripts/ok.py,{CFG},1,good"
    ragged_idle = f"scripts/ok.py,{CFG},0,idle,Running,rdeadbeef"    # extra trailing fields
    ragged_selected = f"scripts/ok.py,{CFG},1,oops,extra"
    path = project.write("result_sheets/sheet.csv", "\n".join([header, ok, ragged_idle, ragged_selected]) + "\n")
    proc = project.sheetrun("run", path)
    assert proc.returncode == 1
    assert "row 3 has 5 fields but the header has 4" in proc.stderr
    lines = open(path).read().splitlines()
    assert lines[2].startswith(ragged_idle) and lines[3].startswith(ragged_selected)
    assert set(lines[2][len(ragged_idle):]) <= {","} and set(lines[3][len(ragged_selected):]) <= {","}
    from runner.sheet import open_sheet
    table = open_sheet(path).read()
    assert table.rows[0].get("status") == "Completed"
    assert table.rows[1].get("status") == "" and table.rows[1].get("run_id") == ""   # not taken over
    assert table.rows[2].get("status") == ""
    # the new columns start after the widest row: its extra fields sit under blank headers
    assert table.header[4:6] == ["", ""] and table.header[6] == "status"


def test_a_header_with_stray_spaces_is_matched(project):
    path = project.write("result_sheets/sheet.csv",
                         f" path_to_main ,path_to_default_config, whether_to_run,  delta:name\n"
                         f"scripts/ok.py,{CFG},1,spaced\n")
    project.sheetrun("run", path, check=0)
    row = project.read()[0]
    assert row["status"] == "Completed" and row["label"] == "spaced"


# -- sheets that cannot be used: one clear line ----------------------------------------------------------

@pytest.mark.parametrize("kind", ["directory", "immutable", "read-only folder", "not utf-8"])
def test_an_unusable_sheet_gives_one_clear_line(project, kind, request):
    path = project.sheet(BASE + ["delta:name"], [["scripts/ok.py", CFG, "1", "a"]])
    if kind == "directory":
        os.unlink(path)
        os.mkdir(path)
    elif kind == "immutable":
        subprocess.run(["chattr", "+i", path], check=True)
    elif kind == "read-only folder":
        folder = request.getfixturevalue("tmpfs")("1m", "ro")
        path = os.path.join(folder, "sheet.csv")
        open(path, "w").write(open(os.path.join(project.sheets, "sheet.csv")).read())
        subprocess.run(["mount", "-o", "remount,ro", folder], check=True)
    else:
        open(path, "wb").write(b"path_to_main,\xff\xfe\n")
    try:
        proc = project.sheetrun("run", path, "--root", project.root)
    finally:
        if kind == "immutable":
            subprocess.run(["chattr", "-i", path], check=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    expected = {"directory": "is a directory", "immutable": "not permitted",
                "read-only folder": "read-only file system", "not utf-8": "not UTF-8"}[kind]
    assert expected in proc.stderr
    assert not os.path.isdir(os.path.join(project.root, "experiments", "sheet")) or \
        not [d for d in os.listdir(os.path.join(project.root, "experiments", "sheet")) if not d.startswith(".")]


def test_long_errors_and_metric_texts_are_capped_and_kept_whole_in_the_run_folder(project):
    project.write("scripts/long.py", "from runner import report\nreport(blurb='w' * 5000)\n"
                                     "import sys\nsys.stderr.write('E' * 5000 + '\\n')\nsys.exit(2)\n")
    path = project.sheet(BASE + ["delta:name"], [["scripts/long.py", CFG, "1", "a"]])
    project.sheetrun("run", path, check=1)
    row = project.read()[0]
    from runner.core.columns import ERROR_MAX_CHARS, TEXT_MAX_CHARS
    assert len(row["error"]) == ERROR_MAX_CHARS and row["error"].endswith("\u2026")
    assert len(row["blurb"]) == TEXT_MAX_CHARS and row["blurb"].endswith("\u2026")
    folder = RunDir(os.path.join(project.root, row["run_folder"]))
    assert json.load(open(folder.metrics))["blurb"] == "w" * 5000
    assert "E" * 5000 in open(folder.stderr).read()


def test_a_persons_column_named_twice_runs_and_a_sheetrun_column_named_twice_says_which(project):
    import csv as _csv

    path = project.write("result_sheets/sheet.csv",
                         f"path_to_main,path_to_default_config,whether_to_run,notes,delta:x,notes,score\n"
                         f"scripts/ok.py,{CFG},1,first note,3,second note,typed\n")
    proc = project.sheetrun("run", path, check=0)
    assert "the column 'notes' appears 2 times in the header" in proc.stderr
    with open(path, newline="") as f:
        header, row = list(_csv.reader(f))[:2]
    cells = dict(zip(header, row))
    assert row[3] == "first note" and row[5] == "second note" and cells["status"] == "Completed"
    assert cells["score"] == "typed" and cells["score (metric)"] == "6"      # a person's cell, kept
    bad = project.write("result_sheets/bad.csv", f"path_to_main,path_to_default_config,whether_to_run,delta:x,"
                                                 f"delta:x\nscripts/ok.py,{CFG},1,1,2\n")
    proc = project.sheetrun("run", bad, check=2)
    assert ("column 'delta:x' appears twice in the header (columns D and E): sheetrun cannot tell which one to "
            "read or write; rename or delete one") in proc.stderr
