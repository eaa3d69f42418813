"""The single writer of a launch: every row update of its jobs, one transaction per tick.

While ``sheetrun run`` is alive it writes its jobs' rows itself — on a CSV
sheet as on a Google Sheet. The job wrappers only fill their run folders and
tell the runner when they start and end; the runner turns that, and the
metrics the scripts report (``metrics.jsonl``), into row updates, merges them
across jobs and sends them as one transaction: one read and one write of the
sheet however many jobs reported. So the number of sheet rewrites is bounded
by time, not by rows:

- CSV: at most one write per ``max(0.5 s, 40 x the last write's duration)``,
  so even on a 10,000-row sheet the writer takes about 2.5 % of one core;
- Google Sheets: at most one write every 2 s (the API quota is per minute).

Updates that cannot be delivered wait for the next tick: the sheet is away or
unwritable (a full disk, a lost network), said once on the console and tried
again. Updates for a row that is gone (deleted, or an editor saved over it)
are kept and tried again with later writes. Whatever is still undelivered
when the runner ends goes to the run folders' ``pending_updates.jsonl`` for
``sheetrun sync``.
"""
from __future__ import annotations

import os
import sys
import time

from runner.errors import describe
from runner.report import clean_metrics, read_metrics_log
from runner.rundir import RunDir
from runner.sheet import Sheet, SheetError
from runner.sheet.base import ColumnPolicy

LOCAL_MIN_INTERVAL_S = 0.5
REMOTE_INTERVAL_S = 2.0
WRITE_DUTY = 40          # wait at least this many times the last write's duration between writes


def _say(message: str) -> None:
    print(f"sheetrun: {message}", file=sys.stderr, flush=True)


class RowWriter:
    def __init__(self, sheet: Sheet, policy: ColumnPolicy | None = None, interval_s: float | None = None):
        self.sheet = sheet
        self.policy = policy
        self.fixed_interval = interval_s if interval_s is not None else (
            REMOTE_INTERVAL_S if sheet.remote else None)
        self.interval_s = self.fixed_interval or LOCAL_MIN_INTERVAL_S
        self.last_flush = 0.0
        self.pending: dict[str, list[tuple[dict, frozenset]]] = {}   # run id -> ordered batches
        self.orphans: dict[str, list[tuple[dict, frozenset]]] = {}   # rows not found: retried later
        self.run_dirs: dict[str, RunDir] = {}          # jobs whose metrics are followed
        self.folders: dict[str, str] = {}              # run id -> run folder, for the spill
        self._offsets: dict[str, int] = {}
        self._said: set[str] = set()
        self.transactions = 0
        self.failures = 0
        self.problem = ""                              # why the last write failed ("" when it worked)

    # -- collecting ------------------------------------------------------------------------
    def add(self, run_id: str, values: dict, skip=frozenset()) -> None:
        batches = self.pending.setdefault(run_id, [])
        skip = frozenset(skip)
        if batches and batches[-1][1] == skip:
            batches[-1][0].update(values)          # merge into the latest batch of the same kind
        else:
            batches.append((dict(values), skip))

    def watch(self, run_id: str, rd: RunDir) -> None:
        """Follow a running job's metrics log."""
        self.run_dirs[run_id] = rd
        self.folders[run_id] = rd.path

    def unwatch(self, run_id: str) -> None:
        self.poll(run_id)
        self.run_dirs.pop(run_id, None)

    def poll(self, only: str | None = None) -> None:
        """Collect what the followed jobs reported since the last poll."""
        for run_id, rd in list(self.run_dirs.items()):
            if only is not None and run_id != only:
                continue
            offset = self._offsets.get(run_id, 0)
            try:
                if os.stat(rd.metrics_log).st_size <= offset:
                    continue
            except OSError:
                continue
            new, self._offsets[run_id] = read_metrics_log(rd.metrics_log, offset)
            new, _ = clean_metrics(new)
            if new:
                self.add(run_id, new)

    # -- writing ---------------------------------------------------------------------------
    def due(self) -> bool:
        return bool(self.pending) and time.monotonic() - self.last_flush >= self.interval_s

    def flush(self, force: bool = False) -> bool:
        """Send everything pending in one transaction (at most once per interval unless forced).

        True when nothing is left to send (rows that are gone aside).
        """
        if not self.pending or not (force or self.due()):
            return not self.pending
        batch = {rid: list(b) for rid, b in self.orphans.items()}
        for rid, batches in self.pending.items():
            batch.setdefault(rid, []).extend(batches)
        started = time.monotonic()
        self.last_flush = started
        try:
            delivery = self.sheet.update_rows_in_order(batch, self.policy)
        except SheetError as exc:
            self.failures += 1
            if str(exc) != self.problem:
                _say(f"the sheet cannot be written now ({exc}); its updates are kept and tried again")
            self.problem = str(exc)
            return False
        self.transactions += 1
        if self.problem:
            _say("the sheet can be written again; the kept updates are in")
            self.problem = ""
        if self.fixed_interval is None:
            self.interval_s = max(LOCAL_MIN_INTERVAL_S, WRITE_DUTY * (time.monotonic() - started))
        for note in delivery.notes:
            self._say_once(note, note)
        self.orphans = {}
        for rid in delivery.undelivered:
            self.orphans[rid] = batch[rid]
            why = delivery.refused.get(rid) or f"no row has run_id {rid} any more (deleted, or saved over)"
            self._say_once(rid, f"{why}; its updates are kept")
        self.pending = {}
        return True

    def _say_once(self, key: str, message: str) -> None:
        if key not in self._said:
            self._said.add(key)
            _say(message)

    def spill(self) -> list[str]:
        """Keep what could not be delivered in the run folders' pending files, for ``sheetrun sync``.

        Returns the run ids whose updates could not be kept anywhere.
        """
        lost = []
        leftovers = {rid: list(b) for rid, b in self.orphans.items()}
        for rid, batches in self.pending.items():
            leftovers.setdefault(rid, []).extend(batches)
        for run_id, batches in leftovers.items():
            folder = self.folders.get(run_id)
            if not folder or not os.path.isdir(folder):
                lost.append(run_id)
                continue
            rd = RunDir(folder)
            try:
                rd.set_pending(rd.pending_batches() + [(v, sorted(s)) for v, s in batches])
            except OSError as exc:
                _say(f"cannot keep run {run_id}'s updates in {rd.pending}: {describe(exc)}")
                lost.append(run_id)
        self.pending, self.orphans = {}, {}
        return lost
