"""Evaluate a classifier, an ensemble, a MIMO model or a Dirichlet student on in-distribution,
shifted and OOD data: accuracy, calibration, uncertainty, rejection and OOD detection.

    python tasks/classify/evaluate.py --config default_configs/classify/evaluate.yaml

``models``: checkpoint paths of tasks/classify/train.py or tasks/distill/train_distillation.py
(globs allowed). ``kind`` says how to read them (``auto`` decides from the files), one class
per kind in :mod:`tasks.classify.kinds`:

- ``single``: one network; ``ensemble``: several, members of one architecture batched
  (:mod:`tasks.models.ensemble`); ``joint``: one file of members trained as one network (tasks/forde); ``mimo``: one MIMO network (``mimo_combine``: its members'
  probabilities averaged, or the seed's averaged logits read as a Dirichlet);
- ``dirichlet``: a distilled student, alpha = exp(z) + model_offset (``dirichlet_probs``: the
  Dirichlet's mean alpha / alpha_0, or the seed's softmax(z));
- ``proxy``: an ensemble read through its proxy Dirichlet (:func:`tasks.metrics.uncertainty.proxy_dirichlet`).

The kind and its choices are written into ``eval_metrics.json``.

For every domain (``in_distribution`` and each of ``domains``, a set spec or a catalog entry
that expands to several, e.g. corruptions x severities): top-1 / top-5 accuracy, NLL, Brier,
ECE and MCE (``bins``), the mean and standard deviation over samples of each uncertainty
measure (``mean_<measure>``, ``std_<measure>``: the FoRDE authors' total / aleatoric / epistemic
entropies are ``total_uncertainty`` / ``data_uncertainty`` / ``knowledge_uncertainty``), the
prediction rejection ratio of each measure, and for the domains listed in ``ood`` the AUROC of
each measure against the in-distribution set. A group of domains (``C-<severity>``: one per
corruption) gets ``mean/<group>``, the mean of its domains' numbers (the papers' "mean over
corruption types"), and ``pooled/<group>``, every number over the group's samples pooled (the
FoRDE authors' corrupted accuracy and NLL per severity: one set of all corruptions).

The NLL is ``-log p(y)`` with the logarithm computed as such, never clamped: for M members,
``log p(y) = logsumexp_m log_softmax(z_m)[y] - log M`` (:meth:`ModelKind.log_predict`), exact
however unlikely the label.

A domain that covers some of the classes only (ImageNet-A / -R: 200 of 1000) is scored by
``class_subset_protocol``:

- ``restrict_logits`` (default; the distillation authors' ``logits[..., label_mask]``): each
  member's logits are restricted to the domain's classes before the softmax, so every
  prediction is one of them and accuracy, NLL, Brier and calibration are over those classes;
  the uncertainty measures are the members' full outputs', as the authors compute them;
- ``argmax_before``: predictions over all classes; one outside the domain's classes is wrong.

ObjectNet's classes each stand for one or more ImageNet classes: its logits are restricted to
those, and each ObjectNet class's probability is the sum of its ImageNet classes' (a prediction is
right when its ImageNet class maps to the image's ObjectNet class).

ECE / MCE: ``calibration_confidence_one`` says where a confidence of exactly 1 goes (the last
bin, or one of its own as the authors' code puts it: :func:`tasks.metrics.classification.calibration_errors`).

OOD detection: ``AUROC_<measure>`` against every in-distribution sample, and for an OOD set of
some classes (ImageNet-A / -R / -O) ``AUROC_masked_<measure>`` against the in-distribution
samples of those classes only (the authors' ``_masked`` results).

A prediction rejection ratio that is not defined (every prediction right, or every one wrong)
is written as ``null``, with the reason under ``PRR_undefined``.
Everything streams over batches: only a few scalars per sample are kept. One JSON keyed by
domain goes to the run folder (the seed's format), with ``eval_metrics.correct.npz`` beside it
(which samples of each domain were right, in the set's order: :func:`read_correct`); headline
numbers go into the row. ``data.crop_pct`` (default 1) is the centre crop of the ``timm`` recipe;
``data.preprocessing: model`` takes input size, mean, std, interpolation and crop from the model
file instead (published weights made by tasks/classify/import_weights.py carry timm's).
"""
from __future__ import annotations

import os
from typing import Dict, List

import numpy as np
import torch
from torch.utils.data import DataLoader

from runner import report
from runner.core.rundir import write_json
from tasks.classify.checkpoints import model_paths, read_classifier
from tasks.classify.kinds import ModelKind, create_kind, known_kinds
from tasks.common import load_config, pick_device, run_dir, save_npz_atomic
from tasks.data import build_set, expand_catalog
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
        p = log_p.exp()
        conf, pred = p.max(-1)
        k = min(5, p.shape[-1])
        top5 = (p.topk(k, -1).indices == y.clamp_min(0).unsqueeze(-1)).any(-1)
        log_py = log_p.gather(-1, y.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        onehot = torch.zeros_like(p).scatter_(-1, y.clamp_min(0).unsqueeze(-1), 1.0)
        rows = {"label": y, "correct": pred == y, "top5": top5, "confidence": conf,
                "nll": -log_py, "brier": ((p - onehot) ** 2).sum(-1),
                **{f"m_{k}": v for k, v in measures.items()}}
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


def main(argv=None) -> None:
    cfg = load_config(__doc__.splitlines()[0], argv)
    device = pick_device(cfg.get("device", "auto"))
    kind = cfg.get("kind", "auto")
    if kind not in known_kinds():
        raise ValueError(f"kind must be one of {known_kinds()}, got {kind!r}")
    paths = model_paths(cfg["models"])
    predict = load_kind(paths, kind, device, cfg)
    d = cfg["data"]
    preprocessing = d.get("preprocessing", "config")
    if preprocessing == "model":              # each model file's own (published models differ in size and means)
        import json

        found = {json.dumps(s["data_config"], sort_keys=True) for s in predict.saved}
        if len(found) > 1:
            raise ValueError(f"data.preprocessing: model, but the models were made with {len(found)} different "
                             "data configs; evaluate them in separate rows")
        dcfg = dict(predict.saved[0]["data_config"])
        print("preprocessing of the model file: " + ", ".join(f"{k} {v}" for k, v in dcfg.items()), flush=True)
    elif preprocessing == "config":
        dcfg = {"input_size": list(d["input_size"]), "mean": list(d["mean"]), "std": list(d["std"]),
                "interpolation": d.get("interpolation", "bilinear"), "crop_pct": float(d.get("crop_pct", 1.0))}
    else:
        raise ValueError(f"data.preprocessing must be config or model, got {preprocessing!r}")
    domains = evaluation_domains(d)
    groups = {}
    for name, spec in domains.items():
        groups.setdefault(spec.get("group") or name, []).append(name)
    ood = [g for g in (d.get("ood") or [])]
    unknown = [g for g in ood if g not in groups]
    if unknown:
        raise ValueError(f"ood names {unknown} are not domains; domains: {sorted(groups)}")
    bs, bins = int(cfg.get("batch_size", 256)), int(cfg.get("bins", 10))
    protocol = cfg.get("class_subset_protocol", "restrict_logits")
    confidence_one = cfg.get("calibration_confidence_one", "last_bin")
    if confidence_one not in C.CONFIDENCE_ONE:
        raise ValueError(f"calibration_confidence_one must be one of {C.CONFIDENCE_ONE}, got {confidence_one!r}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"class_subset_protocol must be one of {PROTOCOLS}, got {protocol!r}")
    print(f"{predict.name}: {predict.members} member(s); {len(domains)} domains", flush=True)
    per_domain, results, classes_of, shifts = {}, {}, {}, {}
    for name, spec in domains.items():
        ds, subset = build_set(spec, dcfg)
        if getattr(ds, "record", None):
            shifts[name] = ds.record                  # a synthetic shift's options (and a tint's colours)
        classes_of[name] = domain_classes(spec, subset)
        per_domain[name] = evaluate_domain(predict, ds, bs, device, int(cfg.get("num_workers", 0)), subset, protocol,
                                           getattr(ds, "class_groups", None))
        results[name] = summarise(per_domain[name], bins, confidence_one)
        if subset is not None:
            results[name]["classes"] = len(subset)
        r = results[name]
        print(f"{name:>20}: " + (f"acc {100 * r['acc1']:.1f}%  NLL {r['NLL']:.3f}  ECE {r['ECE']:.3f}"
                                  if "acc1" in r else f"{r['n']} unlabelled samples"), flush=True)
    ind = per_domain["in_distribution"]
    for group in ood:
        masks = [None if classes_of[s] is None else np.isin(ind["label"], classes_of[s]) for s in groups[group]]
        for m in MEASURES:
            aucs = [auroc(uncertainty_of(ind, m), uncertainty_of(per_domain[s], m)) for s in groups[group]]
            results.setdefault(f"ood/{group}", {})[f"AUROC_{m}"] = float(np.mean(aucs))
            if all(mask is not None and mask.any() for mask in masks):
                aucs = [auroc(uncertainty_of(ind, m)[mask], uncertainty_of(per_domain[s], m))
                        for s, mask in zip(groups[group], masks)]
                results[f"ood/{group}"][f"AUROC_masked_{m}"] = float(np.mean(aucs))
    # groups of several domains (C-1 ...): their mean, like the papers' tables
    for group, names in groups.items():
        if len(names) > 1:
            keys = set.intersection(*(set(results[n]) for n in names)) - {"n", "labelled", "PRR_undefined", "classes"}
            results[f"mean/{group}"] = {k: _mean([results[n][k] for n in names]) for k in sorted(keys)}
            pooled = {k: np.concatenate([per_domain[n][k] for n in names]) for k in per_domain[names[0]]}
            results[f"pooled/{group}"] = summarise(pooled, bins, confidence_one)
    trained = {key: s[key] for s in predict.saved for key in ("distill", "forde") if key in s}
    if trained and "seed" in (predict.saved[0].get("config") or {}):
        trained["seed"] = predict.saved[0]["config"]["seed"]        # pairs a method's runs with a baseline's
    out = {**predict.describe(), "models": paths, **({"training": trained} if len(paths) == 1 and trained else {}),
           "in_distribution": d["in_distribution"], "class_subset_protocol": protocol,
           "calibration_confidence_one": confidence_one,
           "groups": {g: names for g, names in groups.items() if len(names) > 1}, "results": results,
           **({"shifts": shifts} if shifts else {})}
    path = cfg.get("results_path") or os.path.join(run_dir() or ".", "eval_metrics.json")
    # which samples each domain got right, in the set's order (tasks/robustness/split_shift.py scores parts of a set)
    out["per_example"] = os.path.splitext(os.path.basename(path))[0] + ".correct.npz"
    save_npz_atomic(os.path.join(os.path.dirname(os.path.abspath(path)), out["per_example"]),
                    {name: arrays["correct"] & (arrays["label"] >= 0) for name, arrays in per_domain.items()},
                    compressed=True)
    write_json(path, out)
    r0 = results["in_distribution"]
    prr = r0[f"PRR_{predict.headline_measure}"]
    row = {"acc": round(100 * r0["acc1"], 2), "nll": round(r0["NLL"], 4), "ece": round(r0["ECE"], 4),
           "brier": round(r0["brier"], 4), "prr": None if prr is None else round(prr, 4)}
    pooled = [results[k] for k in results if k.startswith("pooled/") and "acc1" in results[k]]
    if cfg.get("report_corrupted") and pooled:
        # the FoRDE authors' cA / cNLL / cECE: each severity's corruptions pooled, then the mean over severities
        row.update(cA=round(100 * float(np.mean([r["acc1"] for r in pooled])), 2),
                   cNLL=round(float(np.mean([r["NLL"] for r in pooled])), 4),
                   cECE=round(float(np.mean([r["ECE"] for r in pooled])), 4))
    headline = cfg.get("headline_measure", "total_uncertainty")
    if headline not in MEASURES:
        raise ValueError(f"headline_measure must be one of {sorted(MEASURES)}, got {headline!r}")
    for group in ood:
        row[f"auroc_{group}"] = round(results[f"ood/{group}"]["AUROC_" + headline], 4)
    report(row)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
