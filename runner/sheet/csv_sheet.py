"""A results sheet kept in a local CSV file.

Every change is a read-modify-write transaction under the sheet's lock file:
read the current text, apply the change, write a temporary file, fsync it,
give it the original's permissions, and swap it in. The lock file and the
temporary files live in one hidden folder beside the sheet (``.sheetrun/``),
on the sheet's filesystem, so the swap is atomic and nothing clutters the
folder a person keeps sheets in. A process killed at any instant leaves either
the old or the new sheet, never a truncated one. A sheet that is a symbolic
link is all of that at the file it points to: the link stays a link.

Programs that honour the lock never race. An editor that ignores it can save
at any instant; the transaction closes that window as far as the filesystem
allows:

- the file changed between the read and the swap: start again from the new text;
- the swap is an atomic exchange (``renameat2(RENAME_EXCHANGE)`` on Linux), so
  the file it displaced is still in hand: if that is not the text that was read
  (an editor saved in the last instant), the change is applied again on top of
  the editor's text and swapped in, so neither save is lost. Without the
  exchange (other systems) an in-place save into the old file is still seen
  through the descriptor kept open on it;
- the file changed right after the swap: the change is applied again on top;
- an empty or unparsable file that was modified a moment ago is an editor in
  the middle of saving: read again shortly, not an error.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import random
import socket
import sys
import tempfile
import time
from typing import Callable, TypeVar

from filelock import FileLock, Timeout

from runner.core.errors import describe
from runner.sheet.base import Sheet, SheetError
from runner.sheet.table import SheetFormatError, Table

T = TypeVar("T")
LOCK_TIMEOUT_S = 120.0
RETRY_FOR_S = 120.0     # a sheet another program keeps saving is tried again for this long
QUICK_RETRIES = 5       # then with growing, random pauses (to land between its saves)
SAY_AFTER_S = 1.0       # a wait longer than this is said (who holds the lock; a sheet that keeps changing)
SETTLE_S = 2.0          # an empty / unparsable file younger than this is re-read, not refused
SETTLE_POLL_S = 0.05
STATE_DIR = ".sheetrun"   # beside the sheet: its lock file and temporary files


def _fingerprint(st: os.stat_result) -> tuple:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class _Exchange:
    """``renameat2(..., RENAME_EXCHANGE)``: swap two paths atomically, where the system has it."""

    def __init__(self):
        self.fn = None
        if sys.platform.startswith("linux"):
            try:
                fn = ctypes.CDLL(None, use_errno=True).renameat2
                fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
                self.fn = fn
            except (OSError, AttributeError):
                pass

    def __call__(self, a: str, b: str) -> bool:
        """Swap ``a`` and ``b``; False where the system or filesystem cannot."""
        if self.fn is None:
            return False
        if self.fn(-100, os.fsencode(a), -100, os.fsencode(b), 2) == 0:   # AT_FDCWD, RENAME_EXCHANGE
            return True
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
            return False
        raise OSError(err, os.strerror(err), b)


_exchange = _Exchange()


class CsvSheet(Sheet):
    def __init__(self, path: str):
        # A sheet that is a symbolic link is read, locked and written where it points: the link
        # stays a link (a swap must not turn it into a copy), and it keeps its own name.
        self.given = os.path.abspath(path)
        self.path = os.path.realpath(path)
        directory, name = os.path.split(self.path)
        self.state_dir = os.path.join(directory, STATE_DIR)
        self.lock_path = os.path.join(self.state_dir, f"{name}.lock")
        self._lock = FileLock(self.lock_path, timeout=LOCK_TIMEOUT_S)
        self.writes = 0             # transactions that rewrote the file
        self.changed_by_others = 0  # times the file was found changed by another program since this object wrote it
        self._cache: tuple[tuple, Table] | None = None   # the table as this object last wrote or read it
        self._hook: Callable[[str], None] | None = None    # tests replay editors at each step

    @property
    def location(self) -> str:
        return self.path

    @property
    def name(self) -> str:
        return os.path.splitext(os.path.basename(self.given))[0]

    def _step(self, name: str) -> None:
        if self._hook is not None:
            self._hook(name)

    # -- reading -------------------------------------------------------------------------
    def _read_once(self) -> tuple[str, os.stat_result]:
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                data = f.read()
        except FileNotFoundError:
            raise SheetError(f"sheet not found: {self.path}") from None
        except IsADirectoryError:
            raise SheetError(f"{self.path} is a directory, not a CSV sheet") from None
        except OSError as exc:
            raise SheetError(f"cannot read {self.path}: {describe(exc)}") from None
        try:
            return data.decode("utf-8"), st
        except UnicodeDecodeError as exc:
            raise SheetError(f"{self.path} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                             "save it as 'CSV UTF-8'") from None

    def _read_table(self) -> tuple[Table, tuple, str]:
        """The current table, its file's fingerprint and text; waits out an editor's save."""
        deadline = time.monotonic() + SETTLE_S
        while True:
            text, st = self._read_once()
            try:
                return Table(text), _fingerprint(st), text
            except SheetFormatError as exc:
                young = time.time() - st.st_mtime < SETTLE_S
                if not young or time.monotonic() > deadline:
                    raise SheetError(f"{self.path}: {exc}") from None
            time.sleep(SETTLE_POLL_S)        # empty or half-written: an editor is saving

    def read(self) -> Table:
        return self._read_table()[0]

    # -- transactions --------------------------------------------------------------------
    def _make_state_dir(self) -> None:
        if not os.path.isdir(self.state_dir):
            if not os.path.exists(self.path):
                raise SheetError(f"sheet not found: {self.path}")
            os.makedirs(self.state_dir, exist_ok=True)

    def transact(self, change: Callable[[Table], T]) -> T:
        try:
            self._make_state_dir()
            with self._locked():
                return self._transact(change)
        except Timeout:
            raise SheetError(f"{self.path}: its lock file {self.lock_path} was held for {LOCK_TIMEOUT_S:.0f}s "
                             f"({self._holder()})") from None
        except OSError as exc:
            raise SheetError(f"cannot update {self.path}: {describe(exc)}") from None

    @contextlib.contextmanager
    def _locked(self):
        """The sheet's lock; a wait longer than a second says who holds it and since when. The
        holder is written beside the lock file (``.lock.holder``) each time it is taken."""
        try:
            self._lock.acquire(timeout=SAY_AFTER_S)
        except Timeout:
            print(f"sheetrun: waiting for the lock on {self.path}: {self._holder()}", file=sys.stderr, flush=True)
            self._lock.acquire(timeout=LOCK_TIMEOUT_S - SAY_AFTER_S)
        try:
            if self._lock.lock_counter == 1:
                self._write_holder()
            yield
        finally:
            self._lock.release()

    @property
    def holder_path(self) -> str:
        return self.lock_path + ".holder"

    def _write_holder(self) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
              "command": " ".join([os.path.basename(sys.argv[0] or "python")] + sys.argv[1:])[:200]}
        try:
            with open(self.holder_path, "w", encoding="utf-8") as f:
                f.write(json.dumps(me))
        except OSError:
            pass

    def _holder(self) -> str:
        """Who holds the lock, as the holder wrote it."""
        try:
            with open(self.holder_path, encoding="utf-8") as f:
                who = json.loads(f.read())
            since = float(who["since"])
        except (OSError, ValueError, KeyError, TypeError):
            return "held by another program (it did not say who)"
        when = time.strftime("%H:%M:%S", time.localtime(since))
        return (f"held by pid {who.get('pid')} ({who.get('command')}) on {who.get('host')} "
                f"since {when} ({time.time() - since:.0f}s)")

    def _current_table(self) -> tuple[Table, tuple]:
        """The sheet as a table: the one this object last wrote when the file is still that one
        (same inode, size and modification time), else read and parsed again."""
        cached, self._cache = self._cache, None
        if cached is not None:
            try:
                if _fingerprint(os.stat(self.path)) == cached[0]:
                    return cached[1], cached[0]
            except OSError:
                pass
            self.changed_by_others += 1
        table, before, _text = self._read_table()
        return table, before

    def _transact(self, change: Callable[[Table], T]) -> T:
        self._remove_stale_temps()
        displaced: str | None = None        # an editor's save our swap pushed out: redo on top of it
        result = None                       # what change() returned on the last attempt
        deadline = time.monotonic() + RETRY_FOR_S
        attempt, said = 0, False
        while True:
            attempt += 1
            if attempt > 1:
                # give up only from a clean state: with an editor's save in hand, it must go back first
                if time.monotonic() > deadline and displaced is None:
                    raise SheetError(f"{self.path} kept changing during {attempt - 1} attempts over "
                                     f"{RETRY_FOR_S:.0f}s to update it (another program saving it all the time?); "
                                     "nothing was written")
                if not said and time.monotonic() > deadline - RETRY_FOR_S + SAY_AFTER_S:
                    said = True
                    print(f"sheetrun: {self.path} changed during each of the last {attempt - 1} attempts to update "
                          f"it (another program saving it?); trying again for up to {RETRY_FOR_S:.0f}s, "
                          "each time on its newest content", file=sys.stderr, flush=True)
                if attempt > QUICK_RETRIES and displaced is None:
                    time.sleep(random.uniform(0, min(0.5, 0.005 * 2 ** (attempt - QUICK_RETRIES))))
            if displaced is None:
                table, before = self._current_table()
            else:
                try:
                    table = Table(displaced)
                except SheetFormatError:     # what the editor saved is not a table: keep ours
                    return result
                before = _fingerprint(os.stat(self.path))
            self._step("read")
            result = change(table)
            if not table.changed and displaced is None:
                self._cache = (before, table)
                return result
            outcome, displaced, ours = self._commit(table.text(), before)
            if outcome != "done":
                self.changed_by_others += 1
            if outcome == "done":
                table.changed = False
                self._cache = (ours, table)
                return result

    def _commit(self, text: str, before: tuple) -> tuple[str, str | None, tuple | None]:
        """Swap ``text`` in unless the sheet changed since ``before``.

        Returns ("done", None, our file's fingerprint), ("retry", None, None) to
        start again from the file, or ("retry", their_text, None) when an
        editor's save was displaced by the swap.
        """
        mode = os.stat(self.path).st_mode & 0o7777
        fd, tmp = tempfile.mkstemp(dir=self.state_dir, prefix=f"{os.path.basename(self.path)}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(text.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
                os.fchmod(f.fileno(), mode)
                ours = _fingerprint(os.fstat(f.fileno()))
            self._step("temp-written")
            try:
                old = open(self.path, "rb")          # the file being replaced, kept open
            except FileNotFoundError:                # moved away this instant: start again
                os.unlink(tmp)
                return "retry", None, None
            with old:
                if _fingerprint(os.fstat(old.fileno())) != before:
                    os.unlink(tmp)
                    return "retry", None, None      # changed since the read: start again from it
                self._step("checked")
                if _exchange(tmp, self.path):
                    swapped_out = _fingerprint(os.stat(tmp))
                    their = None if swapped_out == before else _read_text(tmp)
                    os.unlink(tmp)
                else:
                    os.replace(tmp, self.path)
                    their = None
                    if _fingerprint(os.fstat(old.fileno())) != before:   # saved in place meanwhile
                        old.seek(0)
                        their = old.read().decode("utf-8", "replace")
            self.writes += 1
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self._step("after-swap")
        if their is not None:
            return "retry", their, None
        try:
            now = _fingerprint(os.stat(self.path))
        except FileNotFoundError:
            now = None
        if now != ours:                     # changed right after the swap: apply ours on top again
            return "retry", None, None
        return "done", None, ours

    def write_new(self, table: Table, replace_if: Callable[[Table], bool] | None = None) -> None:
        try:
            os.makedirs(self.state_dir, exist_ok=True)
            with self._locked():
                if os.path.exists(self.path) and open(self.path, "rb").read().strip():
                    try:
                        replaceable = replace_if is not None and replace_if(self.read())
                    except SheetError:
                        replaceable = False
                    if not replaceable:
                        raise SheetError(f"{self.path} already has content; not overwritten")
                fd, tmp = tempfile.mkstemp(dir=self.state_dir, prefix=f"{os.path.basename(self.path)}.",
                                           suffix=".tmp")
                with os.fdopen(fd, "wb") as f:
                    f.write(table.text().encode("utf-8"))
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, 0o644)
                os.replace(tmp, self.path)
        except Timeout:
            raise SheetError(f"{self.path}: its lock file {self.lock_path} is held by another program") from None
        except OSError as exc:
            raise SheetError(f"cannot write {self.path}: {describe(exc)}") from None

    def _remove_stale_temps(self) -> None:
        """Temp files of writers killed mid-write (only the lock holder ever writes one)."""
        prefix = f"{os.path.basename(self.path)}."
        for entry in os.listdir(self.state_dir):
            if entry.startswith(prefix) and entry.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(self.state_dir, entry))
                except OSError:
                    pass


def _read_text(path: str) -> str:
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")
