"""An editor that ignores the lock file, saving at every step of a sheet write.

Each step of ``CsvSheet.transact`` is replayed with an editor's save landing
exactly there (``CsvSheet._hook``), in both ways editors save: writing a new
file and renaming it over the sheet, or truncating and rewriting the sheet in
place. The editor's buffer was opened before the runner's write (so it lacks
the runner's cells). Whatever the step, both the person's edit and the
runner's write must be in the sheet afterwards.
"""
import contextlib
import csv
import io
import os
import threading
import time

import pytest
from conftest import BASE, CFG, wait_for

from runner.sheet import SheetError, open_sheet
from runner.sheet.csv_sheet import CsvSheet, _exchange

SHEET = ("path_to_main,path_to_default_config,whether_to_run,run_id,status,notes\n"
         "s.py,c.yaml,1,r1,Running,\n"
         "s.py,c.yaml,0,,,\n")
EDITED = SHEET.replace("s.py,c.yaml,0,,,\n", "s.py,c.yaml,0,,,\"a person's note, typed while it ran\"\n")
STEPS = ["read", "temp-written", "checked", "after-swap"]


def save(path: str, text: str, style: str) -> None:
    if style == "rename":                  # most editors: a new file renamed over the old one
        tmp = path + ".editor~"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    else:                                  # others (and `>` in a shell): truncate and rewrite in place
        with open(path, "r+") as f:
            f.truncate(0)
            f.write(text)


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "rename-only"])
@pytest.mark.parametrize("style", ["rename", "in-place"])
@pytest.mark.parametrize("step", STEPS)
def test_an_editor_saving_at_any_step_of_a_write_loses_nothing(tmp_path, monkeypatch, step, style, exchange):
    if not exchange:
        if step == "checked" and style == "rename":
            pytest.skip("without RENAME_EXCHANGE a rename-save between the last check and the rename "
                        "cannot be seen (the documented limit on systems without it)")
        monkeypatch.setattr(_exchange, "fn", None)
    elif _exchange.fn is None:
        pytest.skip("this system has no renameat2(RENAME_EXCHANGE)")
    path = str(tmp_path / "sheet.csv")
    with open(path, "w") as f:
        f.write(SHEET)
    sheet = CsvSheet(path)
    fired = []

    def editor(name: str) -> None:
        if name == step and not fired:
            fired.append(name)
            save(path, EDITED, style)

    sheet._hook = editor
    assert sheet.update("r1", {"status": "Completed", "acc": 0.5})
    assert fired == [step]
    rows = open_sheet(path).read().rows
    assert rows[0].get("status") == "Completed" and rows[0].get("acc") == "0.5"          # the runner's
    assert rows[1].get("notes") == "a person's note, typed while it ran"                 # the person's
    assert not [n for n in os.listdir(tmp_path) + os.listdir(tmp_path / ".sheetrun") if n.endswith(".tmp")]
    assert sorted(os.listdir(tmp_path)) == [".sheetrun", "sheet.csv"]     # nothing else beside the sheet


def test_a_half_written_sheet_is_waited_for_not_refused(tmp_path):
    path = str(tmp_path / "sheet.csv")
    with open(path, "w") as f:
        f.write(SHEET)
    with open(path, "r+") as f:           # an editor's in-place save, caught between truncate and write
        f.truncate(0)

    def finish_saving() -> None:
        time.sleep(0.4)
        with open(path, "r+") as f:
            f.write(EDITED)

    writer = threading.Thread(target=finish_saving)
    writer.start()
    assert CsvSheet(path).update("r1", {"status": "Completed"})
    writer.join()
    rows = open_sheet(path).read().rows
    assert rows[0].get("status") == "Completed" and "person's note" in rows[1].get("notes")


def test_an_empty_sheet_nobody_is_writing_is_an_error_at_once(tmp_path):
    path = str(tmp_path / "sheet.csv")
    open(path, "w").close()
    old = time.time() - 60
    os.utime(path, (old, old))
    t0 = time.monotonic()
    with pytest.raises(SheetError, match="no header row"):
        CsvSheet(path).read()
    assert time.monotonic() - t0 < 1.0


@pytest.mark.parametrize("kind", ["relative", "absolute"])
def test_a_symlinked_sheet_is_written_through_and_stays_a_link(project, kind):
    """result_sheets/sheet.csv -> ../real_sheet.csv: the results reach the real sheet, the link stays."""
    real = project.write("real_sheet.csv", f"path_to_main,path_to_default_config,whether_to_run,delta:x\n"
                                           f"scripts/ok.py,{CFG},1,3\nscripts/ok.py,{CFG},1,4\n")
    link = os.path.join(project.sheets, "sheet.csv")
    os.symlink("../real_sheet.csv" if kind == "relative" else real, link)
    project.sheetrun("run", link, "--jobs", "2", check=0)
    assert os.path.islink(link) and os.readlink(link) == ("../real_sheet.csv" if kind == "relative" else real)
    rows = list(csv.DictReader(open(real)))
    assert [r["status"] for r in rows] == ["Completed", "Completed"] and [r["score"] for r in rows] == ["6", "8"]
    # the run folders carry the link's name, and the lock is the real sheet's
    assert os.path.normpath(rows[0]["run_folder"]).startswith("experiments/sheet/")
    assert os.path.exists(os.path.join(os.path.dirname(real), ".sheetrun", "real_sheet.csv.lock"))
    assert not os.path.exists(os.path.join(project.sheets, ".sheetrun", "sheet.csv.lock"))


def save_with_note(path: str, text: str, note: str) -> None:
    """Save ``text`` over the sheet with row 1's ``notes`` cell set to ``note``, as most editors save
    (:func:`save`), ignoring sheetrun's lock."""
    lines = text.splitlines()
    header = lines[0].split(",")
    cells = next(csv.reader([lines[1]]))
    cells[header.index("notes")] = note
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(cells)
    lines[1] = buf.getvalue()
    save(path, "\n".join(lines) + "\n", "rename")


def launch_record(project, sheet: str = "sheet") -> dict:
    import glob
    import json

    records = sorted(glob.glob(os.path.join(project.root, "experiments", sheet, ".launches", "*.json")))
    return json.load(open(records[-1]))


def all_completed(text: str) -> bool:
    rows = list(csv.DictReader(io.StringIO(text)))
    return bool(rows) and all(r.get("status") == "Completed" for r in rows)


def read_text(path: str):
    try:
        return open(path, encoding="utf-8").read()
    except OSError:
        return None


@contextlib.contextmanager
def editor_saving(path: str, every_s: float, stale_s: float = 0.0, stale_until_written: bool = False):
    """An editor saving a note into row 1 every ``every_s``, each time from the sheet as it read it
    ``stale_s`` earlier — or, with ``stale_until_written``, once the runner has written since (so the
    save reverts the runner's writes, whatever the machine's load) — until it has saved a copy it
    read with every row Completed (or the block ends); yields the notes it saved, in order. Its
    last save is then made from a finished sheet whatever the machine's load, so what the test
    finds depends on events, not on timing."""
    stop = threading.Event()
    saves = []

    def editor():
        k = 0
        while not stop.is_set():
            text = read_text(path)
            if text is None:
                continue
            time.sleep(stale_s)                  # the copy gets older while the person types
            while stale_until_written and not all_completed(text) and read_text(path) in (text, None):
                if stop.wait(0.005):
                    return
            save_with_note(path, text, f"note {k}")
            saves.append(f"note {k}")
            k += 1
            if all_completed(text):              # the runner's work was in the copy it saved: done
                return
            time.sleep(every_s)

    thread = threading.Thread(target=editor, daemon=True)
    thread.start()
    try:
        yield saves
    finally:
        stop.set()
        thread.join(10)


def test_an_editor_saving_every_20_ms_while_run_starts_loses_nothing_and_stops_nothing(project):
    """Claiming 200 rows takes longer than the editor's 20 ms between saves: the run keeps trying,
    with back-off, and says so; the editor's saves and the run's results are all there at the end."""
    n = 200
    path = project.sheet(BASE + ["delta:x", "notes"], [["scripts/ok.py", CFG, "1", str(i), ""] for i in range(n)])
    with editor_saving(path, every_s=0.02) as saves:
        proc = project.sheetrun("run", path, "--jobs", "2", timeout=300)
    project.sheetrun("sync", path, check=0)          # a save landing after the runner ended: sync's job
    rows = project.read()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["status"] for r in rows] == ["Completed"] * n
    assert [r["score"] for r in rows] == [str(2 * i) for i in range(n)]
    assert rows[0]["notes"] == saves[-1] and len(saves) > 20            # the editor's last save is kept


def test_an_editor_saving_older_copies_over_the_runs_writes_is_undone(project):
    """An editor that saves the sheet as it read it before the runner's last write (a person's note
    added) reverts the runner's writes made in between — claims, Running, Completed, scores. The
    runner writes them again: every row ends Completed with its score, and the person's last note
    is kept."""
    n = 30
    project.write("scripts/slow_ok.py", "import sys, time, yaml\nfrom runner import report\n"
                  "cfg = yaml.safe_load(open(sys.argv[2]))\nreport(started=1)\ntime.sleep(0.3)\n"
                  "report(score=cfg['x'] * 2)\n")
    path = project.sheet(BASE + ["delta:x", "notes"], [["scripts/slow_ok.py", CFG, "1", str(i), ""] for i in range(n)])
    with editor_saving(path, every_s=0.3, stale_until_written=True) as saves:
        proc = project.sheetrun("run", path, "--jobs", "2", timeout=300)
    assert launch_record(project)["cells_restored"] > 0            # the runner itself wrote them again
    project.sheetrun("sync", path, check=0)          # a save landing after the runner ended: sync's job
    rows = project.read()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["status"] for r in rows] == ["Completed"] * n
    assert [r["score"] for r in rows] == [str(2 * i) for i in range(n)]
    assert [r["whether_to_run"] for r in rows] == ["0"] * n
    assert all(r["run_id"] and r["run_folder"] for r in rows)
    assert rows[0]["notes"] == saves[-1] and len(saves) >= 3


def test_an_older_copy_saved_after_the_run_ended_is_repaired_by_sync(project):
    """An editor left open since the rows were claimed saves after the launch has ended: the rows
    are back at Submitted with no scores. ``sheetrun sync`` gives them how their runs ended."""
    path = project.sheet(BASE + ["delta:x", "notes"], [["scripts/ok.py", CFG, "1", str(i), ""] for i in range(3)])
    claimed = {}

    def keep_claim():              # what an editor opened right after the claim holds
        while not claimed:
            text = open(path, encoding="utf-8").read()
            if "Submitted" in text:
                claimed["text"] = text
            time.sleep(0.001)

    thread = threading.Thread(target=keep_claim, daemon=True)
    thread.start()
    project.sheetrun("run", path, check=0)
    thread.join(10)
    with open(path, "w", encoding="utf-8") as f:
        f.write(claimed["text"])
    stale = project.read()
    assert {r["status"] for r in stale} <= {"Submitted", "Running"} and not any(r.get("score") for r in stale)
    project.sheetrun("sync", path, check=0)
    rows = project.read()
    assert [r["status"] for r in rows] == ["Completed"] * 3
    assert [r["score"] for r in rows] == ["0", "2", "4"]
    assert [r["whether_to_run"] for r in rows] == ["0"] * 3


def test_a_sheet_that_never_stops_changing_is_given_up_cleanly(tmp_path, monkeypatch, capsys):
    """Past the retry budget the transaction gives up with a clear error, having written nothing."""
    import runner.sheet.csv_sheet as csv_sheet

    monkeypatch.setattr(csv_sheet, "RETRY_FOR_S", 1.5)
    path = tmp_path / "sheet.csv"
    path.write_text("path_to_main,path_to_default_config,whether_to_run,notes\ns.py,c.yaml,1,0\n")
    stop = threading.Event()

    def editor():
        k = 0
        while not stop.is_set():
            k += 1
            (tmp_path / "e.tmp").write_text(f"path_to_main,path_to_default_config,whether_to_run,notes\ns.py,c.yaml,1,{k}\n")
            os.replace(tmp_path / "e.tmp", path)
            time.sleep(0.001)

    def slow_change(table):
        time.sleep(0.03)                       # longer than the editor leaves between saves
        table.rows[0].set("whether_to_run", "0")

    thread = threading.Thread(target=editor, daemon=True)
    thread.start()
    try:
        with pytest.raises(SheetError, match="kept changing during .* attempts"):
            CsvSheet(str(path)).transact(slow_change)
    finally:
        stop.set()
        thread.join(5)
    assert ",1," in path.read_text()                                   # ours never landed
    assert "trying again for up to" in capsys.readouterr().err          # and it said it was trying


HOLDER = """
import sys, time
from runner.sheet.csv_sheet import CsvSheet
def hold(table):
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
CsvSheet(sys.argv[1]).transact(hold)
"""


def test_a_wait_for_the_lock_says_who_holds_it_and_since_when(project, tmp_path):
    import subprocess
    import sys

    path = project.sheet(BASE + ["delta:x"], [["scripts/ok.py", CFG, "1", "1"]])
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, path, "3"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        started = time.time()
        proc = project.sheetrun("run", path, check=0)
        waited = time.time() - started
    finally:
        holder.wait(30)
    assert waited > 1.5                                     # it did wait for the lock
    said = [line for line in proc.stderr.splitlines() if "waiting for the lock" in line]
    assert len(said) == 1, proc.stderr
    assert f"held by pid {holder.pid}" in said[0] and " since " in said[0]
    assert project.read()[0]["status"] == "Completed"


def _run_saving_a_pre_run_copy(project, moment: str, gate: str) -> str:
    """``sheetrun run`` on the sheet while an editor that opened it before the run saves that copy
    at ``moment``: once the rows are claimed, while they run, or once the run has ended. Returns
    the copy."""
    path = os.path.join(project.sheets, "sheet.csv")
    pre = open(path, encoding="utf-8").read()
    proc = project.popen("run", path, "--jobs", "3")
    try:
        if moment == "claimed":
            wait_for(lambda: "Submitted" in open(path).read() or "Running" in open(path).read(), what="a claim")
            save(path, pre, "rename")
        elif moment == "running":
            wait_for(lambda: [r.get("progress") for r in project.read()] == ["1"] * 3, timeout=60,
                     what="every row to report")
            save(path, pre, "rename")
        open(gate, "w").close()
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    finally:
        open(gate, "w").close()
        proc.kill()
    if moment == "ended":
        save(path, pre, "rename")
    return pre


@pytest.mark.parametrize("before", ["new sheet", "rerun"])
@pytest.mark.parametrize("moment", ["claimed", "running", "ended"])
def test_a_copy_from_before_the_run_saved_at_any_moment_loses_no_result(project, tmp_path, moment, before):
    """An editor opened the sheet before ``sheetrun run`` and saves it at some moment of the run or
    after it: whatever the copy lost — the runner's columns, claims, statuses, metrics — ``run`` does
    not run those rows again behind the person's back, and after ``sync`` every row shows its run."""
    gate = str(tmp_path / "gate")
    path = project.sheet(BASE + ["delta:name", "delta:gate", "notes"],
                         [["scripts/wait.py", CFG, "1", f"r{i}", gate, ""] for i in range(3)])
    if before == "rerun":                       # the rows have run before and are set to run again
        open(gate, "w").close()
        project.sheetrun("run", path, check=0)
        os.unlink(gate)
        text = open(path).read().replace(",0,", ",1,")
        save(path, text, "rename")
        assert [r["whether_to_run"] for r in project.read()] == ["1"] * 3
    _run_saving_a_pre_run_copy(project, moment, gate)
    newest = {r.run_id: r for r in _index(project)}
    folders_before = set(os.listdir(os.path.join(project.root, "experiments", "sheet")))
    again = project.sheetrun("run", path)                  # the copy says "run them": not behind the back
    lost = [r for r in project.read() if r.get("run_id") not in newest or r.get("status") != "Completed"]
    if moment != "ended":                  # saved while the runner was there: the runner itself put it right
        assert not lost, lost
    if lost:
        assert again.returncode == 1 and "has a finished run not in the sheet" in again.stderr, again.stderr
    assert set(os.listdir(os.path.join(project.root, "experiments", "sheet"))) == folders_before
    project.sheetrun("sync", path, check=0)
    rows = project.read()
    assert [r["status"] for r in rows] == ["Completed"] * 3 and [r["progress"] for r in rows] == ["2"] * 3
    assert [r["whether_to_run"] for r in rows] == ["0"] * 3
    latest = {}
    for run in _index(project):                   # each row shows the newest of its runs
        latest[run.row] = run.run_id
    assert [r["run_id"] for r in rows] == [latest[n] for n in (1, 2, 3)]
    assert project.sheetrun("sync", path, check=0).stdout.strip().startswith("no row")   # settled for good


def _index(project):
    from runner.core.runindex import RunIndex

    return RunIndex(os.path.join(project.root, "experiments", "sheet")).runs(
        os.path.realpath(os.path.join(project.sheets, "sheet.csv")))


def test_reset_voids_a_run_the_sheet_lost_and_run_starts_afresh(project, tmp_path):
    gate = str(tmp_path / "gate")
    path = project.sheet(BASE + ["delta:name", "delta:gate"], [["scripts/wait.py", CFG, "1", "a", gate]])
    _run_saving_a_pre_run_copy(project, "ended", gate)
    assert project.read()[0].get("status", "") == ""
    dry = project.sheetrun("run", path, "--dry-run")
    assert "has a finished run not in the sheet (Completed): sync first" in dry.stdout
    project.sheetrun("reset", path, "--rows", "1", check=0)
    project.sheetrun("run", path, check=0)                        # afresh: a second run folder
    assert len(_index(project)) == 2 and project.read()[0]["run_id"] == _index(project)[-1].run_id
    project.sheetrun("reset", path, check=0)
    project.sheetrun("sync", path, check=0)                       # a reset run is never put back
    assert project.read()[0]["run_id"] == "" and project.read()[0]["whether_to_run"] == "1"


def test_the_runner_keeps_checking_after_its_last_write_even_when_nobody_saved_during_the_run(project):
    """Nobody touches the sheet during the run; an editor opened before it saves its copy the moment
    the rows show Completed (the runner's last write). The runner, still checking, writes its cells
    again and says how to repair a later save."""
    path = project.sheet(BASE + ["delta:x"], [["scripts/ok.py", CFG, "1", str(i)] for i in range(3)])
    pre = open(path, encoding="utf-8").read()
    saved = {}

    def editor():
        deadline = time.time() + 120
        while time.time() < deadline and not all_completed(open(path, encoding="utf-8").read()):
            time.sleep(0.001)
        save(path, pre, "rename")
        saved["at"] = time.time()

    thread = threading.Thread(target=editor, daemon=True)
    thread.start()
    proc = project.sheetrun("run", path, check=0)
    thread.join(130)
    ended = launch_record(project)["ended"]
    if saved["at"] < ended - 0.05:             # saved while the runner was still checking (nearly always)
        assert [r["status"] for r in project.read()] == ["Completed"] * 3
        assert "was saved over" in proc.stderr and "sheetrun sync" in proc.stderr
    project.sheetrun("sync", path, check=0)
    assert [r["status"] for r in project.read()] == ["Completed"] * 3
