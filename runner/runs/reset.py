"""``sheetrun reset``: make rows ready to run again, as if they never had.

For each selected row that has been run: the runner's cells (status, run id,
run folder, job id, exit code, walltime, error) and the metric cells its run
filled are emptied, and ``whether_to_run`` goes back to 1. Cells a person
typed (a note, a value typed over a metric) are kept, and so is every run
folder. A row whose run is still held (queued, running, or with processes
alive) is left alone and named: ``sheetrun cancel`` it first.

Each run reset is marked void in its run folder (``reset.json``), and so is a
newer run of the row that the sheet does not show (an older copy was saved
over it, or the sheet was replaced by a fresh copy): ``sheetrun sync`` never
puts a reset run back, and ``sheetrun run`` runs the row afresh.

A row whose run folder is not here (a sheet copied without its run folders)
cannot tell its run's numbers from a person's cells: they are all kept, and
named, so the person can empty the old numbers by hand.
"""
from __future__ import annotations

import os

from runner.core import columns as C
from runner.core.columns import Status
from runner.core.rowrefs import RowFilter
from runner.core.rundir import RunDir
from runner.core.runindex import RunIndex, mark_reset, unshown_runs
from runner.runs.liveness import verdict
from runner.sheet import Sheet, Table
from runner.sheet.metric_columns import clear_previous_metrics, unaccounted_cells


def reset(sheet: Sheet, root: str, rows: RowFilter | None = None, runs_dir: str | None = None
          ) -> tuple[list[int], list[tuple[int, str]], list[tuple[int, str, list[str]]]]:
    """Reset the selected rows (all by default); returns (rows reset, [(row, why it was left)],
    [(row, its run folder cell, the cells kept because that folder is not here)])."""
    index = RunIndex(os.path.join(runs_dir or os.path.join(root, "experiments"), sheet.name))

    def change(table: Table):
        if rows is not None:
            rows.check(table)
        done, left, kept = [], [], []
        unshown = unshown_runs(table, root, index, sheet.location)
        for row in table.rows:
            if rows is not None and row not in rows:
                continue
            if row.number in unshown and unshown[row.number].record is not None:
                mark_reset(unshown[row.number].run.folder)     # the run the sheet lost: void it too
                if not (row.get(C.RUN_ID) or row.get(C.STATUS)):
                    done.append(row.number)
                    continue
            if not (row.get(C.RUN_ID) or row.get(C.STATUS)):
                continue
            if row.ragged:
                left.append((row.number, row.ragged_problem()))
                continue
            if row.get(C.STATUS) in Status.ACTIVE and row.get(C.RUN_FOLDER):
                seen = verdict(RunDir(os.path.join(root, row.get(C.RUN_FOLDER))), row.get(C.RUN_ID))
                if seen.active:
                    left.append((row.number, f"its run is still held ({seen.reason}); cancel it first"))
                    continue
            if row.get(C.RUN_FOLDER):
                mark_reset(os.path.join(root, row.get(C.RUN_FOLDER)))
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
