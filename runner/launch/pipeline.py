"""One launch of a sheet's rows, the same pipeline for every backend:

    plan -> claim -> prepare run folders -> executor start -> follow

1. **Claim** — one sheet transaction plans the rows (``runner.launch.plan``) and, for
   each valid row, creates its run folder holding ``job.json`` (what to run,
   and the launcher: this sheetrun's pid, start time and host) *before* the
   row says Submitted with its new ``run_id``. A row whose previous run is still held — by a live
   sheetrun, a live wrapper, live processes, or a SLURM job — is not taken,
   and is named in the result with its holder (``runner.runs.liveness``). Claims
   are serialised by the sheet's lock, so two launches started at the same
   instant never both take a row. Invalid rows become Failed with their error.
2. **Prepare** — each run folder gets ``config.yaml``, ``command.txt`` and
   the launch's provenance (collected once, hard-linked).
3. **Start** — the executor runs them: the local backend here, at most
   ``jobs`` at a time (``runner.launch.follow``); SLURM as job arrays.

All row writes of the launch go through one :class:`~runner.launch.rowwriter.RowWriter`.
The launch record ``<runs>/<sheet>/.launches/<id>.json`` names this sheetrun;
its modification time is the launch's heartbeat (for hosts that share the
run folders), and it ends with the launch's numbers (rows, sheet writes).
"""
from __future__ import annotations

import os
import secrets
import shlex
import sys
import time
from dataclasses import dataclass, field

from runner.core import columns as C
from runner.core import procs, settings
from runner.core.columns import Status
from runner.core.errors import describe
from runner.core.records import JobRecord, Launcher
from runner.core.rowrefs import RowFilter
from runner.core.rundir import HEARTBEAT_INTERVAL_S, RunDir, display_path, write_json
from runner.core.runindex import IndexedRun, RunIndex, row_key
from runner.job.environment import THREAD_VARS
from runner.job.wrapper import REMOTE_FORWARD_INTERVAL_S
from runner.launch import provenance
from runner.launch.approvals import Approvals
from runner.launch.claim import Claim, remove_claim, set_claim, write_new
from runner.launch.follow import follow_rows
from runner.launch.plan import PlannedRow, new_run_id
from runner.launch.rowwriter import RowWriter
from runner.launch.submit import submit_rows
from runner.rowspec import stnd_logging
from runner.rowspec.allow import Allowance
from runner.rowspec.config import dump_yaml
from runner.rowspec.slurm_options import parse_time
from runner.sheet import Sheet, SheetError, Table
from runner.sheet.metric_columns import MetricColumns

FINAL_FLUSH_TRIES = 3
JOB_SHEET_WRITES_PER_MIN = 20    # SLURM jobs writing a Google Sheet themselves: all of a launch's, together
                                 # (a read and a write each; Google allows 60 of each per minute and user)
PROJECT_ROOT_ENV = "PROJECT_ROOT_PROVIDED_FOR_STUNED"     # stnd's name for the project root


@dataclass
class RunOptions:
    root: str
    runs_dir: str
    jobs: int = 1
    rows: RowFilter | None = None
    python: str = sys.executable
    gpus_per_job: int | None = None    # local: devices per job (None: 1 where there are GPUs)
    timeout: str = ""                  # a time limit for rows without a time_limit cell ("" none)
    retries: int = 0                   # local: runs again a row that failed or was lost, this often
    conda_env: str = ""                # script rows run inside this conda environment (stnd's --conda_env)
    approvals: Approvals | None = None  # a shared sheet: the commands this user confirmed (runner.launch.approvals)
    follow: bool = False               # SLURM --wait: this sheetrun writes the jobs' rows while it follows
    log_limit: int | None = None       # stdout.log / stderr.log kept to this many bytes (None: sheetrun.yaml's)


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
    skipped: list[tuple[int, str]] = field(default_factory=list)   # (row, why it was left out)
    notes: list[str] = field(default_factory=list)                  # about the sheet as a whole
    interrupted: str = ""
    unwritten: bool = False          # some updates could not reach the sheet (kept for sync)
    left_out: set = field(default_factory=set)   # selected rows not started: a run not in the sheet, a
                                                  # command not confirmed (not: held by an earlier run)
    rows_gone: int = 0               # rows whose results could not reach their row: gone, or refused
    folders: dict = field(default_factory=dict)   # run id -> run folder, of the rows claimed
    record: str = ""                 # the launch record (its heartbeat tells jobs a follower writes for them)

    @property
    def ok(self) -> bool:
        """Every row Completed, and its results in its row (the exit code's 0); a sheet that could
        not be written for a while is said, not failed (its rows are there: sync delivers)."""
        return (not self.interrupted and not self.left_out and not self.rows_gone
                and all(o.status == Status.COMPLETED for o in self.outcomes))


def cpu_budget(jobs: int) -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, jobs))


class Launch:
    def __init__(self, sheet: Sheet, opts: RunOptions, backend: str = "local", progress=None):
        self.sheet = sheet
        self.opts = opts
        self.backend = backend
        self.progress = progress
        self.started = time.time()
        stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(self.started))
        self.stamp = stamp
        self.id = f"{stamp}_{os.getpid()}_{secrets.token_hex(2)}"
        self.sheet_dir = os.path.join(opts.runs_dir, sheet.name)
        self.record_path = os.path.join(self.sheet_dir, ".launches", self.id + ".json")
        self.claim = dict(procs.identity(), launch=self.id, launch_file=self.record_path)
        self.allowance = Allowance.load(opts.root)      # what the project's rows may run (runner.rowspec.allow)
        self.log_limit = opts.log_limit or settings.log_limit(opts.root)
        self.writer = RowWriter(sheet, MetricColumns(opts.root))
        self.index = RunIndex(self.sheet_dir)            # every claim, for sync after an older copy is saved
        self.result = RunResult()
        self.outcomes: dict[str, Outcome] = {}
        self.prov_dir: str | None = None
        self.env = {var: str(cpu_budget(opts.jobs)) for var in THREAD_VARS}
        # every job learns the project root, as stnd-wrapped scripts expect
        self.root_env = {PROJECT_ROOT_ENV: opts.root}
        # who writes the rows: this launch ("runner"), or each job (on SLURM, where no runner stays)
        self.sheet_writes = "runner" if backend == "local" else "job"
        self.jobs_in_launch = 0          # rows claimed: how often each SLURM job may write a Google Sheet
        self._beat = 0.0

    # -- the launch record -------------------------------------------------------------------
    def _write_record(self, **extra) -> None:
        try:
            os.makedirs(os.path.dirname(self.record_path), exist_ok=True)
            write_json(self.record_path, dict(self.claim, backend=self.backend, sheet=self.sheet.location,
                                              started=self.started, follows=self.opts.follow, **extra))
        except OSError as exc:
            print(f"sheetrun: cannot write the launch record {self.record_path}: {describe(exc)}",
                  file=sys.stderr)

    def heartbeat(self) -> None:
        now = time.time()
        if now - self._beat >= HEARTBEAT_INTERVAL_S:
            self._beat = now
            try:
                os.utime(self.record_path)
            except OSError:
                pass

    # -- 1. claim ------------------------------------------------------------------------------
    def claim_rows(self) -> list[PlannedRow]:
        """Plan and claim the rows in one transaction; returns the planned rows."""
        self._write_record()
        claim = Claim(self)
        planned = claim.run()
        for run_id, (row, before, after) in claim.written.items():
            self.writer.ledger.claimed(run_id, row, before, after)
        self._index([(p, claim.written[p.run_id][0]) for p in planned if p.ok and p.run_id in claim.written],
                    claim.claimed_at)
        for p in planned:
            self.outcomes[p.run_id] = Outcome(p.number, p.run_id, p.status, p.error)
            if p.run_folder:
                self.writer.folders[p.run_id] = p.run_folder
        self.result.outcomes = list(self.outcomes.values())
        self.result.folders = {p.run_id: p.run_folder for p in planned if p.ok and p.run_folder}
        self.result.record = self.record_path
        self._remember_commands(planned)
        return planned

    def _leave_out(self, row, newer: dict) -> str | None:
        """Why a selected row is not started: a run of it the sheet does not show (an older copy was
        saved over it: runner.core.runindex), or a shared sheet's command not confirmed (runner.launch.approvals)."""
        why = None
        if row.number in newer:
            why = newer[row.number].reason(self.opts.root, row.number)
        elif self.opts.approvals is not None:
            why = self.opts.approvals.check(row)
        if why:
            self.result.left_out.add(row.number)
        return why

    def _index(self, claims: list, created: float) -> None:
        """Add this launch's claims to the sheet's run index (what ``sheetrun sync`` puts back)."""
        try:
            self.index.add([IndexedRun(p.run_id, p.run_folder, p.number, row_key(row), created, self.sheet.location)
                            for p, row in claims])
        except OSError as exc:
            print(f"sheetrun: could not add to the run index {self.index.path}: {describe(exc)}", file=sys.stderr)

    def _remember_commands(self, planned: list[PlannedRow]) -> None:
        """A shared sheet: the commands this launch claimed are ones this user ran (runner.launch.approvals)."""
        approvals = self.opts.approvals
        if approvals is None:
            return
        for p in planned:
            if p.ok:
                approvals.claimed(p.number, p.run_id)
        try:
            approvals.save()
        except (OSError, TimeoutError) as exc:
            print(f"sheetrun: could not remember the commands run ({describe(exc)}); they will be asked "
                  "about again", file=sys.stderr)

    # -- 2. prepare ------------------------------------------------------------------------
    def collect_provenance(self) -> None:
        """Provenance for this launch, once, to be hard-linked into each run folder."""
        try:
            sheet_file = () if self.sheet.remote else (self.sheet.location,)
            self.prov_dir = provenance.collect(
                self.opts.root, os.path.join(self.sheet_dir, ".provenance", self.id),
                exclude_dirs=(self.opts.runs_dir,), exclude_files=sheet_file)
        except Exception as exc:                 # provenance must never block a run
            print(f"sheetrun: could not record provenance: {exc}", file=sys.stderr)

    def time_limit(self, p: PlannedRow) -> tuple[str, float | None]:
        """The row's time limit: its ``time_limit`` cell, else ``--timeout``; (text, seconds)."""
        text = p.spec.time_limit or self.opts.timeout
        return text, (parse_time(text) if text else None)

    def job_record(self, p: PlannedRow, launcher: dict, previous: str = "", attempt: int = 1) -> dict:
        """``job.json``: what the job runs, and who claimed it (written when the row is claimed)."""
        row_env = dict(self.env if self.backend == "local" else {}, **self.root_env)
        row_env.update(p.spec.env)
        limit, limit_s = self.time_limit(p)
        return JobRecord(
            sheet=self.sheet.location, run_id=p.run_id, row=p.number, name=p.spec.name, attempt=attempt,
            argv=p.spec.argv(os.path.join(p.run_folder, "config.yaml"), self.opts.python),
            cwd=self.opts.root, env=row_env, launcher=Launcher.from_json(launcher),
            time_limit=limit, time_limit_s=limit_s, previous_run_folder=previous,
            sheet_writes=self.sheet_writes, exec_prefix=procs.pdeathsig_prefix(),
            sheet_interval_s=self.sheet_interval_s(), log_limit=self.log_limit, take_last=p.spec.take_last,
            stnd_row_csv=os.path.join(p.run_folder, stnd_logging.ROW_FILE) if p.spec.stnd_logging else "",
        ).to_json()

    def sheet_interval_s(self) -> float | None:
        """How often each job of a launch that writes its own rows (SLURM) may write a Google Sheet:
        all of them together stay within JOB_SHEET_WRITES_PER_MIN. None: the default pace."""
        if not self.sheet.remote or self.sheet_writes != "job":
            return None
        return max(REMOTE_FORWARD_INTERVAL_S, 60.0 * self.jobs_in_launch / JOB_SHEET_WRITES_PER_MIN)

    def prepare(self, p: PlannedRow, extra_env: dict | None = None) -> RunDir:
        """Write a claimed row's run folder; OSError / ValueError if it cannot be written.

        ``command.txt`` is the exact command with every variable sheetrun sets for it
        (threads, the row's ``env:`` columns, its devices: ``extra_env``).
        """
        rd = RunDir(p.run_folder)
        opts = self.opts
        config = dict(p.spec.config)
        if p.spec.stnd_logging:
            stnd_logging.point_at_private_csv(config, p.run_folder)
        with open(rd.config, "w", encoding="utf-8") as f:
            f.write(dump_yaml(config))
        argv = p.spec.argv(rd.config, opts.python)
        env = {**(self.env if self.backend == "local" else {}), **self.root_env, **p.spec.env, **(extra_env or {})}
        with open(rd.command, "w", encoding="utf-8") as f:
            exports = "".join(f"{k}={shlex.quote(v)} " for k, v in env.items())
            f.write(f"cd {shlex.quote(opts.root)} && {exports}{shlex.join(argv)}\n")
        if self.prov_dir:
            provenance.link_into(self.prov_dir, rd.provenance)
        p.run_dir = rd
        return rd

    # -- running a row again ---------------------------------------------------------------------
    def retry(self, p: PlannedRow, attempt: int) -> PlannedRow | None:
        """Claim a row that failed for another try: a new run id and run folder, Submitted again.
        :meth:`claim_again` (the sheet's part), then :meth:`tried_again` (the launch's)."""
        again = self.claim_again(p, attempt)
        if again is not None:
            self.tried_again(p, again)
        return again

    def claim_again(self, p: PlannedRow, attempt: int) -> PlannedRow | None:
        """The sheet's part of a retry, for the sheet's own thread: its last try's final cells are
        written first, then the new claim. None if the row cannot be claimed (it is gone, or the
        sheet cannot be written)."""
        if not self.writer.flush(force=True):
            return None
        again = PlannedRow(p.number, new_run_id(set()), spec=p.spec, deps=p.deps)
        folder = os.path.join(self.sheet_dir, f"{self.stamp}_row{p.number}_try{attempt}_{again.run_id}")
        again.run_folder = folder
        claimed = dict(self.claim, claimed=time.time())

        def change(table: Table) -> bool:
            row = next((r for r in table.rows if r.get(C.RUN_ID) == p.run_id), None)
            if row is None or row.ragged:
                return False
            os.makedirs(folder, exist_ok=True)
            write_new(os.path.join(folder, "job.json"), self.job_record(again, claimed, p.run_folder, attempt))
            written[:] = [set_claim(row, {C.RUN_ID: again.run_id, C.STATUS: Status.SUBMITTED, C.JOB_ID: "",
                                           C.EXIT_CODE: "", C.WALLTIME: "", C.ERROR: "",
                                           C.RUN_FOLDER: display_path(folder, self.opts.root)}, self.opts.root)]
            return True

        written: list = []

        try:
            claimed_again = self.sheet.transact(change)
        except (SheetError, OSError) as exc:
            print(f"sheetrun: row {p.number} not tried again: {exc}", file=sys.stderr)
            claimed_again = False
        if not claimed_again:
            remove_claim(folder)
            return None
        self.writer.ledger.forget(p.run_id)
        self.writer.ledger.claimed(again.run_id, *written[0])
        self._index([(again, written[0][0])], claimed["claimed"])
        return again

    def tried_again(self, p: PlannedRow, again: PlannedRow) -> None:
        """The launch's part of a retry (in the loop that follows the jobs): the row's new run."""
        folder = again.run_folder
        previous = self.outcomes.pop(p.run_id)
        self.outcomes[again.run_id] = Outcome(p.number, again.run_id, Status.SUBMITTED)
        self.result.outcomes = [o for o in self.result.outcomes if o is not previous]
        self.result.outcomes.append(self.outcomes[again.run_id])
        self.writer.folders[again.run_id] = folder

    # -- rows that end without running ------------------------------------------------------
    def settle(self, p: PlannedRow | str, status: str, error: str) -> None:
        """A row ends here without a job (a failed dependency, cancelled, not prepared)."""
        run_id = p if isinstance(p, str) else p.run_id
        outcome = self.outcomes[run_id]
        previous = outcome.status
        outcome.status, outcome.error = status, error
        self.writer.add(run_id, {C.STATUS: status, C.ERROR: error}, Status.TERMINAL)
        if self.progress:
            self.progress.finished(outcome, previous)

    # -- the end -------------------------------------------------------------------------------
    def interrupted(self, local: bool) -> None:
        """A Ctrl-C outside the follower's loop: rows a local run never started are Cancelled (on SLURM
        they are queued, and stay so); what the launch has yet to write is written, or kept, by finish."""
        self.result.interrupted = self.result.interrupted or "SIGINT"
        for outcome in list(self.outcomes.values()):
            if local and outcome.status == Status.SUBMITTED:
                self.settle(outcome.run_id, Status.CANCELLED, "cancelled before it started")

    def finish(self) -> RunResult:
        """Deliver what is left; keep what cannot be delivered in the run folders. A Ctrl-C here
        stops waiting on the sheet: what was not written is kept the same way."""
        writer = self.writer
        try:
            writer.wait_idle()
            for attempt in range(FINAL_FLUSH_TRIES):
                if writer.flush(force=True):
                    break
                time.sleep(0.5 * (attempt + 1))
            if not writer.pending:
                writer.settle(time.time() - self.started)
        except KeyboardInterrupt:
            self.result.interrupted = self.result.interrupted or "SIGINT"
            writer.problem = writer.problem or "interrupted while writing it"
        leftovers = set(writer.undelivered())
        if leftovers:
            refused, gone = set(writer.rejected), set(writer.orphans)
            lost = writer.spill()
            sync = f"'sheetrun sync {self.sheet.location}'"
            if leftovers - refused - gone:
                self.result.unwritten = True
                print("sheetrun: the sheet could not be written"
                      + (f" ({writer.problem})" if writer.problem else "")
                      + f"; the rows' updates are kept in their run folders: run {sync} once it can be written",
                      file=sys.stderr)
            if gone:
                print(f"sheetrun: {len(gone)} row(s) of this launch are no longer in the sheet (deleted, or "
                      "the sheet cut short by another program); their results wait in their run folders: "
                      f"{sync} puts them back once the rows are there again", file=sys.stderr)
            if refused:
                print(f"sheetrun: the sheet refused the values of {len(refused)} row(s) (their error cells say why); "
                      "they wait in their run folders", file=sys.stderr)
            self.result.rows_gone = len(gone | refused)
            if lost:
                print(f"sheetrun: the updates of {len(lost)} row(s) could not be kept anywhere; their run "
                      "folders' exit.json still tell 'sheetrun sync' how they ended", file=sys.stderr)
        self._write_record(ended=time.time(), rows=len(self.outcomes), cells_restored=writer.restored,
                           sheet_transactions=writer.transactions + 1,
                           sheet_rewrites=getattr(self.sheet, "writes", None))
        return self.result


def launch(sheet: Sheet, executor, opts: RunOptions, progress=None) -> RunResult:
    """Claim, prepare and start the selected rows of ``sheet`` on ``executor``."""
    run = Launch(sheet, opts, executor.name, progress)
    planned = run.claim_rows()
    if progress:
        progress.start(planned, run.result.skipped, run.result.notes)
    runnable = [p for p in planned if p.ok]
    try:
        if runnable:
            run.collect_provenance()
            executor.open(run.record_path)
            if executor.runs_here:            # follow the jobs here to their end, a few at a time
                follow_rows(run, executor, runnable)
            else:                             # a batch scheduler: submit them all, grouped
                submit_rows(run, executor, runnable)
    except KeyboardInterrupt:              # a Ctrl-C between the follower's own handling and the end
        run.interrupted(local=executor.name == "local")
    result = run.finish()
    if progress:
        progress.stop(result)
    return result
