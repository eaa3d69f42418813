"""The SLURM backend against a real single-node SLURM (munged + slurmctld + slurmd).

The cluster is started once for this module by ``scripts/slurm_cluster.py``
in a temporary folder. Where SLURM is not installed these tests are skipped
with the reason; ``.ci/run`` installs it and sets SHEETRUN_REQUIRE_SLURM=1,
which turns a missing or broken SLURM into a failure instead.
"""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import BASE, CFG, REPO, wait_for

from runner.core.cells import decode
from runner.core.columns import Status
from runner.core.rundir import RunDir
from runner.slurm import SbatchError, SlurmClient, SlurmExecutor
from runner.slurm.states import row_status

_spec = importlib.util.spec_from_file_location("slurm_cluster", os.path.join(REPO, "scripts", "slurm_cluster.py"))
slurm_cluster = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(slurm_cluster)

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = slurm_cluster.missing_binaries()
    if missing:
        if os.environ.get("SHEETRUN_REQUIRE_SLURM") == "1":
            pytest.fail("SHEETRUN_REQUIRE_SLURM=1 but SLURM is not installed: missing " + ", ".join(missing))
        pytest.skip("SLURM is not installed here (missing " + ", ".join(missing) +
                    "); .ci/run installs it: apt-get install slurmctld slurmd slurm-client munge")
    folder = str(tmp_path_factory.mktemp("slurm"))
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = slurm_cluster.start(folder)
    yield folder
    slurm_cluster.stop(folder)
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old


def sr(project, *args, **kw):
    """sheetrun in the project folder (relative sheet paths)."""
    return project.sheetrun(*args, cwd=project.root, **kw)


def rows_by_number(project, name="sheet.csv"):
    return {i + 1: r for i, r in enumerate(project.read(name))}


def sync_until_done(project, numbers, timeout=90):
    def done():
        sr(project, "sync", "result_sheets/sheet.csv", check=0)
        rows = rows_by_number(project)
        return all(rows[n]["status"] not in Status.ACTIVE for n in numbers) and rows
    return wait_for(done, timeout=timeout, interval=1.0, what=f"rows {numbers} to end")


def squeue_state(job_id):
    out = subprocess.run(["squeue", "-h", "-r", "--states=all", "-j", job_id.split("_")[0], "-o", "%i %T"],
                         capture_output=True, text=True).stdout
    states = dict(line.split() for line in out.splitlines())
    return states.get(job_id) or states.get(job_id.split("_")[0])   # unsplit pending arrays: "<id>"


SLEEP = """
import sys, time, yaml, os
cfg = yaml.safe_load(open(sys.argv[2]))
from runner import report
report(started=1)
gate = cfg.get("gate")
for _ in range(int(cfg.get("sleep", 300) * 10)):
    if gate and os.path.exists(gate):
        break
    time.sleep(0.1)
report(finished=1)
"""


# --- pure mapping -------------------------------------------------------------------------

def test_slurm_states_map_to_row_statuses():
    assert row_status("PENDING", "Resources", None) == (None, "pending (Resources)")
    assert row_status("RUNNING", "None", None)[0] is None
    assert row_status("TIMEOUT", "TimeLimit", None)[0] == Status.TIMEOUT
    assert row_status("OUT_OF_MEMORY", "None", None)[0] == Status.FAILED
    assert row_status("NODE_FAIL", "None", None)[0] == Status.FAILED
    assert row_status("CANCELLED+", "None", None)[0] == Status.CANCELLED
    assert row_status("COMPLETED", "None", None)[0] == Status.LOST          # no exit record
    assert row_status("REQUEUED", "None", None)[0] == Status.SUBMITTED
    status, reason = row_status("PENDING", "DependencyNeverSatisfied", None)
    assert status == Status.SKIPPED and reason.startswith("not run: a dependency did not complete")
    assert row_status("PENDING", "BadConstraints", None)[0] == Status.FAILED
    # the exit record wins for ordinary endings, SLURM for a timeout the wrapper saw as a signal
    record = {"status": Status.COMPLETED}
    assert row_status("COMPLETED", "None", record) == (Status.COMPLETED, "exit record")
    assert row_status("TIMEOUT", "TimeLimit", {"status": Status.CANCELLED})[0] == Status.TIMEOUT
    assert row_status("FAILED", "NonZeroExitCode", {"status": Status.FAILED})[0] == Status.FAILED


# --- against the cluster ------------------------------------------------------------------

def test_twenty_rows_complete_through_arrays(cluster, project):
    rows = [["scripts/ok.py", CFG, 1, f"run{i}", i, "2" if i % 2 else ""] for i in range(20)]
    project.sheet(BASE + ["delta:name", "delta:x", "slurm:cpus-per-task"], rows)
    proc = sr(project, "run", "result_sheets/sheet.csv", "--backend", "slurm", "--wait", "--poll", "0.5",
                            timeout=180, check=0)
    assert "20 row(s) submitted" in proc.stderr
    out = rows_by_number(project)
    arrays = set()
    for n, row in out.items():
        x = n - 1
        assert row["status"] == Status.COMPLETED, row
        assert row["score"] == str(2 * x) and row["label"] == f"run{x}"        # metrics in their own row
        array, task = row["job_id"].split("_")
        arrays.add(array)
        folder = os.path.normpath(os.path.join(project.root, row["run_folder"]))
        script = open(os.path.join(folder, "sbatch.sh")).read()
        assert "runner.jobwrapper" in script and folder in script
        info = json.load(open(os.path.join(folder, "slurm.json")))
        assert info["job_id"] == row["job_id"]
        assert ("--cpus-per-task=2" in info["sbatch"]) == (x % 2 == 1)
        assert os.path.exists(os.path.join(folder, "provenance"))
    assert len(arrays) == 2                       # one array per resource group


def test_exit_code_and_bad_input_stay_in_their_rows(cluster, project):
    project.sheet(BASE + ["delta:name", "slurm:partition", "slurm:partiton"], [
        ["scripts/exit3.py", CFG, 1, "a", "", ""],
        ["scripts/ok.py", CFG, 1, "b", "no_such_partition", ""],
        ["scripts/ok.py", CFG, 1, "c", "", "debug"],
        ["scripts/ok.py", CFG, 1, "d", "", ""],
    ])
    sr(project, "run", "result_sheets/sheet.csv", "--backend", "slurm", "--wait", "--poll", "0.5",
                     timeout=120, check=1)
    out = rows_by_number(project)
    assert out[1]["status"] == Status.FAILED and out[1]["exit_code"] == "3"
    assert out[2]["status"] == Status.FAILED and "sbatch" in out[2]["error"]
    assert "partition" in out[2]["error"].lower() and out[2]["job_id"] == ""
    assert out[3]["status"] == Status.FAILED and "did you mean slurm:partition" in out[3]["error"]
    assert out[4]["status"] == Status.COMPLETED


def test_dependency_chain_runs_in_order_and_a_failed_dependency_stops_its_dependents(cluster, project):
    log = os.path.join(project.root, "order.log")
    project.sheet(BASE + ["delta:name", "delta:log", "delta+:sleep", "depends_on", "delta+:fail"], [
        ["scripts/stamp.py", CFG, 1, "a", log, 1, "", ""],
        ["scripts/stamp.py", CFG, 1, "b", log, 0, "1", ""],
        ["scripts/stamp.py", CFG, 1, "c", log, 0, "2", ""],
        ["scripts/stamp.py", CFG, 1, "bad", log, 0, "", "true"],
        ["scripts/stamp.py", CFG, 1, "after_bad", log, 0, "4", ""],
    ])
    sr(project, "run", "result_sheets/sheet.csv", "--backend", "slurm", "--wait", "--poll", "0.5",
                     timeout=120, check=1)
    out = rows_by_number(project)
    assert [out[n]["status"] for n in (1, 2, 3)] == [Status.COMPLETED] * 3
    events = [line.split()[:2] for line in open(log).read().splitlines()]
    order = [name for kind, name in events if kind == "start"]
    assert order.index("a") < order.index("b") < order.index("c")
    ends = {name: i for i, (kind, name) in enumerate(events) if kind == "end"}
    starts = {name: i for i, (kind, name) in enumerate(events) if kind == "start"}
    assert ends["a"] < starts["b"] and ends["b"] < starts["c"]
    assert out[4]["status"] == Status.FAILED
    assert out[5]["status"] == Status.SKIPPED and out[5]["error"].startswith("not run: ")
    assert "after_bad" not in order
    info = json.load(open(os.path.join(project.root, out[5]["run_folder"], "slurm.json")))
    assert any(a.startswith("--dependency=afterok:") for a in info["sbatch"])
    assert squeue_state(info["job_id"]) == "CANCELLED"      # its job was removed from the queue


def test_time_limit_gives_timeout(cluster, project):
    project.write("scripts/sleep.py", SLEEP)
    project.sheet(BASE + ["delta:name", "slurm:time"], [["scripts/sleep.py", CFG, 1, "a", "5"]])
    sr(project, "run", "result_sheets/sheet.csv", "--backend", "slurm", check=0)
    wait_for(lambda: rows_by_number(project)[1].get("started") == "1", timeout=30, what="the job to run")
    job = rows_by_number(project)[1]["job_id"]
    # end the job's time now (SLURM checks limits about every 30 s)
    end = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() + 1))
    subprocess.run(["scontrol", "update", f"JobId={job.split('_')[0]}", f"EndTime={end}"], check=True)
    out = sync_until_done(project, [1], timeout=90)
    assert out[1]["status"] == Status.TIMEOUT, out[1]
    assert "time limit" in out[1]["error"]
    assert out[1].get("finished", "") == ""


def test_cancel_running_and_pending_rows(cluster, project):
    project.write("scripts/sleep.py", SLEEP)
    project.sheet(BASE + ["delta:name", "depends_on"], [["scripts/sleep.py", CFG, 1, "a", ""],
                                                        ["scripts/sleep.py", CFG, 1, "b", "1"],
                                                        ["scripts/ok.py", CFG, 0, "c", ""]])
    sr(project, "run", "result_sheets/sheet.csv", "--backend", "slurm", check=0)
    wait_for(lambda: rows_by_number(project)[1].get("started") == "1", timeout=30, what="row 1 to run")
    jobs = [rows_by_number(project)[n]["job_id"] for n in (1, 2)]
    assert squeue_state(jobs[1]) == "PENDING"
    proc = sr(project, "cancel", "result_sheets/sheet.csv", check=0)
    assert "cancelled rows 1, 2" in proc.stdout
    out = rows_by_number(project)
    assert out[1]["status"] == out[2]["status"] == Status.CANCELLED
    assert out[3]["status"] == ""
    wait_for(lambda: squeue_state(jobs[0]) == "CANCELLED" and squeue_state(jobs[1]) == "CANCELLED",
             timeout=30, what="SLURM to cancel both jobs")
    # the running job's wrapper ended the command and recorded it
    folder = os.path.join(project.root, rows_by_number(project)[1]["run_folder"])
    wait_for(lambda: RunDir(folder).read_exit(), timeout=30, what="the exit record")
    assert RunDir(folder).read_exit()["status"] == Status.CANCELLED
    assert rows_by_number(project)[1].get("finished", "") == ""


def test_cancelling_one_row_cancels_its_array_task_only(cluster, project, tmp_path):
    project.write("scripts/sleep.py", SLEEP)
    gates = [str(tmp_path / f"gate{n}") for n in (1, 2, 3)]
    project.sheet(BASE + ["delta:name", "delta:gate"], [["scripts/sleep.py", CFG, 1, f"r{n}", gates[n - 1]]
                                                          for n in (1, 2, 3)])
    sr(project, "run", "result_sheets/sheet.csv", "--backend", "slurm", check=0)
    wait_for(lambda: all(r.get("started") == "1" for r in rows_by_number(project).values()), timeout=60,
             what="three array tasks to run")
    jobs = {n: r["job_id"] for n, r in rows_by_number(project).items()}
    assert len({j.split("_")[0] for j in jobs.values()}) == 1          # one array, three tasks
    proc = sr(project, "cancel", "result_sheets/sheet.csv", "--rows", "2", check=0)
    assert "cancelled rows 2" in proc.stdout
    wait_for(lambda: squeue_state(jobs[2]) == "CANCELLED", timeout=30, what="task 2 to be cancelled")
    assert squeue_state(jobs[1]) == squeue_state(jobs[3]) == "RUNNING"
    for gate in gates:
        open(gate, "w").close()
    out = sync_until_done(project, [1, 3])
    assert [out[n]["status"] for n in (1, 2, 3)] == [Status.COMPLETED, Status.CANCELLED, Status.COMPLETED]
    assert out[1]["finished"] == out[3]["finished"] == "1" and out[2].get("finished", "") == ""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_wait_cancels_the_rows_it_follows(cluster, project, sig):
    project.write("scripts/sleep.py", SLEEP)
    project.sheet(BASE + ["delta:name"], [["scripts/sleep.py", CFG, 1, "a"], ["scripts/sleep.py", CFG, 1, "b"]])
    follower = subprocess.Popen([sys.executable, "-m", "runner", "run", "result_sheets/sheet.csv", "--backend",
                                 "slurm", "--wait", "--poll", "0.5"], cwd=project.root, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: all(r.get("started") == "1" for r in rows_by_number(project).values()), timeout=60,
                 what="both rows to run")
        jobs = [r["job_id"] for r in rows_by_number(project).values()]
        follower.send_signal(sig)
        out, err = follower.communicate(timeout=60)
    finally:
        follower.kill()
    assert follower.returncode == (130 if sig == signal.SIGINT else 143), err
    assert "Traceback" not in err and "cancelled rows 1-2 and their SLURM jobs" in err
    assert [r["status"] for r in rows_by_number(project).values()] == [Status.CANCELLED] * 2
    wait_for(lambda: all(squeue_state(j) == "CANCELLED" for j in jobs), timeout=30, what="SLURM to cancel both")


def test_shell_injection_cells_are_inert(cluster, project, tmp_path):
    marker = tmp_path / "pwned"
    evil = [f"$(touch {marker})", f"; touch {marker}", f"`touch {marker}`", f"' ; touch {marker} ; '"]
    rows = [["scripts/ok.py", CFG, 1, text, f"x{i}", text] for i, text in enumerate(evil)]
    project.sheet(BASE + ["delta:name", "env:MY_VAR", "slurm:comment"], rows)
    sr(project, "run", "result_sheets/sheet.csv", "--backend", "slurm", "--wait", "--poll", "0.5",
                     timeout=120, check=0)
    out = rows_by_number(project)
    for n, text in enumerate(evil, start=1):
        assert out[n]["status"] == Status.COMPLETED, out[n]
        assert out[n]["label"] == str(decode(text))    # the script got the text (as a delta cell decodes it)
        info = json.load(open(os.path.join(project.root, out[n]["run_folder"], "slurm.json")))
        assert f"--comment={text}" in info["sbatch"]
    assert not marker.exists()


def test_options_that_change_who_or_what_runs_are_submitted_only_once_allowed(cluster, project, tmp_path):
    """slurm:export (which can set LD_PRELOAD for the job) and a log outside the project are refused in
    their row until the machine's owner allows them in .sheetrun/allow.yaml; then SLURM honours both."""
    log = tmp_path / "elsewhere" / "job.out"
    project.sheet(BASE + ["delta:name", "slurm:export", "slurm:output"],
                  [["scripts/env.py", CFG, 1, "a", "ALL,MY_VAR=from-slurm", str(log)]])
    sr(project, "run", "result_sheets/sheet.csv", "--backend", "slurm", check=1)
    error = rows_by_number(project)[1]["error"]
    assert "slurm:export changes who or what runs" in error and "slurm:output" in error, error
    assert "job_id" not in project.read()[0] or not project.read()[0]["job_id"]      # nothing submitted
    project.write(".sheetrun/allow.yaml", "slurm: [export, output]\n")
    sr(project, "reset", "result_sheets/sheet.csv", check=0)
    sr(project, "run", "result_sheets/sheet.csv", "--backend", "slurm", "--wait", "--poll", "0.5", timeout=120,
       check=0)
    row = rows_by_number(project)[1]
    assert row["status"] == Status.COMPLETED and row["custom"] == "from-slurm" and log.exists()


def test_sync_after_the_submitter_is_gone_reports_a_killed_wrapper(cluster, project):
    project.write("scripts/sleep.py", SLEEP)
    project.sheet(BASE + ["delta:name"], [["scripts/sleep.py", CFG, 1, "a"], ["scripts/ok.py", CFG, 1, "b"]])
    sr(project, "run", "result_sheets/sheet.csv", "--backend", "slurm", check=0)   # returns at once
    wait_for(lambda: rows_by_number(project)[1].get("started") == "1", timeout=30, what="row 1 to run")
    folder = os.path.join(project.root, rows_by_number(project)[1]["run_folder"])
    wrapper = json.load(open(os.path.join(folder, "wrapper.json")))
    os.kill(wrapper["pid"], 9)                   # the job dies without an exit record
    out = sync_until_done(project, [1, 2])
    assert out[1]["status"] == Status.FAILED and "job wrapper could record" in out[1]["error"], out[1]
    assert out[2]["status"] == Status.COMPLETED and out[2]["score"] == "2"


def test_arrays_split_at_max_array_size(cluster, tmp_path):
    client = SlurmClient()
    client._config = {"MaxArraySize": "3"}       # as if the cluster allowed 3 tasks per array
    run_dirs = []
    for i in range(7):
        folder = tmp_path / f"run{i}"
        folder.mkdir()
        (folder / "job.json").write_text("{}")
        run_dirs.append(RunDir(str(folder)))
    executor = SlurmExecutor(str(tmp_path), str(tmp_path / "logs"), client)
    jobs = executor.submit_array(run_dirs, {"begin": "now+3600"})        # queued, never started
    arrays = [j.job_id.split("_")[0] for j in jobs]
    assert len(set(arrays)) == 3 and [j.job_id.split("_")[1] for j in jobs] == ["0", "1", "2"] * 2 + ["0"]
    assert client.calls <= 3
    client.cancel(sorted(set(arrays)))


def test_node_down_mid_run_requeues_and_the_row_follows(cluster, project):
    project.write("scripts/sleep.py", SLEEP)
    gate = os.path.join(project.root, "gate")
    project.sheet(BASE + ["delta:name", "delta:gate"], [["scripts/sleep.py", CFG, 1, "a", gate]])
    sr(project, "run", "result_sheets/sheet.csv", "--backend", "slurm", check=0)
    wait_for(lambda: rows_by_number(project)[1].get("started") == "1", timeout=30, what="the job to run")
    job = rows_by_number(project)[1]["job_id"]
    node = subprocess.run(["sinfo", "-h", "-o", "%N"], capture_output=True, text=True).stdout.strip()
    subprocess.run(["scontrol", "update", f"NodeName={node}", "State=DOWN", "Reason=sheetrun-test"], check=True)
    row = wait_for(lambda: (r := rows_by_number(project)[1])["status"] == Status.SUBMITTED and r,
                   timeout=30, what="the row to show the requeue")
    assert "requeued" in row["error"]
    subprocess.run(["scontrol", "update", f"NodeName={node}", "State=RESUME"], capture_output=True)
    wait_for(lambda: "idle" in subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True,
                                              text=True).stdout, timeout=30, what="the node to return")
    open(gate, "w").close()                          # the second attempt finishes at once
    # SLURM holds a requeued job for its credential lifetime (cred_expire, 10 s on the test cluster)
    out = sync_until_done(project, [1], timeout=90)
    assert out[1]["status"] == Status.COMPLETED and out[1]["finished"] == "1", out[1]
    assert out[1]["job_id"] == job


def test_sbatch_retries_while_the_controller_is_away(cluster, tmp_path):
    conf = os.environ["SLURM_CONF"]
    pid = int(open(os.path.join(cluster, "slurmctld.pid")).read())
    os.kill(pid, 15)
    wait_for(lambda: subprocess.run(["scontrol", "ping"], capture_output=True, text=True).stdout.count("DOWN"),
             timeout=20, what="the controller to stop")
    # back in 12 s: sbatch's own connection attempts give up after about 9 s, so ours must retry
    restart = threading.Timer(12, subprocess.run, (["slurmctld", "-f", conf],))
    restart.start()
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\ntrue\n")
    client = SlurmClient(retries=4, backoff_s=1.0)
    started = time.time()
    try:
        job_id = client.sbatch([f"--output={os.devnull}"], str(script))
    finally:
        restart.join()
    assert job_id.isdigit() and client.calls >= 2 and time.time() - started >= 9
    permanent = SlurmClient(retries=4, backoff_s=5.0)
    with pytest.raises(SbatchError, match="(?i)partition"):
        permanent.sbatch(["--partition=nope"], str(script))
    assert permanent.calls == 1                                 # a permanent error is not retried


def test_no_sacct_call_without_accounting(cluster):
    client = SlurmClient()
    assert client.accounted_states(["1_0", "2_3"]) == {}       # this cluster keeps no accounting
    assert client.calls == 1                                    # only scontrol show config, once
    assert client.max_array_size() == 1001 and client.calls == 1


def test_slurm_jobs_write_a_google_sheet(cluster, project):
    from sheets_server import SheetsServer

    key = "slurmSheet0123456789abcdefghijklmnopqrstu"
    url = f"https://docs.google.com/spreadsheets/d/{key}/edit#gid=0"
    with SheetsServer() as server:
        server.state.create(key, rows=[BASE + ["delta:name", "delta:x"]] +
                            [["scripts/ok.py", CFG, 1, f"n{i}", i] for i in range(3)])
        env = {"SHEETRUN_SHEETS_API_URL": server.url}
        sr(project, "run", url, "--backend", "slurm", "--wait", "--poll", "0.5", "--yes", timeout=180, env=env, check=0)
        grid = server.state.worksheet(key, "Sheet1").grid()
    header = grid[0]
    for i, row in enumerate(grid[1:]):
        cells = dict(zip(header, row))
        assert cells["status"] == Status.COMPLETED and cells["score"] == 2 * i and cells["label"] == f"n{i}"
        assert cells["job_id"].count("_") == 1


def test_many_jobs_following_a_google_sheet_stay_under_its_quota(cluster, project):
    """Google allows 60 reads and 60 writes a minute per user, shared by every process. Eight jobs
    reporting metrics for a while, followed by --wait polling twice a second: the follower writes every
    row, batched, the jobs leave theirs to it, and no request is refused."""
    from sheets_server import SheetsServer

    project.write("scripts/chatty.py", "import sys, time, yaml\nfrom runner import report\n"
                                       "cfg = yaml.safe_load(open(sys.argv[2]))\n"
                                       "for step in range(6):\n    report(step=step, score=cfg['x'] * step)\n"
                                       "    time.sleep(1)\n")
    key = "quotaSheet0123456789abcdefghijklmnopqrst"
    url = f"https://docs.google.com/spreadsheets/d/{key}/edit#gid=0"
    n = 8
    with SheetsServer() as server:
        server.state.create(key, rows=[BASE + ["delta:x"]] + [["scripts/chatty.py", CFG, 1, i] for i in range(n)])
        server.state.quota_per_minute = 60
        env = {"SHEETRUN_SHEETS_API_URL": server.url}
        proc = sr(project, "run", url, "--backend", "slurm", "--wait", "--poll", "0.5", "--yes", timeout=240,
                  env=env)
        grid = server.state.worksheet(key, "Sheet1").grid()
        throttled = server.state.throttled
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert throttled == 0
    import glob

    jobs = [json.load(open(p)) for p in glob.glob(os.path.join(project.root, "experiments", "*", "*", "job.json"))]
    # were it not followed, each job would write at most every 60 s x 8 jobs / 20 writes a minute = 24 s
    assert len(jobs) == n and {j["sheet_interval_s"] for j in jobs} == {24.0}
    header = grid[0]
    for i, row in enumerate(grid[1:]):
        cells = dict(zip(header, row))
        assert cells["status"] == Status.COMPLETED and cells["step"] == 5 and cells["score"] == 5 * i


def test_jobs_no_one_follows_write_their_own_google_rows_at_their_pace(cluster, project):
    """Without --wait each job writes its own row: Running and its metrics with its first paced write,
    its final status when it ends — no follower, and no sync, needed."""
    from sheets_server import SheetsServer

    project.write("scripts/chatty.py", "import sys, time, yaml\nfrom runner import report\n"
                                       "cfg = yaml.safe_load(open(sys.argv[2]))\n"
                                       "for step in range(3):\n    report(step=step, score=cfg['x'] * step)\n"
                                       "    time.sleep(1)\n")
    key = "pacedSheet0123456789abcdefghijklmnopqrst"
    url = f"https://docs.google.com/spreadsheets/d/{key}/edit#gid=0"
    with SheetsServer() as server:
        server.state.create(key, rows=[BASE + ["delta:x"]] + [["scripts/chatty.py", CFG, 1, i] for i in range(3)])
        server.state.quota_per_minute = 60
        env = {"SHEETRUN_SHEETS_API_URL": server.url}
        sr(project, "run", url, "--backend", "slurm", "--yes", env=env, check=0)

        def statuses():
            grid = server.state.worksheet(key, "Sheet1").grid()
            return [dict(zip(grid[0], row)).get("status") for row in grid[1:]]

        wait_for(lambda: statuses() == [Status.COMPLETED] * 3, timeout=120, what="the jobs to write their rows")
        grid = server.state.worksheet(key, "Sheet1").grid()
        throttled = server.state.throttled
    assert throttled == 0
    for i, row in enumerate(grid[1:]):
        cells = dict(zip(grid[0], row))
        assert cells["step"] == 2 and cells["score"] == 2 * i and cells["job_id"].count("_") == 1
