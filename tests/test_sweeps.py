"""Sweeps: ``{a | b}`` and ``{<start end step is_log>}`` cells, expanded into rows as stnd's
``--expand`` does (stnd/utility/utils.py ``expand_csv``), but in place in the sheet itself."""
import pytest
from conftest import BASE, CFG

from runner.core.cells import CellError, sweep_values
from runner.launch.sweeps import combinations


@pytest.mark.parametrize("cell,values", [
    ("{0.1 | 0.01 | 0.001}", ["0.1", "0.01", "0.001"]),
    ("  {a | b}  ", ["a", "b"]),
    ("{<1 5 1 False>}", ["1", "2", "3", "4"]),
    ("{<0.001 1 10 True>}", ["0.001", "0.01", "0.1"]),
    ("{<0 1 0.1 0>}", ["0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"]),   # stnd: ...0.9999999999999999
    ("{<2 32 2 1>}", ["2", "4", "8", "16"]),
    ("{lr: 0.1}", None),                  # a YAML mapping, not a sweep of one value
    ("{}", None), ("0.1", None), ("[a, b]", None),
])
def test_sweep_values(cell, values):
    assert sweep_values(cell) == values


@pytest.mark.parametrize("cell,message", [
    ("{<1 5 1>}", "four values"), ("{<5 1 -1 False>}", "must increase"), ("{<1 5 1 True>}", "must increase"),
    ("{<a 5 1 False>}", "must be numbers"), ("{a |  | b}", "a value between"),
])
def test_bad_sweeps_are_named(cell, message):
    with pytest.raises(CellError, match=message):
        sweep_values(cell)


def test_combinations_are_the_cartesian_product_in_column_order():
    cells = {"delta:lr": "{0.1 | 0.01}", "delta:seed": "{<0 3 1 False>}", "delta:name": "run", "status": "{x | y}"}
    combos = combinations(cells)
    assert len(combos) == 6                             # the runner's own cells are never swept
    assert combos[0] == {"delta:lr": "0.1", "delta:seed": "0"}
    assert combos[-1] == {"delta:lr": "0.01", "delta:seed": "2"}


def test_expand_in_place_below_the_original_which_stays_as_the_record(project):
    header = BASE + ["delta:name", "delta:x", "delta:lr", "notes"]
    path = project.sheet(header, [
        ["scripts/ok.py", CFG, "1", "first", "1", "0.1", "keep me"],
        ["scripts/ok.py", CFG, "1", "sw", "{1 | 2 | 3}", "{0.1 | 0.01}", "my sweep"],
        ["scripts/ok.py", CFG, "0", "unselected", "{4 | 5}", "0.1", ""],
        ["scripts/ok.py", CFG, "1", "last", "7", "0.1", ""],
    ])
    before = open(path).read()
    shown = project.sheetrun("expand", path, "--dry-run").stdout
    assert "row 2 would become 6 rows" in shown and "delta:x=3  delta:lr=0.01" in shown
    assert open(path).read() == before                  # a dry run changes nothing
    out = project.sheetrun("expand", path).stdout
    assert "row 2: a sweep of 6 rows, now rows 3-8" in out
    rows = project.read()
    assert [r["delta:name"] for r in rows] == ["first", "sw"] + ["sw"] * 6 + ["unselected", "last"]
    original, made = rows[1], rows[2:8]
    assert original["whether_to_run"] == "0" and original["sweep"].endswith(": expanded into rows 3-8")
    tag = original["sweep"].split(":")[0]
    assert [r["sweep"] for r in made] == [f"{tag} {k}/6" for k in range(1, 7)]
    assert [(r["delta:x"], r["delta:lr"]) for r in made] == [
        ("1", "0.1"), ("1", "0.01"), ("2", "0.1"), ("2", "0.01"), ("3", "0.1"), ("3", "0.01")]
    assert all(r["notes"] == "my sweep" and r["whether_to_run"] == "1" for r in made)
    assert rows[8]["delta:x"] == "{4 | 5}"              # not selected: left as it was
    assert project.sheetrun("expand", path).stdout.startswith("no selected row sweeps")   # nothing left to do


def test_a_named_sweep_rows_get_unique_names_that_depends_on_can_use(project):
    path = project.sheet(BASE + ["name", "depends_on", "delta:x"], [
        ["scripts/ok.py", CFG, "1", "base", "", "{1 | 2}"],
        ["scripts/ok.py", CFG, "1", "after", "base/2", "5"],
    ])
    project.sheetrun("run", path, "--expand", check=0)
    rows = project.read()
    assert [r["name"] for r in rows] == ["base", "base/1", "base/2", "after"]
    assert [r["status"] for r in rows] == ["", "Completed", "Completed", "Completed"]


def test_run_expand_runs_each_combination_once_and_keeps_rows_selection(project):
    header = BASE + ["delta:name", "delta:x"]
    path = project.sheet(header, [
        ["scripts/ok.py", CFG, "1", "other", "{5 | 6}"],
        ["scripts/ok.py", CFG, "1", "seeds", "{<1 4 1 False>}"],
        ["scripts/ok.py", CFG, "1", "after", "9"],
    ])
    shown = project.sheetrun("run", path, "--expand", "--dry-run", "--rows", "2").stdout
    assert "row 2 would become 3 rows" in shown and "row 1 would" not in shown
    project.sheetrun("run", path, "--expand", "--rows", "2,3", check=0)
    rows = project.read()
    assert [r["delta:name"] for r in rows] == ["other", "seeds", "seeds", "seeds", "seeds", "after"]
    assert rows[0]["delta:x"] == "{5 | 6}" and rows[0]["status"] == ""      # not named by --rows
    assert rows[1]["status"] == "" and rows[1]["whether_to_run"] == "0"      # the sweep's record
    assert [r["score"] for r in rows[2:5]] == ["2", "4", "6"]
    assert all(r["status"] == "Completed" for r in rows[2:])                 # "after" moved from 3 to 6
    assert len({r["run_folder"] for r in rows[2:]}) == 4
    project.sheetrun("run", path, "--expand", check=0)                       # again: only row 1 is new
    rows = project.read()
    assert len(rows) == 8 and [r["score"] for r in rows[1:3]] == ["10", "12"]
    assert sum(r["status"] == "Completed" for r in rows) == 6


def test_a_bad_sweep_names_its_row_and_changes_nothing(project):
    path = project.sheet(BASE + ["delta:x"], [["scripts/ok.py", CFG, "1", "{1 | 2}"],
                                             ["scripts/ok.py", CFG, "1", "{<1 5>}"]])
    before = open(path).read()
    proc = project.sheetrun("expand", path, check=None)
    assert proc.returncode != 0 and "row 2" in proc.stderr and "four values" in proc.stderr
    assert open(path).read() == before
