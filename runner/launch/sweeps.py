"""Sweeps: a row whose cells hold ``{a | b | c}`` or ``{<start end step is_log>}`` stands for
the cartesian product of those values, as stnd's ``--expand`` has it.

- ``{0.1 | 0.01 | 0.001}``: these values (split at `` | ``, each kept as typed);
- ``{<1 5 1 False>}``: 1, 2, 3, 4 (start up to, not including, end; ``is_log`` true
  multiplies by ``step`` instead of adding it: ``{<0.001 1 10 True>}`` is 0.001,
  0.01, 0.1).

``expand`` replaces each selected sweep row by its expansion, in place, in one
transaction: the new rows go right below it, one per combination (the other
cells copied, the runner's cells empty, a ``name`` made ``name/k``), and the
original stays as a record of the sweep, with ``whether_to_run`` 0 and its ``sweep`` cell naming the rows
it made. Repeating a row over seeds is then ``{0 | 1 | 2}`` in its seed column.
"""
from __future__ import annotations

import itertools
import secrets

from runner.core import columns as C
from runner.core.cells import CellError, parse_whether_to_run, sweep_values
from runner.core.errors import RowError
from runner.core.rowrefs import RowFilter
from runner.sheet import Sheet, Table

SWEEP = C.SWEEP                 # the column that ties a sweep's rows together


def combinations(cells: dict[str, str]) -> list[dict[str, str]]:
    """The rows a sweep row stands for: ``{column: value}`` for each combination ([] if none)."""
    swept = {}
    for column, text in cells.items():
        if column in C.OWNED or column == SWEEP:
            continue
        try:
            values = sweep_values(text)
        except CellError as exc:
            raise CellError(f"{column}: {exc}") from None
        if values is not None:
            swept[column] = values
    if not swept:
        return []
    columns = list(swept)
    return [dict(zip(columns, combo)) for combo in itertools.product(*(swept[c] for c in columns))]


def _selected(row) -> bool:
    try:
        return parse_whether_to_run(row.get(C.WHETHER_TO_RUN))
    except CellError:
        return False


def plan_expansion(table: Table, rows: RowFilter | None = None) -> list[tuple[int, list[dict]]]:
    """(row number, its combinations) for each selected sweep row; RowError for a bad one."""
    if rows is not None:
        rows.check(table)
    out = []
    for row in table.rows:
        if (rows is not None and row not in rows) or row.ragged or not _selected(row):
            continue
        try:
            combos = combinations(row.as_dict())
        except CellError as exc:
            raise RowError(f"row {row.number}: {exc}") from None
        if combos:
            out.append((row.number, combos))
    return out


def expand(sheet: Sheet, rows: RowFilter | None = None) -> list[tuple[int, int, int, int]]:
    """Expand the selected sweep rows in place, in one transaction.

    Returns, for each, its row number before, then ``(original row, first new row,
    last new row)`` numbers as they are after it.
    """
    def change(table: Table) -> list[tuple[int, int, int]]:
        sweeps = plan_expansion(table, rows)
        done = []
        added = 0
        for number, combos in sweeps:
            original = table.find_row(number + added)
            tag = f"s{secrets.token_hex(3)}"
            first = original.number + 1
            for k, combo in enumerate(combos, 1):
                values = {c: v for c, v in original.as_dict().items() if c not in C.OWNED}
                if values.get(C.NAME, "").strip() and C.NAME not in combo:
                    values[C.NAME] = f"{values[C.NAME].strip()}/{k}"      # names stay unique
                values.update(combo)
                values[SWEEP] = f"{tag} {k}/{len(combos)}"
                table.insert_row(original.number - 1 + k, values)      # right below, in order
            original = table.find_row(number + added)
            original.set(C.WHETHER_TO_RUN, "0")
            original.set(SWEEP, f"{tag}: expanded into rows {first}-{first + len(combos) - 1}")
            done.append((number, original.number, first, first + len(combos) - 1))
            added += len(combos)
        return done

    return sheet.transact(change)


def after_expansion(rows: RowFilter | None, done) -> RowFilter | None:
    """``--rows`` renumbered for the sheet after ``expand``: the rows it named, where they
    moved to, and every row their sweeps made."""
    if rows is None:
        return None
    numbers = set()
    for n in rows.numbers:
        numbers.add(n + sum(last - first + 1 for old, _, first, last in done if old < n))
    for _, _, first, last in done:
        numbers.update(range(first, last + 1))
    return RowFilter(numbers=numbers, ids=set(rows.ids), spec=rows.spec, exact=rows.exact)


def swept_labels(table: Table) -> dict[int, str]:
    """``{row number: "lr=0.01, seed=2"}`` for the rows a sweep made: the input cells in which the
    rows of one sweep differ, named without their ``delta:`` prefix (what plots and tables show)."""
    groups: dict[str, list] = {}
    for row in table.rows:
        tag, _, part = row.get(SWEEP).strip().partition(" ")
        if tag and "/" in part and not tag.endswith(":"):
            groups.setdefault(tag, []).append(row)
    inputs = [c for c in table.columns if C.is_input_column(c) and c not in (C.NAME, SWEEP, C.WHETHER_TO_RUN)]
    labels = {}
    for rows in groups.values():
        varied = [c for c in inputs if len({r.get(c) for r in rows}) > 1]
        for row in rows:
            labels[row.number] = ", ".join(f"{C.short_name(c)}={row.get(c)}" for c in varied)
    return labels

