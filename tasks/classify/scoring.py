"""Scoring a classifier on a set: the per-sample arrays of one domain (:func:`evaluate_domain`), their
summary (:func:`summarise`), OOD detection between domains, and the groups' means and pooled
numbers — what tasks/classify/evaluate.py writes, and what other scripts read back
(:func:`read_correct`). The numbers are those of :mod:`tasks.metrics` (per sample:
:func:`tasks.metrics.classification.sample_scores`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List

import numpy as np
import torch
from torch.utils.data import DataLoader

from tasks.classify.checkpoints import read_classifier
from tasks.classify.kinds import ModelKind, create_kind
from tasks.data import expand_catalog
from tasks.metrics import classification as C
from tasks.metrics.ood import auroc
from tasks.metrics.uncertainty import MEASURES

PROTOCOLS = ("restrict_logits", "argmax_before")


def load_kind(paths: List[str], kind: str, device, options: dict | None = None) -> ModelKind:
    """The models saved at ``paths`` (each file read once), read as ``kind`` (:mod:`tasks.classify.kinds`)."""
    return create_kind([read_classifier(p) for p in paths], kind, device, options)


def log_predict(predict, x: torch.Tensor, classes=None):
    """(log-probabilities, measures) of a model kind, exact (:meth:`ModelKind.log_predict`); any other
    predictor returning probabilities (a test's fixed one) is read through their logarithm."""
    if isinstance(predict, ModelKind):
        return predict.log_predict(x, classes)
    probs, measures = predict(x, classes)
    return probs.log(), measures


def evaluate_domain(predict: ModelKind, dataset, batch_size: int, device, workers: int = 0,
                    subset=None, protocol: str = "restrict_logits", groups=None) -> Dict[str, np.ndarray]:
    """Per-sample arrays of one domain: labels, top-1 / top-5 hits, confidence, NLL, Brier, measures.

    ``subset``: the domain's classes (indices of the model's outputs) when it covers only some;
    scored by ``protocol`` (see the module's docstring); labels are then positions in ``subset``
    under ``restrict_logits``. ``groups`` (ObjectNet): the group of each class of ``subset``; the
    labels are groups, and a group's probability is the sum of its classes' (restricted) probabilities.

    The arrays are allocated once, at the set's size, and filled batch by batch: memory is the
    model's plus a few scalars per sample (growing lists of small arrays between large transient
    batches fragment the heap, and the process would keep the fragments)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"class_subset_protocol must be one of {PROTOCOLS}, got {protocol!r}")
    classes = position = members = None
    if groups is not None:
        if protocol != "restrict_logits" or subset is None or len(groups) != len(subset):
            raise ValueError("a set of class groups (ObjectNet) is scored with class_subset_protocol restrict_logits")
        members = torch.zeros(len(subset), int(max(groups)) + 1, device=device)
        members[torch.arange(len(subset)), torch.as_tensor(list(groups))] = 1.0
    if subset is not None and protocol == "restrict_logits":
        classes = torch.as_tensor(list(subset), dtype=torch.long, device=device)
        position = torch.full((int(classes.max()) + 1,), -1, dtype=torch.long, device=device)
        position[classes] = torch.arange(len(classes), device=device)
    n = len(dataset)
    out: Dict[str, np.ndarray] = {}
    at = 0
    for x, y, _ in DataLoader(dataset, batch_size=batch_size, num_workers=workers):
        log_p, measures = log_predict(predict, x.to(device), classes)
        y = y.to(device)
        if members is not None:                 # the groups' probabilities; the labels are groups already
            log_p = (log_p.unsqueeze(-1) + members.to(log_p.dtype).log()).logsumexp(-2)
        elif position is not None:
            inside = (y >= 0) & (y < len(position))
            y = torch.where(inside, position[y.clamp(0, len(position) - 1)], torch.full_like(y, -1))
            if bool(((y < 0) & inside).any()):
                raise ValueError("a label of the domain is not one of its classes (class_subset)")
        scores = C.sample_scores(log_p, y, k=5)
        rows = {"label": y, "correct": scores["correct"], "top5": scores["topk"], "confidence": scores["confidence"],
                "nll": scores["nll"], "brier": scores["brier"], **{f"m_{k}": v for k, v in measures.items()}}
        for name, value in rows.items():
            value = value.detach().cpu().numpy()
            if name not in out:
                out[name] = np.empty(n, dtype=value.dtype)
            out[name][at:at + len(value)] = value
        at += len(y)
    return out


def uncertainty_of(arrays: dict, measure: str) -> np.ndarray:
    """The measure oriented so that higher means more uncertain."""
    v = arrays[f"m_{measure}"]
    return v if MEASURES[measure] else -v


def summarise(arrays: dict, bins: int, confidence_one: str = "last_bin") -> dict:
    labelled = arrays["label"] >= 0
    out: dict = {"n": int(len(arrays["label"])), "labelled": int(labelled.sum())}
    if labelled.any():
        a = {k: v[labelled] for k, v in arrays.items()}
        ece, mce = C.calibration_errors(a["confidence"], a["correct"], bins, confidence_one)
        out.update(acc1=float(a["correct"].mean()), acc5=float(a["top5"].mean()), NLL=float(a["nll"].mean()),
                   brier=float(a["brier"].mean()), ECE=ece, MCE=mce)
        for m in MEASURES:
            out[f"mean_{m}"], out[f"std_{m}"] = float(a[f"m_{m}"].mean()), float(a[f"m_{m}"].std())
        undefined = C.prediction_rejection_undefined(a["correct"])
        for m in MEASURES:
            out[f"PRR_{m}"] = None if undefined else C.prediction_rejection_ratio(uncertainty_of(a, m), a["correct"])
        if undefined:
            out["PRR_undefined"] = undefined
    return out


def domain_classes(spec: dict, subset) -> list | None:
    """The classes a domain's images were drawn from or against (its class subset; ImageNet-O's
    200 WordNet-id folders), for the AUROC against the in-distribution samples of those classes
    only (``AUROC_masked_*``, as the distillation authors report beside the plain one); None: all."""
    if subset is not None:
        return list(subset)
    if spec.get("dataset") == "imagenet_o":
        from tasks.data.folders import folder_classes

        return folder_classes(spec["root"]) or None
    return None


def read_correct(results: dict, results_path: str, domain: str) -> np.ndarray:
    """Which samples of ``domain`` an evaluation (its ``eval_metrics.json`` at ``results_path``) got right."""
    name = results.get("per_example")
    if not name:
        raise ValueError(f"{results_path} has no per-example results (evaluated before they were kept): rerun the row")
    with np.load(os.path.join(os.path.dirname(results_path), name)) as saved:
        if domain not in saved.files:
            raise ValueError(f"{results_path}: no domain {domain!r}; it has {', '.join(saved.files)}")
        return saved[domain].astype(bool)


def _mean(values) -> float | None:
    """The mean of the defined values (None where none is)."""
    defined = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(defined)) if defined else None


def evaluation_domains(data: dict) -> dict:
    """The sets of ``data`` by name (``in_distribution`` and ``domains``, catalogs expanded), each
    read as it is: an evaluation never augments."""
    domains = expand_catalog({"in_distribution": data["in_distribution"], **(data.get("domains") or {})})
    augmented = [name for name, spec in domains.items() if spec.get("augment")]
    if augmented:
        raise ValueError(f"an evaluation reads its sets without augmentation; drop augment: true from "
                         f"{', '.join(augmented)}")
    return domains


CONFIG_KEYS = ("batch_size", "num_workers", "bins", "class_subset_protocol", "calibration_confidence_one",
               "headline_measure")


@dataclass
class ScoringOptions:
    """How an evaluation scores: its batches, calibration bins, the class-subset protocol, where a
    confidence of 1 goes, and the measure whose AUROC goes into the row."""
    batch_size: int = 256
    workers: int = 0
    bins: int = 10
    protocol: str = "restrict_logits"
    confidence_one: str = "last_bin"
    headline: str = "total_uncertainty"

    @classmethod
    def from_config(cls, cfg: dict) -> "ScoringOptions":
        out = cls(int(cfg.get("batch_size", 256)), int(cfg.get("num_workers", 0)), int(cfg.get("bins", 10)),
                  cfg.get("class_subset_protocol", "restrict_logits"), cfg.get("calibration_confidence_one", "last_bin"),
                  cfg.get("headline_measure", "total_uncertainty"))
        if out.confidence_one not in C.CONFIDENCE_ONE:
            raise ValueError(f"calibration_confidence_one must be one of {C.CONFIDENCE_ONE}, got {out.confidence_one!r}")
        if out.protocol not in PROTOCOLS:
            raise ValueError(f"class_subset_protocol must be one of {PROTOCOLS}, got {out.protocol!r}")
        if out.headline not in MEASURES:
            raise ValueError(f"headline_measure must be one of {sorted(MEASURES)}, got {out.headline!r}")
        return out


def score_domains(predict: ModelKind, domains: dict, data_cfg: dict, options: "ScoringOptions", device):
    """Each domain built and scored: (per-sample arrays, summaries, each domain's classes, shifts)."""
    from tasks.data import build_set

    per_domain, results, classes_of, shifts = {}, {}, {}, {}
    for name, spec in domains.items():
        ds, subset = build_set(spec, data_cfg)
        if getattr(ds, "record", None):
            shifts[name] = ds.record                  # a synthetic shift's options (and a tint's colours)
        classes_of[name] = domain_classes(spec, subset)
        per_domain[name] = evaluate_domain(predict, ds, options.batch_size, device, options.workers, subset,
                                           options.protocol, getattr(ds, "class_groups", None))
        results[name] = summarise(per_domain[name], options.bins, options.confidence_one)
        if subset is not None:
            results[name]["classes"] = len(subset)
        r = results[name]
        print(f"{name:>20}: " + (f"acc {100 * r['acc1']:.1f}%  NLL {r['NLL']:.3f}  ECE {r['ECE']:.3f}"
                                  if "acc1" in r else f"{r['n']} unlabelled samples"), flush=True)
    return per_domain, results, classes_of, shifts


def ood_results(per_domain: dict, classes_of: dict, groups: dict, ood: list) -> dict:
    """``ood/<group>``: the AUROC of each measure, the group's domains against the in-distribution set
    (the mean over the group's domains), and against its classes only where the domains have some."""
    ind = per_domain["in_distribution"]
    results: dict = {}
    for group in ood:
        masks = [None if classes_of[s] is None else np.isin(ind["label"], classes_of[s]) for s in groups[group]]
        for m in MEASURES:
            aucs = [auroc(uncertainty_of(ind, m), uncertainty_of(per_domain[s], m)) for s in groups[group]]
            results.setdefault(f"ood/{group}", {})[f"AUROC_{m}"] = float(np.mean(aucs))
            if all(mask is not None and mask.any() for mask in masks):
                aucs = [auroc(uncertainty_of(ind, m)[mask], uncertainty_of(per_domain[s], m))
                        for s, mask in zip(groups[group], masks)]
                results[f"ood/{group}"][f"AUROC_masked_{m}"] = float(np.mean(aucs))
    return results


def group_results(per_domain: dict, results: dict, groups: dict, bins: int, confidence_one: str) -> dict:
    """For each group of several domains (C-1 ...): ``mean/<group>``, the mean of its domains' numbers
    (the papers' tables), and ``pooled/<group>``, every number over its samples pooled."""
    out: dict = {}
    for group, names in groups.items():
        if len(names) > 1:
            keys = set.intersection(*(set(results[n]) for n in names)) - {"n", "labelled", "PRR_undefined", "classes"}
            out[f"mean/{group}"] = {k: _mean([results[n][k] for n in names]) for k in sorted(keys)}
            pooled = {k: np.concatenate([per_domain[n][k] for n in names]) for k in per_domain[names[0]]}
            out[f"pooled/{group}"] = summarise(pooled, bins, confidence_one)
    return out
