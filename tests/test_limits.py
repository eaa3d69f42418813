"""Local time limits and retries."""
import json
import os

from conftest import BASE, CFG

SLOW = "import time\ntime.sleep(30)\n"
FLAKY = """
import os, sys, yaml
cfg = yaml.safe_load(open(sys.argv[2]))
marker = cfg["log"] + "." + cfg["name"]
tries = int(open(marker).read()) + 1 if os.path.exists(marker) else 1
open(marker, "w").write(str(tries))
with open(cfg["log"], "a") as f:
    f.write(f"{cfg['name']} {tries}\\n")
if tries <= cfg.get("fail_times", 0):
    raise SystemExit(4)
"""


def test_a_row_over_its_time_limit_is_stopped_and_marked_timeout(project):
    project.write("scripts/slow.py", SLOW)
    path = project.sheet(BASE + ["delta:name", "time_limit"], [
        ["scripts/slow.py", CFG, "1", "default limit", ""],
        ["scripts/slow.py", CFG, "1", "own limit", "0:01"],
        ["scripts/slow.py", CFG, "1", "bad limit", "soon"],
    ])
    proc = project.sheetrun("run", path, "--jobs", "3", "--timeout", "0:02", check=1, timeout=60)
    default, own, bad = project.read()
    assert default["status"] == own["status"] == "Timeout"
    assert default["error"] == "time limit reached (0:02)" and own["error"] == "time limit reached (0:01)"
    assert default["exit_code"] == own["exit_code"] == "-15"
    assert 1.0 <= float(own["walltime"].rsplit(":", 1)[1]) < 2.5
    assert bad["status"] == "Failed" and "time_limit: 'soon' is not a time like 60" in bad["error"]
    assert "Traceback" not in proc.stderr
    proc = project.sheetrun("run", path, "--timeout", "later")
    assert proc.returncode != 0 and "--timeout: 'later' is not a time" in proc.stderr


def test_retries_run_a_failed_row_again_in_a_new_folder_and_its_dependents_wait(project, tmp_path):
    project.write("scripts/flaky.py", FLAKY)
    log = str(tmp_path / "tries.log")
    path = project.sheet(BASE + ["delta:name", "delta:log", "delta+:fail_times", "depends_on"], [
        ["scripts/flaky.py", CFG, "1", "once", log, "1", ""],
        ["scripts/flaky.py", CFG, "1", "after", log, "0", "1"],
        ["scripts/flaky.py", CFG, "1", "always", log, "9", ""],
    ])
    proc = project.sheetrun("run", path, "--retries", "2", check=1)
    once, after, always = project.read()
    assert once["status"] == "Completed" and after["status"] == "Completed"
    assert always["status"] == "Failed" and always["exit_code"] == "4"
    order = [line.split() for line in open(log)]
    assert order.index(["once", "2"]) < order.index(["after", "1"])      # waited for the try that worked
    assert order.count(["always", "1"]) == order.count(["always", "3"]) == 1 and ["always", "4"] not in order
    assert "row 1 runs again: try 2 of 3" in proc.stderr
    second = os.path.join(project.root, once["run_folder"])
    assert "_try2_" in second
    job = json.load(open(os.path.join(second, "job.json")))
    first = job["previous_run_folder"]
    assert job["attempt"] == 2 and json.load(open(os.path.join(first, "exit.json")))["status"] == "Failed"


def test_a_row_reporting_20000_metric_names_adds_at_most_the_columns_a_launch_may_add(project):
    """A CSV has no column limit of its own, but Excel opens 16,384: a launch adds at most
    metric_columns (1,000 by default) and the row's error counts what was left out."""
    import csv

    project.write("scripts/flood.py", "from runner import report\nreport({f'm{i}': i for i in range(20000)})\n")
    path = project.sheet(BASE, [["scripts/flood.py", CFG, "1"], ["scripts/ok.py", CFG, "1"]])
    project.sheetrun("run", path, check=0, timeout=300)
    with open(path, newline="") as f:
        header = next(csv.reader(f))
    flood, ok = project.read()
    written = [c for c in header if c.startswith("m") and c[1:].isdigit()]
    assert len(written) <= 500 and ok["status"] == "Completed" and ok["score"] == "2"   # room left for others
    assert f"{20000 - len(written)} metric(s) not written: a launch adds at most 1000 columns" in flood["error"]


def test_a_runaway_log_is_kept_to_its_beginning_and_newest_end(project):
    project.write("scripts/chatter.py", "for i in range(400000):\n    print(f'line {i:07d} ' + 'x' * 60)\n"
                                        "print('the last line')\n")
    path = project.sheet(BASE, [["scripts/chatter.py", CFG, "1"]])
    project.sheetrun("run", path, "--log-limit", "2M", check=0, timeout=300)
    row = project.read()[0]
    log_path = os.path.join(project.root, row["run_folder"], "stdout.log")
    log = open(log_path).read()
    assert os.path.getsize(log_path) <= 2 << 20                     # 29 MB written
    assert log.startswith("line 0000000 ") and log.endswith("the last line\n")
    assert log.count("bytes cut here") == 1
    assert "stdout.log:" in row["error"] and "cut from its middle (log_limit 2.0 MiB)" in row["error"]
