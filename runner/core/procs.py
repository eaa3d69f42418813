"""The processes of a job: every process a row started ends with the row.

- The job wrapper is a *child subreaper* (Linux ``PR_SET_CHILD_SUBREAPER``):
  whatever the script starts and abandons — a daemon that called
  ``setsid()``, a double fork — is re-parented to the wrapper instead of
  init, so the wrapper finds it among its own descendants and ends it when
  the script ends.
- The script dies with its wrapper (``PR_SET_PDEATHSIG`` = SIGKILL): a killed
  wrapper never leaves its script running.
- Every process of a job inherits ``SHEETRUN_RUN_ID`` in its environment, and
  whoever runs the job writes down every process it sees in the job's tree
  (pid and start time) in the run folder's ``processes.jsonl``
  (:class:`ProcessLog`). When a wrapper or job host is gone, the runner,
  ``sheetrun sync`` and ``sheetrun cancel`` find what is left of the job by
  either (:func:`job_processes`): a daemon that emptied its environment is
  still found by its pid and start time.

A process is named by ``(pid, create time)`` (:func:`identity`), so a reused
pid is never mistaken for the job's.
"""
from __future__ import annotations

import ctypes
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import psutil

RUN_ID_VAR = "SHEETRUN_RUN_ID"
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_libc = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        _libc = None


def become_subreaper() -> bool:
    """Adopt this process's orphaned descendants (Linux); False where not available."""
    return _libc is not None and _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


@functools.lru_cache(maxsize=None)
def pdeathsig_prefix() -> tuple[str, ...]:
    """A command prefix that makes what follows get SIGKILL when its parent dies, or ().

    util-linux's ``setpriv --pdeathsig KILL --`` sets ``PR_SET_PDEATHSIG`` and execs
    the command: no Python code runs between fork and exec, so starting a job stays
    a cheap vfork. Where it is missing, :func:`die_with_parent` does it in Python.
    """
    tool = shutil.which("setpriv")
    if tool is None:
        return ()
    try:
        ok = subprocess.run([tool, "--pdeathsig", "KILL", "--", "true"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return (tool, "--pdeathsig", "KILL", "--") if ok else ()


def die_with_parent(parent_pid: int):
    """A ``preexec_fn`` making the child get SIGKILL when ``parent_pid`` (its parent) dies."""
    if _libc is None:
        return None
    prctl = _libc.prctl

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:      # the parent died before the call: die now
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def identity(pid: int | None = None) -> dict:
    """``{"pid", "pid_started", "host"}`` of a process (this one by default; asked once)."""
    if pid is None or pid == os.getpid():
        return dict(_own_identity(os.getpid()))         # by pid: a forked child asks again
    return _identity(pid)


def _identity(pid: int) -> dict:
    try:
        started = psutil.Process(pid).create_time()
    except psutil.Error:
        started = time.time()
    return {"pid": pid, "pid_started": started, "host": socket.gethostname()}


_own_identity = functools.lru_cache(maxsize=4)(_identity)


def alive(pid: int | None, started: float | None = None) -> bool:
    """True if ``pid`` is a live process created at ``started`` (within a second), not a zombie."""
    if not pid:
        return False
    try:
        proc = psutil.Process(int(pid))
        if started is not None and abs(proc.create_time() - float(started)) > 1.0:
            return False                 # the pid was reused
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, ValueError, TypeError):
        return False


def tagged(run_id: str, exclude: tuple[int, ...] = ()) -> list[psutil.Process]:
    """The live processes carrying ``SHEETRUN_RUN_ID=run_id`` (a job's processes)."""
    if not run_id:
        return []
    found = []
    skip = set(exclude) | {os.getpid()}
    for proc in psutil.process_iter():
        if proc.pid in skip:
            continue
        try:
            if proc.environ().get(RUN_ID_VAR) == run_id and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def children(pid: int) -> list[int]:
    """The children of ``pid`` (``/proc/PID/task/*/children``; psutil where those are missing)."""
    kids = _proc_children(pid)
    if kids is None:                        # no such files here, or the process is gone
        try:
            return [p.pid for p in psutil.Process(pid).children()]
        except psutil.Error:
            return []
    return kids


def _proc_children(pid: int | str) -> list[int] | None:
    """The children of ``pid`` from ``/proc/PID/task/*/children`` (None where they cannot be read)."""
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(p) for p in f.read().split()]
    except OSError:
        return None
    return kids


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, parents before children."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children(p)
    return out


class ProcessLog:
    """The processes of one job, as whoever runs it has seen them: one ``{"pid", "started"}`` JSON
    line per process in ``processes.jsonl`` (in the run folder), appended as they appear.

    A job's processes are found from it again by pid and start time (:func:`recorded`), after its
    wrapper or host is gone and whatever their environment says. Writing is best effort: a full
    disk only costs this record, never the job.
    """

    def __init__(self, path: str):
        self.path = path
        self.known: set[int] = set()

    def add(self, pids) -> None:
        lines = []
        for pid in pids:
            if pid in self.known:
                continue
            try:
                started = psutil.Process(pid).create_time()
            except psutil.Error:
                continue                            # already gone
            self.known.add(pid)
            lines.append(json.dumps({"pid": pid, "started": started}) + "\n")
        if lines:
            try:
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write("".join(lines))
            except OSError:
                pass


def recorded(path: str) -> list[psutil.Process]:
    """The live processes that a :class:`ProcessLog` at ``path`` names (same pid and start time)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        try:
            entry = json.loads(line)
            pid, started = int(entry["pid"]), float(entry["started"])
        except (ValueError, KeyError, TypeError):
            continue                                # a line torn by a kill mid-write
        if pid != os.getpid() and alive(pid, started):
            try:
                found.append(psutil.Process(pid))
            except psutil.Error:
                pass
    return found


def job_processes(run_id: str, log_path: str | None = None, exclude: tuple[int, ...] = ()) -> list[psutil.Process]:
    """A job's live processes: those tagged with its run id, and those its process log names."""
    found = {p.pid: p for p in tagged(run_id, exclude)}
    if log_path:
        for p in recorded(log_path):
            if p.pid not in exclude:
                found.setdefault(p.pid, p)
    return list(found.values())


def descendants(pid: int | None = None) -> list[psutil.Process]:
    try:
        return psutil.Process(os.getpid() if pid is None else pid).children(recursive=True)
    except psutil.Error:
        return []


def _own_children() -> list[int] | None:
    """This process's children from ``/proc/self/task/*/children`` (None where it is missing)."""
    return _proc_children("self")


def end_orphans(rounds: int = 50) -> int:
    """SIGKILL whatever is still below this (subreaper) process, daemons included; returns how many.

    Killing a child orphans its own children, which come to us in turn: repeat
    until nothing is left. Cheap when nothing is left (one small read).
    """
    ended = 0
    for _ in range(rounds):
        kids = _own_children()
        if kids is None:                              # no /proc children files: ask psutil
            procs = descendants()
            end(procs, 0)
            return ended + len(procs)
        if not kids:
            return ended
        own_group = os.getpgid(0)
        for pid in kids:
            try:
                group = os.getpgid(pid)
                if group != own_group:
                    os.killpg(group, signal.SIGKILL)      # and whatever shares its group
            except OSError:
                pass
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for pid in kids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        ended += len(kids)
    return ended


def signal_all(procs: list[psutil.Process], sig: int) -> None:
    """Send ``sig`` to each process and to its process group (for children it started)."""
    groups = set()
    own_group = os.getpgid(0)
    for proc in procs:
        try:
            groups.add(os.getpgid(proc.pid))
        except OSError:
            pass
        try:
            proc.send_signal(sig)
        except psutil.Error:
            pass
    for group in groups - {own_group}:
        try:
            os.killpg(group, sig)
        except OSError:
            pass


def end(procs: list[psutil.Process], grace_s: float = 0.0) -> list[psutil.Process]:
    """SIGTERM, wait up to ``grace_s``, then SIGKILL; returns those still alive after that."""
    if not procs:
        return []
    if grace_s > 0:
        signal_all(procs, signal.SIGTERM)
        _, procs = psutil.wait_procs(procs, timeout=grace_s)
    signal_all(procs, signal.SIGKILL)
    _, left = psutil.wait_procs(procs, timeout=2.0)
    return left


def end_job(run_id: str, log_path: str | None = None, grace_s: float = 0.0,
            exclude: tuple[int, ...] = ()) -> list[int]:
    """End every process of a job (:func:`job_processes`); returns the pids that were found."""
    procs = job_processes(run_id, log_path, exclude)
    end(procs, grace_s)
    return [p.pid for p in procs]


def kill_tree(pid: int) -> None:
    """SIGKILL a process, all its descendants, and their process groups."""
    try:
        root = psutil.Process(pid)
        procs = root.children(recursive=True) + [root]
    except psutil.Error:
        return
    signal_all(procs, signal.SIGKILL)
