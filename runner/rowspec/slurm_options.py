"""Validation of ``slurm:<option>`` cells (sbatch long options).

Parsed and checked for every row now, so a typo fails its row before any
submission; the SLURM backend turns them into ``--option=value`` arguments.
"""
from __future__ import annotations

import difflib
import re

from runner.core.errors import RowError

SBATCH_OPTIONS = frozenset("""
account error output acctg-freq batch bb bbf begin cluster-constraint clusters comment constraint container
contiguous core-spec cores-per-socket cpu-freq cpus-per-gpu cpus-per-task deadline delay-boot
distribution exclude exclusive export extra-node-info get-user-env gid gpu-bind gpu-freq gpus
gpus-per-node gpus-per-socket gpus-per-task gres gres-flags hint hold ignore-pbs job-name
kill-on-invalid-dep licenses mail-type mail-user mcs-label mem mem-bind mem-per-cpu mem-per-gpu
mincpus network nice no-kill no-requeue nodefile nodelist nodes ntasks ntasks-per-core
ntasks-per-gpu ntasks-per-node ntasks-per-socket open-mode overcommit oversubscribe partition
power priority profile propagate qos reboot requeue reservation signal sockets-per-node spread-job
switches thread-spec threads-per-core time time-min tmp uid use-min-nodes wait-all-nodes wckey
""".split())

# Options sheetrun sets itself; a cell may not override them.
MANAGED = {
    "array": "sheetrun groups rows into arrays itself",
    "dependency": "use the depends_on column",
    "chdir": "jobs run from the project root",
    "wrap": "the job script is generated",
    "parsable": "sheetrun parses sbatch's output itself",
    "wait": "use sheetrun run --wait",
    "test-only": "use sheetrun run --dry-run",
}

_TIME = re.compile(r"(\d+-\d{1,2}(:\d{1,2}(:\d{1,2})?)?|\d+(:\d{1,2}(:\d{1,2})?)?|UNLIMITED|INFINITE)",
                   re.IGNORECASE)
_MEM = re.compile(r"\d+([KMGT]B?)?", re.IGNORECASE)
_POSITIVE_INT = re.compile(r"[1-9]\d*")
_NODES = re.compile(r"[1-9]\d*(-[1-9]\d*)?")
_GPUS = re.compile(r"([A-Za-z0-9_.-]+:)?\d+")
_FORMATS = {
    "time": (_TIME, "a time like 60, 1:00:00 or 2-00:00:00"),
    "time-min": (_TIME, "a time like 60, 1:00:00 or 2-00:00:00"),
    "mem": (_MEM, "a size like 4G or 16000M"),
    "mem-per-cpu": (_MEM, "a size like 4G or 16000M"),
    "mem-per-gpu": (_MEM, "a size like 4G or 16000M"),
    "cpus-per-task": (_POSITIVE_INT, "a positive integer"),
    "cpus-per-gpu": (_POSITIVE_INT, "a positive integer"),
    "ntasks": (_POSITIVE_INT, "a positive integer"),
    "ntasks-per-node": (_POSITIVE_INT, "a positive integer"),
    "nodes": (_NODES, "a node count like 1 or 1-2"),
    "gpus": (_GPUS, "a count like 1 or a typed count like a100:2"),
    "gpus-per-node": (_GPUS, "a count like 1 or a typed count like a100:2"),
    "gpus-per-task": (_GPUS, "a count like 1 or a typed count like a100:2"),
}


class SlurmOptionError(RowError):
    """A ``slurm:`` cell (or sheetrun.yaml option) sbatch would not take, or the owner does not allow."""


def validate(option: str, value: str) -> str:
    """Check one ``slurm:<option>`` cell and return its normalised value."""
    option = option.strip()
    value = value.strip()
    if option in MANAGED:
        raise SlurmOptionError(f"slurm:{option} cannot be set from the sheet ({MANAGED[option]})")
    if option not in SBATCH_OPTIONS:
        msg = f"slurm:{option} is not an sbatch option"
        close = difflib.get_close_matches(option, SBATCH_OPTIONS, n=1)
        raise SlurmOptionError(msg + (f" (did you mean slurm:{close[0]}?)" if close else ""))
    if any(ch in value for ch in "\n\r\0"):
        raise SlurmOptionError(f"slurm:{option} holds a line break")
    fmt = _FORMATS.get(option)
    if fmt and not fmt[0].fullmatch(value):
        raise SlurmOptionError(f"slurm:{option}={value!r} is not {fmt[1]}")
    return value


def parse_time(text: str) -> float | None:
    """Seconds in a SLURM time (``60`` minutes, ``1:30:00``, ``2-12``, ``UNLIMITED``: None).

    ValueError for anything else.
    """
    value = text.strip()
    if not _TIME.fullmatch(value):
        raise ValueError(f"{text!r} is not a time like 60 (minutes), 1:30:00 or 2-00:00:00")
    if value.upper() in ("UNLIMITED", "INFINITE"):
        return None
    days, _, rest = value.rpartition("-")
    parts = [int(x) for x in rest.split(":")]
    if days:                                  # D-HH, D-HH:MM, D-HH:MM:SS
        parts += [0] * (3 - len(parts))
        h, m, s = parts
    elif len(parts) == 1:                     # minutes
        h, m, s = 0, parts[0], 0
    elif len(parts) == 2:                     # MM:SS
        h, (m, s) = 0, parts
    else:                                     # HH:MM:SS
        h, m, s = parts
    return float(((int(days or 0) * 24 + h) * 60 + m) * 60 + s)
