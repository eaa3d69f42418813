"""The commands that read or set rows' state: ``status``, ``sync``, ``cancel``, ``reset``, and
``export`` / ``import`` of a whole sheet."""
from __future__ import annotations

from collections import Counter

from rich.table import Table as RichTable
from rich.text import Text

from runner.cli.options import (check_shown, console, err_console, root_of, rows_argument, runs_dir_argument,
                                runs_dir_of, sheet_arguments, shown_metrics)
from runner.core import columns as C
from runner.core.columns import Status
from runner.core.rowrefs import RowFilter
from runner.sheet import open_sheet


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
    shown = shown_metrics(args)
    if shown:
        check_shown(shown, table.columns, "the sheet has no column")
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

    root = root_of(args)
    changes = sync(open_sheet(args.sheet), root, runs_dir=runs_dir_of(args, root))
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

    numbers = cancel(open_sheet(args.sheet), root_of(args), RowFilter.parse(args.rows))
    if not numbers:
        console.print("no selected row is Submitted or Running; nothing to cancel")
    else:
        console.print(f"cancelled rows {', '.join(map(str, numbers))}", highlight=False)
    return 0


def cmd_reset(args) -> int:
    from runner.core.rowrefs import ranges
    from runner.runs.reset import reset

    root = root_of(args)
    done, left, kept = reset(open_sheet(args.sheet), root, RowFilter.parse(args.rows), runs_dir_of(args, root))
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


def add_commands(sub) -> None:
    """``status``, ``sync``, ``export``, ``import``, ``cancel``, ``reset``."""
    status = sub.add_parser("status", help="summarise the sheet's statuses and errors")
    sheet_arguments(status)
    status.add_argument("--show", help="also list every row with these columns, e.g. 'acc,loss'")
    status.set_defaults(func=cmd_status)

    sync = sub.add_parser("sync", help="reconcile Submitted/Running rows with their jobs (SLURM or local), and "
                                       "put back runs an older copy of the sheet lost")
    sheet_arguments(sync)
    runs_dir_argument(sync)
    sync.set_defaults(func=cmd_sync)

    export = sub.add_parser("export", help="copy a results sheet (e.g. a Google Sheet) into a new CSV file")
    sheet_arguments(export)
    export.add_argument("out", metavar="OUT.csv", help="a new (or empty) CSV file; never overwritten")
    export.set_defaults(func=cmd_export)

    imp = sub.add_parser("import", help="copy a CSV results table into an empty sheet (e.g. a new worksheet)")
    imp.add_argument("csv", metavar="IN.csv")
    sheet_arguments(imp)
    imp.set_defaults(func=cmd_import)

    cancel = sub.add_parser("cancel", help="cancel the jobs of Submitted/Running rows and mark them Cancelled")
    sheet_arguments(cancel)
    rows_argument(cancel)
    cancel.set_defaults(func=cmd_cancel)

    reset = sub.add_parser("reset", help="make run rows ready to run again: clear their runner and metric "
                                         "cells, set whether_to_run to 1 (run folders are kept)")
    sheet_arguments(reset)
    rows_argument(reset, "only these rows: numbers, ranges, run ids or names (default: all)")
    runs_dir_argument(reset)
    reset.set_defaults(func=cmd_reset)
