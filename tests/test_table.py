"""The CSV table: RFC 4180 parsing equal to Python's csv module, byte-exact round trips."""
import csv
import io

import pytest
from hypothesis import given, settings, strategies as st

from runner.sheet.table import SheetFormatError, Table, quote

cell = st.text(alphabet=st.sampled_from(list('ab ,"\n\r\t1é€😀=\'')), max_size=8)


def csv_text(rows, terminator="\r\n"):
    buf = io.StringIO()
    csv.writer(buf, lineterminator=terminator).writerows(rows)
    return buf.getvalue()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(cell, min_size=3, max_size=3), min_size=1, max_size=6),
       st.sampled_from(["\n", "\r\n"]))
def test_parse_matches_csv_module_and_round_trips(rows, terminator):
    rows = [["h1", "h2", "h3"]] + rows
    text = csv_text(rows, terminator)
    table = Table(text)
    expected = [r for r in csv.reader(io.StringIO(text, newline="")) if r]
    assert [table.header] + [[row.get(h) for h in table.header] for row in table.rows] == \
        [r + [""] * (3 - len(r)) for r in expected]
    assert table.text() == text


def test_cells_kept_exactly_as_typed():
    text = 'a,b,c,d\n007,1e-3,2026-11-24,"  spaced , quoted "\n"x""y",=SUM(A1),ünï,"multi\nline"\n'
    table = Table(text)
    assert table.rows[0].get("a") == "007"
    assert table.rows[0].get("b") == "1e-3"
    assert table.rows[1].get("b") == "=SUM(A1)"
    assert table.rows[1].get("d") == "multi\nline"
    assert table.text() == text


def test_setting_one_cell_rewrites_only_that_cell():
    text = 'a,b,c\n"1",  2 ,"x"\n4,5,6\n'
    table = Table(text)
    table.rows[0].set("c", "new, value")
    assert table.text() == 'a,b,c\n"1",  2 ,"new, value"\n4,5,6\n'


def test_new_column_pads_every_row_and_keeps_blank_lines_and_crlf():
    text = "a,b\r\n1,2\r\n\r\n3,4\r\n"
    table = Table(text)
    table.rows[1].set("metric", "0.5")
    assert table.text() == "a,b,metric\r\n1,2,\r\n\r\n3,4,0.5\r\n"


def test_bom_and_missing_final_newline_preserved():
    text = "\ufeffa,b\n1,2"
    table = Table(text)
    assert table.header == ["a", "b"]
    assert table.text() == text
    table.rows[0].set("b", "3")
    assert table.text() == "\ufeffa,b\n1,3"


def test_short_rows_are_padded_only_when_touched():
    table = Table("a,b,c\n1\n2,3,4\n")
    assert table.rows[0].get("c") == ""
    assert table.text() == "a,b,c\n1\n2,3,4\n"
    table.rows[0].set("c", "x")
    assert table.text() == "a,b,c\n1,,x\n2,3,4\n"


def test_find_by_column_value():
    table = Table("run_id,v\nr1,a\nr2,b\n")
    assert table.find("run_id", "r2").get("v") == "b"
    assert table.find("run_id", "r3") is None


@pytest.mark.parametrize("text", ["", "\n", 'a,b\n"unterminated,1\n'])
def test_malformed_sheets_are_refused(text):
    with pytest.raises(SheetFormatError):
        Table(text)


def test_a_persons_column_named_twice_is_kept_and_a_sheetrun_column_named_twice_refused():
    table = Table("a,b,a\n1,2,3\n")
    assert table.rows[0].get("a") == "1" and table.duplicates == {"a": [0, 2]}
    assert table.text() == "a,b,a\n1,2,3\n"
    with pytest.raises(SheetFormatError, match=r"'status' appears twice in the header \(columns A and C\).*rename"):
        Table("status,b,status\n1,2,3\n")


def test_quote_matches_csv_writer():
    for value in ["plain", "a,b", 'say "hi"', "two\nlines", "cr\rhere", " x "]:
        assert quote(value) + "\r\n" == csv_text([[value]], "\r\n")


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_semicolon_and_tab_sheets_are_read_and_written_back_with_their_separator(delimiter):
    d = delimiter
    text = (f"path_to_main{d}whether_to_run{d}notes\r\n"
            f"a.py{d}1{d}\"has {d} inside, and a comma\"\r\n"
            f"b.py{d}0{d}plain, with a comma\r\n")
    table = Table(text)
    assert table.delimiter == d and table.columns == ["path_to_main", "whether_to_run", "notes"]
    assert table.rows[0].get("notes") == f"has {d} inside, and a comma"
    assert table.rows[1].get("notes") == "plain, with a comma"
    assert table.text() == text                                   # untouched: byte for byte
    table.rows[1].set("status", f"x{d}y")
    assert table.text().splitlines()[0] == f"path_to_main{d}whether_to_run{d}notes{d}status"
    assert table.text().splitlines()[2] == f"b.py{d}0{d}plain, with a comma{d}\"x{d}y\""
    assert Table(table.text()).rows[1].get("status") == f"x{d}y"


def _stnd_csv(rows, lineterminator="\r\n"):
    """A sheet as stnd writes it: write_into_csv_with_column_names' csv.writer settings."""
    buf = io.StringIO()
    csv.writer(buf, delimiter=",", quotechar='"', quoting=csv.QUOTE_NONE, escapechar="\\", doublequote=True,
               lineterminator=lineterminator).writerows(rows)
    return buf.getvalue()


def _stnd_read(text):
    """...and as stnd reads it back (read_csv_as_dict's settings)."""
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=",", quotechar='"', quoting=csv.QUOTE_NONE,
                           escapechar="\\", doublequote=True))


def test_a_sheet_stnd_wrote_is_read_as_stnd_reads_it_and_stays_readable_by_stnd():
    rows = [["path_to_main", "delta:tags", "notes", "whether_to_run"],
            ["a.py", "[a b]", 'x, y "quoted" \\ path', "1"],
            ["b.py", "?", "two\nlines", "0"]]
    text = _stnd_csv(rows)
    table = Table(text)
    assert table.escaped
    assert [[r.get(c) for c in rows[0]] for r in table.rows] == rows[1:]    # not split at "\,"
    assert table.text() == text                                            # untouched: byte for byte
    table.rows[0].set("status", "done, with a comma")
    table.rows[1].set("error", 'a "quote" and \\ a backslash')
    assert _stnd_read(table.text()) == [rows[0] + ["status", "error"],
                                        rows[1] + ["done, with a comma", ""],
                                        rows[2] + ["", 'a "quote" and \\ a backslash']]


def test_an_ordinary_sheet_with_backslashes_is_not_mistaken_for_stnds():
    text = 'path_to_main,notes\nC:\\data\\x.py,"a, b"\n'
    table = Table(text)
    assert not table.escaped and table.rows[0].get("path_to_main") == "C:\\data\\x.py"
