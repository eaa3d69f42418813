"""SLURM's job states, as row statuses.

``row_status(state, reason, exit_record)`` decides what a row shows for a job
SLURM reports in ``state``. The job wrapper's exit record (written by the job
itself) is the most precise account of how the command ended, so it wins for
ordinary endings; SLURM's word wins where the wrapper cannot know (the node
failed, the job ran out of its time or memory and was killed before
recording anything), while the job is pending or requeued, and when an
attempt that recorded "requeued" never ran again.
"""
from __future__ import annotations

from runner.core.columns import Status
from runner.core.records import ExitRecord

WAITING = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD",
           "SUSPENDED", "STOPPED", "RESIZING", "SIGNALING", "STAGE_OUT"}
RUNNING = {"RUNNING", "COMPLETING"}
# ended, and what the row says when the job left no exit record
ENDED = {
    "COMPLETED": (Status.LOST, "SLURM reports COMPLETED but the job wrapper left no exit record"),
    "FAILED": (Status.FAILED, "the batch job failed before the job wrapper could record it"),
    "CANCELLED": (Status.CANCELLED, "cancelled in SLURM"),
    "TIMEOUT": (Status.TIMEOUT, "time limit reached (SLURM TIMEOUT)"),
    "DEADLINE": (Status.TIMEOUT, "deadline reached (SLURM DEADLINE)"),
    "OUT_OF_MEMORY": (Status.FAILED, "out of memory (SLURM OUT_OF_MEMORY)"),
    "NODE_FAIL": (Status.FAILED, "the node failed (SLURM NODE_FAIL)"),
    "BOOT_FAIL": (Status.FAILED, "the node failed to boot (SLURM BOOT_FAIL)"),
    "PREEMPTED": (Status.CANCELLED, "preempted (SLURM PREEMPTED)"),
    "SPECIAL_EXIT": (Status.FAILED, "SLURM SPECIAL_EXIT"),
    "REVOKED": (Status.CANCELLED, "revoked (SLURM REVOKED)"),
}
# SLURM verdicts that overrule a wrapper that only saw a signal and recorded Cancelled
OVERRULE_CANCELLED = {"TIMEOUT", "DEADLINE", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED"}
# pending reasons that mean the job can never start
NEVER_STARTS = {"DependencyNeverSatisfied": "a dependency did not complete",
                "BadConstraints": "the job's constraints can never be met",
                "PartitionNodeLimit": "the job needs more nodes than the partition has",
                "PartitionTimeLimit": "the job's time is over the partition's limit",
                "InvalidAccount": "invalid account", "InvalidQOS": "invalid QOS"}


def row_status(state: str, reason: str, record: ExitRecord | dict | None) -> tuple[str | None, str]:
    """(status for the row, or None to leave it as it is; the reason to show). ``record``: the job's
    exit record, as read (:class:`ExitRecord`) or as ``exit.json`` holds it; None when there is none."""
    if isinstance(record, dict):
        record = ExitRecord.from_json(record)
    state = state.split()[0].rstrip("+") if state else ""
    reason = "" if reason in ("None", "(null)") else reason
    if state in WAITING:
        if state == "PENDING" and reason == "DependencyNeverSatisfied":
            return Status.SKIPPED, f"not run: {NEVER_STARTS[reason]} (SLURM: {reason})"
        if state == "PENDING" and reason in NEVER_STARTS:
            return Status.FAILED, f"{NEVER_STARTS[reason]} (SLURM: {reason})"
        if state.startswith("REQUEUE"):
            return Status.SUBMITTED, "requeued by SLURM" + (f" ({reason})" if reason else "")
        return None, f"{state.lower()}" + (f" ({reason})" if reason else "")
    if state in RUNNING:
        return None, state.lower()
    if state in ENDED:
        status, text = ENDED[state]
        if record and record.status in Status.TERMINAL:
            if record.status == Status.CANCELLED and state in OVERRULE_CANCELLED:
                return status, text
            return record.status, "exit record"
        return status, text + (f"; {reason}" if reason else "")
    return None, f"SLURM state {state or '?'}"
