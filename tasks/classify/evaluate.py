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
(which samples of each domain were right, in the set's order: :func:`tasks.classify.scoring.read_correct`); headline
numbers go into the row. ``data.crop_pct`` (default 1) is the centre crop of the ``timm`` recipe;
``data.preprocessing: model`` takes input size, mean, std, interpolation and crop from the model
file instead (published weights made by tasks/classify/import_weights.py carry timm's).
"""
from __future__ import annotations

import json
import os

import numpy as np

from runner import report
from runner.core.rundir import write_json
from tasks.classify.checkpoints import model_paths, training_of
from tasks.classify.kinds import ModelKind, known_kinds
from tasks.classify.scoring import (ScoringOptions, evaluation_domains, group_results, load_kind, ood_results,
                                    score_domains)
from tasks.common import load_config, pick_device, run_dir, save_npz_atomic


def main(argv=None) -> None:
    cfg = load_config(__doc__.splitlines()[0], argv)
    device = pick_device(cfg.get("device", "auto"))
    kind = cfg.get("kind", "auto")
    if kind not in known_kinds():
        raise ValueError(f"kind must be one of {known_kinds()}, got {kind!r}")
    paths = model_paths(cfg["models"])
    predict = load_kind(paths, kind, device, cfg)
    data = cfg["data"]
    data_cfg = preprocessing(data, predict)
    domains = evaluation_domains(data)
    groups, ood = domain_groups(domains, data.get("ood") or [])
    options = ScoringOptions.from_config(cfg)
    print(f"{predict.name}: {predict.members} member(s); {len(domains)} domains", flush=True)
    per_domain, results, classes_of, shifts = score_domains(predict, domains, data_cfg, options, device)
    results.update(ood_results(per_domain, classes_of, groups, ood))
    results.update(group_results(per_domain, results, groups, options.bins, options.confidence_one))
    out = {**predict.describe(), "models": paths, **training(predict, paths),
           "in_distribution": data["in_distribution"], "class_subset_protocol": options.protocol,
           "calibration_confidence_one": options.confidence_one,
           "groups": {g: names for g, names in groups.items() if len(names) > 1}, "results": results,
           **({"shifts": shifts} if shifts else {})}
    path = cfg.get("results_path") or os.path.join(run_dir() or ".", "eval_metrics.json")
    save_results(path, out, per_domain)
    report(headline_row(results, predict, ood, options.headline, bool(cfg.get("report_corrupted"))))
    print(f"results: {path}")


def preprocessing(data: dict, predict: ModelKind) -> dict:
    """The data config the sets are read with: the config's (``data.preprocessing: config``, with
    ``crop_pct``), or the one the model files were made with (``model``)."""
    how = data.get("preprocessing", "config")
    if how == "model":              # each model file's own (published models differ in size and means)
        found = {json.dumps(s["data_config"], sort_keys=True) for s in predict.saved}
        if len(found) > 1:
            raise ValueError(f"data.preprocessing: model, but the models were made with {len(found)} different "
                             "data configs; evaluate them in separate rows")
        data_cfg = dict(predict.saved[0]["data_config"])
        print("preprocessing of the model file: " + ", ".join(f"{k} {v}" for k, v in data_cfg.items()), flush=True)
        return data_cfg
    if how == "config":
        return {"input_size": list(data["input_size"]), "mean": list(data["mean"]), "std": list(data["std"]),
                "interpolation": data.get("interpolation", "bilinear"), "crop_pct": float(data.get("crop_pct", 1.0))}
    raise ValueError(f"data.preprocessing must be config or model, got {how!r}")


def domain_groups(domains: dict, ood: list) -> tuple[dict, list]:
    """({group: its domains}, the OOD groups): a domain's group is its ``group``, else its name."""
    groups: dict = {}
    for name, spec in domains.items():
        groups.setdefault(spec.get("group") or name, []).append(name)
    unknown = [g for g in ood if g not in groups]
    if unknown:
        raise ValueError(f"ood names {unknown} are not domains; domains: {sorted(groups)}")
    return groups, list(ood)


def training(predict: ModelKind, paths: list) -> dict:
    """``{"training": ...}``: how the one model evaluated was trained, as its file declares (and its
    seeds, which pair a method's runs with a baseline's); {} for several models or plain training."""
    trained = {key: value for s in predict.saved for key, value in training_of(s).items()}
    if trained and "seed" in (predict.saved[0].get("config") or {}):
        trained["seed"] = predict.saved[0]["config"]["seed"]
    return {"training": trained} if len(paths) == 1 and trained else {}


def save_results(path: str, out: dict, per_domain: dict) -> None:
    """``eval_metrics.json``, and beside it which samples each domain got right, in the set's order
    (tasks/robustness/split_shift.py scores parts of a set)."""
    out["per_example"] = os.path.splitext(os.path.basename(path))[0] + ".correct.npz"
    save_npz_atomic(os.path.join(os.path.dirname(os.path.abspath(path)), out["per_example"]),
                    {name: arrays["correct"] & (arrays["label"] >= 0) for name, arrays in per_domain.items()},
                    compressed=True)
    write_json(path, out)


def headline_row(results: dict, predict: ModelKind, ood: list, headline: str, corrupted: bool) -> dict:
    """The row's numbers: the in-distribution set's, the corrupted sets' (``report_corrupted``) and
    each OOD group's AUROC of the ``headline_measure``."""
    r0 = results["in_distribution"]
    prr = r0[f"PRR_{predict.headline_measure}"]
    row = {"acc": round(100 * r0["acc1"], 2), "nll": round(r0["NLL"], 4), "ece": round(r0["ECE"], 4),
           "brier": round(r0["brier"], 4), "prr": None if prr is None else round(prr, 4)}
    pooled = [results[k] for k in results if k.startswith("pooled/") and "acc1" in results[k]]
    if corrupted and pooled:
        # the FoRDE authors' cA / cNLL / cECE: each severity's corruptions pooled, then the mean over severities
        row.update(cA=round(100 * float(np.mean([r["acc1"] for r in pooled])), 2),
                   cNLL=round(float(np.mean([r["NLL"] for r in pooled])), 4),
                   cECE=round(float(np.mean([r["ECE"] for r in pooled])), 4))
    for group in ood:
        row[f"auroc_{group}"] = round(results[f"ood/{group}"]["AUROC_" + headline], 4)
    return row


if __name__ == "__main__":
    main()
