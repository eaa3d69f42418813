"""``sheetrun sync``: reconcile rows left Submitted or Running with what really happened.

For a local run the run folder is the evidence: an exit record wins; a live
wrapper process (same pid, started no later than recorded) with a fresh
heartbeat means still running; otherwise the job is gone and the row becomes
Lost, so no row stays Running forever. For a SLURM run (``slurm.json`` in the
run folder) SLURM's view of the job is asked for all rows at once, in one
``squeue`` call, and combined with the exit record (``runner.slurm.states``).
Sheet writes a job could not deliver (``pending_updates.jsonl``) are pushed
first.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

import psutil

from runner import columns as C
from runner.columns import Status
from runner.jobwrapper import final_row_values, load_results
from runner.rundir import HEARTBEAT_STALE_S, RunDir, read_json
from runner.sheet import Sheet
from runner.slurm import INFO_NAME, SlurmClient, SlurmError
from runner.slurm.client import lookup
from runner.slurm.states import row_status


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


def slurm_info(rd: RunDir) -> dict | None:
    """The SLURM job of a run folder (written at submission), or None for local runs."""
    try:
        return read_json(rd.file(INFO_NAME))
    except ValueError:
        return None


def judge_slurm(rd: RunDir, job_id: str, states: dict) -> tuple[str | None, str, dict | None]:
    """Like :func:`judge`, for a SLURM job, from one ``squeue`` snapshot (``states``)."""
    record = rd.read_exit()
    state = lookup(states, job_id)
    if state is None:
        if record:
            return record["status"], "exit record", record
        return Status.LOST, (f"SLURM job {job_id} is gone (finished long ago, or purged) "
                             "and left no exit record"), None
    new, reason = row_status(state.state, state.reason, record)
    if new is None:
        return None, f"SLURM job {job_id}: {reason}", None
    return new, reason, record


def slurm_states(job_ids: list[str], client: SlurmClient) -> dict:
    """SLURM's view of these jobs: one squeue call, plus one sacct call for jobs squeue has
    forgotten where the cluster keeps accounting."""
    states = dict(client.states(fresh=True))
    forgotten = [j for j in job_ids if lookup(states, j) is None]
    if forgotten:
        states.update(client.accounted_states(forgotten))
    return states


_client: SlurmClient | None = None


def default_client() -> SlurmClient:
    global _client
    if _client is None:
        _client = SlurmClient()
    return _client


def still_active(row, root: str, client: SlurmClient | None = None) -> bool:
    """True if the row's last run is still queued or running somewhere."""
    folder = row.get(C.RUN_FOLDER)
    if not folder:
        return False
    rd = RunDir(os.path.join(root, folder))
    info = slurm_info(rd)
    if info:
        try:
            new, _, _ = judge_slurm(rd, info["job_id"], (client or default_client()).states())
        except SlurmError:
            return True          # SLURM cannot be asked: never start a row twice on a guess
        return new is None
    new, _, _ = judge(rd)
    return new is None


def sync(sheet: Sheet, root: str, client: SlurmClient | None = None) -> list[SyncChange]:
    """Reconcile every Submitted / Running row; one ``squeue`` call covers all SLURM rows."""
    changes: list[SyncChange] = []
    table = sheet.read()
    updates: dict[str, dict] = {}
    to_cancel: list[str] = []
    infos = {}                                # run id -> slurm.json, for the active SLURM rows
    for row in table.rows:
        if row.get(C.STATUS) in Status.ACTIVE and row.get(C.RUN_ID) and row.get(C.RUN_FOLDER):
            info = slurm_info(RunDir(os.path.join(root, row.get(C.RUN_FOLDER))))
            if info:
                infos[row.get(C.RUN_ID)] = info
    states, slurm_problem = {}, ""
    if infos:
        try:
            states = slurm_states([i["job_id"] for i in infos.values()], client or default_client())
        except SlurmError as exc:
            slurm_problem = f"SLURM cannot be asked ({exc}); row left as it is"
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
        info = infos.get(run_id)
        if info:
            if slurm_problem:
                changes.append(SyncChange(row.number, run_id, status, status, slurm_problem))
                continue
            new, reason, record = judge_slurm(rd, info["job_id"], states)
            state = lookup(states, info["job_id"])
            if new is not None and state is not None and state.state == "PENDING":
                to_cancel.append(info["job_id"])    # it can never start (a failed dependency)
        else:
            new, reason, record = judge(rd)
        if new is None:
            if info and not row.get(C.JOB_ID):
                updates[run_id] = {C.JOB_ID: info["job_id"]}
            changes.append(SyncChange(row.number, run_id, status, status, reason))
            continue
        if record:
            metrics, _ = load_results(rd)
            values = final_row_values(record, metrics)
            if record["status"] != new:     # SLURM knows better (time limit, node failure)
                values.update({C.STATUS: new, C.ERROR: reason})
        else:
            values = {C.STATUS: new, C.ERROR: reason}
        if info:
            values[C.JOB_ID] = info["job_id"]
        updates[run_id] = values
        changes.append(SyncChange(row.number, run_id, status, new, reason))
    if to_cancel:
        try:
            (client or default_client()).cancel(to_cancel)
        except SlurmError:
            pass          # the row already says why; a later sync tries again
    if updates:
        # Only rows still active are changed: a job finishing meanwhile keeps its own result.
        sheet.update_many(updates, skip_statuses=Status.TERMINAL)
    return changes


def follow(sheet: Sheet, root: str, run_ids: set[str], client: SlurmClient | None = None,
           poll_s: float = 2.0, on_change=None, timeout_s: float | None = None) -> dict[str, str]:
    """Sync until every row in ``run_ids`` has ended; returns run id -> final status.

    One sheet read and at most one ``squeue`` per poll, however many rows.
    ``on_change(number, status, error)`` is called when a row's status changes.
    """
    seen: dict[str, str] = {}
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        sync(sheet, root, client)
        rows = {r.get(C.RUN_ID): r for r in sheet.read().rows if r.get(C.RUN_ID) in run_ids}
        for rid, row in rows.items():
            status = row.get(C.STATUS)
            if seen.get(rid) != status:
                seen[rid] = status
                if on_change:
                    on_change(row.number, status, row.get(C.ERROR))
        for rid in run_ids - set(rows):          # a person deleted the row meanwhile
            seen.setdefault(rid, "")
        if all(seen.get(rid) not in Status.ACTIVE for rid in run_ids):
            return seen
        if deadline is not None and time.monotonic() > deadline:
            return seen
        time.sleep(poll_s)
