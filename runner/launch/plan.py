"""Choosing the rows to run: selection, validation and dependencies.

``plan(table, ...)`` is a pure function of the sheet's current contents; the
scheduler calls it inside the sheet transaction that stamps the run ids, so
what is validated is exactly what gets claimed.
"""
from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass, field

from runner.core import columns as C
from runner.core import rowrefs
from runner.core.cells import CellError, parse_whether_to_run
from runner.core.columns import Status
from runner.core.errors import RowError
from runner.core.rowrefs import RowFilter
from runner.rowspec.allow import Allowance
from runner.rowspec.config import load_yaml
from runner.rowspec.rows import RowSpec, build_spec
from runner.sheet import Table

# stnd / stuned sheets may say "Complete" (its older spelling) for a finished row.
COMPLETED_SPELLINGS = frozenset({Status.COMPLETED, "Complete"})


@dataclass
class PlannedRow:
    number: int
    run_id: str
    spec: RowSpec | None = None
    error: str = ""
    deps: list[str] = field(default_factory=list)      # run ids within this launch
    run_folder: str = ""
    run_dir: object = None
    writable: bool = True          # False for a ragged row: its error is shown, never written
    blocked: bool = False          # not run because a dependency cannot complete (status Skipped)

    @property
    def status(self) -> str:
        """What the row says once claimed."""
        return Status.SUBMITTED if self.ok else Status.SKIPPED if self.blocked else Status.FAILED

    def block(self, dependency: "PlannedRow") -> None:
        self.error = f"not run: dependency row {dependency.number} cannot complete ({dependency.status})"
        self.blocked = True

    @property
    def ok(self) -> bool:
        return not self.error


def new_run_id(taken: set[str]) -> str:
    while True:
        rid = "r" + secrets.token_hex(4)
        if rid not in taken:
            taken.add(rid)
            return rid


def plan(table: Table, root: str, rows: RowFilter | None = None,
         held=None, skipped: list | None = None, worksheet: str = "",
         notes: list | None = None, conda_env: str = "", allowance: Allowance | None = None,
         leave_out=None) -> list[PlannedRow]:
    """The rows to run (whether_to_run = 1), each validated, with run ids and dependencies.

    Rows whose whether_to_run is neither 1 nor 0 are returned with an error too,
    so the error lands in their row. A row whose previous run is still going
    (``held(row)`` returns who holds it) is not run twice: it is left out, and
    ``(number, why)`` is added to ``skipped``; so is a row ``leave_out(row)`` gives a reason
    to leave out (a run of it the sheet lost, a shared sheet's command not confirmed). A ragged row (more fields than
    the header) is returned with an error and ``writable=False``: nothing is
    ever written into it. Things to say about the sheet as a whole go to ``notes``.
    ``conda_env``: script rows run inside this conda environment (``run --conda-env``).
    ``allowance``: what the project's rows may run (``runner.rowspec.allow``; read from ``root`` when not given).
    """
    _check_sheet(table, rows, notes)
    taken = {r.get(C.RUN_ID) for r in table.rows}
    allowance = allowance or Allowance.load(root)
    load_config = functools.lru_cache(maxsize=None)(load_yaml)   # rows share configs

    def build(row, run_id: str) -> PlannedRow:
        p = PlannedRow(row.number, run_id)
        try:
            p.spec = build_spec(row.as_dict(), row.number, root, load_config, worksheet,
                                decimal_comma=getattr(table, "delimiter", ",") == ";", conda_env=conda_env,
                                allowance=allowance)
            p.spec.run_id = p.run_id
        except RowError as exc:
            p.error = str(exc)
        return p

    planned: list[PlannedRow] = []
    by_row: dict[int, PlannedRow] = {}
    for row in table.rows:
        if rows is not None and row not in rows:
            continue
        p = _plan_row(row, taken, build, held, leave_out, skipped)
        if p is not None:
            planned.append(p)
            if p.writable:
                by_row[row.number] = p
    _resolve_dependencies(table, planned, by_row)
    return planned


def _check_sheet(table: Table, rows: RowFilter | None, notes: list | None) -> None:
    """RowError for a sheet without the required columns or a ``--rows`` naming what it lacks;
    what to say of the sheet as a whole goes to ``notes``."""
    missing = [c for c in C.REQUIRED if c not in table.index]
    if missing:
        present = ", ".join(repr(c) for c in table.columns) or "none"
        hint = ("; it has a single column: are its fields separated by something other than commas, "
                "semicolons or tabs?" if len(table.columns) == 1 else "")
        raise RowError("the sheet has no column " + ", ".join(repr(c) for c in missing)
                       + f" (its columns: {present}){hint}")
    if rows is not None:
        rows.check(table)
    if notes is None:
        return
    for name, where in getattr(table, "duplicates", {}).items():
        notes.append(f"the column {name!r} appears {len(where)} times in the header; the first is the one "
                     "kept and read, no metric goes to any of them (rename the others to use them)")
    data = [c for c in table.columns if c.startswith(C.DATA_PREFIXES)]
    if data:
        notes.append(f"the columns {', '.join(data)} are kept as data: HTCondor is not a backend of sheetrun")


def _plan_row(row, taken: set, build, held, leave_out, skipped: list | None) -> PlannedRow | None:
    """One row's plan, or None when it is not to run (not selected, held, left out)."""
    try:
        selected = parse_whether_to_run(row.get(C.WHETHER_TO_RUN))
    except CellError as exc:
        return None if row.ragged else PlannedRow(row.number, new_run_id(taken), error=str(exc))
    if not selected:
        return None
    if row.ragged:
        return PlannedRow(row.number, "", error=row.ragged_problem(), writable=False)
    why = None
    if held is not None and row.get(C.STATUS) in Status.ACTIVE and row.get(C.RUN_FOLDER):
        holder = held(row)
        why = f"still held by an earlier run ({holder})" if holder is not None else None
    if why is None and leave_out is not None:
        why = leave_out(row)
    if why:
        if skipped is not None:
            skipped.append((row.number, why))
        return None
    return build(row, new_run_id(taken))


def _resolve_dependencies(table: Table, planned: list[PlannedRow], by_row: dict[int, PlannedRow]) -> None:
    """Turn each ``depends_on`` token (a row number, a run id, or a row's ``name``) into the rows
    it waits for; a row whose dependency cannot complete is blocked (Skipped), not failed."""
    refs = _RowIndex(table)
    for p in planned:
        if p.ok:
            p.spec.depends_on = rowrefs.split(p.spec.depends_text, refs.names)
            for token in p.spec.depends_on:
                p.error = _dependency(p, token, refs, by_row)
                if p.error:
                    break
    _propagate_failures(planned)


class _RowIndex:
    """A sheet's rows by number, run id and name (what ``depends_on`` may name)."""

    def __init__(self, table: Table):
        self.by_old_id = {r.get(C.RUN_ID): r for r in table.rows if r.get(C.RUN_ID)}
        self.by_number = {r.number: r for r in table.rows}
        self.by_name: dict[str, list] = {}
        for r in table.rows:
            if r.get(C.NAME).strip():
                self.by_name.setdefault(rowrefs.normal(r.get(C.NAME)), []).append(r)
        self.names = set(self.by_name) | set(self.by_old_id)


def _dependency(p: PlannedRow, token: str, refs: _RowIndex, by_row: dict[int, PlannedRow]) -> str:
    """Add the run ``token`` names to ``p.deps``; or what is wrong with it."""
    if token.isdigit():
        target = refs.by_number.get(int(token))
    else:
        named = refs.by_name.get(token, [])
        if len(named) > 1:
            return (f"depends_on {token!r} names {len(named)} rows "
                    f"({', '.join(str(r.number) for r in named)}); names must be unique")
        target = refs.by_old_id.get(token) or (named[0] if named else None)
    if target is None:
        return f"depends_on names no row number, run id or name {token!r}"
    if target.number == p.number:
        return "a row cannot depend on itself"
    if target.number in by_row:
        p.deps.append(by_row[target.number].run_id)
    elif target.get(C.STATUS) not in COMPLETED_SPELLINGS:
        status = target.get(C.STATUS) or "never run"
        return f"dependency {token} is not Completed ({status}) and is not selected to run"
    return ""


def _propagate_failures(planned: list[PlannedRow]) -> None:
    """Failed validation and cycles propagate to dependents."""
    by_id = {p.run_id: p for p in planned}
    state: dict[str, int] = {}          # 1 = visiting, 2 = done

    def visit(p: PlannedRow, path: list[PlannedRow]) -> None:
        if state.get(p.run_id) == 2:
            return
        if state.get(p.run_id) == 1:
            cycle = path[path.index(p):] + [p]
            text = " -> ".join(str(c.number) for c in cycle)
            for c in cycle[:-1]:
                if c.ok:
                    c.error = f"dependency cycle: rows {text}"
            return
        state[p.run_id] = 1
        for dep in p.deps:
            visit(by_id[dep], path + [p])
        state[p.run_id] = 2
        if p.ok:
            for dep in p.deps:
                if not by_id[dep].ok:
                    p.block(by_id[dep])
                    break

    for p in planned:
        visit(p, [])
