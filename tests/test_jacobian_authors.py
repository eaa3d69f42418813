"""The full-scale Jacobian-statistics configs and sheet against the authors' commands, value by value.

The authors' values (github magamba/overparameterization): README.md's `train.py` and
`compute_stats.py` commands; for what they leave out, the argument defaults of train.py,
compute_stats.py and core/cmd.py; core/data.py (normalisation, augmentation, the train /
validation split, corrupt_labels); core/metric_helpers.py (the power iteration's tolerance).
"""
import csv
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from conftest import REPO

TRAIN = {"data": "cifar10", "label_noise": 0.2, "model": "resnet18_64", "model_additions": (), "weight_init": "pytorch",
         "optimizer": "sgd", "batch_size": 128, "epochs": 300, "augmentation": True, "momentum": 0.9, "nesterov": False,
         "weight_decay": 0.0, "learning_rate": 0.005, "lr_warmup_epochs": 5, "lr_warmup_initial": 0.001,
         "lr_step": 0, "seed": 42, "train_split": 49000, "val_split": 1000, "data_split_seed": 42,
         "crop": (32, 4), "hflip": True, "mean": (0.4914, 0.4822, 0.4465), "std": (0.2023, 0.1994, 0.2010)}
STATS = {"dataset_split": "train", "num_samples": 49000, "batch_size": 140, "metrics": {"jacobian", "jacobian_operator_norm"},
         "normalization": None, "bigmem": False, "num_power_iters": 10, "atol": 1e-2, "checkpoint_every": 10,
         "power_rule": "last_moved"}
CIFAR10_TRAIN = 50000


def load(name):
    with open(os.path.join(REPO, "default_configs", "jacobian", "full_scale", f"cifar10_{name}.yaml")) as f:
        return yaml.safe_load(f)


def test_the_training_config_is_the_authors_command():
    cfg = load("train")
    d, o, s, m = cfg["data"], cfg["optim"], cfg["schedule"], cfg["model"]
    hold = d["holdout"]
    ours = {"data": d["train"]["dataset"], "label_noise": d["train"]["label_noise"]["fraction"],
            "model": f"resnet18_{m['kwargs']['width']}", "model_additions": () if m["kwargs"]["norm"] == "none" else ("batch_norm",),
            "weight_init": "pytorch" if m.get("init", "torch") == "torch" else m["init"], "optimizer": o["name"],
            "batch_size": cfg["batch_size"], "epochs": cfg["epochs"], "augmentation": d["train"]["augment"],
            "momentum": o["momentum"], "nesterov": o["nesterov"], "weight_decay": o["weight_decay"],
            "learning_rate": o["lr"], "lr_warmup_epochs": s["duration"],
            "lr_warmup_initial": round(s["start_factor"] * o["lr"], 12), "lr_step": 0 if s["name"] == "ignite_warmup" else None,
            "seed": cfg["seed"]["init"], "train_split": CIFAR10_TRAIN - round(CIFAR10_TRAIN * hold["fraction"]),
            "val_split": round(CIFAR10_TRAIN * hold["fraction"]), "data_split_seed": hold["seed"],
            "crop": (d["train"]["transform"]["size"], d["train"]["transform"]["padding"]),
            "hflip": d["train"]["transform"]["recipe"] == "crop_flip", "mean": tuple(d["mean"]), "std": tuple(d["std"])}
    assert ours == TRAIN
    assert cfg["seed"]["data"] == TRAIN["seed"]                 # --seed also shuffles the batches
    assert s["name"] == "ignite_warmup" and s["warmup_epochs"] == 0
    assert hold["order"] == "torch" and d["train"]["label_noise"]["draw"] == "authors"
    assert d["train"]["transform"]["recipe"] == "crop_flip" and d["val"] is None
    assert cfg["keep_checkpoints"] == {"every": STATS["checkpoint_every"]}


def test_the_statistics_config_is_the_authors_command():
    cfg = load("stats")
    ours = {"dataset_split": cfg["split"], "num_samples": cfg["num_samples"], "batch_size": cfg["batch_size"],
            "metrics": {"frobenius": "jacobian", "operator": "jacobian_operator_norm"},
            "normalization": None if cfg["normalizations"] == ["none"] else cfg["normalizations"],
            "bigmem": cfg["mode"] == "batched", "num_power_iters": cfg["power_iteration"]["max_iters"],
            "atol": cfg["power_iteration"]["tol"], "checkpoint_every": load("train")["keep_checkpoints"]["every"],
            "power_rule": cfg["power_iteration"]["report"]}
    ours["metrics"] = {ours["metrics"][s] for s in cfg["statistics"]}
    assert ours == STATS
    assert cfg["model"] == load("train")["save_path"] and cfg["sample_seed"] is None


def authors_spectral_norm(J, num_steps, atol, v):
    """core/metric_helpers.py's spectral_norm (their power iteration), written out with the start
    vector v [N, D, 1] given instead of drawn: sigma_prev starts at 0 and keeps a sigma only while it
    moves by at least atol."""
    nb = J.shape[0]
    batch_indices = torch.arange(nb)
    v = v / torch.norm(v, p=2, dim=1).unsqueeze(-1)
    sigma_prev = torch.zeros(nb, dtype=J.dtype)
    for _ in range(num_steps):
        u = torch.bmm(J, v)
        u = u / torch.norm(u, p=2, dim=1).unsqueeze(-1)
        v = torch.matmul(torch.transpose(J, 1, 2), u)
        v = v / torch.norm(v, p=2, dim=1).unsqueeze(-1)
        sigma = torch.bmm(torch.transpose(torch.bmm(J, v), 1, 2), u).squeeze(-1).squeeze(-1)
        diff = torch.ge(torch.abs(sigma.squeeze() - sigma_prev[batch_indices]), atol)
        if not torch.any(diff):
            break
        sigma_prev[batch_indices[diff]] = sigma[diff]
        v, J, batch_indices = v[diff], J[diff], batch_indices[diff]
    return sigma_prev


def test_the_authors_power_iteration_reports_0_below_its_tolerance():
    """At initialisation the full-scale network's sigma is about 0.006: under the authors' rule
    (power_iteration.report: last_moved) it is reported as exactly 0, as their code does; the
    default rule (current) reports it."""
    from tasks.jacobian.jacobian import operator_norm

    g = torch.Generator().manual_seed(0)
    J = torch.randn(6, 10, 50, generator=g, dtype=torch.float64)
    J = J / torch.linalg.matrix_norm(J, ord=2).view(-1, 1, 1) * torch.tensor([0.006, 0.004, 0.009, 0.5, 2.0, 7.0],
                                                                            dtype=torch.float64).view(-1, 1, 1)
    truth = torch.linalg.matrix_norm(J, ord=2)
    theirs = authors_spectral_norm(J.clone(), 10, 1e-2, torch.randn(6, 50, 1, generator=g, dtype=torch.float64))
    starts = torch.randn(6, 10, generator=g)
    last_moved, _, _ = operator_norm(J, 10, 1e-2, starts, report="last_moved")
    current, _, _ = operator_norm(J, 10, 1e-2, starts, report="current")
    assert theirs[:3].tolist() == [0, 0, 0] and last_moved[:3].tolist() == [0, 0, 0]
    assert (current[:3] > 0).all() and (current[:3].double() <= truth[:3] + 1e-7).all()      # a first estimate
    converged, _, _ = operator_norm(J, 1000, 1e-12, starts)
    torch.testing.assert_close(converged.double(), truth, rtol=1e-4, atol=0)
    # above the tolerance every rule gives an estimate from below (the iteration stops on a small change,
    # not on a small error: 10 iterations leave a few percent here)
    for values in (theirs[3:], last_moved[3:].double(), current[3:].double()):
        assert (values > 0.5 * truth[3:]).all() and (values <= truth[3:] + 1e-6).all()


def test_the_last_moved_rule_reports_the_sigma_before_the_one_that_stopped():
    """last_moved is the sigma of the last iteration that moved by at least tol, from sigma_0 = 0."""
    from tasks.jacobian.jacobian import operator_norm

    g = torch.Generator().manual_seed(1)
    J = torch.randn(8, 10, 40, generator=g, dtype=torch.float64)
    starts = torch.randn(8, 10, generator=g)
    path = torch.stack([operator_norm(J, k, 0.0, starts)[0] for k in range(1, 31)], 1).double()   # sigma_k, k = 1..30
    tol = 0.05
    got, iters, settled = operator_norm(J, 30, tol, starts, report="last_moved")
    for n in range(8):
        seq = [0.0] + path[n].tolist()
        moved = [k for k in range(1, 31) if abs(seq[k] - seq[k - 1]) >= tol]
        stop = next((k for k in range(1, 31) if abs(seq[k] - seq[k - 1]) < tol), None)
        assert settled[n] and int(iters[n]) == stop
        assert got[n].item() == pytest.approx(seq[max(k for k in moved if k < stop)], rel=1e-6)


def test_the_sheet_covers_every_checkpoint_and_split_exactly_once():
    rows = list(csv.DictReader(open(os.path.join(REPO, "result_sheets", "jacobian_full_scale.csv"), encoding="utf-8")))
    train = load("train")
    stats = [r for r in rows if r["path_to_main"] == "tasks/jacobian/compute_stats.py"]
    epochs = sorted({int(r["delta:epoch"]) for r in stats})
    assert epochs == list(range(0, train["epochs"] + 1, train["keep_checkpoints"]["every"]))
    model = rows[0]["delta:save_path"]
    for epoch in epochs:
        mine = [r for r in stats if int(r["delta:epoch"]) == epoch]
        assert sorted(r["delta:split"] for r in mine) == ["test", "train", "train", "val"]
        shards = sorted((int(r["delta:skip"]), int(r["delta:num_samples"])) for r in mine if r["delta:split"] == "train")
        assert shards == [(0, 24500), (24500, 24500)]           # disjoint, together the 49,000
        assert all(s % STATS["batch_size"] == 0 for shard in shards for s in shard)
        assert all(r["delta:model"] == model and r["depends_on"] == rows[0]["name"] for r in mine)
        assert all(r["slurm:gres"] == "gpu:1" for r in mine)
    assert rows[-1]["path_to_main"] == "tasks/jacobian/aggregate.py"
    assert set(x.strip() for x in rows[-1]["depends_on"].split(",")) == {r["name"] for r in stats}


def test_the_split_and_the_noisy_labels_are_the_authors_draws():
    """torch's random_split (the authors' train / validation split) and their corrupt_labels, written
    out step by step: the same seeds give the same samples and the same noisy labels."""
    from tasks.classify.setup import build_data

    cfg = {"data": {"train": {"dataset": "digits", "split": "train", "id_classes": list(range(10)),
                              "label_noise": {"fraction": 0.2, "seed": 42, "draw": "authors"}},
                    "holdout": {"fraction": 0.1, "seed": 42, "order": "torch"}, "num_classes": 10,
                    "input_size": [3, 8, 8]}}
    train, val = build_data(cfg)
    n = len(train) + len(val)
    subsets = torch.utils.data.random_split(range(n), [len(train), len(val)],
                                            generator=torch.Generator().manual_seed(42))
    assert list(train.dataset.indices) == list(subsets[0].indices) and list(val.indices) == list(subsets[1].indices)
    # corrupt_labels(dset, 0.2, seed 42) on the training subset, in its order
    clean = train.clean_labels
    rng = np.random.default_rng(42)
    count = int(round(len(clean) * 0.2))
    noise = np.zeros(len(clean), dtype=np.int64)
    noise[:count] = rng.integers(1, len(np.unique(clean)), (count,))
    noise = noise[rng.permutation(len(clean))]
    assert np.array_equal(train.labels, (clean + noise) % 10)
    assert int(train.noisy.sum()) == count


def test_the_full_scale_configs_run_on_a_cifar_shaped_tree(tmp_path):
    """cifar10_train.yaml and cifar10_stats.yaml with only sizes changed (epochs, width, batches, workers) on
    a generated CIFAR-10 folder: the authors' split, noise draw, network and warm-up, then every split's
    statistics by the low-memory mode."""
    rng = np.random.default_rng(0)
    data = tmp_path / "data" / "cifar-10-batches-py"
    data.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = 20 if name != "test_batch" else 12
        with open(data / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"labels": rng.integers(0, 10, n).tolist()}, f)
    train = load("train")
    train.update(epochs=2, batch_size=16, num_workers=0, device="cpu", save_path=str(tmp_path / "m.pt"),
                 keep_checkpoints={"every": 1})
    train["model"]["kwargs"]["width"] = 4
    train["data"]["holdout"]["fraction"] = 0.1                  # 100 images: 90 / 10 (the authors': 49,000 / 1,000)
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train))
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tasks", "classify", "train.py"), "--config",
                           str(tmp_path / "train.yaml")], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for split, samples in (("train", 90), ("val", 10), ("test", 12)):
        stats = load("stats")
        stats.update(model=str(tmp_path / "m.pt"), epoch=2, split=split, batch_size=7, num_samples=None,
                     num_workers=0, device="cpu", output_dir=str(tmp_path / "out"))
        (tmp_path / "stats.yaml").write_text(yaml.safe_dump(stats))
        proc = subprocess.run([sys.executable, os.path.join(REPO, "tasks", "jacobian", "compute_stats.py"),
                               "--config", str(tmp_path / "stats.yaml")], capture_output=True, text=True, timeout=600,
                              cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        folder = tmp_path / "out" / "m" / "epoch2" / split
        ids = [i for f in sorted(os.listdir(folder)) for i in json.load(open(folder / f))["sample_ids"]]
        assert len(ids) == len(set(ids)) == samples
