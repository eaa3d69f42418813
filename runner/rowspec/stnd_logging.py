"""What stnd-wrapped scripts log with stnd's own CSV logger reaches the row.

stnd's ``run_from_csv`` gives every row's config a ``logging/output_csv``
section (``path``, ``row_number``, ``spreadsheet_url``, ``worksheet_name``)
naming the sheet and the row, and its logger (``try_to_log_in_csv`` and
friends, set up by ``redneck_logger_context``) writes cells straight into
that file: stuned 1.0.1 cell by cell, newer stnd into a copy of the file in its
own run folder (``local_copy_<name>``), copied back at its start, end and
failure. Either way it rewrites the whole file in its own CSV dialect.

sheetrun never lets that writer near the real sheet. A stnd-wrapped script —
one that imports stnd or stuned itself, or whose default config has a
``logging:`` section (the shape of every stnd-wrapped script's config) — gets
``logging/output_csv``, as stnd gives every row, created if its config has no
``logging:`` (stnd's wrapper reads ``experiment_config["logging"]``), but
pointing at a private one-row CSV in its own run folder
(:func:`point_at_private_csv`); other scripts' configs are not touched. The job watches it
(:class:`LoggedRow`): each cell the script logs there is reported like a
``report()`` value, live, into ``metrics.jsonl``. stnd's own bookkeeping cells
(status, run folder, walltime, ...) are left out: sheetrun writes those itself.
"""
from __future__ import annotations

import functools
import os
import re
import time

from filelock import FileLock, Timeout

from runner.sheet.table import RaggedRowError, SheetFormatError, Table

ROW_FILE = "stnd_row.csv"
LOCAL_COPY_PREFIX = "local_copy_"         # newer stnd's working copy, in its own run folder
# stnd's bookkeeping cells (stnd/utility/logger.py): sheetrun writes its own
BOOKKEEPING = frozenset({"whether_to_run", "status", "run_folder", "job id", "walltime", "stdout", "stderr"})
RECENT_S = 1.0                            # a file written this recently is read again
EMPTY = ("", "?", "<EMPTY>")              # stnd's fillers for a cell with nothing in it


_IMPORTS_STND = re.compile(rb"^[ \t]*(?:from|import)[ \t]+(?:stnd|stuned)\b", re.MULTILINE)


@functools.lru_cache(maxsize=256)
def imports_stnd(script: str) -> bool:
    """Does the script import stnd or stuned itself (``import stnd``, ``from stuned.utility ...``)?"""
    try:
        with open(script, "rb") as f:
            return bool(_IMPORTS_STND.search(f.read(1 << 20)))
    except OSError:
        return False


def wants_output_csv(config: dict, script: str | None = None) -> bool:
    """True for a stnd-wrapped script: its config is shaped for stnd's logger (a ``logging:``
    mapping), or the script imports stnd / stuned."""
    return isinstance(config.get("logging"), dict) or (script is not None and imports_stnd(script))


def point_at_private_csv(config: dict, run_folder: str) -> str:
    """Set ``logging/output_csv`` as stnd does, but to a fresh one-row CSV in ``run_folder``;
    returns its path. (A row's own ``delta:logging/output_csv`` is replaced, as stnd replaces it.)"""
    path = os.path.join(run_folder, ROW_FILE)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("status\r\nSubmitted\r\n")
    logging = config.get("logging") if isinstance(config.get("logging"), dict) else {}
    config["logging"] = dict(logging, output_csv={
        "path": path, "row_number": 1, "spreadsheet_url": None, "worksheet_name": None})
    return path


def read_row(path: str, lock_timeout: float | None = 0.0) -> dict[str, str] | None:
    """Data row 1 of a CSV that stnd writes, or None when it cannot be read whole right now.

    stnd writes under ``<path>.lock`` (its ``make_file_lock``): that lock is taken
    when ``lock_timeout`` is given. A file caught mid-write (it does not end in a line
    break, or it changed while being read) is None: the next look gets it.
    """
    try:
        if lock_timeout is None:
            return _read_whole(path)
        with FileLock(path + ".lock", timeout=lock_timeout):
            return _read_whole(path)
    except (OSError, Timeout, UnicodeDecodeError):
        return None


def _read_whole(path: str) -> dict[str, str] | None:
    before = os.stat(path)
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    after = os.stat(path)
    if (before.st_mtime_ns, before.st_size) != (after.st_mtime_ns, after.st_size) or not text.endswith("\n"):
        return None
    try:
        table = Table(text)             # stnd's escaped form, or stuned's quoted one
    except (SheetFormatError, RaggedRowError):
        return None
    if not table.rows or table.rows[0].ragged:
        return None
    return table.rows[0].as_dict()


class LoggedRow:
    """Watches a row's private stnd CSV (and newer stnd's working copy of it)."""

    def __init__(self, path: str):
        self.path = path
        self.copy = ""                          # newer stnd's working copy, once its folder is known
        self.sent: dict[str, str] = {}
        self._seen: dict[str, tuple] = {}       # path -> (mtime, size) when last read whole

    def _unchanged(self, path: str, stamp: tuple) -> bool:
        """Read whole before with this (mtime, size), and not written in the last second (a
        file system's clock is coarse: two quick writes of the same size can share a stamp)."""
        return stamp == self._seen.get(path) and time.time() - stamp[0] / 1e9 > RECENT_S

    def changes(self, final: bool = False) -> dict[str, str]:
        """The cells logged since the last call, as ``{column: text}``. A file that has not
        changed since it was last read whole is not read again, unless ``final``."""
        cells: dict[str, str] = {}
        for path, timeout in ((self.path, 5.0 if final else 0.0), (self.copy, None)):
            try:
                st = os.stat(path) if path else None
            except OSError:
                st = None
            if st is None:
                continue
            stamp = (st.st_mtime_ns, st.st_size)
            if not final and self._unchanged(path, stamp):
                continue
            row = read_row(path, timeout)
            if row is None:
                continue
            self._seen[path] = stamp
            # the working copy, read second, is the newer; a filler in it hides nothing
            cells.update({column: value for column, value in row.items() if value not in EMPTY})
            stnd_folder = row.get("run_folder", "")
            if path == self.path and not self.copy and stnd_folder and os.path.isabs(stnd_folder):
                self.copy = os.path.join(stnd_folder, LOCAL_COPY_PREFIX + os.path.basename(self.path))
        new = {column: value for column, value in cells.items()
               if column not in BOOKKEEPING and column.strip() and self.sent.get(column) != value}
        self.sent.update(new)
        return new
