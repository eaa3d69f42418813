"""The project's own settings: ``sheetrun.yaml`` at the project root, written by the machine's owner.

    slurm:               # sbatch options every row gets (runner.launch.submit)
      partition: gpu
    metric_columns: 1000 # new metric columns one launch may add (runner.sheet.metric_columns)
    log_limit: 256M      # stdout.log / stderr.log kept to this size each (head and newest tail)

A setting that is missing takes its default; one of the wrong kind stops the command, naming it.
"""
from __future__ import annotations

import os

import yaml

from runner.core.errors import UsageError
from runner.core.rundir import DEFAULT_LOG_LIMIT, parse_size

PROJECT_CONFIG = "sheetrun.yaml"
KEYS = ("slurm", "metric_columns", "log_limit")
DEFAULT_METRIC_COLUMNS = 1000


def read_settings(root: str) -> dict:
    """The mapping in ``<root>/sheetrun.yaml`` ({} without one); UsageError if it cannot be read."""
    path = os.path.join(root, PROJECT_CONFIG)
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UsageError(f"{path}: cannot read it ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: must be a mapping ({', '.join(KEYS)})")
    return data


def metric_columns(root: str) -> int:
    value = read_settings(root).get("metric_columns", DEFAULT_METRIC_COLUMNS)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise UsageError(f"{os.path.join(root, PROJECT_CONFIG)}: metric_columns must be a whole number, not {value!r}")
    return value


def log_limit(root: str) -> int:
    value = read_settings(root).get("log_limit")
    if value is None:
        return DEFAULT_LOG_LIMIT
    try:
        return parse_size(value)
    except ValueError as exc:
        raise UsageError(f"{os.path.join(root, PROJECT_CONFIG)}: log_limit: {exc}") from None
