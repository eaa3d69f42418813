"""What a launch wrote into its rows, so that a save of an older copy cannot undo it.

An editor that ignores the lock file can hold the sheet as it was a moment (or an
hour) ago and save it over the runner's writes: the rows then show an older state
— Running for a row that completed, a metric cell empty again, no run id at all
for a row that was claimed. Nothing at the filesystem level can stop that save.
What the runner can do is notice it and write its cells again.

The ledger keeps, for each run id of the launch and each cell the runner wrote,
the text it wrote last and every text that cell held before (its own earlier
writes, and what the cell held before the runner's first write). A cell that now
holds one of those older texts was reverted by a stale save: it gets the last text
again. A cell that holds anything else was changed on purpose (a person typing, or
``sheetrun cancel``) and is left as it is. Two finer rules:

- ``whether_to_run`` is a person's cell (``1`` again means "run it again"); it is
  written again only when the row's status was reverted too, i.e. the whole row
  is an older copy.
- A claim undone entirely (the row lost its run id) is found again by the run id
  it had before the claim and the input cells the claim saw, and restored only
  while the run is still active. A row that ended and lost its run id may have
  been ``sheetrun reset``, which looks exactly like a revert; its writes are kept
  in the run folder for ``sheetrun sync`` instead.
- Every runner column gone at once is an older copy saved over the sheet (one
  from before the runner added its columns), not a person deleting columns:
  the columns come back, with every row's cells, ended rows' too (``reset``
  keeps the columns). So is a column this launch added (a metric's) gone in a
  change that also reverted the launch's cells elsewhere: the copy was read
  before the column existed. A person deleting a column, with nothing
  reverted, is still left alone.

``restore`` runs inside the runner's own sheet transactions, so restoring costs
no extra write; it runs only when another program changed the sheet since the
runner last wrote it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from runner.core import columns as C
from runner.core.columns import Status
from runner.sheet.table import Row, Table


@dataclass
class _Cell:
    last: str
    older: set = field(default_factory=set)


@dataclass
class _Entry:
    before_run_id: str                       # the row's run id before the claim
    inputs: dict                              # the input cells the claim saw (column -> text)
    cells: dict = field(default_factory=dict)   # column -> _Cell

    @property
    def active(self) -> bool:
        cell = self.cells.get(C.STATUS)
        return cell is not None and cell.last in Status.ACTIVE


def input_cells(row: Row) -> dict[str, str]:
    """The cells of ``row`` that say what it runs (its identity when the run id is gone)."""
    return {c: row.get(c) for c in row.table.index if C.is_input_column(c) and c != C.WHETHER_TO_RUN}


class Ledger:
    def __init__(self):
        self.entries: dict[str, _Entry] = {}
        self.added: set[str] = set()          # columns this launch added to the sheet (metrics')

    def __len__(self) -> int:
        return len(self.entries)

    # -- recording -------------------------------------------------------------------------
    def claimed(self, run_id: str, row: Row, before: dict[str, str], after: dict[str, str]) -> None:
        """A claim of ``row`` for ``run_id``: ``before`` and ``after`` are the texts of the cells it set."""
        entry = _Entry(before.get(C.RUN_ID, ""), input_cells(row))
        self.entries[run_id] = entry
        self._record(entry, before, after)

    def wrote(self, run_id: str, before: dict[str, str], after: dict[str, str]) -> None:
        """Cells written into the row of ``run_id`` (column -> text before / after)."""
        entry = self.entries.get(run_id)
        if entry is None:             # a row this launch did not claim (sync, a job's own write)
            entry = self.entries[run_id] = _Entry("", {})
        self._record(entry, before, after)

    def columns_added(self, columns) -> None:
        """Columns the launch's writes added to the sheet (they were not there before)."""
        self.added.update(c for c in columns if c not in C.OWNED)

    def forget(self, run_id: str) -> None:
        """The row belongs to another run id now (a retry)."""
        self.entries.pop(run_id, None)

    @staticmethod
    def _record(entry: _Entry, before: dict[str, str], after: dict[str, str]) -> None:
        for column, text in after.items():
            cell = entry.cells.get(column)
            if cell is None:
                cell = entry.cells[column] = _Cell(text)
            elif cell.last != text:
                cell.older.add(cell.last)
                cell.last = text
            old = before.get(column, "")
            if old != text:
                cell.older.add(old)
            cell.older.discard(text)

    # -- restoring -------------------------------------------------------------------------
    def restore(self, table: Table) -> int:
        """Write again every cell of ``table`` that an older copy of the sheet reverted; returns how many."""
        if not self.entries:
            return 0
        older_copy = not any(column in table.index for column in C.OWNED)
        if older_copy:
            for column in C.OWNED:              # back in their fixed order
                table.ensure_column(column)
        by_id: dict[str, list[Row]] = {}
        for row in table.rows:
            by_id.setdefault(row.get(C.RUN_ID), []).append(row)
        found = [(entry, row) for run_id, entry in self.entries.items()
                 for row in [self._row_of(run_id, entry, by_id, older_copy)] if row is not None]
        fixed = sum(self._restore_row(entry, row, table, older_copy) for entry, row in found)
        gone = {column for column in self.added if column not in table.index}
        if fixed and gone:               # an older copy, read before this launch added these columns
            for column in sorted(gone):
                table.ensure_column(column)
            fixed += sum(self._restore_row(entry, row, table, older_copy, only=gone) for entry, row in found)
        return fixed

    def _row_of(self, run_id: str, entry: _Entry, by_id: dict, older_copy: bool) -> Row | None:
        rows = by_id.get(run_id)
        row = rows[0] if rows else self._unclaimed(entry, by_id, ended_too=older_copy)
        return None if row is None or row.ragged else row

    @staticmethod
    def _restore_row(entry: _Entry, row: Row, table: Table, older_copy: bool, only: set | None = None) -> int:
        """Write again the cells of ``row`` (of ``only`` these columns) that an older copy reverted."""
        status = entry.cells.get(C.STATUS)
        whole_row = status is not None and row.get(C.STATUS) != status.last and row.get(C.STATUS) in status.older
        fixed = 0
        for column, cell in entry.cells.items():
            if only is not None and column not in only:
                continue
            if column not in table.index and not older_copy:   # a person deleted it: not added back
                continue
            now = row.get(column)
            if now == cell.last or now not in cell.older:
                continue
            if column == C.WHETHER_TO_RUN and not whole_row:
                continue
            row.set(column, cell.last)
            fixed += 1
        return fixed

    @staticmethod
    def _unclaimed(entry: _Entry, by_id: dict[str, list[Row]], ended_too: bool = False) -> Row | None:
        """The row whose claim an older copy undid: it has its old run id back and the same inputs
        (a run that ended only with ``ended_too``: nothing else explains a claim undone then)."""
        if not (entry.active or ended_too) or not entry.inputs:
            return None
        found = [r for r in by_id.get(entry.before_run_id, [])
                 if all(r.get(c) == text for c, text in entry.inputs.items())]
        return found[0] if len(found) == 1 else None
