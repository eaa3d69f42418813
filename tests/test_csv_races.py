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

from conftest import BASE, CFG
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


@contextlib.contextmanager
def editor_saving(path: str, every_s: float, stale_s: float = 0.0):
    """An editor saving a note into row 1 every ``every_s`` while the block runs, each time from
    the sheet as it read it ``stale_s`` earlier; yields the notes it saved, in order."""
    stop = threading.Event()
    saves = []

    def editor():
        k = 0
        while not stop.is_set():
            try:
                text = open(path, encoding="utf-8").read()
            except OSError:
                continue
            time.sleep(stale_s)                  # the copy gets older while the person types
            save_with_note(path, text, f"note {k}")
            saves.append(f"note {k}")
            k += 1
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
        time.sleep(0.3)
    rows = project.read()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["status"] for r in rows] == ["Completed"] * n
    assert [r["score"] for r in rows] == [str(2 * i) for i in range(n)]
    assert rows[0]["notes"] == saves[-1] and len(saves) > 20            # the editor's last save is kept


def test_an_editor_saving_older_copies_over_the_runs_writes_is_undone(project):
    """An editor that saves the sheet as it read it 0.1 s earlier (a person's note added) reverts
    the runner's writes made in between — claims, Running, Completed, scores. The runner writes
    them again: every row ends Completed with its score, and the person's last note is kept."""
    n = 30
    project.write("scripts/slow_ok.py", "import sys, time, yaml\nfrom runner import report\n"
                  "cfg = yaml.safe_load(open(sys.argv[2]))\nreport(started=1)\ntime.sleep(0.3)\n"
                  "report(score=cfg['x'] * 2)\n")
    path = project.sheet(BASE + ["delta:x", "notes"], [["scripts/slow_ok.py", CFG, "1", str(i), ""] for i in range(n)])
    with editor_saving(path, every_s=0.3, stale_s=0.1) as saves:
        proc = project.sheetrun("run", path, "--jobs", "2", timeout=300)
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
