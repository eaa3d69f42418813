"""scripts/check_full_scale.py changes only sizes of the full-scale configs (it runs in .ci/run)."""
import glob
import os
import sys

import yaml

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "scripts"))
import check_full_scale as check  # noqa: E402


def leaves(cfg, prefix=""):
    if isinstance(cfg, dict):
        for k, v in cfg.items():
            yield from leaves(v, f"{prefix}{k}/")
    elif isinstance(cfg, list) and any(isinstance(v, (dict, list)) for v in cfg):
        for i, v in enumerate(cfg):
            yield from leaves(v, f"{prefix}{i}/")
    else:
        yield prefix.rstrip("/"), cfg


def test_only_sizes_and_networks_change():
    changed_in = {}
    for folder, extra in check.FOLDERS.items():
        paths = glob.glob(os.path.join(REPO, folder, "*.yaml"))
        assert len(paths) >= 4, folder
        changed = set()
        for path in paths:
            cfg = yaml.safe_load(open(path))
            before, after = dict(leaves(cfg)), dict(leaves(check.shrink(cfg, extra=extra)))
            assert before.keys() == after.keys(), path
            changed |= {key.split("/")[-1] for key in before if before[key] != after[key]}
        assert changed <= set(check.SHRINK) | set(extra) | {"amp", "name", "input_size" if extra else "amp", "keep_checkpoints" if "epochs" in extra else "amp"}, changed
        changed_in[folder] = changed
    assert {"epochs", "batch_size", "devices", "name"} <= \
        changed_in["default_configs/sed/imagenet"] | changed_in["default_configs/distill/imagenet"]
    assert {"epochs", "batch_size", "width", "joint_members", "input_size"} <= \
        changed_in["default_configs/forde/full_scale"]
    assert {"epochs", "batch_size", "img_size", "size", "resize", "input_size", "name"} <= \
        changed_in["default_configs/robustness/full_scale"]
    forde = yaml.safe_load(open(os.path.join(REPO, "default_configs", "forde", "full_scale", "cifar10_train.yaml")))
    small = check.shrink(forde, extra=check.FOLDERS["default_configs/forde/full_scale"])
    assert small["data"]["input_size"] == [3, 32, 32] and small["model"]["joint_members"] == 3
    assert small["forde"] == forde["forde"] and small["optim"] == forde["optim"]


def test_the_robustness_split_sheet_keeps_only_the_kept_published_models(tmp_path):
    import csv
    import shutil

    sheet = tmp_path / "split.csv"
    shutil.copy(os.path.join(REPO, "result_sheets", "robustness_imagenet_split.csv"), sheet)
    check.keep_published(str(sheet))
    rows = list(csv.DictReader(open(sheet)))
    imported = [r["delta:model/name"] for r in rows if r["path_to_main"] == "tasks/classify/import_weights.py"]
    assert imported == list(check.PUBLISHED_KEPT)
    names = {r["name"] for r in rows}
    for r in rows:                     # every dependency left names a row still there
        assert all(t.strip() in names for t in r["depends_on"].split(",") if t.strip()), r["name"]
    original = list(csv.DictReader(open(os.path.join(REPO, "result_sheets", "robustness_imagenet_split.csv"))))
    def without_depends(r):
        return {k: v for k, v in r.items() if k != "depends_on"}

    assert [without_depends(r) for r in original if r["name"] in names] == [without_depends(r) for r in rows]
    assert sum(r["name"].startswith("domain ") for r in rows) == sum(r["name"].startswith("domain ") for r in original)

