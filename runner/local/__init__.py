"""The local backend: jobs run as processes of this machine, a few at a time.

- ``executor``: :class:`LocalExecutor` and :class:`LocalJob`;
- ``host``: the job host process that starts and watches a launch's jobs;
- ``scheduler``: the follower loop that starts jobs as devices and slots free up;
- ``devices``: which GPUs a job may see.

May import: everything below it (``core`` ... ``launch``).
"""
from runner.local.executor import LocalExecutor, LocalJob

__all__ = ["LocalExecutor", "LocalJob"]
