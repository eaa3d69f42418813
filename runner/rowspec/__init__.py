"""A row turned into a :class:`~runner.rowspec.rows.RowSpec`: pure functions of the row's cells and files.

- ``rows``: the row's checks and its RowSpec (script, config, overrides, env, SLURM options);
- ``config``: YAML configs and ``delta:`` overrides;
- ``programs``: stnd's ``__RUNNER__`` program configs;
- ``stnd_logging``: the ``logging`` section stnd's scripts read;
- ``allow``: what the machine's owner allows a sheet to run;
- ``slurm_options``: the sbatch options a cell may set, and time limits.

May import: ``runner.core``, ``runner.sheet``.
"""
