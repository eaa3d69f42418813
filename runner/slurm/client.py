"""The SLURM commands sheetrun uses, as argv lists (never a shell), with retries and counts.

- ``sbatch``: submit a batch script; temporary failures (controller busy or
  unreachable, socket timeouts) are retried with exponential backoff, other
  errors are raised as :class:`SbatchError` with sbatch's own message.
- ``squeue``: one call returns the state of every job of this user that
  SLURM still remembers (finished jobs stay for MinJobAge), array tasks one
  per line. :meth:`SlurmClient.states` caches it for ``min_poll_s`` so that
  however many rows ask, there is at most one ``squeue`` per poll.
- ``scancel``: one call for any number of jobs.
- ``sacct``: where the cluster keeps accounting, one call for the jobs squeue
  no longer lists (finished more than MinJobAge ago); never needed.
- ``scontrol show config``: read once, for MaxArraySize and accounting.

``calls`` counts every scheduler command made (the bench reports it).
"""
from __future__ import annotations

import getpass
import re
import subprocess
import time
from dataclasses import dataclass

from runner.core.errors import BackendError

TEMPORARY = re.compile(
    r"temporar|try again|timed? ?out|unable to contact|connection refused|socket|"
    r"slurmctld.*(busy|not responding)|resource temporarily unavailable|too many pending rpcs",
    re.IGNORECASE)


class SlurmError(BackendError):
    """A SLURM command failed; ``str()`` is its message."""
    backend = "SLURM"


class SbatchError(SlurmError):
    pass


@dataclass
class JobState:
    job_id: str          # "123" or "123_4" for an array task
    state: str           # SLURM's long name: PENDING, RUNNING, COMPLETED, TIMEOUT, ...
    reason: str          # why pending / why it ended ("None" when there is nothing to say)
    exit_code: str = ""


class SlurmClient:
    def __init__(self, retries: int = 4, backoff_s: float = 1.0, min_poll_s: float = 2.0,
                 timeout_s: float = 60.0):
        self.retries = retries
        self.backoff_s = backoff_s
        self.min_poll_s = min_poll_s
        self.timeout_s = timeout_s
        self.calls = 0
        self._states: dict[str, JobState] | None = None
        self._states_at = 0.0
        self._config: dict[str, str] | None = None

    # -- running commands ----------------------------------------------------------------
    def _run(self, argv: list[str], retry: bool = True) -> str:
        attempt = 0
        while True:
            self.calls += 1
            try:
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout_s,
                                      stdin=subprocess.DEVNULL)
            except FileNotFoundError:
                raise SlurmError(f"{argv[0]} not found: is SLURM installed on this machine?") from None
            except subprocess.TimeoutExpired:
                message = f"{argv[0]} did not answer in {self.timeout_s:.0f}s"
            else:
                if proc.returncode == 0:
                    return proc.stdout
                message = " ".join((proc.stderr.strip() or proc.stdout.strip() or
                                    f"{argv[0]} exited with code {proc.returncode}").split())
            if retry and attempt < self.retries and (TEMPORARY.search(message) or "did not answer" in message):
                time.sleep(self.backoff_s * 2 ** attempt)
                attempt += 1
                continue
            raise SlurmError(message)

    # -- commands ------------------------------------------------------------------------
    def sbatch(self, options: list[str], script: str) -> str:
        """Submit ``script`` with ``options`` (``--name=value`` strings); returns the job id."""
        try:
            out = self._run(["sbatch", "--parsable", *options, script])
        except SlurmError as exc:
            raise SbatchError(str(exc)) from None
        job_id = out.strip().split(";")[0]          # "id" or "id;cluster"
        if not job_id.isdigit():
            raise SbatchError(f"unexpected sbatch output {out.strip()!r}")
        return job_id

    def states(self, fresh: bool = False) -> dict[str, JobState]:
        """Every job SLURM remembers for this user, by id; at most one squeue per ``min_poll_s``."""
        now = time.monotonic()
        if fresh or self._states is None or now - self._states_at >= self.min_poll_s:
            out = self._run(["squeue", "--noheader", "--array", "--states=all",
                             f"--user={getpass.getuser()}", "--format=%i|%T|%r"])
            states = {}
            for line in out.splitlines():
                parts = line.strip().split("|")
                if len(parts) == 3:
                    states[parts[0]] = JobState(parts[0], parts[1], parts[2])
            self._states, self._states_at = states, time.monotonic()
        return self._states

    def accounting(self) -> bool:
        """True when the cluster keeps job accounting (``sacct`` can answer)."""
        return self.config().get("AccountingStorageType", "accounting_storage/none") != "accounting_storage/none"

    def accounted_states(self, job_ids: list[str]) -> dict[str, JobState]:
        """Final states from ``sacct`` (one call) for jobs squeue has forgotten; {} without accounting."""
        if not job_ids or not self.accounting():
            return {}
        out = self._run(["sacct", "--noheader", "--parsable2", "--allocations", "--array",
                         "--format=JobID,State,Reason,ExitCode", f"--jobs={','.join(sorted(set(job_ids)))}"])
        states = {}
        for line in out.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 4:
                states[parts[0]] = JobState(parts[0], parts[1].split()[0], parts[2], parts[3])
        return states

    def cancel(self, job_ids: list[str]) -> None:
        if job_ids:
            self._run(["scancel", *job_ids])
            self._states = None

    def config(self) -> dict[str, str]:
        if self._config is None:
            out = self._run(["scontrol", "show", "config"])
            self._config = {}
            for line in out.splitlines():
                key, sep, value = line.partition("=")
                if sep:
                    self._config[key.strip()] = value.strip()
        return self._config

    def max_array_size(self) -> int:
        """The most tasks one array may have (task ids run 0 .. MaxArraySize - 1)."""
        try:
            return max(1, int(self.config().get("MaxArraySize", "1001")))
        except ValueError:
            return 1001

    def job_info(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` of one job as key -> value (the job wrapper asks once, when signalled)."""
        out = self._run(["scontrol", "show", "job", "--oneliner", job_id], retry=False)
        return dict(item.split("=", 1) for item in out.split() if "=" in item)


def lookup(states: dict[str, JobState], job_id: str) -> JobState | None:
    """The state of ``<array>_<task>``; array tasks SLURM has not split off yet (pending, or
    cancelled while pending) are listed under the array's own id."""
    state = states.get(job_id)
    if state is None and "_" in job_id:
        state = states.get(job_id.split("_")[0])
    return state
