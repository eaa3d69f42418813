"""The bottom layer: what every other part of sheetrun shares, importing nothing of sheetrun's.

- ``columns``: the runner's column names and the row statuses;
- ``cells``: the cell grammar (stnd's encodings, placeholders, ``whether_to_run``, sweeps);
- ``rowrefs``: rows named in text (``--rows``, ``depends_on``) and :class:`RowFilter`;
- ``rundir``: a run folder's files, and the JSON/size helpers around them;
- ``runindex``: the index of the runs a launch claimed (what ``sync`` restores);
- ``executor``: the backend-neutral :class:`Executor` and :class:`Job` (the contract backends keep);
- ``records``: ``job.json`` and ``exit.json`` as types; ``sheetref``: where a sheet lives;
- ``devices``: which GPUs a job may see;
- ``procs``: process identity (a pid plus its start time) and process trees;
- ``settings``: the project's ``sheetrun.yaml``;
- ``credentials``, ``console``, ``errors``.

May import: the standard library and third-party packages only (and ``runner.report``'s
light helpers never import from here upwards).
"""
