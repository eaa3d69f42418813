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


class UsageError(Exception):
    """The command was given something it cannot use (an option, a project file): said, exit status 2."""


class RowError(ValueError):
    """Why a row cannot run; written into the row's ``error`` cell."""
