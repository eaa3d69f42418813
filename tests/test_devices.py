"""GPUs for local jobs, without a GPU: the device list comes from CUDA_VISIBLE_DEVICES."""
import json
import os

import pytest
from conftest import BASE, CFG

from runner.core.devices import DevicePool, visible_devices


def test_visible_devices_come_from_the_runners_own_list():
    assert visible_devices({"CUDA_VISIBLE_DEVICES": "3, 5,GPU-1a2b"}) == ["3", "5", "GPU-1a2b"]
    assert visible_devices({"CUDA_VISIBLE_DEVICES": ""}) == []


def test_jobs_get_their_own_devices_then_share_round_robin():
    pool = DevicePool(["3", "5", "7"])
    first = [pool.take() for _ in range(3)]
    assert first == ["3", "5", "7"]                          # one each while there are enough
    assert [pool.take() for _ in range(3)] == ["3", "5", "7"]  # then shared, evenly
    pool.give("5")
    pool.give("5")
    assert pool.take() == "5"                                # the least used comes first
    pairs = DevicePool(["0", "1", "2", "3"], per_job=2)
    assert [pairs.take(), pairs.take(), pairs.take()] == ["0,1", "2,3", "0,1"]
    assert DevicePool(["0", "1"], per_job=0).take() == ""     # 0: no GPU for the jobs
    assert DevicePool([]).take() is None                     # no GPUs: leave the variable alone
    with pytest.raises(ValueError, match="only 2 device"):
        DevicePool(["0", "1"], per_job=3)


DEVICE_SCRIPT = """
import os, sys, time, json, yaml
cfg = yaml.safe_load(open(sys.argv[2]))
t0 = time.time()
time.sleep(0.6)
with open(cfg["log"], "a") as f:
    f.write(json.dumps({"name": cfg["name"], "dev": os.environ.get("CUDA_VISIBLE_DEVICES"),
                        "start": t0, "end": time.time()}) + "\\n")
"""


def test_concurrent_jobs_never_share_a_device_while_there_are_enough(project, tmp_path):
    project.write("scripts/dev.py", DEVICE_SCRIPT)
    log = str(tmp_path / "devices.jsonl")
    rows = [["scripts/dev.py", CFG, "1", f"j{i}", log, ""] for i in range(6)]
    rows.append(["scripts/dev.py", CFG, "1", "own", log, "0"])      # the row sets its own
    path = project.sheet(BASE + ["delta:name", "delta:log", "env:CUDA_VISIBLE_DEVICES"], rows)
    project.sheetrun("run", path, "--jobs", "3", env={"CUDA_VISIBLE_DEVICES": "3,5,7"}, check=0)
    runs = [json.loads(line) for line in open(log)]
    by_name = {r["name"]: r for r in runs}
    assert by_name["own"]["dev"] == "0"
    jobs = [r for r in runs if r["name"] != "own"]
    assert {r["dev"] for r in jobs} <= {"3", "5", "7"}
    for a in jobs:
        for b in jobs:
            if a is not b and a["start"] < b["end"] and b["start"] < a["end"]:
                assert a["dev"] != b["dev"], (a, b)
    row = project.read()[0]
    command = open(os.path.join(project.root, row["run_folder"], "command.txt")).read()
    assert "CUDA_VISIBLE_DEVICES=" in command and "OMP_NUM_THREADS=" in command    # what the run had


def test_gpus_per_job_zero_hides_them_and_too_many_is_refused(project, tmp_path):
    project.write("scripts/dev.py", DEVICE_SCRIPT)
    log = str(tmp_path / "devices.jsonl")
    path = project.sheet(BASE + ["delta:name", "delta:log"], [["scripts/dev.py", CFG, "1", "a", log]])
    project.sheetrun("run", path, "--gpus-per-job", "0", env={"CUDA_VISIBLE_DEVICES": "0,1"}, check=0)
    assert json.loads(open(log).read())["dev"] == ""
    proc = project.sheetrun("run", path, "--gpus-per-job", "3", env={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert proc.returncode != 0 and "only 2 device(s) are visible (0,1)" in proc.stderr
