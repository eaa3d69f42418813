"""Running one row's command and recording how it went.

:class:`JobRun` is one job: it starts the command in its own session, set to
die with whoever started it (SIGKILL), with stdout/stderr going to the run
folder — unless ``sheetrun cancel`` asked first; it stops it on request
(SIGTERM, then SIGKILL after a grace period); and when the command has ended,
it writes ``metrics.json`` and the exit record (``exit.json``) and delivers
the final status, exit code, walltime, error and metrics.

Two things run JobRuns:

- the local job host (``runner.local.host``), for ``sheetrun run``: one
  process per launch runs all its jobs, and the runner writes their rows
  (the host sends it "started" and "exit" messages, the exit record included,
  so a full disk cannot lose how a job ended);
- :func:`run_job`, one job per process, which writes its own row: a SLURM
  task runs ``python -m runner.jobwrapper RUN_FOLDER``.

Whoever writes the row, :class:`RowChannel` carries the updates; when the
runner is gone, every job switches to writing its own row (Running, its
metrics so far, then the final values). Writes that fail are kept in
``pending_updates.jsonl`` for ``sheetrun sync``; the sheet never fails a job,
and neither does a run folder that cannot be written (disk full): the row says
what could not be saved, and why. Imports stay light (no pandas, torch or
gspread).
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback

from runner.core import columns as C
from runner.core import credentials, procs
from runner.core.columns import Status
from runner.core.errors import describe
from runner.core.records import ExitRecord, JobRecord, WrapperRecord
from runner.core.rundir import (DEFAULT_LOG_LIMIT, FORWARD_INTERVAL_S, HEARTBEAT_INTERVAL_S, RunDir, cap_log, read_json,
                                size_text, write_json)
from runner.core.sheetref import SheetRef
from runner.job import failure
from runner.job.channel import RowChannel, follower_alive
from runner.job.failure import signal_name
from runner.job.results import load_results, one_line
from runner.job.environment import JobEnvironment, slurm_stop_reason, thread_env
from runner.rowspec import stnd_logging

KILL_GRACE_S = 5.0
MAX_PENDING_LINE = 65536        # take_last_dict: how much of an unfinished stdout line is kept
REMOTE_FORWARD_INTERVAL_S = 10.0
LOW_DISK_BYTES = 1 << 20


def disk_full(path: str) -> bool:
    try:
        return shutil.disk_usage(path).free < LOW_DISK_BYTES
    except OSError:
        return False


class JobRun:
    """One row's command: start it, stop it on request, and record how it ended.

    Shared by the single-job wrapper (:func:`run_job`, what a SLURM task runs)
    and the local job host (``runner.local.host``), which runs many at once.
    The caller waits for the command (``proc``) and calls :meth:`finish`.
    """

    def __init__(self, run_dir: str, send=None, requeued: bool = False, extra_env: dict | None = None,
                 kind: str = "wrapper", in_slurm: bool = False):
        self.rd = RunDir(run_dir)
        self.kind = kind                            # "wrapper": this process runs only this job; "host"
        self.processes = procs.ProcessLog(self.rd.processes)   # every process of the job seen so far
        self.extra_env = dict(extra_env or {})      # chosen at start time (its devices)
        self.job = JobRecord.from_json(read_json(self.rd.job))
        self.run_id = self.job.run_id
        self.requeued = requeued
        self.channel = RowChannel(self.rd, self.job, send, requeued)
        self.proc: subprocess.Popen | None = None
        self.started = time.time()
        self.cancelled: list[str] = []           # why it was asked to stop (first reason wins)
        self.launch_error = ""
        self.folder_problems: list[str] = []     # what could not be written into the run folder, and why
        self.kill_at: float | None = None        # when a stop request escalates to SIGKILL
        self.stop_signal = 0                     # the last signal sent to stop it
        self.time_limit_s = self.job.time_limit_s
        self.timed_out = False
        self.take_last = {c: re.compile(r) for c, r in self.job.take_last.items()}
        self._stdout_offset = 0
        self._stdout_tail = ""                   # the last, unfinished line read so far
        self._taken: dict = {}
        stnd_csv = self.job.stnd_row_csv
        self.stnd_row = stnd_logging.LoggedRow(stnd_csv) if stnd_csv else None
        self.in_slurm = in_slurm                 # a SLURM task: ask SLURM why it was signalled
        self.logs_cut: dict[str, int] = {}       # log -> bytes cut from its middle (log_limit)
        self.last_forward = 0.0                  # when its metrics were last forwarded to the sheet

    def save(self, what: str, fn) -> None:
        try:
            fn()
        except OSError as exc:
            note = f"could not write {what}: {describe(exc)}"
            if note not in self.folder_problems:
                self.folder_problems.append(note)

    def start(self, job_id: str | None = None) -> bool:
        """Start the command (False if it did not start: cancelled first, or it cannot be run)."""
        rd, job = self.rd, self.job
        if self.requeued:            # SLURM runs this job again: the earlier attempt's ending is void
            for stale in (rd.exit_record, rd.metrics):
                if os.path.exists(stale):
                    self.save(os.path.basename(stale), lambda p=stale: os.unlink(p))
        if rd.cancel_requested():            # 'sheetrun cancel' came first: never start
            self.cancelled.append("sheetrun cancel, before it started")
        else:
            env = credentials.job_environment(dict(os.environ))     # never sheetrun's own credentials
            env.update(thread_env(job.env))
            env.update(job.env)
            env.update(self.extra_env)
            env.update({"SHEETRUN_RUN_DIR": rd.path, "SHEETRUN_SHEET": job.sheet,
                        procs.RUN_ID_VAR: self.run_id})
            try:
                self.proc = _start_command(rd, job, env)
            except OSError as exc:
                self.launch_error = f"could not start {job.argv[0]}: {describe(exc)}"
        self.job_id = job_id or (str(self.proc.pid) if self.proc else "")
        me = procs.identity()
        self.host = me["host"]
        info = WrapperRecord(pid=me["pid"], pid_started=me.get("pid_started"), host=me["host"], kind=self.kind,
                             started=self.started, job_id=self.job_id, child_pid=self.proc and self.proc.pid)
        if self.proc is not None:             # the command itself dies with us: only what it starts
            self.processes.known.add(self.proc.pid)   # is written down (and looked up by start time)
        self.save("wrapper.json", lambda: write_json(rd.wrapper, info.to_json()))
        if self.proc is not None:
            self.channel.started({C.STATUS: Status.RUNNING, C.JOB_ID: self.job_id, C.ERROR: ""})
        return self.proc is not None

    def ended_on_its_own(self) -> bool:
        """The command has exited by itself — an exit status, not a signal — (its exit not yet
        collected, or just collected): a stop or time limit that comes now is too late, and the
        job is judged by its own exit. One killed by a signal (SLURM's scancel reaches every
        process of the job at once) did not end on its own."""
        if self.proc is None:
            return False
        if self.proc.returncode is not None:
            return self.proc.returncode >= 0
        try:
            info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:            # collected by another thread this instant
            return self.proc.returncode is not None and self.proc.returncode >= 0
        except OSError:
            return False
        return info is not None and info.si_code == os.CLD_EXITED

    def stop(self, reason: str, grace_s: float = KILL_GRACE_S) -> bool:
        """Ask the command to stop (SIGTERM to its session), SIGKILL after ``grace_s``; False when
        it had already ended on its own (nothing is asked, and it is judged by its exit)."""
        if self.ended_on_its_own():
            return False
        first = not self.cancelled and self.kill_at is None
        if not self.cancelled:
            self.cancelled.append(reason)
        if self.proc is not None and self.proc.returncode is None:
            _end_command(self.proc, signal.SIGTERM)
            if first and self.ended_on_its_own():
                # it exited by itself between the look above and the signal (a signal reaching a live
                # process would have killed it, or left it running its handler): judged by its exit
                self.cancelled.clear()
                return False
            self.stop_signal = self.stop_signal or signal.SIGTERM
            if self.kill_at is None:
                self.kill_at = time.monotonic() + grace_s
        return True

    def escalate(self) -> None:
        """SIGKILL a command that ignored its stop request for the grace period."""
        if self.kill_at is not None and time.monotonic() >= self.kill_at and self.proc is not None:
            _end_command(self.proc, signal.SIGKILL)
            self.stop_signal = signal.SIGKILL

    def collect(self, final: bool = False) -> None:
        """Report what the program logged stnd's ways since the last look: ``take_last_dict``
        matches in its stdout, and cells its stnd logger wrote (``final``: it has ended)."""
        self.cap_logs()
        self.scan_stdout(final)
        if self.stnd_row is not None:
            self._report(self.stnd_row.changes(final))

    def _report(self, values: dict) -> None:
        if values:
            line = json.dumps({"t": time.time(), "values": values}, ensure_ascii=False) + "\n"
            self.save("metrics.jsonl", lambda: _append(self.rd.metrics_log, line))

    def scan_stdout(self, final: bool = False) -> None:
        """``take_last_dict``: the last match of each regex in the program's stdout so far is that
        column's value (stnd's runner logs it the same way); new values are reported.
        ``final``: the program has ended, its last line counts even without a newline."""
        if not self.take_last:
            return
        try:
            with open(self.rd.stdout, "rb") as f:
                f.seek(self._stdout_offset)
                data = f.read()
        except OSError:
            data = b""
        self._stdout_offset += len(data)
        text = self._stdout_tail + data.decode("utf-8", "replace")
        cut = len(text) if final else text.rfind("\n") + 1
        lines, self._stdout_tail = text[:cut], text[cut:][-MAX_PENDING_LINE:]
        if not lines:
            return
        found = {}
        for column, regex in self.take_last.items():
            matches = regex.findall(lines)
            if matches:
                value = matches[-1]
                found[column] = str(value) if isinstance(value, tuple) else value
        changed = {c: v for c, v in found.items() if self._taken.get(c) != v}
        self._taken.update(changed)
        self._report(changed)

    def watch(self, now: float) -> None:
        """One tick of a running job: its time limit (SLURM keeps a task's own), a stop escalated
        after its grace, the output and metrics it wrote since the last tick."""
        if not self.in_slurm:
            self.check_time_limit(now)
            self.escalate()
        self.collect()

    def forward_due(self, now: float, interval_s: float) -> bool:
        """Whether this job's metrics are due at ``now``, forwarded every ``interval_s``."""
        if now - self.last_forward < interval_s:
            return False
        self.last_forward = now
        return True

    def check_time_limit(self, now: float) -> None:
        """Stop the command once it has run for its time limit (it then ends Timeout)."""
        if (self.time_limit_s and not self.cancelled and self.proc is not None
                and now - self.started >= self.time_limit_s):
            self.timed_out = self.stop(f"time limit {self.job.time_limit}")

    def heartbeat(self, now: float) -> None:
        self.save("heartbeat", lambda: _touch(self.rd.heartbeat, now))

    def _ending(self, code: int | None, results_problem: str) -> tuple[str, str, int | None]:
        """(status, error, the exit code the row shows) of a command that exited with ``code``."""
        if self.timed_out:
            return Status.TIMEOUT, f"time limit reached ({self.job.time_limit})", \
                -(self.stop_signal or signal.SIGTERM)
        if self.cancelled or (code is not None and code != 0 and self.rd.cancel_requested()):
            reason = self.cancelled[0] if self.cancelled else "sheetrun cancel"
            status, error = ((slurm_stop_reason() if self.in_slurm else None)
                             or (Status.CANCELLED, f"cancelled ({reason})"))
            # the same for every script, however it handles SIGTERM
            return status, error, (None if code is None else -(self.stop_signal or signal.SIGTERM))
        if self.launch_error:
            return Status.FAILED, self.launch_error, 127
        if code == 0:
            return Status.COMPLETED, results_problem, code
        if self.in_slurm and code is not None and code < 0:
            stopped = slurm_stop_reason()        # scancel's signal reached the command before this wrapper
            if stopped is not None:
                return stopped[0], stopped[1], code
        return Status.FAILED, failure.summarize(code, failure.tail(self.rd.stderr), failure.tail(self.rd.stdout)), code

    def cap_logs(self) -> None:
        """Keep stdout.log and stderr.log to the job's ``log_limit``: their head and newest tail."""
        limit = self.job.log_limit or DEFAULT_LOG_LIMIT
        for name, path in (("stdout.log", self.rd.stdout), ("stderr.log", self.rd.stderr)):
            try:
                cut, moved = cap_log(path, limit)
            except OSError:
                continue
            if cut:
                self.logs_cut[name] = self.logs_cut.get(name, 0) + cut
                if name == "stdout.log":
                    self._stdout_offset = moved(self._stdout_offset)

    def logs_cut_note(self) -> str:
        cuts = ", ".join(f"{name}: {size_text(n)} cut from its middle" for name, n in self.logs_cut.items())
        return f"{cuts} (log_limit {size_text(self.job.log_limit or DEFAULT_LOG_LIMIT)})"

    def finish(self, code: int | None) -> ExitRecord:
        """The command has exited with ``code`` (None: it never started): record how it went."""
        rd = self.rd
        ended = time.time()
        self.collect(final=True)
        metrics, results_problem = load_results(rd)
        script_code = code
        status, error, code = self._ending(code, results_problem)
        if self.logs_cut:
            error = "; ".join([error] * bool(error) + [self.logs_cut_note()])
        self.save("metrics.json", lambda: write_json(rd.metrics, metrics))
        record = ExitRecord(status=status, exit_code=code, script_exit_code=script_code, error=error,
                            started=self.started, ended=ended, walltime_s=ended - self.started,
                            host=getattr(self, "host", ""))
        self.save("exit.json", lambda: write_json(rd.exit_record, record.to_json()))
        problems = self.folder_problems
        if (problems or code) and disk_full(rd.path) and not any("disk full" in p for p in problems):
            problems.append(f"the run folder's disk is full ({rd.path})")
        if problems:
            record.error = "; ".join([error] * bool(error) + ["run folder: " + problems[0]])
        record.error = one_line(record.error)
        # The exit record is the truth: it also corrects a row that sync marked Lost meanwhile.
        self.channel.finished(record, metrics)
        return record


def run_job(run_dir: str) -> int:
    """Run one job to its end, writing its own row (a SLURM task, or by hand)."""
    procs.become_subreaper()            # orphans of the command come to us, not to init
    where = JobEnvironment.current()
    run = JobRun(run_dir, requeued=where.requeued, in_slurm=where.in_slurm)
    run.channel.followed = lambda: follower_alive(run.job)

    def on_signal(signum, _frame):
        run.stop(signal_name(signum))
        if run.proc is not None:            # escalate if the command ignores SIGTERM
            timer = threading.Timer(KILL_GRACE_S + 0.05, run.escalate)
            timer.daemon = True
            timer.start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stop = threading.Event()
    # a remote sheet has a per-minute request quota shared by every job of the launch: each forwards
    # at the pace its launch set for it (job.json's sheet_interval_s: slower the more jobs it has)
    remote = SheetRef.parse(run.job.sheet).remote
    forward_s = run.job.sheet_interval_s or (REMOTE_FORWARD_INTERVAL_S if remote else FORWARD_INTERVAL_S)
    tick_s = min(forward_s, 1.0 if remote else FORWARD_INTERVAL_S)
    # paced: Running and the metrics go with the first write, at a random moment of the first interval,
    # so that an array's jobs starting together do not all write at once
    run.channel.paced = remote and bool(run.job.sheet_interval_s)
    phase = random.uniform(0, forward_s) if run.channel.paced else 0.0

    def watch() -> None:
        """Heartbeat, time limit, and forward the metrics the script reports."""
        last_beat, run.last_forward = run.started, run.started - phase
        while not stop.wait(tick_s):
            now = time.time()
            if now - last_beat >= HEARTBEAT_INTERVAL_S:
                run.heartbeat(now)
                last_beat = now
            run.watch(now)
            if run.forward_due(now, forward_s):
                run.channel.forward_metrics()
            run.processes.add(procs.tree(os.getpid())[1:])     # all of ours are the job's

    code = None
    if run.start(where.slurm_job_id):
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        if run.cancelled:                    # a signal arrived before the command existed
            run.stop(run.cancelled[0])
        code = run.proc.wait()               # blocking: returns the moment the command exits
        # whatever the command left behind: its session, and orphans re-parented to us
        _end_command(run.proc, signal.SIGKILL)
        procs.end_orphans()
        stop.set()
        watcher.join()
    record = run.finish(code)
    return 0 if record.status == Status.COMPLETED else 1


def _start_command(rd: RunDir, job: JobRecord, env: dict) -> subprocess.Popen:
    """The row's command, in its own session, set to die with this wrapper (SIGKILL)."""
    prefix = list(job.exec_prefix or [])
    with open(rd.stdout, "ab") as out, open(rd.stderr, "ab") as err:
        if prefix:
            try:
                return subprocess.Popen(prefix + job.argv, cwd=job.cwd, env=env, stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=err, start_new_session=True)
            except FileNotFoundError:       # no such tool on this host (a SLURM node): do it here
                pass
        return subprocess.Popen(job.argv, cwd=job.cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, start_new_session=True,
                                preexec_fn=procs.die_with_parent(os.getpid()))


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _touch(path: str, now: float) -> None:
    with open(path, "w") as f:
        f.write(f"{now:.3f}\n")


def _end_command(proc: subprocess.Popen, sig: int) -> None:
    """Signal the command's process group (it runs in its own session)."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m runner.jobwrapper RUN_FOLDER", file=sys.stderr)
        return 2
    try:
        return run_job(argv[0])
    except Exception:
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
