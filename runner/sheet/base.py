"""What every results-sheet backend provides.

A backend implements ``read`` (a snapshot) and ``transact`` (an atomic
read-modify-write of the current contents). Row identity is the ``run_id``
cell, never the position: a person may insert, delete or sort rows between
two writes and every write still lands in its own row.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Iterable, Mapping, TypeVar

from runner.columns import RUN_ID, STATUS, WHETHER_TO_RUN
from runner.sheet.table import Table

T = TypeVar("T")


class SheetError(RuntimeError):
    """The sheet cannot be read or written."""


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
    #: runner then writes for its jobs, batched (``runner.rowwriter``).
    remote = False

    @abstractmethod
    def read(self) -> Table:
        """A snapshot of the sheet."""

    @abstractmethod
    def transact(self, change: Callable[[Table], T]) -> T:
        """Apply ``change`` to the current contents atomically and return its result."""

    @abstractmethod
    def write_new(self, table: Table) -> None:
        """Write a whole table into an empty (or missing) sheet; SheetError if it holds anything."""

    def update(self, run_id: str, values: Mapping[str, object], *,
               skip_statuses: Iterable[str] = ()) -> bool:
        """Write ``values`` into the row stamped ``run_id``; False if it is gone."""
        return run_id not in self.update_many({run_id: values}, skip_statuses=skip_statuses)

    def update_in_order(self, run_id: str,
                        batches: Iterable[tuple[Mapping[str, object], Iterable[str]]]) -> bool:
        """Apply ``(values, skip_statuses)`` batches to one row, in order, in one transaction.

        Each batch is skipped if the row's status at that point is in its
        ``skip_statuses``; later batches see what earlier ones wrote. Used to
        deliver writes that were held back while the sheet was unreachable.
        False if the row is gone.
        """
        return run_id not in self.update_rows_in_order({run_id: batches})

    def update_many(self, updates: Mapping[str, Mapping[str, object]], *,
                    skip_statuses: Iterable[str] = ()) -> set[str]:
        """Write several rows' cells in one transaction.

        Rows whose current status is in ``skip_statuses`` are left alone.
        Returns the run ids whose rows no longer exist.
        """
        return self.update_rows_in_order({rid: [(values, skip_statuses)] for rid, values in updates.items()})

    def update_rows_in_order(self, batches_by_run_id: Mapping[str, Iterable[tuple[Mapping[str, object],
                                                                             Iterable[str]]]]) -> set[str]:
        """:meth:`update_in_order` for many rows at once, in one transaction; the one
        write path every other update method goes through.

        Returns the run ids whose rows no longer exist.
        """
        prepared = {rid: [(values, frozenset(skip)) for values, skip in batches]
                    for rid, batches in batches_by_run_id.items()}

        def change(table: Table) -> set[str]:
            by_id = {}
            for row in table.rows:                  # one pass, not one search per update
                by_id.setdefault(row.get(RUN_ID), row)
            missing = set()
            for run_id, batches in prepared.items():
                row = by_id.get(run_id)
                if row is None:
                    missing.add(run_id)
                    continue
                for values, skip in batches:
                    if row.get(STATUS) not in skip:
                        _set_cells(row, values)
            return missing

        return self.transact(change)


def _set_cells(row, values: Mapping[str, object]) -> None:
    for column, value in values.items():
        if column == WHETHER_TO_RUN and row.get(column).strip() != "1":
            continue    # a person's cell: the runner only ever flips a 1 to 0
        row.set(column, format_cell(value))


def format_cell(value: object) -> str:
    """How a runner-written value appears in a cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, ".6g")
    return str(value)
