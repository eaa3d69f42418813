"""The full-scale FoRDE configs against the authors' commands, value by value.

The authors' values (github AaltoPML/FoRDE): README.md's three `train_forde.py with ...` commands,
the defaults of train_forde.py's `my_config` for what the commands leave out, datasets.py's
NORM_STAT, augmentation and CIFAR-C corruption list, calculate_pca.py, models/resnet.py.
"""
import csv
import os

import pytest
import torch
import yaml

from conftest import REPO

CIFAR_C = ["saturate", "shot_noise", "gaussian_noise", "zoom_blur", "glass_blur", "brightness", "contrast",
           "motion_blur", "pixelate", "snow", "speckle_noise", "spatter", "gaussian_blur", "frost", "defocus_blur",
           "elastic_transform", "impulse_noise", "jpeg_compression", "fog"]
# TinyImageNet-C as distributed: the 15 ImageNet-C corruptions (the authors glob every folder of a severity)
TINY_C = ["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
          "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression"]
COMMON = {"batch_size": 128, "n_members": 10, "init_lr": 0.10, "weight_decay": 5e-4, "eps": 1e-24,
          "num_start_epochs": 0, "validation": False, "milestones": (0.5, 0.9), "momentum": 0.9, "nesterov": True,
          "label_smoothing": 0.0, "augment_data": True, "ece_bins": 15, "test_batch_size": 512, "intensities": 5,
          "weight_decay_on": "every parameter", "lr_set": "per epoch", "pca": "data_pca_path", "init": "haiku"}
AUTHORS = {
    "cifar10": dict(COMMON, model_name="ResNet18", dataset="cifar10", num_classes=10, num_epochs=300, lr_ratio=0.01,
                    input_size=32, norm=((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)), corruptions=CIFAR_C),
    "cifar100": dict(COMMON, model_name="ResNet18", dataset="cifar100", num_classes=100, num_epochs=300,
                     lr_ratio=0.01, input_size=32, norm=((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
                     corruptions=CIFAR_C),
    "tinyimagenet": dict(COMMON, model_name="PreActResNet18", dataset="tinyimagenet", num_classes=200,
                         num_epochs=150, lr_ratio=0.001, input_size=64,
                         norm=tuple(tuple(v / 255 for v in t) for t in ((122.4786, 114.2755, 101.3963),
                                                                        (70.4924, 68.5679, 71.8127))),
                         corruptions=TINY_C),
}
MODELS = {"cifar_resnet18": "ResNet18", "preact_resnet18": "PreActResNet18"}
DATASETS = {"cifar10": "cifar10", "cifar100": "cifar100", "tiny_imagenet": "tinyimagenet"}


def load(name, part):
    with open(os.path.join(REPO, "default_configs", "forde", "full_scale", f"{name}_{part}.yaml")) as f:
        return yaml.safe_load(f)


def as_authors(name: str) -> dict:
    """Our three configs of one setting, in the authors' names."""
    train, evaluate, pca = load(name, "train"), load(name, "evaluate"), load(name, "pca")
    d, o, s = train["data"], train["optim"], train["schedule"]
    aug = d["train"]["transform"]
    assert aug == {"recipe": "crop_flip", "size": d["input_size"][-1], "padding": 4}   # RandomCrop(pad 4) + flip
    assert train["model"]["kwargs"] == {"width": 64, "padding": "same"}        # haiku's SAME convolutions
    assert evaluate["data"]["domains"]["C"]["severities"] == [1, 2, 3, 4, 5]
    assert pca["data"]["train"]["dataset"] == d["train"]["dataset"] and pca["data"]["mean"] == d["mean"]
    assert train["forde"]["pca_path"] == pca["save_path"]
    return {
        "model_name": MODELS[train["model"]["name"]], "dataset": DATASETS[d["train"]["dataset"]],
        "num_classes": d["num_classes"], "batch_size": train["batch_size"], "n_members": train["model"]["joint_members"],
        "init_lr": o["lr"], "lr_ratio": s["final_factor"], "num_epochs": train["epochs"],
        "weight_decay": o["weight_decay"], "eps": train["forde"]["eps"], "num_start_epochs": s["warmup_epochs"],
        "validation": bool(d.get("val")) or float(d["holdout"]["fraction"]) > 0,
        "milestones": (s["flat_until"], s["linear_until"]), "momentum": o["momentum"], "nesterov": o["nesterov"],
        "label_smoothing": train["label_smoothing"], "augment_data": d["train"]["augment"],
        "ece_bins": evaluate["bins"], "test_batch_size": evaluate["batch_size"],
        "intensities": len(evaluate["data"]["domains"]["C"]["severities"]),
        "weight_decay_on": "every parameter" if o["decay_norm_and_bias"] and not o.get("no_decay") else "some",
        "lr_set": "per epoch" if s["per_epoch"] else "per step",
        "pca": "data_pca_path" if train["forde"]["repulsion"] == "pca" else train["forde"]["repulsion"],
        "init": train["model"]["init"], "input_size": d["input_size"][-1],
        "norm": (tuple(d["mean"]), tuple(d["std"])), "corruptions": evaluate["data"]["domains"]["C"]["corruptions"],
    }


@pytest.mark.parametrize("name", sorted(AUTHORS))
def test_full_scale_configs_equal_the_authors_values(name):
    ours, theirs = as_authors(name), AUTHORS[name]
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        if key == "norm":
            for mine, authors in zip(ours[key], value):                      # mean, std
                assert mine == pytest.approx(authors, abs=5e-7), key        # /255 written with 6 decimals
        else:
            assert ours[key] == value, key


def test_the_full_scale_sheet_runs_each_setting_over_three_seeds_on_a_gpu_each():
    rows = list(csv.DictReader(open(os.path.join(REPO, "result_sheets", "forde_full_scale.csv"), encoding="utf-8")))
    train = [r for r in rows if r["path_to_main"] == "tasks/forde/train_forde.py"]
    assert len(train) == 3 * 3 * 3                               # datasets x methods x seeds
    for r in train:
        assert r["slurm:gres"] == "gpu:1" and r["slurm:mem"] and r["slurm:time"]
        assert r["delta:forde/repulsion"] in ("none", "pca", "identity")
        # the deep ensemble's members each on their own batches; FoRDE's on one shared batch
        assert r["delta:member_batches"] == ("own" if r["delta:forde/repulsion"] == "none" else ""), r["name"]
        assert r["delta:save_path"].startswith("models/__WORKSHEET__/")
    evaluated = {r["depends_on"] for r in rows if r["path_to_main"] == "tasks/classify/evaluate.py"}
    assert evaluated == {r["name"] for r in train}


@pytest.mark.parametrize("model_name", ["cifar_resnet18", "preact_resnet18"])
def test_same_padding_is_haiku_s_against_an_explicit_asymmetric_pad(model_name):
    """padding: same — a stride-2 3x3 convolution of an even-sized map pads 0 before and 1 after
    (TensorFlow / Haiku SAME, the authors' hk.Conv2D(padding="SAME")); padding: torch pads 1 and 1."""
    import torch.nn.functional as F

    from tasks.models import create_model
    from tasks.models.families.resnet_cifar import SamePad2d

    torch.manual_seed(0)
    same = create_model(model_name, 10, width=4, padding="same").eval()
    torch_padded = create_model(model_name, 10, width=4).eval()
    torch_padded.load_state_dict(same.state_dict())                 # the same weights, names and shapes
    block = same.layers[2]                                           # the first stride-2 block
    assert block.conv1.stride == (2, 2) and block.conv1.padding == (0, 0)
    x = torch.randn(2, 4, 16, 16)
    want = F.conv2d(F.pad(x, (0, 1, 0, 1)), block.conv1.weight, block.conv1.bias, stride=2)
    torch.testing.assert_close(block.conv1(block.pad1(x)), want)
    other = torch_padded.layers[2]
    assert not torch.allclose(other.conv1(other.pad1(x)), want)
    image = torch.randn(2, 3, 32, 32)
    assert same(image).shape == torch_padded(image).shape == (2, 10)
    assert not torch.allclose(same(image), torch_padded(image))
    # TensorFlow's rule for other sizes: odd maps pad 1 and 1, stride 1 pads 1 and 1, 1x1 pads nothing
    assert SamePad2d.split(15, 3, 2) == (1, 1) and SamePad2d.split(16, 3, 1) == (1, 1)
    assert SamePad2d.split(16, 1, 2) == (0, 0) and SamePad2d.split(64, 3, 2) == (0, 1)
    with pytest.raises(ValueError, match="padding must be one of"):
        create_model(model_name, 10, width=4, padding="valid")
