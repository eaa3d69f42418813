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
        assert changed <= set(check.SHRINK) | set(extra) | {"amp", "name", "input_size" if extra else "amp"}, changed
        changed_in[folder] = changed
    assert {"epochs", "batch_size", "devices", "name"} <= \
        changed_in["default_configs/sed/imagenet"] | changed_in["default_configs/distill/imagenet"]
    assert {"epochs", "batch_size", "width", "joint_members", "input_size"} <= \
        changed_in["default_configs/forde/full_scale"]
    forde = yaml.safe_load(open(os.path.join(REPO, "default_configs", "forde", "full_scale", "cifar10_train.yaml")))
    small = check.shrink(forde, extra=check.FOLDERS["default_configs/forde/full_scale"])
    assert small["data"]["input_size"] == [3, 32, 32] and small["model"]["joint_members"] == 3
    assert small["forde"] == forde["forde"] and small["optim"] == forde["optim"]
