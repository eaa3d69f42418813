"""Jacobian statistics of one checkpoint on one split, one JSON file per batch (seed 003).

    python tasks/jacobian/compute_stats.py --config default_configs/jacobian/compute_stats.yaml

Reads a model saved by tasks/classify/train.py — the final one, or with ``epoch`` the snapshot
kept at that epoch (``keep_checkpoints``; 0 is the initialisation) — and rebuilds its data from
the training config stored in the file: ``split: train`` is the training samples with the
labels the network was trained on (``label_noise`` included; the clean ones kept beside them),
``val`` the training's ``holdout``, ``test`` the set ``test_data`` names. Images are read
without augmentation.

The split's samples are put in an order (``sample_seed``: null keeps the dataset's order, an
integer draws a permutation) and this row takes ``num_samples`` of them after ``skip``, in
batches of ``batch_size``: rows with the same order and different ``skip`` are disjoint shards
that together cover the unsharded set, and a sample's numbers never depend on its shard (the
power iteration starts from a vector drawn from the sample's id).

For each batch and each ``normalizations`` entry (none | softmax | logsoftmax | crossentropy),
the per-sample Jacobian (tasks/jacobian/jacobian.py; ``mode``: batched | low_memory) and its
``statistics`` (frobenius | operator) go to
``<output_dir>/<run>/epoch<E>/<split>/batch<NNNNN>.json`` with the sample ids, the training
(noisy) and clean labels, the network's predictions and the metadata. The row gets, per
normalisation and statistic, the mean and median over the clean and over the noisy samples
(``fro_none_clean_mean``, ``op_softmax_noisy_median``, ...), the sample counts, the speed, and
``error_clean_labels`` (the fraction predicted other than the clean label: the test error on
``test``) and ``error_trained_labels`` (other than the label trained on).
"""
from __future__ import annotations

import copy
import os
import sys
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from tasks.common import load_config, pick_device, progress  # noqa: E402
from tasks.jacobian.jacobian import MODES, OUTPUTS, jacobians, statistics  # noqa: E402
from tasks.jacobian.shards import FORMAT, write_json  # noqa: E402

SPLITS = ("train", "val", "test")
SHORT = {"frobenius": "fro", "operator": "op"}


def split_set(saved: dict, split: str, test_data: dict | None, root: str | None = None):
    """(dataset, training labels [N], clean labels [N]) of one split of the model's data, by position."""
    from tasks.classify.setup import build_data, data_config
    from tasks.data import build_set
    from tasks.data.label_noise import labels_of

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    cfg = copy.deepcopy(saved["config"])
    cfg["data"]["train"]["augment"] = False
    if split == "test":
        if not test_data:
            raise ValueError("split: test needs test_data (the data spec of the test set)")
        dataset, _ = build_set(dict(test_data, augment=False), data_config(cfg), root)
    else:
        train, val = build_data(cfg, root)
        if split == "val" and val is None:
            raise ValueError("split: val, but the training had no validation set (data.val or data.holdout)")
        dataset = train if split == "train" else val
    labels = labels_of(dataset) if not hasattr(dataset, "clean_labels") else np.asarray(dataset.labels)
    clean = np.asarray(getattr(dataset, "clean_labels", labels))
    return dataset, labels, clean


def shard(length: int, batch_size: int, skip: int, num_samples: int | None, sample_seed) -> list:
    """This row's batches: lists of positions in the split (see the module docstring)."""
    if batch_size < 1 or skip < 0 or skip % batch_size:
        raise ValueError(f"skip ({skip}) must be a multiple of batch_size ({batch_size}) and not negative")
    order = np.arange(length) if sample_seed is None else np.random.default_rng(int(sample_seed)).permutation(length)
    if num_samples is None:
        num_samples = length - skip
    if num_samples < 1 or skip + num_samples > length:
        raise ValueError(f"skip {skip} + num_samples {num_samples} is outside the split's {length} samples")
    if num_samples % batch_size and skip + num_samples != length:
        raise ValueError(f"num_samples ({num_samples}) must be a multiple of batch_size ({batch_size}), "
                         "unless the shard ends at the split's end")
    taken = order[skip:skip + num_samples]
    return [taken[i:i + batch_size].tolist() for i in range(0, len(taken), batch_size)]


def summary(stats: dict, noisy: np.ndarray) -> dict:
    """Mean and median of every normalisation's statistics over the clean and the noisy samples."""
    out = {}
    for norm, values in stats.items():
        for name, short in SHORT.items():
            if name not in values:
                continue
            v = np.asarray(values[name], dtype=np.float64)
            for group, mask in (("clean", ~noisy), ("noisy", noisy)):
                if mask.any():
                    out[f"{short}_{norm}_{group}_mean"] = float(v[mask].mean())
                    out[f"{short}_{norm}_{group}_median"] = float(np.median(v[mask]))
    return out


def main(argv=None) -> dict:
    from runner import report
    from tasks.classify.checkpoints import classifier_from, read_classifier

    cfg = load_config(__doc__.splitlines()[0], argv)
    options = StatsOptions.from_config(cfg)
    device = pick_device(cfg.get("device", "auto"))
    torch.set_grad_enabled(False)
    saved = read_classifier(cfg["model"], epoch=cfg.get("epoch"))
    model = classifier_from(saved).to(device)
    epoch = int(saved.get("epoch", cfg["epoch"] if cfg.get("epoch") is not None else -1))
    split = cfg.get("split", "train")
    dataset, labels, clean = split_set(saved, split, cfg.get("test_data"))
    batch_size = int(cfg.get("batch_size", 128))
    batches = shard(len(dataset), batch_size, int(cfg.get("skip") or 0), cfg.get("num_samples"),
                    cfg.get("sample_seed"))
    run = os.path.splitext(os.path.basename(cfg["model"]))[0]
    out_dir = os.path.join(cfg.get("output_dir", "results/jacobian"), run, f"epoch{epoch}", split)
    first = int(cfg.get("skip") or 0) // batch_size
    metadata = shard_metadata(cfg, saved, run, epoch, split, options, batch_size, str(device))
    print(f"{run} epoch {epoch}, {split}: {sum(map(len, batches))} of {len(dataset)} samples in {len(batches)} "
          f"batches from batch {first}; {', '.join(options.norms)}; {options.mode} on {device}", flush=True)
    started = time.time()
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=int(cfg.get("num_workers", 0)))
    tally = Tally(options.norms)
    bar = progress(sum(map(len, batches)), f"{run} e{epoch} {split}")
    for b, ((x, y, ids), positions) in enumerate(zip(loader, batches)):
        record = tally.batch(model, x.to(device), y.to(device), ids, np.asarray(positions), labels, clean, options)
        write_json({"format": FORMAT, "metadata": dict(metadata, batch=first + b), **record},
                   os.path.join(out_dir, f"batch{first + b:05d}.json"))
        bar.update(len(positions))
    bar.close()
    seconds = time.time() - started
    metrics = tally.metrics(options.names, epoch, len(batches), seconds)
    report(metrics)
    print(f"wrote {len(batches)} files to {out_dir} ({seconds:.1f} s)", flush=True)
    return metrics


@dataclass
class StatsOptions:
    """What to compute: the normalisations of the output, the statistics, how the Jacobian is
    taken (``mode``) and the power iteration's settings."""
    norms: list
    names: list
    mode: str
    power: dict

    @classmethod
    def from_config(cls, cfg: dict) -> "StatsOptions":
        norms = list(cfg.get("normalizations") or ["none"])
        unknown = [n for n in norms if n not in OUTPUTS]
        if unknown:
            raise ValueError(f"normalizations must be among {sorted(OUTPUTS)}, got {unknown}")
        mode = cfg.get("mode", "batched")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        return cls(norms, list(cfg.get("statistics") or ["frobenius", "operator"]), mode,
                   dict(cfg.get("power_iteration") or {}))


def shard_metadata(cfg: dict, saved: dict, run: str, epoch: int, split: str, options: StatsOptions,
                   batch_size: int, device: str) -> dict:
    """What every batch file says of the run it belongs to."""
    train_data = saved["config"]["data"]["train"]
    return {"model": cfg["model"], "run": run, "network": saved["model"]["name"],
            "network_kwargs": saved["model"].get("kwargs") or {}, "epoch": epoch, "split": split,
            "dataset": (cfg.get("test_data") or {}).get("dataset") if split == "test" else train_data.get("dataset"),
            "label_noise": train_data.get("label_noise"), "holdout": saved["config"]["data"].get("holdout"),
            "normalizations": options.norms, "statistics": options.names, "mode": options.mode,
            "power_iteration": options.power, "batch_size": batch_size, "sample_seed": cfg.get("sample_seed"),
            "device": device}


class Tally:
    """The statistics of every sample seen so far, and which were noisy, wrongly predicted (against
    the clean labels) and not fitted (against the labels trained on)."""

    def __init__(self, norms: list):
        self.everything = {n: {} for n in norms}
        self.noisy, self.wrong, self.unfit = [], [], []

    def batch(self, model, x, y, ids, pos: np.ndarray, labels, clean, options: StatsOptions) -> dict:
        """One batch's statistics, added to the tally; returns what its batch file holds."""
        stats = {}
        for norm, jac in jacobians(model, x, options.norms, y, options.mode).items():   # one J of the logits
            values = statistics(jac, options.names, options.power, ids.tolist())
            stats[norm] = {k: v.cpu().tolist() for k, v in values.items()}
            for k, v in stats[norm].items():
                self.everything[norm].setdefault(k, []).extend(v)
        predictions = model(x).argmax(-1).cpu().numpy()
        self.noisy.append(labels[pos] != clean[pos])
        self.wrong.append(predictions != clean[pos])
        self.unfit.append(predictions != labels[pos])
        return {"sample_ids": ids.tolist(), "positions": pos.tolist(), "targets": labels[pos].tolist(),
                "ground_truths": clean[pos].tolist(), "predictions": predictions.tolist(), "stats": stats}

    def metrics(self, names: list, epoch: int, batches: int, seconds: float) -> dict:
        """The row's numbers: sample counts, the errors, the speed, each statistic's summary, the
        power iterations left unsettled."""
        def joined(parts):
            return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)

        noisy, wrong, unfit = joined(self.noisy), joined(self.wrong), joined(self.unfit)
        metrics = {"samples": int(len(noisy)), "noisy_samples": int(noisy.sum()), "epoch": epoch,
                   **({"error_clean_labels": round(float(wrong.mean()), 6),
                       "error_trained_labels": round(float(unfit.mean()), 6)} if len(wrong) else {}),
                   "batches": batches, "samples_per_s": round(len(noisy) / max(seconds, 1e-9), 2),
                   **{k: round(v, 6) for k, v in summary(self.everything, noisy).items()}}
        if "operator" in names:          # samples whose power iteration the cap stopped before the tolerance
            metrics["power_unsettled"] = sum(int(np.sum(~np.asarray(v["operator_settled"], dtype=bool)))
                                             for v in self.everything.values() if "operator_settled" in v)
        return metrics


if __name__ == "__main__":
    main()
