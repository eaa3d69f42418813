"""sheetrun summarize and compare: results across rows, checked against known values."""
import csv
import io
import os

import pytest
from conftest import BASE, CFG

from runner.results.summary import mean_std

SEEDED = """
import sys, yaml
from runner import report
cfg = yaml.safe_load(open(sys.argv[2]))
report(score=cfg["x"] * 10 + cfg["nested"]["depth"], half=cfg["x"] / 2, tag="text is not summarised")
"""


def test_mean_std_are_the_sample_statistics():
    stat = mean_std([11.0, 12.0, 13.0])
    assert (stat.n, stat.mean, stat.std) == (3, 12.0, 1.0)
    stat = mean_std([0.1, 0.2, 0.4, 0.8])
    assert stat.mean == pytest.approx(0.375) and stat.std == pytest.approx(0.3095695936834452, rel=1e-12)
    assert mean_std([5.0]).std is None
    assert mean_std([0.1] * 10).std == pytest.approx(0.0, abs=1e-15)


def _seeded_sheet(project):
    project.write("scripts/seeded.py", SEEDED)
    # x is the setting, nested/depth plays the seed (delta:nested/seed would be the usual name)
    rows = [["scripts/seeded.py", CFG, "1", f"x{x}s{s}", str(x), str(s), ""] for x in (1, 2) for s in (0, 1, 2)]
    rows.append(["scripts/crash.py", CFG, "1", "broken", "3", "0", ""])
    return project.sheet(BASE + ["name", "delta:x", "delta:nested/depth", "notes"], rows)


def test_summarize_groups_by_setting_and_gives_known_means_and_stds(project):
    path = _seeded_sheet(project)
    project.sheetrun("run", path, "--jobs", "2", check=1)
    out = project.sheetrun("summarize", path, "--by", "x", "--format", "csv", check=0)
    records = list(csv.DictReader(io.StringIO(out.stdout)))
    by_group = {r["group"]: r for r in records}
    assert set(by_group) == {"x=1", "x=2"}                         # the failed x=3 row is left out
    one, two = by_group["x=1"], by_group["x=2"]
    assert (float(one["score mean"]), float(one["score std"]), one["score n"]) == (11.0, 1.0, "3")
    assert (float(two["score mean"]), float(two["score std"]), two["score n"]) == (21.0, 1.0, "3")
    assert float(one["half mean"]) == 0.5 and float(one["half std"]) == 0.0
    assert one["rows"] == "1-3" and two["rows"] == "4-6"
    assert "tag mean" not in one                                  # text is not a number to average
    assert "left out: 1 Failed (rows 7)" in out.stderr
    # by default: grouped by every input column but those named like a seed
    project.write("default_configs/seeded.yaml", "x: 1\nseed: 0\nnested:\n  depth: 0\n")
    seeded = project.sheet(BASE + ["name", "delta:x", "delta:seed"],
                           [["scripts/seeded.py", "default_configs/seeded.yaml", "1", f"x{x}s{s}", str(x), str(s)]
                            for x in (1, 2) for s in (0, 1, 2)], name="seeded.csv")
    project.sheetrun("run", seeded, "--jobs", "2", check=0)
    table = project.sheetrun("summarize", seeded, check=0)
    assert "grouped by: path_to_main, path_to_default_config, delta:x" in table.stderr       # not delta:seed
    rows = {line.replace("│", " ").split()[0]: line for line in table.stdout.splitlines() if "x=" in line}
    assert "10 ± 0 (3)" in rows["x=1"] and "0.5 ± 0 (3)" in rows["x=1"]          # depth 0: score = 10 x
    assert "20 ± 0 (3)" in rows["x=2"] and "1 ± 0 (3)" in rows["x=2"]


def test_stale_rows_are_left_out_and_counted(project):
    path = _seeded_sheet(project)
    project.sheetrun("run", path, "--jobs", "2", check=1)
    text = open(path).read().splitlines()
    row1 = next(csv.reader([text[1]]))
    header = next(csv.reader([text[0]]))
    row1[header.index("whether_to_run")] = "1"          # changed, waiting to run again
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(row1)
    text[1] = buf.getvalue()
    open(path, "w").write("\n".join(text) + "\n")
    out = project.sheetrun("summarize", path, "--by", "x", "--format", "markdown", check=0)
    assert "| x=1 | 2-3 | 11.5 ± 0.7071 (2) |" in out.stdout
    assert "1 stale (rows 1)" in out.stderr and "1 Failed (rows 7)" in out.stderr


def test_summary_sheet_beside_the_sheet_is_replaced_but_a_persons_file_never(project):
    path = _seeded_sheet(project)
    project.sheetrun("run", path, "--jobs", "2", check=1)
    for _ in range(2):                                     # written, then replaced
        out = project.sheetrun("summarize", path, "--by", "x", "--write", check=0)
        assert "summary written to" in out.stdout
    summary = list(csv.DictReader(open(os.path.join(project.sheets, "sheet_summary.csv"))))
    assert [r["group"] for r in summary] == ["x=1", "x=2"] and float(summary[1]["score mean"]) == 21.0
    project.write("result_sheets/sheet_summary.csv", "my,own\n1,2\n")
    out = project.sheetrun("summarize", path, "--by", "x", "--write", check=2)
    assert "already has content; not overwritten" in out.stderr
    assert open(os.path.join(project.sheets, "sheet_summary.csv")).read() == "my,own\n1,2\n"


def test_summarize_the_demo_sheet_over_seeds(project):
    """The demo's evaluation run under three seeds: the summary's numbers are those of the rows."""
    import shutil
    import statistics

    from conftest import REPO, sed_config, shipped_sheet, write_yaml

    for part in ("default_configs", "tasks"):
        shutil.copytree(os.path.join(REPO, part), os.path.join(project.root, part),
                        ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    small = {"pretrain_backbone": {"train/epochs": 3}, "train_ensemble": {"epochs": 2},
             "cache_features": {"catalog/C/corruptions": ["contrast"], "catalog/in_train/epochs": 1}}
    for name, changes in small.items():
        write_yaml(os.path.join(project.root, "default_configs", "sed", f"{name}.yaml"), sed_config(name, **changes))
    columns, demo = shipped_sheet(os.path.join(REPO, "result_sheets", "demo.csv"))
    header = columns + ["delta:seed"]
    rows = [[r[c] for c in columns] + [""] for r in demo[:2]]          # backbone, cache
    for seed in (0, 1, 2):
        plain = dict(demo[2], name=f"plain s{seed}", **{"delta:save_path": f"models/ensembles/plain_{seed}.pt"})
        ev = dict(demo[5], name=f"eval s{seed}", depends_on=f"plain s{seed}",
                  **{"delta:model": f"models/ensembles/plain_{seed}.pt"})
        rows += [[plain[c] for c in columns] + [str(seed)], [ev[c] for c in columns] + [""]]
    path = project.sheet(header, rows, name="demo.csv")
    proc = project.sheetrun("run", path, "--jobs", "2", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sheet = list(csv.DictReader(open(path)))
    evals = [r for r in sheet if r["name"].startswith("eval")]
    out = project.sheetrun("summarize", path, "--by", "path_to_main", "--show", "acc_in_val,acc_C-5",
                           "--format", "csv", check=0)
    records = {r["group"]: r for r in csv.DictReader(io.StringIO(out.stdout))}
    ev = next(r for g, r in records.items() if "evaluate.py" in g)
    for metric in ("acc_in_val", "acc_C-5"):
        values = [float(r[metric]) for r in evals]
        assert len(set(values)) > 1, values                           # the seeds made a difference
        assert float(ev[f"{metric} mean"]) == pytest.approx(statistics.mean(values), rel=1e-9)
        assert float(ev[f"{metric} std"]) == pytest.approx(statistics.stdev(values), rel=1e-9)
        assert ev[f"{metric} n"] == "3"


def test_compare_shows_what_differs_first_and_the_metrics(project):
    path = project.sheet(BASE + ["name", "delta:x", "delta:lr"], [["scripts/ok.py", CFG, "1", "a", "1", "0.1"],
                                                                  ["scripts/ok.py", CFG, "1", "b", "3", "0.1"],
                                                                  ["scripts/ok.py", CFG, "0", "c", "5", "0.2"]])
    project.sheetrun("run", path, check=0)
    out = project.sheetrun("compare", path, "a", "b", check=0).stdout
    lines = out.splitlines()
    differ = next(i for i, line in enumerate(lines) if "config: 1 key(s) differ" in line)
    assert any(" x " in line.replace("│", " ") and " 1 " in line and " 3 " in line for line in lines[differ:differ + 6])
    assert "keys are the same" in out
    score = next(line for line in lines if line.replace("│", " ").split()[:1] == ["score"])
    assert score.replace("│", " ").split() == ["score", "2", "6", "4"]
    not_run = project.sheetrun("compare", path, "a", "c", check=0).stdout
    assert "[not run]" in not_run and "config: 2 key(s) differ" in not_run
    assert "there is no row 9" in project.sheetrun("compare", path, "a", "9", check=2).stderr
