"""``sheetrun run`` (locally, or on SLURM with ``--wait``), its ``--dry-run``, and ``sheetrun expand``."""
from __future__ import annotations

import os
import shlex
import signal
import sys

from rich.text import Text

from runner.cli.options import (at_least, console, err_console, positive_float, root_of, rows_argument,
                                runs_dir_argument, runs_dir_of, sheet_arguments, shown_metrics, size, slurm_time,
                                timeout_of)
from runner.core import columns as C
from runner.core.columns import Status
from runner.core.errors import UsageError
from runner.core.rowrefs import RowFilter
from runner.launch.plan import plan
from runner.rowspec import config as cfg
from runner.sheet import open_sheet


def cmd_run(args) -> int:
    from runner.launch.pipeline import RunOptions, launch
    from runner.launch.progress import Progress
    from runner.local import LocalExecutor
    from runner.core.devices import DevicePool, visible_devices

    if args.wait and args.backend != "slurm":
        raise UsageError("--wait is for --backend slurm (local runs always wait)")
    sheet = open_sheet(args.sheet)
    root = root_of(args)
    rows = RowFilter.parse(args.rows)
    if args.expand and args.dry_run:
        return show_expansion(sheet, rows)
    if args.expand:
        from runner.launch.sweeps import after_expansion

        rows = after_expansion(rows, _expand(sheet, rows))
    approvals = confirm_commands(sheet, rows, args.yes, args.dry_run) if sheet.remote else None
    runs_dir = runs_dir_of(args, root)
    if args.dry_run:
        return dry_run(sheet, root, rows, args.conda_env or "", args.backend, args.timeout, runs_dir)
    if args.backend == "slurm":
        return run_on_slurm(args, sheet, root, runs_dir, rows, approvals)
    opts = RunOptions(root=root, runs_dir=runs_dir, jobs=args.jobs or 1, rows=rows,
                      gpus_per_job=args.gpus_per_job, timeout=timeout_of(args), retries=args.retries,
                      conda_env=args.conda_env or "", approvals=approvals, log_limit=args.log_limit)
    try:
        DevicePool(visible_devices(), args.gpus_per_job)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    result = launch(sheet, LocalExecutor(), opts, Progress(err_console, sheet.name, show=shown_metrics(args)))
    if not result.outcomes and not result.skipped:
        err_console.print("nothing to run: no row has whether_to_run = 1"
                          + (" among the rows given by --rows" if rows else ""))
    if result.interrupted:
        return 130 if result.interrupted == "SIGINT" else 143
    return 0 if result.ok else 1


def confirm_commands(sheet, rows, yes: bool, dry_run: bool):
    """A shared (Google) sheet: list the rows to run whose command this user has not run from it
    before, with what changed, and have them confirmed (a prompt, or ``--yes``); unconfirmed rows
    are left out. Returns the approvals the launch's claim checks again (runner.launch.approvals)."""
    from runner.launch.approvals import Approvals

    approvals = Approvals.of(sheet.location)
    table = sheet.read()
    if rows is not None:
        rows.check(table)
    changes = approvals.changes(table, rows)
    if not changes:
        return approvals
    for change in changes:
        err_console.print(Text(f"sheetrun: {change.describe()}", style="yellow"), highlight=False, soft_wrap=True)
    if dry_run:
        err_console.print(f"sheetrun: run would ask to confirm these {len(changes)} row(s) (or take --yes)",
                          highlight=False, soft_wrap=True)
    elif yes or _ask(f"Run these {len(changes)} row(s) with the commands shown? [y/N] "):
        approvals.confirm(changes)
    else:
        err_console.print("sheetrun: they are left out; to run them, answer y, or run again with --yes",
                          highlight=False, soft_wrap=True)
    return approvals


def _ask(question: str) -> bool:
    """A yes/no question at the terminal; no terminal (a script, cron): no."""
    if not sys.stdin.isatty():
        err_console.print("sheetrun: not asked (no terminal to answer at)", highlight=False)
        return False
    try:
        return input(question).strip().lower() in ("y", "yes")
    except EOFError:
        return False


def run_on_slurm(args, sheet, root: str, runs_dir: str, rows, approvals=None) -> int:
    from runner.launch.pipeline import RunOptions, launch
    from runner.launch.progress import SubmitProgress
    from runner.runs.liveness import default_client
    from runner.slurm import SlurmExecutor

    if args.retries:
        raise UsageError("--retries is for local runs; on SLURM, rows that fail are run again "
                         "by setting their whether_to_run back to 1 (SLURM's own requeue covers node failures)")
    opts = RunOptions(root=root, runs_dir=runs_dir, jobs=args.jobs or 0, rows=rows, timeout=timeout_of(args),
                      conda_env=args.conda_env or "", approvals=approvals, follow=args.wait,
                      log_limit=args.log_limit)
    client = default_client()
    executor = SlurmExecutor(root, os.path.join(runs_dir, sheet.name, ".slurm"), client,
                             max_parallel=args.jobs)
    result = launch(sheet, executor, opts, SubmitProgress(err_console))
    if result.interrupted:
        err_console.print("sheetrun: interrupted while submitting; the rows submitted so far are queued on SLURM "
                          f"('sheetrun sync {args.sheet}' follows them, 'sheetrun cancel' stops them)",
                          markup=False, highlight=False, soft_wrap=True)
        return 130
    if not result.outcomes:
        if not result.skipped:
            err_console.print("nothing to run: no row has whether_to_run = 1"
                              + (" among the rows given by --rows" if rows else ""))
        return 0
    for o in result.outcomes:
        if o.status == Status.FAILED:
            err_console.print(Text(f"row {o.number}: {o.error}", style="red"), highlight=False, soft_wrap=True)
    submitted = {o.run_id for o in result.outcomes if o.status == Status.SUBMITTED}
    err_console.print(f"{len(submitted)} row(s) submitted to SLURM ({client.calls} scheduler calls)"
                      + ("" if args.wait else f"; 'sheetrun sync {args.sheet}' updates their rows"),
                      markup=False, highlight=False, soft_wrap=True)
    if result.left_out:
        return 1
    if not args.wait:
        return 0 if len(submitted) == len(result.outcomes) else 1

    final, interrupted = _follow_submitted(args, sheet, root, runs_dir, result, submitted, client)
    if interrupted is not None:                # Ctrl-C or SIGTERM: what it followed is cancelled
        return interrupted
    ok = all(s == Status.COMPLETED for s in final.values()) and len(submitted) == len(result.outcomes)
    return 0 if ok else 1


def _follow_submitted(args, sheet, root: str, runs_dir: str, result, submitted: set[str], client):
    """Follow the submitted rows to their end: (their final statuses, None); or, on a Ctrl-C or a
    SIGTERM, cancel them: (None, the exit code). The caller's signal handlers are back after either."""
    from runner.runs.sync import end_following, follow

    def show(number, status, error):
        err_console.print(f"row {number}: {status}" + (f" ({error})" if error else ""),
                          markup=False, highlight=False, soft_wrap=True)

    def on_sigterm(signum, _frame):
        raise KeyboardInterrupt(signum)

    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return follow(sheet, root, submitted, client, poll_s=args.poll, on_change=show, runs_dir=runs_dir,
                      folders=result.folders, record=result.record), None
    except KeyboardInterrupt as exc:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        code = _cancel_followed(sheet, root, submitted, client, exc)
        end_following(result.record)          # a job still ending writes its own row from now on
        return None, code
    finally:
        for sig, handler in previous.items():
            if handler is not None:          # None: set outside Python, left as it is
                signal.signal(sig, handler)


def _cancel_followed(sheet, root: str, run_ids: set[str], client, interrupt: KeyboardInterrupt) -> int:
    """``run --backend slurm --wait`` interrupted: its rows' jobs are cancelled, as a local run's are."""
    from runner.core.rowrefs import ranges
    from runner.runs.cancel import cancel

    sigterm = bool(interrupt.args) and interrupt.args[0] == signal.SIGTERM
    numbers = cancel(sheet, root, RowFilter(ids=set(run_ids)), client)
    err_console.print(f"interrupted ({'SIGTERM' if sigterm else 'Ctrl-C'}): "
                      + (f"cancelled rows {ranges(numbers)} and their SLURM jobs" if numbers
                         else "every row had already ended")
                      + "; to leave jobs running, submit without --wait and follow with 'sheetrun sync'",
                      markup=False, highlight=False, soft_wrap=True)
    return 143 if sigterm else 130


def dry_run(sheet, root: str, rows, conda_env: str = "", backend: str = "local", timeout: str | None = None,
            runs_dir: str = "") -> int:
    from runner.core.rundir import RunDir
    from runner.core.runindex import RunIndex, unshown_runs
    from runner.runs.liveness import verdict

    slurm_defaults = None
    if backend == "slurm":
        from runner.launch.submit import slurm_defaults as read_defaults

        slurm_defaults = read_defaults(root)

    def held(row):
        seen = verdict(RunDir(os.path.join(root, row.get(C.RUN_FOLDER))), row.get(C.RUN_ID))
        return seen.reason if seen.active else None

    skipped: list = []
    notes: list = []
    table = sheet.read()
    newer = unshown_runs(table, root, RunIndex(os.path.join(runs_dir or os.path.join(root, "experiments"),
                                                            sheet.name)), sheet.location)
    planned = plan(table, root, rows, held=held, skipped=skipped, worksheet=sheet.name, notes=notes,
                   conda_env=conda_env,
                   leave_out=lambda row: newer[row.number].reason(root, row.number) if row.number in newer else None)
    for note in notes:
        console.print(f"note: {note}", soft_wrap=True)
    if not planned and not skipped:
        console.print("nothing to run: no row has whether_to_run = 1")
    for number, why in skipped:
        console.print(f"row {number}: {why}; would not start", markup=False, highlight=False, soft_wrap=True)
    for p in planned:
        _show_planned(p, slurm_defaults, timeout)
    return 0 if all(p.ok for p in planned) else 1


def _show_planned(p, slurm_defaults: dict | None, timeout: str | None) -> None:
    """One planned row as ``--dry-run`` shows it: its command, config changes, env and sbatch options."""
    if not p.ok:
        line = Text(f"row {p.number}: error:", style="red")
        line.append(f" {p.error}")
        console.print(line, highlight=False, soft_wrap=True)
        return
    argv = p.spec.argv("<run_folder>/config.yaml")
    line = Text(f"row {p.number}", style="bold")
    line.append("  " + shlex.join(argv))
    console.print(line, highlight=False, soft_wrap=True)
    changes = cfg.diff(p.spec.default_config, p.spec.config)
    for key, old, new in changes:
        _say(f"    {key}: {old!r} -> {new!r}")
    if not changes:
        console.print("    (the default config, unchanged)")
    if p.spec.stnd_logging:
        _say("    logging/output_csv: <run_folder>/stnd_row.csv (what stnd's logger writes there reaches this row)")
    for name, value in p.spec.env.items():
        _say(f"    env {name}={value}")
    for warning in p.spec.warnings:
        console.print(f"    warning: {warning}", soft_wrap=True)
    if p.spec.depends_on:
        _say(f"    after rows/runs: {' '.join(p.spec.depends_on)}")
    if slurm_defaults is not None:
        _show_sbatch(p, slurm_defaults, timeout)


def _show_sbatch(p, slurm_defaults: dict, timeout: str | None) -> None:
    from runner.launch.submit import sbatch_options

    options = sbatch_options(slurm_defaults, p.spec.slurm, p.spec.time_limit or timeout or "")
    shown = " ".join(f"--{k}={v}" for k, v in sorted(options.items())) or "(no options: the cluster's defaults)"
    _say(f"    sbatch {shown}")
    unset = [what for key, what in (("mem", "memory"), ("time", "time limit")) if not any(
        k == key or k.startswith(key + "-") for k in options)]
    if unset:
        _say(f"    note: no {' and no '.join(unset)} asked for: the cluster's default applies")


def _say(text: str) -> None:
    """A line as it is (no markup, no highlighting), wrapped softly."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _expand(sheet, rows) -> list:
    from runner.launch.sweeps import expand

    done = expand(sheet, rows)
    for old, original, first, last in done:
        moved = f" (now row {original})" if original != old else ""
        console.print(f"row {old}{moved}: a sweep of {last - first + 1} rows, now rows {first}-{last}",
                      soft_wrap=True)
    if not done:
        console.print("no selected row sweeps over values ({a | b} or {<start end step is_log>})")
    return done


def show_expansion(sheet, rows) -> int:
    from runner.launch.sweeps import plan_expansion

    sweeps = plan_expansion(sheet.read(), rows)
    if not sweeps:
        console.print("no selected row sweeps over values ({a | b} or {<start end step is_log>})")
    for number, combos in sweeps:
        console.print(f"row {number} would become {len(combos)} rows:", soft_wrap=True)
        for k, combo in enumerate(combos, 1):
            console.print(f"  {k:>3}  " + "  ".join(f"{c}={v}" for c, v in combo.items()), soft_wrap=True)
    return 0


def cmd_expand(args) -> int:
    sheet = open_sheet(args.sheet)
    if args.dry_run:
        return show_expansion(sheet, RowFilter.parse(args.rows))
    _expand(sheet, RowFilter.parse(args.rows))
    return 0


def add_commands(sub) -> None:
    """``run`` and ``expand``."""
    run = sub.add_parser("run", help="run the rows whose whether_to_run is 1")
    sheet_arguments(run)
    run.add_argument("-j", "--jobs", type=at_least(1), default=None,
                     help="rows to run at once (default: 1 locally; on SLURM, no limit of sheetrun's own)")
    run.add_argument("--backend", choices=("local", "slurm"), default="local",
                     help="run here (default) or submit to SLURM as job arrays")
    run.add_argument("--wait", action="store_true",
                     help="with --backend slurm: after submitting, follow the rows until they end")
    run.add_argument("--poll", type=positive_float, default=5.0, help="seconds between SLURM polls with --wait")
    run.add_argument("--timeout", metavar="TIME", type=slurm_time,
                     help="stop a row after this long (60 minutes, 1:30:00, 2-00:00:00) and mark it Timeout; "
                          "a row's time_limit cell wins")
    run.add_argument("--retries", type=at_least(0), default=0, metavar="K",
                     help="local runs: run a row that failed (non-zero exit) or was lost again, up to K times, "
                          "each try in a new run folder")
    run.add_argument("--gpus-per-job", type=at_least(0), default=None, metavar="K",
                     help="local runs: GPUs per job through CUDA_VISIBLE_DEVICES (default: 1 where there "
                          "are GPUs; 0 hides them)")
    rows_argument(run)
    run.add_argument("--dry-run", action="store_true",
                     help="print each row's command and config changes; change nothing")
    run.add_argument("--expand", action="store_true",
                     help="first expand sweep rows ({a | b}, {<start end step is_log>}) into one row each; "
                          "with --dry-run, show the rows it would make")
    runs_dir_argument(run)
    run.add_argument("--conda-env", metavar="ENV",
                     help="run every script row inside this conda environment (stnd's --conda_env; a "
                          "__RUNNER__ row's own conda_env wins)")
    run.add_argument("--show", help="the metrics the results table shows, e.g. 'acc,loss' "
                                    "(default: the last four reported)")
    run.add_argument("--log-limit", type=size, metavar="SIZE",
                     help="keep each run's stdout.log and stderr.log to this size (its beginning and newest end; "
                          "default: log_limit in sheetrun.yaml, else 256M)")
    run.add_argument("-y", "--yes", action="store_true",
                     help="Google Sheets: run rows whose command you have not run from this sheet before "
                          "(new, or changed by someone) without asking; they are listed either way")
    run.set_defaults(func=cmd_run)

    exp = sub.add_parser("expand", help="replace each sweep row ({a | b}, {<start end step is_log>}) by one row "
                                        "per combination, right below it (the original stays, not to run)")
    sheet_arguments(exp)
    rows_argument(exp, "only these rows: numbers, ranges, run ids or names")
    exp.add_argument("--dry-run", action="store_true", help="show the rows it would make; change nothing")
    exp.set_defaults(func=cmd_expand)
