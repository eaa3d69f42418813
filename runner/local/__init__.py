"""The local backend: jobs run as processes of this machine, a few at a time.

- ``executor``: :class:`LocalExecutor` and :class:`LocalJob`;
- ``host``: the job host process that starts and watches a launch's jobs.

The loop that decides when each row starts is the launch's own (``runner.launch.follow``).

May import: ``runner.core``, ``runner.job`` (and what they may).
"""
from runner.local.executor import LocalExecutor, LocalJob

__all__ = ["LocalExecutor", "LocalJob"]
