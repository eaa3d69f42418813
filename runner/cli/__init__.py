"""The ``sheetrun`` command line (also ``python -m runner``).

- ``main``: the parser, assembled from each group's ``add_commands``, and :func:`main`;
- ``options``: the consoles and the options several commands share, declared once;
- ``run``: ``run`` (local, SLURM, ``--dry-run``) and ``expand``;
- ``rows``: ``status``, ``sync``, ``cancel``, ``reset``, ``export``, ``import``;
- ``results``: ``history``, ``summarize``, ``compare``, ``plot``.

May import: every other package of ``runner``; nothing imports it.
"""
from runner.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
