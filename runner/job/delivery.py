"""A job writing its own row: one sheet object per location for the job's life, and writes that
cannot be delivered kept in the run folder (``pending_updates.jsonl``) for ``sheetrun sync``."""
from __future__ import annotations

import os

from runner.core.errors import describe
from runner.core.rundir import RunDir
from runner.job.say import say as _say

_SHEETS: dict = {}


_POLICIES: dict = {}


_said_missing: set = set()


def _sheet(location: str):
    """One sheet object per location for the job's life (a remote sheet keeps its connection)."""
    if location not in _SHEETS:
        from runner.sheet import open_sheet
        _SHEETS[location] = open_sheet(location)
    return _SHEETS[location]


def _policy(root: str):
    if root not in _POLICIES:
        from runner.sheet.metric_columns import MetricColumns
        _POLICIES[root] = MetricColumns(root)
    return _POLICIES[root]


def merge_batches(batches: list) -> list:
    """Consecutive batches with the same skip statuses merged into one (later values win)."""
    out: list = []
    for values, skip in batches:
        skip = sorted(skip)
        if out and out[-1][1] == skip:
            out[-1][0].update(values)
        else:
            out.append((dict(values), skip))
    return out


def push_to_sheet(rd: RunDir, sheet_location: str, run_id: str, values: dict,
                  skip_statuses=(), root: str | None = None) -> bool:
    """Write values into the run's row; what cannot be delivered is kept in the run folder.

    Writes held back earlier go first, in the same transaction, so a held-back
    "Running" can never land after the final status. A row that is gone (or
    ragged) keeps the writes in the run folder too: ``sheetrun sync`` delivers
    them if it comes back.
    """
    batches = merge_batches(rd.pending_batches() + [(values, skip_statuses)])
    policy = _policy(root or os.getcwd())
    try:
        delivery = _sheet(sheet_location).update_rows_in_order({run_id: batches}, policy)
    except Exception as exc:           # the sheet is optional for the job's success
        _keep(rd, batches)
        _say(f"sheetrun: could not update the sheet ({type(exc).__name__}: {exc}); kept in {rd.pending}")
        return False
    for note in delivery.notes:
        _say(f"sheetrun: {note}")
    if delivery.undelivered:
        _keep(rd, batches)
        if run_id not in _said_missing:
            _said_missing.add(run_id)
            why = delivery.refused.get(run_id) or "no row has it any more (deleted, or rerun)"
            _say(f"sheetrun: run {run_id}: {why}; its updates are kept in {rd.pending}")
        return False
    try:
        rd.clear_pending()
    except OSError:
        pass
    return True


def _keep(rd: RunDir, batches: list) -> None:
    try:
        rd.set_pending(batches)
    except OSError as exc:
        _say(f"sheetrun: cannot keep the row's updates in {rd.pending}: {describe(exc)}")
