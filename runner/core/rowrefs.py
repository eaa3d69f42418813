"""Rows named in text (row references): ``--rows`` and ``depends_on`` cells.

A selector list is separated by commas and spaces; each item is a row number,
a range (``5-8``), a run id or a row's ``name``. Names may hold spaces
(``eval plain``): quote them (``"eval plain", 3`` or ``'eval plain' 3``), or
write one name between commas, as a name alone matches whole
(``--rows "eval plain"``, ``depends_on`` = ``first run``). ::

    split("1, 3 5-8")                       -> ["1", "3", "5-8"]
    split('"eval plain" 2')                 -> ["eval plain", "2"]
    split("eval plain, 4", {"eval plain"})  -> ["eval plain", "4"]
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from runner.core import columns as C
from runner.core.errors import RowError

QUOTING_HINT = "a name with spaces is written in quotes, e.g. --rows '\"eval plain\",3'"


class SelectorError(RowError):
    """Rows named in text that cannot be read (an unclosed quote)."""


def _groups(text: str) -> list[str]:
    """``text`` split at the commas outside quotes."""
    groups, current, quote = [], [], ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == ",":
            groups.append("".join(current))
            current = []
            continue
        current.append(ch)
    groups.append("".join(current))
    return groups


def normal(name: str) -> str:
    """A name as row references compare it: runs of whitespace are one space."""
    return " ".join(name.split())


def split(text: str, names=()) -> list[str]:
    """The items of a selector list; a comma-separated group that is one of ``names`` (compared
    with runs of whitespace as one space) stays whole. SelectorError for unbalanced quotes."""
    known = {normal(n) for n in names if n}
    items: list[str] = []
    for group in _groups(text or ""):
        try:
            tokens = shlex.split(group)
        except ValueError as exc:
            raise SelectorError(f"{text!r}: {exc} ({QUOTING_HINT})") from None
        whole = normal(" ".join(tokens))
        if len(tokens) > 1 and whole in known:
            items.append(whole)
        else:
            items += [normal(t) for t in tokens if t.strip()]
    return items


def ranges(numbers, separator: str = ",") -> str:
    """Row numbers as ranges: ``[1, 2, 3, 7]`` -> ``"1-3,7"`` (sbatch's ``--array`` form)."""
    numbers = sorted(numbers)
    out, start = [], None
    for i, n in enumerate(numbers):
        if start is None:
            start = n
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            out.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return separator.join(out)


@dataclass
class RowFilter:
    """``--rows``: row numbers, ranges, run ids and ``name`` cells, e.g. ``"1,3,5-8 r1a2b3c4 baseline"``;
    a name with spaces is quoted, or alone between commas (:func:`split`)."""
    numbers: set[int] = field(default_factory=set)
    ids: set[str] = field(default_factory=set)          # run ids or names
    spec: str = ""
    exact: bool = False                                 # one row named by the whole text (history)

    @classmethod
    def parse(cls, spec: str | None, names=()) -> "RowFilter | None":
        if not spec:
            return None
        out = cls(spec=spec)
        try:
            items = split(spec, names)
        except SelectorError as exc:
            raise RowError(f"--rows {exc}") from None
        for token in items:
            m = re.fullmatch(r"(\d+)-(\d+)", token)
            if m:
                lo, hi = int(m.group(1)), int(m.group(2))
                if lo > hi:
                    raise RowError(f"--rows {spec!r}: the range {token!r} goes backwards (write {hi}-{lo})")
                out.numbers.update(range(lo, hi + 1))
            elif token.isdigit():
                out.numbers.add(int(token))
            else:
                out.ids.add(token)
        return out

    @classmethod
    def one(cls, text: str) -> "RowFilter":
        """One row: its number, run id or name (a name may hold spaces here)."""
        text = normal(text)
        return cls(numbers={int(text)}, spec=text, exact=True) if text.isdigit() else \
            cls(ids={text}, spec=text, exact=True)

    def check(self, table, what: str = "--rows") -> None:
        """Read the names again knowing the sheet's (a name with spaces between commas stays whole);
        RowError naming what ``--rows`` names that the sheet does not have."""
        names = {r.get(C.NAME) for r in table.rows} | {r.get(C.RUN_ID) for r in table.rows}
        if self.ids and self.spec and not self.exact:
            again = RowFilter.parse(self.spec, names)
            self.numbers |= again.numbers
            self.ids = again.ids
        size = len(table)
        valid = f"rows 1-{size}" if size > 1 else ("row 1" if size == 1 else "no rows")
        problems = []
        missing = sorted(n for n in self.numbers if not 1 <= n <= size)
        if missing:
            shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
            problems.append(f"there is no row {shown} (the sheet has {valid})")
        known = {normal(n) for n in names if n}
        unknown = sorted(t for t in self.ids if t not in known)
        if unknown:
            problems.append(", ".join(repr(t) for t in unknown)
                            + f" {'is' if len(unknown) == 1 else 'are'} not a row number ({valid}), "
                              "a run id or a name of this sheet"
                            + (f"; {QUOTING_HINT}" if any(" " in n for n in known) else ""))
        if problems:
            raise RowError(f"{what} {self.spec!r}: " + "; ".join(problems))

    def __contains__(self, row) -> bool:
        return (row.number in self.numbers or row.get(C.RUN_ID) in self.ids
                or (bool(row.get(C.NAME).strip()) and normal(row.get(C.NAME)) in self.ids))
