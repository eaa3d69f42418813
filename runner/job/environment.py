"""Where a job runs, as one object (as submitit's ``JobEnvironment``): read once from the
environment its process was started with — its SLURM job, whether SLURM runs it again, the CPUs
it was given — and asked why SLURM signalled it."""
from __future__ import annotations

import os
from dataclasses import dataclass

from runner.core.columns import Status

# the thread-count variables sheetrun sets for a job (local: cores / jobs; SLURM: --cpus-per-task)
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def slurm_job_id() -> str | None:
    """``<array>_<task>`` (or the plain job id) when running inside a SLURM job."""
    env = os.environ
    if "SLURM_ARRAY_JOB_ID" in env and "SLURM_ARRAY_TASK_ID" in env:
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")


def slurm_stop_reason() -> tuple[str, str] | None:
    """Why SLURM signalled this job, when it was not a plain cancel: (status, error).

    Asked once, right after the signal: a time limit shows as Reason=TimeLimit, a
    requeue (the node went down, preemption with requeue) as the job already PENDING.
    """
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id:
        return None
    from runner.slurm.client import SlurmClient, SlurmError

    try:
        info = SlurmClient(timeout_s=10).job_info(job_id)
    except SlurmError:
        return None
    reason, state = info.get("Reason", ""), info.get("JobState", "")
    if state in ("PENDING", "REQUEUED", "REQUEUE_HOLD"):      # stopped in order to run again
        return Status.SUBMITTED, "requeued by SLURM (node failure or preemption); it will run again"
    if reason == "TimeLimit" or state == "TIMEOUT":
        return Status.TIMEOUT, f"time limit reached (TimeLimit={info.get('TimeLimit', '?')})"
    if "Preempt" in reason or state == "PREEMPTED":
        return Status.CANCELLED, "preempted by SLURM"
    if state == "CANCELLED":              # scancel's signal reached the command before this wrapper
        return Status.CANCELLED, "cancelled (scancel)"
    return None


def thread_env(job_env: dict) -> dict:
    """Under SLURM, thread counts follow --cpus-per-task unless the row set them."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if not cpus:
        return {}
    return {var: cpus for var in THREAD_VARS if var not in job_env}


@dataclass(frozen=True)
class JobEnvironment:
    slurm_job_id: str | None = None     # "<array>_<task>" (or the plain job id) inside a SLURM job
    requeued: bool = False              # SLURM runs this job again (SLURM_RESTART_COUNT > 0)

    @classmethod
    def current(cls) -> "JobEnvironment":
        return cls(slurm_job_id(), int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0)

    @property
    def in_slurm(self) -> bool:
        return self.slurm_job_id is not None
