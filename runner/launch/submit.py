"""Submitting a launch's claimed rows to SLURM as job arrays.

The launch (``runner.launch.pipeline``) has claimed the rows exactly as for a local
run; here:

1. the run folders are written (many at once: hundreds of small files);
2. rows are grouped by their SLURM options (project defaults from
   ``sheetrun.yaml``'s ``slurm:`` section, overridden by the row's ``slurm:``
   cells) and by the jobs they must wait for; each group becomes one array
   (split at the cluster's MaxArraySize). Rows that depend on rows of this
   launch are submitted after them, with ``--dependency=afterok:<their jobs>``;
3. the job ids go to the launch's row writer, all in one transaction at the
   end; the rows stay Submitted until their jobs' wrappers write Running
   (on SLURM each job writes its own row).

An ``sbatch`` that fails for good (a bad partition, say) fails the rows of
that array with sbatch's message, and the rows depending on them; the other
arrays are submitted regardless.
"""
from __future__ import annotations

import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from runner.core import columns as C
from runner.core.columns import Status
from runner.core.errors import UsageError, describe
from runner.core.settings import PROJECT_CONFIG, read_settings
from runner.rowspec.slurm_options import SlurmOptionError, validate
from runner.slurm.client import SbatchError
from runner.slurm.executor import IO_THREADS


def slurm_defaults(root: str) -> dict[str, str]:
    """The ``slurm:`` section of ``<root>/sheetrun.yaml`` (validated), or nothing."""
    path = os.path.join(root, PROJECT_CONFIG)
    section = read_settings(root).get("slurm") or {}
    if not isinstance(section, dict):
        raise UsageError(f"{path}: 'slurm' must be a mapping of sbatch options")
    out = {}
    for option, value in section.items():
        try:
            out[str(option)] = validate(str(option), "" if value is None else str(value))
        except SlurmOptionError as exc:
            raise UsageError(f"{path}: {exc}") from None
    return out


def sbatch_options(defaults: dict[str, str], row: dict[str, str], time_limit: str = "") -> dict[str, str]:
    """A row's sbatch options: the project's defaults, its ``slurm:`` cells over them, and its
    time limit (``time_limit`` cell or ``--timeout``) as ``--time`` unless a cell sets it."""
    options = {**defaults, **row}
    if time_limit and "time" not in row:
        options["time"] = time_limit
    return options


def submit_rows(launch, executor, rows) -> None:
    """Write the rows' run folders and submit them as arrays (``launch``: a runner.launch.pipeline.Launch);
    each job writes its own row on its node."""
    launch.sheet_writes = "job"
    defaults = slurm_defaults(launch.opts.root)
    failed: dict[str, str] = {rid: o.error for rid, o in launch.outcomes.items() if o.status == Status.FAILED}

    def prepare_one(p) -> str:
        try:
            launch.prepare(p)
            return ""
        except (OSError, ValueError) as exc:
            return f"could not prepare the run folder: {describe(exc)}"

    waiting = []
    with ThreadPoolExecutor(IO_THREADS) as pool:         # hundreds of small folders: overlap the I/O
        for p, error in zip(rows, pool.map(prepare_one, rows)):
            if error:
                failed[p.run_id] = error
                launch.settle(p, Status.FAILED, error)
            else:
                waiting.append(p)
    job_of: dict[str, str] = {}              # run id -> SLURM job id
    while waiting:
        ready, later = [], []
        for p in waiting:
            bad = next((d for d in p.deps if d in failed), None)
            if bad is not None:
                failed[p.run_id] = f"not run: dependency row {launch.outcomes[bad].number} cannot complete"
                launch.settle(p, Status.SKIPPED, failed[p.run_id])
            elif all(d in job_of for d in p.deps):
                ready.append(p)
            else:
                later.append(p)
        if not ready and later:              # cannot happen after plan()'s cycle check
            for p in later:
                failed[p.run_id] = "dependency cycle"
                launch.settle(p, Status.FAILED, "dependency cycle")
            break
        groups: dict[tuple, list] = defaultdict(list)
        for p in ready:
            options = sbatch_options(defaults, p.spec.slurm, launch.time_limit(p)[0])
            after = tuple(sorted(job_of[d] for d in p.deps))
            groups[(tuple(sorted(options.items())), after)].append(p)
        for (options, after), group in groups.items():
            try:
                jobs = executor.submit_many([p.run_dir for p in group], dict(options), list(after))
            except SbatchError as exc:
                for p in group:
                    failed[p.run_id] = f"sbatch: {exc}"
                    launch.settle(p, Status.FAILED, failed[p.run_id])
                continue
            for p, job in zip(group, jobs):
                job_of[p.run_id] = job.job_id
                launch.writer.add(p.run_id, {C.JOB_ID: job.job_id})
            if launch.progress:
                launch.progress.submitted([p.number for p in group], jobs[0].job_id.split("_")[0])
        waiting = [p for p in later if p.run_id not in failed]


