"""What every sheetrun command shares: the consoles, the options declared once, their types, and
the values read from them (the project root, the runs folder, the metrics to show)."""
from __future__ import annotations

import argparse
import os

from runner.core.console import make_console
from runner.core.errors import UsageError
from runner.core.sheetref import SheetRef
from runner.rowspec.rows import project_root_for

console = make_console()


err_console = make_console(stderr=True)


def root_of(args) -> str:
    """``--root``, else stnd's PROJECT_ROOT_PROVIDED_FOR_STUNED, else from the sheet's place."""
    if args.root:
        return os.path.abspath(args.root)
    if os.environ.get("PROJECT_ROOT_PROVIDED_FOR_STUNED"):
        return os.path.abspath(os.environ["PROJECT_ROOT_PROVIDED_FOR_STUNED"])
    if SheetRef.parse(args.sheet).remote:
        return os.getcwd()
    return project_root_for(args.sheet)


def runs_dir_of(args, root: str) -> str:
    return os.path.abspath(getattr(args, "runs_dir", None) or os.path.join(root, "experiments"))


def shown_metrics(args) -> list[str] | None:
    return [c.strip() for c in args.show.split(",") if c.strip()] if getattr(args, "show", None) else None


def check_shown(names: list[str], available, what: str) -> None:
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


def timeout_of(args) -> str:
    """``--timeout`` (checked when parsed), or "" for none."""
    return args.timeout or ""


def at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
        return value
    return parse


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def size(text: str) -> int:
    from runner.core.rundir import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def slurm_time(text: str) -> str:
    """``--timeout``: a SLURM time (60, 1:30:00, 2-00:00:00), checked when parsing."""
    from runner.rowspec.slurm_options import parse_time

    try:
        parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


# -- options several commands take, declared once ---------------------------------------------------
ROWS_HELP = "only these rows: numbers, ranges, run ids or names, e.g. '1,3,5-8'"
RUNS_DIR_HELP = "where run folders go (default: ROOT/experiments)"


def sheet_arguments(p: argparse.ArgumentParser) -> None:
    """SHEET, and where its project and (Google) worksheet are."""
    p.add_argument("sheet", metavar="SHEET", help="a CSV results sheet, or a Google Sheets URL")
    p.add_argument("--root", help="project root that relative paths resolve against "
                                  "(default: the directory holding result_sheets/)")
    p.add_argument("--worksheet", help="Google Sheets: the worksheet (tab) by name "
                                       "(default: the URL's gid, else the first)")
    p.add_argument("--credentials", help="Google Sheets: a service-account key file "
                                         "(default: GOOGLE_APPLICATION_CREDENTIALS, then gspread's)")


def rows_argument(p: argparse.ArgumentParser, help: str = ROWS_HELP) -> None:
    p.add_argument("--rows", help=help)


def runs_dir_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-dir", help=RUNS_DIR_HELP)
