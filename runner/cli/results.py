"""The commands that read results back: ``history``, ``summarize``, ``compare``, ``plot``."""
from __future__ import annotations

import os
import sys

from rich.table import Table as RichTable
from rich.text import Text

from runner.cli.options import (check_shown, console, err_console, root_of, rows_argument, runs_dir_argument,
                                runs_dir_of, sheet_arguments, shown_metrics)
from runner.core import columns as C
from runner.core.errors import UsageError
from runner.core.rowrefs import RowFilter
from runner.core.sheetref import SheetRef
from runner.sheet import open_sheet


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
    root = root_of(args)
    runs = history(row, root, os.path.join(runs_dir_of(args, root), sheet.name))
    if not runs:
        console.print(f"row {row.number} has not been run")
        return 0
    names = shown_metrics(args)
    if names:
        check_shown(names, {m for run in runs for m in run.metrics}, f"no run of row {row.number} reported")
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
        console.print(f"{i:>3}  {os.path.relpath(run.folder, root_of(args))}", soft_wrap=True)
    return 0


def cmd_plot(args) -> int:
    from runner.core.rundir import RunDir
    from runner.results.history import curve, plot

    sheet = open_sheet(args.sheet)
    table = sheet.read()
    spec = RowFilter.parse(args.rows)
    if spec is not None:
        spec.check(table)
    root = root_of(args)
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
    runs_dir = runs_dir_of(args, root)
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
    summary = summarize(table, root_of(args), by=by, show=shown_metrics(args), labels=swept_labels(table))
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
        target = open_sheet(str(SheetRef.parse(sheet.location).with_worksheet(sheet.title + " summary")))
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
    root = root_of(args)
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


def add_commands(sub) -> None:
    """``history``, ``summarize``, ``compare``, ``plot``."""
    hist = sub.add_parser("history", help="list a row's runs, newest first: status, time, metrics, run folder")
    sheet_arguments(hist)
    hist.add_argument("row", metavar="ROW", help="a row number, run id or name")
    hist.add_argument("--show", help="the metrics to list, e.g. 'acc,loss' (default: the last four reported)")
    runs_dir_argument(hist)
    hist.set_defaults(func=cmd_history)

    summ = sub.add_parser("summarize", help="the completed rows grouped (by default: the same inputs but the "
                                             "seed), each metric as mean ± std (n)")
    sheet_arguments(summ)
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
    sheet_arguments(comp)
    comp.add_argument("a", metavar="ROW")
    comp.add_argument("b", metavar="ROW")
    comp.add_argument("--all", action="store_true", help="also list the config keys that are the same")
    comp.set_defaults(func=cmd_compare)

    plot_cmd = sub.add_parser("plot", help="draw rows' metric curves from their runs into a PNG")
    sheet_arguments(plot_cmd)
    plot_cmd.add_argument("metric", metavar="METRIC")
    rows_argument(plot_cmd, "only these rows: numbers, ranges, run ids or names")
    plot_cmd.add_argument("--out", help="the PNG to write (default: RUNS/SHEET/plots/METRIC.png)")
    runs_dir_argument(plot_cmd)
    plot_cmd.set_defaults(func=cmd_plot)
