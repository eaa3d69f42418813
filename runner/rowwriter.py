"""Row updates of all running jobs, written by the runner in one transaction per flush.

For a remote sheet (a Google Sheet, where every write is an API request
under a per-minute quota) the local runner writes on its jobs' behalf: the
job wrappers only fill their run folders (``wrapper.json`` when they start,
``metrics.jsonl`` as the script reports, ``exit.json`` at the end) and the
runner turns what changed into row updates, merged across jobs, and sends
them every ``interval_s`` as one transaction — one read and one
``values:batchUpdate`` however many jobs reported. If the sheet cannot be
reached, the updates wait for the next flush; those still undelivered when
the runner ends go to each run folder's ``pending_updates.jsonl`` for
``sheetrun sync``, as a job's own failed writes do.
"""
from __future__ import annotations

import os
import sys
import time

from runner import columns as C
from runner.columns import Status
from runner.report import read_metrics_log
from runner.rundir import RunDir, read_json
from runner.sheet import Sheet, SheetError

FLUSH_INTERVAL_S = 2.0


class RowWriter:
    def __init__(self, sheet: Sheet, interval_s: float = FLUSH_INTERVAL_S):
        self.sheet = sheet
        self.interval_s = interval_s
        self.last_flush = 0.0
        self.pending: dict[str, list[tuple[dict, frozenset]]] = {}   # run id -> ordered batches
        self.run_dirs: dict[str, RunDir] = {}
        self._offsets: dict[str, int] = {}
        self._started: set[str] = set()

    def _add(self, run_id: str, values: dict, skip=frozenset()) -> None:
        batches = self.pending.setdefault(run_id, [])
        if batches and batches[-1][1] == skip:
            batches[-1][0].update(values)          # merge into the latest batch of the same kind
        else:
            batches.append((dict(values), frozenset(skip)))

    def watch(self, run_id: str, rd: RunDir) -> None:
        self.run_dirs[run_id] = rd

    def poll(self) -> None:
        """Collect what the watched jobs wrote since the last poll."""
        for run_id, rd in self.run_dirs.items():
            if run_id not in self._started:
                wrapper = read_json(rd.wrapper)
                if wrapper:
                    self._started.add(run_id)
                    self._add(run_id, {C.STATUS: Status.RUNNING, C.JOB_ID: wrapper.get("job_id", ""),
                                       C.ERROR: ""}, Status.TERMINAL)
            new, self._offsets[run_id] = read_metrics_log(rd.metrics_log, self._offsets.get(run_id, 0))
            new = {k: v for k, v in new.items() if not C.is_reserved(k)}
            if new:
                self._add(run_id, new)

    def finish(self, run_id: str, values: dict, skip=frozenset()) -> None:
        """A job ended: its final cells (after anything it reported last)."""
        self.poll()
        self._add(run_id, values, skip)
        self.run_dirs.pop(run_id, None)

    def flush(self, force: bool = False) -> bool:
        """Send everything pending in one transaction (at most once per interval unless forced)."""
        if not self.pending or (not force and time.monotonic() - self.last_flush < self.interval_s):
            return True
        self.last_flush = time.monotonic()
        batch, self.pending = self.pending, {}
        try:
            self.sheet.update_rows_in_order(batch)
            return True
        except SheetError as exc:
            for run_id, batches in batch.items():        # keep them, in order, before newer ones
                self.pending[run_id] = batches + self.pending.get(run_id, [])
            print(f"sheetrun: sheet update deferred ({exc})", file=sys.stderr)
            return False

    def spill(self, folder_of: dict[str, str]) -> list[str]:
        """Write what could not be delivered into the run folders, for ``sheetrun sync``."""
        spilled = []
        for run_id, batches in self.pending.items():
            folder = folder_of.get(run_id)
            if folder and os.path.isdir(folder):
                rd = RunDir(folder)
                for values, skip in batches:
                    rd.add_pending(values, skip)
                spilled.append(run_id)
        self.pending.clear()
        return spilled
