"""A shared sheet's rows whose command changed since this user last launched them.

Anyone the Google Sheet is shared with can edit a row between two of your
launches. ``sheetrun run`` on a Google Sheet therefore compares each selected
row's command-defining cells — ``path_to_main``, ``path_to_default_config``,
``env:``, ``cmd_env_var:`` and ``slurm:`` columns, every ``delta:`` of a row that
runs a program (``__RUNNER__``, ``run_cmd.py``), and the cells those name with
``__COL:name__`` — with the commands this user launched from that sheet before.
Rows with a command not seen before are listed, with what changed, and run
only once confirmed (a prompt, or ``--yes``); the claim checks again, so a cell
changed while you were answering is not run either.

What was launched is kept per user, outside the project and the sheet:
``$XDG_STATE_HOME/sheetrun/approved/`` (by default ``~/.local/state/sheetrun/``),
one file per sheet.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field

from filelock import FileLock

from runner.core import columns as C
from runner.core.cells import DEFAULT_WORDS, CellError, parse_whether_to_run

KEEP_COMMANDS = 5000          # the newest commands remembered per sheet
_COLUMN_REF = re.compile(r"__COL:(.*?)__")
_PROGRAM_HINTS = ("__RUNNER__", "run_cmd")


def state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "sheetrun")


def command_cells(row) -> dict[str, str]:
    """The cells of ``row`` that decide what it runs (column -> text, empty and ``Default`` left out)."""
    columns = row.table.columns
    main = row.get(C.PATH_TO_MAIN).strip()
    program = any(hint in main for hint in _PROGRAM_HINTS) or "__COL:" in main
    chosen = [C.PATH_TO_MAIN, C.PATH_TO_DEFAULT_CONFIG] + [
        c for c in columns if c.startswith((C.ENV_PREFIX, C.CMD_ENV_PREFIX, C.SLURM_PREFIX))
        or (program and c.startswith((C.DELTA_PREFIX, C.DELTA_NEW_PREFIX)))]
    cells: dict[str, str] = {}
    while chosen:
        column = chosen.pop(0)
        text = row.get(column).strip()
        if column in cells or not text or text in DEFAULT_WORDS:
            continue
        cells[column] = text
        chosen += [name for name in _COLUMN_REF.findall(text) if name in columns]     # what it names counts too
    return cells


def fingerprint(cells: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(sorted(cells.items())).encode()).hexdigest()[:32]


@dataclass
class CommandChange:
    """A selected row whose command this user has not launched before."""
    number: int
    cells: dict
    before: dict | None = None           # what its last launch by this user ran, when known

    def describe(self) -> str:
        if self.before is None:
            shown = ", ".join(f"{c}={t!r}" for c, t in self.cells.items())
            return f"row {self.number} (a command you have not run from this sheet): {shown}"
        changed = [f"{c}: {self.before.get(c, '')!r} -> {self.cells.get(c, '')!r}"
                   for c in sorted(set(self.cells) | set(self.before)) if self.cells.get(c) != self.before.get(c)]
        return f"row {self.number} changed since you last ran it: {'; '.join(changed)}"


@dataclass
class Approvals:
    """The commands this user launched from one sheet, and those confirmed for this launch."""
    location: str
    commands: dict = field(default_factory=dict)     # fingerprint -> cells
    runs: dict = field(default_factory=dict)         # "run:ID", "name:NAME", "row:N" -> the fingerprint last run there
    confirmed: set = field(default_factory=set)      # fingerprints confirmed now
    _seen: dict = field(default_factory=dict)        # row number -> cells, as the claim saw them

    @property
    def path(self) -> str:
        digest = hashlib.sha256(self.location.encode()).hexdigest()[:24]
        return os.path.join(state_dir(), "approved", digest + ".json")

    @classmethod
    def of(cls, location: str) -> "Approvals":
        out = cls(location)
        try:
            with open(out.path, encoding="utf-8") as f:
                data = json.load(f)
            out.commands, out.runs = dict(data.get("commands", {})), dict(data.get("runs", {}))
        except (OSError, ValueError, AttributeError):
            pass
        return out

    def changes(self, table, selected=None) -> list[CommandChange]:
        """The rows to run (``whether_to_run`` set, in ``selected``) whose command is not approved."""
        out = []
        for row in table.rows:
            if row.ragged or (selected is not None and row not in selected) or not _runs(row):
                continue
            cells = command_cells(row)
            if fingerprint(cells) in self.commands or fingerprint(cells) in self.confirmed:
                continue
            last = next((self.runs[p] for p in _places(row) if p in self.runs), "")
            out.append(CommandChange(row.number, cells, self.commands.get(last)))
        return out

    def confirm(self, changes: list[CommandChange]) -> None:
        self.confirmed |= {fingerprint(c.cells) for c in changes}

    def check(self, row) -> str | None:
        """At the claim: why ``row`` is left out (its command is not one approved), or None."""
        cells = command_cells(row)
        self._seen[row.number] = (cells, _places(row)[1:])
        key = fingerprint(cells)
        if key in self.commands or key in self.confirmed:
            return None
        return ("its command is not one you confirmed (it changed while you were answering, or was not "
                "confirmed): review it with 'sheetrun run --dry-run', then run again")

    def claimed(self, number: int, run_id: str) -> None:
        if number in self._seen:
            cells, places = self._seen[number]
            key = fingerprint(cells)
            self.commands.pop(key, None)
            self.commands[key] = cells            # newest last
            for place in [f"run:{run_id}"] + places:
                self.runs[place] = key

    def save(self) -> None:
        """Merge with what other launches saved meanwhile and write, atomically, under a lock."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with FileLock(self.path + ".lock", timeout=30):
            saved = Approvals.of(self.location)
            commands = {**saved.commands, **self.commands}
            keep = list(commands)[-KEEP_COMMANDS:]
            runs = {rid: key for rid, key in {**saved.runs, **self.runs}.items() if key in set(keep)}
            data = {"location": self.location, "commands": {k: commands[k] for k in keep}, "runs": runs}
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(self.path), suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f)
            os.replace(tmp, self.path)


def _places(row) -> list[str]:
    """Where a row's earlier launch is found, best first: its run id, its name, its number
    (``sheetrun reset`` empties the run id; sorting moves the number)."""
    places = [f"run:{row.get(C.RUN_ID)}"] if row.get(C.RUN_ID) else [""]
    if row.get(C.NAME).strip():
        places.append(f"name:{row.get(C.NAME).strip()}")
    return places + [f"row:{row.number}"]


def _runs(row) -> bool:
    try:
        return parse_whether_to_run(row.get(C.WHETHER_TO_RUN))
    except CellError:
        return False
