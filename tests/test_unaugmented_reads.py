"""What a statistic, a validation or an evaluation reads is the same image, read after read.

A set read without augmentation (``augment: false``: the Jacobian statistics' splits, a training's
validation holdout, every evaluation domain) makes no random operation, whatever its transform
recipe; a set read with augmentation still varies."""
import copy
import os
import pickle

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from tasks.data import build_set
from tasks.data.transforms import RECIPES, build_transform

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = {"input_size": [3, 24, 24], "mean": [0.5] * 3, "std": [0.25] * 3, "interpolation": "bilinear",
       "crop_pct": 0.875}
# each recipe with the options that make it random when it augments
OPTIONS = {"resize_center_crop": {"resize": 28, "size": 24, "flip": True}, "squash_center_crop": {"resize": 28, "size": 24},
           "rrc_flip": {"size": 24, "scale": [0.08, 1.0]}, "crop_flip": {"size": 24, "padding": 4}, "plain": {},
           "timm": {}}
RANDOM_WHEN_AUGMENTED = {"resize_center_crop", "rrc_flip", "crop_flip", "timm"}


def image(h=30, w=41, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def reads(read, seeds=range(6)):
    """One read per seed of torch's and Python's random generators."""
    import random

    out = []
    for s in seeds:
        torch.manual_seed(s)
        random.seed(s)
        out.append(read())
    return out


def test_every_recipe_has_options_here():
    assert set(OPTIONS) == set(RECIPES)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_a_recipe_read_without_augmentation_is_the_same_every_time(name):
    img = image(24, 24) if name == "plain" else image()
    t = build_transform({"augment": False, "transform": {"recipe": name, **OPTIONS[name]}}, CFG)
    first, *rest = reads(lambda: t(img))
    assert first.shape == (3, 24, 24)
    assert all(torch.equal(first, r) for r in rest)


@pytest.mark.parametrize("name", sorted(RANDOM_WHEN_AUGMENTED))
def test_a_recipe_read_with_augmentation_still_varies(name):
    img = image()
    t = build_transform({"augment": True, "transform": {"recipe": name, **OPTIONS[name]}}, CFG)
    first, *rest = reads(lambda: t(img))
    assert any(not torch.equal(first, r) for r in rest)


def test_the_unaugmented_views_are_the_standard_evaluation_views():
    """rrc_flip read plainly is Resize(size / 0.875) -> CenterCrop(size); crop_flip is the image at its size."""
    from torchvision import transforms as T

    img = image(60, 80)
    t = build_transform({"transform": {"recipe": "rrc_flip", "size": 24}}, CFG)
    ref = T.Compose([T.Resize(27), T.CenterCrop(24), T.ToTensor(), T.Normalize([0.5] * 3, [0.25] * 3)])
    assert torch.equal(t(img), ref(img))
    small = image(24, 24)
    t = build_transform({"transform": {"recipe": "crop_flip", "size": 24, "padding": 4}}, CFG)
    assert torch.equal(t(small), T.Compose([T.ToTensor(), T.Normalize([0.5] * 3, [0.25] * 3)])(small))


def write_cifar(root):
    rng = np.random.default_rng(0)
    os.makedirs(root)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = 8 if name != "test_batch" else 6
        with open(os.path.join(root, name), "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"labels": rng.integers(0, 10, n).tolist()}, f)


def full_scale_jacobian_training(root: str, recipe: str) -> dict:
    """The full-scale Jacobian training config (augmented training set) on a small CIFAR tree."""
    with open(os.path.join(REPO, "default_configs", "jacobian", "full_scale", "cifar10_train.yaml")) as f:
        cfg = yaml.safe_load(f)
    cfg["data"]["train"]["root"] = root
    cfg["data"]["train"]["transform"] = {"recipe": recipe, **{k: v for k, v in OPTIONS[recipe].items() if k != "resize"}}
    if recipe in ("resize_center_crop", "squash_center_crop"):
        cfg["data"]["train"]["transform"]["resize"] = 32
    if "size" in cfg["data"]["train"]["transform"]:
        cfg["data"]["train"]["transform"]["size"] = 32
    cfg["data"]["holdout"]["fraction"] = 0.25
    assert cfg["data"]["train"]["augment"] is True
    return cfg


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_every_split_the_statistics_read_is_the_same_every_time(tmp_path, recipe):
    """train (with its noisy labels), the validation holdout and the test set, as compute_stats reads them
    from a model trained with augmentation, every sample twice under different seeds."""
    from tasks.jacobian.compute_stats import split_set

    write_cifar(str(tmp_path / "c"))
    cfg = full_scale_jacobian_training(str(tmp_path / "c"), recipe)
    saved = {"config": copy.deepcopy(cfg)}
    test_data = dict(cfg["data"]["train"], split="test", augment=True)
    test_data.pop("label_noise")
    sizes = {}
    for split in ("train", "val", "test"):
        dataset, labels, clean = split_set(saved, split, test_data)
        sizes[split] = len(dataset)
        for i in range(len(dataset)):
            first, *rest = reads(lambda: dataset[i][0], seeds=range(3))
            assert all(torch.equal(first, r) for r in rest), (recipe, split, i)
    assert sizes == {"train": 30, "val": 10, "test": 6}


def test_the_validation_holdout_of_an_augmented_training_is_read_plainly(tmp_path):
    """classify/train.py's in-training validation reads the holdout with the evaluation view."""
    from tasks.classify.setup import build_data

    write_cifar(str(tmp_path / "c"))
    cfg = full_scale_jacobian_training(str(tmp_path / "c"), "crop_flip")
    train, val = build_data(cfg)
    for i in range(len(val)):
        first, *rest = reads(lambda: val[i][0], seeds=range(3))
        assert all(torch.equal(first, r) for r in rest)
    assert any(not torch.equal(a, b) for a, b in zip(*[reads(lambda: train[0][0], seeds=(s,)) for s in (0, 1)]))


def test_digits_read_without_augmentation_are_the_same_every_time():
    ds, _ = build_set({"dataset": "digits", "split": "train", "augment": False}, {"input_size": [3, 16, 16],
                                                                                  "mean": [0.5] * 3, "std": [0.5] * 3})
    for i in range(0, len(ds), 97):
        first, *rest = reads(lambda: ds[i][0], seeds=range(3))
        assert all(torch.equal(first, r) for r in rest)


def test_an_evaluation_domain_cannot_ask_for_augmentation(tmp_path):
    from tasks.classify.scoring import evaluation_domains

    assert list(evaluation_domains({"in_distribution": {"dataset": "digits", "split": "test"}})) == ["in_distribution"]
    with pytest.raises(ValueError, match="drop augment: true from shifted"):
        evaluation_domains({"in_distribution": {"dataset": "digits", "split": "test"},
                            "domains": {"shifted": {"dataset": "digits", "split": "test", "augment": True}}})
