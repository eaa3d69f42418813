"""Two rows side by side: the configs their runs read (after the deltas), what differs first, and
their metrics.

A row that has run is shown as it ran: its run folder's ``config.yaml`` and
``metrics.json``. A row that has not is shown as it would run now (its
default config with the row's deltas applied).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from runner.core import columns as C
from runner.core.errors import RowError
from runner.core.rundir import RunDir
from runner.results.summary import row_metrics
from runner.rowspec import config as cfg
from runner.rowspec.rows import build_spec


@dataclass
class Side:
    number: int
    title: str                  # "row 3 plain (r1a2b3c4)"
    config: dict
    metrics: dict
    source: str                 # where the config comes from


def side(row, root: str, worksheet: str = "") -> Side:
    folder = row.get(C.RUN_FOLDER)
    title = " ".join(p for p in (f"row {row.number}", row.get(C.NAME).strip(),
                                 f"({row.get(C.RUN_ID)})" if row.get(C.RUN_ID) else "") if p)
    if folder:
        rd = RunDir(os.path.join(root, folder))
        try:
            return Side(row.number, title, cfg.load_yaml(rd.config), row_metrics(row, root), rd.config)
        except cfg.ConfigError:
            pass                                    # its folder is gone: as it would run now
    try:
        spec = build_spec(row.as_dict(), row.number, root, worksheet=worksheet)
    except RowError as exc:
        raise RowError(f"row {row.number} cannot be compared: {exc}") from None
    return Side(row.number, title + " [not run]", spec.config, {}, "its default config and deltas, as now")


def compare(a: Side, b: Side) -> tuple[list[tuple[str, object, object]], list[tuple[str, object, object]]]:
    """(differing config keys, same config keys), each ``(key path, value a, value b)``, in the
    order of ``a``'s config; a key one side lacks shows None there."""
    left, right = dict(cfg.iter_leaves(a.config)), dict(cfg.iter_leaves(b.config))
    missing = object()
    differ, same = [], []
    for key in list(left) + [k for k in right if k not in left]:
        va, vb = left.get(key, missing), right.get(key, missing)
        entry = (key, None if va is missing else va, None if vb is missing else vb)
        (same if va is not missing and vb is not missing and va == vb and type(va) is type(vb)
         else differ).append(entry)
    return differ, same


def metric_pairs(a: Side, b: Side) -> list[tuple[str, float | None, float | None]]:
    names = list(a.metrics) + [m for m in b.metrics if m not in a.metrics]
    return [(m, a.metrics.get(m), b.metrics.get(m)) for m in names]

