"""Jacobian statistics (seed 003): the norms against direct computations, the two modes, shards,
snapshots by epoch, the authors' warm-up, and the sheet end to end."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from conftest import REPO, copy_project, run_project_sheet, set_nested
from tasks.jacobian.jacobian import OUTPUTS, frobenius, jacobian, operator_norm, start_vectors

TRAIN = os.path.join(REPO, "tasks", "classify", "train.py")
TRAIN_SAMPLES = 1212          # digits' 10-class train split (1347) less the 10% holdout (135)
STATS = os.path.join(REPO, "tasks", "jacobian", "compute_stats.py")


def tiny_model(norm="batch", seed=0):
    from tasks.models import create_model

    torch.manual_seed(seed)
    model = create_model("small_cnn", 5, width=4, norm=norm)
    if norm == "batch":                      # statistics that are not the identity
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2), m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def explicit(model, x, y, normalization):
    """Each sample's Jacobian by torch.autograd.functional.jacobian, one sample at a time."""
    rows = []
    for i in range(len(x)):
        def g(xi):
            return OUTPUTS[normalization](model(xi.unsqueeze(0)), y[i:i + 1])[0] \
                if normalization != "crossentropy" else OUTPUTS[normalization](model(xi.unsqueeze(0)), y[i:i + 1])
        rows.append(torch.autograd.functional.jacobian(g, x[i]).reshape(-1 if normalization != "crossentropy" else 1,
                                                                       x[i].numel()))
    return torch.stack(rows)


@pytest.mark.parametrize("normalization", sorted(OUTPUTS))
def test_both_modes_equal_the_explicit_jacobian_and_each_other(normalization):
    model = tiny_model()
    torch.manual_seed(1)
    x, y = torch.randn(7, 3, 8, 8), torch.randint(0, 5, (7,))
    reference = explicit(model, x, y, normalization)
    batched = jacobian(model, x, normalization, y, "batched")
    low = jacobian(model, x, normalization, y, "low_memory")
    assert batched.shape == low.shape == reference.shape == (7, 1 if normalization == "crossentropy" else 5, 192)
    torch.testing.assert_close(batched, low, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched, reference, atol=1e-6, rtol=1e-5)
    # the Frobenius norm of the explicit Jacobian
    torch.testing.assert_close(frobenius(batched), reference.flatten(1).norm(dim=1), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("mode", ["batched", "low_memory"])
def test_every_normalisation_derived_from_one_logits_jacobian_equals_the_direct_one(mode):
    """jacobians(): J of the logits once, softmax / log-softmax / cross-entropy by K x K products."""
    from tasks.jacobian.jacobian import jacobians

    model = tiny_model()
    torch.manual_seed(2)
    x, y = torch.randn(6, 3, 8, 8), torch.randint(0, 5, (6,))
    names = ["none", "softmax", "logsoftmax", "crossentropy"]
    derived = jacobians(model, x, names, y, mode)
    assert list(derived) == names
    for name in names:
        torch.testing.assert_close(derived[name], jacobian(model, x, name, y, mode), atol=1e-5, rtol=1e-5)
    assert list(jacobians(model, x, ["softmax"], y, mode)) == ["softmax"]
    with pytest.raises(ValueError, match="needs the samples' labels"):
        jacobians(model, x, ["crossentropy"], None, mode)


def test_a_sample_s_jacobian_does_not_depend_on_its_batch():
    model = tiny_model()
    x, y = torch.randn(6, 3, 8, 8), torch.randint(0, 5, (6,))
    whole = jacobian(model, x, "softmax", y)
    torch.testing.assert_close(jacobian(model, x[2:4], "softmax", y[2:4]), whole[2:4], atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="training mode"):
        jacobian(model.train(), x, "none")


@pytest.mark.parametrize("tol", [1e-3, 1e-6])
def test_the_power_iteration_equals_the_operator_norm_within_its_tolerance(tol):
    gen = torch.Generator().manual_seed(0)
    jac = torch.randn(50, 10, 300, generator=gen)
    jac[:10, 0] *= 5                           # well-separated top singular values for some samples
    truth = torch.linalg.matrix_norm(jac.double(), ord=2)
    sigma, iters, settled = operator_norm(jac, max_iters=10_000, tol=tol, starts=start_vectors(range(50), 10, seed=3))
    assert (iters < 10_000).all() and settled.all()
    assert (sigma.double() <= truth * (1 + 1e-6)).all()            # never above the norm
    # |change| < tol stops a sample; the remaining error is within a few tolerances
    assert ((truth - sigma.double()).abs() <= 50 * tol * truth.clamp_min(1)).all(), (truth - sigma).abs().max()
    # the cap: one iteration is a lower bound, and the samples that stopped there are marked
    one, iters1, settled1 = operator_norm(jac, max_iters=1, tol=0.0, starts=start_vectors(range(50), 10, seed=3))
    assert (iters1 == 1).all() and not settled1.any() and (one <= sigma + 1e-4).all()


def test_power_iteration_on_network_jacobians():
    model = tiny_model()
    x = torch.randn(9, 3, 8, 8)
    jac = jacobian(model, x, "logsoftmax")
    sigma, _, _ = operator_norm(jac, 1000, 1e-9, start_vectors(range(9), 5, 0))
    torch.testing.assert_close(sigma.double(), torch.linalg.matrix_norm(jac.double(), ord=2), atol=1e-6, rtol=1e-5)


def test_the_authors_warm_up_as_their_pinned_ignite_gives_it():
    """Recorded from pytorch-ignite 0.4.9 (the authors' requirements.txt): create_lr_scheduler_with_warmup
    (start 0.001, end = lr, 5 epochs) then MultiplicativeLR(lambda e: 1), stepped at EPOCH_STARTED."""
    from tasks.classify.schedules import make_schedule

    factor = make_schedule({"name": "ignite_warmup", "start_factor": 0.2, "duration": 5}, steps_per_epoch=3, epochs=9)
    per_epoch = [round(0.005 * factor(e * 3 + s), 9) for e in range(9) for s in range(3)]
    assert per_epoch == [v for v in [0.001, 0.002, 0.003, 0.004, 0.004, 0.004, 0.004, 0.004, 0.004] for _ in range(3)]
    factor = make_schedule({"name": "ignite_warmup", "start_factor": 0.02, "duration": 3}, 1, 5)
    assert [round(0.05 * factor(e), 9) for e in range(5)] == [0.001, 0.0255, 0.0255, 0.0255, 0.0255]
    with pytest.raises(ValueError, match="warmup_epochs"):
        make_schedule({"name": "ignite_warmup", "warmup_epochs": 2}, 1, 5)


def test_resnet18_k_without_norm_is_the_authors_network():
    """Parameter counts of the authors' resnet18_k (models/resnet.py, no batch_norm), measured with
    their code: 11,168,266 at k = 64 and 175,690 at k = 8; and the layers that make them."""
    from tasks.models import create_model

    for k, count in ((64, 11_168_266), (8, 175_690)):
        net = create_model("cifar_resnet18", 10, width=k, norm="none")
        assert sum(p.numel() for p in net.parameters()) == count
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
        assert net.layers[2].conv1.bias is not None and net.layers[2].shortcut[0].bias is None
    assert sum(p.numel() for p in create_model("cifar_resnet18", 10).parameters()) == 11_173_962   # with batch norm


def train_config(tmp_path, name, **changes):
    cfg = yaml.safe_load(open(os.path.join(REPO, "default_configs", "jacobian", "train.yaml")))
    cfg.update(save_path=str(tmp_path / f"{name}.pt"), device="cpu", epochs=4, keep_checkpoints={"every": 2})
    cfg["model"]["kwargs"] = {"width": 4, "norm": "batch"}
    set_nested(cfg, changes)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path), cfg


def run(script, path, **kw):
    return subprocess.run([sys.executable, script, "--config", path], capture_output=True, text=True, timeout=600,
                          **kw)


def run_together(script, paths) -> list:
    """``run`` of each config, all started at once (each process's imports overlap the others' work)."""
    procs = [subprocess.Popen([sys.executable, script, "--config", path], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for path in paths]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jacobian")
    path, cfg = train_config(tmp, "noisy")
    proc = run(TRAIN, path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp, cfg


def test_every_snapshot_loads_by_its_epoch_and_epoch_0_is_the_initialisation(noisy_run):
    from tasks.classify.checkpoints import read_classifier, snapshots
    from tasks.models import create_model

    tmp, cfg = noisy_run
    assert sorted(snapshots(cfg["save_path"])) == [0, 2, 4]
    for epoch in (0, 2, 4):
        saved = read_classifier(cfg["save_path"], epoch=epoch)
        assert saved["epoch"] == epoch and len(saved["history"]) == epoch
    torch.manual_seed(cfg["seed"]["init"])
    fresh = create_model("small_cnn", 10, width=4, norm="batch").state_dict()
    init = read_classifier(cfg["save_path"], epoch=0)["state_dict"]
    assert all(torch.equal(init[k], v) for k, v in fresh.items())
    final = read_classifier(cfg["save_path"])
    assert all(torch.equal(final["state_dict"][k], v) for k, v in read_classifier(cfg["save_path"], epoch=4)["state_dict"].items())
    with pytest.raises(FileNotFoundError, match=r"kept: \[0, 2, 4\]"):
        read_classifier(cfg["save_path"], epoch=3)


def stats_config(tmp, model, name, out=None, **changes):
    cfg = yaml.safe_load(open(os.path.join(REPO, "default_configs", "jacobian", "compute_stats.yaml")))
    cfg.update(model=model, epoch=4, device="cpu", output_dir=str(tmp / (out or name)), batch_size=64,
               normalizations=["none", "crossentropy"])
    set_nested(cfg, changes)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def read_files(folder):
    out = {}
    for root, _, files in os.walk(folder):
        for f in sorted(files):
            if f.startswith("batch") and f.endswith(".json"):
                out[f] = json.load(open(os.path.join(root, f)))
    return out


def per_sample(files):
    values = {}
    for batch in files.values():
        for i, sid in enumerate(batch["sample_ids"]):
            values[sid] = (batch["targets"][i], batch["ground_truths"][i],
                           {n: {k: v[i] for k, v in s.items()} for n, s in batch["stats"].items()})
    return values


def test_shards_concatenate_to_the_unsharded_result_exactly(noisy_run):
    tmp, cfg = noisy_run
    whole = stats_config(tmp, cfg["save_path"], "whole", sample_seed=5)
    first = stats_config(tmp, cfg["save_path"], "shard0", "shards", sample_seed=5, num_samples=384)
    second = stats_config(tmp, cfg["save_path"], "shard1", "shards", sample_seed=5, skip=384)
    for proc in run_together(STATS, (whole, first, second)):
        assert proc.returncode == 0, proc.stderr[-3000:]
    whole_files, shard_files = read_files(tmp / "whole"), read_files(tmp / "shards")
    assert list(whole_files) == list(shard_files)                        # batch0000..: the same batches
    a, b = per_sample(whole_files), per_sample(shard_files)
    assert a == b                                                        # exactly, every number
    # the split is every training sample once, and exactly round(N p) of them carry a changed label
    from tasks.classify.setup import build_data

    train, _ = build_data(cfg)
    noisy = [sid for sid, (t, g, _) in a.items() if t != g]
    assert sum(len(f["sample_ids"]) for f in whole_files.values()) == len(a) == len(train) == TRAIN_SAMPLES
    assert len(noisy) == round(len(a) * 0.2) == int(train.noisy.sum())
    assert sorted(a) == sorted(int(train[i][2]) for i in range(len(train)))
    # a different sample_seed draws other batches
    other = stats_config(tmp, cfg["save_path"], "other", sample_seed=6, num_samples=64)
    assert run(STATS, other).returncode == 0
    assert read_files(tmp / "other")["batch00000.json"]["sample_ids"] != whole_files["batch00000.json"]["sample_ids"]


def test_the_row_gets_clean_and_noisy_summaries(noisy_run, tmp_path):
    tmp, cfg = noisy_run
    path = stats_config(tmp_path, cfg["save_path"], "row", mode="low_memory")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    proc = run(STATS, path, env=dict(os.environ, SHEETRUN_RUN_DIR=str(run_dir)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    from runner.report import read_metrics_log

    reported, _ = read_metrics_log(str(run_dir / "metrics.jsonl"))
    values = per_sample(read_files(tmp_path / "row"))
    noisy = np.array([t != g for t, g, _ in values.values()])
    op = np.array([s["none"]["operator"] for _, _, s in values.values()])
    ce = np.array([s["crossentropy"]["frobenius"] for _, _, s in values.values()])
    assert reported["samples"] == len(values) and reported["noisy_samples"] == noisy.sum() > 0
    assert reported["op_none_noisy_mean"] == pytest.approx(op[noisy].mean(), rel=1e-5)
    assert reported["op_none_clean_median"] == pytest.approx(np.median(op[~noisy]), rel=1e-5)
    assert reported["fro_crossentropy_noisy_median"] == pytest.approx(np.median(ce[noisy]), rel=1e-5)
    unsettled = sum(not s["none"]["operator_settled"] for _, _, s in values.values())
    assert reported["power_unsettled"] == unsettled < 0.05 * len(values)


def test_val_and_test_splits_and_clear_errors(noisy_run, tmp_path):
    tmp, cfg = noisy_run
    splits = ("val", "test")
    bad = (({"skip": 10}, "multiple of batch_size"), ({"num_samples": 100}, "multiple of batch_size"),
           ({"skip": 64, "num_samples": 100_000}, "outside the split"),
           ({"epoch": 3}, "no snapshot"), ({"normalizations": ["tanh"]}, "normalizations"))
    paths = [stats_config(tmp_path, cfg["save_path"], split, split=split) for split in splits]
    for i, (changes, _) in enumerate(bad):
        (tmp_path / f"bad{i}").mkdir()
        paths.append(stats_config(tmp_path / f"bad{i}", cfg["save_path"], "bad", **changes))
    procs = run_together(STATS, paths)
    for split, proc in zip(splits, procs):
        assert proc.returncode == 0, proc.stderr[-3000:]
        files = read_files(tmp_path / split)
        assert all(b["targets"] == b["ground_truths"] for b in files.values())       # no noise outside training
    for (changes, message), proc in zip(bad, procs[len(splits):]):
        assert proc.returncode != 0 and message in proc.stderr, (changes, proc.stderr[-500:])


@pytest.mark.timeout(2400)          # minutes on a quiet 2-core machine; more with its cores busy
def test_jacobian_sheet_end_to_end_through_sheetrun(tmp_path):
    """result_sheets/jacobian.csv with its width-4 rows and two of its checkpoints (epochs shrunk
    tenfold): trainings, sharded statistics, and the figure of all of them."""
    root = copy_project(tmp_path / "project")
    train_cfg = root / "default_configs" / "jacobian" / "train.yaml"
    cfg = yaml.safe_load(train_cfg.read_text())
    cfg.update(epochs=4, keep_checkpoints={"every": 1})
    train_cfg.write_text(yaml.safe_dump(cfg))
    sheet = root / "result_sheets" / "jacobian.csv"
    with open(sheet, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    keep = [r for r in rows if "w4" in r["name"] and (not r["delta:epoch"] or r["delta:epoch"] in ("0", "40"))]
    for r in keep:
        if r["delta:epoch"]:
            r["delta:epoch"] = str(int(r["delta:epoch"]) // 10)
    figure = dict(rows[-1], depends_on=", ".join(r["name"] for r in keep if r["name"].startswith("stats")))
    with open(sheet, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(keep + [figure])
    done = run_project_sheet(root, sheet, tmp_path)
    assert [r["status"] for r in done] == ["Completed"] * 11
    for r in done:
        if r["name"].startswith("stats"):
            assert int(r["samples"]) == (640 if r["name"].endswith("shard 0") else TRAIN_SAMPLES - 640)
            assert float(r["fro_none_clean_mean"]) > 0
            assert ("noise20" in r["name"]) == bool(r.get("op_none_noisy_mean"))
    out = root / done[-1]["run_folder"]
    table = (out / "jacobian.csv").read_text()
    summary = list(csv.DictReader(open(out / "jacobian.csv")))
    noisy = [s for s in summary if s["run"] == "cnn_w4_noise20" and s["labels"] == "noisy" and s["epoch"] == "4"
             and s["normalization"] == "none" and s["statistic"] == "operator"]
    assert len(noisy) == 1 and int(noisy[0]["samples"]) == round(TRAIN_SAMPLES * 0.2)
    assert {s["epoch"] for s in summary} == {"0", "4"} and "cnn_w4_noise0" in table
    assert (out / "jacobian.png").stat().st_size > 20_000 and (out / "jacobian.md").exists()


@pytest.mark.timeout(2400)
def test_the_width_sweep_sheet_end_to_end_through_sheetrun(tmp_path):
    """result_sheets/jacobian_width.csv with epochs shrunk to 2 and three of its widths: trainings,
    the final model's statistics on train and test, and the table and figure against width, whose
    errors and medians are the statistics rows' own."""
    root = copy_project(tmp_path / "project")
    sheet = root / "result_sheets" / "jacobian_width.csv"
    with open(sheet, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    trains = [r for r in rows if r["path_to_main"] == "tasks/classify/train.py"]
    assert len({r["delta:model/kwargs/width"] for r in trains}) >= 6
    assert {r["delta:data/train/label_noise/fraction"] for r in trains} == {"0.0", "0.2"}
    widths = ("w1_", "w8_", "w32_")
    keep = [r for r in rows[:-1] if any(w in r["name"] for w in widths)]
    for r in keep:
        if r["delta:epochs"]:
            r["delta:epochs"] = r["delta:keep_checkpoints/every"] = "2"
    figure = dict(rows[-1], depends_on=", ".join(r["name"] for r in keep if r["name"].startswith("stats")))
    with open(sheet, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(keep + [figure])
    done = run_project_sheet(root, sheet, tmp_path)
    assert [r["status"] for r in done] == ["Completed"] * 19
    by_name = {r["name"]: r for r in done}
    out = root / done[-1]["run_folder"]
    table = list(csv.DictReader(open(out / "width_sweep.csv")))
    assert [(int(float(t["width"])), float(t["label_noise"])) for t in table] == \
        [(w, n) for n in (0.0, 0.2) for w in (1, 8, 32)]
    for t in table:
        tag = f"w{int(float(t['width']))}_noise{round(100 * float(t['label_noise']))}"
        assert int(t["epoch"]) == 2
        assert float(t["test_error"]) == pytest.approx(float(by_name[f"stats {tag} test"]["error_clean_labels"]), abs=1e-6)
        assert float(t["train_error"]) == pytest.approx(float(by_name[f"stats {tag} train"]["error_trained_labels"]),
                                                        abs=1e-6)
        assert float(t["frobenius_train_clean"]) == pytest.approx(
            float(by_name[f"stats {tag} train"]["fro_none_clean_median"]), rel=1e-5)
        assert (t["frobenius_train_noisy"] != "") == (float(t["label_noise"]) > 0)
        assert float(t["frobenius_test_clean"]) > 0
    assert (out / "width_sweep.png").stat().st_size > 20_000 and "| 32 | 20% |" in (out / "width_sweep.md").read_text()
