"""The claim: one sheet transaction that plans a launch's rows and stamps them as its own.

Each valid row gets its run folder with ``job.json`` *before* the row says Submitted with its new
``run_id``; a row whose previous run is still held is not taken. The sheet may change between
the read and the write (another program saving it): the transaction is then tried again on the
newest content, and folders an earlier attempt made are removed.
"""
from __future__ import annotations

import json
import os
import time

from runner.core import columns as C
from runner.core.columns import Status
from runner.core.errors import describe
from runner.core.rundir import RunDir, display_path
from runner.core.runindex import unshown_runs
from runner.launch.plan import PlannedRow, plan
from runner.runs.liveness import holder_text, verdict
from runner.sheet import Table
from runner.sheet.metric_columns import clear_previous_metrics, unaccounted_cells

KEPT_NOTE = "kept the cells"


class Claim:
    """One launch's claim (``launch``: a :class:`runner.launch.pipeline.Launch`)."""

    def __init__(self, launch):
        self.launch = launch
        self.root = launch.opts.root
        self.made: list[str] = []          # run folders of this transaction's attempts
        self.last: dict = {}               # the previous attempt: what it planned from, and its plan
        self.written: dict = {}            # run id -> (row, cells before, cells after) of the last attempt
        self.claimed_at = 0.0

    def run(self) -> list[PlannedRow]:
        try:
            planned = self.launch.sheet.transact(self.change)
        except BaseException:
            for folder in self.made:
                remove_claim(folder)
            raise
        used = {p.run_folder for p in planned if p.ok}
        for folder in self.made:
            if folder not in used:
                remove_claim(folder)
        return planned

    def held(self, row) -> str | None:
        """Who still holds the row's previous run, if anyone."""
        rd = RunDir(os.path.join(self.root, row.get(C.RUN_FOLDER)))
        seen = verdict(rd, row.get(C.RUN_ID))
        if not seen.active:
            return None
        claim = rd.launcher()
        if claim.launch and claim.launch != self.launch.id and "queued" in seen.reason:
            return f"queued in another {holder_text(claim)}"
        return seen.reason

    def change(self, table: Table) -> list[PlannedRow]:
        """One attempt of the transaction."""
        key = _plan_inputs(table)
        if key == self.last.get("key"):
            # The sheet changed since the last attempt, but not in a cell the plan reads (another
            # program saved a note, a metric): the same claim goes onto its newest content at once.
            return self.apply(table, self.last["planned"])
        for folder in self.made:             # an earlier attempt of this transaction (the file changed)
            remove_claim(folder)
        self.made.clear()
        planned = self.plan(table)
        claimed = dict(self.launch.claim, claimed=time.time())
        self.claimed_at = claimed["claimed"]
        self.launch.jobs_in_launch = sum(p.ok and p.writable for p in planned)
        for p in planned:
            if p.ok and p.writable:
                self.make_folder(table, p, claimed)
        _fail_dependents(planned)
        for p in planned:
            if p.writable and not p.ok and p.run_folder:
                remove_claim(p.run_folder)
                p.run_folder = ""
        self.last.update(key=key, planned=planned)
        return self.apply(table, planned)

    def plan(self, table: Table) -> list[PlannedRow]:
        launch, opts = self.launch, self.launch.opts
        result = launch.result
        result.skipped, result.notes, result.left_out = [], [], set()
        newer = unshown_runs(table, opts.root, launch.index, launch.sheet.location)
        return plan(table, opts.root, opts.rows, held=self.held, skipped=result.skipped,
                    worksheet=launch.sheet.name, notes=result.notes, conda_env=opts.conda_env,
                    allowance=launch.allowance, leave_out=lambda row: launch._leave_out(row, newer))

    def make_folder(self, table: Table, p: PlannedRow, claimed: dict) -> None:
        """The row's run folder, with ``job.json``; the row's error says why when it cannot be made."""
        folder = os.path.join(self.launch.sheet_dir, f"{self.launch.stamp}_row{p.number}_{p.run_id}")
        previous = table.find_row(p.number).get(C.RUN_FOLDER)
        previous = os.path.normpath(os.path.join(self.root, previous)) if previous else ""
        try:
            os.makedirs(folder)
            self.made.append(folder)
            p.run_folder = folder
            write_new(os.path.join(folder, "job.json"), self.launch.job_record(p, claimed, previous))
        except OSError as exc:
            p.run_folder = ""
            p.error = f"could not create the run folder: {describe(exc)}"

    def apply(self, table: Table, planned: list[PlannedRow]) -> list[PlannedRow]:
        """The claim's cells, written into this attempt's table."""
        if any(p.writable for p in planned):
            for column in C.OWNED:          # a fixed, readable order for new sheets
                table.ensure_column(column)
        self.written.clear()
        for p in planned:
            if p.writable:
                row = table.find_row(p.number)
                self._note_kept_cells(row, p)
                self.written[p.run_id] = set_claim(row, _claim_values(p, self.root), self.root)
        return planned

    def _note_kept_cells(self, row, p: PlannedRow) -> None:
        kept = unaccounted_cells(row, self.root)
        if kept and p.spec is not None and not any(w.startswith(KEPT_NOTE) for w in p.spec.warnings):
            p.spec.warnings.append(f"{KEPT_NOTE} {', '.join(kept)}: its previous run folder "
                                   f"{row.get(C.RUN_FOLDER)} is not here, so which are that run's numbers "
                                   "is unknown; empty those by hand")


def _claim_values(p: PlannedRow, root: str) -> dict:
    values = {C.RUN_ID: p.run_id, C.JOB_ID: "", C.EXIT_CODE: "", C.WALLTIME: ""}
    if p.ok:
        values.update({C.STATUS: Status.SUBMITTED, C.ERROR: "", C.RUN_FOLDER: display_path(p.run_folder, root)})
    else:
        values.update({C.STATUS: p.status, C.ERROR: C.cap(p.error, C.ERROR_MAX_CHARS), C.RUN_FOLDER: ""})
    return values


def _plan_inputs(table: Table) -> tuple:
    """What :func:`runner.launch.plan.plan` reads of a sheet: its columns, and each row's number and the
    cells of the columns sheetrun reads or owns (not notes, not metrics)."""
    columns = tuple(table.columns)
    read = [c for c in columns if C.is_input_column(c) or c in C.OWNED]
    return columns, tuple((row.number, row.ragged, tuple(row.get(c) for c in read)) for row in table.rows)


def set_claim(row, values: dict, root: str) -> tuple:
    """Write a claim's cells into ``row`` (emptying the metric cells of its previous run);
    returns (row, the texts before, the texts after), for the launch's ledger."""
    was = row.as_dict()
    after = {column: "" for column in clear_previous_metrics(row, root)}   # every number in a row is its run's
    for column, value in values.items():
        row.set(column, value)
        after[column] = str(value)
    return row, {column: was.get(column, "") for column in after}, after


def write_new(path: str, data: dict) -> None:
    """A JSON file in a folder nothing reads yet (no temp file and rename needed)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(data) + "\n")


def remove_claim(folder: str) -> None:
    try:
        os.unlink(os.path.join(folder, "job.json"))
    except OSError:
        pass
    try:
        os.rmdir(folder)
    except OSError:
        pass


def _fail_dependents(planned: list[PlannedRow]) -> None:
    """A row whose dependency could not be claimed (its run folder failed) fails too."""
    by_id = {p.run_id: p for p in planned}
    changed = True
    while changed:
        changed = False
        for p in planned:
            if p.ok:
                bad = next((by_id[d] for d in p.deps if not by_id[d].ok), None)
                if bad is not None:
                    p.block(bad)
                    changed = True
