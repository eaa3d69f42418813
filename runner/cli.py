"""The ``sheetrun`` command line (also ``python -m runner``)."""
from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from collections import Counter

from rich.table import Table as RichTable
from rich.text import Text

from runner import __version__
from runner.core import columns as C
from runner.core.columns import Status
from runner.core.console import make_console
from runner.core.errors import RowError, UsageError
from runner.core.rowrefs import RowFilter
from runner.launch.plan import plan
from runner.rowspec import config as cfg
from runner.rowspec.rows import project_root_for
from runner.sheet import SheetError, open_sheet
from runner.slurm.client import SlurmError

console = make_console()
err_console = make_console(stderr=True)


def _root(args) -> str:
    """``--root``, else stnd's PROJECT_ROOT_PROVIDED_FOR_STUNED, else from the sheet's place."""
    if args.root:
        return os.path.abspath(args.root)
    if os.environ.get("PROJECT_ROOT_PROVIDED_FOR_STUNED"):
        return os.path.abspath(os.environ["PROJECT_ROOT_PROVIDED_FOR_STUNED"])
    if "://" in args.sheet:
        return os.getcwd()
    return project_root_for(args.sheet)


def cmd_run(args) -> int:
    from runner.launch.pipeline import RunOptions, launch
    from runner.launch.progress import Progress
    from runner.local import LocalExecutor
    from runner.local.devices import DevicePool, visible_devices

    if args.wait and args.backend != "slurm":
        raise UsageError("--wait is for --backend slurm (local runs always wait)")
    sheet = open_sheet(args.sheet)
    root = _root(args)
    rows = RowFilter.parse(args.rows)
    if args.expand and args.dry_run:
        return show_expansion(sheet, rows)
    if args.expand:
        from runner.launch.sweeps import after_expansion

        rows = after_expansion(rows, _expand(sheet, rows))
    approvals = confirm_commands(sheet, rows, args.yes, args.dry_run) if sheet.remote else None
    runs_dir = _runs_dir(args, root)
    if args.dry_run:
        return dry_run(sheet, root, rows, args.conda_env or "", args.backend, args.timeout, runs_dir)
    if args.backend == "slurm":
        return run_on_slurm(args, sheet, root, runs_dir, rows, approvals)
    opts = RunOptions(root=root, runs_dir=runs_dir, jobs=args.jobs or 1, rows=rows,
                      gpus_per_job=args.gpus_per_job, timeout=_timeout(args), retries=args.retries,
                      conda_env=args.conda_env or "", approvals=approvals, log_limit=args.log_limit)
    try:
        DevicePool(visible_devices(), args.gpus_per_job)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    result = launch(sheet, LocalExecutor(), opts, Progress(err_console, sheet.name, show=_show(args)))
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


def _timeout(args) -> str:
    """``--timeout`` (checked when parsed), or "" for none."""
    return args.timeout or ""


def run_on_slurm(args, sheet, root: str, runs_dir: str, rows, approvals=None) -> int:
    from runner.launch.pipeline import RunOptions, launch
    from runner.launch.progress import SubmitProgress
    from runner.runs.liveness import default_client
    from runner.runs.sync import end_following, follow
    from runner.slurm import SlurmExecutor

    if args.retries:
        raise UsageError("--retries is for local runs; on SLURM, rows that fail are run again "
                         "by setting their whether_to_run back to 1 (SLURM's own requeue covers node failures)")
    opts = RunOptions(root=root, runs_dir=runs_dir, jobs=args.jobs or 0, rows=rows, timeout=_timeout(args),
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

    def show(number, status, error):
        err_console.print(f"row {number}: {status}" + (f" ({error})" if error else ""),
                          markup=False, highlight=False, soft_wrap=True)

    def on_sigterm(signum, _frame):
        raise KeyboardInterrupt(signum)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        final = follow(sheet, root, submitted, client, poll_s=args.poll, on_change=show, runs_dir=runs_dir,
                       folders=result.folders, record=result.record)
    except KeyboardInterrupt as exc:            # Ctrl-C or SIGTERM: cancel what it follows
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        code = _cancel_followed(sheet, root, submitted, client, exc)
        end_following(result.record)          # a job still ending writes its own row from now on
        return code
    finally:
        signal.signal(signal.SIGTERM, previous)
    ok = all(s == Status.COMPLETED for s in final.values()) and len(submitted) == len(result.outcomes)
    return 0 if ok else 1


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
        from runner.slurm.submit import sbatch_options
        from runner.slurm.submit import slurm_defaults as read_defaults

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
        if not p.ok:
            line = Text(f"row {p.number}: error:", style="red")
            line.append(f" {p.error}")
            console.print(line, highlight=False, soft_wrap=True)
            continue
        argv = p.spec.argv("<run_folder>/config.yaml")
        line = Text(f"row {p.number}", style="bold")
        line.append("  " + shlex.join(argv))
        console.print(line, highlight=False, soft_wrap=True)
        changes = cfg.diff(p.spec.default_config, p.spec.config)
        for key, old, new in changes:
            console.print(f"    {key}: {old!r} -> {new!r}", markup=False, highlight=False, soft_wrap=True)
        if not changes:
            console.print("    (the default config, unchanged)")
        if p.spec.stnd_logging:
            console.print("    logging/output_csv: <run_folder>/stnd_row.csv (what stnd's logger writes there "
                          "reaches this row)", markup=False, highlight=False, soft_wrap=True)
        for name, value in p.spec.env.items():
            console.print(f"    env {name}={value}", markup=False, highlight=False, soft_wrap=True)
        for warning in p.spec.warnings:
            console.print(f"    warning: {warning}", soft_wrap=True)
        if p.spec.depends_on:
            console.print(f"    after rows/runs: {' '.join(p.spec.depends_on)}", markup=False, highlight=False, soft_wrap=True)
        if slurm_defaults is not None:
            options = sbatch_options(slurm_defaults, p.spec.slurm, p.spec.time_limit or timeout or "")
            shown = " ".join(f"--{k}={v}" for k, v in sorted(options.items())) or "(no options: the cluster's defaults)"
            console.print(f"    sbatch {shown}", markup=False, highlight=False, soft_wrap=True)
            unset = [what for key, what in (("mem", "memory"), ("time", "time limit")) if not any(
                k == key or k.startswith(key + "-") for k in options)]
            if unset:
                console.print(f"    note: no {' and no '.join(unset)} asked for: the cluster's default applies",
                              markup=False, highlight=False, soft_wrap=True)
    return 0 if all(p.ok for p in planned) else 1


def cmd_status(args) -> int:
    table = open_sheet(args.sheet).read()
    counts = Counter(row.get(C.STATUS) or "(never run)" for row in table.rows)
    console.print(Text(f"{args.sheet}: {len(table)} rows", style="bold"), highlight=False)
    summary = RichTable()
    summary.add_column("status")
    summary.add_column("rows", justify="right")
    for status, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        summary.add_row(Text(status), str(n))
    console.print(summary)
    bad = [r for r in table.rows if Status.meaning(r.get(C.STATUS)) in Status.TERMINAL - {Status.COMPLETED}]
    if bad:
        failed = RichTable(title="rows that did not complete", title_justify="left")
        for col in ("row", "run_id", "status", "exit_code", "error"):
            failed.add_column(Text(col), overflow="fold")
        for r in bad:
            cells = (str(r.number), r.get(C.RUN_ID), r.get(C.STATUS), r.get(C.EXIT_CODE), r.get(C.ERROR))
            failed.add_row(*(Text(v) for v in cells))
        console.print(failed)
    shown = _show(args)
    if shown:
        _check_shown(shown, table.columns, "the sheet has no column")
        picked = RichTable(title="rows", title_justify="left")
        for col in ("row", "status", *shown):
            picked.add_column(Text(col), no_wrap=True, min_width=3 if col == "row" else None,
                              justify="right" if col in shown else "left")
        for r in table.rows:
            picked.add_row(str(r.number), Text(r.get(C.STATUS)), *(Text(r.get(c)) for c in shown))
        console.print(picked)
    return 0


def cmd_sync(args) -> int:
    from runner.runs.sync import sync

    root = _root(args)
    changes = sync(open_sheet(args.sheet), root, runs_dir=_runs_dir(args, root))
    if not changes:
        console.print("no row is Submitted or Running; nothing to reconcile")
        return 0
    out = RichTable(title="sync", title_justify="left")
    for col in ("row", "run_id", "was", "now", "why"):
        out.add_column(col, overflow="fold")
    for c in changes:
        out.add_row(*(Text(v) for v in (str(c.number), c.run_id, c.before, c.after, c.reason)))
    console.print(out)
    return 0


def cmd_export(args) -> int:
    from runner.sheet.csv_sheet import CsvSheet

    table = open_sheet(args.sheet).read()
    CsvSheet(args.out).write_new(table)
    console.print(f"{len(table)} rows written to {args.out}", highlight=False)
    return 0


def cmd_import(args) -> int:
    from runner.sheet.csv_sheet import CsvSheet

    table = CsvSheet(args.csv).read()
    open_sheet(args.sheet).write_new(table)
    console.print(f"{len(table)} rows written to {args.sheet}", highlight=False)
    return 0


def cmd_cancel(args) -> int:
    from runner.runs.cancel import cancel

    numbers = cancel(open_sheet(args.sheet), _root(args), RowFilter.parse(args.rows))
    if not numbers:
        console.print("no selected row is Submitted or Running; nothing to cancel")
    else:
        console.print(f"cancelled rows {', '.join(map(str, numbers))}", highlight=False)
    return 0


def _check_shown(names: list[str], available, what: str) -> None:
    """``--show`` names that are not there: a usage error with the closest names."""
    import difflib

    available = [a for a in available if a]
    problems = []
    for name in names:
        if name not in available:
            close = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
            problems.append(repr(name) + (f" (did you mean {', '.join(map(repr, close))}?)" if close else ""))
    if problems:
        raise UsageError(f"--show: {what} " + ", ".join(problems))


def _runs_dir(args, root: str) -> str:
    return os.path.abspath(getattr(args, "runs_dir", None) or os.path.join(root, "experiments"))


def _show(args) -> list[str] | None:
    return [c.strip() for c in args.show.split(",") if c.strip()] if getattr(args, "show", None) else None


def cmd_history(args) -> int:
    from runner.results.history import history

    sheet = open_sheet(args.sheet)
    table = sheet.read()
    spec = RowFilter.one(args.row)
    spec.check(table, what="ROW")
    rows = [r for r in table.rows if r in spec]
    if len(rows) != 1:
        raise UsageError(f"{args.row!r} names {len(rows)} rows; name one")
    row = rows[0]
    root = _root(args)
    runs = history(row, root, os.path.join(_runs_dir(args, root), sheet.name))
    if not runs:
        console.print(f"row {row.number} has not been run")
        return 0
    names = _show(args)
    if names:
        _check_shown(names, {m for run in runs for m in run.metrics}, f"no run of row {row.number} reported")
    names = names or [m for m in runs[0].metrics][-4:]
    out = RichTable(title=f"row {row.number}: {len(runs)} run(s), newest first", title_justify="left")
    for col in ("#", "started", "run_id", "try", "status", "walltime"):
        out.add_column(Text(col), no_wrap=True)
    for col in names:
        out.add_column(Text(col), no_wrap=True, justify="right", overflow="ellipsis",
                       max_width=12 if console.is_terminal else None)
    import time as _time

    def fmt(value) -> str:
        return "" if value is None else format(value, ".4g") if isinstance(value, float) else str(value)

    for i, run in enumerate(runs, 1):
        when = _time.strftime("%m-%d %H:%M", _time.localtime(run.started)) if run.started else ""
        values = [Text(fmt(run.metrics.get(n))) for n in names]
        out.add_row(str(i), when, Text(run.run_id), str(run.attempt), Text(run.status), run.walltime, *values)
    console.print(out)
    for i, run in enumerate(runs, 1):
        console.print(f"{i:>3}  {os.path.relpath(run.folder, _root(args))}", soft_wrap=True)
    return 0


def cmd_plot(args) -> int:
    from runner.core.rundir import RunDir
    from runner.results.history import curve, plot

    sheet = open_sheet(args.sheet)
    table = sheet.read()
    spec = RowFilter.parse(args.rows)
    if spec is not None:
        spec.check(table)
    root = _root(args)
    from runner.launch.sweeps import swept_labels

    swept = swept_labels(table)
    series, empty = [], []
    for row in table.rows:
        if (spec is not None and row not in spec) or not row.get(C.RUN_FOLDER):
            continue
        x_name, xs, ys = curve(RunDir(os.path.join(root, row.get(C.RUN_FOLDER))), args.metric)
        what = swept.get(row.number) or row.get(C.NAME)        # a sweep's rows by their swept values
        label = f"row {row.number}" + (f" {what}" if what else "") + f" ({row.get(C.RUN_ID)})"
        (series.append((label, x_name, xs, ys)) if xs else empty.append(row.number))
    if not series:
        err_console.print(f"sheetrun: no selected row's run reported {args.metric!r}", soft_wrap=True)
        return 1
    runs_dir = _runs_dir(args, root)
    out = args.out or os.path.join(runs_dir, sheet.name, "plots", f"{args.metric}.png".replace(os.sep, "_"))
    plot(series, args.metric, out)
    console.print(f"{len(series)} curve(s) of {args.metric} written to {out}", soft_wrap=True)
    if empty:
        from runner.core.rowrefs import ranges

        console.print(f"rows {ranges(empty)} reported no {args.metric}", soft_wrap=True)
    return 0


def cmd_summarize(args) -> int:
    from runner.launch.sweeps import swept_labels
    from runner.results.summary import as_records, csv_text, markdown, row_ranges, summarize

    sheet = open_sheet(args.sheet)
    table = sheet.read()
    by = [c.strip() for c in args.by.split(",") if c.strip()] if args.by else None
    try:
        summary = summarize(table, _root(args), by=by, show=_show(args), labels=swept_labels(table))
    except ValueError as exc:
        raise UsageError(f"{'--by' if 'column' in str(exc) else '--show'}: {exc}") from None
    records = as_records(summary)
    if args.format == "csv":
        text = csv_text(records)
    elif args.format == "markdown":
        text = markdown(summary)
    else:
        text = ""
        console.print(Text(f"{sheet.name}: {len(summary.groups)} group(s) of completed rows, mean ± std (n)",
                           style="bold"))
        out = RichTable()
        out.add_column("group")
        out.add_column("rows")
        for name in summary.metrics:
            out.add_column(Text(name), justify="right", no_wrap=True)
        for g in summary.groups:
            out.add_row(Text(g.label), row_ranges(g.rows),
                        *(Text(g.stats[m].text()) if m in g.stats else Text("") for m in summary.metrics))
        console.print(out)
    if text:
        if args.out:
            with open(args.out, "w", encoding="utf-8", newline="") as f:
                f.write(text)
        else:
            sys.stdout.write(text)
    if not summary.groups:
        err_console.print("no completed row to summarise")
    grouped = ", ".join(c for c in summary.by) or "(nothing: every row is one group)"
    err_console.print(f"grouped by: {grouped}", soft_wrap=True)
    if summary.left_out:
        by_why: dict[str, list[int]] = {}
        for number, why in summary.left_out:
            by_why.setdefault(why.split(" (")[0], []).append(number)
        err_console.print("left out: " + ", ".join(
            f"{len(rows)} {why} (rows {row_ranges(rows)})"
            for why, rows in sorted(by_why.items(), key=lambda kv: -len(kv[1]))), soft_wrap=True)
    if args.write:
        _write_summary(sheet, records)
    return 0


SUMMARY_MARK = "group"          # the first header cell of a summary sheet sheetrun wrote


def _write_summary(sheet, records) -> None:
    """The summary as a sheet beside the sheet: NAME_summary.csv, or the worksheet 'NAME summary'."""
    from runner.results.summary import csv_text
    from runner.sheet import Table

    if sheet.remote:
        base = sheet.location.split("::")[0]
        title = sheet.title + " summary"
        target = open_sheet(f"{base}::{title}")
    else:
        stem, ext = os.path.splitext(sheet.location)
        target = open_sheet(f"{stem}_summary{ext or '.csv'}")

    def ours(held) -> bool:              # replace only a summary this command wrote
        return bool(held.columns) and held.columns[0] == SUMMARY_MARK
    target.write_new(Table(csv_text(records)), replace_if=ours)
    console.print(f"summary written to {target.location}", soft_wrap=True)


def cmd_compare(args) -> int:
    from runner.results.compare import compare, metric_pairs, side

    sheet = open_sheet(args.sheet)
    table = sheet.read()
    root = _root(args)
    sides = []
    for ref in (args.a, args.b):
        spec = RowFilter.one(ref)
        spec.check(table, what="ROW")
        rows = [r for r in table.rows if r in spec]
        if len(rows) != 1:
            raise UsageError(f"{ref!r} names {len(rows)} rows; name one")
        sides.append(side(rows[0], root, sheet.name))
    a, b = sides
    differ, same = compare(a, b)

    def fmt(value) -> str:
        return "—" if value is None else format(value, ".6g") if isinstance(value, float) else str(value)

    out = RichTable(title=f"config: {len(differ)} key(s) differ, {len(same)} the same", title_justify="left")
    out.add_column("key")
    out.add_column(Text(a.title))
    out.add_column(Text(b.title))
    for key, va, vb in differ:
        out.add_row(Text(key, style="bold"), Text(fmt(va), style="yellow"), Text(fmt(vb), style="yellow"))
    if args.all:
        for key, va, vb in same:
            out.add_row(Text(key), Text(fmt(va)), Text(fmt(vb)))
    console.print(out)
    if same and not args.all:
        console.print(f"({len(same)} keys are the same; --all lists them)")
    pairs = metric_pairs(a, b)
    if pairs:
        metrics = RichTable(title="metrics", title_justify="left")
        for col in ("metric", a.title, b.title, "b - a"):
            metrics.add_column(Text(col), justify="left" if col == "metric" else "right")
        for name, va, vb in pairs:
            delta = fmt(vb - va) if va is not None and vb is not None else ""
            metrics.add_row(Text(name), fmt(va), fmt(vb), delta)
        console.print(metrics)
    return 0


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


def cmd_reset(args) -> int:
    from runner.core.rowrefs import ranges
    from runner.runs.reset import reset

    root = _root(args)
    done, left, kept = reset(open_sheet(args.sheet), root, RowFilter.parse(args.rows), _runs_dir(args, root))
    for number, why in left:
        err_console.print(f"row {number} not reset: {why}", markup=False, highlight=False, soft_wrap=True)
    if done:
        console.print(f"reset rows {ranges(done)}: whether_to_run is 1 again; their earlier runs stay in "
                      "their run folders", highlight=False, soft_wrap=True)
    elif not left:
        console.print("no selected row has been run; nothing to reset")
    for number, folder, columns in kept:
        err_console.print(f"row {number}: kept {', '.join(columns)}: its run folder {folder} is not here, so "
                          "which of these cells are its old run's numbers is unknown; empty those by hand",
                          markup=False, highlight=False, soft_wrap=True)
    return 1 if left else 0


def _at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
        return value
    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def _size(text: str) -> int:
    from runner.core.rundir import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _time(text: str) -> str:
    """``--timeout``: a SLURM time (60, 1:30:00, 2-00:00:00), checked when parsing."""
    from runner.rowspec.slurm_options import parse_time

    try:
        parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sheetrun", description="Run the experiments listed in a results sheet and write "
                                     "their status and metrics back into it.")
    parser.add_argument("--version", action="version", version=f"sheetrun {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p):
        p.add_argument("sheet", metavar="SHEET", help="a CSV results sheet, or a Google Sheets URL")
        p.add_argument("--root", help="project root that relative paths resolve against "
                                      "(default: the directory holding result_sheets/)")
        p.add_argument("--worksheet", help="Google Sheets: the worksheet (tab) by name "
                                           "(default: the URL's gid, else the first)")
        p.add_argument("--credentials", help="Google Sheets: a service-account key file "
                                             "(default: GOOGLE_APPLICATION_CREDENTIALS, then gspread's)")

    run = sub.add_parser("run", help="run the rows whose whether_to_run is 1")
    common(run)
    run.add_argument("-j", "--jobs", type=_at_least(1), default=None,
                     help="rows to run at once (default: 1 locally; on SLURM, no limit of sheetrun's own)")
    run.add_argument("--backend", choices=("local", "slurm"), default="local",
                     help="run here (default) or submit to SLURM as job arrays")
    run.add_argument("--wait", action="store_true",
                     help="with --backend slurm: after submitting, follow the rows until they end")
    run.add_argument("--poll", type=_positive_float, default=5.0, help="seconds between SLURM polls with --wait")
    run.add_argument("--timeout", metavar="TIME", type=_time,
                     help="stop a row after this long (60 minutes, 1:30:00, 2-00:00:00) and mark it Timeout; "
                          "a row's time_limit cell wins")
    run.add_argument("--retries", type=_at_least(0), default=0, metavar="K",
                     help="local runs: run a row that failed (non-zero exit) or was lost again, up to K times, "
                          "each try in a new run folder")
    run.add_argument("--gpus-per-job", type=_at_least(0), default=None, metavar="K",
                     help="local runs: GPUs per job through CUDA_VISIBLE_DEVICES (default: 1 where there "
                          "are GPUs; 0 hides them)")
    run.add_argument("--rows", help="only these rows: numbers, ranges, run ids or names, e.g. '1,3,5-8'")
    run.add_argument("--dry-run", action="store_true",
                     help="print each row's command and config changes; change nothing")
    run.add_argument("--expand", action="store_true",
                     help="first expand sweep rows ({a | b}, {<start end step is_log>}) into one row each; "
                          "with --dry-run, show the rows it would make")
    run.add_argument("--runs-dir", help="where run folders go (default: ROOT/experiments)")
    run.add_argument("--conda-env", metavar="ENV",
                     help="run every script row inside this conda environment (stnd's --conda_env; a "
                          "__RUNNER__ row's own conda_env wins)")
    run.add_argument("--show", help="the metrics the results table shows, e.g. 'acc,loss' "
                                    "(default: the last four reported)")
    run.add_argument("--log-limit", type=_size, metavar="SIZE",
                     help="keep each run's stdout.log and stderr.log to this size (its beginning and newest end; "
                          "default: log_limit in sheetrun.yaml, else 256M)")
    run.add_argument("-y", "--yes", action="store_true",
                     help="Google Sheets: run rows whose command you have not run from this sheet before "
                          "(new, or changed by someone) without asking; they are listed either way")
    run.set_defaults(func=cmd_run)

    status = sub.add_parser("status", help="summarise the sheet's statuses and errors")
    common(status)
    status.add_argument("--show", help="also list every row with these columns, e.g. 'acc,loss'")
    status.set_defaults(func=cmd_status)

    sync = sub.add_parser("sync", help="reconcile Submitted/Running rows with their jobs (SLURM or local), and "
                                       "put back runs an older copy of the sheet lost")
    common(sync)
    sync.add_argument("--runs-dir", help="where run folders go (default: ROOT/experiments)")
    sync.set_defaults(func=cmd_sync)

    export = sub.add_parser("export", help="copy a results sheet (e.g. a Google Sheet) into a new CSV file")
    common(export)
    export.add_argument("out", metavar="OUT.csv", help="a new (or empty) CSV file; never overwritten")
    export.set_defaults(func=cmd_export)

    imp = sub.add_parser("import", help="copy a CSV results table into an empty sheet (e.g. a new worksheet)")
    imp.add_argument("csv", metavar="IN.csv")
    common(imp)
    imp.set_defaults(func=cmd_import)

    cancel = sub.add_parser("cancel", help="cancel the jobs of Submitted/Running rows and mark them Cancelled")
    common(cancel)
    cancel.add_argument("--rows", help="only these rows: numbers, ranges, run ids or names, e.g. '1,3,5-8'")
    cancel.set_defaults(func=cmd_cancel)

    reset = sub.add_parser("reset", help="make run rows ready to run again: clear their runner and metric "
                                         "cells, set whether_to_run to 1 (run folders are kept)")
    common(reset)
    reset.add_argument("--rows", help="only these rows: numbers, ranges, run ids or names (default: all)")
    reset.add_argument("--runs-dir", help="where run folders go (default: ROOT/experiments)")
    reset.set_defaults(func=cmd_reset)

    exp = sub.add_parser("expand", help="replace each sweep row ({a | b}, {<start end step is_log>}) by one row "
                                        "per combination, right below it (the original stays, not to run)")
    common(exp)
    exp.add_argument("--rows", help="only these rows: numbers, ranges, run ids or names")
    exp.add_argument("--dry-run", action="store_true", help="show the rows it would make; change nothing")
    exp.set_defaults(func=cmd_expand)

    hist = sub.add_parser("history", help="list a row's runs, newest first: status, time, metrics, run folder")
    common(hist)
    hist.add_argument("row", metavar="ROW", help="a row number, run id or name")
    hist.add_argument("--show", help="the metrics to list, e.g. 'acc,loss' (default: the last four reported)")
    hist.add_argument("--runs-dir", help="where run folders go (default: ROOT/experiments)")
    hist.set_defaults(func=cmd_history)

    summ = sub.add_parser("summarize", help="the completed rows grouped (by default: the same inputs but the "
                                             "seed), each metric as mean ± std (n)")
    common(summ)
    summ.add_argument("--by", help="group by these columns, e.g. 'lr,model' or 'sweep' "
                                   "(default: every input column except those named like seed)")
    summ.add_argument("--show", help="only these metrics, e.g. 'acc,loss'")
    summ.add_argument("--format", choices=("table", "csv", "markdown"), default="table")
    summ.add_argument("--out", help="write the CSV / Markdown there instead of printing it")
    summ.add_argument("--write", action="store_true",
                      help="also write it as a sheet beside the sheet: NAME_summary.csv, or a worksheet "
                           "'TITLE summary' on Google Sheets (replaced each time)")
    summ.set_defaults(func=cmd_summarize)

    comp = sub.add_parser("compare", help="two rows side by side: their configs (what differs first) and metrics")
    common(comp)
    comp.add_argument("a", metavar="ROW")
    comp.add_argument("b", metavar="ROW")
    comp.add_argument("--all", action="store_true", help="also list the config keys that are the same")
    comp.set_defaults(func=cmd_compare)

    plot_cmd = sub.add_parser("plot", help="draw rows' metric curves from their runs into a PNG")
    common(plot_cmd)
    plot_cmd.add_argument("metric", metavar="METRIC")
    plot_cmd.add_argument("--rows", help="only these rows: numbers, ranges, run ids or names")
    plot_cmd.add_argument("--out", help="the PNG to write (default: RUNS/SHEET/plots/METRIC.png)")
    plot_cmd.add_argument("--runs-dir", help="where run folders go (default: ROOT/experiments)")
    plot_cmd.set_defaults(func=cmd_plot)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "credentials", None):
        # jobs inherit it; only the path travels, never the key
        os.environ["GOOGLE_APPLICATION_CREDENTIALS"] = os.path.abspath(args.credentials)
    if getattr(args, "worksheet", None):
        if "://" not in args.sheet:
            err_console.print("sheetrun: --worksheet is for Google Sheets URLs")
            return 2
        args.sheet = args.sheet.split("::")[0] + "::" + args.worksheet
    try:
        return args.func(args)
    except SheetError as exc:
        err_console.print(f"sheetrun: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except SlurmError as exc:
        err_console.print(f"sheetrun: SLURM: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except (RowError, UsageError) as exc:
        err_console.print(f"sheetrun: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:            # before any job started (a claim waiting on the sheet): nothing to stop
        err_console.print("sheetrun: interrupted", highlight=False)
        return 130


if __name__ == "__main__":
    sys.exit(main())
