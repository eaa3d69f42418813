"""The launch's ledger: cells an older copy of the sheet reverted are written again; cells
changed on purpose (a person, ``sheetrun cancel``, ``sheetrun reset``) are left alone."""
from runner.core import columns as C
from runner.launch.ledger import Ledger
from runner.sheet import Table

HEADER = "path_to_main,delta:x,whether_to_run,run_id,status,run_folder,score,notes\n"
BEFORE_CLAIM = HEADER + "a.py,1,1,,,,,\nb.py,2,1,,,,,\n"


def claim(ledger: Ledger, table: Table, number: int, run_id: str) -> None:
    row = table.find_row(number)
    after = {C.RUN_ID: run_id, C.STATUS: "Submitted", C.RUN_FOLDER: f"./runs/{run_id}"}
    before = {c: row.get(c) for c in after}
    for c, v in after.items():
        row.set(c, v)
    ledger.claimed(run_id, row, before, after)


def write(ledger: Ledger, table: Table, run_id: str, values: dict) -> None:
    row = table.find(C.RUN_ID, run_id)
    before = {c: row.get(c) for c in values}
    for c, v in values.items():
        row.set(c, v)
    ledger.wrote(run_id, before, values)


def completed_sheet() -> tuple[Ledger, Table, list[str]]:
    """Row 1 claimed, Running, then Completed with a score; returns the texts at each step."""
    ledger, table = Ledger(), Table(BEFORE_CLAIM)
    texts = [table.text()]
    claim(ledger, table, 1, "r1")
    texts.append(table.text())
    write(ledger, table, "r1", {C.STATUS: "Running"})
    texts.append(table.text())
    write(ledger, table, "r1", {C.STATUS: "Completed", "score": "0.9", C.WHETHER_TO_RUN: "0"})
    texts.append(table.text())
    return ledger, table, texts


def test_every_older_copy_of_a_row_is_brought_back_to_the_last_write():
    ledger, table, texts = completed_sheet()
    for older in texts[1:-1]:
        saved = Table(older)                         # what an editor saved over the runner's writes
        assert ledger.restore(saved) > 0
        assert saved.text() == texts[-1], older
    assert ledger.restore(Table(texts[-1])) == 0       # nothing reverted: nothing written


def test_a_value_a_person_typed_is_kept():
    ledger, _, texts = completed_sheet()
    saved = Table(texts[-1])
    row = saved.find_row(1)
    row.set("score", "0.95 (checked by hand)")
    row.set(C.STATUS, "Completed, see notes")
    row.set("notes", "good")
    assert ledger.restore(saved) == 0
    assert row.get("score") == "0.95 (checked by hand)" and row.get(C.STATUS) == "Completed, see notes"


def test_whether_to_run_set_to_1_by_a_person_is_kept_but_comes_back_with_a_reverted_row():
    ledger, _, texts = completed_sheet()
    rerun = Table(texts[-1])
    rerun.find_row(1).set(C.WHETHER_TO_RUN, "1")   # "run it again": the documented way to rerun
    assert ledger.restore(rerun) == 0 and rerun.find_row(1).get(C.WHETHER_TO_RUN) == "1"
    stale = Table(texts[2])                          # the whole row as it was while Running
    assert stale.find_row(1).get(C.WHETHER_TO_RUN) == "1"
    ledger.restore(stale)
    assert stale.find_row(1).get(C.WHETHER_TO_RUN) == "0"


def test_an_undone_claim_is_found_by_its_inputs_only_while_the_run_is_active():
    ledger, table = Ledger(), Table(BEFORE_CLAIM)
    claim(ledger, table, 2, "r2")
    write(ledger, table, "r2", {C.STATUS: "Running"})
    stale = Table(BEFORE_CLAIM.replace("a.py,1,1", "a.py,1,0"))   # an older copy, row 1 edited by a person
    assert ledger.restore(stale) == 3
    assert stale.find_row(2).get(C.RUN_ID) == "r2" and stale.find_row(2).get(C.STATUS) == "Running"
    assert stale.find_row(1).get(C.RUN_ID) == "" and stale.find_row(1).get(C.WHETHER_TO_RUN) == "0"
    write(ledger, table, "r2", {C.STATUS: "Completed"})
    reset = Table(BEFORE_CLAIM)                      # `sheetrun reset` after it ended looks the same
    assert ledger.restore(reset) == 0 and reset.text() == BEFORE_CLAIM


def test_an_undone_claim_of_one_of_two_identical_rows_is_not_guessed():
    ledger, table = Ledger(), Table(HEADER + "a.py,1,1,,,,,\na.py,1,1,,,,,\n")
    claim(ledger, table, 1, "r1")
    stale = Table(HEADER + "a.py,1,1,,,,,\na.py,1,1,,,,,\n")
    assert ledger.restore(stale) == 0


def test_a_column_a_person_deleted_is_not_added_back():
    ledger, _, texts = completed_sheet()
    without_score = Table("path_to_main,delta:x,whether_to_run,run_id,status,run_folder,notes\n"
                          "a.py,1,1,r1,Running,./runs/r1,\nb.py,2,1,,,,\n")
    assert "score" not in without_score.index
    ledger.restore(without_score)
    assert "score" not in without_score.index
    assert without_score.find_row(1).get(C.STATUS) == "Completed"


def test_a_column_the_launch_added_comes_back_when_an_older_copy_dropped_it():
    """An editor's copy read before the launch added a metric column, saved after: the rows' cells are
    reverted and the column is gone — all one older copy, so the column comes back with its values.
    The same column deleted by a person from a current copy (nothing reverted) stays deleted."""
    ledger, table = Ledger(), Table("path_to_main,delta:x,whether_to_run,run_id,status,run_folder,notes\n"
                                    "a.py,1,1,,,,\nb.py,2,1,,,,\n")
    claim(ledger, table, 1, "r1")
    claimed = table.text()
    table.ensure_column("score")
    ledger.columns_added({"score"})
    write(ledger, table, "r1", {C.STATUS: "Completed", "score": "0.9", C.WHETHER_TO_RUN: "0"})
    stale = Table(claimed)                             # read after the claim, before the score existed
    assert "score" not in stale.index
    assert ledger.restore(stale) > 0
    assert stale.find_row(1).get("score") == "0.9" and stale.find_row(1).get(C.STATUS) == "Completed"
    lines = [line.split(",") for line in table.text().splitlines()]
    at = lines[0].index("score")
    deleted = Table("\n".join(",".join(c for k, c in enumerate(line) if k != at) for line in lines) + "\n")
    assert "score" not in deleted.index and deleted.find_row(1).get(C.STATUS) == "Completed"
    assert ledger.restore(deleted) == 0 and "score" not in deleted.index     # a person's deletion: kept
