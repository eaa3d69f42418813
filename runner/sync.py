"""``sheetrun sync``: reconcile rows left Submitted or Running with what really happened.

For each such row the run folder is the evidence: an exit record wins; a live
wrapper process (same pid, started no later than recorded) with a fresh
heartbeat means still running; otherwise the job is gone and the row becomes
Lost, so no row stays Running forever. Sheet writes a job could not deliver
(``pending_updates.jsonl``) are pushed first.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import psutil

from runner import columns as C
from runner.columns import Status
from runner.jobwrapper import final_row_values, load_results
from runner.rundir import HEARTBEAT_STALE_S, RunDir, read_json
from runner.sheet import Sheet


def deliver_pending(sheet: Sheet, rd: RunDir, run_id: str) -> int:
    """Push sheet writes a job could not deliver itself; returns how many were sent."""
    batches = rd.pending_batches()
    if not batches:
        return 0
    sheet.update_in_order(run_id, batches)
    rd.clear_pending()
    return len(batches)


@dataclass
class SyncChange:
    number: int
    run_id: str
    before: str
    after: str
    reason: str


def _alive(pid: int, not_after: float) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.create_time() <= not_after + 1.0 and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def judge(rd: RunDir) -> tuple[str | None, str, dict | None]:
    """(new status or None to leave the row, reason, exit record) for one run folder."""
    if not os.path.isdir(rd.path):
        return Status.LOST, f"run folder {rd.path} is missing", None
    record = rd.read_exit()
    if record:
        return record["status"], "exit record", record
    here = socket.gethostname()
    wrapper = read_json(rd.wrapper)
    age = rd.heartbeat_age()
    if wrapper:
        if wrapper.get("host") == here:
            if _alive(int(wrapper["pid"]), wrapper["started"]):
                if age is not None and age > HEARTBEAT_STALE_S:
                    return None, f"process {wrapper['pid']} alive but heartbeat {age:.0f}s old", None
                return None, "still running", None
            return Status.LOST, (f"job process {wrapper['pid']} ended without an exit record "
                                 "(killed?)"), None
        if age is not None and age > HEARTBEAT_STALE_S:
            return Status.LOST, f"no heartbeat from {wrapper.get('host')} for {age:.0f}s", None
        return None, f"running on {wrapper.get('host')}", None
    job = read_json(rd.job) or {}
    launcher = job.get("launcher_pid")
    if launcher and _alive(int(launcher), job.get("created", 0)):
        return None, "queued in a live sheetrun process", None
    return Status.LOST, f"never started: the launcher (pid {launcher}) is gone", None


def still_active(row, root: str) -> bool:
    """True if the row's last run is still queued or running somewhere."""
    folder = row.get(C.RUN_FOLDER)
    if not folder:
        return False
    new, _, _ = judge(RunDir(os.path.join(root, folder)))
    return new is None


def sync(sheet: Sheet, root: str) -> list[SyncChange]:
    changes: list[SyncChange] = []
    table = sheet.read()
    for row in table.rows:
        status, run_id, folder = row.get(C.STATUS), row.get(C.RUN_ID), row.get(C.RUN_FOLDER)
        if not run_id or not folder:
            continue
        rd = RunDir(os.path.join(root, folder))
        delivered = deliver_pending(sheet, rd, run_id) if os.path.isdir(rd.path) else 0
        if status not in Status.ACTIVE:
            if delivered:
                changes.append(SyncChange(row.number, run_id, status, status,
                                          f"delivered {delivered} pending update(s)"))
            continue
        new, reason, record = judge(rd)
        if new is None:
            changes.append(SyncChange(row.number, run_id, status, status, reason))
            continue
        if record:
            metrics, _ = load_results(rd)
            values = final_row_values(record, metrics)
        else:
            values = {C.STATUS: new, C.ERROR: reason}
        # Only rows still active are changed: a job finishing meanwhile keeps its own result.
        sheet.update(run_id, values, skip_statuses=Status.TERMINAL)
        changes.append(SyncChange(row.number, run_id, status, new, reason))
    return changes
