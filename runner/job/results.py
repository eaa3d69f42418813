"""What a finished job puts in its row: its metrics (runner.report's log and results.json) and
the cells of its exit record."""
from __future__ import annotations

from runner.core import columns as C
from runner.core.columns import Status
from runner.core.errors import describe
from runner.core.records import ExitRecord
from runner.core.rundir import RunDir, format_walltime, read_json
from runner.report import clean_metrics, read_metrics_log

ERROR_MAX_CHARS = C.ERROR_MAX_CHARS


def one_line(text: str) -> str:
    return C.cap(" ".join(text.split()), ERROR_MAX_CHARS)


def load_results(rd: RunDir) -> tuple[dict, str]:
    """Metrics from runner.report plus a script's own results.json (flat object).

    A name or value that cannot go into a cell is left out, and said in the
    returned problem text; the others are kept.
    """
    metrics, _ = read_metrics_log(rd.metrics_log)
    problems = []
    try:
        results = read_json(rd.results, None)
    except ValueError as exc:
        results = None
        problems.append(f"results.json is not valid JSON: {exc}")
    except OSError as exc:
        results = None
        problems.append(f"results.json cannot be read: {describe(exc)}")
    if results is not None:
        if isinstance(results, dict):
            metrics.update(results)
        else:
            problems.append("results.json must be a flat JSON object of name: value")
    metrics, refused = clean_metrics(metrics)
    problems += [f"{p}; left out" for p in refused]
    return metrics, "; ".join(problems)


def final_row_values(record: ExitRecord, metrics: dict) -> dict:
    """The cells a finished job writes: status, exit code, walltime, error, metrics."""
    values = {C.STATUS: record.status, C.EXIT_CODE: record.exit_code,
              C.WALLTIME: format_walltime(record.walltime_s or 0), C.ERROR: record.error, **metrics}
    if record.status == Status.COMPLETED:
        values[C.WHETHER_TO_RUN] = "0"
    return values
