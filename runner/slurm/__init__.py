"""The SLURM backend: job arrays through sbatch, batched state from squeue.

- ``client``: sbatch / squeue / scancel, rate-limited and batched;
- ``states``: SLURM job states as row statuses;
- ``executor``: :class:`SlurmExecutor` and the array's batch script.

May import: ``runner.core``, ``runner.sheet``, ``runner.rowspec``. (Grouping a launch's rows into
arrays is the launch's: ``runner.launch.submit``.)
"""
from runner.slurm.client import JobState, SbatchError, SlurmClient, SlurmError
from runner.slurm.executor import INFO_NAME, SlurmExecutor, SlurmJob

__all__ = ["INFO_NAME", "JobState", "SbatchError", "SlurmClient", "SlurmError", "SlurmExecutor", "SlurmJob"]
