"""A results sheet kept in a Google Sheet, through gspread.

Same semantics as the CSV sheet (``runner.sheet.base``): a transaction reads
the worksheet's current values (one ``values.get``, unformatted), applies the
change to a :class:`~runner.sheet.table.Table` built from them, and writes
back only the cells that changed, RAW, in one ``values:batchUpdate`` — never a
whole row or the whole sheet, so a person's edits to other cells are never
overwritten. New columns are claimed first (their header cells written, then
the header row read back to check no other writer took the same place)
before any value goes under them.

Locations: a Google Sheets URL; the worksheet is the one the URL's ``gid``
names, or ``URL::NAME`` (stnd's form, also what ``--worksheet NAME`` builds),
else the first. Credentials: ``GOOGLE_APPLICATION_CREDENTIALS`` or gspread's
default service-account file, or an access token in ``SHEETRUN_SHEETS_TOKEN``;
``SHEETRUN_SHEETS_API_URL`` points the client at another server (a local one
in the tests), where credentials are optional. Credentials are only ever read
from where they are; they are not printed, logged or copied.

Quotas: 429 and 5xx answers are retried with exponential backoff and jitter
(``RETRIES`` times), then reported; 400/401/403/404 fail at once with the
sheet named. Every request has a timeout (``SHEETRUN_SHEETS_TIMEOUT_S``, 30 s
by default): a server that never answers is, like an unreachable one, a
:class:`SheetError` after a few tries, so a job without internet keeps its
updates for ``sheetrun sync``.
"""
from __future__ import annotations

import csv
import io
import os
import random
import re
import threading
import time
from typing import Callable, TypeVar

from runner.core.sheetref import SheetRef
from runner.sheet.base import Sheet, SheetError
from runner.sheet.table import SheetFormatError, Table

T = TypeVar("T")
GOOGLE_API = "https://sheets.googleapis.com"
SCOPES = ["https://www.googleapis.com/auth/spreadsheets"]
URL_PREFIX = "https://docs.google.com/spreadsheets/"
_KEY = re.compile(r"/spreadsheets/d/([A-Za-z0-9_-]+)")
_GID = re.compile(r"[#&?]gid=(\d+)")
RETRIES = 6
CONNECT_RETRIES = 2
REQUESTS_PER_MIN = 50.0        # of each kind, per process: under Google's 60 reads and 60 writes per minute
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 30.0          # no answer this long: the request failed (gspread waits for ever by default)
HEADER_RETRIES = 5


def is_google_sheet(location: str) -> bool:
    return location.startswith(URL_PREFIX)


def _retry_base_s() -> float:
    return float(os.environ.get("SHEETRUN_SHEETS_RETRY_BASE_S", "1.0"))


def col_letters(index: int) -> str:
    out, index = "", index + 1
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(65 + rem) + out
    return out


def cell_text(value) -> str:
    """An unformatted API value as the text a CSV sheet would hold."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return "" if value is None else str(value)


def api_value(text: str):
    """What to send (RAW) for a runner-written cell: canonical numbers as numbers, the rest as text."""
    try:
        if str(int(text)) == text:
            return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
        if repr(number) == text:
            return number
    except ValueError:
        pass
    return text


def _table_text(values: list[list]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    width = max((len(r) for r in values), default=0)
    for row in values or [[]]:
        texts = [cell_text(v) for v in row]
        writer.writerow(texts + [""] * (width - len(texts)) if any(texts) else [])
    return buf.getvalue()


class _Pace:
    """A token bucket per kind of request (read, write) for this process: a burst of a few requests
    at once, and on average no more than ``per_min`` a minute, waiting (not failing) when past it."""

    def __init__(self, per_min: float, burst: int = 10):
        self.rate, self.burst = per_min / 60.0, float(burst)
        self.tokens = {"read": self.burst, "write": self.burst}
        self.at = {"read": time.monotonic(), "write": time.monotonic()}
        self.lock = threading.Lock()

    def take(self, kind: str) -> None:
        while True:
            with self.lock:
                now = time.monotonic()
                self.tokens[kind] = min(self.burst, self.tokens[kind] + (now - self.at[kind]) * self.rate)
                self.at[kind] = now
                if self.tokens[kind] >= 1.0:
                    self.tokens[kind] -= 1.0
                    return
                wait = (1.0 - self.tokens[kind]) / self.rate
            time.sleep(wait)


_PACE: dict = {}


def _pace() -> _Pace:
    per_min = float(os.environ.get("SHEETRUN_SHEETS_REQUESTS_PER_MIN") or REQUESTS_PER_MIN)
    if per_min not in _PACE:
        _PACE[per_min] = _Pace(per_min)
    return _PACE[per_min]


class GoogleSheet(Sheet):
    remote = True

    def __init__(self, location: str):
        ref = SheetRef.parse(location)
        url, worksheet = ref.address, ref.worksheet
        m = _KEY.search(url)
        if not m:
            raise SheetError(f"not a Google Sheets URL: {location}")
        self._location = location
        self.key = m.group(1)
        gid = _GID.search(url)
        self.gid = int(gid.group(1)) if gid else None
        self.worksheet_name = worksheet or None
        self._spreadsheet = None
        self._ws_props: dict | None = None
        self._lock = threading.Lock()

    # -- identity ------------------------------------------------------------------------
    @property
    def location(self) -> str:
        return self._location

    @property
    def title(self) -> str:
        """The worksheet's title."""
        return self._props()["title"]

    @property
    def name(self) -> str:
        title = self._props()["title"]
        # a folder name under the runs folder: never "..", ".", or hidden (a title is anyone's to type)
        return re.sub(r"[^A-Za-z0-9._-]+", "_", title).strip("_.") or f"gsheet_{self.key[:8]}"

    # -- gspread plumbing ----------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one API call; turn gspread/requests failures into SheetError naming the sheet."""
        import requests
        from gspread.exceptions import APIError

        _pace().take("read" if what.startswith("read") or what == "open" else "write")
        try:
            return fn()
        except APIError as exc:
            status = exc.response.status_code
            message = exc.error.get("message", "") if isinstance(exc.error, dict) else str(exc)
            hint = {401: "; check the credentials", 403: "; is the sheet shared with this account?",
                    404: "; check the URL"}.get(status, "")
            raise SheetError(f"Google Sheet {self._location}: {what} failed: {status} {message}{hint}",
                             bad_request=status == 400) from None
        except requests.RequestException as exc:
            raise SheetError(f"Google Sheet {self._location} cannot be reached ({what}): "
                             f"{type(exc).__name__}") from None

    def _open(self):
        if self._spreadsheet is None:
            client = make_client()
            self._spreadsheet = self._call("open", lambda: client.open_by_key(self.key))
        return self._spreadsheet

    def _props(self, refresh: bool = False) -> dict:
        if self._ws_props is None or refresh:
            meta = self._call("read metadata", lambda: self._open().fetch_sheet_metadata())
            sheets = [s["properties"] for s in meta.get("sheets", [])]
            if self.worksheet_name is not None:
                chosen = [p for p in sheets if p["title"] == self.worksheet_name]
                what = f"no worksheet named {self.worksheet_name!r}"
            elif self.gid is not None:
                chosen = [p for p in sheets if p["sheetId"] == self.gid]
                what = f"no worksheet with gid {self.gid}"
            else:
                chosen, what = sheets[:1], "no worksheet"
            if not chosen:
                raise SheetError(f"Google Sheet {self._location}: {what} "
                                 f"(it has {', '.join(repr(p['title']) for p in sheets)})")
            self._ws_props = chosen[0]
        return self._ws_props

    def _a1(self, cells: str = "") -> str:
        title = "'" + self._props()["title"].replace("'", "''") + "'"
        return f"{title}!{cells}" if cells else title

    def _values(self) -> list[list]:
        params = {"valueRenderOption": "UNFORMATTED_VALUE", "dateTimeRenderOption": "FORMATTED_STRING"}
        data = self._call("read values", lambda: self._open().values_get(self._a1(), params=params))
        return data.get("values", [])

    def _table(self, values: list[list]) -> Table:
        try:
            return Table(_table_text(values))
        except SheetFormatError as exc:
            raise SheetError(f"Google Sheet {self._location}: {exc}") from None

    # -- the Sheet interface -------------------------------------------------------------
    def read(self) -> Table:
        return self._table(self._values())

    def transact(self, change: Callable[[Table], T]) -> T:
        with self._lock:
            for _ in range(HEADER_RETRIES):
                values = self._values()
                table = self._table(values)
                width_before = len(table.header)
                originals = {id(record) for record in table.records}
                result = change(table)
                if not table.changed:
                    return result
                inserted = [i for i, record in enumerate(table.records) if id(record) not in originals]
                if len(table.records) - len(inserted) != len(originals):
                    raise SheetError("deleting rows is not supported on a Google Sheet")
                new_columns = table.header[width_before:]
                if new_columns and not self._claim_columns(width_before, new_columns):
                    continue            # another writer took those places: start again from fresh values
                if inserted:
                    values = self._insert_rows(values, inserted)
                self._write_changes(values, table)
                return result
            raise SheetError(f"Google Sheet {self._location}: could not add columns "
                             f"{', '.join(new_columns)}: other writers kept taking their places")

    def write_new(self, table: Table, replace_if: Callable[[Table], bool] | None = None) -> None:
        """Import: fill an empty worksheet (created when ``::NAME`` names a missing one); one that
        ``replace_if`` accepts is cleared first."""
        with self._lock:
            try:
                self._props(refresh=True)
            except SheetError:
                if self.worksheet_name is None:
                    raise
                body = {"requests": [{"addSheet": {"properties": {"title": self.worksheet_name}}}]}
                self._call("add worksheet", lambda: self._open().batch_update(body))
                self._props(refresh=True)
            held = self._values()
            if any(cell_text(v) for row in held for v in row):
                if replace_if is None or not replace_if(self._table(held)):
                    raise SheetError(f"Google Sheet {self._location}: the worksheet already has content; "
                                     "not overwritten (import into a new worksheet with --worksheet NAME)")
                self._call("clear", lambda: self._open().values_clear(self._a1()))
            rows = [list(r.values) for r in table.records]
            width = max(len(r) for r in rows)
            self._ensure_columns(width)
            props = self._props()
            have = props.get("gridProperties", {}).get("rowCount", 1000)
            if len(rows) > have:
                body = {"requests": [{"appendDimension": {"sheetId": props["sheetId"], "dimension": "ROWS",
                                                          "length": len(rows) - have}}]}
                self._call("add grid rows", lambda: self._open().batch_update(body))
            values = [row if i == 0 else [api_value(v) if v != "" else "" for v in row]
                      for i, row in enumerate(rows)]
            end = f"{col_letters(width - 1)}{len(rows)}"
            self._call("write", lambda: self._open().values_update(
                self._a1(f"A1:{end}"), params={"valueInputOption": "RAW"}, body={"values": values}))

    def _claim_columns(self, start: int, names: list[str]) -> bool:
        """Write the new header cells, then check they are still ours and not duplicated."""
        self._ensure_columns(start + len(names))
        body = {"valueInputOption": "RAW", "data": [
            {"range": self._a1(f"{col_letters(start)}1:{col_letters(start + len(names) - 1)}1"),
             "values": [names]}]}
        self._call("add columns", lambda: self._open().values_batch_update(body))
        header = self._call("read header", lambda: self._open().values_get(
            self._a1("1:1"), params={"valueRenderOption": "UNFORMATTED_VALUE"})).get("values", [[]])
        header = [cell_text(v) for v in (header[0] if header else [])]
        if header[start:start + len(names)] == names and all(header.count(n) == 1 for n in names):
            return True
        # Lost a race: take back those of our header cells that now duplicate a name found
        # elsewhere (the other copy stays), so the next attempt sees a valid header.
        data = [{"range": self._a1(f"{col_letters(start + i)}1"), "values": [[""]]}
                for i, name in enumerate(names)
                if start + i < len(header) and header[start + i] == name and header.count(name) > 1]
        if data:
            self._call("undo columns", lambda: self._open().values_batch_update({"valueInputOption": "RAW",
                                                                                  "data": data}))
        time.sleep(random.uniform(0.05, 0.3))
        return False

    def _ensure_columns(self, needed: int) -> None:
        props = self._props(refresh=True)
        have = props.get("gridProperties", {}).get("columnCount", 26)
        if needed > have:
            body = {"requests": [{"appendDimension": {"sheetId": props["sheetId"], "dimension": "COLUMNS",
                                                      "length": needed - have}}]}
            self._call("add grid columns", lambda: self._open().batch_update(body))
            self._props(refresh=True)

    def _insert_rows(self, values: list[list], at: list[int]) -> list[list]:
        """Insert empty sheet rows so that they end up at records ``at`` (0-based, ascending),
        in one batchUpdate; returns ``values`` as the sheet now holds them."""
        sheet_id = self._props()["sheetId"]
        requests, start = [], None
        for k, i in enumerate(at):
            if start is None:
                start = i
            if k + 1 == len(at) or at[k + 1] != i + 1:
                requests.append({"insertDimension": {"range": {"sheetId": sheet_id, "dimension": "ROWS",
                                                               "startIndex": start, "endIndex": i + 1},
                                                     "inheritFromBefore": start > 1}})
                start = None
        self._call("insert rows", lambda: self._open().batch_update({"requests": requests}))
        self._props(refresh=True)
        shifted = list(values)
        for i in at:
            shifted.insert(i, [])
        return shifted

    def _write_changes(self, before: list[list], table: Table) -> None:
        """One values:batchUpdate with a range per run of consecutive changed cells in a row."""
        data = []
        for r, record in enumerate(table.records):
            old = [cell_text(v) for v in before[r]] if r < len(before) else []
            run_start, run = None, []
            for c, value in enumerate(record.values + [None]):
                changed = value is not None and value != (old[c] if c < len(old) else "")
                if changed:
                    if run_start is None:
                        run_start = c
                    run.append(api_value(value) if r > 0 else value)
                elif run_start is not None:
                    span = f"{col_letters(run_start)}{r + 1}:{col_letters(run_start + len(run) - 1)}{r + 1}"
                    data.append({"range": self._a1(span), "values": [run]})
                    run_start, run = None, []
        if data:
            self._call("write", lambda: self._open().values_batch_update({"valueInputOption": "RAW", "data": data}))


# -- the client -----------------------------------------------------------------------------

def make_client():
    """A gspread client with retries; pointed at SHEETRUN_SHEETS_API_URL when set."""
    import gspread
    import requests

    base = os.environ.get("SHEETRUN_SHEETS_API_URL", "").rstrip("/")
    token = os.environ.get("SHEETRUN_SHEETS_TOKEN")
    if token:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
    elif base and not _credentials_file():
        session = requests.Session()              # a local server: no credentials needed
    else:
        from google.auth.transport.requests import AuthorizedSession

        session = AuthorizedSession(_service_account())
    if base:
        session.mount(GOOGLE_API, RebaseAdapter(base))
    client = gspread.Client(auth=None, session=session, http_client=_retrying_http_client())
    read_timeout = float(os.environ.get("SHEETRUN_SHEETS_TIMEOUT_S") or READ_TIMEOUT_S)
    client.set_timeout((min(CONNECT_TIMEOUT_S, read_timeout), read_timeout))
    return client


def _credentials_file() -> str | None:
    path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if path:
        return path
    default = os.path.expanduser("~/.config/gspread/service_account.json")
    return default if os.path.exists(default) else None


def _service_account():
    from google.oauth2 import service_account

    path = _credentials_file()
    if not path:
        raise SheetError("no Google credentials: pass --credentials KEY.json, set GOOGLE_APPLICATION_CREDENTIALS, "
                         "or put a service-account key at ~/.config/gspread/service_account.json")
    try:
        return service_account.Credentials.from_service_account_file(path, scopes=SCOPES)
    except (OSError, ValueError) as exc:
        raise SheetError(f"cannot use the Google credentials in {path}: {type(exc).__name__}") from None


def _retrying_http_client():
    import requests
    from gspread.exceptions import APIError
    from gspread.http_client import HTTPClient

    class RetryingHTTPClient(HTTPClient):
        """429 and 5xx: exponential backoff with jitter, RETRIES times; connection errors: a few quick tries."""

        def request(self, *args, **kwargs):
            attempt = 0
            while True:
                try:
                    return super().request(*args, **kwargs)
                except APIError as exc:
                    status = exc.response.status_code
                    if not (status == 429 or status >= 500) or attempt >= RETRIES:
                        raise
                except (requests.ConnectionError, requests.Timeout):
                    if attempt >= CONNECT_RETRIES:
                        raise
                delay = min(32.0, _retry_base_s() * 2 ** attempt) * random.uniform(0.5, 1.5)
                time.sleep(delay)
                attempt += 1

    return RetryingHTTPClient


def _rebase_adapter_class():
    from requests.adapters import HTTPAdapter

    class _RebaseAdapter(HTTPAdapter):
        def __init__(self, base: str):
            super().__init__()
            self.base = base

        def send(self, request, **kwargs):
            request.url = self.base + request.url[len(GOOGLE_API):]
            return super().send(request, **kwargs)

    return _RebaseAdapter


def RebaseAdapter(base: str):  # noqa: N802  (a class made lazily: requests is imported only when used)
    """A requests adapter sending https://sheets.googleapis.com/... to ``base`` instead."""
    return _rebase_adapter_class()(base)
