"""What every results-sheet backend provides.

A backend implements ``read`` (a snapshot) and ``transact`` (an atomic
read-modify-write of the current contents). Row identity is the ``run_id``
cell, never the position: a person may insert, delete or sort rows between
two writes and every write still lands in its own row.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, TypeVar

from runner.core import columns as C
from runner.core.columns import (ERROR, ERROR_MAX_CHARS, OWNED, RUN_ID, STATUS, TEXT_MAX_CHARS, WHETHER_TO_RUN, cap,
                                 metric_name_problem)
from runner.core.errors import SheetrunError
from runner.sheet.table import Table

T = TypeVar("T")


MAX_COLUMNS = 16384        # the widest sheet sheetrun makes: Excel opens no wider (Google takes 18,278)
DEFAULT_NEW_COLUMNS = 1000  # metric columns one launch (or one job writing its own row) may add


class SheetError(SheetrunError, RuntimeError):
    """The sheet cannot be read or written. ``bad_request``: the sheet refused what was sent (Google's
    400): trying again will not help, and sending it row by row finds the row it comes from."""

    def __init__(self, message: str, bad_request: bool = False):
        super().__init__(message)
        self.bad_request = bad_request


class Sheet(ABC):
    @property
    @abstractmethod
    def location(self) -> str:
        """Where the sheet lives (an absolute path or a URL); passed to jobs."""

    @property
    @abstractmethod
    def name(self) -> str:
        """A short name for run folders and messages."""

    #: True where every write is a network request under a quota (a Google Sheet): the local
    #: runner then writes for its jobs, batched (``runner.launch.rowwriter``).
    remote = False

    #: How many times a transaction found the sheet changed by another program since this object
    #: last wrote it (counted where the backend can tell: a CSV file saved by an editor).
    changed_by_others = 0

    @abstractmethod
    def read(self) -> Table:
        """A snapshot of the sheet."""

    @abstractmethod
    def transact(self, change: Callable[[Table], T]) -> T:
        """Apply ``change`` to the current contents atomically and return its result."""

    @abstractmethod
    def write_new(self, table: Table, replace_if: Callable[[Table], bool] | None = None) -> None:
        """Write a whole table into an empty (or missing) sheet; SheetError if it holds anything —
        unless ``replace_if(what it holds)`` says it may be replaced (a summary sheetrun wrote)."""

    def update(self, run_id: str, values: Mapping[str, object], *,
               skip_statuses: Iterable[str] = (), metrics: "ColumnPolicy | None" = None) -> bool:
        """Write ``values`` into the row stamped ``run_id``; False if it was not written."""
        return run_id not in self.update_many({run_id: values}, skip_statuses=skip_statuses,
                                               metrics=metrics)

    def update_many(self, updates: Mapping[str, Mapping[str, object]], *,
                    skip_statuses: Iterable[str] = (), metrics: "ColumnPolicy | None" = None) -> set[str]:
        """Write several rows' cells in one transaction.

        Rows whose current status is in ``skip_statuses`` are left alone.
        Returns the run ids whose rows were not written (gone, or ragged).
        """
        return self.update_rows_in_order({rid: [(values, skip_statuses)] for rid, values in updates.items()},
                                         metrics).undelivered

    def update_rows_in_order(self, batches_by_run_id: Mapping[str, Iterable[tuple[Mapping[str, object],
                                                                             Iterable[str]]]],
                             metrics: "ColumnPolicy | None" = None) -> "Delivery":
        """Apply each row's ``(values, skip_statuses)`` batches, in order, all rows in one
        transaction; the one write path every other update method goes through. A batch is
        skipped if the row's status at that point is in its ``skip_statuses``; later batches see
        what earlier ones wrote (how writes held back while the sheet was unreachable go out).

        Keys of ``values`` are the runner's own columns (``status``, ``error``...)
        or reported metrics; ``metrics`` decides which column each metric goes to
        (by default its own name, when that is a valid metric name). No value can
        make the transaction fail: a name that cannot be a column is left out and
        named in the returned :class:`Delivery`'s ``notes``.
        """
        prepared = prepare_batches(batches_by_run_id)
        try:
            return self.transact(lambda table: apply_batches(table, prepared, metrics))
        except SheetError as exc:
            if not exc.bad_request or len(prepared) < 2:
                raise
            return self.deliver_each(prepared, metrics)

    def deliver_each(self, prepared: dict, metrics: "ColumnPolicy | None" = None) -> "Delivery":
        """Write each row's batches in a transaction of its own: a row whose values the sheet refuses
        (refused, its error cell saying why when that much can be written) never blocks the others."""
        delivery = Delivery()
        for run_id, batches in prepared.items():
            try:
                one = self.transact(lambda table: apply_batches(table, {run_id: batches}, metrics))
            except SheetError as exc:
                why = C.cap(f"its values could not be written ({exc}); they are in its run folder", ERROR_MAX_CHARS)
                delivery.refused[run_id] = why
                delivery.rejected.add(run_id)
                try:
                    self.transact(lambda table: apply_batches(table, {run_id: [({ERROR: why}, frozenset())]}))
                except SheetError:
                    pass
                continue
            delivery.merge(one)
        return delivery


def prepare_batches(batches_by_run_id) -> dict:
    """``{run id: [(values, frozenset(skip_statuses)), ...]}``, materialised once, before a
    transaction that may apply it several times (:func:`apply_batches`)."""
    return {rid: [(values, frozenset(skip)) for values, skip in batches] for rid, batches in batches_by_run_id.items()}


def apply_batches(table: Table, prepared: Mapping[str, list[tuple[Mapping[str, object], frozenset]]],
                  metrics: "ColumnPolicy | None" = None) -> "Delivery":
    """The change :meth:`Sheet.update_rows_in_order` makes, on a table in hand (for a caller
    that does more in the same transaction). Records each written cell's text before and
    after in ``Delivery.cells``."""
    policy = metrics or ColumnPolicy()
    delivery = Delivery()
    if not prepared:
        return delivery
    by_id = {}
    for row in table.rows:                  # one pass, not one search per update
        by_id.setdefault(row.get(RUN_ID), row)
    for run_id, batches in prepared.items():
        row = by_id.get(run_id)
        if row is None:
            delivery.missing.add(run_id)
            continue
        if row.ragged:
            delivery.refused[run_id] = row.ragged_problem()
            continue
        before: dict[str, str] = {}
        after: dict[str, str] = {}
        no_room: set[str] = set()
        for values, skip in batches:
            if row.get(STATUS) not in skip:
                _set_cells(table, row, values, policy, delivery.notes, before, after, no_room, run_id)
        if no_room:
            _say_no_room(row, policy, no_room, before, after)
        if after:
            delivery.cells[run_id] = (before, after)
    return delivery


def _say_no_room(row, policy: "ColumnPolicy", names: set, before: dict, after: dict) -> None:
    """The row's error says how many metrics had no column left (they are all in its run folder)."""
    note = (f"{len(names)} metric(s) not written: a launch adds at most {policy.max_new} columns, a row "
            f"half of them (metric_columns in sheetrun.yaml), a sheet has at most {MAX_COLUMNS}; all are in "
            "the run folder's metrics.json")
    error = row.get(ERROR)
    text = cap(note if not error or note in error else f"{error}; {note}", ERROR_MAX_CHARS)
    before.setdefault(ERROR, error)
    row.set(ERROR, text)
    after[ERROR] = text


@dataclass
class Delivery:
    """What one write did."""
    missing: set = field(default_factory=set)        # run ids no row has any more
    refused: dict = field(default_factory=dict)      # run id -> why its row was not written
    notes: list = field(default_factory=list)        # metric names left out or redirected
    cells: dict = field(default_factory=dict)        # run id -> ({column: text before}, {column: text after})
    restored: int = 0                                # cells written again after an older copy was saved over them
    rejected: set = field(default_factory=set)       # run ids whose values the sheet refused: not tried again

    @property
    def undelivered(self) -> set:
        return self.missing | set(self.refused)

    def merge(self, other: "Delivery") -> None:
        self.missing |= other.missing
        self.refused.update(other.refused)
        self.notes += [n for n in other.notes if n not in self.notes]
        self.cells.update(other.cells)
        self.restored += other.restored
        self.rejected |= other.rejected


class ColumnPolicy:
    """Which column a reported metric goes to: here, its own name when that is a valid
    metric name (``runner.sheet.metric_columns`` also keeps metrics out of people's columns) — and
    no new column past ``max_new`` added by this writer (one row taking at most half of them, so
    that a row reporting thousands of names leaves room for the others' few), nor past
    :data:`MAX_COLUMNS` in all."""

    def __init__(self, max_new: int = DEFAULT_NEW_COLUMNS):
        self.max_new = max_new
        self.added: set[str] = set()             # the new columns this writer made room for
        self.added_by: dict[str, int] = {}       # run id -> how many of them its row asked for

    def column_for(self, table: Table, name: str) -> tuple[str | None, str | None]:
        """(column or None to leave the metric out, a note for the person or None)."""
        problem = metric_name_problem(name)
        return (None, f"metric left out: {problem}") if problem else (name, None)

    def room_for(self, table: Table, column: str, run_id: str = "") -> bool:
        """May ``column`` be written for ``run_id``'s row: it exists, or one more new column is allowed."""
        if column in table.index or column in self.added:
            return column in table.index or len(table.header) < MAX_COLUMNS
        mine = self.added_by.get(run_id, 0)
        if (len(self.added) >= self.max_new or 2 * mine >= max(1, self.max_new)
                or len(table.header) >= MAX_COLUMNS):
            return False
        self.added.add(column)
        self.added_by[run_id] = mine + 1
        return True


def _set_cells(table: Table, row, values: Mapping[str, object], policy: ColumnPolicy,
               notes: list, before: dict, after: dict, no_room: set, run_id: str = "") -> None:
    def put(column: str, text: str) -> None:
        before.setdefault(column, row.get(column))
        row.set(column, text)
        after[column] = text

    for column, value in values.items():
        if column == WHETHER_TO_RUN:
            if _selected(row.get(column)):        # a person's cell: the runner only turns "run" off
                put(column, format_cell(value))
        elif column in OWNED:
            text = format_cell(value)
            put(column, cap(" ".join(text.split()), ERROR_MAX_CHARS) if column == ERROR else text)
        else:
            target, note = policy.column_for(table, column)
            if note and note not in notes:
                notes.append(note)
            if target is not None and not policy.room_for(table, target, run_id):
                no_room.add(column)
            elif target is not None:
                put(target, cap(format_cell(value), TEXT_MAX_CHARS))


def _selected(text: str) -> bool:
    from runner.core.cells import CellError, parse_whether_to_run

    try:
        return parse_whether_to_run(text)
    except CellError:
        return False


def format_cell(value: object) -> str:
    """How a runner-written value appears in a cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, ".6g")
    return str(value)
