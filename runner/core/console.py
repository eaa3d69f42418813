"""The terminal output of the command line: rich consoles that print people's text literally.

On a terminal, tables fit its width; anywhere else (a pipe, a file, CI's log)
nothing is clipped: tables print at their natural width, however wide.
"""
from __future__ import annotations

import os
import sys

from rich.console import Console

UNCLIPPED_WIDTH = 100_000


def make_console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):
        terminal = False
    width = None if terminal or os.environ.get("COLUMNS") else UNCLIPPED_WIDTH
    # cells, errors and paths are people's text: never read as markup or emoji codes
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False, width=width)
