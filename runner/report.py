"""``report()``: send metrics from inside a running script into its sheet row.

    from runner import report
    report(val_acc=0.91, epoch=3)
    report({"val acc": 0.91})

Each call appends one JSON line to ``$SHEETRUN_RUN_DIR/metrics.jsonl`` (a
single ``O_APPEND`` write, safe from several threads or processes). sheetrun
forwards new values to the row within about a second, batched into one sheet
write, so a person sees them while the job runs. New metric names become new
columns; a later value of a name replaces the earlier one. Outside sheetrun
(no ``SHEETRUN_RUN_DIR``) the call does nothing, so scripts also run on their
own. Importing it costs next to nothing (``os``, ``sys``, ``time``, all loaded with Python
itself): ``json`` and the column names it checks against are imported at the first call.

``report`` never raises: a name that cannot be a column (empty, a line break,
a sheetrun column such as ``status``) or a value that is not a single number
or text is left out with one warning on stderr, the rest is recorded; a run
folder that cannot be written (disk full) is warned about once. A metric is
never worth killing the experiment for.
"""
from __future__ import annotations

import os
import sys
import time

METRICS_LOG = "metrics.jsonl"
_warned: set = set()


def _warn(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        try:
            print(f"runner.report: {message}", file=sys.stderr, flush=True)
        except OSError:            # stderr on a full disk: the run goes on regardless
            pass


def _plain(name: str, value):
    """Python number / text / bool / None for a value, or raise TypeError."""
    if hasattr(value, "item") and callable(value.item):           # numpy / torch scalars
        try:
            value = value.item()
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"metric {name!r}: only single values can be reported, not an array") from None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value - value == 0.0 else str(value)          # inf and nan: as text
    raise TypeError(f"metric {name!r}: cannot report a {type(value).__name__}; report numbers or text")


def clean_metrics(metrics: dict) -> tuple[dict, list[str]]:
    """The valid ``name: value`` pairs of ``metrics`` and why each other pair was left out."""
    from runner.core.columns import metric_name_problem

    clean, problems = {}, []
    for name, value in metrics.items():
        problem = metric_name_problem(name)
        if problem:
            problems.append(problem)
            continue
        try:
            clean[name] = _plain(name, value)
        except TypeError as exc:
            problems.append(str(exc))
    return clean, problems


def report(metrics=None, /, **values) -> dict:
    """Record metrics for the current run; they reach its sheet row while it runs.

    Returns the values as recorded (bad ones left out, with a warning). Never raises.
    """
    try:
        merged = {**(dict(metrics) if metrics else {}), **values}
    except (TypeError, ValueError):
        _warn("not-a-mapping", f"report() takes a mapping or keyword arguments, not {type(metrics).__name__}")
        return {}
    clean, problems = clean_metrics(merged)
    for problem in problems:
        _warn(problem, f"{problem}; not recorded")
    run_dir = os.environ.get("SHEETRUN_RUN_DIR")
    if not run_dir:
        _warn("outside", "not running under sheetrun; metrics are not recorded")
        return clean
    if clean:
        import json

        line = (json.dumps({"t": time.time(), "values": clean}, ensure_ascii=False) + "\n").encode()
        try:
            fd = os.open(os.path.join(run_dir, METRICS_LOG), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:
            _warn("write", f"cannot record metrics in {run_dir} ({exc}); the run goes on")
    return clean


def read_metrics_log(path: str, offset: int = 0) -> tuple[dict, int]:
    """Merge the complete lines of a metrics log from ``offset``; returns (values, new offset)."""
    import json

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
            values = json.loads(line)["values"]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(values, dict):
            merged.update(values)
    return merged, offset + end
