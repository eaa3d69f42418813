"""The backend-neutral core: an Executor runs prepared run folders as Jobs.

Backends live in their own packages (``runner.local``, ``runner.slurm``) and
implement these two classes. The launch pipeline (``runner.launch.pipeline``) claims
rows and prepares their run folders the same way for every backend, then
hands them to :meth:`Executor.start`: the local backend runs them here through
its follower loop (``runner.local.scheduler``), the SLURM backend submits them as
job arrays.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

from runner.core.records import ExitRecord
from runner.core.rundir import RunDir


class Job(ABC):
    """A launched row."""

    def __init__(self, run_dir: RunDir, job_id: str):
        self.run_dir = run_dir
        self.job_id = job_id

    @abstractmethod
    def done(self) -> bool:
        """True once the job's wrapper has exited (non-blocking)."""

    @abstractmethod
    def cancel(self, reason: str = "cancelled") -> None:
        """Ask the job to stop; its runner ends the command and records Cancelled."""

    @abstractmethod
    def kill(self) -> None:
        """Stop the job and everything it started, now."""

    @property
    def exit_record(self) -> ExitRecord | None:
        return self.run_dir.read_exit()


class Executor(ABC):
    """A backend. What the launch's follower uses of it: :meth:`submit` a prepared run folder,
    :meth:`poll` its jobs' events (waiting on :meth:`fileno` between polls), :meth:`kill_all` when
    the jobs do not answer, :meth:`close` at the end. A backend whose jobs report only through
    their run folders (SLURM) has no events: the defaults say so."""

    name = "executor"

    @abstractmethod
    def submit(self, run_dir: RunDir, run_id: str = "", env: dict | None = None) -> Job:
        """Start the job of one prepared run folder (``env``: variables chosen at start time)."""

    @abstractmethod
    def start(self, launch, rows) -> None:
        """Run the prepared rows of ``launch`` (a :class:`runner.launch.pipeline.Launch`)."""

    def poll(self) -> list[tuple[str, dict]]:
        """``(run id, message)`` for each event since the last poll (a job started, a job ended)."""
        return []

    def fileno(self) -> int | None:
        """A file descriptor that becomes readable when there are events (None: poll on a timer)."""
        return None

    def kill_all(self) -> None:
        """Stop every job of this executor and everything they started, now."""

    def close(self) -> None:
        """No more jobs will be submitted."""
