"""The backend-neutral core: an Executor launches a prepared run folder as a Job.

Backends live in their own packages (``runner.local``; SLURM later) and only
implement these two classes. The scheduler never needs to know which one runs.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

from runner.rundir import RunDir


class Job(ABC):
    """A launched row."""

    def __init__(self, run_dir: RunDir, job_id: str):
        self.run_dir = run_dir
        self.job_id = job_id

    @abstractmethod
    def done(self) -> bool:
        """True once the job's wrapper has exited (non-blocking)."""

    @abstractmethod
    def cancel(self) -> None:
        """Ask the job to stop; its wrapper ends the command and records Cancelled."""

    @abstractmethod
    def kill(self) -> None:
        """Stop the job and everything it started, now."""

    @property
    def exit_record(self) -> dict | None:
        return self.run_dir.read_exit()


class Executor(ABC):
    name = "executor"

    @abstractmethod
    def submit(self, run_dir: RunDir) -> Job:
        """Start the job wrapper for a prepared run folder."""
