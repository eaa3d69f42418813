"""``sheetrun sync``: reconcile rows left Submitted or Running with what really happened.

For each such row, ``runner.runs.liveness`` says whether its run is still held —
by a live sheetrun that claimed it, a live job wrapper, processes of the job
still running after their wrapper died, or a SLURM job (all SLURM rows are
asked about in one ``squeue`` call) — and if not, how it ended: the exit
record wins; a run nobody holds any more becomes Lost, so no row stays
Running forever, and no row a live process still has is ever called Lost.

A row an older copy of the sheet was saved over (an editor open since before
the launch) shows an older run than its newest, or none: it gets its newest
run back first (``runner.core.runindex``), claim, status and metrics, whatever the
copy lost — the runner's columns included — unless ``sheetrun reset`` voided
that run. Sheet writes a job could not deliver (``pending_updates.jsonl``) go next.
The writes take at most three transactions: the runs put back, then the rows
stnd left active, then every delivered write and settled row together. A value
that cannot go into a cell is left out and named; it never stops the sync.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

from runner.core import columns as C
from runner.core.columns import Status
from runner.core.rundir import RunDir, display_path, read_json_quietly, write_json
from runner.core.runindex import RunIndex, Unshown, unshown_runs
from runner.job.results import final_row_values, load_results
from runner.report import clean_metrics, read_metrics_log
from runner.runs.liveness import (Verdict, default_client, local_verdict, slurm_info, slurm_states, slurm_verdict,
                                  stnd_verdict)
from runner.sheet import Sheet, SheetError
from runner.sheet.base import apply_batches
from runner.sheet.metric_columns import MetricColumns, clear_previous_metrics
from runner.slurm import SlurmClient, SlurmError
from runner.slurm.client import lookup


def deliver_pending(sheet: Sheet, rd: RunDir, run_id: str, root: str | None = None) -> int:
    """Push sheet writes a job could not deliver itself; returns how many were sent."""
    batches = rd.pending_batches()
    if not batches:
        return 0
    delivery = sheet.update_rows_in_order({run_id: batches}, MetricColumns(root or os.getcwd()))
    for note in delivery.notes:
        print(f"sheetrun: {note}", file=sys.stderr)
    if run_id in delivery.undelivered:
        return 0
    rd.clear_pending()
    return len(batches)


@dataclass
class SyncChange:
    number: int
    run_id: str
    before: str
    after: str
    reason: str


def restore_lost_runs(sheet: Sheet, root: str, runs_dir: str | None = None, table=None) -> list[SyncChange]:
    """Give every row an older copy was saved over its newest run back, in one transaction (none when
    ``table``, the sheet as just read, shows no such row)."""
    index = RunIndex(os.path.join(runs_dir or os.path.join(root, "experiments"), sheet.name))
    if not os.path.exists(index.path):
        return []
    if table is not None and not unshown_runs(table, root, index, sheet.location):
        return []
    policy = MetricColumns(root)

    def change(table) -> list[SyncChange]:
        out = []
        for number, found in unshown_runs(table, root, index, sheet.location).items():
            row, run_id = table.find_row(number), found.run.run_id
            was = row.get(C.STATUS)
            values = _restored_values(found, root)
            clear_previous_metrics(row, root)            # every number in a row is its run's
            row.set(C.RUN_ID, run_id)
            delivery = apply_batches(table, {run_id: [(values, frozenset())]}, policy)
            for note in delivery.notes:
                print(f"sheetrun: {note}", file=sys.stderr)
            out.append(SyncChange(number, run_id, was or "(empty)", values[C.STATUS],
                                  "put back from its run folder: the sheet had lost it (an older copy saved over it?)"))
        return out

    return sheet.transact(change)


def _restored_values(found: Unshown, root: str) -> dict:
    rd = found.run.run_dir
    slurm, wrapper = slurm_info(rd), rd.read_wrapper()
    job_id = (slurm or {}).get("job_id") or (wrapper.job_id if wrapper is not None else "")
    values = {C.RUN_FOLDER: display_path(rd.path, root), C.JOB_ID: str(job_id or "")}
    if found.record is not None:
        metrics, _ = load_results(rd)
        values.update(final_row_values(found.record, metrics))
    else:                    # still to end: the rest of sync follows it as any active row
        values.update({C.STATUS: Status.RUNNING if os.path.exists(rd.wrapper) else Status.SUBMITTED,
                       C.EXIT_CODE: "", C.WALLTIME: "", C.ERROR: ""})
    return values


@dataclass
class Reconciled:
    changes: list[SyncChange]
    rows: dict            # run id -> (row number, status, error), as the sheet holds them after it
    undelivered: set      # run ids whose writes did not land (no row has them)


def sync(sheet: Sheet, root: str, client: SlurmClient | None = None, runs_dir: str | None = None
         ) -> list[SyncChange]:
    """Reconcile every Submitted / Running row; one ``squeue`` call covers all SLURM rows."""
    return reconcile(sheet, root, client, runs_dir).changes


def reconcile(sheet: Sheet, root: str, client: SlurmClient | None = None, runs_dir: str | None = None,
              extra: dict | None = None) -> Reconciled:
    """:func:`sync`, with ``extra`` batches (run id -> [(values, skip statuses)]: what a follower
    read in the run folders) in its one write; one sheet read when nothing is to be written."""
    table = sheet.read()
    changes: list[SyncChange] = restore_lost_runs(sheet, root, runs_dir, table)
    if changes:
        table = sheet.read()
    work = _Reconciliation(root, client, extra)
    work.ask_slurm(table)
    for row in table.rows:
        work.row(row)
    work.cancel_jobs_that_cannot_start()
    if work.stnd_rows:
        sheet.transact(work.settle_stnd_rows)
    undelivered = work.deliver(sheet)
    return Reconciled(changes + work.changes, _rows_after(table, work.batches, undelivered), undelivered)


class _Reconciliation:
    """One reconcile: what each row's run says, gathered into one write."""

    def __init__(self, root: str, client: SlurmClient | None, extra: dict | None):
        self.root = root
        self.client = client
        self.changes: list[SyncChange] = []
        self.infos: dict = {}                 # run id -> slurm.json, for the active SLURM rows
        self.states: dict = {}
        self.slurm_problem = ""
        self.batches: dict[str, list] = {rid: list(b) for rid, b in (extra or {}).items()}  # run id -> writes
        self.held_back: dict[str, RunDir] = {}   # run folders whose pending writes go out now
        self.to_cancel: list[str] = []
        self.stnd_rows: dict[int, tuple] = {}   # row number -> (run folder cell, cells), rows stnd left active

    def ask_slurm(self, table) -> None:
        """The states of every active SLURM row's job, in one ``squeue`` call."""
        for row in table.rows:
            if row.get(C.STATUS) in Status.ACTIVE and row.get(C.RUN_ID) and row.get(C.RUN_FOLDER):
                info = slurm_info(RunDir(os.path.join(self.root, row.get(C.RUN_FOLDER))))
                if info:
                    self.infos[row.get(C.RUN_ID)] = info
        if self.infos:
            try:
                self.states = slurm_states([i["job_id"] for i in self.infos.values()],
                                           self.client or default_client())
            except SlurmError as exc:
                self.slurm_problem = f"SLURM cannot be asked ({exc}); row left as it is"

    def row(self, row) -> None:
        status, run_id, folder = row.get(C.STATUS), row.get(C.RUN_ID), row.get(C.RUN_FOLDER)
        if not run_id and status in Status.ACTIVE and not row.ragged:
            self._stnd_row(row)
            return
        if not run_id or not folder:
            return
        rd = RunDir(os.path.join(self.root, folder))
        pending = self._take_pending(run_id, rd)
        if status not in Status.ACTIVE:
            if pending:
                self.changes.append(SyncChange(row.number, run_id, status, status,
                                               f"delivered {len(pending)} pending update(s)"))
            return
        info = self.infos.get(run_id)
        if info and self.slurm_problem:
            self.changes.append(SyncChange(row.number, run_id, status, status, self.slurm_problem))
            return
        seen = self._slurm_verdict(rd, info) if info else local_verdict(rd, run_id)
        if seen.active:
            if info and not row.get(C.JOB_ID):
                self.batches.setdefault(run_id, []).append(({C.JOB_ID: info["job_id"]}, ()))
            self.changes.append(SyncChange(row.number, run_id, status, status, seen.reason))
            return
        values = _settled_values(rd, seen)
        if info:
            values[C.JOB_ID] = info["job_id"]
        # Only a row still active is changed: a job finishing meanwhile keeps its own result.
        self.batches.setdefault(run_id, []).append((values, Status.TERMINAL))
        self.changes.append(SyncChange(row.number, run_id, status, seen.status, seen.reason))

    def _stnd_row(self, row) -> None:
        """A row stnd started (no run id): settled from its own files."""
        status = row.get(C.STATUS)
        seen = stnd_verdict(row, self.root)
        self.changes.append(SyncChange(row.number, "", status, seen.status or status, seen.reason))
        if not seen.active:
            self.stnd_rows[row.number] = (row.get(C.RUN_FOLDER), {C.STATUS: seen.status, C.ERROR: seen.reason})

    def _take_pending(self, run_id: str, rd: RunDir) -> list:
        """The writes the job could not deliver, put first in the row's batches."""
        pending = rd.pending_batches() if os.path.isdir(rd.path) else []
        if pending:
            self.batches[run_id] = list(pending) + self.batches.get(run_id, [])
            self.held_back[run_id] = rd
        return pending

    def _slurm_verdict(self, rd: RunDir, info: dict) -> Verdict:
        seen = slurm_verdict(rd, info["job_id"], self.states)
        state = lookup(self.states, info["job_id"])
        if not seen.active and state is not None and state.state == "PENDING":
            self.to_cancel.append(info["job_id"])    # it can never start (a failed dependency)
        return seen

    def cancel_jobs_that_cannot_start(self) -> None:
        if self.to_cancel:
            try:
                (self.client or default_client()).cancel(self.to_cancel)
            except SlurmError:
                pass          # the row already says why; a later sync tries again

    def settle_stnd_rows(self, table) -> None:
        for row in table.rows:
            folder, values = self.stnd_rows.get(row.number, (None, None))
            if (values and row.get(C.RUN_FOLDER) == folder and not row.get(C.RUN_ID)
                    and row.get(C.STATUS) in Status.ACTIVE and not row.ragged):
                for column, value in values.items():
                    row.set(column, value)

    def deliver(self, sheet: Sheet) -> set:
        """Every batch in one transaction; the run ids whose writes did not land."""
        if not self.batches:
            return set()
        delivery = sheet.update_rows_in_order(self.batches, MetricColumns(self.root))
        for note in delivery.notes:
            print(f"sheetrun: {note}", file=sys.stderr)
        for run_id, rd in self.held_back.items():
            if run_id not in delivery.undelivered:
                try:
                    rd.clear_pending()
                except OSError:
                    pass
        for run_id, why in delivery.refused.items():
            print(f"sheetrun: run {run_id}: {why}", file=sys.stderr)
        return delivery.undelivered


def _rows_after(table, batches: dict, undelivered: set) -> dict:
    """Each run's row as the sheet holds it once ``batches`` were written (skip statuses honoured)."""
    out = {}
    for row in table.rows:
        run_id = row.get(C.RUN_ID)
        if not run_id:
            continue
        status, error = row.get(C.STATUS), row.get(C.ERROR)
        for values, skip in ([] if run_id in undelivered else batches.get(run_id, [])):
            if status not in skip:
                status, error = str(values.get(C.STATUS, status)), str(values.get(C.ERROR, error))
        out[run_id] = (row.number, status, error)
    return out


def _settled_values(rd: RunDir, seen: Verdict) -> dict:
    if seen.record:
        metrics, _ = load_results(rd)
        values = final_row_values(seen.record, metrics)
        if seen.record.status != seen.status:     # SLURM knows better (time limit, node failure)
            values.update({C.STATUS: seen.status, C.ERROR: seen.reason})
        return values
    return {C.STATUS: seen.status, C.ERROR: seen.reason}


class LiveRows:
    """What a follower writes for the jobs it follows (they leave their rows to it): Running when a
    job's wrapper starts it, and its metrics as they are reported, read from the run folders."""

    def __init__(self, folders: dict[str, str]):
        self.folders = {rid: RunDir(f) for rid, f in folders.items()}
        self.started: set[str] = set()
        self.offsets: dict[str, int] = {}
        self.unsent: dict[str, dict] = {}
        self._offered: dict = {}

    def updates(self, ended: set[str]) -> dict[str, list]:
        """Batches for the runs not yet ended; :meth:`delivered` once they are in the sheet."""
        out: dict[str, list] = {}
        self._offered = {}
        for rid, rd in self.folders.items():
            if rid in ended:
                continue
            batches = []
            if rid not in self.started and os.path.exists(rd.wrapper):
                wrapper = rd.read_wrapper()
                batches.append(({C.STATUS: Status.RUNNING, C.ERROR: "", C.JOB_ID: str((wrapper and wrapper.job_id) or "")},
                                Status.TERMINAL))
            new, offset = read_metrics_log(rd.metrics_log, self.offsets.get(rid, 0))
            new, _ = clean_metrics(new)
            self.offsets[rid] = offset
            self.unsent.setdefault(rid, {}).update(new)
            if self.unsent[rid]:
                batches.append((dict(self.unsent[rid]), ()))
            if batches:
                out[rid] = batches
                self._offered[rid] = batches
        return out

    def delivered(self, undelivered: set) -> None:
        for rid in self._offered:
            if rid not in undelivered:
                self.started.add(rid)
                self.unsent.pop(rid, None)


def follow(sheet: Sheet, root: str, run_ids: set[str], client: SlurmClient | None = None,
           poll_s: float = 2.0, on_change=None, timeout_s: float | None = None,
           runs_dir: str | None = None, folders: dict | None = None, record: str = "") -> dict[str, str]:
    """Sync until every row in ``run_ids`` has ended; returns run id -> final status.

    While it follows, it writes those rows itself — Running, the metrics as reported, how each
    ended — from the run folders (``folders``: run id -> run folder), and keeps the launch
    ``record`` touched so that the jobs leave their rows to it (``jobwrapper.follower_alive``): one
    sheet read and at most one write per poll however many jobs, and at most one ``squeue``. A
    sheet that cannot be read or written for a while (Google's 429 quota answers, an outage) is
    said once and tried again: never a reason to stop following.
    ``on_change(number, status, error)`` is called when a row's status changes.
    """
    live = LiveRows(folders or {})
    seen: dict[str, str] = {}
    problem = ""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        _touch(record)
        ended = {rid for rid, status in seen.items() if status and status not in Status.ACTIVE}
        extra = live.updates(ended)
        try:
            result = reconcile(sheet, root, client, runs_dir, extra)
        except SheetError as exc:
            if str(exc) != problem:
                print(f"sheetrun: the sheet cannot be read or written now ({exc}); following on, and trying "
                      "again", file=sys.stderr)
            problem = str(exc)
            time.sleep(poll_s)
            continue
        if problem:
            print("sheetrun: the sheet answers again", file=sys.stderr)
            problem = ""
        live.delivered(result.undelivered)
        for rid in run_ids:
            number, status, error = result.rows.get(rid, (0, "", ""))
            if seen.get(rid) != status:
                seen[rid] = status
                if on_change and number:
                    on_change(number, status, error)
        if all(seen.get(rid) not in Status.ACTIVE for rid in run_ids):
            end_following(record)
            return seen
        if deadline is not None and time.monotonic() > deadline:
            end_following(record)
            return seen
        time.sleep(poll_s)


def _touch(path: str) -> None:
    if path:
        try:
            os.utime(path)
        except OSError:
            pass


def end_following(path: str) -> None:
    """The jobs still running (if any) write their own rows from now on."""
    if path:
        try:
            write_json(path, dict(read_json_quietly(path, {}) or {}, follow_ended=time.time()))
        except OSError:
            pass
