"""``sheetrun cancel``: stop the selected rows' jobs, wherever they run, and mark them Cancelled.

SLURM jobs are cancelled with one ``scancel`` for all of them; a local job's
wrapper gets SIGTERM (it ends the command's process tree and records
Cancelled itself). Rows that have already ended are left alone.
"""
from __future__ import annotations

import os
import signal
import socket

from runner import columns as C
from runner.columns import Status
from runner.plan import RowFilter
from runner.rundir import RunDir, read_json
from runner.sheet import Sheet
from runner.slurm import SlurmClient
from runner.sync import default_client, slurm_info


def cancel(sheet: Sheet, root: str, rows: RowFilter | None = None,
           client: SlurmClient | None = None) -> list[int]:
    """Cancel the active rows (all, or those in ``rows``); returns their row numbers."""
    slurm_jobs: list[str] = []
    cancelled: dict[str, dict] = {}
    numbers = []
    for row in sheet.read().rows:
        if row.get(C.STATUS) not in Status.ACTIVE or (rows is not None and row not in rows):
            continue
        run_id, folder = row.get(C.RUN_ID), row.get(C.RUN_FOLDER)
        if not run_id:
            continue
        rd = RunDir(os.path.join(root, folder)) if folder else None
        info = slurm_info(rd) if rd and os.path.isdir(rd.path) else None
        if info:
            slurm_jobs.append(info["job_id"])
        elif rd:
            wrapper = read_json(rd.wrapper) or {}
            if wrapper.get("host") == socket.gethostname():
                try:
                    os.kill(int(wrapper["pid"]), signal.SIGTERM)
                except (ProcessLookupError, KeyError, ValueError):
                    pass
        cancelled[run_id] = {C.STATUS: Status.CANCELLED, C.ERROR: "cancelled by sheetrun cancel"}
        numbers.append(row.number)
    if slurm_jobs:
        (client or default_client()).cancel(slurm_jobs)
    if cancelled:
        sheet.update_many(cancelled, skip_statuses=Status.TERMINAL)
    return numbers
