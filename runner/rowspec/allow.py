"""Who can run what: the limits on what a sheet's rows may run, and the owner's file that lifts them.

A sheet is edited by people who do not own the machine it runs on: a Google
Sheet shared with collaborators, a CSV in a repository others push to. So what
a row may run is, by default, what the project itself holds:

- its script and default config are files inside the project root (after
  following links);
- a ``__RUNNER__`` row (or a row running sheetrun's ``run_cmd.py``) runs a
  Python script inside the project;
- ``env:`` / ``cmd_env_var:`` columns cannot set a variable that changes which
  code runs (:data:`RISKY_ENV`: ``LD_*``, ``PYTHON*`` but a few, ``PATH``,
  ``BROWSER``..., and the project root stnd-wrapped code resolves paths against);
- ``slurm:`` columns take the resource options (:data:`SLURM_OPTIONS`), and
  ``slurm:output`` / ``slurm:error`` are log files inside the project.

The machine's owner allows more in a file the sheet cannot change: the
project's ``.sheetrun/allow.yaml``, or ``allow.yaml`` in the user's config
folder (``$XDG_CONFIG_HOME/sheetrun/``, by default ``~/.config/sheetrun/``) for
every project of this user; both are read::

    roots: [/shared/scripts]            # more folders scripts and configs may come from
    programs: [bash, /usr/bin/env]      # what __RUNNER__ rows may run besides Python scripts
    env: [LD_LIBRARY_PATH, "PYTHON*"]   # variables env: columns may set (shell-style patterns)
    slurm: [export, output]             # sbatch options beyond the resource ones

``"*"`` in a list allows anything of its kind. Each refusal is one line in the
row's error cell, naming the cell and the line that would allow it.
"""
from __future__ import annotations

import difflib
import fnmatch
import os
import shutil
from dataclasses import dataclass, field

import yaml

from runner.core.errors import UsageError

ALLOW_FILE = os.path.join(".sheetrun", "allow.yaml")
KEYS = ("roots", "programs", "env", "slurm")

# Variables that decide which code a process loads or runs: never from a sheet unless allowed.
RISKY_ENV = ("LD_*", "DYLD_*", "*_PRELOAD", "PYTHON*", "PATH", "BROWSER", "PERL5*", "PERLLIB", "RUBYOPT",
             "RUBYLIB", "NODE_OPTIONS", "NODE_PATH", "BASH_ENV", "ENV", "BASH_FUNC_*", "SHELLOPTS", "BASHOPTS",
             "PS4", "IFS", "GCONV_PATH", "HOME", "EDITOR", "VISUAL", "PAGER", "GIT_*", "LESSOPEN", "LESSCLOSE",
             "*_ASKPASS", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH", "LUA_INIT*",
             "LUA_PATH", "LUA_CPATH", "OPENSSL_CONF", "OPENSSL_ENGINES", "TCLLIBPATH", "R_PROFILE*",
             "PROJECT_ROOT_PROVIDED_FOR_STUNED")    # stnd-wrapped code resolves its paths against it
# PYTHON* variables that only tune the interpreter (no code is loaded because of them).
SAFE_PYTHON_ENV = frozenset({"PYTHONHASHSEED", "PYTHONUNBUFFERED", "PYTHONFAULTHANDLER", "PYTHONDONTWRITEBYTECODE",
                             "PYTHONIOENCODING", "PYTHONUTF8", "PYTHONOPTIMIZE", "PYTHONNOUSERSITE",
                             "PYTHONTRACEMALLOC", "PYTHONDEVMODE", "PYTHONWARNDEFAULTENCODING"})

# sbatch options a sheet may set: resources, placement and bookkeeping. The rest (export, uid,
# gid, get-user-env, container, propagate, nodefile, bb, ...) change who or what runs: allow them.
SLURM_OPTIONS = frozenset("""
account partition qos reservation time time-min mem mem-per-cpu mem-per-gpu cpus-per-task cpus-per-gpu
gpus gpus-per-node gpus-per-socket gpus-per-task gres gres-flags constraint cluster-constraint nodes
ntasks ntasks-per-node ntasks-per-core ntasks-per-gpu ntasks-per-socket sockets-per-node cores-per-socket
threads-per-core mincpus exclusive oversubscribe exclude nodelist contiguous hint distribution tmp licenses
comment mail-type mail-user nice begin deadline hold requeue no-requeue signal job-name output error
open-mode kill-on-invalid-dep gpu-bind mem-bind spread-job use-min-nodes switches wckey
""".split())
LOG_OPTIONS = ("output", "error")
LOG_SUFFIXES = (".out", ".err", ".log", ".txt")
HIDDEN_STATE = (".sheetrun", ".git")      # folders a job's log may never go into


class AllowError(UsageError):
    """An allow file that cannot be read; the message names it (the command stops, exit status 2)."""


def user_allow_file() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "sheetrun", "allow.yaml")


def inside(path: str, folder: str) -> bool:
    """Is ``path`` ``folder`` or under it (both already real paths)?"""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


@dataclass(frozen=True)
class Allowance:
    """What rows of one project may run: the project root, and what its owner allowed beyond it."""
    root: str                                           # the project root, links resolved
    roots: tuple[str, ...] = ()                         # extra folders, links resolved
    programs: tuple[str, ...] = ()                      # real paths of allowed programs, or "*"
    program_names: frozenset = frozenset()              # allowed programs as written (bash, ...)
    env: tuple[str, ...] = ()                           # allowed variable names / patterns
    slurm: frozenset = frozenset()                      # allowed sbatch options beyond the default ones
    files: tuple[str, ...] = field(default=())          # the allow files read

    @classmethod
    def load(cls, root: str) -> "Allowance":
        """The allowance of the project at ``root``: its ``.sheetrun/allow.yaml`` and the user's."""
        real_root = os.path.realpath(root)
        roots, programs, names, env, slurm, files = [], [], set(), [], set(), []
        for path in (os.path.join(root, ALLOW_FILE), user_allow_file()):
            data = _read(path)
            if data is None:
                continue
            files.append(path)
            for entry in data.get("roots", []):
                roots.append(os.path.realpath(os.path.join(root, os.path.expanduser(entry))))
            for entry in data.get("programs", []):
                names.add(entry)
                programs.append(entry if entry == "*" else _program_path(entry, root))
            env += data.get("env", [])
            slurm |= set(data.get("slurm", []))
        return cls(real_root, tuple(roots), tuple(p for p in programs if p), frozenset(names), tuple(env),
                   frozenset(slurm), tuple(files))

    # -- where to say it -----------------------------------------------------------------------
    @property
    def file(self) -> str:
        """The file a refusal tells the owner to edit: the project's."""
        return os.path.join(self.root, ALLOW_FILE)

    # -- the checks: each returns why not (one line, saying how to allow it), or None ---------------
    def path_problem(self, column: str, typed: str, resolved: str) -> str | None:
        """A script or config file: inside the project root or an allowed root, links resolved."""
        real = os.path.realpath(os.path.join(self.root, resolved))    # "!!!x" leaves x relative
        if any(inside(real, folder) for folder in (self.root,) + self.roots):
            return None
        where = "" if real == os.path.normpath(os.path.join(self.root, resolved)) else f" (it leads to {real})"
        return (f"{column} {typed!r} is outside the project{where}; to allow a folder, add it under "
                f"'roots:' in {self.file}")

    def program_problem(self, config: dict, exec_path: str, typed: str) -> str | None:
        """What a runner config runs: a Python script inside the roots, or an allowed program."""
        bash = bool(config.get("is_bash", False))
        python = not bash and bool(config.get("is_python", True))
        if python or bash:
            problem = self.path_problem("exec_path", typed, exec_path)
            if problem or python:
                return problem
            if "*" in self.programs or "bash" in self.program_names or _which_real("bash") in self.programs:
                return None
            return (f"exec_path {typed!r} runs with bash (is_bash), not Python; to allow bash, add bash "
                    f"under 'programs:' in {self.file}")
        real = os.path.realpath(os.path.join(self.root, exec_path))
        if "*" in self.programs or real in self.programs:
            return None
        return (f"exec_path {typed!r} is a program, not a Python script (is_python: false); to allow it, "
                f"add {real} under 'programs:' in {self.file}")

    def env_problem(self, column: str, name: str) -> str | None:
        """A variable an ``env:`` / ``cmd_env_var:`` column sets."""
        if not risky_env(name) or any(fnmatch.fnmatchcase(name, pattern) for pattern in self.env):
            return None
        return (f"{column}: {name} changes which code runs; to allow it, add {name} under 'env:' in {self.file}")

    def slurm_problem(self, option: str, value: str) -> str | None:
        """An sbatch option a ``slurm:`` column sets (already checked to be one)."""
        if "*" in self.slurm or option in self.slurm:
            return None
        if option not in SLURM_OPTIONS:
            return (f"slurm:{option} changes who or what runs the job; to allow it, add {option} under "
                    f"'slurm:' in {self.file}")
        if option in LOG_OPTIONS:
            return self._log_problem(option, value)
        return None

    def _log_problem(self, option: str, value: str) -> str | None:
        """SLURM's own log file: a ``.out`` / ``.err`` / ``.log`` / ``.txt`` file inside the project,
        never in its state folders (a log written over a script or the allow file would run)."""
        path = os.path.normpath(os.path.join(self.root, os.path.expanduser(value)))
        folder = os.path.realpath(os.path.dirname(path))
        real = os.path.join(folder, os.path.basename(path))
        relative = os.path.relpath(real, self.root).split(os.sep)
        problem = ""
        if not inside(real, self.root):
            problem = "is outside the project"
        elif any(part in HIDDEN_STATE for part in relative):
            problem = f"is inside {'/'.join(p for p in relative if p in HIDDEN_STATE)}/"
        elif not os.path.basename(path).endswith(LOG_SUFFIXES):
            problem = f"is not a log file ({', '.join(LOG_SUFFIXES)})"
        if not problem:
            return None
        return (f"slurm:{option} {value!r} {problem}; to allow any path, add {option} under 'slurm:' "
                f"in {self.file}")


def risky_env(name: str) -> bool:
    """Does setting ``name`` change which code runs?"""
    if name in SAFE_PYTHON_ENV:
        return False
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in RISKY_ENV)


def _read(path: str) -> dict | None:
    """An allow file's lists, checked; None where there is no file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise AllowError(f"{path}: cannot read it ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AllowError(f"{path}: must be a mapping of {', '.join(KEYS)} to lists")
    out = {}
    for key, value in data.items():
        if key not in KEYS:
            close = difflib.get_close_matches(str(key), KEYS, n=1)
            raise AllowError(f"{path}: unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                             + f"; it takes {', '.join(KEYS)}")
        if value is None:
            value = []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise AllowError(f"{path}: {key} must be a list of texts")
        out[key] = [v.strip() for v in value]
    return out


def _which_real(name: str) -> str:
    found = shutil.which(name)
    return os.path.realpath(found) if found else ""


def _program_path(entry: str, root: str) -> str:
    """An allowed program as a real path: a path (relative to the root) or a command on PATH."""
    if os.sep in entry or entry.startswith("~"):
        return os.path.realpath(os.path.join(root, os.path.expanduser(entry)))
    return _which_real(entry)
