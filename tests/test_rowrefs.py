"""Rows named in --rows and depends_on: numbers, ranges, run ids and names, names with spaces too."""
import pytest
from conftest import BASE, CFG

from runner.core.errors import RowError
from runner.core.rowrefs import RowFilter, SelectorError, split
from runner.sheet import Table


def test_split_reads_numbers_ranges_quotes_and_whole_names():
    assert split("1, 3 5-8") == ["1", "3", "5-8"]
    assert split('"eval plain" 2') == ["eval plain", "2"]
    assert split("'eval plain',2") == ["eval plain", "2"]
    assert split("eval plain") == ["eval", "plain"]                       # not knowing the names
    assert split("eval plain", {"eval plain"}) == ["eval plain"]          # a whole group is a name
    assert split("eval plain, 4", {"eval plain"}) == ["eval plain", "4"]
    assert split("eval  plain", {"eval plain"}) == ["eval plain"]         # runs of spaces are one
    assert split("first second", {"first", "second"}) == ["first", "second"]
    assert split("") == [] and split(" , ") == []
    with pytest.raises(SelectorError, match="quot"):
        split('"eval plain')


def _table(names):
    header = "path_to_main,path_to_default_config,whether_to_run,name\n"
    return Table(header + "".join(f"s.py,c.yaml,1,{n}\n" for n in names))


def test_row_filter_takes_names_with_spaces_and_says_how_to_quote():
    table = _table(["backbone", "eval plain", "eval ood_gen", "first run"])
    for spec in ("eval plain", '"eval plain"', "'eval plain', 1", "eval plain,first run", "2"):
        rows = RowFilter.parse(spec)
        rows.check(table)
        assert 2 in [r.number for r in table.rows if r in rows], spec
    rows = RowFilter.parse('"eval plain" backbone 4')
    rows.check(table)
    assert [r.number for r in table.rows if r in rows] == [1, 2, 4]
    with pytest.raises(RowError) as info:
        RowFilter.parse("eval plain backbone").check(table)     # no group is a name: say how to write one
    assert "'eval'" in str(info.value) and '"eval plain"' in str(info.value)


def test_depends_on_and_rows_take_names_with_spaces_end_to_end(project):
    path = project.sheet(BASE + ["name", "depends_on", "delta:x"],
                         [["scripts/ok.py", CFG, "1", "first run", "", "1"],
                          ["scripts/ok.py", CFG, "1", "eval plain", "first run", "2"],
                          ["scripts/ok.py", CFG, "1", "eval two", '"first run" , eval plain', "3"],
                          ["scripts/ok.py", CFG, "1", "other", "", "4"]])
    out = project.sheetrun("run", path, "--rows", "first run, eval plain,'eval two'", check=0)
    rows = project.read()
    assert [r["status"] for r in rows] == ["Completed", "Completed", "Completed", ""], out.stderr
    hist = project.sheetrun("history", path, "eval plain", check=0)
    assert "row 2: 1 run(s)" in hist.stdout
    plot = project.sheetrun("plot", path, "score", "--rows", "eval plain", "--out",
                            project.root + "/score.png", check=0)
    assert "1 curve(s) of score" in plot.stdout
    bad = project.sheetrun("run", path, "--rows", "eval plain other thing", check=2)
    assert "'thing'" in bad.stderr and "quotes" in bad.stderr
