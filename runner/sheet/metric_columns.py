"""Which cells are a run's metrics: no script ever writes into a person's cells, and a
rerun row never shows its previous run's numbers.

A cell holds a run's metric when the row's run folder recorded that name with
that value (``metrics.jsonl`` — every value it ever reported —, ``metrics.json``
and ``results.json``). From that one fact:

- **Where a metric goes.** A metric named ``acc`` goes to the column ``acc``
  when that column is new (it is created for it) or when every filled cell in
  it holds a run's value; a column empty everywhere is free to take (a person
  made room for it). A column stnd's logger made counts as a metric column too (stnd
  fills the other rows' cells of a column it adds with ``?``). Any other column is a person's — ``notes``, ``comment``,
  a hand-typed ``acc`` — and the metric goes to ``acc (metric)`` instead, with
  a note on the console: the person's cells are never touched. The decision is
  made once per column and process.
- **How many.** One launch (or one SLURM job writing its own row) adds at most
  ``metric_columns`` new columns (``sheetrun.yaml``; 1,000 by default), and no
  sheet grows past 16,384 columns (what Excel opens; Google stops at 18,278):
  a row reporting 20,000 names gets the first ones, and its error cell says
  how many were left out — all of them stay in its run folder.
- **What a claim clears.** When a row is claimed for a new run, the cells its
  previous run filled (and that still hold that run's values) are emptied, so
  every number in a row belongs to its ``run_id``; the values stay in the
  previous run folder. A value a person typed over one is kept.
"""
from __future__ import annotations

import json
import os

from runner.core import columns as C
from runner.core import settings
from runner.core.columns import TEXT_MAX_CHARS, cap
from runner.core.errors import UsageError
from runner.core.rundir import RunDir, read_json_quietly
from runner.sheet.base import DEFAULT_NEW_COLUMNS, ColumnPolicy, format_cell
from runner.sheet.table import Row, Table


def cell_text(value) -> str:
    """The text a metric value is written as (what the row shows)."""
    return cap(format_cell(value), TEXT_MAX_CHARS)


def reported_texts(rd: RunDir) -> dict[str, set[str]]:
    """name -> the cell texts of every value a run recorded for it."""
    out: dict[str, set[str]] = {}

    def add(values) -> None:
        if isinstance(values, dict):
            for name, value in values.items():
                if isinstance(name, str) and not isinstance(value, (dict, list)):
                    out.setdefault(name, set()).add(cell_text(value))

    for path in (rd.metrics, rd.results):
        add(read_json_quietly(path))
    try:
        with open(rd.metrics_log, "rb") as f:
            for line in f:
                try:
                    add(json.loads(line).get("values"))
                except (ValueError, AttributeError):
                    continue
    except OSError:
        pass
    return out


def clear_previous_metrics(row: Row, root: str) -> list[str]:
    """Empty the cells of ``row`` that its current run folder's run filled; returns their columns.

    Called when the row is claimed for a new run, before ``run_folder`` changes.
    """
    folder = row.get(C.RUN_FOLDER)
    if not folder:
        return []
    cleared = []
    for name, texts in reported_texts(RunDir(os.path.join(root, folder))).items():
        if C.metric_name_problem(name):
            continue
        for column in (name, name + C.METRIC_SUFFIX):
            if column in row.table.index and row.get(column) != "" and row.get(column) in texts:
                row.set(column, "")
                cleared.append(column)
    return cleared


def unaccounted_cells(row: Row, root: str) -> list[str]:
    """The filled cells of ``row`` nobody can vouch for: its run folder cell names a folder that is
    not here (a sheet copied without its run folders), so which of its other cells are that run's
    numbers and which a person's is unknown. Their columns; [] when the folder is here or none."""
    folder = row.get(C.RUN_FOLDER)
    if not folder or os.path.isdir(os.path.join(root, folder)):
        return []
    return [c for c in row.table.index if row.get(c) not in ("", C.STND_EMPTY)
            and c not in C.OWNED and not C.is_input_column(c)]


def configured_new_columns(root: str) -> int:
    """``metric_columns`` in the project's ``sheetrun.yaml`` (the default where it cannot be read:
    a metric never stops a write)."""
    try:
        return settings.metric_columns(root)
    except UsageError:
        return DEFAULT_NEW_COLUMNS


class MetricColumns(ColumnPolicy):
    def __init__(self, root: str, max_new: int | None = None):
        super().__init__(configured_new_columns(root) if max_new is None else max_new)
        self.root = root
        self._column: dict[str, str] = {}                     # metric name -> its column, decided
        self._folders: dict[str, dict[str, set[str]]] = {}    # run folder cell -> what it reported

    def column_for(self, table: Table, name: str) -> tuple[str | None, str | None]:
        column, note = super().column_for(table, name)
        if column is None:
            return None, note
        known = self._column.get(name)
        if known is not None and known in table.index:
            return known, None
        if name not in table.index or (name not in table.duplicates and self._filled_by_runs(table, name, name)):
            self._column[name] = name
            return name, None
        alternative = name + C.METRIC_SUFFIX
        if alternative not in table.index or self._filled_by_runs(table, alternative, name):
            self._column[name] = alternative
            return alternative, (f"metric {name!r} went to column {alternative!r}: the column {name!r} "
                                 "holds cells no run of their rows reported (a person's, or a run's whose folder is not here)")
        return None, (f"metric {name!r} left out: the columns {name!r} and {alternative!r} both hold "
                      "a person's cells")

    def _filled_by_runs(self, table: Table, column: str, name: str) -> bool:
        """True if every filled cell of ``column`` holds a value its row's run reported as ``name``
        — or if stnd's logger made the column (it fills the other rows' cells with "?")."""
        if any(row.get(column) == C.STND_EMPTY for row in table.rows):
            return True
        for row in table.rows:
            text = row.get(column)
            if text in ("", C.STND_EMPTY):            # stnd fills other rows' cells of a new column with "?"
                continue
            folder = row.get(C.RUN_FOLDER)
            if not folder:
                return False
            if text not in self._folders.get(folder, {}).get(name, ()):     # unknown, or newer: read
                self._folders[folder] = reported_texts(RunDir(os.path.join(self.root, folder)))
                if text not in self._folders[folder].get(name, ()):
                    return False
        return True
