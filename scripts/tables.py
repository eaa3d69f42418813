"""What the result-table scripts share: finding evaluated rows in sheets, and Markdown tables.

    from tables import REPO, default_sheets, evaluated_rows, markdown
"""
from __future__ import annotations

import json
import os
import sys
from typing import Dict, List

import pandas as pd

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from runner.sheet import open_sheet  # noqa: E402


def default_sheets() -> List[str]:
    """Every sheet in the project's result_sheets/."""
    folder = os.path.join(REPO, "result_sheets")
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".csv"))


def evaluated_rows(location: str, filename: str) -> Dict[str, dict]:
    """{row name (else run folder name): parsed JSON} for the Completed rows of a sheet whose run
    folder holds ``filename``. Relative run folders are taken from the sheet's project root."""
    table = open_sheet(location).read()
    root = os.path.dirname(os.path.dirname(os.path.abspath(location)))
    found = {}
    for row in table:
        folder = row.get("run_folder")
        if row.get("status") != "Completed" or not folder:
            continue
        path = os.path.join(folder if os.path.isabs(folder) else os.path.join(root, folder), filename)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                found[row.get("name") or os.path.basename(folder.rstrip("/"))] = json.load(f)
    return found


def markdown(df: pd.DataFrame, digits: int, best: str = "max") -> str:
    """A Markdown table of ``df`` (its index as the first columns); the best value of each column
    (``best``: max, min, or none) in bold."""
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
            text = "" if pd.isna(v) else f"{v:.{digits}f}"
            if target is not None and not pd.isna(v) and v == target[col] and len(df) > 1:
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
