"""Where a sheet lives: a local CSV file, or a Google Sheet (its URL) and maybe one worksheet of it.

Written as one string wherever it travels (the command line, ``job.json``): a path, a URL, or
``URL::WORKSHEET``. :class:`SheetRef` is the one place that reads and writes that form.
"""
from __future__ import annotations

from dataclasses import dataclass

WORKSHEET_SEPARATOR = "::"


@dataclass(frozen=True)
class SheetRef:
    address: str            # a file path, or a Google Sheets URL
    worksheet: str = ""     # a Google Sheet's worksheet (tab) by name; "" for the URL's own

    @classmethod
    def parse(cls, location: str) -> "SheetRef":
        """``path``, ``URL`` or ``URL::WORKSHEET`` (a path is taken whole, ``::`` and all)."""
        if "://" not in location:
            return cls(location)
        url, _, worksheet = location.partition(WORKSHEET_SEPARATOR)
        return cls(url, worksheet)

    @property
    def remote(self) -> bool:
        """A sheet on a server (a URL), not a file here."""
        return "://" in self.address

    def with_worksheet(self, worksheet: str) -> "SheetRef":
        return SheetRef(self.address, worksheet)

    def __str__(self) -> str:
        return f"{self.address}{WORKSHEET_SEPARATOR}{self.worksheet}" if self.worksheet else self.address
