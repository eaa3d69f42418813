"""The job process: one row's command run, watched and recorded (``python -m runner.jobwrapper``).

- ``wrapper``: :class:`JobRun`, the row channel, sheet delivery from the job, ``run_job``;
- ``failure``: the plain-words cause of a failed command, read from its log.

May import: ``runner.core``, ``runner.sheet``, ``runner.rowspec``, ``runner.slurm``, ``runner.report``.
"""
