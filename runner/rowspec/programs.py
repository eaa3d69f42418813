"""``__RUNNER__`` rows: run any program, described by its config, as stnd's runner does.

The row's config (``stnd/run_cmd/runner.py``'s keys) gives:

==================  ==========================================================
``exec_path``       the program (relative to the project root)
``is_python``       run it with this Python (default true)
``is_bash``         run it with bash
``kwargs``          ``{name: value}``, passed as ``--name=value``
``two_dash_flags``  ``[x, y]``, passed as ``--x --y``
``single_dash_flags`` ``[v]``, passed as ``-v``
``conda_env``       run it inside that conda environment (``conda run``)
``take_last_dict``  ``{column: regex}``: the last match of the regex in the
                    program's stdout goes into that column
==================  ==========================================================

Values are formatted as stnd formats them — ``str()`` of the decoded value:
``--b=True``, ``--l=[1, 2]``, ``--n=None`` — in the order stnd passes them
(alphabetical: it writes the config with sorted keys and reads it back), and
a kwarg whose name holds ``path`` is made absolute as stnd's config reader
makes it (``~`` expanded, ``<$VAR>`` replaced, relative to the project root,
a trailing ``/`` dropped; ``!!!`` keeps it as written) — so programs written
for stnd get the arguments they always got. The difference: the command is an argv list,
never a shell line, so a cell's text reaches the program as one argument and
is never interpreted (stnd joins the pieces into a string for ``bash -c``).

A runner's ``kwargs`` (and the keys above) are free-form: ``delta:`` columns
under them create what they name, as stnd does.
"""
from __future__ import annotations

import os
import re
import shutil
import sys

from runner.core.cells import resolve_path
from runner.core.errors import RowError

MARKER = "__RUNNER__"
KEYS = ("exec_path", "is_python", "is_bash", "conda_env", "kwargs", "two_dash_flags",
        "single_dash_flags", "take_last_dict")
FREE_FORM = ("kwargs", "take_last_dict")       # mappings whose keys are the program's, not a schema


class ProgramError(RowError):
    """A runner config that cannot be run; the message says why."""


def creates(key_path: str) -> bool:
    """Does a ``delta:`` column on this key of a runner config create it when missing?"""
    top = key_path.split("/", 1)[0]
    return top in KEYS


def _flag_list(config: dict, key: str) -> list[str]:
    value = config.get(key)
    if value in (None, "", [], {}):
        return []
    if not isinstance(value, list):
        value = [value]
    return [str(v) for v in value]


def conda_prefix(env: str | None, root: str) -> list[str]:
    """``conda run`` for an environment given by name or path, or [] for none."""
    if env is None or str(env).strip() in ("", "None", "none", "NONE"):
        return []
    conda = shutil.which("conda") or os.environ.get("CONDA_EXE")
    if not conda:
        raise ProgramError(f"conda_env is {env!r}, but conda is not installed here (no 'conda' on PATH, "
                           "no CONDA_EXE); set conda_env to None to run without it")
    env = str(env)
    if "/" in env or env.startswith((".", "~")):
        path = os.path.normpath(os.path.join(root, os.path.expanduser(env)))
        return [conda, "run", "--no-capture-output", "-p", path]
    return [conda, "run", "--no-capture-output", "-n", env]


def take_last(config: dict) -> dict[str, str]:
    """``take_last_dict`` checked: ``{column: regex}`` with regexes that compile."""
    value = config.get("take_last_dict") or {}
    if not isinstance(value, dict):
        raise ProgramError(f"take_last_dict must be a mapping of column: regex, not {value!r}")
    out = {}
    for column, regex in value.items():
        try:
            re.compile(str(regex))
        except re.error as exc:
            raise ProgramError(f"take_last_dict/{column}: {regex!r} is not a regular expression ({exc})") from None
        out[str(column)] = str(regex)
    return out


def stnd_path(value, root: str):
    """A path-named value as stnd's config reader normalises it (``normalize_path``): text and
    lists of text become absolute paths by the sheet's own path rule (:func:`resolve_path`: an
    unset ``<$VAR>`` is an error, as stnd asserts); anything else is left as it is."""
    if isinstance(value, list):
        return [stnd_path(v, root) for v in value]
    if not isinstance(value, str) or not value:
        return value
    return resolve_path(value, root)


def argv(config: dict, root: str = ".", python: str = sys.executable) -> list[str]:
    """The program's command line, as stnd's runner builds it (an argv list, no shell)."""
    exec_path = config.get("exec_path")
    if exec_path is None or not str(exec_path).strip():
        raise ProgramError("__RUNNER__ rows need 'exec_path' in their config")
    kwargs = config.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ProgramError("'kwargs' in a __RUNNER__ config must be a mapping")
    for key in ("is_python", "is_bash"):
        if not isinstance(config.get(key, key == "is_python"), bool):
            raise ProgramError(f"{key!r} must be true or false, got {config.get(key)!r}")
    conda = conda_prefix(config.get("conda_env"), root)
    if config.get("is_bash", False):
        interpreter = ["bash"]                 # stnd writes "python bash X" when both are set; bash is meant
    elif config.get("is_python", True):
        interpreter = ["python" if conda else python]     # inside a conda env: that env's python
    else:
        interpreter = []
    out = conda + interpreter + [str(exec_path)]
    out += [f"--{key}={stnd_path(value, root) if 'path' in str(key) else value}"
            for key, value in sorted(kwargs.items(), key=lambda kv: str(kv[0]))]
    out += [f"--{flag}" for flag in _flag_list(config, "two_dash_flags")]
    out += [f"-{flag}" for flag in _flag_list(config, "single_dash_flags")]
    take_last(config)
    return out
