"""The SLURM backend: job arrays through sbatch, batched state from squeue."""
from runner.slurm.client import JobState, SbatchError, SlurmClient, SlurmError
from runner.slurm.executor import INFO_NAME, SlurmExecutor, SlurmJob

__all__ = ["INFO_NAME", "JobState", "SbatchError", "SlurmClient", "SlurmError", "SlurmExecutor", "SlurmJob"]
