"""CIFAR-10/100, CIFAR-C, TinyImageNet(-C) and ImageNet-O read from small generated trees in
their published layouts."""
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from tasks.data import build_set, expand_catalog

CFG = {"input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.5] * 3}
PLAIN = {"recipe": "plain"}


def write_cifar(root, classes):
    rng = np.random.default_rng(classes)
    os.makedirs(root)
    key = b"labels" if classes == 10 else b"fine_labels"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if classes == 10 else ["train", "test"]
    truth = {}
    for name in names:
        n = 7 if classes == 10 else 20
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, classes, n).tolist()
        truth[name] = (data, labels)
        with open(root / name, "wb") as f:
            pickle.dump({b"data": data, key: labels}, f)
    return truth


@pytest.mark.parametrize("classes", [10, 100])
def test_cifar_python_folders(tmp_path, classes):
    truth = write_cifar(tmp_path / "c", classes)
    train, subset = build_set({"dataset": f"cifar{classes}", "root": str(tmp_path / "c"), "split": "train",
                               "transform": PLAIN}, CFG)
    test, _ = build_set({"dataset": f"cifar{classes}", "root": str(tmp_path / "c"), "split": "test",
                         "transform": PLAIN}, CFG)
    first = truth["data_batch_1" if classes == 10 else "train"]
    assert subset is None and len(train) == (35 if classes == 10 else 20) and len(test) == (7 if classes == 10 else 20)
    x, y, i = train[1]
    assert x.shape == (3, 32, 32) and y == first[1][1] and i == 1
    # pixel (0, 0) of image 1: channels are the first, 1024th and 2048th bytes of its row, normalised
    expected = (first[0][1][[0, 1024, 2048]] / 255.0 - 0.5) / 0.5
    torch.testing.assert_close(x[:, 0, 0], torch.tensor(expected, dtype=torch.float32))
    with pytest.raises(ValueError, match="split"):
        build_set({"dataset": f"cifar{classes}", "root": str(tmp_path / "c"), "split": "val"}, CFG)


def test_cifar_c_severities_are_slices(tmp_path):
    root = tmp_path / "CIFAR-10-C"
    root.mkdir()
    images = np.random.default_rng(0).integers(0, 256, (50_000, 32, 32, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(50_000) // 10_000 * 50           # severity s marks pixel (0, 0) with 50 (s - 1)
    np.save(root / "fog.npy", images)
    np.save(root / "labels.npy", np.tile(np.arange(10), 5_000))
    specs = expand_catalog({"C": {"dataset": "cifar10_c", "root": str(root), "corruptions": ["fog"],
                                  "severities": [1, 5], "transform": PLAIN}})
    assert set(specs) == {"fog_1", "fog_5"} and specs["fog_5"]["group"] == "C-5"
    for name, sev in (("fog_1", 1), ("fog_5", 5)):
        ds, _ = build_set(specs[name], CFG)
        x, y, i = ds[3]
        assert len(ds) == 10_000 and y == 3 and i == (sev - 1) * 10_000 + 3
        assert x[0, 0, 0].item() == pytest.approx((50 * (sev - 1) / 255 - 0.5) / 0.5, abs=1e-6)


def test_cifar_c_of_another_size_splits_in_five_and_mismatches_are_refused(tmp_path):
    root = tmp_path / "CIFAR-100-C"
    root.mkdir()
    images = np.zeros((15, 32, 32, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(15)
    np.save(root / "snow.npy", images)
    np.save(root / "labels.npy", np.arange(15) % 7)
    spec = {"dataset": "cifar100_c", "root": str(root), "corruption": "snow", "severity": 4, "transform": PLAIN}
    ds, _ = build_set(spec, CFG)
    x, y, i = ds[1]
    assert len(ds) == 3 and i == 10 and y == 10 % 7
    assert x[0, 0, 0].item() == pytest.approx((10 / 255 - 0.5) / 0.5, abs=1e-6)
    np.save(root / "labels.npy", np.arange(16) % 7)                   # one label too many
    with pytest.raises(ValueError, match="15 images and 16 labels"):
        build_set(spec, CFG)
    np.save(root / "snow.npy", np.zeros((16, 32, 32, 3), dtype=np.uint8))  # not five equal severities
    with pytest.raises(ValueError, match="5 severities of equal size"):
        build_set(spec, CFG)


def write_image(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)


def test_tiny_imagenet_and_its_c(tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n01443537", "n01629819", "n01641577"]
    root.mkdir()
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for k, w in enumerate(wnids):
        for j in range(2):
            write_image(root / "train" / w / "images" / f"{w}_{j}.JPEG", 10 * k)
    (root / "val" / "images").mkdir(parents=True)
    lines = []
    for j, w in enumerate(["n01641577", "n01443537"]):
        write_image(root / "val" / "images" / f"val_{j}.JPEG")
        lines.append(f"val_{j}.JPEG\t{w}\t0\t0\t8\t8")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    t = {"recipe": "plain"}
    train, _ = build_set({"dataset": "tiny_imagenet", "root": str(root), "split": "train", "transform": t}, CFG)
    val, _ = build_set({"dataset": "tiny_imagenet", "root": str(root), "split": "val", "transform": t}, CFG)
    assert [train[i][1] for i in range(len(train))] == [0, 0, 1, 1, 2, 2]
    assert [val[i][1] for i in range(len(val))] == [2, 0]
    c_root = tmp_path / "Tiny-ImageNet-C"
    for w in wnids[1:]:
        write_image(c_root / "fog" / "3" / w / "a.JPEG")
    ds, _ = build_set({"dataset": "tiny_imagenet_c", "root": str(c_root), "corruption": "fog", "severity": 3,
                       "wnids": str(root / "wnids.txt"), "transform": t}, CFG)
    assert [ds[i][1] for i in range(len(ds))] == [1, 2]              # indices into the full wnid list


def test_imagenet_o_is_an_ood_set(tmp_path):
    for w in ("n01443537", "n01629819"):
        write_image(tmp_path / "imagenet-o" / w / "x.jpg")
    ds, subset = build_set({"dataset": "imagenet_o", "root": str(tmp_path / "imagenet-o"), "transform": PLAIN}, CFG)
    assert len(ds) == 2 and subset is None and {ds[i][1] for i in range(2)} == {-1}


def test_crop_flip_recipe_pads_and_crops(tmp_path):
    from tasks.data.transforms import build_transform

    t = build_transform({"augment": True, "transform": {"recipe": "crop_flip", "size": 32, "padding": 4}}, CFG)
    img = Image.fromarray(np.full((32, 32, 3), 255, dtype=np.uint8))
    outs = [t(img) for _ in range(20)]
    assert all(o.shape == (3, 32, 32) for o in outs)
    assert any((o == -1).any() for o in outs)                        # some crops show the zero padding


def test_a_stray_folder_never_relabels_an_imagenet_tree(tmp_path):
    """Labels are ImageNet's indices for a tree of WordNet-id folders; hidden and system folders
    (an unzipped archive's __MACOSX, a notebook's .ipynb_checkpoints, lost+found) are skipped;
    any other folder that is not a wnid is refused, never a silent switch to folder order."""
    from tasks.data.folders import imagenet_classes

    wnids = imagenet_classes()
    spec = {"dataset": "image_folder", "root": str(tmp_path / "val"),
            "transform": {"recipe": "resize_center_crop", "resize": 8, "size": 8}}
    for wnid in (wnids[7], wnids[500]):
        write_image(tmp_path / "val" / wnid / "a.png")
    for junk in ("__MACOSX", ".ipynb_checkpoints", "lost+found"):
        write_image(tmp_path / "val" / junk / "a.png")
    ds, _ = build_set(spec, CFG)
    assert sorted(label for _, label in ds.samples) == [7, 500]
    write_image(tmp_path / "val" / "n0_extra" / "a.png")
    with pytest.raises(ValueError, match="n0_extra are not ImageNet WordNet ids"):
        build_set(spec, CFG)
    custom = {"dataset": "image_folder", "root": str(tmp_path / "custom"), "transform": spec["transform"]}
    for name in ("zebra", "apple"):
        write_image(tmp_path / "custom" / name / "a.png")
    ds, _ = build_set(custom, CFG)                 # no wnid at all: the sorted folder names
    assert sorted((os.path.basename(os.path.dirname(p)), label) for p, label in ds.samples) == [("apple", 0), ("zebra", 1)]


def test_label_noise_changes_exactly_round_n_p_labels_each_to_another_class():
    from tasks.data.label_noise import noisy_labels

    clean, _ = build_set({"dataset": "digits", "split": "train"}, CFG)
    noisy, _ = build_set({"dataset": "digits", "split": "train", "label_noise": {"fraction": 0.2, "seed": 7}}, CFG)
    n = len(clean)
    changed = noisy.labels != np.asarray(clean.labels)
    assert changed.sum() == round(n * 0.2) and np.array_equal(noisy.noisy, changed)
    assert np.array_equal(noisy.clean_labels, np.asarray(clean.labels))          # the clean labels stay with it
    assert set(noisy.labels[changed]) <= set(range(5))
    img, label, index = noisy[int(np.flatnonzero(changed)[0])]
    assert label != noisy.clean_labels[int(np.flatnonzero(changed)[0])]
    again, _ = build_set({"dataset": "digits", "split": "train", "label_noise": {"fraction": 0.2, "seed": 7}}, CFG)
    other, _ = build_set({"dataset": "digits", "split": "train", "label_noise": {"fraction": 0.2, "seed": 8}}, CFG)
    assert np.array_equal(again.labels, noisy.labels) and not np.array_equal(other.labels, noisy.labels)
    y = np.array([0, 1, 2, -1] * 250)                            # unlabelled samples are never chosen
    out = noisy_labels(y, 0.5, 0, num_classes=3)
    assert (out[y == -1] == -1).all() and (out != y).sum() == 375
    for p in (0.0, 1.0):
        assert (noisy_labels(y, p, 1, 3) != y).sum() == round(750 * p)
    with pytest.raises(ValueError, match="own seed"):
        build_set({"dataset": "digits", "split": "train", "label_noise": {"fraction": 0.2}}, CFG)


def test_label_noise_in_training_changes_the_training_split_only():
    from tasks.classify.setup import build_data

    cfg = {"data": {"train": {"dataset": "digits", "split": "train", "label_noise": {"fraction": 0.3, "seed": 1}},
                    "holdout": {"fraction": 0.25, "seed": 3}, "input_size": [3, 16, 16]}}
    train, val = build_data(cfg)
    assert int(train.noisy.sum()) == round(len(train) * 0.3)
    assert len(train) + len(val) == len(build_set({"dataset": "digits", "split": "train"}, CFG)[0])
    val_labels = [val[i][1] for i in range(len(val))]
    assert val_labels == [int(val.dataset.labels[j]) for j in val.indices]      # validation keeps its labels


def test_imagenet_val_as_distributed_is_read_with_its_labels(tmp_path):
    """One flat folder of ILSVRC2012_val_*.JPEG, labelled by Kaggle's LOC_val_solution.csv or by
    the devkit's ground truth and meta.mat: ImageNet's indices, as a class-folder tree gives."""
    from scipy.io import savemat

    from tasks.data.folders import imagenet_classes

    wnids = imagenet_classes()
    picks = [wnids[3], wnids[999], wnids[3]]
    val = tmp_path / "val"
    for i in range(3):
        write_image(val / f"ILSVRC2012_val_{i + 1:08d}.png")
    spec = {"dataset": "image_folder", "root": str(val), "transform": {"recipe": "plain"}}
    with pytest.raises(ValueError, match="LOC_val_solution.csv"):
        build_set(spec, CFG)
    (tmp_path / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n" + "".join(f"ILSVRC2012_val_{i + 1:08d},{w} 1 2 3 4 {w} 5 6 7 8\n"
                                               for i, w in enumerate(picks)))
    ds, _ = build_set(spec, CFG)
    assert [label for _, label in ds.samples] == [3, 999, 3]
    os.remove(tmp_path / "LOC_val_solution.csv")
    devkit = tmp_path / "ILSVRC2012_devkit_t12" / "data"
    devkit.mkdir(parents=True)
    ilsvrc_ids = {wnids[3]: 7, wnids[999]: 12}              # the devkit numbers classes its own way
    synsets = np.zeros((2,), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O")])
    synsets[0] = (7, wnids[3])
    synsets[1] = (12, wnids[999])
    savemat(devkit / "meta.mat", {"synsets": synsets})
    (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{ilsvrc_ids[w]}\n" for w in picks))
    ds, _ = build_set(spec, CFG)
    assert [label for _, label in ds.samples] == [3, 999, 3]


def test_imagenet_v2_folders_are_class_indices(tmp_path):
    root = tmp_path / "imagenetv2-matched-frequency-format-val"
    for k, n in ((0, 2), (7, 1), (999, 1)):
        for i in range(n):
            write_image(root / str(k) / f"{i}.jpeg", k % 250)
    (root / "__MACOSX").mkdir()
    ds, subset = build_set({"dataset": "imagenet_v2", "root": str(root), "transform": PLAIN}, CFG)
    assert subset is None and [ds[i][1] for i in range(len(ds))] == [0, 0, 7, 999]
    (root / "n01440764").mkdir()
    with pytest.raises(ValueError, match="class indices 0-999"):
        build_set({"dataset": "imagenet_v2", "root": str(root), "transform": PLAIN}, CFG)


def test_relative_paths_are_taken_from_the_project_root_in_nested_set_specs_too():
    from tasks.data import with_root

    spec = {"dataset": "domains", "fold": 0,
            "reference": {"dataset": "image_folder", "root": "data/train"},
            "shifted": {"dataset": "class_subset", "root": "/abs/r", "classes_of": "data/val",
                        "transform": {"recipe": "plain", "size": 8}, "shift": {"kind": "vflip"}}}
    out = with_root(spec, "/project")
    assert out["reference"] == {"dataset": "image_folder", "root": "/project/data/train"}
    assert out["shifted"]["root"] == "/abs/r" and out["shifted"]["classes_of"] == "/project/data/val"
    assert out["shifted"]["transform"] == spec["shifted"]["transform"] and out["fold"] == 0
    assert spec["reference"]["root"] == "data/train"                 # the caller's spec is left as it was
    assert with_root(spec, None) == spec
