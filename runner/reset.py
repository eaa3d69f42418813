"""``sheetrun reset``: make rows ready to run again, as if they never had.

For each selected row that has been run: the runner's cells (status, run id,
run folder, job id, exit code, walltime, error) and the metric cells its run
filled are emptied, and ``whether_to_run`` goes back to 1. Cells a person
typed (a note, a value typed over a metric) are kept, and so is every run
folder. A row whose run is still held (queued, running, or with processes
alive) is left alone and named: ``sheetrun cancel`` it first.

A row whose run folder is not here (a sheet copied without its run folders)
cannot tell its run's numbers from a person's cells: they are all kept, and
named, so the person can empty the old numbers by hand.
"""
from __future__ import annotations

import os

from runner import columns as C
from runner.columns import Status
from runner.liveness import verdict
from runner.metric_columns import clear_previous_metrics, unaccounted_cells
from runner.plan import RowFilter
from runner.rundir import RunDir
from runner.sheet import Sheet, Table


def reset(sheet: Sheet, root: str, rows: RowFilter | None = None
          ) -> tuple[list[int], list[tuple[int, str]], list[tuple[int, str, list[str]]]]:
    """Reset the selected rows (all by default); returns (rows reset, [(row, why it was left)],
    [(row, its run folder cell, the cells kept because that folder is not here)])."""

    def change(table: Table):
        if rows is not None:
            rows.check(table)
        done, left, kept = [], [], []
        for row in table.rows:
            if (rows is not None and row not in rows) or not (row.get(C.RUN_ID) or row.get(C.STATUS)):
                continue
            if row.ragged:
                left.append((row.number, row.ragged_problem()))
                continue
            if row.get(C.STATUS) in Status.ACTIVE and row.get(C.RUN_FOLDER):
                seen = verdict(RunDir(os.path.join(root, row.get(C.RUN_FOLDER))), row.get(C.RUN_ID))
                if seen.active:
                    left.append((row.number, f"its run is still held ({seen.reason}); cancel it first"))
                    continue
            unknown = unaccounted_cells(row, root)
            if unknown:
                kept.append((row.number, row.get(C.RUN_FOLDER), unknown))
            clear_previous_metrics(row, root)
            for column in C.OWNED:
                if column in table.index:
                    row.set(column, "")
            row.set(C.WHETHER_TO_RUN, "1")
            done.append(row.number)
        return done, left, kept

    return sheet.transact(change)
