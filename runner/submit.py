"""``sheetrun run --backend slurm``: claim the rows, prepare run folders, submit job arrays.

1. The same claim and run-folder preparation as local runs (``runner.scheduler``).
2. Rows are grouped by their SLURM options (project defaults from
   ``sheetrun.yaml``'s ``slurm:`` section, overridden by the row's ``slurm:``
   cells) and by the jobs they must wait for; each group becomes one array
   (split at the cluster's MaxArraySize). Rows that depend on rows of this
   launch are submitted after them, with ``--dependency=afterok:<their jobs>``.
3. Each array's job ids go into its rows in one sheet transaction; the rows
   stay Submitted until their jobs' wrappers write Running.

An ``sbatch`` that fails for good (a bad partition, say) fails the rows of
that array with sbatch's message, and the rows depending on them; the other
arrays are submitted regardless. ``follow`` then polls until every row ends
(``--wait``).
"""
from __future__ import annotations

import os
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from runner import columns as C
from runner.columns import Status
from runner.config import ConfigError, load_yaml
from runner.plan import PlannedRow
from runner.rows import RowError
from runner.scheduler import Outcome, RunOptions, RunResult, claim, collect_provenance, prepare
from runner.sheet import Sheet, SheetError
from runner.slurm import SbatchError, SlurmExecutor
from runner.slurm.executor import IO_THREADS
from runner.slurm_options import SlurmOptionError, validate

PROJECT_CONFIG = "sheetrun.yaml"


def slurm_defaults(root: str) -> dict[str, str]:
    """The ``slurm:`` section of ``<root>/sheetrun.yaml`` (validated), or nothing."""
    path = os.path.join(root, PROJECT_CONFIG)
    if not os.path.exists(path):
        return {}
    try:
        data = load_yaml(path) or {}
    except ConfigError as exc:
        raise SystemExit(f"sheetrun: {exc}") from None
    section = data.get("slurm") or {}
    if not isinstance(section, dict):
        raise SystemExit(f"sheetrun: {path}: 'slurm' must be a mapping of sbatch options")
    out = {}
    for option, value in section.items():
        try:
            out[str(option)] = validate(str(option), "" if value is None else str(value))
        except SlurmOptionError as exc:
            raise SystemExit(f"sheetrun: {path}: {exc}") from None
    return out


def submit(sheet: Sheet, executor: SlurmExecutor, opts: RunOptions, progress=None) -> RunResult:
    skipped: list[int] = []
    try:
        planned = claim(sheet, opts, skipped)
    except RowError as exc:
        raise SystemExit(f"sheetrun: {exc}") from None
    for number in skipped:
        print(f"sheetrun: row {number} is still queued or running from an earlier "
              "'sheetrun run'; not submitted twice", file=sys.stderr)
    defaults = slurm_defaults(opts.root)
    outcomes = {p.run_id: Outcome(p.number, p.run_id, Status.SUBMITTED if p.ok else Status.FAILED, p.error)
                for p in planned}
    result = RunResult(outcomes=list(outcomes.values()))
    runnable = [p for p in planned if p.ok]
    if not runnable:
        return result
    prov_dir = collect_provenance(sheet, opts)

    failed: dict[str, str] = {}              # run id -> error, written in one transaction at the end
    waiting: list[PlannedRow] = []

    def prepare_one(p: PlannedRow) -> str:
        try:
            p.run_dir = prepare(p, sheet, opts, prov_dir, env={})
            return ""
        except (OSError, ValueError) as exc:
            return f"could not prepare the run folder: {exc}"

    with ThreadPoolExecutor(IO_THREADS) as pool:         # hundreds of small folders: overlap the I/O
        for p, error in zip(runnable, pool.map(prepare_one, runnable)):
            if error:
                failed[p.run_id] = error
            else:
                waiting.append(p)
    job_of: dict[str, str] = {}              # run id -> SLURM job id
    while waiting:
        ready, later = [], []
        for p in waiting:
            bad = next((d for d in p.deps if d in failed), None)
            if bad is not None:
                failed[p.run_id] = f"dependency {outcomes[bad].number} failed"
            elif all(d in job_of for d in p.deps):
                ready.append(p)
            else:
                later.append(p)
        if not ready and later:              # cannot happen after plan()'s cycle check
            for p in later:
                failed[p.run_id] = "dependency cycle"
            break
        groups: dict[tuple, list[PlannedRow]] = defaultdict(list)
        for p in ready:
            options = {**defaults, **p.spec.slurm}
            after = tuple(sorted(job_of[d] for d in p.deps))
            groups[(tuple(sorted(options.items())), after)].append(p)
        for (options, after), rows in groups.items():
            try:
                jobs = executor.submit_array([p.run_dir for p in rows], dict(options), list(after))
            except SbatchError as exc:
                for p in rows:
                    failed[p.run_id] = f"sbatch: {exc}"
                continue
            for p, job in zip(rows, jobs):
                job_of[p.run_id] = job.job_id
            _write(sheet, {p.run_id: {C.JOB_ID: job.job_id} for p, job in zip(rows, jobs)})
            if progress:
                progress(f"submitted rows {_ranges([p.number for p in rows])} as job array {jobs[0].job_id.split('_')[0]}")
        waiting = [p for p in later if p.run_id not in failed]
    if failed:
        _write(sheet, {rid: {C.STATUS: Status.FAILED, C.ERROR: err} for rid, err in failed.items()},
               skip_statuses=Status.TERMINAL)
        for rid, err in failed.items():
            outcomes[rid].status, outcomes[rid].error = Status.FAILED, err
    return result


def _write(sheet: Sheet, updates: dict, skip_statuses=()) -> None:
    try:
        sheet.update_many(updates, skip_statuses=skip_statuses)
    except SheetError as exc:
        print(f"sheetrun: could not write {len(updates)} row(s) to the sheet ({exc}); "
              "'sheetrun sync' will fill them in from the run folders", file=sys.stderr)


def _ranges(numbers: list[int]) -> str:
    numbers = sorted(numbers)
    out, start = [], None
    for i, n in enumerate(numbers):
        if start is None:
            start = n
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            out.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ",".join(out)
