"""A local HTTP server speaking the Google Sheets API v4 endpoints gspread uses.

Enough of the real API for sheetrun's Google Sheets backend to run against it
unchanged (``SHEETRUN_SHEETS_API_URL=http://127.0.0.1:PORT``):

- ``GET  /v4/spreadsheets/{id}``                       metadata (sheets, grid sizes)
- ``GET  /v4/spreadsheets/{id}/values/{range}``        values (UNFORMATTED_VALUE: numbers as JSON numbers)
- ``PUT  /v4/spreadsheets/{id}/values/{range}``        update (RAW or USER_ENTERED)
- ``POST /v4/spreadsheets/{id}/values:batchUpdate``    several ranges at once
- ``POST /v4/spreadsheets/{id}/values/{range}:append`` rows after the table
- ``POST /v4/spreadsheets/{id}/values/{range}:clear``  empty the range (a whole worksheet here)
- ``POST /v4/spreadsheets/{id}:batchUpdate``           addSheet, appendDimension, insertDimension

Cells are stored as the API would store them: RAW strings stay strings,
USER_ENTERED text that looks like a number becomes a number and text starting
with ``=`` becomes a formula (evaluated to the text ``#FORMULA``), so a test
can tell the two apart. Writes outside the grid fail as in the real API.
``fail_next(status, n)`` makes the next n requests answer ``status``;
``down = True`` drops every connection unanswered (the server is unreachable);
``hang = True`` holds every request unanswered until it is set back (a server that never
answers); ``quota_per_minute = N`` answers 429 to reads (GET) or writes past N of that kind in
the last 60 s, as Google's per-user quota does, counting them in ``throttled``; a grid wider
than ``MAX_COLUMNS`` (Google's 18,278) is refused with a 400, as Google refuses it;
``token`` (when set) must come as ``Authorization: Bearer <token>``;
``requests`` logs (method, path) of every request.
"""
from __future__ import annotations

import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse


def col_index(letters: str) -> int:
    n = 0
    for ch in letters.upper():
        n = n * 26 + ord(ch) - 64
    return n - 1


def col_letters(index: int) -> str:
    out = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(65 + rem) + out
    return out


_CELL = re.compile(r"([A-Za-z]*)(\d*)")
MAX_COLUMNS = 18278            # Google Sheets' widest grid (column ZZZ)


def _title(text: str) -> str:
    return text[1:-1].replace("''", "'") if text.startswith("'") and text.endswith("'") else text


def parse_range(a1: str, titles=()) -> tuple[str | None, int, int, int | None, int | None]:
    """'Sheet 1'!B2:D5 -> (title, row0, col0, row1 or None, col1 or None); 0-based inclusive.

    A range without '!' is a whole sheet when it names one of ``titles`` (or is quoted)."""
    title = None
    if "!" in a1:
        title, a1 = a1.rsplit("!", 1)
        title = _title(title)
    elif a1.startswith("'") or _title(a1) in titles or not a1:
        return (_title(a1) or None), 0, 0, None, None
    start, _, end = a1.partition(":")
    m = _CELL.fullmatch(start)
    c0 = col_index(m.group(1)) if m.group(1) else 0
    r0 = int(m.group(2)) - 1 if m.group(2) else 0
    if not end:
        return title, r0, c0, r0, c0
    m = _CELL.fullmatch(end)
    c1 = col_index(m.group(1)) if m.group(1) else None
    r1 = int(m.group(2)) - 1 if m.group(2) else None
    return title, r0, c0, r1, c1


class Worksheet:
    def __init__(self, sheet_id: int, title: str, rows: int = 1000, cols: int = 26):
        self.sheet_id, self.title, self.rows, self.cols = sheet_id, title, rows, cols
        self.cells: dict[tuple[int, int], object] = {}

    def grid(self) -> list[list]:
        if not self.cells:
            return []
        n_rows = max(r for r, _ in self.cells) + 1
        out = []
        for r in range(n_rows):
            cols = [c for (rr, c) in self.cells if rr == r]
            width = max(cols) + 1 if cols else 0
            out.append([self.cells.get((r, c), "") for c in range(width)])
        while out and not out[-1]:
            out.pop()
        return out


class SheetsState:
    def __init__(self):
        self.spreadsheets: dict[str, list[Worksheet]] = {}
        self.lock = threading.RLock()
        self.token: str | None = None
        self.failures: list[int] = []
        self.down = False          # True: drop every connection unanswered (an unreachable server)
        self.hang = False          # True: hold every request unanswered until set back
        self.failing_until = 0.0   # time.monotonic() until which every request answers failing_status
        self.failing_status = 503
        self.refuse_text: str | None = None   # a write holding this text answers 400 (a value Google refuses)
        self.quota_per_minute: int | None = None
        self.throttled = 0         # requests answered 429 because of the quota
        self._recent: dict[str, list[float]] = {"read": [], "write": []}
        self.requests: list[tuple[str, str]] = []

    def create(self, key: str, title: str = "Sheet1", rows: list[list] | None = None, gid: int = 0,
               n_rows: int = 1000, n_cols: int = 26) -> Worksheet:
        ws = Worksheet(gid, title, n_rows, n_cols)
        for r, row in enumerate(rows or []):
            for c, value in enumerate(row):
                if value != "":
                    ws.cells[(r, c)] = value
        self.spreadsheets.setdefault(key, []).append(ws)
        return ws

    def worksheet(self, key: str, title: str | None) -> Worksheet:
        sheets = self.spreadsheets[key]
        if title is None:
            return sheets[0]
        for ws in sheets:
            if ws.title == title:
                return ws
        raise KeyError(title)

    def over_quota(self, method: str) -> bool:
        """Count a request against the per-minute quota; True when it is past it."""
        if self.quota_per_minute is None:
            return False
        import time

        now = time.monotonic()
        recent = self._recent["read" if method == "GET" else "write"]
        recent[:] = [t for t in recent if now - t < 60.0]
        if len(recent) >= self.quota_per_minute:
            self.throttled += 1
            return True
        recent.append(now)
        return False

    def fail_for(self, seconds: float, status: int = 503) -> None:
        """Answer every request ``status`` for the next ``seconds`` (a Google outage)."""
        import time

        self.failing_status, self.failing_until = status, time.monotonic() + seconds

    def fail_next(self, status: int, n: int = 1) -> None:
        with self.lock:
            self.failures += [status] * n

    def count(self, prefix: str = "") -> int:
        return sum(1 for _, path in self.requests if path.startswith(prefix))


def _store(value, input_option: str):
    if value is None:
        return ""
    if input_option == "USER_ENTERED" and isinstance(value, str):
        if value.startswith("="):
            return "#FORMULA"
        try:
            number = float(value)
            return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
        except ValueError:
            return value
    return value


def make_handler(state: SheetsState):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            self._send(status, {"error": {"code": status, "message": message, "status": "ERROR"}})

        def _body(self) -> dict:
            n = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(n) or b"{}")

        def _handle(self, method: str) -> None:
            url = urlparse(self.path)
            path, query = unquote(url.path), parse_qs(url.query)
            if state.down:
                self.close_connection = True
                return
            while state.hang and not state.down:
                import time

                time.sleep(0.01)
            with state.lock:
                state.requests.append((method, path))
                if state.failures:
                    status = state.failures.pop(0)
                    return self._error(status, "injected failure")
                import time

                if time.monotonic() < state.failing_until:
                    return self._error(state.failing_status, "injected outage")
                if state.over_quota(method):
                    return self._error(429, "Quota exceeded for quota metric 'Read requests' and limit "
                                            "'Read requests per minute per user'")
            if state.token and self.headers.get("Authorization") != f"Bearer {state.token}":
                return self._error(401, "Request had invalid authentication credentials.")
            m = re.fullmatch(r"/v4/spreadsheets/([^/:]+)(.*)", path)
            if not m or m.group(1) not in state.spreadsheets:
                return self._error(404, "Requested entity was not found.")
            key, rest = m.group(1), m.group(2)
            body = self._body() if method in ("POST", "PUT") else {}
            with state.lock:
                try:
                    return self._route(method, key, rest, query, body)
                except KeyError as exc:
                    return self._error(400, f"Unable to parse range: {exc}")
                except ValueError as exc:
                    return self._error(400, str(exc))

        def _route(self, method, key, rest, query, body):
            option = (query.get("valueInputOption") or [body.get("valueInputOption", "RAW")])[0]
            if method == "GET" and rest == "":
                return self._send(200, {"spreadsheetId": key, "properties": {"title": key}, "sheets": [
                    {"properties": {"sheetId": ws.sheet_id, "title": ws.title, "index": i, "sheetType": "GRID",
                                    "gridProperties": {"rowCount": ws.rows, "columnCount": ws.cols}}}
                    for i, ws in enumerate(state.spreadsheets[key])]})
            if method == "GET" and rest.startswith("/values/"):
                return self._send(200, self._get(key, rest[len("/values/"):]))
            if method == "PUT" and rest.startswith("/values/"):
                return self._send(200, self._write(key, rest[len("/values/"):], body["values"], option))
            if method == "POST" and rest == "/values:batchUpdate":      # all or nothing, as Google's
                for d in body.get("data", []):
                    self._refused(d["values"])
                results = [self._write(key, d["range"], d["values"], option) for d in body.get("data", [])]
                return self._send(200, {"spreadsheetId": key, "responses": results,
                                        "totalUpdatedCells": sum(r["updatedCells"] for r in results)})
            if method == "POST" and rest.startswith("/values/") and rest.endswith(":clear"):
                title = parse_range(rest[len("/values/"):-len(":clear")], self._titles(key))[0]
                state.worksheet(key, title).cells.clear()
                return self._send(200, {"spreadsheetId": key, "clearedRange": rest[len("/values/"):-len(":clear")]})
            if method == "POST" and rest.startswith("/values/") and rest.endswith(":append"):
                title = parse_range(rest[len("/values/"):-len(":append")], self._titles(key))[0]
                ws = state.worksheet(key, title)
                start = len(ws.grid())
                return self._send(200, {"updates": self._write(
                    key, f"'{ws.title}'!A{start + 1}", body["values"], option)})
            if method == "POST" and rest == ":batchUpdate":
                replies = [self._structural(key, request) for request in body.get("requests", [])]
                return self._send(200, {"spreadsheetId": key, "replies": replies})
            return self._error(404, f"no such endpoint: {method} {rest}")

        def _titles(self, key):
            return {ws.title for ws in state.spreadsheets[key]}

        def _get(self, key, a1):
            title, r0, c0, r1, c1 = parse_range(a1, self._titles(key))
            ws = state.worksheet(key, title)
            grid = ws.grid()
            r1 = len(grid) - 1 if r1 is None else r1
            rows = []
            for r in range(r0, min(r1, len(grid) - 1) + 1):
                row = grid[r]
                end = len(row) - 1 if c1 is None else min(c1, len(row) - 1)
                rows.append(row[c0:end + 1])
            while rows and not rows[-1]:
                rows.pop()
            return {"range": a1, "majorDimension": "ROWS", "values": rows}

        def _refused(self, values) -> None:
            if state.refuse_text and any(state.refuse_text in str(v) for row in values for v in row):
                raise ValueError("Invalid values[0][0]: a value this server refuses")

        def _write(self, key, a1, values, option):
            title, r0, c0, _, _ = parse_range(a1, self._titles(key))
            ws = state.worksheet(key, title)
            self._refused(values)
            cells = 0
            for i, row in enumerate(values):
                for j, value in enumerate(row):
                    r, c = r0 + i, c0 + j
                    if r >= ws.rows or c >= ws.cols:
                        raise ValueError(f"Range ({ws.title}!{col_letters(c)}{r + 1}) exceeds grid limits. "
                                         f"Max rows: {ws.rows}, max columns: {ws.cols}")
                    stored = _store(value, option)
                    if stored == "":
                        ws.cells.pop((r, c), None)
                    else:
                        ws.cells[(r, c)] = stored
                    cells += 1
            return {"spreadsheetId": key, "updatedRange": a1, "updatedCells": cells}

        def _structural(self, key, request):
            if "addSheet" in request:
                props = request["addSheet"].get("properties", {})
                sheets = state.spreadsheets[key]
                gp = props.get("gridProperties", {})
                ws = state.create(key, props.get("title", f"Sheet{len(sheets) + 1}"),
                                  gid=props.get("sheetId", max(s.sheet_id for s in sheets) + 1),
                                  n_rows=gp.get("rowCount", 1000), n_cols=gp.get("columnCount", 26))
                return {"addSheet": {"properties": {"sheetId": ws.sheet_id, "title": ws.title}}}
            if "appendDimension" in request:
                spec = request["appendDimension"]
                ws = next(s for s in state.spreadsheets[key] if s.sheet_id == spec["sheetId"])
                if spec["dimension"] == "COLUMNS":
                    if ws.cols + spec["length"] > MAX_COLUMNS:
                        raise ValueError(f"This action would increase the number of columns in the sheet above the "
                                         f"limit of {MAX_COLUMNS}.")
                    ws.cols += spec["length"]
                else:
                    ws.rows += spec["length"]
                return {}
            if "insertDimension" in request:
                spec = request["insertDimension"]["range"]
                ws = next(s for s in state.spreadsheets[key] if s.sheet_id == spec["sheetId"])
                n = spec["endIndex"] - spec["startIndex"]
                if spec["dimension"] == "ROWS":
                    ws.cells = {((r + n if r >= spec["startIndex"] else r), c): v for (r, c), v in ws.cells.items()}
                    ws.rows += n
                else:
                    ws.cells = {(r, (c + n if c >= spec["startIndex"] else c)): v for (r, c), v in ws.cells.items()}
                    ws.cols += n
                return {}
            raise ValueError(f"unsupported request {sorted(request)}")

        def do_GET(self):
            self._handle("GET")

        def do_PUT(self):
            self._handle("PUT")

        def do_POST(self):
            self._handle("POST")

    return Handler


class _HTTPServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A client that gave up (its request timed out, or it was killed) closes the connection before
        the answer: expected in these tests, and no traceback. Anything else is the server's bug, said."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class SheetsServer:
    """``with SheetsServer() as server:`` -> ``server.url``, ``server.state``."""

    def __init__(self):
        self.state = SheetsState()
        self.httpd = _HTTPServer(("127.0.0.1", 0), make_handler(self.state))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "SheetsServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
