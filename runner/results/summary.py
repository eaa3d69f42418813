"""Results across rows: a sheet's completed rows grouped, each metric as mean ± std (n).

``summarize(table, root, by=None)`` groups the rows that completed by the
values of their input columns — by default every input column (``delta:``,
``env:``, the script, the config, ...) except those named like a seed, so the
same row run over seeds or a sweep over seeds becomes one group; ``by`` names
the columns instead (``sweep`` groups a sweep's rows). Each group's metrics —
what its runs reported (``metrics.json`` in their run folders; the row's cell
for rows without one) — are summarised as

    mean = (1/n) sum_i x_i,   std = sqrt( sum_i (x_i - mean)^2 / (n - 1) )

(the sample standard deviation; none for n = 1). Rows that did not complete
(Failed, Cancelled, Running, ...) and stale rows — completed, but set to run
again (``whether_to_run`` 1), so their numbers belong to the config before
the change — are left out and counted.
"""
from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass, field

from runner.core import columns as C
from runner.core.cells import CellError, parse_whether_to_run
from runner.core.columns import Status
from runner.core.errors import UsageError
from runner.core.rowrefs import ranges
from runner.core.rundir import RunDir, read_json_quietly
from runner.sheet import Table

SEED = re.compile(r"seed", re.IGNORECASE)
NOT_GROUPED = (C.NAME, C.WHETHER_TO_RUN, C.DEPENDS_ON, C.SWEEP, C.TIME_LIMIT)


@dataclass
class Stat:
    n: int
    mean: float
    std: float | None        # None for a single value

    def text(self, digits: int = 4) -> str:
        spread = "" if self.std is None else f" ± {self.std:.{digits}g}"
        return f"{self.mean:.{digits}g}{spread} ({self.n})"


@dataclass
class Group:
    key: dict[str, str]                       # the grouping columns' values
    rows: list[int] = field(default_factory=list)
    stats: dict[str, Stat] = field(default_factory=dict)
    label: str = ""


@dataclass
class Summary:
    by: list[str]
    groups: list[Group]
    metrics: list[str]
    left_out: list[tuple[int, str]]           # (row, why)


def mean_std(values: list[float]) -> Stat:
    """Mean and sample standard deviation (n - 1 in the denominator; None for one value)."""
    if not values:
        raise ValueError("no values")
    n = len(values)
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return Stat(n, mean, std)


def input_columns(table: Table) -> list[str]:
    return [c for c in table.columns if C.is_input_column(c) and c not in NOT_GROUPED]


def seed_like(column: str) -> bool:
    return bool(SEED.search(column.split(":", 1)[-1]))


def resolve_columns(table: Table, names: list[str]) -> list[str]:
    """``--by`` names as columns: as written, or without their ``delta:`` prefix."""
    out, problems = [], []
    for name in names:
        found = next((c for c in (name, C.DELTA_PREFIX + name, C.DELTA_NEW_PREFIX + name)
                      if c in table.index), None)
        if found:
            out.append(found)
        else:
            close = difflib.get_close_matches(name, table.columns, n=3, cutoff=0.5)
            problems.append(repr(name) + (f" (did you mean {', '.join(map(repr, close))}?)" if close else ""))
    if problems:
        raise UsageError("the sheet has no column " + ", ".join(problems), option="--by")
    return out


def _why_left_out(row) -> str | None:
    status = Status.meaning(row.get(C.STATUS))
    if status != Status.COMPLETED:
        return status or "never run"
    try:
        again = parse_whether_to_run(row.get(C.WHETHER_TO_RUN))
    except CellError:
        again = False
    if again:
        return "stale (whether_to_run is 1 again: its numbers are from before the change)"
    return None


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def row_metrics(row, root: str) -> dict[str, float]:
    """The numbers a row's run reported: its ``metrics.json``, else its cells of metric columns."""
    folder = row.get(C.RUN_FOLDER)
    reported = read_json_quietly(RunDir(os.path.join(root, folder)).metrics, None) if folder else None
    if not isinstance(reported, dict):       # no run folder (stnd's rows): the cells it left
        reported = {c: row.get(c) for c in row.table.columns
                    if not C.is_input_column(c) and c not in C.OWNED}
    out = {}
    for name, value in reported.items():
        number = _number(value)
        if number is not None:
            out[str(name)] = number
    return out


def summarize(table: Table, root: str, by: list[str] | None = None, show: list[str] | None = None,
              labels: dict[int, str] | None = None) -> Summary:
    """Group the completed rows and summarise their metrics (see the module's docstring)."""
    by = resolve_columns(table, by) if by else [c for c in input_columns(table) if not seed_like(c)]
    groups: dict[tuple, Group] = {}
    values: dict[tuple, dict[str, list[float]]] = {}
    left_out, metrics = [], []
    for row in table.rows:
        why = _why_left_out(row)
        if why:
            if row.get(C.STATUS) or row.get(C.RUN_ID):       # rows never selected are not news
                left_out.append((row.number, why))
            continue
        key = tuple(row.get(c).strip() for c in by)
        group = groups.setdefault(key, Group(dict(zip(by, key))))
        group.rows.append(row.number)
        for name, number in row_metrics(row, root).items():
            values.setdefault(key, {}).setdefault(name, []).append(number)
            if name not in metrics:
                metrics.append(name)
    if show:
        missing = [m for m in show if m not in metrics]
        if missing:
            hints = [repr(m) + (f" (did you mean {', '.join(map(repr, close))}?)"
                                if (close := difflib.get_close_matches(m, metrics, n=3, cutoff=0.5)) else "")
                     for m in missing]
            raise UsageError("no completed row reported " + ", ".join(hints), option="--show")
        metrics = list(show)
    varied = [c for c in by if len({g.key[c] for g in groups.values()}) > 1]
    for key, group in groups.items():
        for name in metrics:
            if values.get(key, {}).get(name):
                group.stats[name] = mean_std(values[key][name])
        group.label = ", ".join(f"{C.short_name(c)}={group.key[c]}" for c in varied) or (
            (labels or {}).get(group.rows[0]) or "all rows")
    return Summary(by, list(groups.values()), metrics, left_out)


def row_ranges(numbers: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``1-3, 7``."""
    return ranges(numbers, ", ")


def as_records(summary: Summary) -> list[dict[str, object]]:
    """One flat record per group: its columns, rows, n, then ``METRIC mean`` / ``METRIC std``."""
    records = []
    for g in summary.groups:
        record: dict[str, object] = {"group": g.label, "rows": row_ranges(g.rows), "n": len(g.rows)}
        for name in summary.metrics:
            stat = g.stats.get(name)
            record[f"{name} mean"] = "" if stat is None else repr(stat.mean)
            record[f"{name} std"] = "" if stat is None or stat.std is None else repr(stat.std)
            record[f"{name} n"] = 0 if stat is None else stat.n
        records.append(record)
    return records


def csv_text(records: list[dict[str, object]]) -> str:
    """:func:`as_records` as CSV text (a header only, ``group``, when there is no group)."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(records[0]) if records else ["group"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buf.getvalue()


def markdown(summary: Summary, digits: int = 4) -> str:
    head = ["group", "rows", *summary.metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in summary.groups:
        cells = [g.label, row_ranges(g.rows)] + [g.stats[m].text(digits) if m in g.stats else ""
                                                 for m in summary.metrics]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
