"""Models saved by tasks/classify/train.py (and tasks/distill, which trains through it): the file
format, and reading one, several (globs) or an ensemble of them.

    saved = read_classifier(path)          # the dict, validated
    model = classifier_from(saved)         # the network, in evaluation mode
    ensemble = load_ensemble(model_paths(["models/member_*.pt"]))
"""
from __future__ import annotations

import glob
import json
from typing import List, Sequence

import torch
from torch import nn

from tasks.models import create_model

MODEL_FORMAT = "sheetrun_classifier/1"


def mimo_members(model_cfg: dict) -> int:
    """``model.mimo.members`` of a model config (0: not MIMO)."""
    return int((model_cfg.get("mimo") or {}).get("members", 0) or 0)


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


def read_classifier(path: str, map_location="cpu") -> dict:
    saved = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(saved, dict) or saved.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path} is not a model saved by tasks/classify or tasks/distill")
    return saved


def classifier_from(saved: dict) -> nn.Module:
    m = saved["model"]
    model = create_model(m["name"], num_classes=saved["num_classes"], in_chans=saved["data_config"]["input_size"][0],
                         mimo=mimo_members(m), **(m.get("kwargs") or {}))
    model.load_state_dict(saved["state_dict"])
    return model.eval()


def load_classifier(path: str, map_location="cpu") -> nn.Module:
    """The network saved at ``path``, in evaluation mode."""
    return classifier_from(read_classifier(path, map_location))


def architecture(saved: dict) -> str:
    """What makes two saved models batchable together: their model name, kwargs and MIMO setting."""
    return json.dumps({k: saved["model"].get(k) for k in ("name", "kwargs", "mimo")}, sort_keys=True)


def ensemble_from(saved: Sequence[dict]) -> nn.Module:
    """The saved members as one :class:`tasks.models.ensemble.Ensemble` (batched per architecture)."""
    from tasks.models.ensemble import Ensemble

    return Ensemble([classifier_from(s) for s in saved], [architecture(s) for s in saved])


def load_ensemble(paths: Sequence[str]) -> nn.Module:
    """The models saved at ``paths`` as one ensemble."""
    return ensemble_from([read_classifier(p) for p in paths])
