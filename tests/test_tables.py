"""The result-table scripts: one table row per evaluated sheet row, whatever the names."""
import csv
import json
import os
import subprocess
import sys

from conftest import REPO

SCRIPT = os.path.join(REPO, "scripts", "generate_classify_tables.py")


def evaluated_sheet(root, sheet: str, rows: list[tuple[str, float]]) -> str:
    """A sheet of Completed evaluation rows (name, accuracy), each with its eval_metrics.json."""
    os.makedirs(root / "result_sheets", exist_ok=True)
    path = root / "result_sheets" / f"{sheet}.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "path_to_main", "path_to_default_config", "whether_to_run", "status", "run_id", "run_folder"])
        for i, (name, acc) in enumerate(rows):
            folder = f"./experiments/{sheet}/run{i}"
            os.makedirs(root / folder)
            result = {"acc1": acc, "NLL": 1 - acc, "ECE": acc / 10, "brier": 0.5, "PRR_total_uncertainty": None}
            with open(root / folder / "eval_metrics.json", "w") as g:
                json.dump({"kind": "single", "members": 1, "groups": {},
                           "results": {"in_distribution": result, "ood/unseen": {"AUROC_total_uncertainty": acc}}}, g)
            w.writerow([name, "tasks/classify/evaluate.py", "c.yaml", "0", "Completed", f"r{sheet}{i}", folder])
    return str(path)


def table(out) -> dict:
    with open(out / "domains.csv") as f:
        lines = list(csv.reader(f))
    return {line[0]: line[1:] for line in lines[2:]}          # two header lines: metric, domain


def test_a_copy_of_a_sheet_run_with_another_seed_keeps_its_own_rows(tmp_path):
    original = evaluated_sheet(tmp_path, "distillation", [("eval a", 0.91), ("eval b", 0.80)])
    copy = evaluated_sheet(tmp_path, "distillation_seed1", [("eval a", 0.42), ("eval b", 0.33)])
    out = tmp_path / "tables"
    proc = subprocess.run([sys.executable, SCRIPT, original, copy, "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = table(out)
    assert sorted(rows) == ["distillation: eval a", "distillation: eval b",
                            "distillation_seed1: eval a", "distillation_seed1: eval b"]
    # each row's numbers are its own eval_metrics.json's
    assert float(rows["distillation: eval a"][0]) == 91.0 and float(rows["distillation_seed1: eval a"][0]) == 42.0
    assert "| distillation_seed1: eval b |" in proc.stdout


def test_two_rows_of_one_name_in_a_sheet_are_both_shown(tmp_path):
    sheet = evaluated_sheet(tmp_path, "evals", [("eval", 0.7), ("eval", 0.6), ("other", 0.5)])
    out = tmp_path / "tables"
    proc = subprocess.run([sys.executable, SCRIPT, sheet, "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = table(out)
    assert sorted(rows) == ["eval (row 1)", "eval (row 2)", "other"]
    assert float(rows["eval (row 2)"][0]) == 60.0
