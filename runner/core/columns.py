"""Names of the sheet columns and row statuses the runner reads and writes."""
from __future__ import annotations

# Input columns, written by people.
PATH_TO_MAIN = "path_to_main"
PATH_TO_DEFAULT_CONFIG = "path_to_default_config"
WHETHER_TO_RUN = "whether_to_run"
DEPENDS_ON = "depends_on"
NAME = "name"                    # a row's name: depends_on and --rows may name rows by it
TIME_LIMIT = "time_limit"        # a row's time limit, as slurm:time writes it
SWEEP = "sweep"                  # written by 'sheetrun expand': the sweep a row belongs to
REQUIRED = (PATH_TO_MAIN, PATH_TO_DEFAULT_CONFIG, WHETHER_TO_RUN)
READ = REQUIRED + (DEPENDS_ON, NAME, TIME_LIMIT, SWEEP)     # every plain column sheetrun reads

DELTA_PREFIX = "delta:"
DELTA_NEW_PREFIX = "delta+:"
ENV_PREFIX = "env:"
CMD_ENV_PREFIX = "cmd_env_var:"     # stnd's environment variables ($VAR expanded)
SLURM_PREFIX = "slurm:"
DATA_PREFIXES = ("env_var:", "condor:")   # stnd's HTCondor columns: kept as data, not a backend
PARAMETER_PREFIXES = (DELTA_PREFIX, DELTA_NEW_PREFIX, ENV_PREFIX, CMD_ENV_PREFIX, SLURM_PREFIX)

# Columns the runner owns: it writes them, and only them (plus reported metrics).
STATUS = "status"
RUN_ID = "run_id"
RUN_FOLDER = "run_folder"
JOB_ID = "job_id"
EXIT_CODE = "exit_code"
WALLTIME = "walltime"
ERROR = "error"
OWNED = (STATUS, RUN_ID, RUN_FOLDER, JOB_ID, EXIT_CODE, WALLTIME, ERROR)


def is_input_column(name: str) -> bool:
    """A column sheetrun reads (never written by a metric)."""
    return name in READ or name.startswith(
        (DELTA_PREFIX, DELTA_NEW_PREFIX, ENV_PREFIX, CMD_ENV_PREFIX, SLURM_PREFIX) + DATA_PREFIXES)


def short_name(column: str) -> str:
    """A ``delta:`` / ``delta+:`` column by its key (``delta:train/lr`` -> ``train/lr``), as tables show it."""
    for prefix in (DELTA_PREFIX, DELTA_NEW_PREFIX):
        if column.startswith(prefix):
            return column[len(prefix):]
    return column


def is_reserved(name: str) -> bool:
    """True for columns a reported metric may not overwrite."""
    return name in OWNED or is_input_column(name)


# Cells are capped so a row stays readable; the full text stays in the run folder
# (stderr.log, metrics.json).
STND_EMPTY = "?"                  # what stnd writes into other rows' cells of a column it adds
ERROR_MAX_CHARS = 300
TEXT_MAX_CHARS = 1000
METRIC_NAME_MAX_CHARS = 100
METRIC_SUFFIX = " (metric)"     # where a metric goes when its name is a person's column


def metric_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a metric column, or None when it can."""
    if not isinstance(name, str):
        return f"metric names must be strings, not {type(name).__name__} ({name!r})"
    if not name.strip():
        return "a metric name cannot be empty"
    if name != name.strip():
        return f"metric name {name!r} has leading or trailing spaces"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return f"metric name {name!r} holds a control character (a line break?)"
    if len(name) > METRIC_NAME_MAX_CHARS:
        return f"metric name {name[:40]!r}... is longer than {METRIC_NAME_MAX_CHARS} characters"
    if is_reserved(name):
        return f"{name!r} is a sheetrun column and cannot be a metric name"
    if is_reserved(name.lower()):
        return f"{name!r} is too close to the sheetrun column {name.lower()!r} to be a metric name"
    return None


def cap(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


class Status:
    SUBMITTED = "Submitted"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    TIMEOUT = "Timeout"
    LOST = "Lost"
    SKIPPED = "Skipped"          # not run: a dependency did not complete

    ACTIVE = frozenset({SUBMITTED, RUNNING})
    TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED, TIMEOUT, LOST, SKIPPED})
    # stnd's spellings, in sheets it wrote: what they mean here
    STND = {"Complete": COMPLETED, "Fail": FAILED}

    @classmethod
    def meaning(cls, status: str) -> str:
        """A status as sheetrun means it (stnd's "Fail" is Failed)."""
        return cls.STND.get(status, status)
    ALL = ACTIVE | TERMINAL
