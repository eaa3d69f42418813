"""Runs after their launch: who holds each, and how rows are set right.

- ``liveness``: whether a run is still held (sheetrun, its wrapper, its processes, SLURM);
- ``sync``: rows left Submitted/Running reconciled; runs an older copy lost put back; ``follow``;
- ``cancel``, ``reset``.

May import: ``runner.core``, ``runner.sheet``, ``runner.rowspec``, ``runner.slurm``, ``runner.job``.
"""
