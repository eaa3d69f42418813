"""Reading results back: tables, comparisons and histories of rows and their run folders.

- ``summary``: ``sheetrun summarize``; ``compare``: ``sheetrun compare``;
- ``history``: a row's earlier runs, and metric curves to plot.

May import: ``runner.core``, ``runner.sheet``, ``runner.rowspec``.
"""
