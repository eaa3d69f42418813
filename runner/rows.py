"""Turning one sheet row into a runnable job spec, or a clear error for that row."""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from runner import cells, columns as C, config as cfg
from runner.slurm import options as slurm_options
from runner.cells import CellError

RUNNER_MARKER = "__RUNNER__"
_DEP_SPLIT = re.compile(r"[\s,;]+")


class RowError(ValueError):
    """Why a row cannot run; written into the row's ``error`` cell."""


@dataclass
class RowSpec:
    number: int                      # 1-based data-row number when the run was claimed
    script: str | None               # the script for wrapped rows; None for __RUNNER__ rows
    default_config_path: str
    default_config: dict
    config: dict                     # resolved: default + deltas
    env: dict[str, str] = field(default_factory=dict)
    slurm: dict[str, str] = field(default_factory=dict)
    depends_on: list[str] = field(default_factory=list)
    run_id: str = ""
    time_limit: str = ""             # the row's time_limit cell, as typed ("" for none)
    time_limit_s: float | None = None

    def argv(self, config_file: str, python: str = sys.executable) -> list[str]:
        """The exact command, as an argv list (never a shell string)."""
        if self.script is not None:
            return [python, self.script, "--config", config_file]
        return runner_argv(self.config, python)


def project_root_for(sheet_path: str) -> str:
    """The directory holding ``result_sheets/`` above the sheet, else the sheet's directory."""
    directory = os.path.dirname(os.path.abspath(sheet_path))
    probe = directory
    while True:
        if os.path.basename(probe) == "result_sheets":
            return os.path.dirname(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            return directory
        probe = parent


def resolve_path(path: str, root: str) -> str:
    return os.path.normpath(os.path.join(root, os.path.expanduser(path)))


def build_spec(row: dict[str, str], number: int, root: str, load_config=cfg.load_yaml) -> RowSpec:
    """Validate a row and resolve its config. Raises RowError naming every problem found.

    ``load_config`` reads a default config; the planner passes a cached one so a
    thousand rows sharing a config read it once (the result is never mutated).
    """
    problems: list[str] = []

    def cell(column: str) -> str:
        return cells.fill_placeholders(row.get(column, ""), number, row)

    try:
        main = cell(C.PATH_TO_MAIN).strip()
        config_path = cell(C.PATH_TO_DEFAULT_CONFIG).strip()
    except CellError as exc:
        raise RowError(str(exc)) from None
    if not main:
        raise RowError("path_to_main is empty")
    if not config_path:
        raise RowError("path_to_default_config is empty")
    script: str | None = None
    if main != RUNNER_MARKER:
        script = resolve_path(main, root)
        if not os.path.isfile(script):
            problems.append(_not_found("script", main, script, root))
    config_file = resolve_path(config_path, root)
    try:
        default = load_config(config_file)
    except cfg.ConfigError as exc:
        problem = _not_found("config", config_path, config_file, root) if not os.path.exists(config_file) \
            else str(exc)
        raise RowError(_with_root_hint(problems + [problem], root)) from None

    deltas: list[tuple[str, Any, bool]] = []
    env: dict[str, str] = {}
    slurm: dict[str, str] = {}
    for column in row:
        try:
            if column.startswith((C.DELTA_PREFIX, C.DELTA_NEW_PREFIX)):
                create = column.startswith(C.DELTA_NEW_PREFIX)
                key = column.split(":", 1)[1].strip()
                try:
                    value = cells.decode(cell(column))
                except CellError as exc:
                    raise CellError(f"{column}: {exc}") from None
                deltas.append((key, value, create))
            elif column.startswith(C.ENV_PREFIX):
                name = column[len(C.ENV_PREFIX):].strip()
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                    raise CellError(f"{column}: {name!r} is not a valid environment variable name")
                value = cell(column)
                if value != "":
                    env[name] = value
            elif column.startswith(C.SLURM_PREFIX):
                value = cell(column)
                if value.strip() != "":
                    option = column[len(C.SLURM_PREFIX):]
                    slurm[option.strip()] = slurm_options.validate(option, value)
        except (CellError, slurm_options.SlurmOptionError) as exc:
            problems.append(str(exc))

    config: dict = default
    if not problems:
        try:
            config = cfg.apply_deltas(default, deltas)
        except cfg.ConfigError as exc:
            problems.append(str(exc))
    if not problems:
        unfilled = cfg.unfilled_placeholders(config)
        if unfilled:
            problems.append("config still has placeholder values for " + ", ".join(
                f"{k} ({_leaf(config, k)!s})" for k in unfilled) + "; set them with delta: columns")

    if main == RUNNER_MARKER:
        if not problems:
            try:
                runner_argv(config)
                exec_path = resolve_path(str(config["exec_path"]), root)
                config = dict(config, exec_path=exec_path)
                if not os.path.isfile(exec_path):
                    problems.append(f"exec_path not found: {exec_path}")
            except RowError as exc:
                problems.append(str(exc))

    try:
        depends = [t for t in _DEP_SPLIT.split(cell(C.DEPENDS_ON).strip()) if t]
    except CellError as exc:
        problems.append(str(exc))
        depends = []
    time_limit, time_limit_s = row.get(C.TIME_LIMIT, "").strip(), None
    if time_limit:
        try:
            time_limit_s = slurm_options.parse_time(time_limit)
        except ValueError as exc:
            problems.append(f"time_limit: {exc}")

    if problems:
        raise RowError(_with_root_hint(problems, root))
    return RowSpec(number=number, script=script, default_config_path=config_file,
                   default_config=default, config=config, env=env, slurm=slurm,
                   depends_on=depends, time_limit=time_limit, time_limit_s=time_limit_s)


def _not_found(what: str, typed: str, resolved: str, root: str) -> str:
    if os.path.isabs(os.path.expanduser(typed)):
        return f"{what} not found: {resolved}"
    return f"{what} not found: {typed} under the project root {root}"


def _with_root_hint(problems: list[str], root: str) -> str:
    """The problems, and where relative paths were looked for when that is the likely cause."""
    text = "; ".join(problems)
    if "under the project root" in text:
        text += " (give --root DIR if the project is elsewhere)"
    return text


def _leaf(config: dict, path: str):
    node: Any = config
    for part in path.split(cfg.SEPARATOR):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def runner_argv(config: dict, python: str = sys.executable) -> list[str]:
    """The command of a ``__RUNNER__`` row: ``exec_path`` with ``kwargs`` as ``--key=value``.

    ``is_python`` (default true) runs ``exec_path`` with this Python; a list value
    becomes ``--key v1 v2 ...``; ``None`` values are left out.
    """
    if "exec_path" not in config or not str(config.get("exec_path") or "").strip():
        raise RowError("__RUNNER__ rows need 'exec_path' in their config")
    kwargs = config.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise RowError("'kwargs' in a __RUNNER__ config must be a mapping")
    is_python = config.get("is_python", True)
    if not isinstance(is_python, bool):
        raise RowError(f"'is_python' must be true or false, got {is_python!r}")
    argv = ([python] if is_python else []) + [str(config["exec_path"])]
    for key, value in kwargs.items():
        if value is None:
            continue
        if isinstance(value, list):
            argv += [f"--{key}"] + [_arg(v) for v in value]
        else:
            argv.append(f"--{key}={_arg(value)}")
    return argv


def _arg(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
