"""The Google Sheets backend: the real gspread client against a local Sheets v4 server."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from conftest import BASE, CFG, wait_for
from sheets_server import SheetsServer

from runner.core.columns import Status
from runner.sheet import SheetError, open_sheet

KEY = "1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
URL = f"https://docs.google.com/spreadsheets/d/{KEY}/edit#gid=0"


@pytest.fixture
def server(monkeypatch):
    with SheetsServer() as srv:
        monkeypatch.setenv("SHEETRUN_SHEETS_API_URL", srv.url)
        monkeypatch.setenv("SHEETRUN_SHEETS_RETRY_BASE_S", "0.01")
        monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
        yield srv


def values(server, title="Sheet1"):
    return server.state.worksheet(KEY, title).grid()


def test_read_and_write_only_changed_cells_raw(server):
    server.state.create(KEY, rows=[["name", "lr", "date", "formula", "status", "run_id"],
                                   ["a", "007", "2024-01-05", "=1+1", "", "r1"],
                                   ["b", 0.001, "", "", "", "r2"]])
    sheet = open_sheet(URL)
    table = sheet.read()
    assert [r.get("lr") for r in table.rows] == ["007", "0.001"]
    before = server.state.count()
    sheet.update("r2", {"status": "Completed", "score": 0.5, "note": "=cmd|' /C calc'!A0"})
    grid = values(server)
    assert grid[0][6:] == ["score", "note"]
    assert grid[2][4] == "Completed" and grid[2][6] == 0.5       # canonical numbers stay numbers
    assert grid[2][7] == "=cmd|' /C calc'!A0"                     # RAW: text, never a formula
    assert grid[1] == ["a", "007", "2024-01-05", "=1+1", "", "r1"]   # other cells untouched
    # one read + header claim (write, read back) + one batchUpdate, after opening
    assert server.state.count() - before <= 6


def test_worksheet_by_gid_name_and_url_suffix(server):
    server.state.create(KEY, "first", rows=[["a"], ["1"]], gid=0)
    server.state.create(KEY, "runs 2", rows=[["b"], ["2"]], gid=77)
    assert open_sheet(URL).read().header == ["a"]
    assert open_sheet(URL.replace("gid=0", "gid=77")).read().header == ["b"]
    assert open_sheet(URL + "::runs 2").read().header == ["b"]
    with pytest.raises(SheetError, match="no worksheet named 'nope'"):
        open_sheet(URL + "::nope").read()


def test_rate_limits_are_retried_and_hopeless_answers_fail_fast(server):
    server.state.create(KEY, rows=[["a", "run_id", "status"], ["1", "r1", ""]])
    sheet = open_sheet(URL)
    sheet.read()
    server.state.fail_next(429, 3)
    server.state.fail_next(503, 1)
    sheet.update("r1", {"status": "Running"})
    assert values(server)[1][2] == "Running"
    server.state.fail_next(403, 1)
    n = server.state.count()
    with pytest.raises(SheetError, match="403"):
        sheet.update("r1", {"status": "Completed"})
    assert server.state.count() - n == 1                         # not retried
    server.state.fail_next(500, 20)
    with pytest.raises(SheetError, match="500"):
        sheet.read()


def test_bad_credentials_fail_fast_with_the_sheet_named(server, monkeypatch):
    server.state.create(KEY, rows=[["a"]])
    server.state.token = "good-token"
    monkeypatch.setenv("SHEETRUN_SHEETS_TOKEN", "bad-token")
    with pytest.raises(SheetError) as err:
        open_sheet(URL).read()
    assert "401" in str(err.value) and KEY in str(err.value) and "bad-token" not in str(err.value)
    monkeypatch.setenv("SHEETRUN_SHEETS_TOKEN", "good-token")
    assert open_sheet(URL).read().header == ["a"]


def test_sheetrun_run_against_a_google_sheet(server, project):
    server.state.create(KEY, rows=[BASE + ["delta:name", "delta:x"],
                                   ["scripts/ok.py", CFG, 1, "a", 2],
                                   ["scripts/crash.py", CFG, 1, "b", 1],
                                   ["scripts/ok.py", CFG, 0, "c", 3]])
    proc = project.sheetrun("run", URL, "--root", project.root, "--jobs", "2", "--yes", env={
        "SHEETRUN_SHEETS_API_URL": server.url})
    assert proc.returncode == 1, proc.stderr
    table = open_sheet(URL).read()
    rows = {r.get("label") or r.get("delta:name"): r for r in table.rows}
    assert rows["a"].get("status") == Status.COMPLETED and rows["a"].get("score") == "4"
    assert rows["a"].get("whether_to_run") == "0"
    assert rows["b"].get("status") == Status.FAILED and "bad learning rate" in rows["b"].get("error")
    assert rows["c"].get("status") == ""
    folder = os.path.join(project.root, rows["a"].get("run_folder"))
    assert os.path.exists(os.path.join(folder, "exit.json"))




def test_unreachable_sheet_during_a_job_is_synced_afterwards(server, project, tmp_path):
    gate = str(tmp_path / "gate")
    server.state.create(KEY, rows=[BASE + ["delta:name", "delta:gate"], ["scripts/wait.py", CFG, 1, "a", gate]])
    env = dict(os.environ, SHEETRUN_SHEETS_API_URL=server.url)
    runner = subprocess.Popen([sys.executable, "-m", "runner", "run", URL, "--root", project.root, "--yes"],
                              cwd="/", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: open_sheet(URL).read().rows[0].get("progress") == "1", what="the job to report")
        server.state.down = True                  # the sheet goes away mid-run
        open(gate, "w").close()
        _, err = runner.communicate(timeout=120)
    finally:
        runner.kill()
    assert runner.returncode == 0, err          # the job itself did not fail because of the sheet
    assert "sheetrun sync" in err
    server.state.down = False
    row = open_sheet(URL).read().rows[0]
    assert row.get("status") == Status.RUNNING and row.get("progress") == "1"
    folder = os.path.join(project.root, row.get("run_folder"))
    assert os.path.exists(os.path.join(folder, "pending_updates.jsonl"))
    proc = project.sheetrun("sync", URL, "--root", project.root, env={"SHEETRUN_SHEETS_API_URL": server.url})
    assert proc.returncode == 0, proc.stderr
    row = open_sheet(URL).read().rows[0]
    assert row.get("status") == Status.COMPLETED and row.get("progress") == "2"
    assert not os.path.exists(os.path.join(folder, "pending_updates.jsonl"))


def test_twenty_concurrent_jobs_add_columns_and_metrics_without_losing_any(server, project):
    rows = [["scripts/ok.py", CFG, 1, f"n{i}", i] for i in range(20)]
    server.state.create(KEY, rows=[BASE + ["delta:name", "delta:x"]] + rows)
    proc = project.sheetrun("run", URL, "--root", project.root, "--jobs", "20", "--yes", timeout=300,
                            env={"SHEETRUN_SHEETS_API_URL": server.url})
    assert proc.returncode == 0, proc.stderr
    table = open_sheet(URL).read()                  # a duplicated header would fail to parse
    for i, row in enumerate(table.rows):
        assert row.get("status") == Status.COMPLETED, row.as_dict()
        assert row.get("score") == str(2 * i) and row.get("label") == f"n{i}"
    assert sum(1 for h in table.header if h == "score") == 1


def test_a_person_inserting_and_editing_rows_during_the_run_loses_nothing(server, project, tmp_path):
    gate = str(tmp_path / "gate")
    ws = server.state.create(KEY, rows=[BASE + ["delta:name", "delta:gate", "notes"],
                                        ["scripts/wait.py", CFG, 1, "a", gate, ""],
                                        ["scripts/ok.py", CFG, 0, "b", "", "keep me"]])
    env = dict(os.environ, SHEETRUN_SHEETS_API_URL=server.url)
    runner = subprocess.Popen([sys.executable, "-m", "runner", "run", URL, "--root", project.root, "--yes"],
                              cwd="/", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: open_sheet(URL).read().rows[0].get("progress") == "1", what="the job to report")
        # a person inserts two rows at the top of the data and types notes, through the API
        from runner.sheet.gsheet import make_client
        person = make_client().open_by_key(KEY)
        person.batch_update({"requests": [{"insertDimension": {"range": {
            "sheetId": ws.sheet_id, "dimension": "ROWS", "startIndex": 1, "endIndex": 3}}}]})
        notes = open_sheet(URL).read().header.index("notes")
        col = chr(65 + notes)
        person.values_update(f"'Sheet1'!A2:{col}2", params={"valueInputOption": "RAW"},
                             body={"values": [["new row typed by a person"] + [""] * (notes - 1) + ["hi"]]})
        person.values_update(f"'Sheet1'!{col}4", params={"valueInputOption": "RAW"},
                             body={"values": [["edited while running"]]})
        open(gate, "w").close()
        _, err = runner.communicate(timeout=120)
    finally:
        runner.kill()
    assert runner.returncode == 0, err
    rows = open_sheet(URL).read().rows
    assert rows[0].get("path_to_main") == "new row typed by a person" and rows[0].get("notes") == "hi"
    job = rows[1]
    assert job.get("delta:name") == "a" and job.get("status") == Status.COMPLETED
    assert job.get("progress") == "2" and job.get("notes") == "edited while running"
    assert rows[2].get("notes") == "keep me" and rows[2].get("status") == ""


def test_export_and_import_round_trip_without_clobbering(server, project, tmp_path):
    server.state.create(KEY, rows=[["name", "lr", "note", "run_id"], ["a", "007", "=1+1", "r1"],
                                   ["b", 0.25, "", "r2"]])
    env = {"SHEETRUN_SHEETS_API_URL": server.url}
    out = tmp_path / "copy.csv"
    project.sheetrun("export", URL, str(out), env=env, check=0)
    assert out.read_text() == "name,lr,note,run_id\na,007,=1+1,r1\nb,0.25,,r2\n"
    proc = project.sheetrun("export", URL, str(out), env=env)          # never overwrites
    assert proc.returncode == 2 and "already has content" in proc.stderr
    project.sheetrun("import", str(out), URL, "--worksheet", "copy", env=env, check=0)
    assert server.state.worksheet(KEY, "copy").grid() == [["name", "lr", "note", "run_id"],
                                                         ["a", "007", "=1+1", "r1"], ["b", 0.25, "", "r2"]]
    proc = project.sheetrun("import", str(out), URL, env=env)          # the first worksheet is not empty
    assert proc.returncode == 2 and "not overwritten" in proc.stderr


def test_an_unusable_key_file_fails_at_once_without_leaking_it(monkeypatch, tmp_path):
    key_file = tmp_path / "key.json"
    key_file.write_text('{"type": "service_account", "private_key": "not really a key", "client_email": "x"}')
    monkeypatch.delenv("SHEETRUN_SHEETS_API_URL", raising=False)
    monkeypatch.delenv("SHEETRUN_SHEETS_TOKEN", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    with pytest.raises(SheetError) as err:
        open_sheet(URL).read()
    assert str(key_file) in str(err.value) and "not really a key" not in str(err.value)


def test_expand_inserts_a_sweeps_rows_into_the_google_sheet(server, project):
    server.state.create(KEY, rows=[BASE + ["delta:name", "delta:x", "notes"],
                                   ["scripts/ok.py", CFG, 1, "sw", "{1 | 2 | 3}", "n"],
                                   ["scripts/ok.py", CFG, 1, "after", 4, "kept"]])
    proc = project.sheetrun("run", URL, "--root", project.root, "--expand", "--yes", env={
        "SHEETRUN_SHEETS_API_URL": server.url})
    assert proc.returncode == 0, proc.stderr
    grid = values(server)
    assert [r[3] for r in grid[1:]] == ["sw", "sw", "sw", "sw", "after"]
    table = open_sheet(URL).read()
    rows = table.rows
    assert rows[0].get("whether_to_run") == "0" and rows[0].get("status") == ""
    assert [r.get("score") for r in rows[1:]] == ["2", "4", "6", "8"]
    assert [r.get("notes") for r in rows] == ["n", "n", "n", "n", "kept"]


def _edit(row_number: int, column: str, text: str) -> None:
    """A collaborator edits a cell of the shared sheet."""
    open_sheet(URL).transact(lambda table: table.find_row(row_number).set(column, text))


def test_a_shared_sheets_rows_run_a_new_or_changed_command_only_once_confirmed(server, project):
    server.state.create(KEY, rows=[BASE + ["delta:name", "delta:x"],
                                   ["scripts/ok.py", CFG, 1, "a", 2],
                                   ["scripts/ok.py", CFG, 1, "b", 3]])
    env = {"SHEETRUN_SHEETS_API_URL": server.url}
    proc = project.sheetrun("run", URL, "--root", project.root, env=env, check=1)     # no terminal, no --yes
    assert proc.stderr.count("a command you have not run from this sheet") == 2
    assert "path_to_main='scripts/ok.py'" in proc.stderr and "not started: its command is not one you confirmed" \
        in proc.stderr
    assert [r.get("status") for r in open_sheet(URL).read().rows] == ["", ""]         # nothing claimed

    project.sheetrun("run", URL, "--root", project.root, "--yes", env=env, check=0)
    project.sheetrun("reset", URL, "--root", project.root, env=env, check=0)
    _edit(2, "path_to_main", "scripts/crash.py")                                       # someone changes row 2
    dry = project.sheetrun("run", URL, "--root", project.root, "--dry-run", env=env, check=0)
    changed = "row 2 changed since you last ran it: path_to_main: 'scripts/ok.py' -> 'scripts/crash.py'"
    assert changed in dry.stderr and "would ask to confirm these 1 row(s)" in dry.stderr
    proc = project.sheetrun("run", URL, "--root", project.root, env=env, check=1)
    assert changed in proc.stderr and "row 1" not in proc.stderr.split("Run these")[0].split(changed)[0]
    rows = open_sheet(URL).read().rows
    assert rows[0].get("status") == Status.COMPLETED and rows[1].get("status") == ""   # the unchanged row ran

    import pty  # at a terminal: asked, and answered
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "runner", "run", URL, "--root", project.root], stdin=slave,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/",
                            env=dict(os.environ, **env))
    os.close(slave)
    os.write(master, b"y\n")
    out, err = proc.communicate(timeout=120)
    os.close(master)
    assert "Run these 1 row(s) with the commands shown? [y/N]" in out and changed in err
    assert open_sheet(URL).read().rows[1].get("status") == Status.FAILED        # crash.py ran, as confirmed


def test_a_command_changed_after_it_was_confirmed_is_not_claimed(tmp_path):
    """The claim checks each row again: a cell changed while the person answered is not run."""
    from runner.launch.approvals import Approvals
    from runner.sheet import Table

    table = Table("path_to_main,path_to_default_config,whether_to_run,env:X\nscripts/ok.py,c.yaml,1,a\n")
    approvals = Approvals(URL)
    changes = approvals.changes(table)
    assert [c.number for c in changes] == [1]
    approvals.confirm(changes)
    assert approvals.check(table.rows[0]) is None
    table.rows[0].set("env:X", "b")
    assert "not one you confirmed" in approvals.check(table.rows[0])


def test_a_worksheet_title_never_leads_run_folders_out_of_the_runs_folder(server):
    for i, (title, name) in enumerate([("..", "gsheet_key0AbCd"), ("../../etc", "etc"), (".hidden", "hidden"),
                                       ("v1.2 runs", "v1.2_runs")]):
        key = f"key{i}AbCdEfGhIjKlMnOp"
        server.state.create(key, title=title, rows=[BASE])
        assert open_sheet(f"https://docs.google.com/spreadsheets/d/{key}/edit").name == name


def _exits(project) -> list:
    import glob

    return glob.glob(os.path.join(project.root, "experiments", "*", "*", "exit.json"))


def test_a_sheet_that_stops_answering_stops_no_job_and_ctrl_c_is_heard(server, project):
    """Once the rows are claimed the sheet stops answering at all: every job still starts and ends,
    a Ctrl-C is heard at once (the second stops waiting on the sheet), and nothing is lost: the
    results wait in the run folders, and sync delivers them when the sheet answers again."""
    import signal

    n = 6
    server.state.create(KEY, rows=[BASE + ["delta:x"]] + [["scripts/ok.py", CFG, 1, i] for i in range(n)])
    env = dict(os.environ, SHEETRUN_SHEETS_API_URL=server.url)         # requests time out after 30 s
    runner = subprocess.Popen([sys.executable, "-m", "runner", "run", URL, "--root", project.root, "--jobs", "2",
                               "--yes"], cwd="/", env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: "Submitted" in str(values(server)), what="the claim")
        server.state.hang = True                               # no answer, ever
        wait_for(lambda: len(_exits(project)) == n, timeout=20, what="every job to end while the sheet hangs")
        t0 = time.monotonic()
        while runner.poll() is None and time.monotonic() - t0 < 30:   # a person pressing Ctrl-C: the
            runner.send_signal(signal.SIGINT)                        # second one stops waiting on the sheet
            time.sleep(0.5)
        _, err = runner.communicate(timeout=30)
        assert time.monotonic() - t0 < 10, err
    finally:
        server.state.hang = False
        runner.kill()
    assert runner.returncode == 130, err
    assert "kept in their run folders" in err and "Traceback" not in err
    project.sheetrun("sync", URL, "--root", project.root, env={"SHEETRUN_SHEETS_API_URL": server.url}, check=0)
    rows = open_sheet(URL).read().rows
    assert [r.get("status") for r in rows] == [Status.COMPLETED] * n
    assert [r.get("score") for r in rows] == [str(2 * i) for i in range(n)]


def test_minutes_of_503s_keep_no_job_waiting(server, project):
    """Google answers 503 to everything for a while after the claim: the jobs run at their own pace
    meanwhile, and the writer catches up when the sheet is back."""
    n = 8
    server.state.create(KEY, rows=[BASE + ["delta:x"]] + [["scripts/ok.py", CFG, 1, i] for i in range(n)])
    env = dict(os.environ, SHEETRUN_SHEETS_API_URL=server.url, SHEETRUN_SHEETS_RETRY_BASE_S="0.2")
    runner = subprocess.Popen([sys.executable, "-m", "runner", "run", URL, "--root", project.root, "--jobs", "2",
                               "--yes"], cwd="/", env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: "Submitted" in str(values(server)), what="the claim")
        server.state.fail_for(20.0)
        storm_ends = time.monotonic() + 20.0
        wait_for(lambda: len(_exits(project)) == n, timeout=60, what="every job to end during the outage")
        assert time.monotonic() < storm_ends, "the jobs waited for the sheet"
        _, err = runner.communicate(timeout=240)
    finally:
        runner.kill()
    assert runner.returncode == 0, err
    rows = open_sheet(URL).read().rows
    assert [r.get("status") for r in rows] == [Status.COMPLETED] * n
    assert [r.get("score") for r in rows] == [str(2 * i) for i in range(n)]


def test_a_row_reporting_thousands_of_metric_names_blocks_no_row(server, project):
    """A row reporting 30,000 metric names (Google stops at 18,278 columns) gets the first ones, up to
    the columns a launch may add (metric_columns in sheetrun.yaml), its error cell says how many were
    left out, and every other row — and sync — goes on."""
    project.write("sheetrun.yaml", "metric_columns: 40\n")
    project.write("scripts/flood.py", "from runner import report\nreport({f'm{i}': i for i in range(30000)})\n")
    server.state.create(KEY, rows=[BASE + ["delta:x"], ["scripts/flood.py", CFG, 1, 0]]
                        + [["scripts/ok.py", CFG, 1, i] for i in range(1, 4)])
    env = {"SHEETRUN_SHEETS_API_URL": server.url}
    proc = project.sheetrun("run", URL, "--root", project.root, "--yes", "--jobs", "2", env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = open_sheet(URL).read()
    flood, *others = table.rows
    assert flood.get("status") == Status.COMPLETED
    import re

    left_out = int(re.search(r"(\d+) metric\(s\) not written: a launch adds at most 40 columns",
                             flood.get("error")).group(1))
    written = [c for c in table.columns if re.fullmatch(r"m\d+", c)]
    assert left_out + len(written) == 30000 and len(written) <= 20                  # a row: half of them
    assert [r.get("score") for r in others] == ["2", "4", "6"]
    assert len(table.columns) <= len(BASE) + 1 + 7 + 40
    assert project.sheetrun("sync", URL, "--root", project.root, env=env).returncode == 0


def test_a_row_whose_values_the_sheet_refuses_blocks_no_other_row(server, project):
    project.write("scripts/poison.py", "from runner import report\nreport(note='poison pill')\n")
    server.state.create(KEY, rows=[BASE + ["delta:x"], ["scripts/poison.py", CFG, 1, 0]]
                        + [["scripts/ok.py", CFG, 1, i] for i in range(1, 4)])
    server.state.refuse_text = "poison"
    env = {"SHEETRUN_SHEETS_API_URL": server.url}
    proc = project.sheetrun("run", URL, "--root", project.root, "--yes", env=env, timeout=300)
    assert proc.returncode == 1 and "the sheet refused the values of 1 row(s)" in proc.stderr, proc.stderr[-2000:]
    poisoned, *others = open_sheet(URL).read().rows
    assert [r.get("status") for r in others] == [Status.COMPLETED] * 3
    assert [r.get("score") for r in others] == ["2", "4", "6"]
    assert "its values could not be written" in poisoned.get("error")
    folder = os.path.join(project.root, poisoned.get("run_folder"))
    assert os.path.exists(os.path.join(folder, "pending_updates.jsonl"))      # kept for sync
