"""Decoding sheet cells into config values (the stnd / stuned conventions).

=================  ======================================
cell text          value
=================  ======================================
``12``, ``-3``     int
``0.5``, ``1e-3``  float
``true``/``FALSE`` bool (any case)
``None``/``null``  None
``[a b 3]``        list, space separated, nested allowed
``'007'``          the string ``007`` (quotes force text)
``EMPTY_STRING``   ``""``
``Default``        keep the default config's value
(empty cell)       keep the default config's value
anything else      the text itself
=================  ======================================

Cell values are data: nothing here evaluates them.
"""
from __future__ import annotations

import os
import re

from runner.core import credentials
from runner.core.errors import RowError

KEEP_DEFAULT = object()          # sentinel: leave the default config's value alone
EMPTY_STRING = "EMPTY_STRING"
DEFAULT_WORDS = frozenset({"Default", "default", "DEFAULT"})

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")
_ROW = "__ROW__"
_COL = re.compile(r"__COL:(.*?)__")
# stnd's placeholders for what a cell cannot easily hold
_CHARACTERS = {"__COMMA__": ",", "__Q__": '"', "__B__": "\\"}
RUNNER_PROGRAM = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "run_cmd.py")


_PATH_VAR = re.compile(r"<\$([A-Za-z0-9_-]+)>")        # stnd: "<$VAR>" in a path is that variable
NO_NORMALISATION = "!!!"                              # stnd: a path starting with it is taken as it is


class CellError(RowError):
    """A cell cannot be decoded; the message names the problem."""


def decode(text: str):
    """Decode one cell's text into a config value (or ``KEEP_DEFAULT``)."""
    s = text.strip()
    if s == "" or s in DEFAULT_WORDS:
        return KEEP_DEFAULT
    return _decode_value(s)


def _decode_value(s: str):
    if s == EMPTY_STRING:
        return ""
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    if s[0] in "'\"":
        raise CellError(f"unbalanced quote in {s!r}")
    if s.startswith("["):
        return _decode_list(s)
    if s.endswith("]"):
        raise CellError(f"unbalanced ']' in {s!r}")
    low = s.lower()
    if low == "true":
        return True
    if low == "false":
        return False
    if s in ("None", "none", "NONE", "null", "NULL", "Null"):     # NONE: as stnd reads it
        return None
    if _INT.fullmatch(s):
        return int(s)
    if _FLOAT.fullmatch(s):
        return float(s)
    return s


DECIMAL_COMMA = re.compile(r"\s*[+-]?\d+,\d+(?:[eE][+-]?\d+)?\s*")     # 0,01 as comma-decimal locales write it


def _decode_list(s: str) -> list:
    if not s.endswith("]"):
        raise CellError(f"list {s!r} has no closing ']'")
    items, depth, token = [], 0, []
    for ch in s[1:-1] + " ":
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise CellError(f"unbalanced ']' in {s!r}")
        if ch.isspace() and depth == 0:
            if token:
                items.append(_decode_value("".join(token)))
                token = []
            continue
        token.append(ch)
    if depth:
        raise CellError(f"unbalanced '[' in {s!r}")
    return items


def parse_whether_to_run(text: str) -> bool:
    """Whether a row is selected, as stnd reads it: any non-zero integer runs the row.

    ``1``, ``2``, ``-1``, ``1.0`` and ``TRUE`` (any case) run it; ``0``, ``0.0``,
    ``FALSE`` and an empty cell do not; anything else raises CellError.
    """
    s = text.strip()
    if s == "" or s.lower() == "false":
        return False
    if s.lower() == "true":
        return True
    if _INT.fullmatch(s):
        return int(s) != 0
    if _FLOAT.fullmatch(s) and float(s).is_integer():
        return float(s) != 0
    raise CellError(f"whether_to_run must be a whole number (1 runs the row, 0 does not) or TRUE/FALSE, "
                    f"got {text!r}")


def fill_placeholders(text: str, row_number: int, row: dict[str, str], worksheet: str = "") -> str:
    """Replace the placeholders of a cell, in stnd's order.

    ``__ROW__`` the row number, ``__WORKSHEET__`` the worksheet's name (a CSV
    file's name without its extension), ``__RUNNER__`` the path of sheetrun's
    runner program (``runner/run_cmd.py``), ``__COMMA__`` ``,``, ``__Q__`` ``"``,
    ``__B__`` a backslash, and ``__COL:name__`` that row's ``name`` cell.
    """
    if "__" not in text:
        return text

    def simple(value: str) -> str:
        value = value.replace(_ROW, str(row_number)).replace("__WORKSHEET__", worksheet)
        value = value.replace("__RUNNER__", RUNNER_PROGRAM)
        for placeholder, character in _CHARACTERS.items():
            value = value.replace(placeholder, character)
        return value

    text = simple(text)

    def column(m: re.Match) -> str:
        name = m.group(1)
        if name not in row:
            raise CellError(f"__COL:{name}__ names no column of this sheet")
        return simple(row[name])

    return _COL.sub(column, text)


def resolve_path(path: str, root: str) -> str:
    """A path from a cell: ``<$VAR>`` is that environment variable, ``~`` the home folder,
    ``!!!path`` is taken as it is; anything relative is under the project root."""
    if path.startswith(NO_NORMALISATION):
        return path[len(NO_NORMALISATION):]
    names = _PATH_VAR.findall(path)
    for name in names:
        if credentials.is_credential(name):
            raise CellError(f"{path!r}: <${name}> is sheetrun's own credential and is never given to a row")
    missing = [name for name in names if name not in os.environ]
    if missing:
        raise CellError(f"{path!r}: the environment variable {missing[0]} is not set")
    path = _PATH_VAR.sub(lambda m: os.environ[m.group(1)], path)
    return os.path.normpath(os.path.join(root, os.path.expanduser(path)))


# sweeps: {a | b | c} and {<start end step is_log>} (runner.launch.sweeps expands them into rows)
SWEEP_ITEM_SEPARATOR = " | "


def _sweep_number(text: str):
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        return float(text)


def _sweep_truthy(text: str) -> bool:
    """``is_log`` as stnd reads it: its decoded value's truth (False, 0, None: no; other text: yes)."""
    text = text.strip()
    if text.lower() in ("false", "none", "null", ""):
        return False
    try:
        return bool(_sweep_number(text))
    except ValueError:
        return True


def _sweep_range(spec: str) -> list[str]:
    parts = spec.split()
    if len(parts) != 4:
        raise CellError(f"{{<{spec}>}} must hold four values: start end step is_log")
    try:
        start, end, step = (_sweep_number(p) for p in parts[:3])
    except ValueError:
        raise CellError(f"{{<{spec}>}}: start, end and step must be numbers") from None
    log = _sweep_truthy(parts[3])
    if (log and step <= 1) or (not log and step <= 0):
        raise CellError(f"{{<{spec}>}}: the range must increase (step > {1 if log else 0})")
    # counted, not accumulated: stnd adds the steps up, so {<0 1 0.1 False>} there ends in
    # 0.9999999999999999; here it ends in 0.9, as a person means
    values, i = [], 0
    while len(values) < 10000:
        value = start * step ** i if log else start + i * step
        if value >= end or (isinstance(value, float) and abs(value - end) <= 1e-9 * max(1.0, abs(end))):
            break
        values.append(value)
        i += 1
    return [str(v) if isinstance(v, int) else format(v, ".12g") for v in values]


def sweep_values(text: str) -> list[str] | None:
    """The values a cell sweeps over, or None when it is an ordinary cell."""
    value = text.strip()
    if len(value) < 2 or value[0] != "{" or value[-1] != "}":
        return None
    inner = value[1:-1]
    if len(inner) >= 2 and inner[0] == "<" and inner[-1] == ">":
        return _sweep_range(inner[1:-1])
    if SWEEP_ITEM_SEPARATOR.strip() not in inner:
        return None         # {lr: 0.1} is a YAML mapping, not a sweep of one value
    items = [item.strip() for item in inner.split(SWEEP_ITEM_SEPARATOR.strip())]
    if any(item == "" for item in items):
        raise CellError(f"{text!r}: a sweep needs a value between each ' | ': {{a | b | c}}")
    return items
