"""Plain-words causes for operating-system errors, as a row or a console line shows them, and the
error of a command used the wrong way."""
from __future__ import annotations

import errno

_CAUSES = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted (is the file immutable?)",
    errno.EISDIR: "is a directory",
    errno.ENOTDIR: "a part of the path is not a directory",
    errno.ENOENT: "not found",
    errno.EIO: "input/output error",
}


def describe(exc: BaseException, path: str | None = None) -> str:
    """``disk full (writing /x/exit.json: [Errno 28] No space left on device)``."""
    if not isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc}"
    cause = _CAUSES.get(exc.errno or 0, type(exc).__name__)
    where = path or exc.filename
    detail = f"[Errno {exc.errno}] {exc.strerror}" if exc.strerror else str(exc)
    return f"{cause} ({where}: {detail})" if where else f"{cause} ({detail})"


class SheetrunError(Exception):
    """The root of every error sheetrun raises on purpose: said in one line (on the console, or in
    the row it came from), never a traceback. The kinds a command tells apart:

    - :class:`UsageError`: the command or a project file is wrong (exit status 2);
    - :class:`RowError` (and the cell, config, program, selector and SLURM-option errors under it):
      one row cannot run, its ``error`` cell says why, the other rows go on;
    - :class:`runner.sheet.SheetError`: the sheet cannot be read or written;
    - :class:`BackendError` (:class:`runner.slurm.SlurmError`): the scheduler cannot be asked.
    """


class UsageError(SheetrunError):
    """The command was given something it cannot use (an option, a project file): said, exit status 2.
    ``option``: the option at fault (``--by``), written before the message."""

    def __init__(self, message: str, option: str = ""):
        super().__init__(f"{option}: {message}" if option else message)
        self.option = option


class RowError(SheetrunError, ValueError):
    """Why a row cannot run; written into the row's ``error`` cell. ``column``: the cell at fault,
    when one is (the message names it too)."""

    def __init__(self, message: str = "", column: str = ""):
        super().__init__(message)
        self.column = column


class BackendError(SheetrunError, RuntimeError):
    """The scheduler a launch runs on cannot be asked, or refused; ``backend`` names it."""
    backend = "backend"
