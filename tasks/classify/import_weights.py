"""Make a model file of tasks/classify from published weights: a timm architecture and a local
weights file (timm's ``.safetensors`` or a ``.pth`` state dict), so evaluation rows read it as
they read a model trained here.

    python tasks/classify/import_weights.py --config default_configs/robustness/full_scale/import_model.yaml

``model``: ``name`` (a timm architecture, with its pretrained tag: ``resnet50.a1_in1k``), ``weights``
(the local file), ``kwargs``; ``num_classes``. ``data``: the preprocessing the weights were
published with, ``timm`` (default: timm's pretrained config of ``name``: input size, mean, std,
interpolation, centre-crop fraction) or a mapping of those keys. Every weight must fit the
architecture. The file goes to ``save_path``; the row gets the parameter count.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

DATA_KEYS = ("input_size", "mean", "std", "interpolation", "crop_pct")


def published_data_config(name: str) -> dict:
    """timm's preprocessing of the pretrained weights ``name`` (``arch.tag``), without downloading anything."""
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        raise ValueError(f"timm has no pretrained config {name!r} (give data: {{input_size, mean, std, ...}})")
    return {"input_size": list(cfg.input_size), "mean": list(cfg.mean), "std": list(cfg.std),
            "interpolation": cfg.interpolation or "bicubic", "crop_pct": float(cfg.crop_pct or 0.875)}


def import_weights(cfg: dict) -> dict:
    from tasks.classify.checkpoints import MODEL_FORMAT
    from tasks.common import save_atomic
    from tasks.models import create_model

    m = dict(cfg["model"])
    if not m.get("weights"):
        raise ValueError("model.weights: the local file of the published weights is required")
    data = cfg.get("data") or "timm"
    dcfg = published_data_config(m["name"]) if data == "timm" else {k: data[k] for k in DATA_KEYS if k in data}
    missing = [k for k in ("input_size", "mean", "std") if k not in dcfg]
    if missing:
        raise ValueError(f"data lacks {', '.join(missing)}")
    arch = m["name"].split(".")[0]
    net = create_model(arch, num_classes=int(cfg["num_classes"]), in_chans=int(dcfg["input_size"][0]),
                       weights=m["weights"], **(m.get("kwargs") or {}))
    record = {"format": MODEL_FORMAT, "model": {"name": arch, "kwargs": m.get("kwargs") or {}},
              "num_classes": int(cfg["num_classes"]), "data_config": dcfg, "history": [],
              "config": {**cfg, "data": dcfg}, "state_dict": net.state_dict(), "published": m["name"]}
    save_atomic(record, cfg["save_path"])
    params = sum(p.numel() for p in net.parameters())
    print(f"{m['name']}: {params:,} parameters from {m['weights']} -> {cfg['save_path']}", flush=True)
    return {"parameters": params}


def main(argv=None) -> None:
    from runner import report
    from tasks.common import load_config

    report(import_weights(load_config(__doc__.splitlines()[0], argv)))


if __name__ == "__main__":
    main()
