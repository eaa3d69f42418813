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

import shlex

QUOTING_HINT = "a name with spaces is written in quotes, e.g. --rows '\"eval plain\",3'"


class SelectorError(ValueError):
    pass


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
