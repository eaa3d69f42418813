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
    paths = glob.glob(os.path.join(REPO, "default_configs", "sed", "imagenet", "*.yaml")) + \
        glob.glob(os.path.join(REPO, "default_configs", "distill", "imagenet", "*.yaml"))
    assert len(paths) >= 9
    changed = set()
    for path in paths:
        cfg = yaml.safe_load(open(path))
        before, after = dict(leaves(cfg)), dict(leaves(check.shrink(cfg)))
        assert before.keys() == after.keys(), path
        changed |= {key.split("/")[-1] for key in before if before[key] != after[key]}
    assert changed <= set(check.SHRINK) | {"amp", "name"}, changed
    assert {"epochs", "batch_size", "devices", "name"} <= changed
