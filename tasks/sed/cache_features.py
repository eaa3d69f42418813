"""Cache the frozen part of a timm backbone's output over datasets, to HDF5.

    python tasks/sed/cache_features.py --config default_configs/sed/cache_features.yaml

For each selected set (``sets``: ``all`` or names from ``catalog``) the
featurizer runs once per augmented pass (``epochs`` in the set's spec) and the
features go to ``<cache_dir>/<key>_<set>.hdf5`` (see :mod:`tasks.sed.cache`).
A finished file with the same key is reused; an interrupted one is resumed.
Data loading (``num_workers``) and HDF5 writing (a background thread) overlap
with the forward passes.
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch.utils.data import DataLoader

from runner import report
from tasks.common import load_config, pick_device, progress, save_atomic
from tasks.data import build_set, expand_catalog
from tasks.sed import cache
from tasks.sed.backbones import backbone_identity, data_config, load_backbone, split_backbone


def cache_set(featurizer, dim: int, name: str, spec: dict, data_cfg: dict, backbone_id: str, cfg: dict,
              device) -> dict:
    """Cache one set (or reuse / resume it); returns its index entry.

    ``dim`` is the featurizer's output size (the head's input size)."""
    key = cache.cache_key(backbone_id, spec, data_cfg)
    path = os.path.join(cfg["cache_dir"], cache.cache_filename(key, name))
    epochs = int(spec.get("epochs", 1))
    entry = {"file": os.path.basename(path), "key": key, "backbone_id": backbone_id, "epochs": epochs,
             "group": spec.get("group")}
    if os.path.exists(path):
        try:
            attrs = cache.check_complete(path)
            print(f"{name}: reusing {path}", flush=True)
            subset = attrs.get("class_subset")
            return dict(entry, n=int(attrs["n_total"]), reused=True,
                        class_subset=None if subset is None else [int(c) for c in subset])
        except cache.IncompleteCache as e:
            print(f"{name}: {e}; rebuilding", flush=True)
            os.remove(path)

    dataset, class_subset = build_set(spec, data_cfg)
    n_total = len(dataset) * epochs
    entry.update(n=n_total, class_subset=class_subset)
    attrs = {"set_name": name, "backbone_id": backbone_id, "epochs": epochs,
             "num_samples": len(dataset), "spec": json.dumps(spec, sort_keys=True)}
    if class_subset is not None:
        attrs["class_subset"] = np.asarray(class_subset, dtype=np.int64)
    writer = cache.CacheWriter(path, key, n_total, dim, attrs)
    if writer.resumed:
        print(f"{name}: resuming at row {writer.start} of {n_total}", flush=True)
    positions = [p % len(dataset) for p in range(writer.start, n_total)]
    loader = DataLoader(dataset, batch_size=cfg["batch_size"], sampler=positions,
                        num_workers=cfg.get("num_workers", 0), pin_memory=device.type == "cuda",
                        persistent_workers=False)
    amp = bool(cfg.get("amp", False)) and device.type == "cuda"
    bar = progress(n_total, name, initial=writer.start)
    try:
        with ThreadPoolExecutor(max_workers=1) as io, torch.inference_mode():
            pending = None
            for images, labels, indices in loader:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    feats = featurizer(images.to(device, non_blocking=True))
                feats = feats.float().cpu().numpy()
                if pending is not None:
                    pending.result()          # at most one write in flight
                pending = io.submit(writer.write, feats, labels.numpy(), indices.numpy())
                bar.update(len(feats))
            if pending is not None:
                pending.result()
        writer.finish()
    finally:
        bar.close()
        writer.close()
    return entry


def main(argv=None) -> None:
    cfg = load_config(__doc__.splitlines()[0], argv)
    device = pick_device(cfg.get("device", "auto"))
    torch.manual_seed(cfg.get("seed", 0))

    specs = expand_catalog(cfg["catalog"], cfg.get("sets", "all"))
    model = load_backbone(cfg["backbone"])
    featurizer, head = split_backbone(model, cfg["backbone"].get("split", "auto"))
    featurizer.to(device)
    data_cfg = data_config(model)
    backbone_id = cache.digest(backbone_identity(cfg["backbone"]))
    os.makedirs(cfg["cache_dir"], exist_ok=True)
    save_atomic({"backbone": cfg["backbone"], "backbone_id": backbone_id, "data_config": data_cfg, **head},
                os.path.join(cfg["cache_dir"], "heads", f"{backbone_id}.pt"))
    print(f"backbone {cfg['backbone'].get('name') or cfg['backbone'].get('checkpoint')} "
          f"({head['kind']} split, {head['dim']}-d features) on {device}; {len(specs)} sets", flush=True)

    start, rows, reused = time.time(), 0, 0
    for i, (name, spec) in enumerate(specs.items(), 1):
        entry = cache_set(featurizer, head["dim"], name, spec, data_cfg, backbone_id, cfg, device)
        reused += bool(entry.pop("reused", False))
        rows += entry["n"]
        cache.register_sets(cfg["cache_dir"], {name: entry})
        report(sets_cached=i, sets_reused=reused, rows_cached=rows)
    report(cache_seconds=round(time.time() - start, 1), feature_dim=head["dim"])
    print(f"cached {len(specs)} sets ({reused} reused), {rows} rows, in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
