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

A program that saves an older copy of the sheet over the runner's writes (an
editor ignoring the lock) is undone: every transaction first writes again the
cells such a save reverted (``runner.launch.ledger``); while nothing is pending the
file is checked every couple of seconds (one ``stat`` when nobody touched it),
and at the end the writer waits until the sheet holds its cells for two checks
in a row.

The sheet is written from a thread of its own (:class:`SheetWorker`) while
jobs run: the loop that starts and follows jobs only collects updates, so a
Google Sheet that hangs (every request has a timeout), answers 503 for minutes
or throttles never keeps a job from starting or a Ctrl-C from being heard.

Updates that cannot be delivered wait for the next tick: the sheet is away or
unwritable (a full disk, a lost network), said once on the console and tried
again. Updates for a row that is gone (deleted, or an editor saved over it)
are kept and tried again with later writes. Whatever is still undelivered
when the runner ends goes to the run folders' ``pending_updates.jsonl`` for
``sheetrun sync``.
"""
from __future__ import annotations

import os
import queue
import sys
import threading
import time
from concurrent.futures import Future

from runner.core.errors import describe
from runner.core.rundir import RunDir
from runner.launch.ledger import Ledger
from runner.report import clean_metrics, read_metrics_log
from runner.sheet import Sheet, SheetError, Table
from runner.sheet.base import ColumnPolicy, Delivery, apply_batches, prepare_batches

LOCAL_MIN_INTERVAL_S = 0.5
REMOTE_INTERVAL_S = 2.0
WRITE_DUTY = 40          # wait at least this many times the last write's duration between writes
CHECK_INTERVAL_S = 2.0   # with nothing to send, look this often for an older copy saved over ours
SETTLE_CHECK_S = 0.2     # at the end: the pause between checks (a stat, when nobody saved) ...
SETTLE_SHARE = 0.05      # ... for this share of the launch's duration ...
SETTLE_MIN_S = 0.3       # ... at least this long ...
SETTLE_MAX_S = 3.0       # ... and at most this long (a few seconds for real experiments) ...
SETTLE_QUIET_CHECKS = 2  # ... and until this many checks in a row found nothing reverted ...
SETTLE_HARD_S = 8.0      # ... within this long, whatever an editor keeps doing


def _say(message: str) -> None:
    print(f"sheetrun: {message}", file=sys.stderr, flush=True)


class SheetWorker:
    """One daemon thread doing a launch's sheet I/O, in order. A daemon: a request that hangs past
    Ctrl-C never keeps the process from ending (what it was sending is kept in the run folders)."""

    def __init__(self):
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="sheetrun-sheet", daemon=True)
        self._thread.start()

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        self._queue.put((future, fn, args))
        return future

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:         # handed to whoever waits on it
                    future.set_exception(exc)

    def close(self) -> None:
        self._queue.put(None)


class RowWriter:
    def __init__(self, sheet: Sheet, policy: ColumnPolicy | None = None, interval_s: float | None = None):
        self.sheet = sheet
        self.policy = policy
        self.fixed_interval = interval_s if interval_s is not None else (
            REMOTE_INTERVAL_S if sheet.remote else None)
        self.interval_s = self.fixed_interval or LOCAL_MIN_INTERVAL_S
        self.last_flush = 0.0
        self.last_check = time.monotonic()             # the last look for a stale save (with or without a write)
        self.pending: dict[str, list[tuple[dict, frozenset]]] = {}   # run id -> ordered batches
        self.sending: dict[str, list[tuple[dict, frozenset]]] = {}   # taken by the write under way
        self.orphans: dict[str, list[tuple[dict, frozenset]]] = {}   # rows not found: retried later
        self.rejected: dict[str, list[tuple[dict, frozenset]]] = {}  # refused by the sheet: kept for sync
        self._lock = threading.Lock()                  # pending / sending / orphans: the loop and the worker
        self.worker: SheetWorker | None = None         # while jobs run: the sheet's own thread
        self._inflight: Future | None = None
        self.run_dirs: dict[str, RunDir] = {}          # jobs whose metrics are followed
        self.folders: dict[str, str] = {}              # run id -> run folder, for the spill
        self._offsets: dict[str, int] = {}
        self._said: set[str] = set()
        self.ledger = Ledger()                         # what was written, to undo a stale save over it
        self._others_seen = 0                          # sheet.changed_by_others when last restored
        self.restored = 0                              # cells written again after a stale save
        self.transactions = 0
        self.failures = 0
        self.problem = ""                              # why the last write failed ("" when it worked)

    # -- collecting ------------------------------------------------------------------------
    def add(self, run_id: str, values: dict, skip=frozenset()) -> None:
        skip = frozenset(skip)
        with self._lock:
            batches = self.pending.setdefault(run_id, [])
            if batches and batches[-1][1] == skip:
                batches[-1][0].update(values)          # merge into the latest batch of the same kind
            else:
                batches.append((dict(values), skip))

    # -- the sheet's own thread ----------------------------------------------------------------
    def background(self) -> None:
        """From now on :meth:`tick` writes from a thread of its own (the loop never waits on the sheet)."""
        if self.worker is None:
            self.worker = SheetWorker()

    def submit(self, fn, *args) -> Future:
        """Run other sheet I/O (a retry's claim) on the sheet's thread, after the writes before it."""
        if self.worker is None:
            future: Future = Future()
            try:
                future.set_result(fn(*args))
            except Exception as exc:
                future.set_exception(exc)
            return future
        return self.worker.submit(fn, *args)

    def tick(self) -> None:
        """Write what is due — on the sheet's thread when there is one, never waiting for it."""
        if self.worker is None:
            self.flush()
        elif (self._inflight is None or self._inflight.done()) and self.due():
            self._inflight = self.worker.submit(self.flush)

    @property
    def busy(self) -> bool:
        return self._inflight is not None and not self._inflight.done()

    def wait_idle(self) -> None:
        """Wait for the write under way, if any (a Ctrl-C interrupts the wait, not the write)."""
        if self._inflight is not None:
            try:
                self._inflight.result()
            except Exception:
                pass                 # a flush reports its own failures

    def stop_background(self) -> None:
        """No more ticks; the thread ends after what it has (call once :attr:`busy` is False)."""
        if self.worker is not None:
            self.worker.close()
            self.worker = None

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
        now = time.monotonic()
        return ((bool(self.pending) and now - self.last_flush >= self.interval_s)
                or (bool(self.ledger) and not self.sheet.remote and now - self.last_check >= CHECK_INTERVAL_S))

    def delivered(self, run_id: str) -> bool:
        """True when no update of ``run_id`` waits to be sent or is being sent, or when the sheet
        cannot be written now (what waits on it then must not wait for the sheet to come back)."""
        with self._lock:
            return bool(self.problem) or (run_id not in self.pending and run_id not in self.sending)

    def undelivered(self) -> dict:
        """Every update not yet in the sheet, oldest first: rows not found, being sent, pending."""
        with self._lock:
            out = {rid: list(b) for rid, b in self.orphans.items()}
            for source in (self.rejected, self.sending, self.pending):
                for rid, batches in source.items():
                    out.setdefault(rid, []).extend(batches)
        return out

    def _change(self, prepared: dict):
        def change(table: Table) -> Delivery:
            restored = 0
            if self.sheet.changed_by_others != self._others_seen:
                restored = self.ledger.restore(table)
            columns = set(table.index)
            delivery = apply_batches(table, prepared, self.policy)
            self.ledger.columns_added(set(table.index) - columns)
            delivery.restored = restored
            return delivery
        return change

    def flush(self, force: bool = False) -> bool:
        """Send everything pending in one transaction (at most once per interval unless forced).

        True when nothing is left to send (rows that are gone aside).
        """
        with self._lock:
            if not (force or self.due()) or not (self.pending or self.orphans or self.ledger):
                return not self.pending
            batch = {rid: list(b) for rid, b in self.orphans.items()}
            for rid, batches in self.pending.items():
                batch.setdefault(rid, []).extend(batches)
            self.sending, self.pending, self.orphans = batch, {}, {}
        started = time.monotonic()
        self.last_check = started
        if batch:
            self.last_flush = started
        try:
            delivery = self._deliver(batch)
        except SheetError as exc:
            with self._lock:                      # back in front of what came meanwhile
                for rid, batches in self.pending.items():
                    batch.setdefault(rid, []).extend(batches)
                self.pending, self.sending = batch, {}
            self.failures += 1
            if str(exc) != self.problem:
                _say(f"the sheet cannot be written now ({exc}); its updates are kept and tried again")
            self.problem = str(exc)
            return False
        self._others_seen = self.sheet.changed_by_others
        self.restored += delivery.restored
        for rid, (before, after) in delivery.cells.items():
            self.ledger.wrote(rid, before, after)
        if not batch:
            return True
        self.transactions += 1
        if self.problem:
            _say("the sheet can be written again; the kept updates are in")
            self.problem = ""
        if self.fixed_interval is None:
            self.interval_s = max(LOCAL_MIN_INTERVAL_S, WRITE_DUTY * (time.monotonic() - started))
        for note in delivery.notes:
            self._say_once(note, note)
        with self._lock:
            self.sending = {}
            self.orphans = {rid: batch[rid] for rid in delivery.undelivered - delivery.rejected}
            self.rejected.update({rid: batch[rid] for rid in delivery.rejected})
        for rid in delivery.undelivered:
            why = delivery.refused.get(rid) or f"no row has run_id {rid} any more (deleted, or saved over)"
            self._say_once(rid, f"{why}; its updates are kept")
        return True

    def _deliver(self, batch: dict) -> Delivery:
        """One transaction for every row; if the sheet refuses it (a 400), one per row, so that a
        row the sheet will not take (kept for sync, its error cell saying why) blocks no other."""
        prepared = prepare_batches(batch)
        try:
            return self.sheet.transact(self._change(prepared))
        except SheetError as exc:
            if not exc.bad_request or len(prepared) < 2:
                raise
            _say(f"the sheet refused a write ({exc}); writing row by row")
            return self.sheet.deliver_each(prepared, self.policy)

    def settle(self, launch_s: float = 0.0) -> int:
        """After the last write, whether or not anyone saved the sheet during the launch: keep
        checking (5 % of the launch's duration, between 0.3 and 3 s) that the sheet holds the
        runner's cells — an editor saving an older copy a moment after the last write is undone —
        and on, while reverts keep coming, until two checks in a row find none. Returns the cells
        written again; says how to repair what a later save undoes."""
        if self.sheet.remote or not self.ledger:
            return 0
        fixed, quiet = 0, 0
        start = time.monotonic()
        window = min(SETTLE_MAX_S, max(SETTLE_MIN_S, SETTLE_SHARE * launch_s))
        while time.monotonic() - start < SETTLE_HARD_S:
            time.sleep(SETTLE_CHECK_S)
            before = self.restored
            if not self.flush(force=True):
                break
            fixed += self.restored - before
            quiet = quiet + 1 if self.restored == before else 0
            if quiet >= SETTLE_QUIET_CHECKS and time.monotonic() - start >= window:
                break
        if fixed:
            _say(f"an older copy of {self.sheet.location} was saved over {fixed} of this launch's cells after its "
                 "last write; they are written again. If that editor still holds the copy, close it without "
                 f"saving, or run 'sheetrun sync {self.sheet.location}' after it saves (it puts back every run the "
                 "sheet lost)")
        return fixed

    def _say_once(self, key: str, message: str) -> None:
        if key not in self._said:
            self._said.add(key)
            _say(message)

    def spill(self) -> list[str]:
        """Keep what could not be delivered in the run folders' pending files, for ``sheetrun sync``.

        Returns the run ids whose updates could not be kept anywhere.
        """
        lost = []
        leftovers = self.undelivered()
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
        with self._lock:
            self.pending, self.sending, self.orphans, self.rejected = {}, {}, {}, {}
        return lost
