"""What the result-table scripts share: finding evaluated rows in sheets, and Markdown tables.

    from tables import REPO, collect, default_sheets, markdown
"""
from __future__ import annotations

import os
import sys
from typing import Dict, List

import pandas as pd

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from tasks.sheets import evaluated_rows  # noqa: E402,F401  (the scripts' shared reader)


def default_sheets() -> List[str]:
    """Every sheet in the project's result_sheets/."""
    folder = os.path.join(REPO, "result_sheets")
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".csv"))


def labelled(rows: List[dict]) -> Dict[str, dict]:
    """{label: results}, one entry per evaluated row — never one row's results under another's
    label. The label is the row's name; ``sheet: name`` when the rows come from more than one
    sheet; ``name (row N)`` when a sheet has that name twice."""
    sheets = list(dict.fromkeys(r["sheet"] for r in rows))
    names = {}
    for r in rows:
        names.setdefault((r["sheet"], r["name"]), []).append(r)
    out = {}
    for r in rows:
        label = r["name"] if len(names[(r["sheet"], r["name"])]) == 1 else f"{r['name']} (row {r['row']})"
        if len(sheets) > 1:
            label = f"{r['sheet']}: {label}"
        out[label] = r["results"]
    return out


def collect(sheets: List[str], filename: str, say=None) -> Dict[str, dict]:
    """:func:`labelled` over the evaluated rows of several sheets (``say(sheet, count)`` per sheet)."""
    rows = []
    for sheet in sheets:
        found = evaluated_rows(sheet, filename)
        if say is not None and found:
            say(sheet, len(found))
        rows += found
    return labelled(rows)


def markdown(df: pd.DataFrame, digits: int | None, best: str = "max") -> str:
    """A Markdown table of ``df`` (its index as the first columns); the best value of each column
    (``best``: max, min, or none) in bold. ``digits`` None: values as they are (text, numbers)."""
    if df.empty:
        return "(no results)"
    index_names = [n or "" for n in (df.index.names if df.index.nlevels > 1 else [df.index.name or "model"])]
    header = "| " + " | ".join(index_names + [str(c) for c in df.columns]) + " |"
    lines = [header, "|" + "---|" * (len(index_names) + len(df.columns))]
    target = df.max() if best == "max" else df.min() if best == "min" else None
    for idx, row in df.iterrows():
        cells = [str(c) for c in (idx if isinstance(idx, tuple) else (idx,))]
        for col in df.columns:
            v = row[col]
            text = "" if pd.isna(v) else str(v) if digits is None else f"{v:.{digits}f}"
            if target is not None and not pd.isna(v) and v == target[col] and len(df) > 1:
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
