"""Where one job's row updates go: to the local runner over its pipe, to the sheet itself, or to
nobody while a ``--wait`` follower writes the rows of its launch from their run folders."""
from __future__ import annotations

import os
import threading
import time

from runner.core.columns import Status
from runner.core.records import ExitRecord, JobRecord
from runner.core.rundir import RunDir, read_json
from runner.job.delivery import push_to_sheet
from runner.job.results import final_row_values
from runner.job.say import say as _say
from runner.report import clean_metrics, read_metrics_log

FOLLOWER_STALE_S = 60.0         # a ``--wait`` follower whose launch record is older than this is gone


def follower_alive(job: JobRecord) -> bool:
    """Does a ``sheetrun run --backend slurm --wait`` still follow this job's launch? It then writes
    the rows of all its jobs, batched, from their run folders (one Google Sheets quota for all), and
    the job leaves its row alone; its launch record says ``follows`` and is touched every poll."""
    path = job.launcher.launch_file
    if not path or job.sheet_writes != "job":
        return False
    try:
        age = time.time() - os.stat(path).st_mtime
        record = read_json(path, {}) or {}
    except (OSError, ValueError):
        return False
    return age < FOLLOWER_STALE_S and bool(record.get("follows")) and not record.get("follow_ended")


class RowChannel:
    """Where one job's row updates go: to the local runner (``send``), or straight to the sheet —
    unless a ``--wait`` follower writes it (``followed()``: then the run folder is all it needs)."""

    def __init__(self, rd: RunDir, job: JobRecord, send=None, requeued: bool = False, followed=None):
        self.rd, self.job = rd, job
        self.send = send                        # message -> bool (False: the runner is gone)
        self.direct = send is None
        self.requeued = requeued
        self.followed = followed or (lambda: False)
        self.deferred = False                   # left to the follower so far: it must catch up if it goes
        self.paced = False                      # one of many jobs sharing a quota: Running waits for the
        self.running_due = False                # first paced write (jobs starting at once do not all write)
        self.lock = threading.Lock()
        self.running: dict | None = None        # the Running update, replayed on a switch
        self.offset = 0                         # metrics.jsonl forwarded so far (direct mode)

    def _push(self, values: dict, skip=()) -> None:
        push_to_sheet(self.rd, self.job.sheet, self.job.run_id, values, skip, self.job.cwd)

    def _left_to_follower(self) -> bool:
        """Direct mode: True while a follower writes the row; when it goes, what it may have missed
        (Running, every metric so far) is written here first."""
        if self.followed():
            self.deferred = True
            return True
        if self.deferred:
            self.deferred = False
            _say(f"sheetrun: run {self.job.run_id}: the sheetrun following it is gone; it writes its own row")
            if self.running is not None:
                self._push(self.running, () if self.requeued else Status.TERMINAL)
            self.offset = 0
        return False

    def switch(self, why: str) -> None:
        """The runner is gone: write our own row from now on, starting with what it may have missed."""
        with self.lock:
            if self.direct:
                return
            self.direct = True
            _say(f"sheetrun: run {self.job.run_id}: {why}; it writes its own row from now on")
            if self.running is not None:
                self._push(self.running, () if self.requeued else Status.TERMINAL)
            self.offset = 0
            self._forward()

    def _message(self, message: dict) -> bool:
        return self.send(dict(message, run_id=self.job.run_id))

    def started(self, values: dict) -> None:
        with self.lock:
            self.running = values
            if self.direct:
                if self.paced:
                    self.running_due = True
                elif not self._left_to_follower():
                    self._push(values, () if self.requeued else Status.TERMINAL)
                return
            if self._message({"event": "started", "values": values}):
                return
        self.switch("the runner's pipe is closed")

    def forward_metrics(self) -> None:
        with self.lock:
            if self.direct and not self._left_to_follower():
                if self.running_due and self.running is not None:
                    self.running_due = False
                    self._push(self.running, () if self.requeued else Status.TERMINAL)
                self._forward()

    def _forward(self) -> None:
        new, self.offset = read_metrics_log(self.rd.metrics_log, self.offset)
        new, _ = clean_metrics(new)
        if new:
            self._push(new)

    def finished(self, record: ExitRecord, metrics: dict) -> None:
        with self.lock:
            if not self.direct and self._message({"event": "exit", "record": record.to_json(), "metrics": metrics}):
                return
        self.switch("the runner's pipe is closed")
        with self.lock:
            if not self._left_to_follower():     # else the follower reads exit.json
                self._push(final_row_values(record, metrics))
