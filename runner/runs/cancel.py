"""``sheetrun cancel``: stop the selected rows' jobs, wherever they run, and mark them Cancelled.

SLURM jobs are cancelled with one ``scancel`` for all of them, each by its own
id (one task of an array: ``<array>_<task>``). A local run first gets a
``cancel_requested`` marker in its run folder, so a runner that has not
started it yet never will, and the launch's job host, which runs other rows
too, stops exactly that job at its next look (within half a second) and
records Cancelled; a job wrapper that runs only this job gets SIGTERM.
Processes of a job whose wrapper or host is already gone are found by their
run id and by the run folder's process log, and ended. Other rows, of the same
launch or not, are never touched. Rows that have already ended are left alone.
"""
from __future__ import annotations

import os
import signal
import socket

from runner.core import columns as C
from runner.core import procs
from runner.core.columns import Status
from runner.core.rowrefs import RowFilter
from runner.core.records import WrapperRecord
from runner.core.rundir import RunDir
from runner.runs.liveness import default_client, slurm_info
from runner.sheet import Sheet
from runner.slurm import SlurmClient

ORPHAN_GRACE_S = 3.0


def cancel(sheet: Sheet, root: str, rows: RowFilter | None = None,
           client: SlurmClient | None = None) -> list[int]:
    """Cancel the active rows (all, or those in ``rows``); returns their row numbers."""
    slurm_jobs: list[str] = []
    cancelled: dict[str, dict] = {}
    numbers = []
    table = sheet.read()
    if rows is not None:
        rows.check(table)
    for row in table.rows:
        if row.get(C.STATUS) not in Status.ACTIVE or (rows is not None and row not in rows):
            continue
        run_id, folder = row.get(C.RUN_ID), row.get(C.RUN_FOLDER)
        if not run_id:
            continue
        rd = RunDir(os.path.join(root, folder)) if folder else None
        info = slurm_info(rd) if rd and os.path.isdir(rd.path) else None
        if info:
            slurm_jobs.append(info["job_id"])
        elif rd and os.path.isdir(rd.path):
            _cancel_local(rd, run_id)
        cancelled[run_id] = {C.STATUS: Status.CANCELLED, C.ERROR: "cancelled by sheetrun cancel"}
        numbers.append(row.number)
    if slurm_jobs:
        (client or default_client()).cancel(slurm_jobs)
    if cancelled:
        sheet.update_many(cancelled, skip_statuses=Status.TERMINAL)
    return numbers


def _cancel_local(rd: RunDir, run_id: str) -> None:
    try:
        open(rd.cancel_marker, "w").close()       # before looking for the wrapper: no start slips by
    except OSError:
        pass
    wrapper = rd.read_wrapper() or WrapperRecord()
    if wrapper.host != socket.gethostname():
        return
    if procs.alive(wrapper.pid, wrapper.pid_started):
        if wrapper.kind == "host":
            return                          # it runs other rows too: the marker stops this one only
        try:
            os.kill(int(wrapper.pid), signal.SIGTERM)
        except (ProcessLookupError, KeyError, ValueError):
            pass
    else:                                   # the wrapper or host is gone; what it left is not
        procs.end_job(run_id, rd.processes, grace_s=ORPHAN_GRACE_S)
