"""The run folder's records as types: one reader and one writer each, older files still load."""
import json

from runner.core.records import ExitRecord, JobRecord, Launcher
from runner.core.rundir import RunDir
from runner.core.sheetref import SheetRef


def test_a_job_record_round_trips_and_keeps_what_older_readers_read(tmp_path):
    launcher = Launcher(pid=42, pid_started=1.5, host="h", launch="L1", launch_file="/x/L1.json", claimed=100.0)
    job = JobRecord(sheet="s.csv", run_id="r1", argv=["python", "a.py"], cwd="/p", row=3, name="base",
                    launcher=launcher, take_last={"acc": "acc: (\\d+)"}, log_limit=1024)
    data = job.to_json()
    assert data["launcher_pid"] == 42 and data["created"] == 100.0          # older sheetruns read these
    assert JobRecord.from_json(json.loads(json.dumps(data))) == job
    (tmp_path / "job.json").write_text(json.dumps(dict(data, future_key=[1, 2])))
    again = RunDir(str(tmp_path)).read_job()
    assert again.launcher == launcher and again.created == 100.0 and again.extra == {"future_key": [1, 2]}
    assert again.to_json()["future_key"] == [1, 2]                            # an unknown key is kept


def test_a_job_record_from_before_the_launcher_record_loads(tmp_path):
    (tmp_path / "job.json").write_text(json.dumps({"sheet": "s.csv", "run_id": "r1", "argv": ["x"], "cwd": "/p",
                                                   "launcher_pid": 7, "created": 5.0}))
    rd = RunDir(str(tmp_path))
    assert rd.launcher().pid == 7 and rd.launcher().claimed == 5.0 and rd.read_job().name is None
    assert not RunDir(str(tmp_path / "missing")).launcher()                  # nothing says: a false Launcher


def test_an_exit_record_reads_as_a_type_and_as_its_json(tmp_path):
    record = ExitRecord(status="Completed", exit_code=0, walltime_s=2.5, host="h")
    (tmp_path / "exit.json").write_text(json.dumps(dict(record.to_json(), note="kept")))
    read = RunDir(str(tmp_path)).read_exit()
    assert read.status == "Completed" and read.walltime_s == 2.5 and read.extra == {"note": "kept"}
    assert read["status"] == "Completed" and read["note"] == "kept"
    (tmp_path / "exit.json").write_text('{"status": "Fail')                   # torn: not read
    assert RunDir(str(tmp_path)).read_exit() is None


def test_a_sheet_ref_is_a_path_or_a_url_and_its_worksheet():
    assert SheetRef.parse("result_sheets/demo.csv") == SheetRef("result_sheets/demo.csv")
    assert not SheetRef.parse("a::b.csv").remote and str(SheetRef.parse("a::b.csv")) == "a::b.csv"
    url = "https://docs.google.com/spreadsheets/d/KEY/edit#gid=0"
    ref = SheetRef.parse(url + "::runs")
    assert ref.remote and ref.address == url and ref.worksheet == "runs" and str(ref) == url + "::runs"
    assert str(SheetRef.parse(url).with_worksheet("summary")) == url + "::summary"


def test_a_wrapper_record_names_the_process_running_the_job(tmp_path):
    from runner.core.records import WrapperRecord

    rd = RunDir(str(tmp_path))
    assert rd.read_wrapper() is None                                           # not started
    record = WrapperRecord(pid=5, pid_started=1.0, host="h", kind="host", started=3.0, job_id="9_1", child_pid=6)
    (tmp_path / "wrapper.json").write_text(json.dumps(dict(record.to_json(), later="kept")))
    read = rd.read_wrapper()
    assert read.kind == "host" and read.child_pid == 6 and read.job_id == "9_1" and read.extra == {"later": "kept"}
    (tmp_path / "wrapper.json").write_text("{}")                               # nothing in it: not a record
    assert rd.read_wrapper() is None
