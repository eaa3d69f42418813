"""Run jobs as local processes.

Each job's wrapper runs in its own session, so a Ctrl-C typed at the
terminal reaches only ``sheetrun run``, which then stops the jobs in order.
By default the wrapper is forked from the runner (no second interpreter start
per row); ``spawn="exec"`` starts ``python -m runner.jobwrapper`` instead and
is used where ``fork`` is unavailable (or when ``SHEETRUN_SPAWN=exec``).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import traceback

import psutil

from runner.core import Executor, Job
from runner.rundir import RunDir


class LocalJob(Job):
    def __init__(self, run_dir: RunDir, pid: int, popen: subprocess.Popen | None = None):
        super().__init__(run_dir, str(pid))
        self.pid = pid
        self._popen = popen
        self.returncode: int | None = None

    def done(self) -> bool:
        if self.returncode is not None:
            return True
        if self._popen is not None:
            self.returncode = self._popen.poll()
            return self.returncode is not None
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            self.returncode = -1
            return True
        if pid == 0:
            return False
        self.returncode = os.waitstatus_to_exitcode(status)
        return True

    def cancel(self) -> None:
        if not self.done():
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        kill_process_tree(self.pid)


def kill_process_tree(pid: int) -> None:
    """SIGKILL a process, all its descendants, and their process groups."""
    try:
        root = psutil.Process(pid)
        procs = root.children(recursive=True) + [root]
    except psutil.NoSuchProcess:
        return
    groups = set()
    for p in procs:
        try:
            groups.add(os.getpgid(p.pid))
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    for g in groups - {os.getpgid(0)}:
        try:
            os.killpg(g, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, spawn: str | None = None):
        spawn = spawn or os.environ.get("SHEETRUN_SPAWN") or ("fork" if hasattr(os, "fork") else "exec")
        if spawn not in ("fork", "exec"):
            raise ValueError(f"SHEETRUN_SPAWN must be 'fork' or 'exec', not {spawn!r}")
        self.spawn = spawn

    def submit(self, run_dir: RunDir) -> LocalJob:
        if self.spawn == "exec":
            popen = subprocess.Popen([sys.executable, "-m", "runner.jobwrapper", run_dir.path],
                                     stdin=subprocess.DEVNULL, stdout=open(run_dir.wrapper_log, "ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
            return LocalJob(run_dir, popen.pid, popen)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:                         # the child: become the job wrapper
            code = 1
            try:
                os.setsid()
                signal.set_wakeup_fd(-1)        # the runner's wake-up pipe is not ours
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
                    signal.signal(sig, signal.SIG_DFL)
                fd = os.open(run_dir.wrapper_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                from runner.jobwrapper import run_job
                code = run_job(run_dir.path)
            except BaseException:
                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        return LocalJob(run_dir, pid)
