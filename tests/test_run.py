"""`sheetrun run` end to end: real subprocesses, a real CSV sheet on disk."""
import json
import os
import textwrap
import signal
import stat
import subprocess
import sys
import tarfile

import psutil
import pytest
from conftest import BASE, CFG, job_host_pid, wait_for


def test_rows_run_and_write_back(project):
    project.sheet(BASE + ["delta:x", "delta:name", "notes"], [
        ["scripts/ok.py", CFG, "1", "21", "first", "keep, me \"exactly\""],
        ["scripts/ok.py", CFG, "0", "5", "skipped", "not selected"],
        ["scripts/ok.py", CFG, "1", "[1 2]", "'007'", "ünïcode\nnewline"],
    ])
    os.chmod(os.path.join(project.sheets, "sheet.csv"), 0o640)
    proc = project.sheetrun("run", os.path.join(project.sheets, "sheet.csv"), "--jobs", "2")
    rows = project.read()
    # row 3 sets x (default 1) to a list: refused before anything runs, naming key, value and kind
    assert proc.returncode == 1, proc.stderr
    assert rows[2]["status"] == "Failed" and rows[2]["error"] == "x = [1, 2]: expected a number (the default is 1)"
    assert rows[0]["status"] == "Completed" and rows[0]["whether_to_run"] == "0"
    assert rows[0]["score"] == "42" and rows[0]["label"] == "first"
    assert rows[0]["exit_code"] == "0" and rows[0]["job_id"].isdigit()
    assert rows[0]["notes"] == 'keep, me "exactly"'
    assert rows[1]["status"] == "" and rows[1]["whether_to_run"] == "0" and rows[1]["score"] == ""
    assert rows[2]["notes"] == "ünïcode\nnewline"
    assert stat.S_IMODE(os.stat(os.path.join(project.sheets, "sheet.csv")).st_mode) == 0o640
    folder = os.path.join(project.root, rows[0]["run_folder"])
    assert rows[0]["run_folder"].startswith("./experiments/sheet/")
    for name in ("config.yaml", "command.txt", "stdout.log", "stderr.log", "exit.json",
                 "metrics.json", "provenance/pip_freeze.txt", "provenance/host.json",
                 "provenance/git.json"):
        assert os.path.exists(os.path.join(folder, name)), name
    assert "done 21" in open(os.path.join(folder, "stdout.log")).read()
    assert json.load(open(os.path.join(folder, "provenance/git.json")))["git_commit"] is None


def test_second_run_only_reruns_flipped_rows(project):
    path = project.sheet(BASE + ["delta:name"], [["scripts/ok.py", CFG, "1", "a"],
                                                 ["scripts/ok.py", CFG, "1", "b"]])
    project.sheetrun("run", path, check=0)
    first = project.read()
    project.sheetrun("run", path, check=0)
    assert project.read() == first                   # nothing selected, nothing changed
    text = open(path).read().replace("0,a", "1,a", 1)
    open(path, "w").write(text)
    project.sheetrun("run", path, check=0)
    again = project.read()
    assert again[0]["run_id"] != first[0]["run_id"] and again[1]["run_id"] == first[1]["run_id"]


def test_bad_inputs_fail_only_their_own_row(project):
    project.write("default_configs/broken.yaml", "a: [1, 2\n")
    project.write("default_configs/missing_name.yaml", "x: 1\nname: <fill me>\n")
    path = project.sheet(BASE + ["delta:name", "delta:lr", "delta:nested/dpeth"], [
        ["scripts/ok.py", CFG, "1", "good", "", ""],                      # 1 ok
        ["scripts/nope.py", CFG, "1", "a", "", ""],                      # 2 missing script
        ["scripts/ok.py", "default_configs/nope.yaml", "1", "a", "", ""],  # 3 missing config
        ["scripts/ok.py", "default_configs/broken.yaml", "1", "a", "", ""],  # 4 YAML error
        ["scripts/ok.py", CFG, "1", "a", "", "3"],                        # 5 unknown key
        ["scripts/ok.py", CFG, "1", "a", "[1 2", ""],                     # 6 undecodable
        ["scripts/ok.py", CFG, "yes", "a", "", ""],                       # 7 bad whether_to_run
        ["scripts/ok.py", "default_configs/missing_name.yaml", "1", "", "", ""],  # 8 placeholder: warned, runs
        ["scripts/ok.py", CFG, "1", "also good", "0.5", ""],              # 9 ok
    ])
    proc = project.sheetrun("run", path, "--jobs", "3")
    assert proc.returncode == 1
    rows = project.read()
    assert [r["status"] for r in rows] == ["Completed"] + ["Failed"] * 6 + ["Completed"] * 2
    errors = [r["error"] for r in rows]
    assert "script not found" in errors[1] and "nope.py" in errors[1]
    assert errors[2].startswith("config not found: default_configs/nope.yaml under the project root ")
    assert "YAML error" in errors[3] and "line" in errors[3]
    assert "unknown config key 'nested/dpeth'" in errors[4] and "did you mean 'depth'" in errors[4]
    assert "delta:lr" in errors[5] and "no closing ']'" in errors[5]
    assert errors[6].startswith("whether_to_run must be a whole number") and errors[6].endswith("got 'yes'")
    # stnd runs a config with a <...> value left (<pad> can be a real token): said, not refused
    assert "! row 8: the config still has <...> values: name = <fill me>" in proc.stderr
    assert rows[7]["label"] == "<fill me>"
    assert all(r["run_id"] for r in rows)
    assert rows[8]["score"] == "2" and rows[0]["label"] == "good"


def test_empty_delta_cell_keeps_default_and_placeholders(project):
    path = project.sheet(BASE + ["delta:name", "delta:x", "tag"], [
        ["scripts/ok.py", CFG, "1", "row__ROW___tag__COL:tag__", "", "T"],
    ])
    project.sheetrun("run", path, check=0)
    row = project.read()[0]
    assert row["label"] == "row1_tagT" and row["score"] == "2"


def test_crashing_script_reports_its_exception(project):
    path = project.sheet(BASE + ["delta:name"], [["scripts/crash.py", CFG, "1", "a"],
                                                 ["scripts/exit3.py", CFG, "1", "b"]])
    proc = project.sheetrun("run", path, "--jobs", "2")
    assert proc.returncode == 1
    crash, exit3 = project.read()
    assert crash["status"] == "Failed" and crash["exit_code"] == "1"
    assert crash["error"] == "ValueError: bad learning rate: -1"
    assert crash["whether_to_run"] == "1"
    assert exit3["exit_code"] == "3" and exit3["error"] == "exit code 3"
    assert "ValueError" in proc.stderr


def test_results_json_is_merged_into_the_row(project):
    path = project.sheet(BASE + ["delta:name"], [["scripts/results_json.py", CFG, "1", "a"]])
    project.sheetrun("run", path, check=0)
    row = project.read()[0]
    assert row["top1"] == "0.75" and row["note"] == "no import of runner"


def test_metrics_appear_while_the_job_runs(project, tmp_path):
    gate = str(tmp_path / "gate")
    path = project.sheet(BASE + ["delta:name", "delta:gate"], [["scripts/wait.py", CFG, "1", "a", gate]])
    runner = project.popen("run", path)
    try:
        row = wait_for(lambda: next((r for r in project.read() if r.get("progress") == "1"), None),
                       what="first report")
        assert row["status"] == "Running"
        open(gate, "w").close()
        assert runner.wait(60) == 0
    finally:
        runner.kill()
    row = project.read()[0]
    assert row["progress"] == "2" and row["status"] == "Completed"


def test_dependencies_order_and_failure_propagation(project, tmp_path):
    log = str(tmp_path / "log.txt")
    path = project.sheet(BASE + ["delta:name", "delta:log", "delta+:sleep", "delta+:fail", "depends_on"], [
        ["scripts/stamp.py", CFG, "1", "A", log, "0.5", "false", ""],      # 1
        ["scripts/stamp.py", CFG, "1", "B", log, "0", "false", "1"],       # 2 after 1
        ["scripts/stamp.py", CFG, "1", "C", log, "0", "true", ""],         # 3 fails
        ["scripts/stamp.py", CFG, "1", "D", log, "0", "false", "3"],       # 4 after failed 3
        ["scripts/stamp.py", CFG, "1", "E", log, "0", "false", "4 2"],     # 5 transitively failed
        ["scripts/stamp.py", CFG, "1", "F", log, "0", "false", "7"],       # 6 cycle with 7
        ["scripts/stamp.py", CFG, "1", "G", log, "0", "false", "6"],       # 7
        ["scripts/stamp.py", CFG, "1", "H", log, "0", "false", "99"],      # 8 unknown
    ])
    proc = project.sheetrun("run", path, "--jobs", "4")
    assert proc.returncode == 1
    rows = project.read()
    status = [r["status"] for r in rows]
    # a row that did not run because of a dependency says so, distinctly from one that ran and failed
    assert status == ["Completed", "Completed", "Failed", "Skipped", "Skipped", "Failed", "Failed", "Failed"]
    assert rows[3]["error"] == "not run: dependency row 3 ended Failed"
    assert rows[4]["error"] == "not run: dependency row 4 ended Skipped"
    assert rows[3]["whether_to_run"] == "1" and rows[3]["exit_code"] == ""
    assert "dependency cycle" in rows[5]["error"] and "dependency cycle" in rows[6]["error"]
    assert "no row number, run id or name '99'" in rows[7]["error"]
    events = [line.split() for line in open(log)]
    t = {(kind, name): float(ts) for kind, name, ts in events}
    assert t[("start", "B")] >= t[("end", "A")]
    assert ("start", "D") not in t and ("start", "E") not in t and ("start", "F") not in t


def test_a_dependent_row_starts_once_its_dependencies_results_are_in_the_sheet(project):
    """A row that reads the sheet (a table of its dependencies' results) finds their metrics and
    statuses there when it starts, however soon after them it starts."""
    project.write("scripts/score.py", textwrap.dedent("""
        import sys, yaml
        from runner import report
        report(score=yaml.safe_load(open(sys.argv[2]))["x"] * 10)
    """))
    project.write("scripts/table.py", textwrap.dedent("""
        import csv, sys, yaml
        from runner import report
        rows = {r["name"]: r for r in csv.DictReader(open(yaml.safe_load(open(sys.argv[2]))["sheet"]))}
        report(seen=" ".join(f"{rows[n]['status']}:{rows[n].get('score', '')}" for n in ("a", "b", "c")))
    """))
    sheet = os.path.join(project.root, "result_sheets", "sheet.csv")
    rows = [["scripts/score.py", CFG, "1", name, name, str(x), "", ""] for name, x in (("a", 1), ("b", 2), ("c", 3))]
    rows.append(["scripts/table.py", CFG, "1", "table", "table", "0", "a, b, c", sheet])
    path = project.sheet(BASE + ["name", "delta:name", "delta:x", "depends_on", "delta+:sheet"], rows)
    for _ in range(3):                 # three launches: a race would lose at least once
        project.sheetrun("reset", path, check=0)
        project.sheetrun("run", path, "--jobs", "4", check=0)
        table = project.read()[3]
        assert table["status"] == "Completed", table
        assert table["seen"] == "Completed:10 Completed:20 Completed:30", table


def test_depends_on_names_rows_by_their_name_cell_so_sorting_keeps_chains(project, tmp_path):
    log = str(tmp_path / "log.txt")
    path = project.sheet(BASE + ["name", "delta:name", "delta:log", "depends_on"], [
        ["scripts/stamp.py", CFG, "1", "eval", "e", log, "train"],
        ["scripts/stamp.py", CFG, "1", "train", "t", log, "cache"],
        ["scripts/stamp.py", CFG, "1", "cache", "c", log, ""],
        ["scripts/stamp.py", CFG, "1", "twin", "x", log, ""],
        ["scripts/stamp.py", CFG, "1", "twin", "y", log, ""],
        ["scripts/stamp.py", CFG, "1", "after twin", "z", log, "twin"],
    ])
    project.sheetrun("run", path, "--jobs", "3", check=1)
    rows = project.read()
    assert [r["status"] for r in rows[:3]] == ["Completed"] * 3
    order = [line.split()[1] for line in open(log) if line.startswith("start")]
    assert order.index("c") < order.index("t") < order.index("e")
    assert rows[5]["status"] == "Failed" and "'twin' names 2 rows (4, 5); names must be unique" in rows[5]["error"]


def test_depends_on_run_id_of_a_completed_row(project, tmp_path):
    log = str(tmp_path / "log.txt")
    path = project.sheet(BASE + ["delta:name", "delta:log", "depends_on"],
                         [["scripts/stamp.py", CFG, "1", "A", log, ""]])
    project.sheetrun("run", path, check=0)
    rid = project.read()[0]["run_id"]
    with open(path, "a") as f:
        f.write(f"scripts/stamp.py,{CFG},1,B,{log},{rid}\n")
    project.sheetrun("run", path, check=0)
    assert [r["status"] for r in project.read()] == ["Completed", "Completed"]


def test_env_columns_and_thread_budget(project):
    path = project.sheet(BASE + ["delta:name", "env:MY_VAR", "env:OMP_NUM_THREADS"], [
        ["scripts/env.py", CFG, "1", "a", "hello $(whoami)", ""],
        ["scripts/env.py", CFG, "1", "b", "", "7"],
    ])
    project.sheetrun("run", path, "--jobs", "2", check=0)
    a, b = project.read()
    budget = max(1, len(os.sched_getaffinity(0)) // 2)
    assert a["omp"] == str(budget) and a["custom"] == "hello $(whoami)"
    assert b["omp"] == "7" and b["custom"] == "unset"
    assert a["cwd"] == project.root


def test_dry_run_prints_commands_and_changes_nothing(project):
    path = project.sheet(BASE + ["delta:name", "delta:nested/depth"], [
        ["scripts/ok.py", CFG, "1", "a", "5"], ["scripts/ok.py", CFG, "1", "b", "zz"]])
    before = open(path).read()
    proc = project.sheetrun("run", path, "--dry-run", check=1)      # row 2's value is not a number
    assert open(path).read() == before
    assert not os.path.exists(os.path.join(project.root, "experiments"))
    assert "scripts/ok.py --config" in proc.stdout
    assert "nested/depth: 2 -> 5" in proc.stdout and "name: '<placeholder>' -> 'a'" in proc.stdout
    assert "row 2: error: nested/depth = 'zz': expected a number (the default is 2)" in proc.stdout


def test_relative_paths_resolve_against_project_root_not_cwd(project, tmp_path):
    path = project.sheet(BASE + ["delta:name"], [["./scripts/ok.py", "./" + CFG, "1", "a"]])
    project.sheetrun("run", path, cwd=str(tmp_path), check=0)
    assert project.read()[0]["status"] == "Completed"


def test_rows_option_and_missing_required_column(project):
    path = project.sheet(BASE + ["delta:name"], [["scripts/ok.py", CFG, "1", n] for n in "abcd"])
    project.sheetrun("run", path, "--rows", "2-3", check=0)
    assert [r["status"] for r in project.read()] == ["", "Completed", "Completed", ""]
    for spec, message in [("9", "--rows '9': there is no row 9 (the sheet has rows 1-4)"),
                          ("abc", "--rows 'abc': 'abc' is not a row number (rows 1-4), a run id or a name"),
                          ("3-2", "the range '3-2' goes backwards")]:
        proc = project.sheetrun("run", path, "--rows", spec, check=2)
        assert message in proc.stderr and "Traceback" not in proc.stderr
    bad = project.sheet(["path_to_main", "whether_to_run", "notes"], [["scripts/ok.py", "1", ""]], name="bad.csv")
    proc = project.sheetrun("run", bad, check=2)
    assert ("the sheet has no column 'path_to_default_config' (its columns: 'path_to_main', "
            "'whether_to_run', 'notes')") in proc.stderr


def _tree_alive(pids):
    return [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_cancels_rows_and_ends_process_trees(project, tmp_path, sig):
    pidfiles = [str(tmp_path / f"pids{i}") for i in range(2)]
    path = project.sheet(BASE + ["delta:name", "delta:pidfile"],
                         [["scripts/sleeper.py", CFG, "1", "a", pidfiles[0]],
                          ["scripts/sleeper.py", CFG, "1", "b", pidfiles[1]],
                          ["scripts/sleeper.py", CFG, "1", "c", str(tmp_path / "never")]])
    runner = project.popen("run", path, "--jobs", "2")
    try:
        wait_for(lambda: all(os.path.exists(p) and open(p).read() for p in pidfiles), what="jobs to start")
        pids = [int(x) for p in pidfiles for x in open(p).read().split()]
        runner.send_signal(sig)
        code = runner.wait(30)
    finally:
        runner.kill()
    assert code == (130 if sig == signal.SIGINT else 143)
    rows = project.read()
    assert [r["status"] for r in rows] == ["Cancelled"] * 3
    assert rows[2]["error"] == "cancelled before it started"
    wait_for(lambda: not _tree_alive(pids), timeout=10, what="process trees to end")


def test_sync_marks_a_killed_job_lost(project, tmp_path):
    pidfile = str(tmp_path / "pids")
    path = project.sheet(BASE + ["delta:name", "delta:pidfile"],
                         [["scripts/sleeper.py", CFG, "1", "a", pidfile]])
    runner = project.popen("run", path)
    try:
        wait_for(lambda: os.path.exists(pidfile) and open(pidfile).read(), what="job start")
        script_pid, grandchild = map(int, open(pidfile).read().split())
        wrapper = job_host_pid(project, project.read()[0])
        runner.kill()                            # the runner dies first...
        runner.wait()
        os.kill(wrapper, signal.SIGKILL)         # ...then the job wrapper, no exit record
        for p in (script_pid, grandchild):
            os.kill(p, signal.SIGKILL)
        wait_for(lambda: not _tree_alive([wrapper]), what="wrapper to die")
    finally:
        runner.kill()
    assert project.read()[0]["status"] == "Running"
    proc = project.sheetrun("sync", path, check=0)
    row = project.read()[0]
    assert row["status"] == "Lost" and "without an exit record" in row["error"]
    assert "Lost" in proc.stdout


def test_job_outlives_a_killed_runner_and_sync_reads_exit_record(project, tmp_path):
    gate = str(tmp_path / "gate")
    path = project.sheet(BASE + ["delta:name", "delta:gate"], [["scripts/wait.py", CFG, "1", "a", gate]])
    runner = project.popen("run", path)
    wait_for(lambda: project.read()[0].get("progress") == "1", what="job start")
    runner.kill()
    runner.wait()
    proc = project.sheetrun("sync", path, check=0)
    assert "still running" in proc.stdout
    open(gate, "w").close()
    wait_for(lambda: project.read()[0]["status"] == "Completed", what="orphaned job to finish")
    assert project.read()[0]["progress"] == "2"


def test_provenance_in_a_git_repository(project):
    path = project.sheet(BASE + ["delta:name"], [["scripts/ok.py", CFG, "1", "a"], ["scripts/ok.py", CFG, "1", "b"]])
    git = ["git", "-C", project.root, "-c", "user.email=a@b", "-c", "user.name=n"]
    subprocess.run(["git", "init", "-q", project.root], check=True)
    subprocess.run(git + ["add", "scripts", "result_sheets/sheet.csv"], check=True)
    subprocess.run(git + ["commit", "-qm", "init"], check=True)
    project.write("scripts/ok.py", open(os.path.join(project.root, "scripts/ok.py")).read() + "# edited\n")
    project.write("service_account.json", '{"type": "service_account", "private_key": "-----BEGIN..."}')
    project.write("notes.txt", "an untracked file\n")
    project.sheetrun("run", path, "--rows", "1", check=0)       # the sheet, tracked, now holds results
    project.sheetrun("run", path, "--rows", "2", check=0)
    prov = os.path.join(project.root, project.read()[1]["run_folder"], "provenance")
    info = json.load(open(os.path.join(prov, "git.json")))
    assert len(info["git_commit"]) == 40 and info["git_dirty"]
    diff = open(os.path.join(prov, "git.diff")).read()
    assert "# edited" in diff
    assert "result_sheets/sheet.csv" not in diff and info["left_out"] == ["result_sheets/sheet.csv"]
    untracked = open(os.path.join(prov, "untracked.txt")).read()
    assert "notes.txt" in untracked and "experiments/" not in untracked and ".sheetrun" not in untracked
    # a credentials file lying in the project is listed, never archived
    assert "not archived (credentials)" in untracked
    with tarfile.open(os.path.join(prov, "untracked.tar.gz")) as tar:
        assert "service_account.json" not in tar.getnames() and "notes.txt" in tar.getnames()


def test_a_second_run_does_not_start_rows_that_are_still_running(project, tmp_path):
    gate = str(tmp_path / "gate")
    path = project.sheet(BASE + ["delta:name", "delta:gate"], [["scripts/wait.py", CFG, "1", "a", gate]])
    first = project.popen("run", path)
    try:
        wait_for(lambda: project.read()[0].get("progress") == "1", what="first run's job")
        run_id = project.read()[0]["run_id"]
        with open(path, "a") as f:
            f.write(f"scripts/ok.py,{CFG},1,b,\n")
        second = project.sheetrun("run", path, check=0)
        assert "row 1 not started: still held by an earlier run (still running" in second.stderr
        rows = project.read()
        assert rows[0]["run_id"] == run_id and rows[0]["status"] == "Running"
        assert rows[1]["status"] == "Completed"
        open(gate, "w").close()
        assert first.wait(60) == 0
    finally:
        first.kill()
    assert project.read()[0]["status"] == "Completed"


def test_sync_marks_rows_of_a_dead_runner_lost(project, tmp_path):
    pidfile = str(tmp_path / "pids")
    path = project.sheet(BASE + ["delta:name", "delta:pidfile"],
                         [["scripts/sleeper.py", CFG, "1", "a", pidfile],
                          ["scripts/ok.py", CFG, "1", "b", ""]])
    runner = project.popen("run", path, "--jobs", "1")
    try:
        wait_for(lambda: os.path.exists(pidfile) and open(pidfile).read(), what="job start")
        wrapper = job_host_pid(project, project.read()[0])
        runner.kill()
        runner.wait()
        from runner.core.procs import kill_tree

        # the job host dies first (were its job killed first, it could record how that ended: Failed)
        os.kill(wrapper, signal.SIGKILL)
        wait_for(lambda: not _alive(wrapper), what="the job host to die")
        for p in map(int, open(pidfile).read().split()):
            kill_tree(p)
    finally:
        runner.kill()
    assert [r["status"] for r in project.read()] == ["Running", "Submitted"]
    project.sheetrun("sync", path, check=0)
    first, second = project.read()
    assert first["status"] == "Lost" and second["status"] == "Lost"
    assert "never started" in second["error"] and "launcher" in second["error"]
    # Lost rows keep whether_to_run = 1, so the next run picks them up again.
    project.write("scripts/sleeper.py", "pass\n")
    project.sheetrun("run", path, check=0)
    assert [r["status"] for r in project.read()] == ["Completed", "Completed"]


def test_bad_slurm_columns_fail_only_their_row(project):
    path = project.sheet(BASE + ["delta:name", "slurm:time", "slurm:partiton", "slurm:mem"], [
        ["scripts/ok.py", CFG, "1", "a", "1:00:00", "", "4G"],
        ["scripts/ok.py", CFG, "1", "b", "an hour", "", ""],
        ["scripts/ok.py", CFG, "1", "c", "", "gpu", ""],
    ])
    project.sheetrun("run", path)
    a, b, c = project.read()
    assert a["status"] == "Completed"
    assert "slurm:time='an hour' is not a time" in b["error"]
    assert "slurm:partiton is not an sbatch option (did you mean slurm:partition?)" in c["error"]


def test_exec_spawn_mode_runs_the_same(project):
    path = project.sheet(BASE + ["delta:name"], [["scripts/ok.py", CFG, "1", "a"], ["scripts/crash.py", CFG, "1", "b"]])
    project.sheetrun("run", path, "--jobs", "2", env={"SHEETRUN_SPAWN": "exec"})
    ok, crash = project.read()
    assert ok["status"] == "Completed" and ok["score"] == "2"
    assert crash["status"] == "Failed" and crash["error"] == "ValueError: bad learning rate: -1"


def test_root_option_for_a_sheet_outside_result_sheets(project, tmp_path):
    elsewhere = tmp_path / "sheets"
    elsewhere.mkdir()
    path = str(elsewhere / "s.csv")
    with open(path, "w") as f:
        f.write(f"path_to_main,path_to_default_config,whether_to_run,delta:name\nscripts/ok.py,{CFG},1,a\n")
    proc = project.sheetrun("run", path)
    root = os.path.dirname(path)
    assert proc.returncode == 1
    assert (f"script not found: scripts/ok.py under the project root {root}; config not found: {CFG} under "
            f"the project root {root} (give --root DIR if the project is elsewhere)") in proc.stderr
    with open(path, "w") as f:
        f.write(f"path_to_main,path_to_default_config,whether_to_run,delta:name\nscripts/ok.py,{CFG},1,a\n")
    project.sheetrun("run", path, "--root", project.root, check=0)
    assert os.path.isdir(os.path.join(project.root, "experiments", "s"))


def test_status_command_summarises(project):
    path = project.sheet(BASE + ["delta:name"], [["scripts/ok.py", CFG, "1", "a"], ["scripts/crash.py", CFG, "1", "b"],
                                                 ["scripts/ok.py", CFG, "0", "c"]])
    project.sheetrun("run", path)
    out = project.sheetrun("status", path, check=0).stdout
    assert "Completed" in out and "(never run)" in out
    assert "ValueError: bad learning rate: -1" in out


def test_console_script_is_installed():
    """pip puts the console script beside the interpreter; the environment need not be activated."""
    script = os.path.join(os.path.dirname(sys.executable), "sheetrun")
    assert os.access(script, os.X_OK), f"no sheetrun beside {sys.executable}: is the package installed?"
    out = subprocess.run([script, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("sheetrun ")


def test_deleting_a_running_rows_line_loses_no_other_row(project, tmp_path):
    gate = str(tmp_path / "gate")
    path = project.sheet(BASE + ["delta:name", "delta:gate", "notes"],
                         [["scripts/wait.py", CFG, "1", "a", gate, "doomed"],
                          ["scripts/ok.py", CFG, "0", "b", "", "kept, as typed"]])
    runner = project.popen("run", path)
    try:
        wait_for(lambda: project.read()[0].get("progress") == "1", what="job start")
        folder = os.path.join(project.root, project.read()[0]["run_folder"])
        from runner.sheet import open_sheet
        open_sheet(path).transact(lambda t: t.delete_row(t.rows[0]))    # a person deletes the row
        open(gate, "w").close()
        assert runner.wait(60) == 1          # a row's results could not reach the sheet: not a clean run
        err = runner.stderr.read()
    finally:
        runner.kill()
    rows = project.read()
    assert len(rows) == 1 and rows[0]["notes"] == "kept, as typed" and rows[0]["status"] == ""
    assert json.load(open(os.path.join(folder, "exit.json")))["status"] == "Completed"
    assert "no row has run_id" in err and "1 row(s) of this launch are no longer in the sheet" in err
    assert "their results wait in their run folders" in err
    # the row's writes are kept (a row an editor saved over may come back: sync delivers them then)
    from runner.core.rundir import RunDir
    assert RunDir(folder).read_pending()[-1]["values"]["status"] == "Completed"


def test_stnd_filled_sheet_keeps_working(project):
    """A sheet stnd already filled in: its own columns stay, 'Complete' counts as done."""
    path = project.write("result_sheets/filled.csv",
                         "path_to_main,path_to_default_config,whether_to_run,status,run_folder,slurm job id,"
                         "delta:name,val accuracy-top-k->mean,walltime,depends_on\n"
                         f"scripts/ok.py,{CFG},0,Complete,./experiments/old---1b6c---27,Not found,a,0.8499,"
                         "0:47:16.333734,\n"
                         f"scripts/ok.py,{CFG},1,,,,b,,,1\n")
    before = project.read("filled.csv")[0]
    project.sheetrun("run", path, check=0)
    old, new = project.read("filled.csv")
    assert {k: old[k] for k in before} == before          # stnd's cells untouched
    assert new["status"] == "Completed" and new["score"] == "2"


def test_cancel_command_stops_a_local_row_from_another_terminal(project, tmp_path):
    pidfile = str(tmp_path / "pids")
    path = project.sheet(BASE + ["delta:name", "delta:pidfile"],
                         [["scripts/sleeper.py", CFG, "1", "a", pidfile],
                          ["scripts/ok.py", CFG, "0", "b", "unused"]])
    runner = project.popen("run", path)
    try:
        wait_for(lambda: os.path.exists(pidfile) and open(pidfile).read(), what="job start")
        pids = [int(x) for x in open(pidfile).read().split()]
        proc = project.sheetrun("cancel", path, "--rows", "1-2", check=0)
        assert "cancelled rows 1" in proc.stdout
        code = runner.wait(30)
    finally:
        runner.kill()
    assert code == 1
    rows = project.read()
    assert rows[0]["status"] == "Cancelled" and rows[0]["exit_code"] != ""     # the wrapper's own record
    assert rows[1]["status"] == ""                                             # never selected: untouched
    wait_for(lambda: not _tree_alive(pids), timeout=10, what="the process tree to end")


def test_a_semicolon_sheet_runs_and_a_pipe_sheet_says_what_it_saw(project):
    """A semicolon-separated sheet is how comma-decimal locales save: 1,5 is 1.5 there where the
    default is a number, and stays text where the default is text (a device list '0,1')."""
    path = project.write("result_sheets/sheet.csv", f"path_to_main;path_to_default_config;whether_to_run;delta:name;delta:x\n"
                                                    f"scripts/ok.py;{CFG};1;0,1;1,5\nscripts/ok.py;{CFG};1;colon;0.5\n"
                                                    f"scripts/ok.py;{CFG};1;bad;1,5,2\n")
    project.sheetrun("run", path, check=1)
    text = open(path).read()
    assert text.splitlines()[0].startswith("path_to_main;path_to_default_config;whether_to_run;delta:name;delta:x;status")
    first, second, third = [line.split(";") for line in text.splitlines()[1:]]
    assert "Completed" in first and first[-2:] == ["3", "0,1"]          # score = 2 * 1.5, label as typed
    assert "Completed" in second
    assert "Failed" in third and any("expected a number" in cell for cell in third)
    pipes = project.write("result_sheets/pipes.csv", f"path_to_main|path_to_default_config|whether_to_run\nscripts/ok.py|{CFG}|1\n")
    proc = project.sheetrun("run", pipes, check=2)
    assert "its columns: 'path_to_main|path_to_default_config|whether_to_run'" in proc.stderr
    assert "separated by something other than commas, semicolons or tabs" in proc.stderr


def test_reset_makes_run_rows_ready_again_and_keeps_what_a_person_typed(project, tmp_path):
    from conftest import wait_for

    gate = str(tmp_path / "gate")
    path = project.sheet(BASE + ["delta:name", "delta:gate", "notes"], [
        ["scripts/ok.py", CFG, "1", "a", "", "keep me"],
        ["scripts/ok.py", CFG, "0", "never run", "", ""],
        ["scripts/wait.py", CFG, "1", "busy", gate, ""],
    ])
    runner = project.popen("run", path, "--rows", "3")
    try:
        wait_for(lambda: project.read()[2].get("progress") == "1", what="row 3 to run")
        project.sheetrun("run", path, "--rows", "1", check=0)
        first = project.read()[0]
        assert first["status"] == "Completed" and first["score"] == "2" and first["whether_to_run"] == "0"
        proc = project.sheetrun("reset", path, check=1)             # row 3 is still running: left alone
        assert "row 3 not reset: its run is still held" in proc.stderr and "reset rows 1" in proc.stdout
        rows = project.read()
        assert rows[0]["status"] == rows[0]["run_id"] == rows[0]["score"] == rows[0]["label"] == ""
        assert rows[0]["whether_to_run"] == "1" and rows[0]["notes"] == "keep me"
        assert rows[1]["whether_to_run"] == "0"                      # never run: untouched
        assert rows[2]["status"] == "Running"
        assert os.path.isdir(os.path.join(project.root, first["run_folder"]))   # the run stays
        open(gate, "w").close()
        assert runner.wait(60) == 0
    finally:
        runner.kill()
    proc = project.sheetrun("reset", path, "--rows", "3", check=0)
    assert "reset rows 3" in proc.stdout and project.read()[2]["whether_to_run"] == "1"


CURVE = """
import sys, yaml
from runner import report
cfg = yaml.safe_load(open(sys.argv[2]))
for step in range(5):
    report(step=step * 10, loss=1.0 / (step + 1) * cfg["x"], note="text is not plotted")
"""


def test_history_plot_and_chosen_columns(project, tmp_path):
    project.write("scripts/curve.py", CURVE)
    path = project.sheet(BASE + ["name", "delta:name", "delta:x"], [["scripts/curve.py", CFG, "1", "base", "a", "1"],
                                                                   ["scripts/curve.py", CFG, "1", "big", "b", "3"],
                                                                   ["scripts/ok.py", CFG, "1", "plain", "c", "1"]])
    proc = project.sheetrun("run", path, "--show", "loss,step", check=0)
    header = next(line for line in proc.stderr.splitlines() if "run_id" in line)
    assert "loss" in header and "step" in header and "note" not in header
    text = open(path).read().replace(",0,base,", ",1,base,")
    open(path, "w").write(text)
    project.sheetrun("run", path, "--rows", "base", check=0)                 # a second run of row 1
    hist = project.sheetrun("history", path, "base", "--show", "loss", check=0).stdout
    assert "row 1: 2 run(s), newest first" in hist and hist.count("Completed") == 2
    run_ids = [r["run_id"] for r in project.read()][:1]
    assert hist.index(run_ids[0]) < hist.rindex("Completed")                 # newest first
    out = str(tmp_path / "loss.png")
    proc = project.sheetrun("plot", path, "loss", "--out", out, check=0)
    assert "2 curve(s) of loss written to" in proc.stdout and "rows 3 reported no loss" in proc.stdout
    assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n" and os.path.getsize(out) > 5000
    from runner.core.rundir import RunDir
    from runner.results.history import curve
    x_name, xs, ys = curve(RunDir(os.path.join(project.root, project.read()[1]["run_folder"])), "loss")
    assert x_name == "step" and xs == [0, 10, 20, 30, 40] and ys == [1.0 / (s + 1) * 3 for s in range(5)]
    status = project.sheetrun("status", path, "--show", "loss", check=0).stdout
    assert "0.6" in status and "loss" in status


def test_a_sheet_copied_without_its_run_folders_names_the_cells_it_cannot_vouch_for(project):
    """A finished sheet moved to another machine without its run folders: the old scores cannot be
    told from numbers a person typed, so they are kept — and reset and run say which, and where
    the new run's metric went instead."""
    import shutil

    path = project.sheet(BASE + ["delta:x", "notes"], [["scripts/ok.py", CFG, "1", "1", "mine"],
                                                       ["scripts/ok.py", CFG, "1", "2", ""]])
    project.sheetrun("run", path, check=0)
    assert [r["score"] for r in project.read()] == ["2", "4"]
    shutil.rmtree(os.path.join(project.root, "experiments"))     # the copy came without them
    proc = project.sheetrun("reset", path, "--rows", "1", check=0)
    assert "row 1: kept notes, score, label" in proc.stderr and "is not here" in proc.stderr
    rows = project.read()
    assert rows[0]["score"] == "2" and rows[0]["whether_to_run"] == "1" and rows[0]["run_id"] == ""
    project.sheet(BASE + ["delta:x", "notes", "status", "run_id", "run_folder", "score", "label"],
                  [["scripts/ok.py", CFG, "1", "1", "", "Completed", "r0", "./gone/run", "7", "old"]])
    proc = project.sheetrun("run", path, check=0)
    row = project.read()[0]
    assert "kept the cells score, label: its previous run folder ./gone/run is not here" in proc.stderr
    assert row["status"] == "Completed" and row["score"] == "7" and row["score (metric)"] == "2"
    assert "went to column 'score (metric)': the column 'score' holds cells no run of their rows reported" in proc.stderr


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
