"""The job process: one row's command run, watched and recorded (``python -m runner.jobwrapper``).

- ``wrapper``: :class:`JobRun` (start, watch, stop, record one command) and ``run_job``;
- ``channel``: :class:`RowChannel`, where a job's row updates go (the runner, the sheet, a follower);
- ``delivery``: the job writing its own row, and what it cannot deliver kept for ``sync``;
- ``results``: the metrics and the final cells of a finished job;
- ``environment``: :class:`JobEnvironment`, where the job runs (its SLURM job, a requeue), its CPUs,
  and why SLURM signalled it;
- ``failure``: the plain-words cause of a failed command, read from its log.

May import: ``runner.core``, ``runner.sheet``, ``runner.rowspec``, ``runner.slurm``, ``runner.report``.
"""
