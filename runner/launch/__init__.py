"""One launch: rows chosen, claimed, prepared, started, and their results written back.

- ``plan``: which rows run, validated, with their dependencies (pure);
- ``sweeps``: ``{a | b}`` rows expanded into one row per value;
- ``pipeline``: :class:`Launch` (claim -> prepare -> start -> finish) and ``launch()``;
- ``claim``: the one sheet transaction that plans and stamps the rows;
- ``follow``: the loop that runs rows on an executor whose jobs run here (slots, dependencies,
  devices, signals, retries); ``submit``: rows handed to a batch scheduler, grouped into arrays;
- ``rowwriter`` and ``ledger``: the launch's batched row writes, and the human edits they keep;
- ``approvals``: a shared sheet's commands as this user confirmed them;
- ``provenance``: the code a run ran (git state); ``progress``: what the console shows.

May import: everything below it (``core``, ``sheet``, ``rowspec``, ``slurm``, ``job``, ``runs``).
"""
