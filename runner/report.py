"""``report()``: send metrics from inside a running script into its sheet row.

    from runner import report
    report(val_acc=0.91, epoch=3)
    report({"val acc": 0.91})

Each call appends one JSON line to ``$SHEETRUN_RUN_DIR/metrics.jsonl`` (a
single ``O_APPEND`` write, safe from several threads or processes). The job
wrapper watching that file forwards new values to the row within about half a
second, batched into one sheet write, so a person sees them while the job
runs. New metric names become new columns; a later value of a name replaces
the earlier one. Outside sheetrun (no ``SHEETRUN_RUN_DIR``) the call does
nothing, so scripts also run on their own. This module imports only the
standard library.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any, Mapping

from runner.columns import is_reserved

METRICS_LOG = "metrics.jsonl"
_warned = False


def _plain(name: str, value: Any):
    """Turn numpy / torch scalars into Python numbers; reject containers."""
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"metric {name!r}: only single values can be reported") from None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    raise TypeError(f"metric {name!r}: cannot report a {type(value).__name__}; "
                    "report numbers or strings")


def report(metrics: Mapping[str, Any] | None = None, /, **values: Any) -> dict:
    """Record metrics for the current run; they reach its sheet row while it runs.

    Returns the values as recorded. Raises TypeError/ValueError for a bad name or
    value; never fails because of the sheet.
    """
    merged = {**(dict(metrics) if metrics else {}), **values}
    clean = {}
    for name, value in merged.items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"metric names must be non-empty strings, got {name!r}")
        if is_reserved(name):
            raise ValueError(f"{name!r} is a sheetrun column and cannot be a metric name")
        clean[name] = _plain(name, value)
    run_dir = os.environ.get("SHEETRUN_RUN_DIR")
    if not run_dir:
        global _warned
        if not _warned:
            print("runner.report: not running under sheetrun; metrics are not recorded",
                  file=sys.stderr)
            _warned = True
        return clean
    if clean:
        line = (json.dumps({"t": time.time(), "values": clean}, ensure_ascii=False) + "\n").encode()
        fd = os.open(os.path.join(run_dir, METRICS_LOG), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    return clean


def read_metrics_log(path: str, offset: int = 0) -> tuple[dict, int]:
    """Merge the complete lines of a metrics log from ``offset``; returns (values, new offset)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return {}, offset
    end = data.rfind(b"\n") + 1          # a line still being written waits for the next read
    merged: dict = {}
    for line in data[:end].splitlines():
        try:
            merged.update(json.loads(line)["values"])
        except (ValueError, KeyError, TypeError):
            continue
    return merged, offset + end
