"""The sheet tells the truth about the current run: its numbers, its error, printed as typed."""
import os

from conftest import BASE, CFG

TQDM_THEN_EXIT = r"""
import sys, time
for p in range(0, 101, 10):
    sys.stderr.write(f"\r{p:3d}%|{'█' * (p // 10)}{' ' * (10 - p // 10)}| {p}/100 [00:01<00:01, 99.0it/s]")
sys.stderr.write("\n")
print("wrote shard 7")
sys.exit(3)
"""
ANSI_TRACEBACK = r"""
import sys
sys.stderr.write("\x1b[32mINFO\x1b[0m starting\n")
def f():
    raise RuntimeError("CUDA out of memory [/] (tried 2 GiB) [bold]")
try:
    f()
finally:
    sys.stderr.write("\x1b[2K\r 37%|███▋      | 37/100 [00:02<00:03, 20.1it/s]\n")
"""


def test_the_error_cell_says_why(project):
    project.write("scripts/tqdm_exit.py", TQDM_THEN_EXIT)
    project.write("scripts/ansi_tb.py", ANSI_TRACEBACK)
    project.write("scripts/long.py", "import sys\nsys.stderr.write('x' * 5000)\nsys.exit(1)\n")
    path = project.sheet(BASE + ["delta:name"], [["scripts/tqdm_exit.py", CFG, "1", "a"],
                                                 ["scripts/ansi_tb.py", CFG, "1", "b"],
                                                 ["scripts/long.py", CFG, "1", "c"]])
    proc = project.sheetrun("run", path, check=1)
    tqdm_row, tb_row, long_row = project.read()
    assert tqdm_row["error"] == "exit code 3; last output: wrote shard 7"
    assert tb_row["error"] == "RuntimeError: CUDA out of memory [/] (tried 2 GiB) [bold]"
    assert long_row["error"].startswith("exit code 1; last output: xxx") and len(long_row["error"]) == 300
    # printed literally, never read as markup: the command did not crash on "[/]"
    assert "CUDA out of memory [/] (tried 2 GiB) [bold]" in proc.stderr and "MarkupError" not in proc.stderr
    status = project.sheetrun("status", path, check=0)
    assert "[/]" in status.stdout and "[bold]" in status.stdout


def test_a_cancelled_job_has_the_same_exit_code_whatever_the_script_does(project, tmp_path):
    import signal
    import time

    from conftest import wait_for

    project.write("scripts/graceful.py", "import signal, sys, time\n"
                                          "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
                                          "open(sys.argv[2] + '.started', 'w').close()\ntime.sleep(60)\n")
    project.write("scripts/plain.py", "import sys, time\nopen(sys.argv[2] + '.started', 'w').close()\n"
                                      "time.sleep(60)\n")
    path = project.sheet(BASE + ["delta:name"], [["scripts/graceful.py", CFG, "1", "g"],
                                                 ["scripts/plain.py", CFG, "1", "p"]])
    runner = project.popen("run", path, "--jobs", "2")
    try:
        folder = os.path.join(project.root, "experiments", "sheet")
        wait_for(lambda: len([1 for d in os.listdir(folder) if os.path.exists(
            os.path.join(folder, d, "config.yaml.started"))]) == 2 if os.path.isdir(folder) else False,
            what="both scripts to start")
        time.sleep(0.2)
        runner.send_signal(signal.SIGINT)
        runner.wait(30)
    finally:
        runner.kill()
    rows = project.read()
    assert [r["status"] for r in rows] == ["Cancelled", "Cancelled"]
    assert rows[0]["exit_code"] == rows[1]["exit_code"] == "-15"


def test_a_rerun_row_shows_only_its_own_runs_numbers(project, tmp_path):
    project.write("scripts/two.py", "from runner import report\nreport(loss=0.5, step=20, acc=0.9)\n")
    project.write("scripts/fails_early.py", "from runner import report\nreport(step=3)\nraise SystemExit(2)\n")
    path = project.sheet(BASE + ["delta:name", "notes"], [["scripts/two.py", CFG, "1", "a", ""],
                                                           ["scripts/two.py", CFG, "1", "b", ""]])
    project.sheetrun("run", path, check=0)
    first = project.read()
    assert first[0]["loss"] == "0.5" and first[1]["step"] == "20"
    # a person types over one metric cell; then both rows run again with a script that fails early
    text = open(path).read().replace("two.py", "fails_early.py").replace(",0,a,", ",1,a,").replace(",0,b,", ",1,b,")
    lines = text.splitlines()
    header = lines[0].split(",")
    cells = lines[2].split(",")
    cells[header.index("acc")] = "checked by hand"
    lines[2] = ",".join(cells)
    open(path, "w").write("\n".join(lines) + "\n")
    project.sheetrun("run", path, check=1)
    a, b = project.read()
    assert a["status"] == b["status"] == "Failed"
    assert a["step"] == "3" and a["loss"] == "" and a["acc"] == ""       # the old numbers are gone
    assert b["step"] == "3" and b["loss"] == "" and b["acc"] == "checked by hand"   # a person's value stays
    old = os.path.join(project.root, first[0]["run_folder"], "metrics.json")
    assert '"loss": 0.5' in open(old).read()                          # ...and are kept in their folder


def test_odd_column_names_print_literally(project):
    path = project.sheet(BASE + ["delta:name", "delta+:v:", "[red]note[/]"],
                         [["scripts/ok.py", CFG, "1", "'[/] x'", "1", "[bold]typed[/bold]"]])
    proc = project.sheetrun("run", path, "--dry-run", check=0)
    assert "v:: None -> 1" in proc.stdout and "'[/] x'" in proc.stdout and "✌" not in proc.stdout
    proc = project.sheetrun("run", path, check=0)
    assert project.read()[0]["[red]note[/]"] == "[bold]typed[/bold]"


def _finished_command_run(tmp_path, time_limit_s=None):
    """A JobRun whose command (``true``) has exited but whose exit is not collected yet: the instant in
    which a time limit or a cancel may come too late."""
    import json
    import sys
    import time

    from runner.job.wrapper import JobRun

    folder = tmp_path / "run"
    folder.mkdir()
    job = {"run_id": "rtest", "argv": [sys.executable, "-c", "print('done')"], "cwd": str(tmp_path),
           "sheet": str(tmp_path / "absent.csv"), "env": {}, "time_limit": "0:00:01", "time_limit_s": time_limit_s}
    (folder / "job.json").write_text(json.dumps(job))
    sent = []
    run = JobRun(str(folder), send=lambda m: sent.append(m) or True)
    assert run.start()
    deadline = time.time() + 10
    while not run.ended_on_its_own():          # exited, still a zombie: nobody has collected it
        assert time.time() < deadline
        time.sleep(0.01)
    assert run.proc.returncode is None
    return run


def test_a_job_that_ended_as_its_time_limit_came_is_judged_by_its_own_exit(tmp_path):
    import os

    run = _finished_command_run(tmp_path, time_limit_s=1)
    run.check_time_limit(run.started + 3600)           # the limit hits now, after the exit
    _, status = os.waitpid(run.proc.pid, 0)
    record = run.finish(os.waitstatus_to_exitcode(status))
    assert (record["status"], record["exit_code"], record["error"]) == ("Completed", 0, "")


def test_a_job_that_ended_as_cancel_came_is_judged_by_its_own_exit(tmp_path):
    import os

    run = _finished_command_run(tmp_path)
    assert run.stop("sheetrun cancel") is False          # too late: nothing is asked
    _, status = os.waitpid(run.proc.pid, 0)
    assert run.finish(os.waitstatus_to_exitcode(status))["status"] == "Completed"


def test_a_job_that_exits_between_the_look_and_the_signal_is_judged_by_its_own_exit(tmp_path):
    """The 1-in-360 case: the script was still running when the time limit looked, and exited 0
    before the signal was sent. Which came first is known after the signal: it is Completed."""
    import os

    run = _finished_command_run(tmp_path, time_limit_s=1)
    real, looks = run.ended_on_its_own, []

    def look() -> bool:                                 # the first look: still running (it was, then)
        looks.append(1)
        return False if len(looks) == 1 else real()

    run.ended_on_its_own = look
    run.check_time_limit(run.started + 3600)
    assert len(looks) == 2 and run.timed_out is False and not run.cancelled
    _, status = os.waitpid(run.proc.pid, 0)
    record = run.finish(os.waitstatus_to_exitcode(status))
    assert (record["status"], record["exit_code"]) == ("Completed", 0)
