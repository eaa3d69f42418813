"""The local follower: run a launch's claimed rows here, at most ``jobs`` at a time.

For each row, once its dependencies have Completed: write its run folder and
hand it to the local job host (``runner.local``), which sends back "started"
and "exit" events. The launch's row writer turns those events, and the
metrics the scripts report, into one sheet transaction per tick for all rows.

- A row whose dependency did not complete is marked Skipped without running.
- A row ``sheetrun cancel`` marked before it started is not started.
- A job whose host died before it ended (the host was killed) becomes Lost,
  and whatever is left of it (its tagged processes) is ended; the rows still
  to start get a new host.
- SIGINT/SIGTERM: jobs are asked to stop, then killed after a grace period;
  their rows, and the rows not started yet, become Cancelled. A second
  Ctrl-C kills at once.
- The sheet is written from its own thread (``RowWriter.background``), a
  retry's claim too: nothing in this loop waits on the sheet.
"""
from __future__ import annotations

import os
import select
import signal
import sys
import time

from runner.core import columns as C
from runner.core import devices, procs
from runner.core.columns import Status
from runner.core.errors import describe
from runner.core.records import ExitRecord
from runner.core.rundir import format_walltime
from runner.job.results import final_row_values
from runner.launch.plan import PlannedRow

CANCEL_GRACE_S = 10.0
KILL_WAIT_S = 5.0
POLL_S = 0.25          # upper bound; job events and signals wake the loop at once


def follow_rows(launch, executor, rows: list[PlannedRow]) -> None:
    """Run the rows on ``executor`` (jobs on this machine), at most ``jobs`` at a time, to their end
    (``launch``: a :class:`runner.launch.pipeline.Launch`)."""
    try:
        Follower(launch, executor).run(rows)
    finally:
        executor.close()


class Follower:
    """The launch's loop while its jobs run here: start rows as dependencies, slots and devices
    allow, turn the jobs' events into row writes, stop them on a signal."""

    def __init__(self, launch, executor):
        self.launch = launch
        self.executor = executor
        self.writer = launch.writer
        self.progress = launch.progress
        self.stop_reason = ""
        self.kill_now = False
        self.devices = devices.DevicePool(devices.visible_devices(), launch.opts.gpus_per_job)
        self.device_of: dict[str, str | None] = {}       # run id -> its CUDA_VISIBLE_DEVICES
        self.planned: dict[str, PlannedRow] = {}          # run id -> its row, while it runs
        self.attempt: dict[str, int] = {}                 # run id -> which try this is
        self.retrying: dict = {}                          # a retry's claim under way -> (row, outcome, try)

    # -- signals ------------------------------------------------------------------------
    def _on_signal(self, signum, _frame):
        if self.stop_reason:
            self.kill_now = True          # a second Ctrl-C: no more grace
        self.stop_reason = signal.Signals(signum).name

    def run(self, rows: list[PlannedRow]) -> None:
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        self._wake_r, wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(wake_w, False)
        old_fd = signal.set_wakeup_fd(wake_w)
        self.writer.background()
        try:
            self._loop({p.run_id: p for p in rows})
            self._let_the_sheet_catch_up()
        finally:
            self.writer.stop_background()
            signal.set_wakeup_fd(old_fd)
            os.close(self._wake_r)
            os.close(wake_w)
            for s, h in handlers.items():
                signal.signal(s, h)
            self.launch.result.interrupted = self.stop_reason

    def _wait(self, timeout: float) -> None:
        """Sleep until a job event, a signal (Ctrl-C) or ``timeout``."""
        fds = [self._wake_r]
        if self.executor.fileno() is not None:
            fds.append(self.executor.fileno())
        ready = select.select(fds, [], [], timeout)[0]
        if self._wake_r in ready:
            try:
                while os.read(self._wake_r, 512):
                    pass
            except BlockingIOError:
                pass

    # -- the loop -------------------------------------------------------------------------
    def _let_the_sheet_catch_up(self) -> None:
        """Wait for the write under way (what it sends is kept for the end) — not past a Ctrl-C."""
        while self.writer.busy and not self.stop_reason:
            self._wait(POLL_S)

    def _loop(self, pending: dict[str, PlannedRow]) -> None:
        outcomes = self.launch.outcomes
        running: dict = {}
        cancel_deadline = killed_at = None
        while pending or running or self.retrying:
            for previous, again in self._claimed_again():
                pending[again.run_id] = again
                for p in pending.values():
                    p.deps = [again.run_id if d == previous else d for d in p.deps]
            for rid, message in self.executor.poll():
                if message.get("event") == "started" and rid in running:
                    self.writer.add(rid, message.get("values") or {}, Status.TERMINAL)
            for rid, job in list(running.items()):
                if job.done():
                    del running[rid]
                    self._ended(rid, job)
            if not self.stop_reason:
                for rid, p in list(pending.items()):
                    if len(running) >= self.launch.opts.jobs:
                        break
                    trying_again = {prev.run_id for prev, _, _ in self.retrying.values()}   # its next try decides
                    failed = [outcomes[d] for d in p.deps if d not in trying_again
                              and outcomes[d].status in Status.TERMINAL and outcomes[d].status != Status.COMPLETED]
                    if failed:
                        del pending[rid]
                        self.launch.settle(p, Status.SKIPPED, f"not run: dependency row {failed[0].number} "
                                                              f"ended {failed[0].status}")
                        continue
                    # and their results in the sheet: a row may read them there (a table of its dependencies)
                    if all(outcomes[d].status == Status.COMPLETED and self.writer.delivered(d) for d in p.deps):
                        del pending[rid]
                        job = self._start(p)
                        if job is not None:
                            running[rid] = job
            else:
                if cancel_deadline is None:
                    cancel_deadline = time.time() + CANCEL_GRACE_S
                    for job in running.values():
                        job.cancel(self.stop_reason)
                    for rid, p in list(pending.items()):
                        del pending[rid]
                        self.launch.settle(p, Status.CANCELLED, "cancelled before it started")
                if killed_at is None and (self.kill_now or time.time() > cancel_deadline):
                    killed_at = time.time()
                    for job in running.values():
                        job.kill()
                if killed_at is not None and time.time() > killed_at + KILL_WAIT_S:
                    self.executor.kill_all()             # the host itself does not answer
            self.writer.poll()
            self.writer.tick()
            self.launch.heartbeat()
            if self.progress:
                self.progress.tick()
            if pending or running or self.retrying:
                self._wait(POLL_S)

    def _start(self, p: PlannedRow):
        if os.path.exists(os.path.join(p.run_folder, "cancel_requested")):
            self.launch.settle(p, Status.CANCELLED, "cancelled by sheetrun cancel before it started")
            return None
        extra = {}
        if devices.VAR not in p.spec.env:                 # a row's own env:CUDA_VISIBLE_DEVICES wins
            device = self.devices.take()
            if device is not None:
                extra[devices.VAR] = self.device_of[p.run_id] = device
        try:
            rd = self.launch.prepare(p, extra)
            job = self.executor.submit(rd, p.run_id, extra)
        except (OSError, ValueError) as exc:
            self.devices.give(self.device_of.pop(p.run_id, None))
            self.launch.settle(p, Status.FAILED, f"could not prepare the run folder: {describe(exc)}")
            return None
        self.writer.watch(p.run_id, rd)
        self.planned[p.run_id] = p
        outcome = self.launch.outcomes[p.run_id]
        outcome.status = Status.RUNNING
        if self.progress:
            self.progress.started(outcome)
        return job

    def _ended(self, rid: str, job) -> None:
        """Settle a job that ended; claim its next try when ``--retries`` says it runs again."""
        self.devices.give(self.device_of.pop(rid, None))
        outcome = self.launch.outcomes[rid]
        previous = outcome.status
        self.writer.unwatch(rid)
        exit_message = job.exit_message
        record = ExitRecord.from_json(exit_message["record"]) if exit_message is not None \
            else job.run_dir.read_exit()           # no message: the record on disk, if any
        if record is not None:
            metrics = (exit_message.get("metrics") if exit_message is not None else _metrics_of(job)) or {}
            outcome.metrics = metrics
            self.writer.add(rid, final_row_values(record, metrics))
            outcome.status, outcome.error = record.status, record.error
            outcome.walltime = format_walltime(record.walltime_s or 0)
        else:
            left = procs.end_job(rid, job.run_dir.processes)   # the command died with its host; the rest now
            if self.stop_reason:
                status, error = Status.CANCELLED, "killed while being cancelled"
            else:
                status = Status.LOST
                error = f"{job.host_gone} before the job ended; nothing recorded how it would have"
                if left:
                    error += f"; ended {len(left)} process(es) it left"
            outcome.status, outcome.error = status, error
            self.writer.add(rid, {C.STATUS: status, C.ERROR: error})
        if self.progress:
            self.progress.finished(outcome, previous)
        self._retry(rid, outcome, record)

    def _retry(self, rid: str, outcome, record: ExitRecord | None) -> None:
        """``--retries``: claim the row's next try, on the sheet's thread (picked up by the loop)."""
        p = self.planned.pop(rid, None)
        attempt = self.attempt.pop(rid, 1)
        failed = (outcome.status == Status.LOST or (outcome.status == Status.FAILED and record is not None
                                                    and record.exit_code not in (0, None)))
        if p is None or not failed or self.stop_reason or attempt > self.launch.opts.retries:
            return
        self.retrying[self.writer.submit(self.launch.claim_again, p, attempt + 1)] = (p, outcome, attempt + 1)

    def _claimed_again(self) -> list[tuple[str, PlannedRow]]:
        """The retries whose claim is done: (the try before's run id, the row to start again)."""
        out = []
        for future in [f for f in self.retrying if f.done()]:
            p, outcome, attempt = self.retrying.pop(future)
            try:
                again = future.result()
            except Exception as exc:                  # the sheet's thread never stops the loop
                print(f"sheetrun: row {p.number} not tried again: {exc}", file=sys.stderr)
                again = None
            if again is None:
                continue
            self.launch.tried_again(p, again)
            if self.stop_reason:
                self.launch.settle(again, Status.CANCELLED, "cancelled before it started")
                continue
            self.attempt[again.run_id] = attempt
            if self.progress:
                self.progress.retrying(outcome, attempt, self.launch.opts.retries + 1)
            out.append((p.run_id, again))
        return out


def _metrics_of(job) -> dict:
    from runner.core.rundir import read_json_quietly

    return read_json_quietly(job.run_dir.metrics, {}) or {}
