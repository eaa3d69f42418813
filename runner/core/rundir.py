"""The run folder: every file a job leaves behind, and how to read them.

::

    <run folder>/
        job.json             what the job runs: argv, cwd, env, sheet, run_id, and the sheetrun
                             that claimed it (written when the row is claimed, before it says Submitted)
        config.yaml          resolved config the script reads (--config)
        command.txt          the exact command, shell-quoted for a person to copy
        stdout.log, stderr.log
        wrapper.json         who runs it: pid, host and start time of its wrapper (kind "wrapper")
                             or of the launch's job host (kind "host", which runs other rows too)
        processes.jsonl      every process of the job its wrapper or host has seen (pid, start time)
        heartbeat            touched every few seconds while the job runs
        metrics.jsonl        one line per runner.report() call
        metrics.json         the final value of every metric (written at the end)
        results.json         optional flat object a script writes itself
        exit.json            the exit record: status, exit code, error, times
        pending_updates.jsonl  sheet writes that could not be delivered yet
        cancel_requested     left by ``sheetrun cancel``: do not start, or stop
        provenance/          git commit, diff, untracked files, installed packages, host
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from typing import Any

from runner.core.records import ExitRecord, JobRecord, Launcher, WrapperRecord

HEARTBEAT_INTERVAL_S = 5.0
FORWARD_INTERVAL_S = 0.5       # how often new metrics are forwarded to the sheet
HEARTBEAT_STALE_S = 60.0
DEFAULT_LOG_LIMIT = 256 << 20   # stdout.log / stderr.log: at most this many bytes each ...
LOG_HEAD_SHARE = 0.25           # ... a quarter of them the log's beginning, the rest its newest end


def write_json(path: str, data: Any) -> None:
    """Write JSON atomically: a temporary file beside it, renamed over it. The temporary name is
    this thread's own (``.NAME.PID.THREAD.tmp``): no two writers share it, so it needs no random
    part (``mkstemp`` costs three times as much)."""
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
    text = json.dumps(data, default=str) + "\n"       # one line: the C encoder (indent is 5x slower)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_json(path: str, default: Any = None) -> Any:
    """The JSON in ``path``; ``default`` if it does not exist. ValueError if it is not JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return default


def read_json_quietly(path: str, default: Any = None) -> Any:
    """Like :func:`read_json`, with ``default`` for anything unreadable too (a torn file)."""
    try:
        return read_json(path, default)
    except (OSError, ValueError):
        return default


class RunDir:
    def __init__(self, path: str):
        self.path = os.path.abspath(path)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    config = property(lambda self: self.file("config.yaml"))
    command = property(lambda self: self.file("command.txt"))
    job = property(lambda self: self.file("job.json"))
    stdout = property(lambda self: self.file("stdout.log"))
    stderr = property(lambda self: self.file("stderr.log"))
    wrapper = property(lambda self: self.file("wrapper.json"))
    wrapper_log = property(lambda self: self.file("wrapper.log"))
    processes = property(lambda self: self.file("processes.jsonl"))
    heartbeat = property(lambda self: self.file("heartbeat"))
    metrics = property(lambda self: self.file("metrics.json"))
    metrics_log = property(lambda self: self.file("metrics.jsonl"))
    results = property(lambda self: self.file("results.json"))
    exit_record = property(lambda self: self.file("exit.json"))
    pending = property(lambda self: self.file("pending_updates.jsonl"))
    provenance = property(lambda self: self.file("provenance"))
    cancel_marker = property(lambda self: self.file("cancel_requested"))

    def cancel_requested(self) -> bool:
        return os.path.exists(self.cancel_marker)

    def read_job(self) -> JobRecord | None:
        """``job.json`` (None if it is missing or unreadable)."""
        job = read_json_quietly(self.job)
        return JobRecord.from_json(job) if isinstance(job, dict) else None

    def launcher(self) -> Launcher:
        """Who claimed this run (an empty Launcher, false, when nothing says)."""
        job = self.read_job()
        return job.launcher if job is not None else Launcher()

    def read_wrapper(self) -> WrapperRecord | None:
        """``wrapper.json``: the process running the job (None before it started, or if unreadable)."""
        data = read_json_quietly(self.wrapper)
        return WrapperRecord.from_json(data) if isinstance(data, dict) and data else None

    def read_exit(self) -> ExitRecord | None:
        """``exit.json``: how the job ended (None while it has not, or if it cannot be read)."""
        try:
            record = read_json(self.exit_record)
        except (OSError, ValueError):
            return None
        return ExitRecord.from_json(record) if isinstance(record, dict) else None

    def heartbeat_age(self) -> float | None:
        try:
            return time.time() - os.stat(self.heartbeat).st_mtime
        except FileNotFoundError:
            return None

    def add_pending(self, values: dict, skip_statuses=()) -> None:
        """Keep a sheet write for later: its values and the statuses that void it."""
        entry = {"values": values, "skip_statuses": sorted(skip_statuses)}
        with open(self.pending, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def set_pending(self, batches: list) -> None:
        """Replace the held-back writes with ``batches`` (atomically)."""
        text = "".join(json.dumps({"values": values, "skip_statuses": sorted(skip)}, default=str) + "\n"
                       for values, skip in batches)
        directory = self.path
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".jsonl")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.pending)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def pending_batches(self) -> list[tuple[dict, list[str]]]:
        """The held-back writes, oldest first, as ``(values, skip_statuses)``."""
        return [(u.get("values", {}), u.get("skip_statuses", [])) for u in self.read_pending()]

    def clear_pending(self) -> None:
        try:
            os.unlink(self.pending)
        except FileNotFoundError:
            pass

    def read_pending(self) -> list[dict]:
        try:
            with open(self.pending, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue        # a line torn by a kill mid-write
            if (isinstance(entry, dict) and isinstance(entry.get("values", {}), dict)
                    and isinstance(entry.get("skip_statuses", []), list)):
                out.append(entry)
        return out


def size_text(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def parse_size(text: str) -> int:
    """``500M``, ``2G``, ``100k``, ``1048576`` -> bytes; ValueError for anything else."""
    value = str(text).strip().upper().removesuffix("B").removesuffix("I")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    scale = units.get(value[-1:], 1)
    number = value[:-1] if value[-1:] in units else value
    try:
        size = int(float(number) * scale)
    except ValueError:
        raise ValueError(f"{text!r} is not a size like 500M or 2G") from None
    if size <= 0:
        raise ValueError(f"{text!r} is not a size like 500M or 2G")
    return size


def cap_log(path: str, limit: int):
    """Keep a log a running command appends to within ``limit`` bytes: its first quarter stays, then
    a line saying how much was cut, then its newest end. Returns (bytes cut now, a function mapping
    an offset in the old file to the same text's offset in the new one)."""
    size = os.path.getsize(path)
    if size <= limit:
        return 0, lambda offset: offset
    head = int(limit * LOG_HEAD_SHARE)
    with open(path, "r+b") as f:
        f.seek(head)
        block = f.read(200)
        done = block.find(b"\n[sheetrun: ") == 0     # cut before: the line says how much in all
        before = int(block.split(b" bytes cut here")[0].rsplit(b" ", 1)[-1]) if done else 0
        marker_size = 120
        keep = max(0, limit - head - marker_size)
        f.seek(size - keep)
        tail = f.read(keep)
        cut = size - head - (marker_size if done else 0) - len(tail)
        marker = (f"\n[sheetrun: {before + cut} bytes cut here: the log is kept to {size_text(limit)}, "
                  f"its beginning and its newest end]").ljust(marker_size - 1).encode() + b"\n"
        f.seek(head)
        f.write(marker + tail)
        f.truncate(head + len(marker) + len(tail))
    start = size - len(tail)                          # where the kept end began in the old file
    return cut, lambda offset: head + len(marker) + max(0, offset - start)


def display_path(path: str, root: str) -> str:
    """A run folder as its row shows it: ``./experiments/...`` under the root, else absolute."""
    rel = os.path.relpath(path, root)
    return path if rel.startswith("..") else "./" + rel


def format_walltime(seconds: float) -> str:
    """``H:MM:SS`` with tenths for short runs: 0:00:03.2, 1:02:07."""
    seconds = max(0.0, float(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h == 0 and m == 0:
        return f"0:00:{s:04.1f}"
    return f"{int(h)}:{int(m):02d}:{int(s):02d}"
