"""Is a row's run still going? What its run folder, its processes and SLURM say.

A run is *held* from the moment its row is claimed: the claim transaction
writes ``job.json``, naming the launching sheetrun (its pid, start time, host
and launch record), into the run folder before the row says Submitted. From then on
exactly one of these holds the run, and :func:`verdict` asks the right one:

1. ``exit.json`` — the job ended; its record says how.
2. ``slurm.json`` — a SLURM job: SLURM's state (one ``squeue`` for all rows).
3. ``wrapper.json`` — a job wrapper (or the launch's job host) started it:
   alive (same host: its pid and start time; another host: a fresh
   heartbeat), or gone while processes of the job (tagged with its run id, or
   named in its process log) still run, or gone.
4. ``job.json`` — not started yet: queued in a live sheetrun, or that
   sheetrun is gone.

A run is only ever called over (Lost) when none of them holds it, so neither a
second ``sheetrun run`` nor ``sheetrun sync`` takes a row that a live runner,
wrapper or script still has.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from runner.core import procs
from runner.core.columns import Status
from runner.core.records import ExitRecord, Launcher
from runner.core.rundir import HEARTBEAT_STALE_S, RunDir, read_json_quietly
from runner.slurm import INFO_NAME, SlurmClient, SlurmError
from runner.slurm.client import lookup
from runner.slurm.states import row_status


@dataclass
class Verdict:
    status: str | None         # None: the run is still going; else what the row should say
    reason: str
    record: ExitRecord | None = None

    @property
    def active(self) -> bool:
        return self.status is None


def holder_text(claim: Launcher) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(claim.claimed))
    return f"sheetrun pid {claim.pid} on {claim.host}, claimed at {when}"


def launcher_alive(claim: Launcher) -> bool:
    """Is the sheetrun that claimed a run still alive?"""
    if not claim:
        return False
    if claim.host == socket.gethostname():
        return procs.alive(claim.pid, claim.pid_started)
    try:                           # another host: its launch record's heartbeat
        age = time.time() - os.stat(claim.launch_file).st_mtime
    except OSError:
        return False
    return age < HEARTBEAT_STALE_S


def stnd_verdict(row, root: str) -> Verdict:
    """A row stnd left Submitted or Running (it has no sheetrun run id): its run is still going
    while its log (stdout.txt / stderr.txt in the run folder stnd wrote into the row) changes."""
    folder = row.get("run_folder")
    folder = os.path.join(root, folder) if folder else ""
    ages = []
    for name in ("stdout.txt", "stderr.txt"):
        try:
            ages.append(time.time() - os.stat(os.path.join(folder, name)).st_mtime)
        except OSError:
            pass
    if ages and min(ages) < HEARTBEAT_STALE_S:
        return Verdict(None, f"stnd's run is still writing its log in {folder}")
    left = row.get("status")
    if ages:
        return Verdict(Status.LOST, f"left {left} by stnd; its log in {folder} has not changed for "
                                    f"{min(ages) / 60:.0f} min")
    return Verdict(Status.LOST, f"left {left} by stnd, and no log of its run was found")


def slurm_info(rd: RunDir) -> dict | None:
    """The SLURM job of a run folder (written at submission), or None for local runs."""
    return read_json_quietly(rd.file(INFO_NAME))


def local_verdict(rd: RunDir, run_id: str) -> Verdict:
    if not os.path.isdir(rd.path):
        return Verdict(Status.LOST, f"run folder {rd.path} is missing")
    record = rd.read_exit()
    if record:
        return Verdict(record.status, "exit record", record)
    here = socket.gethostname()
    wrapper = rd.read_wrapper()
    if wrapper:
        pid = wrapper.pid
        age = rd.heartbeat_age()
        if wrapper.host != here:
            if age is not None and age > HEARTBEAT_STALE_S:
                return Verdict(Status.LOST, f"no heartbeat from {wrapper.host} for {age:.0f}s")
            return Verdict(None, f"running on {wrapper.host}")
        if procs.alive(pid, wrapper.pid_started):
            if age is not None and age > HEARTBEAT_STALE_S:
                return Verdict(None, f"process {pid} alive but heartbeat {age:.0f}s old")
            return Verdict(None, f"still running (pid {wrapper.child_pid or pid}, run by pid {pid})")
        left = procs.job_processes(run_id, rd.processes)
        if left:
            pids = ", ".join(str(p.pid) for p in left[:5])
            return Verdict(None, f"its job wrapper (pid {pid}) is gone but {len(left)} of its processes "
                                 f"still run (pid {pids}); 'sheetrun cancel' ends them")
        record = rd.read_exit()            # it may have ended between the two looks
        if record:
            return Verdict(record.status, "exit record", record)
        return Verdict(Status.LOST, f"job process {pid} ended without an exit record (killed?)")
    claim = rd.launcher()
    if launcher_alive(claim):
        return Verdict(None, f"queued in a live sheetrun ({holder_text(claim)})")
    if rd.cancel_requested():
        return Verdict(Status.CANCELLED, "cancelled before it started")
    return Verdict(Status.LOST, "never started: the sheetrun that claimed it "
                                f"(launcher pid {claim.pid}) is gone")


def slurm_verdict(rd: RunDir, job_id: str, states: dict) -> Verdict:
    """Like :func:`local_verdict`, for a SLURM job, from one ``squeue`` snapshot (``states``)."""
    record = rd.read_exit()
    state = lookup(states, job_id)
    if state is None:
        if record:
            return Verdict(record.status, "exit record", record)
        return Verdict(Status.LOST, f"SLURM job {job_id} is gone (finished long ago, or purged) "
                                    "and left no exit record")
    new, reason = row_status(state.state, state.reason, record)
    if new is None:
        return Verdict(None, f"SLURM job {job_id}: {reason}")
    return Verdict(new, reason, record)


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


def verdict(rd: RunDir, run_id: str, client: SlurmClient | None = None) -> Verdict:
    """Where the run of one row stands (SLURM is asked through ``client``'s cached snapshot)."""
    info = slurm_info(rd) if os.path.isdir(rd.path) else None
    if info:
        try:
            return slurm_verdict(rd, info["job_id"], (client or default_client()).states())
        except SlurmError as exc:   # SLURM cannot be asked: never start a row twice on a guess
            return Verdict(None, f"SLURM cannot be asked ({exc})")
    return local_verdict(rd, run_id)
