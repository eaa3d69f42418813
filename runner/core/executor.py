"""The backend-neutral core: an Executor runs prepared run folders as Jobs.

Backends live in their own packages (``runner.local``, ``runner.slurm``) and implement these two
classes. The launch (``runner.launch.pipeline``) claims rows and prepares their run folders the
same way for every backend; then its own loop drives the executor through this contract: the
local follower (``runner.launch.follow``) submits rows as slots and dependencies allow and
follows their events until they end; for a batch scheduler (``runner.launch.submit``) it submits
them all, grouped, and leaves them to it.
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
    """A backend, as the launch's loop uses it: :meth:`open` for a launch, :meth:`submit` prepared
    run folders (one, or many at once), :meth:`poll` their events (waiting on :meth:`fileno`
    between polls), :meth:`kill_all` when the jobs do not answer, :meth:`close` at the end.
    ``runs_here``: its jobs run on this machine and report events, so the launch follows them to
    their end; a batch scheduler's (SLURM) report only through their run folders."""

    name = "executor"
    runs_here = False

    def open(self, record_path: str) -> None:
        """Jobs of the launch whose record is ``record_path`` come next (a backend may log beside it)."""

    @abstractmethod
    def submit(self, run_dir: RunDir, run_id: str = "", env: dict | None = None) -> Job:
        """Start the job of one prepared run folder (``env``: variables chosen at start time)."""

    def submit_many(self, run_dirs: list[RunDir], options: dict[str, str], after: list[str] = ()) -> list[Job]:
        """Prepared run folders with the same scheduler ``options``, each started once the jobs
        ``after`` have completed (a batch scheduler: one submission for all)."""
        return [self.submit(rd) for rd in run_dirs]

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
