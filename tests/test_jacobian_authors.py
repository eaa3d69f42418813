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
import torch
import yaml

from conftest import REPO

TRAIN = {"data": "cifar10", "label_noise": 0.2, "model": "resnet18_64", "model_additions": (), "weight_init": "pytorch",
         "optimizer": "sgd", "batch_size": 128, "epochs": 300, "augmentation": True, "momentum": 0.9, "nesterov": False,
         "weight_decay": 0.0, "learning_rate": 0.005, "lr_warmup_epochs": 5, "lr_warmup_initial": 0.001,
         "lr_step": 0, "seed": 42, "train_split": 49000, "val_split": 1000, "data_split_seed": 42,
         "crop": (32, 4), "hflip": True, "mean": (0.4914, 0.4822, 0.4465), "std": (0.2023, 0.1994, 0.2010)}
STATS = {"dataset_split": "train", "num_samples": 49000, "batch_size": 140, "metrics": {"jacobian", "jacobian_operator_norm"},
         "normalization": None, "bigmem": False, "num_power_iters": 10, "atol": 1e-2, "checkpoint_every": 10}
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
            "atol": cfg["power_iteration"]["tol"], "checkpoint_every": load("train")["keep_checkpoints"]["every"]}
    ours["metrics"] = {ours["metrics"][s] for s in cfg["statistics"]}
    assert ours == STATS
    assert cfg["model"] == load("train")["save_path"] and cfg["sample_seed"] is None


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
    from tasks.classify.train import build_data

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
