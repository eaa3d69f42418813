"""Turning one sheet row into a runnable job spec, or a clear error for that row."""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from runner.core import cells
from runner.core import columns as C
from runner.core import credentials, rowrefs
from runner.core.cells import NO_NORMALISATION, CellError, resolve_path, sweep_values
from runner.core.errors import RowError
from runner.rowspec import config as cfg
from runner.rowspec import programs, slurm_options, stnd_logging
from runner.rowspec.allow import Allowance

RUNNER_MARKER = programs.MARKER
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_REF = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
DEFAULT_WORDS = cells.DEFAULT_WORDS


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
    depends_text: str = ""          # the depends_on cell: names with spaces are read against the sheet
    name: str = ""                  # the row's name cell
    conda: list[str] = field(default_factory=list)     # script rows: the ``conda run`` prefix, if any
    run_id: str = ""
    time_limit: str = ""             # the row's time_limit cell, as typed ("" for none)
    time_limit_s: float | None = None
    root: str = "."
    take_last: dict = field(default_factory=dict)     # __RUNNER__: {column: regex} on stdout
    warnings: list[str] = field(default_factory=list)  # said before it runs; they do not stop it

    @property
    def stnd_logging(self) -> bool:
        """A script whose config is shaped for stnd's logger: it gets a private ``logging/output_csv``."""
        return self.script is not None and stnd_logging.wants_output_csv(self.config, self.script)

    def argv(self, config_file: str, python: str = sys.executable) -> list[str]:
        """The exact command, as an argv list (never a shell string)."""
        if self.script is not None:
            if self.conda:                       # that environment's python
                return self.conda + ["python", self.script, "--config", config_file]
            return [python, self.script, "--config", config_file]
        return programs.argv(self.config, self.root, python)


def project_root_for(sheet_path: str) -> str:
    """Where a sheet's relative paths resolve: the directory holding ``result_sheets/`` above the
    sheet, else the top of the git repository holding it, else the sheet's directory."""
    directory = os.path.dirname(os.path.abspath(sheet_path))
    probe = directory
    while True:
        if os.path.basename(probe) == "result_sheets":
            return os.path.dirname(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    probe = directory
    while True:
        if os.path.exists(os.path.join(probe, ".git")):
            return probe
        parent = os.path.dirname(probe)
        if parent == probe:
            return directory
        probe = parent


def _number_at(config: dict, key: str) -> bool:
    """Is the config's value at ``a/b/c`` a number (not a boolean)?"""
    try:
        node = _leaf(config, key)
    except (KeyError, IndexError, TypeError, ValueError):
        return False
    return isinstance(node, (int, float)) and not isinstance(node, bool)


def _refuse_sweep(column: str, text: str) -> None:
    """A ``{a | b}`` cell stands for several rows: it runs once expanded, not as it is."""
    try:
        sweep = sweep_values(text) is not None
    except CellError:
        sweep = True
    if sweep:
        raise CellError(f"{column} = {text.strip()!r} is a sweep: expand it into one row per value first "
                        "('sheetrun run SHEET --expand', or 'sheetrun expand SHEET')")


def expand_env(value: str, column: str = "cmd_env_var") -> str:
    """``$VAR`` / ``${VAR}`` from this environment (unset: empty, as a shell has it); nothing else.
    sheetrun's own credentials are never handed out (CredentialError)."""
    def value_of(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        credentials.refuse_credential(name, column)      # a CredentialError: a RowError of the cell
        return os.environ.get(name, "")

    return _ENV_REF.sub(value_of, value)


def _is_runner_program(path: str) -> bool:
    """Is ``path`` sheetrun's own runner program (``run_cmd.py``: what ``__RUNNER__`` names in a cell)?"""
    return os.path.realpath(path) == os.path.realpath(cells.RUNNER_PROGRAM)


def build_spec(row: dict[str, str], number: int, root: str, load_config=cfg.load_yaml,
               worksheet: str = "", decimal_comma: bool = False, conda_env: str = "",
               allowance: Allowance | None = None) -> RowSpec:
    """Validate a row and resolve its config. Raises RowError naming every problem found.

    ``load_config`` reads a default config; the planner passes a cached one so a
    thousand rows sharing a config read it once (the result is never mutated).
    ``worksheet`` is what ``__WORKSHEET__`` becomes; ``decimal_comma``: numbers like ``0,01``
    are read as the comma-decimal locale that saved a semicolon-separated sheet wrote them;
    ``conda_env``: a script row runs inside this conda environment. ``allowance``: what rows of
    this project may run (``runner.rowspec.allow``; read from the project when not given).
    """
    reader = _RowReader(row, number, root, worksheet, allowance or Allowance.load(root))
    main, script, config_path, config_file = reader.paths()
    default = reader.default_config(load_config, config_path, config_file)
    deltas, env, slurm = reader.parameters(default, main, decimal_comma)
    config = reader.config(default, deltas)
    take_last: dict = {}
    if main == RUNNER_MARKER:
        config, take_last = reader.program(config)
    elif script is not None and _is_runner_program(script) and not reader.problems:
        reader.problems += _runner_config_problems(config, root, reader.allowance)   # run_cmd.py runs its config
    depends_text, depends = reader.depends_on()
    time_limit, time_limit_s = reader.time_limit()
    conda = reader.conda(conda_env) if main != RUNNER_MARKER else []
    if reader.problems:
        raise RowError(_with_root_hint(reader.problems, root))
    return RowSpec(number=number, script=script, default_config_path=config_file,
                   default_config=default, config=config, env=env, slurm=slurm,
                   depends_on=depends, depends_text=depends_text, name=row.get(C.NAME, "").strip(), conda=conda,
                   time_limit=time_limit, time_limit_s=time_limit_s,
                   root=root, take_last=take_last, warnings=reader.warnings)


class _RowReader:
    """One row read cell by cell: each step adds what is wrong to ``problems`` (or raises
    RowError where nothing after it can be checked) and what is odd to ``warnings``."""

    def __init__(self, row: dict[str, str], number: int, root: str, worksheet: str, allowance: Allowance):
        self.row, self.number, self.root, self.worksheet = row, number, root, worksheet
        self.allowance = allowance
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def cell(self, column: str) -> str:
        return cells.fill_placeholders(self.row.get(column, ""), self.number, self.row, self.worksheet)

    def paths(self) -> tuple[str, str | None, str, str]:
        """(path_to_main as meant, the script or None for ``__RUNNER__``, the config as typed, resolved)."""
        typed_main = self.row.get(C.PATH_TO_MAIN, "").strip()
        main = RUNNER_MARKER if typed_main == RUNNER_MARKER else self.cell(C.PATH_TO_MAIN).strip()
        config_path = self.cell(C.PATH_TO_DEFAULT_CONFIG).strip()
        if not main:
            raise RowError("path_to_main is empty", column=C.PATH_TO_MAIN)
        if not config_path:
            raise RowError("path_to_default_config is empty", column=C.PATH_TO_DEFAULT_CONFIG)
        script = None if main == RUNNER_MARKER else self._script(main)
        config_file = resolve_path(config_path, self.root)
        refused = self.allowance.path_problem(C.PATH_TO_DEFAULT_CONFIG, config_path, config_file)
        if refused:                         # an outside file is not even read
            raise RowError("; ".join(self.problems + [refused]), column=C.PATH_TO_DEFAULT_CONFIG)
        return main, script, config_path, config_file

    def _script(self, main: str) -> str:
        script = resolve_path(main, self.root)
        refused = None if _is_runner_program(script) else self.allowance.path_problem(C.PATH_TO_MAIN, main, script)
        if refused:
            self.problems.append(refused)
        elif not os.path.isfile(script):
            self.problems.append(_not_found("script", main, script, self.root))
        return script

    def default_config(self, load_config, config_path: str, config_file: str) -> dict:
        try:
            return load_config(config_file)
        except cfg.ConfigError as exc:
            problem = _not_found("config", config_path, config_file, self.root) \
                if not os.path.exists(config_file) else str(exc)
            raise RowError(_with_root_hint(self.problems + [problem], self.root)) from None

    def parameters(self, default: dict, main: str, decimal_comma: bool
                   ) -> tuple[list[cfg.Delta], dict[str, str], dict[str, str]]:
        """The row's ``delta:``, ``env:`` and ``slurm:`` cells, checked."""
        deltas: list[cfg.Delta] = []
        env: dict[str, str] = {}
        slurm: dict[str, str] = {}
        for column in self.row:
            try:
                if column.startswith(C.PARAMETER_PREFIXES):
                    _refuse_sweep(column, self.cell(column))
                if column.startswith((C.DELTA_PREFIX, C.DELTA_NEW_PREFIX)):
                    deltas.append(self._delta(column, default, main, decimal_comma))
                elif column.startswith((C.ENV_PREFIX, C.CMD_ENV_PREFIX)):
                    env.update(self._env(column))
                elif column.startswith(C.SLURM_PREFIX):
                    slurm.update(self._slurm(column))
            except RowError as exc:         # a cell, a credential, an sbatch option
                self.problems.append(str(exc))
        return deltas, env, slurm

    def _delta(self, column: str, default: dict, main: str, decimal_comma: bool) -> cfg.Delta:
        key = column.split(":", 1)[1].strip()
        # a runner's arguments are free-form: its deltas create what they name, as stnd's do
        create = column.startswith(C.DELTA_NEW_PREFIX) or (main == RUNNER_MARKER and programs.creates(key))
        try:
            value = cells.decode(self.cell(column))
            if decimal_comma and isinstance(value, str) and cells.DECIMAL_COMMA.fullmatch(value) \
                    and _number_at(default, key):          # 0,01 for a number: 0.01
                value = float(value.replace(",", "."))
        except CellError as exc:
            raise CellError(f"{column}: {exc}", column=column) from None
        raw = self.cell(column).strip()
        return cfg.Delta(key, value, create, quoted=len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"")

    def _env(self, column: str) -> dict[str, str]:
        name = column.split(":", 1)[1].strip()
        if not _ENV_NAME.fullmatch(name):
            raise CellError(f"{column}: {name!r} is not a valid environment variable name")
        value = self.cell(column)
        if value == "" or value.strip() in DEFAULT_WORDS:
            return {}
        refused = self.allowance.env_problem(column.strip(), name)
        if refused:
            raise CellError(refused)
        return {name: expand_env(value, column.strip()) if column.startswith(C.CMD_ENV_PREFIX) else value}

    def _slurm(self, column: str) -> dict[str, str]:
        value = self.cell(column)
        if value.strip() == "" or value.strip() in DEFAULT_WORDS:
            return {}
        option = column[len(C.SLURM_PREFIX):].strip()
        checked = slurm_options.validate(option, value)
        refused = self.allowance.slurm_problem(option, checked)
        if refused:
            raise CellError(refused)
        return {option: checked}

    def config(self, default: dict, deltas: list[cfg.Delta]) -> dict:
        """The default config with the deltas applied (the default itself when a cell is wrong)."""
        if self.problems:
            return default
        try:
            config = cfg.apply_deltas(default, deltas, self.warnings)
        except cfg.ConfigError as exc:
            self.problems.append(str(exc))
            return default
        unfilled = cfg.unfilled_placeholders(config)
        if unfilled:          # stnd runs such rows (<pad> can be a real value): say it, run it
            self.warnings.append("the config still has <...> values: " + ", ".join(
                f"{k} = {_leaf(config, k)!s}" for k in unfilled))
        return config

    def program(self, config: dict) -> tuple[dict, dict]:
        """A ``__RUNNER__`` row: (its config with ``exec_path`` resolved, its take_last_dict columns)."""
        if self.problems:
            return config, {}
        try:
            exec_typed = str(config.get("exec_path") or "")
            programs.argv(config, self.root)
            take_last = programs.take_last(config)
            exec_path = resolve_path(exec_typed, self.root)
            config = dict(config, exec_path=exec_path)
        except (programs.ProgramError, CellError) as exc:
            self.problems.append(str(exc))
            return config, {}
        refused = self.allowance.program_problem(config, exec_path, exec_typed)
        if refused:
            self.problems.append(refused)
        elif not os.path.isfile(exec_path) and not exec_typed.startswith(NO_NORMALISATION):
            self.problems.append(_not_found("exec_path", exec_typed, exec_path, self.root))
        return config, take_last

    def depends_on(self) -> tuple[str, list[str]]:
        """(the ``depends_on`` cell as read, the rows it names)."""
        try:
            text = self.cell(C.DEPENDS_ON).replace(";", ",")
        except CellError as exc:
            self.problems.append(str(exc))
            return "", []
        try:
            return text, rowrefs.split(text)
        except rowrefs.SelectorError as exc:
            self.problems.append(f"depends_on {exc}")
            return text, []

    def time_limit(self) -> tuple[str, float | None]:
        text = self.row.get(C.TIME_LIMIT, "").strip()
        if not text:
            return "", None
        try:
            return text, slurm_options.parse_time(text)
        except ValueError as exc:
            self.problems.append(f"time_limit: {exc}")
            return text, None

    def conda(self, conda_env: str) -> list[str]:
        """A script row's ``conda run`` prefix (``--conda-env``)."""
        if not conda_env:
            return []
        try:
            return programs.conda_prefix(conda_env, self.root)
        except programs.ProgramError as exc:
            self.problems.append(str(exc).replace("conda_env is", "--conda-env is").replace(
                "set conda_env to None to run without it", "run without --conda-env"))
            return []


def _runner_config_problems(config: dict, root: str, allowance: Allowance) -> list[str]:
    """What sheetrun's ``run_cmd.py`` would run from this config, checked as a ``__RUNNER__`` row's."""
    try:
        programs.argv(config, root)
        exec_typed = str(config.get("exec_path") or "")
        refused = allowance.program_problem(config, resolve_path(exec_typed, root), exec_typed)
    except (programs.ProgramError, CellError) as exc:
        return [str(exc)]
    return [refused] if refused else []


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
