"""A results sheet kept in a local CSV file.

Every change is a read-modify-write transaction: take the sheet's lock file,
read the current text, apply the change, write a temporary file in the same
directory, fsync it, give it the original's permissions, and ``os.replace`` it
over the original. A process killed at any instant leaves either the old or
the new sheet, never a truncated one. If the file changes underneath a
transaction (an editor that does not take the lock saved it), the
transaction starts again from the new text.
"""
from __future__ import annotations

import os
import tempfile
from typing import Callable, TypeVar

from filelock import FileLock

from runner.sheet.base import Sheet, SheetError
from runner.sheet.table import SheetFormatError, Table

T = TypeVar("T")
LOCK_TIMEOUT_S = 120.0
MAX_RETRIES = 20


def _fingerprint(st: os.stat_result) -> tuple:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class CsvSheet(Sheet):
    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        directory, name = os.path.split(self.path)
        self.lock_path = os.path.join(directory, f".{name}.lock")
        self._lock = FileLock(self.lock_path, timeout=LOCK_TIMEOUT_S)

    @property
    def location(self) -> str:
        return self.path

    @property
    def name(self) -> str:
        return os.path.splitext(os.path.basename(self.path))[0]

    def _read_text(self) -> tuple[str, tuple]:
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                data = f.read()
        except FileNotFoundError:
            raise SheetError(f"sheet not found: {self.path}") from None
        try:
            return data.decode("utf-8"), _fingerprint(st)
        except UnicodeDecodeError as exc:
            raise SheetError(f"{self.path} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                             "save it as 'CSV UTF-8'") from None

    def read(self) -> Table:
        text, _ = self._read_text()
        try:
            return Table(text)
        except SheetFormatError as exc:
            raise SheetError(f"{self.path}: {exc}") from None

    def transact(self, change: Callable[[Table], T]) -> T:
        with self._lock:
            self._remove_stale_temps()
            for _ in range(MAX_RETRIES):
                text, before = self._read_text()
                try:
                    table = Table(text)
                except SheetFormatError as exc:
                    raise SheetError(f"{self.path}: {exc}") from None
                result = change(table)
                if not table.changed:
                    return result
                if self._replace(table.text(), before):
                    return result
            raise SheetError(f"{self.path} kept changing during {MAX_RETRIES} attempts to update it")

    def write_new(self, table: Table) -> None:
        with self._lock:
            if os.path.exists(self.path) and open(self.path, "rb").read().strip():
                raise SheetError(f"{self.path} already has content; not overwritten")
            directory = os.path.dirname(self.path)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(self.path)}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(table.text().encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)

    def _remove_stale_temps(self) -> None:
        """Temp files of writers killed mid-write (only the lock holder ever writes one)."""
        directory, name = os.path.split(self.path)
        prefix = f".{name}."
        for entry in os.listdir(directory):
            if entry.startswith(prefix) and entry.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(directory, entry))
                except OSError:
                    pass

    def _replace(self, text: str, before: tuple) -> bool:
        """Atomically replace the sheet with ``text`` unless it changed since ``before``."""
        directory = os.path.dirname(self.path)
        mode = os.stat(self.path).st_mode & 0o7777
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(self.path)}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(text.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, mode)
            if _fingerprint(os.stat(self.path)) != before:
                os.unlink(tmp)
                return False
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return True
