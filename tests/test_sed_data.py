"""Datasets: the digits benchmark, the corruptions, and the image-folder loaders on generated trees."""
import os
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from tasks.data import build_set, expand_catalog
from tasks.data.corruptions import CORRUPTIONS, corrupt
from tasks.data.digits import digits_images
from tasks.data.folders import imagenet_classes

DATA_CFG = {"input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.5] * 3,
            "interpolation": "bilinear", "crop_pct": 1.0}


def test_ten_corruptions_behave():
    assert len(CORRUPTIONS) == 10            # the README says ten
    x, _ = digits_images(32)
    x = x[:16]
    for name in CORRUPTIONS:
        out = [corrupt(x, name, s, np.random.default_rng(0)) for s in range(1, 6)]
        for y in out:
            assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1, name
        change = [float((y - x).abs().mean()) for y in out]
        assert change[0] > 0, f"{name} at severity 1 left the images unchanged"
        assert change[4] > change[0], f"{name}: severity 5 is not stronger than severity 1 ({change})"
        again = corrupt(x, name, 3, np.random.default_rng(0))
        assert torch.equal(again, out[2]), f"{name} is not reproducible from its seed"
    with pytest.raises(ValueError):
        corrupt(x, "gaussian_noise", 6, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(x, "rain", 1, np.random.default_rng(0))


@pytest.fixture(scope="module")
def demo_backbone(tmp_path_factory):
    """The demo's backbone, trained as result_sheets/demo.csv trains it (its default config)."""
    import yaml

    from conftest import REPO
    from tasks.sed import pretrain_backbone

    tmp = tmp_path_factory.mktemp("demo_backbone")
    with open(os.path.join(REPO, "default_configs", "sed", "pretrain_backbone.yaml")) as f:
        cfg = yaml.safe_load(f)
    cfg.update(save_path=str(tmp / "vit.pt"), device="cpu")
    (tmp / "pre.yaml").write_text(yaml.safe_dump(cfg))
    pretrain_backbone.main(["--config", str(tmp / "pre.yaml")])
    return str(tmp / "vit.pt")


def test_accuracy_falls_with_severity_for_every_corruption(demo_backbone):
    """On the demo data and backbone: every corruption hurts more at each severity, and
    severity 5 clearly (the calibration of tasks/data/corruptions.py)."""
    from tasks.sed.backbones import data_config, load_backbone

    model = load_backbone({"checkpoint": demo_backbone}).eval()
    dc = data_config(model)

    def accuracy(spec):
        ds, _ = build_set(spec, dc)
        x = torch.stack([ds[i][0] for i in range(len(ds))])
        with torch.no_grad():
            return (model(x).argmax(-1) == ds.labels).float().mean().item()

    clean = accuracy({"dataset": "digits", "split": "val"})
    assert clean > 0.9
    table = {c: [accuracy({"dataset": "digits", "split": "val", "corruption": c, "severity": s})
                 for s in range(1, 6)] for c in sorted(CORRUPTIONS)}
    report = "\n".join(f"{c:18s} " + " ".join(f"{a:.3f}" for a in accs) for c, accs in table.items())
    for c, accs in table.items():
        assert accs[0] < clean, f"{c} at severity 1 does not hurt\n{report}"
        assert all(a > b for a, b in zip(accs, accs[1:])), f"{c}: accuracy does not fall with severity\n{report}"
        assert accs[4] <= 0.65 * clean, f"{c} at severity 5 barely hurts\n{report}"


def test_digits_splits():
    spec = {"dataset": "digits"}
    train, _ = build_set(dict(spec, split="train"), DATA_CFG)
    val, _ = build_set(dict(spec, split="val"), DATA_CFG)
    unseen, _ = build_set(dict(spec, split="unseen_classes"), DATA_CFG)
    assert not set(train.indices) & set(val.indices)
    assert len(train) + len(val) + len(unseen) == 1797
    assert set(train.labels.tolist()) == set(val.labels.tolist()) == {0, 1, 2, 3, 4}
    assert set(unseen.labels.tolist()) == {-1}
    counts = np.bincount(val.labels.numpy())          # stratified: classes equally represented
    assert counts.max() - counts.min() <= 2
    img, label, index = val[0]
    assert img.shape == (3, 32, 32) and label == int(val.labels[0]) and index == int(val.indices[0])
    c5, _ = build_set(dict(spec, split="val", corruption="contrast", severity=5), DATA_CFG)
    assert torch.equal(c5.labels, val.labels) and not torch.equal(c5.images, val.images)
    # a list of corruptions takes turns: image k gets corruption k % 2, drawn as for that corruption alone
    mixed, _ = build_set(dict(spec, split="val", corruption=["contrast", "gaussian_noise"], severity=5), DATA_CFG)
    assert torch.equal(mixed.labels, val.labels)
    assert torch.equal(mixed.images[0::2], corrupt(val.images[0::2], "contrast", 5, np.random.default_rng(0)))
    noise_rng = np.random.default_rng([0, zlib.crc32(b"gaussian_noise"), 5])
    assert torch.equal(mixed.images[1::2], corrupt(val.images[1::2], "gaussian_noise", 5, noise_rng))


def test_catalog_expands_corruption_families():
    catalog = {"in_val": {"dataset": "digits", "split": "val"},
               "C": {"dataset": "digits", "split": "val", "corruptions": ["contrast", "pixelate"],
                     "severities": [1, 5]}}
    specs = expand_catalog(catalog)
    assert sorted(specs) == ["contrast_1", "contrast_5", "in_val", "pixelate_1", "pixelate_5"]
    assert specs["pixelate_5"]["group"] == "C-5" and specs["pixelate_5"]["severity"] == 5
    assert list(expand_catalog(catalog, ["C"])) == ["contrast_1", "contrast_5", "pixelate_1", "pixelate_5"]
    assert list(expand_catalog(catalog, ["contrast_5"])) == ["contrast_5"]
    with pytest.raises(ValueError, match="no set 'in_train'"):
        expand_catalog(catalog, ["in_train"])
    with pytest.raises(ValueError, match="unknown corruption"):
        expand_catalog({"C": {"dataset": "digits", "corruptions": ["rain"]}})


def write_images(folder, n, size=40, seed=0):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
            os.path.join(folder, f"img{i}.{'png' if i % 2 else 'jpg'}"))


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("trees")
    wnids = imagenet_classes()
    for i, w in enumerate(wnids[:3]):
        write_images(root / "train" / w, 2 + i)
    for corruption in ("gaussian_noise", "fog"):
        for severity in (1, 5):
            for w in wnids[:3]:
                write_images(root / "imagenet-c" / corruption / str(severity) / w, 2)
    for w in (wnids[7], wnids[500], wnids[999]):            # an ImageNet-A style subset
        write_images(root / "imagenet-a" / w, 2)
    write_images(root / "inat" / "a" / "b", 3)                # OOD: nested, no classes
    write_images(root / "inat", 2, seed=1)
    (root / "inat" / "notes.txt").write_text("not an image")
    for name in ("cat", "dog"):                               # a non-ImageNet tree
        write_images(root / "pets" / name, 2)
    return root


def test_image_folder_uses_imagenet_label_order(trees):
    ds, subset = build_set({"dataset": "image_folder", "root": str(trees / "train")}, DATA_CFG)
    assert subset is None and len(ds) == 2 + 3 + 4
    labels = sorted({label for _, label in ds.samples})
    assert labels == [0, 1, 2]
    img, label, index = ds[0]
    assert img.shape == (3, 32, 32) and index == 0
    pets, _ = build_set({"dataset": "image_folder", "root": str(trees / "pets")}, DATA_CFG)
    assert sorted({label for _, label in pets.samples}) == [0, 1]      # sorted folder names


def test_imagenet_c_layout(trees):
    catalog = {"in_c": {"dataset": "imagenet_c", "root": str(trees / "imagenet-c"),
                        "corruptions": ["gaussian_noise", "fog"], "severities": [1, 5]}}
    specs = expand_catalog(catalog)
    assert sorted(specs) == ["fog_1", "fog_5", "gaussian_noise_1", "gaussian_noise_5"]
    ds, _ = build_set(specs["fog_5"], DATA_CFG)
    assert len(ds) == 6 and all(f"{os.sep}fog{os.sep}5{os.sep}" in p for p, _ in ds.samples)


def test_class_subset_keeps_full_label_indices(trees):
    ds, subset = build_set({"dataset": "class_subset", "root": str(trees / "imagenet-a")}, DATA_CFG)
    assert subset == [7, 500, 999]
    assert sorted({label for _, label in ds.samples}) == [7, 500, 999]


def test_ood_folder_takes_every_image_recursively(trees):
    ds, subset = build_set({"dataset": "ood_folder", "root": str(trees / "inat")}, DATA_CFG)
    assert len(ds) == 5 and subset is None
    assert {label for _, label in ds.samples} == {-1}
    assert ds[4][0].shape == (3, 32, 32)


def test_folder_errors_are_clear(trees, tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        build_set({"dataset": "image_folder", "root": str(tmp_path / "missing")}, DATA_CFG)
    with pytest.raises(ValueError, match="does not take"):
        build_set({"dataset": "ood_folder", "root": str(trees / "inat"), "split": "val"}, DATA_CFG)
    with pytest.raises(ValueError, match="unknown dataset"):
        build_set({"dataset": "imagenet_z"}, DATA_CFG)


def test_the_demo_backbone_is_the_same_whatever_thread_count_the_machine_gives(tmp_path):
    """Threads group float sums differently and training turns that into another backbone, which
    the corruption strengths were not calibrated on: the demo pins its threads (``threads: 2``),
    so a one-core budget (sheetrun's --jobs, OMP_NUM_THREADS=1) trains the very same backbone."""
    import subprocess
    import sys

    import yaml

    from conftest import REPO

    with open(os.path.join(REPO, "default_configs", "sed", "pretrain_backbone.yaml")) as f:
        cfg = yaml.safe_load(f)
    assert cfg["threads"] == 2
    cfg["train"]["epochs"] = 2
    saved = {}
    for omp in ("1", "2"):
        path = tmp_path / f"omp{omp}.pt"
        (tmp_path / f"omp{omp}.yaml").write_text(yaml.safe_dump(dict(cfg, save_path=str(path), device="cpu")))
        subprocess.run([sys.executable, "-m", "tasks.sed.pretrain_backbone", "--config", str(tmp_path / f"omp{omp}.yaml")],
                       check=True, capture_output=True, cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS=omp),
                       timeout=300)
        saved[omp] = torch.load(path, weights_only=False)["state_dict"]
    assert all(torch.equal(saved["1"][k], saved["2"][k]) for k in saved["1"])
