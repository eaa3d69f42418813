"""``sheetrun cancel`` stops exactly the rows it is given, and finds every process of theirs.

Local rows of one launch share one job host; cancelling one of them must not
touch the others, whether the runner that launched them is alive or killed.
A job's processes are found even when they emptied their environment (no run
id tag) and the host that saw them start was killed.
"""
from __future__ import annotations

import json
import os
import signal

import psutil
import pytest

from conftest import BASE, CFG, job_host_pid, wait_for

GATED = """
import os, sys, time, yaml
from runner import report
cfg = yaml.safe_load(open(sys.argv[2]))
with open(cfg["pidfile"], "w") as f:
    f.write(str(os.getpid()))
report(progress=1)
while not os.path.exists(cfg["gate"]):
    time.sleep(0.05)
report(progress=2)
"""

# a daemon in its own session with an empty environment: no SHEETRUN_RUN_ID to find it by
BARE_DAEMON = """
import os, subprocess, sys, time, yaml
cfg = yaml.safe_load(open(sys.argv[2]))
daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], env={},
                          start_new_session=True)
with open(cfg["pidfile"], "w") as f:
    f.write(f"{os.getpid()} {daemon.pid}")
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _three_gated_rows(project, tmp_path):
    project.write("scripts/gated.py", GATED)
    files = {n: (str(tmp_path / f"gate{n}"), str(tmp_path / f"pid{n}")) for n in (1, 2, 3)}
    path = project.sheet(BASE + ["delta:name", "delta:gate", "delta:pidfile"],
                         [["scripts/gated.py", CFG, "1", f"row{n}", gate, pid] for n, (gate, pid) in files.items()])
    return path, files


@pytest.mark.parametrize("runner_state", ["alive", "killed"])
def test_cancelling_one_row_leaves_the_other_rows_of_its_launch_running(project, tmp_path, runner_state):
    path, files = _three_gated_rows(project, tmp_path)
    runner = project.popen("run", path, "--jobs", "3")
    try:
        wait_for(lambda: all(r.get("progress") == "1" for r in project.read()), timeout=60,
                 what="three rows running")
        pids = {n: int(open(pid).read()) for n, (_, pid) in files.items()}
        rows = project.read()
        assert len({job_host_pid(project, r) for r in rows}) == 1          # one host runs all three
        assert {json.load(open(os.path.join(project.root, r["run_folder"], "wrapper.json")))["kind"]
                for r in rows} == {"host"}
        if runner_state == "killed":
            runner.send_signal(signal.SIGKILL)
            runner.wait(10)
        out = project.sheetrun("cancel", path, "--rows", "1", check=0)
        assert "cancelled rows 1" in out.stdout and "2" not in out.stdout.split("cancelled rows", 1)[1]
        wait_for(lambda: not _alive(pids[1]), timeout=10, what="row 1's script to end")
        folder1 = os.path.join(project.root, project.read()[0]["run_folder"])
        wait_for(lambda: os.path.exists(os.path.join(folder1, "exit.json")), timeout=10, what="row 1's exit record")
        assert json.load(open(os.path.join(folder1, "exit.json")))["status"] == "Cancelled"
        assert _alive(pids[2]) and _alive(pids[3])          # the others run on
        rows = project.read()
        assert rows[0]["status"] == "Cancelled"
        assert rows[1]["status"] == rows[2]["status"] == "Running", rows
        for n in (2, 3):
            open(files[n][0], "w").close()
        wait_for(lambda: [r["status"] for r in project.read()] == ["Cancelled", "Completed", "Completed"],
                 timeout=30, what="rows 2 and 3 to complete")
        rows = project.read()
        assert rows[1]["progress"] == rows[2]["progress"] == "2"
        assert rows[0]["progress"] == "1" and rows[0]["exit_code"] == "-15"
        if runner_state == "alive":
            assert runner.wait(30) == 1                     # one row did not complete
    finally:
        runner.kill()


def test_a_daemon_with_an_empty_environment_is_found_after_its_host_was_killed(project, tmp_path):
    project.write("scripts/bare_daemon.py", BARE_DAEMON)
    pidfile = str(tmp_path / "pids")
    path = project.sheet(BASE + ["delta:name", "delta:pidfile"], [["scripts/bare_daemon.py", CFG, "1", "d", pidfile]])
    runner = project.popen("run", path)
    daemon = None
    try:
        wait_for(lambda: os.path.exists(pidfile) and len(open(pidfile).read().split()) == 2, what="the daemon")
        script, daemon = map(int, open(pidfile).read().split())
        assert "SHEETRUN_RUN_ID" not in psutil.Process(daemon).environ()       # nothing to find it by
        row = project.read()[0]
        log = os.path.join(project.root, row["run_folder"], "processes.jsonl")
        wait_for(lambda: os.path.exists(log) and str(daemon) in open(log).read(), timeout=10,
                 what="the host to write the daemon down")
        runner.kill()
        runner.wait()
        os.kill(job_host_pid(project, row), signal.SIGKILL)      # nobody left who saw it start
        wait_for(lambda: not _alive(script), timeout=5, what="the script to die with its host")
        assert _alive(daemon)
        out = project.sheetrun("sync", path, check=0).stdout
        assert project.read()[0]["status"] == "Running" and "still run" in out       # not Lost
        assert "row 1 not started: still held" in project.sheetrun("run", path, check=0).stderr
        project.sheetrun("cancel", path, check=0)
        wait_for(lambda: not _alive(daemon), timeout=10, what="cancel to end the daemon")
        assert project.read()[0]["status"] == "Cancelled"
    finally:
        runner.kill()
        if daemon and _alive(daemon):
            os.kill(daemon, signal.SIGKILL)


def test_a_daemon_with_an_empty_environment_ends_with_its_row(project, tmp_path):
    """The host ends what a finished script left, however little it carries (no tag, own session)."""
    quick = BARE_DAEMON.rstrip()
    assert quick.endswith("\ntime.sleep(600)")
    project.write("scripts/bare_quick.py", quick[:-len("time.sleep(600)")])        # exits at once
    pidfile = str(tmp_path / "pids")
    path = project.sheet(BASE + ["delta:name", "delta:pidfile"], [["scripts/bare_quick.py", CFG, "1", "q", pidfile]])
    project.sheetrun("run", path, check=0)
    script, daemon = map(int, open(pidfile).read().split())
    assert project.read()[0]["status"] == "Completed"
    wait_for(lambda: not _alive(daemon), timeout=5, what="the daemon to be ended with its row")
