"""Models saved by tasks/classify/train.py (and tasks/distill, which trains through it): the file
format, and reading one, several (globs) or an ensemble of them.

    saved = read_classifier(path)          # the dict, validated
    model = classifier_from(saved)         # the network, in evaluation mode
    ensemble = load_ensemble(model_paths(["models/member_*.pt"]))
    saved = read_classifier(path, epoch=20)        # the snapshot kept at epoch 20 (keep_checkpoints)
    snapshots(path)                                # {epoch: path} of every kept snapshot

Every file is one format: the final model and the snapshots kept at ``keep_checkpoints``
epochs (``<save_path stem>.epoch<N>.pt``) alike, each with the ``epoch`` it was saved at.
"""
from __future__ import annotations

import glob
import json
import os
import re
from typing import Dict, List, Sequence

import torch
from torch import nn

from tasks.models import create_model

MODEL_FORMAT = "sheetrun_classifier/1"


def mimo_members(model_cfg: dict) -> int:
    """``model.mimo.members`` of a model config (0: not MIMO)."""
    return int((model_cfg.get("mimo") or {}).get("members", 0) or 0)


def joint_members(model_cfg: dict) -> int:
    """``model.joint_members`` of a model config (0: one network)."""
    return int(model_cfg.get("joint_members") or 0)


def model_paths(patterns) -> List[str]:
    """The files a path, a glob or a list of them name, each pattern's matches sorted."""
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    found: List[str] = []
    for p in patterns:
        hits = sorted(glob.glob(p))
        if not hits:
            raise FileNotFoundError(f"no model file matches {p!r}")
        found += hits
    return found


def snapshot_path(save_path: str, epoch: int) -> str:
    """Where the snapshot of ``save_path``'s model kept at ``epoch`` is (or goes)."""
    return f"{os.path.splitext(save_path)[0]}.epoch{int(epoch)}.pt"


def snapshots(save_path: str) -> Dict[int, str]:
    """{epoch: path} of the snapshots kept of ``save_path``'s model, by epoch."""
    stem = os.path.splitext(save_path)[0]
    found = {}
    for path in glob.glob(glob.escape(stem) + ".epoch*.pt"):
        match = re.fullmatch(r"\.epoch(\d+)\.pt", path[len(stem):])
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def read_classifier(path: str, map_location="cpu", epoch: int | None = None) -> dict:
    """The model saved at ``path`` — or, with ``epoch``, its snapshot kept at that epoch."""
    if epoch is not None:
        kept = snapshots(path)
        if int(epoch) not in kept:
            raise FileNotFoundError(f"no snapshot of {path} at epoch {epoch}; kept: {sorted(kept) or 'none'} "
                                    "(keep_checkpoints in the training config)")
        path = kept[int(epoch)]
    saved = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(saved, dict) or saved.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path} is not a model saved by tasks/classify or tasks/distill")
    return saved


def classifier_from(saved: dict) -> nn.Module:
    m = saved["model"]
    zero_shot = saved["state_dict"]["classification_head.weight"].shape[1] if m.get("zero_shot_head") else None
    model = create_model(m["name"], num_classes=saved["num_classes"], in_chans=saved["data_config"]["input_size"][0],
                         mimo=mimo_members(m), joint_members=joint_members(m), zero_shot_head=zero_shot,
                         **(m.get("kwargs") or {}))
    model.load_state_dict(saved["state_dict"])
    return model.eval()


def load_classifier(path: str, map_location="cpu", epoch: int | None = None) -> nn.Module:
    """The network saved at ``path`` (or its snapshot at ``epoch``), in evaluation mode."""
    return classifier_from(read_classifier(path, map_location, epoch))


def architecture(saved: dict) -> str:
    """What makes two saved models batchable together: their model name, kwargs and MIMO setting."""
    return json.dumps({k: saved["model"].get(k) for k in ("name", "kwargs", "mimo", "joint_members")}, sort_keys=True)


def ensemble_from(saved: Sequence[dict]) -> nn.Module:
    """The saved members as one :class:`tasks.models.ensemble.Ensemble` (batched per architecture)."""
    from tasks.models.ensemble import Ensemble

    return Ensemble([classifier_from(s) for s in saved], [architecture(s) for s in saved])


def load_ensemble(paths: Sequence[str]) -> nn.Module:
    """The models saved at ``paths`` as one ensemble."""
    return ensemble_from([read_classifier(p) for p in paths])


# the objectives that saved their metadata before a saved model named its objective
OLDER_OBJECTIVES = ("distill", "forde")


def training_of(saved: dict) -> dict:
    """How a saved model was trained, as it declares it: ``{key: metadata}`` of its objective
    (``objective`` names the key: tasks/classify/objectives.py); {} for plain cross-entropy."""
    keys = [saved["objective"]] if saved.get("objective") else [k for k in OLDER_OBJECTIVES if k in saved]
    return {key: saved[key] for key in keys if key in saved}
