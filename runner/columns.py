"""Names of the sheet columns and row statuses the runner reads and writes."""
from __future__ import annotations

# Input columns, written by people.
PATH_TO_MAIN = "path_to_main"
PATH_TO_DEFAULT_CONFIG = "path_to_default_config"
WHETHER_TO_RUN = "whether_to_run"
DEPENDS_ON = "depends_on"
REQUIRED = (PATH_TO_MAIN, PATH_TO_DEFAULT_CONFIG, WHETHER_TO_RUN)

DELTA_PREFIX = "delta:"
DELTA_NEW_PREFIX = "delta+:"
ENV_PREFIX = "env:"
SLURM_PREFIX = "slurm:"

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
    return name in REQUIRED or name == DEPENDS_ON or name.startswith(
        (DELTA_PREFIX, DELTA_NEW_PREFIX, ENV_PREFIX, SLURM_PREFIX))


def is_reserved(name: str) -> bool:
    """True for columns a reported metric may not overwrite."""
    return name in OWNED or is_input_column(name)


class Status:
    SUBMITTED = "Submitted"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    TIMEOUT = "Timeout"
    LOST = "Lost"

    ACTIVE = frozenset({SUBMITTED, RUNNING})
    TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED, TIMEOUT, LOST})
    ALL = ACTIVE | TERMINAL
