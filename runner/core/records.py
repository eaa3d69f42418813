"""The records a run folder keeps, as types: ``job.json`` (what the job runs, and who claimed it),
``wrapper.json`` (the process that runs it) and ``exit.json`` (how it ended). Each has one reader (``from_json``) and one writer
(``to_json``); nothing else reads these files by key. Files written by older versions load: a
key they lack takes its default, a key this version does not know is kept as it was.
"""
from __future__ import annotations

import socket
from dataclasses import asdict, dataclass, field, fields
from typing import Any


def _known(cls, data: dict) -> tuple[dict, dict]:
    """``data`` split into the dataclass's fields and the rest."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}, {k: v for k, v in data.items() if k not in names}


class _Record:
    """``from_json`` / ``to_json`` of a record whose unknown keys are kept in ``extra``."""

    @classmethod
    def from_json(cls, data: dict):
        known, extra = _known(cls, data)
        return cls(**known, extra={k: v for k, v in extra.items() if k != "extra"})

    def to_json(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**self.extra, **data}


@dataclass
class Launcher:
    """The sheetrun that claimed a run: its process (pid and start time, on ``host``), its launch
    (id and record file) and when it claimed the row."""
    pid: int = 0
    pid_started: float | None = None
    host: str = ""
    launch: str = ""
    launch_file: str = ""
    claimed: float = 0.0

    @classmethod
    def from_json(cls, data: dict | None) -> "Launcher":
        known, _ = _known(cls, data or {})
        return cls(**known)

    def to_json(self) -> dict:
        return asdict(self)

    def __bool__(self) -> bool:
        return bool(self.pid)


@dataclass
class JobRecord(_Record):
    """``job.json``: written when the row is claimed, before it says Submitted."""
    sheet: str                                 # where the row lives (runner.core.sheetref)
    run_id: str
    argv: list[str]
    cwd: str
    row: int = 0
    name: str | None = None                   # the row's name cell (None: written before names were kept)
    attempt: int = 1
    env: dict[str, str] = field(default_factory=dict)
    launcher: Launcher = field(default_factory=Launcher)
    time_limit: str = ""                      # as the row (or --timeout) gave it
    time_limit_s: float | None = None
    previous_run_folder: str = ""
    sheet_writes: str = ""                    # "job": the job writes its own row (SLURM)
    exec_prefix: list[str] = field(default_factory=list)
    sheet_interval_s: float | None = None     # how often the job may write a remote sheet
    log_limit: int | None = None
    take_last: dict[str, str] = field(default_factory=dict)   # stnd's take_last_dict: column -> regex
    stnd_row_csv: str = ""
    extra: dict[str, Any] = field(default_factory=dict)       # keys of other versions, kept

    @classmethod
    def from_json(cls, data: dict) -> "JobRecord":
        known, extra = _known(cls, data)
        launcher = data.get("launcher")
        if isinstance(launcher, dict):
            known["launcher"] = Launcher.from_json(launcher)
        elif data.get("launcher_pid"):            # run folders from before the launcher record
            known["launcher"] = Launcher(pid=data["launcher_pid"], host=socket.gethostname(),
                                         claimed=data.get("created", 0))
        else:
            known["launcher"] = Launcher()
        for key in ("launcher_pid", "created"):   # written for older readers; derived from launcher
            extra.pop(key, None)
        known.setdefault("argv", [])
        known.setdefault("cwd", "")
        known.setdefault("sheet", "")
        known.setdefault("run_id", "")
        return cls(**known, extra={k: v for k, v in extra.items() if k != "extra"})

    def to_json(self) -> dict:
        data = super().to_json()
        data["launcher"] = self.launcher.to_json()
        data["launcher_pid"] = self.launcher.pid          # what older sheetruns read
        data["created"] = self.launcher.claimed
        return data

    @property
    def created(self) -> float:
        """When the row was claimed."""
        return self.launcher.claimed


@dataclass
class ExitRecord(_Record):
    """``exit.json``: how the job ended, written by its wrapper when the command has exited."""
    status: str
    exit_code: int | None = None
    error: str = ""
    started: float = 0.0
    ended: float = 0.0
    walltime_s: float | None = None
    script_exit_code: int | None = None       # the command's own exit code (exit_code may be sheetrun's)
    host: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict) -> "ExitRecord":
        return super().from_json({"status": "", **data})

    def __getitem__(self, key: str) -> Any:
        """The record as ``exit.json`` holds it, for code that reads it as JSON (``record["status"]``)."""
        return self.to_json()[key]


@dataclass
class WrapperRecord(_Record):
    """``wrapper.json``: the process running the job — its wrapper (``kind`` "wrapper", it runs this
    job only) or the launch's job host ("host", which runs other rows too) — written when the command
    starts (``child_pid``: the command; ``job_id``: the SLURM task or the command's pid)."""
    pid: int = 0
    pid_started: float | None = None
    host: str = ""
    kind: str = "wrapper"
    started: float = 0.0
    job_id: str = ""
    child_pid: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
