"""Results sheets: ``open_sheet(location)`` picks the backend for a location.

- ``table``: a sheet's contents (:class:`Table`, :class:`Row`), edited in memory;
- ``base``: :class:`Sheet` (read, transact, batched row updates) and how a value becomes a cell;
- ``csv_sheet``, ``gsheet``: a local CSV file, a Google Sheet;
- ``metric_columns``: which metric columns a launch may add.

May import: ``runner.core``.
"""
from __future__ import annotations

from typing import Callable

from runner.sheet.base import ColumnPolicy, Delivery, Sheet, SheetError, format_cell
from runner.sheet.table import RaggedRowError, Row, SheetFormatError, Table

# (predicate on the location, factory); the newest registration is tried first.
_BACKENDS: list[tuple[Callable[[str], bool], Callable[[str], Sheet]]] = []


def register_backend(matches: Callable[[str], bool], factory: Callable[[str], Sheet]) -> None:
    _BACKENDS.insert(0, (matches, factory))


def _google(location: str) -> Sheet:
    from runner.sheet.gsheet import GoogleSheet
    return GoogleSheet(location)


def _is_google(location: str) -> bool:
    from runner.sheet.gsheet import is_google_sheet
    return is_google_sheet(location)


register_backend(_is_google, _google)


def open_sheet(location: str) -> Sheet:
    for matches, factory in _BACKENDS:
        if matches(location):
            return factory(location)
    from runner.sheet.csv_sheet import CsvSheet
    return CsvSheet(location)


__all__ = ["ColumnPolicy", "Delivery", "Sheet", "SheetError", "SheetFormatError", "RaggedRowError", "Table", "Row", "open_sheet",
           "register_backend", "format_cell"]
