"""``sheetrun``: the parser, assembled from each command group's own declarations, and ``main``."""
from __future__ import annotations

import argparse
import os

from runner import __version__
from runner.cli import results, rows, run
from runner.cli.options import err_console
from runner.core.errors import BackendError, SheetrunError
from runner.core.sheetref import SheetRef


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sheetrun", description="Run the experiments listed in a results sheet and write "
                                     "their status and metrics back into it.")
    parser.add_argument("--version", action="version", version=f"sheetrun {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for group in (run, rows, results):
        group.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "credentials", None):
        # jobs inherit it; only the path travels, never the key
        os.environ["GOOGLE_APPLICATION_CREDENTIALS"] = os.path.abspath(args.credentials)
    if getattr(args, "worksheet", None):
        ref = SheetRef.parse(args.sheet)
        if not ref.remote:
            err_console.print("sheetrun: --worksheet is for Google Sheets URLs")
            return 2
        args.sheet = str(ref.with_worksheet(args.worksheet))
    try:
        return args.func(args)
    except SheetrunError as exc:          # usage, a row, the sheet, the scheduler: said in one line
        where = f"{exc.backend}: " if isinstance(exc, BackendError) else ""
        err_console.print(f"sheetrun: {where}{exc}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:            # before any job started (a claim waiting on the sheet): nothing to stop
        err_console.print("sheetrun: interrupted", highlight=False)
        return 130
