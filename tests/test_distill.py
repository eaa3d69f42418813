"""Distillation losses against their formulas, batched teachers against a loop, and the
distillation sheet end to end through sheetrun."""
import csv
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import REPO, copy_project
from tasks.distill import losses as L
from tasks.models import create_model
from tasks.models.ensemble import Ensemble


def softmax(z):
    return torch.softmax(torch.as_tensor(z, dtype=torch.float64), -1)


@pytest.fixture
def teachers():
    g = torch.Generator().manual_seed(0)
    return softmax(torch.randn(5, 16, 10, generator=g, dtype=torch.float64) * 2)


def test_proxy_loss_is_zero_when_the_dirichlets_coincide_and_positive_otherwise(teachers):
    beta = L.proxy_targets(teachers, target_offset=1.0)
    z = torch.log(beta - 1.0)                         # exp(z) + model_offset == beta
    assert L.proxy(z, teachers, model_offset=1.0, target_offset=1.0).item() == pytest.approx(0.0, abs=1e-8)
    assert L.proxy(z + 0.3 * torch.randn_like(z), teachers, model_offset=1.0, target_offset=1.0).item() > 1e-3
    # the KL against torch.distributions
    alpha = beta * 1.7
    ref = torch.distributions.kl_divergence(torch.distributions.Dirichlet(beta), torch.distributions.Dirichlet(alpha))
    torch.testing.assert_close(L.dirichlet_kl(beta, alpha), ref)


def test_proxy_loss_is_finite_on_memorised_data():
    # members that agree and are all but certain: MKL ~ 0, beta0 would be enormous
    certain = torch.full((5, 8, 10), 1e-9, dtype=torch.float64)
    certain[:, torch.arange(8), torch.arange(8)] = 1 - 9e-9
    for z in (torch.zeros(8, 10), torch.full((8, 10), 200.0), torch.full((8, 10), -200.0)):
        value = L.proxy(z, certain, model_offset=1.0, target_offset=1.0)
        assert torch.isfinite(value), z[0, 0]
    with pytest.raises(FloatingPointError):
        L.forward_kl(torch.full((2, 3), float("nan")), softmax(torch.zeros(1, 2, 3)))


def test_forward_kl_and_dirichlet_likelihood_formulas(teachers):
    mean = teachers.mean(0)
    assert L.forward_kl(mean.log(), teachers).item() == pytest.approx(0.0, abs=1e-12)
    z = torch.randn(16, 10, dtype=torch.float64)
    expected = (mean * (mean.log() - torch.log_softmax(z, -1))).sum(-1).mean()
    assert L.forward_kl(z, teachers).item() == pytest.approx(expected.item())
    alpha = L.concentrations(z, 1.0)
    ref = -torch.stack([torch.distributions.Dirichlet(alpha).log_prob(teachers[m]) for m in range(5)]).mean()
    assert L.dirichlet_likelihood(z, teachers, model_offset=1.0).item() == pytest.approx(ref.item(), rel=1e-9)


def test_batched_teachers_equal_the_loop():
    torch.manual_seed(0)
    kinds = ["small_cnn", "small_cnn", "cifar_resnet18", "cifar_resnet18", "small_cnn", "small_cnn"]
    models = [create_model(k, num_classes=5, width=8).eval() for k in kinds]
    for m in models:                                   # non-trivial batch-norm statistics
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.normal_()
                mod.running_var.uniform_(0.5, 2.0)
    ens = Ensemble(models, ["cnn"] * 2 + ["resnet"] * 2 + ["cnn"] * 2)    # interleaved groups keep their order
    x = torch.randn(6, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(ens(x), torch.stack([m(x) for m in models]), rtol=1e-5, atol=1e-5)
    assert len(ens.groups) == 2


@pytest.mark.timeout(2400)          # minutes on a quiet 2-core machine; more with its cores busy
def test_distillation_sheet_end_to_end_through_sheetrun(tmp_path):
    """Members, MIMO, two students and every evaluation Complete, and the students are what they say."""
    import yaml

    root = copy_project(tmp_path / "project")
    for name in ("member", "mimo", "student"):                 # shorter runs
        path = root / "default_configs" / "distill" / f"{name}.yaml"
        cfg = yaml.safe_load(path.read_text())
        cfg["epochs"] = 3
        path.write_text(yaml.safe_dump(cfg))
    ev = root / "default_configs" / "distill" / "evaluate.yaml"
    cfg = yaml.safe_load(ev.read_text())
    cfg["data"]["domains"]["C"]["corruptions"] = ["contrast", "gaussian_blur"]
    ev.write_text(yaml.safe_dump(cfg))
    sheet = root / "result_sheets" / "distillation.csv"
    subprocess.run([sys.executable, "-m", "runner", "reset", str(sheet)], check=True, capture_output=True)
    proc = subprocess.run([sys.executable, "-m", "runner", "run", str(sheet), "--root", str(root), "--jobs", "2"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    rows = list(csv.DictReader(open(sheet)))
    assert proc.returncode == 0, (proc.stdout[-3000:], [(r["name"], r.get("error")) for r in rows])
    assert [r["status"] for r in rows] == ["Completed"] * len(rows)
    ev_rows = {r["name"]: r for r in rows if r["name"].startswith("eval")}
    for r in ev_rows.values():
        assert 0 < float(r["acc"]) <= 100 and 0 <= float(r["ece"]) <= 1
        assert 0 <= float(r["auroc_unseen_classes"]) <= 1
        metrics = json.load(open(os.path.join(root, r["run_folder"], "eval_metrics.json")))
        assert {"in_distribution", "unseen_classes", "ood/unseen_classes", "mean/C-5"} <= set(metrics["results"])
    kinds = {name: json.load(open(os.path.join(root, r["run_folder"], "eval_metrics.json")))["kind"]
             for name, r in ev_rows.items()}
    assert kinds == {"eval member_0": "single", "eval ensemble": "ensemble", "eval ensemble proxy": "proxy",
                     "eval mimo": "mimo", "eval student_fkl": "single", "eval student_proxy": "dirichlet"}
    # each model's last validation (in training) is evaluate.py's in-distribution result: one reading
    for name in ("member_0", "mimo", "student_fkl", "student_proxy"):
        last = torch.load(root / "models" / "distillation" / f"{name}.pt", weights_only=False)["history"][-1]
        result = json.load(open(os.path.join(root, ev_rows[f"eval {name}"]["run_folder"], "eval_metrics.json")))
        assert last["val_acc"] == pytest.approx(result["results"]["in_distribution"]["acc1"], abs=1e-12), name
        assert last["val_nll"] == pytest.approx(result["results"]["in_distribution"]["NLL"], rel=1e-6), name
    student = torch.load(root / "models" / "distillation" / "student_proxy.pt", weights_only=False)
    assert student["distill"]["loss"] == "proxy" and len(student["distill"]["teachers"]) == 5
    tables = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "generate_classify_tables.py"), str(sheet),
                             "--out", str(tmp_path / "tables")], capture_output=True, text=True, timeout=120)
    assert tables.returncode == 0, tables.stderr
    assert "| eval student_proxy |" in tables.stdout and "**AUROC, unseen_classes**" in tables.stdout
    assert "| eval student_proxy | dirichlet | 1 | alpha |  | 1.0 |" in tables.stdout     # how each model was read
    assert "| eval mimo | mimo | 3 |" in tables.stdout
    for name in ("models.md", "models.csv", "domains.md", "domains.csv", "ood.md", "ood.csv", "results.png"):
        assert (tmp_path / "tables" / name).stat().st_size > 0
    # the ensemble is at least as accurate as its first member on in-distribution data
    assert float(ev_rows["eval ensemble"]["acc"]) >= float(ev_rows["eval member_0"]["acc"]) - 1.0


def test_members_that_cannot_be_grouped_run_through_vmap():
    """A ViT (LayerNorm, attention) is not a channel-wise network: its members are vmapped."""
    from tasks.models.ensemble import BatchedMembers
    from tasks.models.grouped import GroupedMembers

    torch.manual_seed(0)
    vits = [create_model("vit_tiny_patch16_224", num_classes=5, img_size=16, patch_size=8, depth=2).eval()
            for _ in range(3)]
    cnns = [create_model("small_cnn", num_classes=5, width=8).eval() for _ in range(3)]
    ens = Ensemble(vits + cnns, ["vit"] * 3 + ["cnn"] * 3)
    assert isinstance(ens.groups[0], BatchedMembers) and isinstance(ens.groups[1], GroupedMembers)
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(ens(x), torch.stack([m(x) for m in vits + cnns]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sheet", ["distillation", "distillation_imagenet"])
def test_a_copy_of_the_sheet_writes_and_reads_its_own_models(tmp_path, sheet):
    """A copy of the sheet for other seeds must not overwrite the original's models, nor distil
    or evaluate them: every model path of the shipped sheet is under models/<sheet name>/."""
    root = copy_project(tmp_path / "project")
    copy = root / "result_sheets" / f"{sheet}_seed1.csv"
    shutil.copy(root / "result_sheets" / f"{sheet}.csv", copy)
    proc = subprocess.run([sys.executable, "-m", "runner", "run", str(copy), "--root", str(root), "--dry-run"],
                          capture_output=True, text=True, timeout=120)
    paths = [line for line in proc.stdout.splitlines() if line.strip().startswith(("save_path:", "models:",
                                                                                    "distill/teachers:"))]
    rows = list(csv.DictReader(open(copy)))
    trained = [r for r in rows if not r["path_to_main"].endswith("evaluate.py")]
    assert len(paths) == len(rows) + sum(r["path_to_main"].endswith("train_distillation.py") for r in trained)
    for line in paths:
        new = line.split("->")[-1]
        assert f"models/{sheet}_seed1/" in new and f"models/{sheet}/" not in new, line
