"""The job's entry point: ``python -m runner.jobwrapper RUN_FOLDER`` runs one prepared row.

SLURM batch scripts name this module, so it keeps its name (jobs queued by an older sheetrun still
start); the job itself lives in :mod:`runner.job.wrapper`.
"""
import sys

from runner.job.wrapper import main

if __name__ == "__main__":
    sys.exit(main())
