"""Every run a sheet's rows were claimed for: what puts a row right after an older copy was saved over it.

An editor that opened the sheet before a launch and saves it after the launch
ended gives every row of the launch back its old cells: no run id, no status,
no metrics, ``whether_to_run`` 1 again. Nothing in the sheet then says the
rows ran. The run folders do: each claim adds a line to
``<runs>/<sheet>/.launches/runs.jsonl`` (run id, run folder, the row's number
and a digest of its input cells), and :func:`unshown_runs` finds, for each row,
a run of that row newer than the one the row shows — matched by the inputs,
and by the row number where several rows have the same inputs. ``sheetrun
sync`` puts such a run back into its row; ``sheetrun run`` does not run the
row again behind its back; ``sheetrun reset`` marks it void (``reset.json`` in
its run folder), so that neither brings it back.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass

from runner.core import columns as C
from runner.core.records import ExitRecord
from runner.core.rundir import RunDir, write_json

INDEX_FILE = "runs.jsonl"
RESET_FILE = "reset.json"


@dataclass(frozen=True)
class IndexedRun:
    run_id: str
    folder: str           # absolute
    row: int              # the row's number when it was claimed
    inputs: str           # :func:`row_key` of the row when it was claimed
    created: float        # when it was claimed
    sheet: str            # the sheet's location

    @property
    def run_dir(self) -> RunDir:
        return RunDir(self.folder)

    @property
    def was_reset(self) -> bool:
        return os.path.exists(self.run_dir.file(RESET_FILE))


def row_key(row) -> str:
    """A digest of the cells that say what a row runs (its input columns, but ``whether_to_run``;
    empty cells left out, so a new empty column changes nothing)."""
    cells = sorted((c, row.get(c)) for c in row.table.index
                   if C.is_input_column(c) and c != C.WHETHER_TO_RUN and row.get(c).strip())
    return hashlib.sha256(json.dumps(cells).encode()).hexdigest()[:24]


def mark_reset(folder: str) -> None:
    """``sheetrun reset`` voided this run: it is never put back into its row."""
    try:
        write_json(os.path.join(folder, RESET_FILE), {"reset": time.time()})
    except OSError:
        pass


class RunIndex:
    """The claims of one sheet's runs folder (``<runs>/<sheet>``), append-only."""

    def __init__(self, sheet_dir: str):
        self.path = os.path.join(sheet_dir, ".launches", INDEX_FILE)

    def add(self, runs: list[IndexedRun]) -> None:
        """Append claims, in one write (an O_APPEND write lands whole beside other launches' writes)."""
        if not runs:
            return
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        data = "".join(json.dumps(asdict(r)) + "\n" for r in runs).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def runs(self, location: str) -> list[IndexedRun]:
        """The claims made for the sheet at ``location``, oldest first (torn lines skipped)."""
        try:
            with open(self.path, encoding="utf-8") as f:
                lines = f.readlines()
        except OSError:
            return []
        out = []
        for line in lines:
            try:
                run = IndexedRun(**json.loads(line))
            except (ValueError, TypeError):
                continue
            if run.sheet == location:
                out.append(run)
        return out


@dataclass(frozen=True)
class Unshown:
    """A run of a row newer than the one the row shows."""
    run: IndexedRun
    record: ExitRecord | None     # its exit record; None while it has not ended

    def reason(self, root: str, number: int) -> str:
        """Why ``sheetrun run`` leaves the row alone, and what to do."""
        folder = os.path.relpath(self.run.folder, root)
        what = ("a newer run not in the sheet, not finished" if self.record is None
                else f"a finished run not in the sheet ({self.record.status})")
        return (f"has {what}: sync first ('sheetrun sync' puts {folder} back), or 'sheetrun reset --rows "
                f"{number}' to run it afresh")


def unshown_runs(table, root: str, index: RunIndex, location: str) -> dict[int, Unshown]:
    """Row number -> the newest run of that row that the row does not show (not voided by reset)."""
    runs = index.runs(location)
    if not runs:
        return {}
    by_id = {r.run_id: r for r in runs}
    by_key: dict[str, list[IndexedRun]] = {}
    for run in runs:
        by_key.setdefault(run.inputs, []).append(run)
    rows_by_key: dict[str, list] = {}
    for row in table.rows:
        if not row.ragged:
            rows_by_key.setdefault(row_key(row), []).append(row)
    out: dict[int, Unshown] = {}
    for key, rows in rows_by_key.items():
        candidates = by_key.get(key)
        if not candidates:
            continue
        for row in rows:
            mine = [r for r in candidates if len(rows) == 1 or r.row == row.number]
            if not mine:
                continue
            newest = max(mine, key=lambda r: r.created)
            if newest.run_id == row.get(C.RUN_ID) or newest.was_reset:
                continue
            if _shown_created(row, root, by_id) >= newest.created:
                continue
            if not os.path.isdir(newest.folder):
                continue
            out[row.number] = Unshown(newest, newest.run_dir.read_exit())
    return out


def _shown_created(row, root: str, by_id: dict) -> float:
    """When the run a row shows was claimed (0 for none); unknown (another machine's) counts as newest."""
    run_id = row.get(C.RUN_ID)
    if not run_id:
        return 0.0
    if run_id in by_id:
        return by_id[run_id].created
    folder = row.get(C.RUN_FOLDER)
    job = RunDir(os.path.join(root, folder)).read_job() if folder else None
    return float(job.created) if job is not None and job.created else float("inf")
