"""A sheet's finished rows and the result files in their run folders (for tasks that summarise
other rows: tables, effective robustness).

    rows = evaluated_rows("result_sheets/robustness.csv", "eval_metrics.json")
"""
from __future__ import annotations

import json
import os
from typing import List


def evaluated_rows(location: str, filename: str) -> List[dict]:
    """The Completed rows of a sheet whose run folder holds ``filename``, in sheet order, each as
    ``{"sheet", "row", "run_id", "name", "results"}`` (``name``: the row's name, else its run
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
                              "results": json.load(f)})
    return found
