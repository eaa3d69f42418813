"""An in-memory results table that round-trips its CSV text byte for byte.

Every field keeps the exact text it was read from (quotes, spacing, ``007``,
``1e-3``, dates...). Serialising writes that text back unchanged; only cells
the runner sets are re-encoded. A sheet that nobody changed therefore
serialises to exactly the text it was parsed from, and a runner update
changes exactly the cells it owns.

Parsing follows RFC 4180 as Python's ``csv`` module reads it (default
dialect): ``"`` quoting with ``""`` as an escaped quote, records ended by
``\\n``, ``\\r\\n`` or ``\\r`` outside quotes. Fields are separated by commas,
or by semicolons or tabs when the header uses those instead (spreadsheets
in many locales save "CSV" with semicolons); the table is written back with
the separator it was read with.

stnd writes its sheets without quotes, escaping with a backslash instead
(``QUOTE_NONE``, ``escapechar='\\'``: ``a\\,b`` is the cell ``a,b``). A sheet in
that form (backslash escapes, no quoted field) is read the way stnd reads it
and its cells are written back escaped the same way, so stnd can still read it.
"""
from __future__ import annotations

import re
from typing import Iterator

from runner.core.columns import is_reserved
from runner.core.credentials import redact
from runner.core.errors import RowError, SheetrunError

_QUOTED = re.compile(r'"((?:[^"]|"")*)"', re.DOTALL)
BOM = "\ufeff"
DELIMITERS = (",", ";", "\t")


def _unquoted(delimiter: str) -> re.Pattern:
    return re.compile(f"[^{re.escape(delimiter)}\\r\\n]*")


def _needs_quotes(delimiter: str) -> re.Pattern:
    return re.compile(f'[{re.escape(delimiter)}"\\r\\n]')


_UNQUOTED = {d: _unquoted(d) for d in DELIMITERS}
_NEEDS_QUOTES = {d: _needs_quotes(d) for d in DELIMITERS}
_ESCAPED_FIELD = {d: re.compile(f"(?:[^{re.escape(d)}\\\\\\r\\n]|\\\\.)*", re.DOTALL) for d in DELIMITERS}
_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)
_STND_ESCAPE = re.compile(r'\\[,;\t"\\\r\n]')
_QUOTED_START = re.compile(r'(?:^|[,;\t])"', re.MULTILINE)


def detect_escaped(text: str) -> bool:
    """Is this a sheet stnd wrote: backslash escapes (``\\,``, ``\\"``), and no quoted field?"""
    return bool(_STND_ESCAPE.search(text)) and not _QUOTED_START.search(text)


def detect_delimiter(text: str) -> str:
    """The separator of the header line: a comma, unless it has none and has semicolons or tabs."""
    header = re.sub(r'"(?:[^"]|"")*"', "", text.lstrip(BOM).split("\n", 1)[0])   # quoted text aside
    if "," in header:
        return ","
    counts = {d: header.count(d) for d in (";", "\t")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _letters(index: int) -> str:
    """A column's letters as a spreadsheet shows them (0 -> A, 26 -> AA)."""
    out, index = "", index + 1
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(65 + rem) + out
    return out


class SheetFormatError(SheetrunError, ValueError):
    """The sheet's text is not a CSV table the runner can safely rewrite."""


class RaggedRowError(RowError):
    """A row has more fields than the header: the runner cannot tell which cell is which."""


def quote(value: str, delimiter: str = ",", escaped: bool = False) -> str:
    """Encode one cell value the way ``csv.writer`` does: QUOTE_MINIMAL, or for a sheet in
    stnd's form QUOTE_NONE with backslash escapes."""
    if escaped:
        return re.sub(f'([{re.escape(delimiter)}"\\\\\\r\\n])', r"\\\1", value)
    if _NEEDS_QUOTES[delimiter].search(value):
        return '"' + value.replace('"', '""') + '"'
    return value


class Record:
    """One CSV record: decoded values, their source text, and its line ending."""

    __slots__ = ("values", "raws", "terminator", "_body")

    def __init__(self, values: list[str], raws: list[str | None], terminator: str):
        self.values = values
        self.raws = raws            # None where the runner set the value
        self.terminator = terminator
        self._body: tuple | None = None     # ((delimiter, escaped), text): kept until a cell changes

    def touched(self) -> None:
        """A value or its source text changed: the record's text is made again."""
        self._body = None

    @property
    def is_blank(self) -> bool:
        return self.raws == [""]

    def text(self, delimiter: str = ",", escaped: bool = False) -> str:
        key = (delimiter, escaped)
        if self._body is None or self._body[0] != key:      # a sheet's unchanged rows: made once
            parts = (raw if raw is not None else quote(val, delimiter, escaped)
                     for val, raw in zip(self.values, self.raws))
            self._body = (key, delimiter.join(parts))
        return self._body[1] + self.terminator


def parse_records(text: str, delimiter: str = ",", escaped: bool = False) -> list[Record]:
    """Split CSV text into records, keeping each field's raw text."""
    unquoted = _ESCAPED_FIELD[delimiter] if escaped else _UNQUOTED[delimiter]
    records: list[Record] = []
    pos, end = 0, len(text)
    while pos < end:
        values: list[str] = []
        raws: list[str] = []
        while True:
            start = pos
            if escaped:
                m = unquoted.match(text, pos)
                pos = m.end()
                value = _UNESCAPE.sub(r"\1", m.group(0))
            elif pos < end and text[pos] == '"':
                m = _QUOTED.match(text, pos)
                if m is None:
                    line = text.count("\n", 0, pos) + 1
                    raise SheetFormatError(f"unterminated quoted field starting on line {line}")
                value = m.group(1).replace('""', '"')
                pos = m.end()
                tail = unquoted.match(text, pos)    # csv tolerates text after the closing quote
                value += tail.group(0)
                pos = tail.end()
            else:
                m = unquoted.match(text, pos)
                value = m.group(0)
                pos = m.end()
            values.append(value)
            raws.append(text[start:pos])
            if pos < end and text[pos] == delimiter:
                pos += 1
                continue
            break
        if text.startswith("\r\n", pos):
            terminator = "\r\n"
        elif pos < end:
            terminator = text[pos]          # "\n" or "\r"
        else:
            terminator = ""
        pos += len(terminator)
        records.append(Record(values, raws, terminator))
    return records


class Row:
    """A data row of a :class:`Table`, addressed by column name."""

    __slots__ = ("table", "record", "number")

    def __init__(self, table: "Table", record: Record, number: int):
        self.table = table
        self.record = record
        self.number = number            # 1-based among data rows, header excluded

    @property
    def ragged(self) -> bool:
        """More fields than the header names (an unquoted comma, a pasted line...)."""
        return len(self.record.values) > len(self.table.header)

    def ragged_problem(self) -> str:
        return (f"row {self.number} has {len(self.record.values)} fields but the header has "
                f"{len(self.table.header)} (an unquoted comma?); fix the row; nothing was written to it")

    def get(self, column: str, default: str = "") -> str:
        idx = self.table.index.get(column)
        if idx is None or idx >= len(self.record.values):
            return default
        return self.record.values[idx]

    def set(self, column: str, value: str) -> None:
        """Set a cell, adding the column to the table if it is new.

        A ragged row is never written: which of its fields belongs to which
        column is unknown (:class:`RaggedRowError`).
        """
        if self.ragged:
            raise RaggedRowError(self.ragged_problem())
        value = redact("" if value is None else str(value))     # never a credential into a sheet
        idx = self.table.ensure_column(column)
        rec = self.record
        if idx < len(rec.values) and rec.values[idx] == value:
            return
        self.table._pad(rec)
        rec.values[idx] = value
        rec.raws[idx] = None
        rec.touched()
        self.table.changed = True

    def as_dict(self) -> dict[str, str]:
        return {col: self.get(col) for col in self.table.index}


class Table:
    """A parsed sheet: a header record, data rows, and blank lines kept in place."""

    def __init__(self, text: str):
        self.bom = text.startswith(BOM)
        if self.bom:
            text = text[1:]
        self.delimiter = detect_delimiter(text)
        self.escaped = detect_escaped(text)
        self.records = parse_records(text, self.delimiter, self.escaped)
        if not self.records or self.records[0].is_blank:
            raise SheetFormatError("the sheet has no header row")
        self.header_record = self.records[0]
        self.header: list[str] = self.header_record.values
        # Columns are found by their name without surrounding spaces (" delta:x" is delta:x);
        # a header cell left blank names no column. A person's column named twice is read (and
        # kept) as the first; one sheetrun reads or writes cannot be: which one is meant is unknown.
        self.index: dict[str, int] = {}
        self.duplicates: dict[str, list[int]] = {}       # a person's column named more than once
        for i, name in enumerate(self.header):
            key = name.strip()
            if not key:
                continue
            if key in self.index:
                where = [self.index[key]] + self.duplicates.get(key, [])[1:] + [i]
                if is_reserved(key):
                    raise SheetFormatError(
                        f"column {key!r} appears twice in the header (columns {_letters(where[0])} and "
                        f"{_letters(i)}): sheetrun cannot tell which one to read or write; rename or delete one")
                self.duplicates[key] = where
                continue
            self.index[key] = i
        self._reindex()
        self.changed = False
        if self.header_record.terminator == "" and len(self.records) == 1:
            self.header_record.terminator = "\n"   # header-only file without a newline

    def _reindex(self) -> None:
        self.rows: list[Row] = []
        for rec in self.records[1:]:
            if not rec.is_blank:
                self.rows.append(Row(self, rec, len(self.rows) + 1))

    # -- rows (what a person does in an editor; used by tools and tests) --------------------
    def insert_row(self, position: int, values: dict[str, str]) -> Row:
        """Insert a data row before data row ``position`` (0-based; len(self) appends)."""
        where = {column: self.ensure_column(column) for column in values}
        cells = [""] * len(self.header)
        for column, value in values.items():
            cells[where[column]] = str(value)
        terminator = self.header_record.terminator or "\n"
        if self.records[-1].terminator == "":
            self.records[-1].terminator = terminator
        rec = Record(cells, [None] * len(cells), terminator)
        at = self.records.index(self.rows[position].record) if position < len(self.rows) else len(self.records)
        self.records.insert(at, rec)
        self._reindex()
        self.changed = True
        return self.rows[[r.record for r in self.rows].index(rec)]

    def delete_row(self, row: Row) -> None:
        idx = self.records.index(row.record)
        if idx == len(self.records) - 1 and row.record.terminator == "" and idx > 0:
            self.records[idx - 1].terminator = ""      # keep "no newline at end of file"
        del self.records[idx]
        self._reindex()
        self.changed = True

    def sort_rows(self, key) -> None:
        """Reorder the data rows by ``key(row)`` (blank lines go last)."""
        ordered = sorted(self.rows, key=key)
        last = self.records[-1]
        end = last.terminator
        if end == "":
            last.terminator = self.header_record.terminator or "\n"
        blanks = [r for r in self.records[1:] if r.is_blank]
        self.records = [self.header_record] + [r.record for r in ordered] + blanks
        if end == "":
            self.records[-1].terminator = ""
        self._reindex()
        self.changed = True

    # -- columns -------------------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        """The named columns, in order."""
        return list(self.index)

    def ensure_column(self, name: str) -> int:
        idx = self.index.get(name)
        if idx is not None:
            return idx
        if not name.strip() or name != name.strip():
            raise ValueError(f"bad column name {name!r}")
        # A ragged row's extra fields must never come to sit under a new column: new
        # columns start after the widest record, behind header cells left blank.
        width = max(len(rec.values) for rec in self.records)
        while len(self.header) < width:
            self.header.append("")
            self.header_record.raws.append(None)
        self.header.append(name)
        self.header_record.raws.append(None)
        self.header_record.touched()
        idx = self.index[name] = len(self.header) - 1
        for row in self.rows:
            self._pad(row.record)
        self.changed = True
        return idx

    def _pad(self, rec: Record) -> None:
        missing = len(self.header) - len(rec.values)
        if missing > 0:
            rec.values.extend([""] * missing)
            rec.raws.extend([""] * missing)
            rec.touched()

    # -- lookup ----------------------------------------------------------------------------
    def find(self, column: str, value: str) -> Row | None:
        if column not in self.index:
            return None
        for row in self.rows:
            if row.get(column) == value:
                return row
        return None

    def find_row(self, number: int) -> Row:
        return self.rows[number - 1]

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    # -- output ----------------------------------------------------------------------------
    def text(self) -> str:
        body = "".join(rec.text(self.delimiter, self.escaped) for rec in self.records)
        return (BOM + body) if self.bom else body
