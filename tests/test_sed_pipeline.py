"""The SED tasks end to end: pretrain -> cache -> train -> evaluate, in-process and through sheetrun."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import REPO, sed_config, shipped_sheet, write_yaml
from tasks.sed import cache_features, evaluate, pretrain_backbone, train_ensemble

CORRUPTIONS = ["contrast", "gaussian_noise", "pixelate"]


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    """A briefly pretrained small ViT and its cached digits features."""
    tmp = tmp_path_factory.mktemp("sed")
    pre = sed_config("pretrain_backbone", save_path=str(tmp / "vit.pt"), device="cpu",
                     **{"train/epochs": 15, "model/kwargs/depth": 2})
    pretrain_backbone.main(["--config", write_yaml(tmp / "pre.yaml", pre)])
    cfg = sed_config("cache_features", cache_dir=str(tmp / "cache"), device="cpu",
                     **{"backbone/checkpoint": str(tmp / "vit.pt"), "catalog/C/corruptions": CORRUPTIONS})
    cache_features.main(["--config", write_yaml(tmp / "cache.yaml", cfg)])
    return tmp


def train_and_evaluate(tmp, name, **changes):
    cfg = sed_config("train_ensemble", cache_dir=str(tmp / "cache"), save_path=str(tmp / f"{name}.pt"),
                     device="cpu", **changes)
    train_ensemble.main(["--config", write_yaml(tmp / f"{name}_train.yaml", cfg)])
    ev = sed_config("evaluate", cache_dir=str(tmp / "cache"), model=str(tmp / f"{name}.pt"), device="cpu",
                    results_path=str(tmp / f"{name}.json"))
    evaluate.main(["--config", write_yaml(tmp / f"{name}_eval.yaml", ev)])
    with open(tmp / f"{name}.json") as f:
        return json.load(f)


def test_a2d_raises_diversity_on_ood_data(cached):
    plain = train_and_evaluate(cached, "plain", **{"loss/lam_manual": 0.0, "epochs": 6})
    a2d = train_and_evaluate(cached, "a2d", **{"loss/lam_manual": 0.4, "epochs": 6})
    for result in (plain, a2d):
        assert set(result["accuracy"]) == {"in_val", "C-1", "C-5"}
        assert result["accuracy"]["C-1"]["sets"] == len(CORRUPTIONS)
        assert set(result["ood_detection"]["unseen_classes"]) >= {"pds", "distinct_predictions", "energy"}
        acc = result["accuracy"]["in_val"]
        assert acc["worst_member_acc"] <= acc["mean_member_acc"] <= acc["best_member_acc"]
        assert acc["ensemble_acc"] > 0.5
        # one best member, chosen on in_val, reported on every set (not each set's own best)
        best, worst = result["best_member"], result["worst_member"]
        assert result["members_chosen_on"] == "in_val"
        assert acc["best_member_acc"] == max(result["sets"]["in_val"]["member_acc"])
        c5 = [result["sets"][f"{c}_5"]["member_acc"] for c in CORRUPTIONS]
        assert result["accuracy"]["C-5"]["best_member_acc"] == pytest.approx(np.mean([a[best] for a in c5]))
        assert result["accuracy"]["C-5"]["worst_member_acc"] == pytest.approx(np.mean([a[worst] for a in c5]))
    def mean_score(result, sets, score):
        return sum(result["sets"][s]["mean_scores"][score] for s in sets) / len(sets)

    c5 = [f"{c}_5" for c in CORRUPTIONS]
    for sets in (["unseen_classes"], c5):                 # semantic and covariate OOD
        for score in ("pds", "distinct_predictions"):
            assert mean_score(a2d, sets, score) > mean_score(plain, sets, score), (sets, score)


def test_frozen_first_epoch_and_epochs_over_chunks(cached, capsys):
    """The authors' protocol: epoch 1 only measures (the ensemble it reports is the untouched
    initial one), the lr follows CosineAnnealingLR per updating epoch, epochs pass over chunks."""
    cfg = sed_config("train_ensemble", cache_dir=str(cached / "cache"), device="cpu",
                     save_path=str(cached / "frozen.pt"), epochs=3, freeze_epochs=1, batch_size=32,
                     **{"optim/schedule": "cosine_epochs", "optim/t_max": 15, "optim/lr": 0.01})
    initial, entry = train_ensemble.build(cfg)
    from tasks.sed.features import CachedFeatures

    val = CachedFeatures(train_ensemble.one_set(cfg["cache_dir"], "in_val")["path"])
    initial_acc = train_ensemble.ensemble_accuracy(initial, val, torch.device("cpu"))
    n = CachedFeatures(entry["path"]).n
    cfg["epoch_rows"] = n // 4
    train_ensemble.main(["--config", write_yaml(cached / "frozen.yaml", cfg)])
    out = capsys.readouterr().out
    assert f"{(n // 4) // 32} batches per epoch (epochs of {n // 4} rows), the first 1 epoch(s) frozen" in out
    hist = torch.load(cached / "frozen.pt", weights_only=False)["history"]
    assert hist[0]["lr"] == 0.0 and hist[0]["val_acc"] == pytest.approx(initial_acc)
    assert hist[1]["lr"] == pytest.approx(0.01) and hist[2]["lr"] == pytest.approx(0.01 * 0.5 * (1 + np.cos(np.pi / 15)))
    assert hist[2]["val_acc"] != pytest.approx(initial_acc)          # the updating epochs did train


@pytest.mark.timeout(2400)          # minutes on a quiet 2-core machine; more with its cores busy
def test_training_resumes_after_sigterm_as_if_never_stopped(cached):
    common = {"epochs": 20, "batch_size": 16, "val_set": None, "ensemble/members": 4}
    cfg = sed_config("train_ensemble", cache_dir=str(cached / "cache"), device="cpu",
                     save_path=str(cached / "whole.pt"), **common)
    train_ensemble.main(["--config", write_yaml(cached / "whole.yaml", cfg)])
    cfg["save_path"] = str(cached / "stopped.pt")
    path = write_yaml(cached / "stopped.yaml", cfg)
    ckpt = cached / "stopped.pt.last.pt"
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "tasks", "sed", "train_ensemble.py"), "--config", path],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "checkpoint saved" in out and not (cached / "stopped.pt").exists()
    resumed = subprocess.run([sys.executable, os.path.join(REPO, "tasks", "sed", "train_ensemble.py"), "--config", path],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout
    assert not ckpt.exists()                              # finished runs leave no checkpoint
    whole = torch.load(cached / "whole.pt", weights_only=False)
    stopped = torch.load(cached / "stopped.pt", weights_only=False)
    for name, value in whole["params"].items():
        torch.testing.assert_close(stopped["params"][name], value, rtol=1e-5, atol=1e-6)
    assert [h["epoch"] for h in stopped["history"]] == list(range(1, 21))


@pytest.mark.timeout(2400)          # minutes on a quiet 2-core machine; more with its cores busy
def test_demo_sheet_end_to_end_through_sheetrun(tmp_path):
    """The README's main job at small sizes: every row Completes and the tables come out."""
    root = tmp_path / "project"
    for part in ("default_configs", "result_sheets", "scripts"):
        shutil.copytree(os.path.join(REPO, part), root / part)
    shutil.copytree(os.path.join(REPO, "tasks"), root / "tasks", ignore=shutil.ignore_patterns("__pycache__"))
    small = {"pretrain_backbone": {"train/epochs": 4}, "train_ensemble": {"epochs": 2},
             "cache_features": {"catalog/C/corruptions": ["contrast", "pixelate"]}}
    for name, changes in small.items():
        cfg = sed_config(name, **changes)
        write_yaml(root / "default_configs" / "sed" / f"{name}.yaml", cfg)
    sheet = root / "result_sheets" / "demo.csv"
    # whatever state the tracked sheet is in (the Quick start may have run it here): as it ships
    header, shipped = shipped_sheet(os.path.join(REPO, "result_sheets", "demo.csv"))
    with open(sheet, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(shipped)
    proc = subprocess.run([sys.executable, "-m", "runner", "run", str(sheet)], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    rows = list(csv.DictReader(open(sheet)))
    assert proc.returncode == 0, (proc.stdout[-2000:], [(r["name"], r["error"]) for r in rows])
    assert [r["status"] for r in rows] == ["Completed"] * 8
    evals = [r for r in rows if r["path_to_main"].endswith("evaluate.py")]
    for r in evals:
        assert 0 < float(r["acc_in_val"]) <= 100 and 0 <= float(r["auroc_pds_unseen_classes"]) <= 1
        assert os.path.exists(os.path.join(root, r["run_folder"], "eval_results.json"))
    assert all(r["val_acc"] for r in rows if r["path_to_main"].endswith("train_ensemble.py"))
    out = tmp_path / "tables"
    tables = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "generate_result_tables.py"),
                             str(sheet), "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert tables.returncode == 0, tables.stderr
    assert "| eval plain |" in tables.stdout and "| eval ood_det | pds |" in tables.stdout
    for name in ("ood_gen.md", "ood_gen.csv", "ood_det.md", "ood_det.csv", "results.png"):
        assert (out / name).stat().st_size > 0
    import pandas as pd

    gen = pd.read_csv(out / "ood_gen.csv", header=[0, 1], index_col=0)
    assert list(gen.index) == ["eval plain", "eval ood_gen", "eval ood_det"]
    metrics = ["ensemble acc (%)", "best member acc (%)", "soup acc (%)", "#distinct predictions", "PDS"]
    assert list(dict.fromkeys(gen.columns.get_level_values(0))) == metrics
    assert list(gen["PDS"].columns) == ["in_val", "C-1", "C-5"]
    for r in evals:                                     # the table shows what the rows say
        assert gen.loc[r["name"], ("ensemble acc (%)", "C-5")] == pytest.approx(float(r["acc_C-5"]), abs=0.01)
    assert (gen["PDS"] >= 1).all().all() and (gen["best member acc (%)"] <= 100).all().all()
    # with no sheet named, every sheet in result_sheets/ with evaluated rows is read
    default = subprocess.run([sys.executable, os.path.join(root, "scripts", "generate_result_tables.py"),
                              "--out", str(tmp_path / "tables2")], capture_output=True, text=True, timeout=120,
                             cwd=root)
    assert default.returncode == 0, default.stderr
    assert "result_sheets/demo.csv: 3 evaluated model(s)" in default.stdout
