"""``sheetrun run``: claim the selected rows, prepare run folders, run them N at a time.

Order of events for one call:

1. One sheet transaction plans the rows (``runner.plan``) and stamps each a
   fresh ``run_id``: valid rows become Submitted with their run folder; invalid
   rows become Failed with their error. Nothing has started yet.
2. Run folders are written (config, command, job spec, provenance).
3. Rows start as their dependencies complete, at most ``jobs`` at a time; each
   job's wrapper writes Running, metrics and the final status itself.
4. A row whose dependency did not complete is marked Failed without running.
5. SIGINT/SIGTERM: jobs are asked to stop, then killed after a grace period;
   their rows and the rows not yet started become Cancelled.
"""
from __future__ import annotations

import os
import select
import shlex
import signal
import sys
import time
from dataclasses import dataclass, field

from runner import columns as C
from runner import provenance
from runner.columns import Status
from runner.config import dump_yaml
from runner.core import Executor, Job
from runner.plan import PlannedRow, RowFilter, plan
from runner.rows import RowError
from runner.rundir import RunDir, format_walltime, read_json, write_json
from runner.sheet import Sheet, SheetError, Table
from runner.jobwrapper import THREAD_VARS, final_row_values
from runner.rowwriter import RowWriter
from runner.sync import deliver_pending, still_active

CANCEL_GRACE_S = 10.0
POLL_S = 0.25          # upper bound; job ends wake the loop at once


@dataclass
class RunOptions:
    root: str
    runs_dir: str
    jobs: int = 1
    rows: RowFilter | None = None
    python: str = sys.executable


@dataclass
class Outcome:
    number: int
    run_id: str
    status: str
    error: str = ""
    walltime: str = ""
    metrics: dict = field(default_factory=dict)


@dataclass
class RunResult:
    outcomes: list[Outcome] = field(default_factory=list)
    interrupted: str = ""

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(o.status == Status.COMPLETED for o in self.outcomes)


def cpu_budget(jobs: int) -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, jobs))


def display_path(path: str, root: str) -> str:
    rel = os.path.relpath(path, root)
    return path if rel.startswith("..") else "./" + rel


def claim(sheet: Sheet, opts: RunOptions, skipped: list[int]) -> list[PlannedRow]:
    """Plan and stamp the rows in one transaction; returns the planned rows.

    Rows left out because their previous run is still going are listed in ``skipped``.
    """
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")

    def change(table: Table) -> list[PlannedRow]:
        skipped.clear()
        planned = plan(table, opts.root, opts.rows,
                       still_active=lambda row: still_active(row, opts.root), skipped=skipped)
        if planned:
            for column in C.OWNED:          # a fixed, readable order for new sheets
                table.ensure_column(column)
        for p in planned:
            row = table.find_row(p.number)
            folder = os.path.join(opts.runs_dir, sheet.name, f"{stamp}_row{p.number}_{p.run_id}")
            values = {C.RUN_ID: p.run_id, C.JOB_ID: "", C.EXIT_CODE: "", C.WALLTIME: ""}
            if p.ok:
                p.run_folder = folder
                values.update({C.STATUS: Status.SUBMITTED, C.ERROR: "",
                               C.RUN_FOLDER: display_path(folder, opts.root)})
            else:
                values.update({C.STATUS: Status.FAILED, C.ERROR: p.error, C.RUN_FOLDER: ""})
            for column, value in values.items():
                row.set(column, value)
        return planned

    return sheet.transact(change)


def prepare(p: PlannedRow, sheet: Sheet, opts: RunOptions, prov_dir: str | None, env: dict,
            sheet_writes: str = "job") -> RunDir:
    """Write a run folder. ``sheet_writes``: "job" (the wrapper writes its row) or "runner"."""
    rd = RunDir(p.run_folder)
    os.makedirs(rd.path, exist_ok=False)
    with open(rd.config, "w", encoding="utf-8") as f:
        f.write(dump_yaml(p.spec.config))
    argv = p.spec.argv(rd.config, opts.python)
    row_env = dict(env)
    row_env.update(p.spec.env)
    with open(rd.command, "w", encoding="utf-8") as f:
        exports = "".join(f"{k}={shlex.quote(v)} " for k, v in p.spec.env.items())
        f.write(f"cd {shlex.quote(opts.root)} && {exports}{shlex.join(argv)}\n")
    write_json(rd.job, {"sheet": sheet.location, "run_id": p.run_id, "row": p.number,
                        "argv": argv, "cwd": opts.root, "env": row_env,
                        "launcher_pid": os.getpid(), "created": time.time(), "sheet_writes": sheet_writes})
    if prov_dir:
        provenance.link_into(prov_dir, rd.provenance)
    return rd


def collect_provenance(sheet: Sheet, opts: RunOptions) -> str | None:
    """Provenance for this launch, once, to be hard-linked into each run folder."""
    try:
        return provenance.collect(
            opts.root, os.path.join(opts.runs_dir, sheet.name, ".provenance",
                                    time.strftime("%Y-%m-%d_%H-%M-%S") + f"_{os.getpid()}"),
            exclude_dirs=(opts.runs_dir,))
    except Exception as exc:                 # provenance must never block a run
        print(f"sheetrun: could not record provenance: {exc}", file=sys.stderr)
        return None


class Scheduler:
    """Runs planned rows through an executor, honouring dependencies and ``jobs``."""

    def __init__(self, sheet: Sheet, executor: Executor, opts: RunOptions, progress=None):
        self.sheet = sheet
        self.executor = executor
        self.opts = opts
        self.progress = progress
        self.stop_reason = ""
        self.kill_now = False
        # a remote sheet gets one batched write per flush from here, not one per job and event
        self.writer = RowWriter(sheet) if sheet.remote else None

    # -- signals ------------------------------------------------------------------------
    def _on_signal(self, signum, _frame):
        if self.stop_reason:
            self.kill_now = True          # a second Ctrl-C: no more grace
        self.stop_reason = signal.Signals(signum).name

    def run(self) -> RunResult:
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        # A job ending raises SIGCHLD; the wake-up pipe turns it into an instant return
        # from the scheduler's wait instead of a fixed polling delay.
        handlers[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, lambda *_: None)
        self._wake_r, wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(wake_w, False)
        old_fd = signal.set_wakeup_fd(wake_w)
        try:
            return self._run()
        finally:
            signal.set_wakeup_fd(old_fd)
            os.close(self._wake_r)
            os.close(wake_w)
            for s, h in handlers.items():
                signal.signal(s, h)

    def _wait(self, timeout: float) -> None:
        """Sleep until a signal (a job ending, Ctrl-C) or ``timeout``."""
        if select.select([self._wake_r], [], [], timeout)[0]:
            try:
                while os.read(self._wake_r, 512):
                    pass
            except BlockingIOError:
                pass

    def _run(self) -> RunResult:
        opts = self.opts
        skipped: list[int] = []
        try:
            planned = claim(self.sheet, opts, skipped)
        except RowError as exc:
            raise SystemExit(f"sheetrun: {exc}") from None
        for number in skipped:
            print(f"sheetrun: row {number} is still queued or running from an earlier "
                  "'sheetrun run'; not started twice", file=sys.stderr)
        result = RunResult()
        outcomes = {p.run_id: Outcome(p.number, p.run_id, Status.SUBMITTED if p.ok else Status.FAILED,
                                      p.error) for p in planned}
        result.outcomes = list(outcomes.values())
        runnable = [p for p in planned if p.ok]
        if self.progress:
            self.progress.start(planned)
        if runnable:
            prov_dir = collect_provenance(self.sheet, opts)
            env = {var: str(cpu_budget(opts.jobs)) for var in THREAD_VARS}
            pending: dict[str, PlannedRow] = {}
            for p in runnable:
                try:
                    p.run_dir = prepare(p, self.sheet, opts, prov_dir, env,
                                        sheet_writes="runner" if self.writer else "job")
                    pending[p.run_id] = p
                except (OSError, ValueError) as exc:
                    self._finish(outcomes[p.run_id], Status.FAILED,
                                 f"could not prepare the run folder: {exc}")
            self._loop(pending, outcomes)
        result.interrupted = self.stop_reason
        if self.progress:
            self.progress.stop(result)
        return result

    def _finish(self, outcome: Outcome, status: str, error: str, write: bool = True,
                walltime: str = "") -> None:
        previous = outcome.status
        outcome.status, outcome.error, outcome.walltime = status, error, walltime
        if write:
            self._write(outcome, {C.STATUS: status, C.ERROR: error})
        if self.progress:
            self.progress.finished(outcome, previous)

    def _write(self, outcome: Outcome, values: dict, run_dir: RunDir | None = None) -> None:
        """A runner-side row write that never stops the other rows when the sheet is away."""
        if self.writer is not None:
            self.writer.finish(outcome.run_id, values, Status.TERMINAL)
            return
        try:
            self.sheet.update(outcome.run_id, values, skip_statuses=Status.TERMINAL)
        except SheetError as exc:
            if run_dir is not None:
                run_dir.add_pending(values, Status.TERMINAL)
            print(f"sheetrun: row {outcome.number}: could not write {values} ({exc})", file=sys.stderr)

    def _loop(self, pending: dict[str, PlannedRow], outcomes: dict[str, Outcome]) -> None:
        running: dict[str, Job] = {}
        folders = {rid: p.run_folder for rid, p in pending.items()}   # for updates left undelivered
        cancel_deadline = None
        while pending or running:
            # collect what ended, so its slot and its dependents can start at once
            for rid, job in list(running.items()):
                if job.done():
                    del running[rid]
                    self._collect(job, outcomes[rid])
            # start what is ready
            if not self.stop_reason:
                for rid, p in list(pending.items()):
                    if len(running) >= self.opts.jobs:
                        break
                    dep_states = [outcomes[d].status for d in p.deps]
                    failed = [outcomes[d] for d in p.deps
                              if outcomes[d].status in Status.TERMINAL and outcomes[d].status != Status.COMPLETED]
                    if failed:
                        del pending[rid]
                        self._finish(outcomes[rid], Status.FAILED, f"dependency {failed[0].number} failed")
                        continue
                    if all(s == Status.COMPLETED for s in dep_states):
                        del pending[rid]
                        running[rid] = self.executor.submit(p.run_dir)
                        if self.writer is not None:
                            self.writer.watch(rid, p.run_dir)
                        outcomes[rid].status = Status.RUNNING
                        if self.progress:
                            self.progress.started(outcomes[rid])
            else:
                if cancel_deadline is None:
                    cancel_deadline = time.time() + CANCEL_GRACE_S
                    for job in running.values():
                        job.cancel()
                    for rid in list(pending):
                        del pending[rid]
                        self._finish(outcomes[rid], Status.CANCELLED, "cancelled before it started")
                if self.kill_now or time.time() > cancel_deadline:
                    for job in running.values():
                        job.kill()
            if self.writer is not None:
                self.writer.poll()
                self.writer.flush()
            if self.progress:
                self.progress.tick()
            if pending or running:
                self._wait(POLL_S)
        if self.writer is not None and not self.writer.flush(force=True):
            self.writer.spill(folders)
            print("sheetrun: the sheet could not be reached; the rows' updates are kept in their run "
                  "folders: run 'sheetrun sync' later", file=sys.stderr)

    def _collect(self, job: Job, outcome: Outcome) -> None:
        record = job.exit_record
        if record is not None:
            outcome.metrics = read_json(job.run_dir.metrics, {}) or {}
            if self.writer is not None:
                self.writer.finish(outcome.run_id, final_row_values(record, outcome.metrics))
        try:
            deliver_pending(self.sheet, job.run_dir, outcome.run_id)
        except SheetError as exc:
            print(f"sheetrun: row {outcome.number}: updates kept in {job.run_dir.pending} ({exc}); "
                  "run 'sheetrun sync' later", file=sys.stderr)
        if record is None:
            status = Status.CANCELLED if self.stop_reason else Status.LOST
            error = ("killed while being cancelled" if self.stop_reason else
                     f"job wrapper (pid {job.job_id}) ended without an exit record")
            self._write(outcome, {C.STATUS: status, C.ERROR: error}, job.run_dir)
            self._finish(outcome, status, error, write=False)
        else:
            self._finish(outcome, record["status"], record.get("error", ""), write=False,
                         walltime=format_walltime(record.get("walltime_s", 0)))
