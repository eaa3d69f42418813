"""Run jobs as local processes, through one job host per launch.

The host (``runner.local.host``) is started once — forked from the runner, or
where ``fork`` is missing (or ``SHEETRUN_SPAWN=exec``) started as
``python -m runner.local.host`` — in its own session (so a Ctrl-C typed at
the terminal reaches only ``sheetrun run``, which then stops the jobs in
order), and runs every job of the launch: a vfork and an exec per job, no
Python process per job. The runner sends it commands and reads its events on
a pipe; the end of that pipe tells the runner at once that the host is gone,
whatever killed it. A host that dies is replaced for the rows still to start;
the rows it was running are settled by the follower.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback

from runner.core import procs
from runner.core.executor import Executor, Job
from runner.core.rundir import RunDir


class LocalJob(Job):
    def __init__(self, executor: "LocalExecutor", run_dir: RunDir, run_id: str):
        super().__init__(run_dir, "")
        self.executor = executor
        self.run_id = run_id
        self.exit_message: dict | None = None    # {"record", "metrics"} once it ended
        self.host_gone = ""                      # why it cannot end normally: its host died

    def done(self) -> bool:
        return self.exit_message is not None or bool(self.host_gone)

    def cancel(self, reason: str = "cancelled") -> None:
        self.executor.send({"op": "stop", "run_id": self.run_id, "reason": reason})

    def kill(self) -> None:
        if not self.executor.send({"op": "kill", "run_id": self.run_id, "reason": "killed"}):
            procs.end_job(self.run_id, self.run_dir.processes)


class _ForkedHost:
    """The forked host process, with the part of Popen's interface the executor uses."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("job host", timeout)
            time.sleep(0.01)
        return self.returncode


class LocalExecutor(Executor):
    name = "local"
    runs_here = True

    def __init__(self, spawn: str | None = None):
        spawn = spawn or os.environ.get("SHEETRUN_SPAWN") or ("fork" if hasattr(os, "fork") else "exec")
        if spawn not in ("fork", "exec"):
            raise ValueError(f"SHEETRUN_SPAWN must be 'fork' or 'exec', not {spawn!r}")
        self.spawn = spawn
        self.host: subprocess.Popen | _ForkedHost | None = None
        self.host_log = os.devnull
        self.jobs: dict[str, LocalJob] = {}
        self._commands_w: int | None = None
        self._events_r: int | None = None
        self._buffer = b""

    def open(self, record_path: str) -> None:
        """The job host logs beside the launch record."""
        self.host_log = os.path.splitext(record_path)[0] + ".host.log"

    # -- the host -------------------------------------------------------------------------------
    def _start_host(self) -> None:
        commands_r, commands_w = os.pipe()
        events_r, events_w = os.pipe()
        try:
            if self.spawn == "fork":
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _become_host(commands_r, events_w, self.host_log)
                self.host = _ForkedHost(pid)
            else:
                with open(self.host_log, "ab") as log:
                    self.host = subprocess.Popen(
                        [sys.executable, "-m", "runner.local.host", "--commands-fd", str(commands_r),
                         "--events-fd", str(events_w)],
                        pass_fds=(commands_r, events_w), stdin=subprocess.DEVNULL, stdout=log,
                        stderr=subprocess.STDOUT, start_new_session=True)
        except BaseException:
            for fd in (commands_w, events_r):
                os.close(fd)
            raise
        finally:
            os.close(commands_r)
            os.close(events_w)
        os.set_blocking(events_r, False)
        self._commands_w, self._events_r, self._buffer = commands_w, events_r, b""

    def send(self, command: dict) -> bool:
        """A command to the host; False if there is no host to take it."""
        if self._commands_w is None:
            return False
        try:
            os.write(self._commands_w, (json.dumps(command) + "\n").encode())
            return True
        except OSError:
            return False

    def submit(self, run_dir: RunDir, run_id: str = "", env: dict | None = None) -> LocalJob:
        if self.host is None:
            self._start_host()
        job = LocalJob(self, run_dir, run_id)
        self.jobs[run_id] = job
        if not self.send({"op": "start", "folder": run_dir.path, "env": env or {}}):
            job.host_gone = "the job host could not be reached"
        return job

    def fileno(self) -> int | None:
        """What to wait on for the host's events (None without a host)."""
        return self._events_r

    def poll(self) -> list[tuple[str, dict]]:
        """The host's events since the last call, as (run id, message)."""
        if self._events_r is None:
            return []
        out, eof = [], False
        while True:
            try:
                chunk = os.read(self._events_r, 65536)
            except BlockingIOError:
                break
            if not chunk:
                eof = True
                break
            self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            run_id = message.get("run_id", "")
            job = self.jobs.get(run_id)
            if job is not None:
                if message.get("event") == "started":
                    job.job_id = str((message.get("values") or {}).get("job_id", ""))
                elif message.get("event") == "exit":
                    job.exit_message = message
                    self.jobs.pop(run_id, None)
            out.append((run_id, message))
        if eof:
            self._host_died()
        return out

    def _host_died(self) -> None:
        """The host is gone: its running jobs cannot report; the next submit starts a new one."""
        host = self.host
        try:
            code = host.wait(timeout=5) if host is not None else None
        except subprocess.TimeoutExpired:
            code = None
        how = (f"killed by {signal.Signals(-code).name}" if code is not None and code < 0
               else f"exit status {code}")
        for job in self.jobs.values():
            if not job.done():
                job.host_gone = f"the job host (pid {host.pid if host else '?'}) died ({how})"
        self.jobs.clear()
        for fd in (self._commands_w, self._events_r):
            if fd is not None:
                os.close(fd)
        self.host, self._commands_w, self._events_r = None, None, None

    def kill_all(self) -> None:
        """End the host and everything it runs, now."""
        if self.host is not None:
            procs.kill_tree(self.host.pid)
            for run_id, job in list(self.jobs.items()):
                procs.end_job(run_id, job.run_dir.processes)

    def close(self) -> None:
        """No more jobs: the host ends once its jobs have (at once, here)."""
        if self._commands_w is not None:
            os.close(self._commands_w)
            self._commands_w = None
        if self.host is not None:
            try:
                self.host.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass                    # still running jobs: they write their own rows
        if self._events_r is not None:
            os.close(self._events_r)
            self._events_r = None
        self.host = None


def _become_host(commands_fd: int, events_fd: int, log_path: str) -> None:
    """The forked child: become the job host (never returns)."""
    code = 1
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)            # the runner's wake-up pipe and handlers are not ours
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        try:
            log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError:                     # a full disk must not stop the jobs: their rows say why
            log = os.open(os.devnull, os.O_WRONLY)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        keep = sorted({0, 1, 2, commands_fd, events_fd})    # the runner's other files are not ours
        for low, high in zip(keep, keep[1:] + [os.sysconf("SC_OPEN_MAX")]):
            os.closerange(low + 1, high)
        from runner.local.host import JobHost
        code = JobHost(commands_fd, events_fd).run()
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
