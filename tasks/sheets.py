"""A sheet's finished rows and the result files in their run folders (for tasks that summarise
other rows: tables, effective robustness).

    rows = evaluated_rows("result_sheets/robustness.csv", "eval_metrics.json")
    sheets = config_sheets(cfg)                 # a row's `sheets`, else the sheet it runs in
    as_list(cfg.get("baselines"), ["baseline*"]); matches("baseline s0", ["baseline*"])
"""
from __future__ import annotations

import fnmatch
import json
import os
from typing import List, Sequence


def as_list(value, default: Sequence[str] = ()) -> List[str]:
    """A config value that is one text or a list of them, as a list (``default`` when empty)."""
    if not value:
        return list(default)
    return [value] if isinstance(value, str) else list(value)


def config_sheets(cfg: dict) -> List[str]:
    """The sheets a summarising row reads: its ``sheets``, else the sheet it runs in (SHEETRUN_SHEET)."""
    return as_list(cfg.get("sheets"), [os.environ["SHEETRUN_SHEET"]] if os.environ.get("SHEETRUN_SHEET") else [])


def matches(name: str, patterns: Sequence[str]) -> bool:
    """Whether a row name matches any of the shell-style ``patterns`` (``baseline *``)."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def evaluated_rows(location: str, filename: str) -> List[dict]:
    """The Completed rows of a sheet whose run folder holds ``filename``, in sheet order, each as
    ``{"sheet", "row", "run_id", "name", "results", "path"}`` (``path``: the file; ``name``: the row's name, else its run
    folder's). Relative run folders are taken from the sheet's project root."""
    from runner.sheet import open_sheet

    table = open_sheet(location).read()
    root = os.path.dirname(os.path.dirname(os.path.abspath(location)))
    sheet = os.path.splitext(os.path.basename(location))[0]
    found = []
    for row in table:
        folder = row.get("run_folder")
        if row.get("status") != "Completed" or not folder:
            continue
        path = os.path.join(folder if os.path.isabs(folder) else os.path.join(root, folder), filename)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                found.append({"sheet": sheet, "row": row.number, "run_id": row.get("run_id"),
                              "name": row.get("name") or os.path.basename(folder.rstrip("/")),
                              "results": json.load(f), "path": path})
    return found
