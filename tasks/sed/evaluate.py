"""Evaluate an ensemble on cached sets: OOD generalization and OOD detection.

    python tasks/sed/evaluate.py --config default_configs/sed/evaluate.yaml

Per evaluation set (a cached set, or a group such as ``C-1`` = the mean over
its corruption types): ensemble accuracy (argmax of the mean logits), mean
single-member accuracy, the accuracy of the best and of the worst member and of
the "soup" (the members' weights averaged). The best and the worst member are
each one member, chosen once by their accuracy on ``in_distribution`` (the
validation set) and then reported on every set — not each set's own best,
which would pick with the test labels. Per OOD set: the AUROC, against
``in_distribution``, of every score in :data:`tasks.metrics.ood.SCORES`.
Sets that cover only some classes (ImageNet-A / -R, 200 of the 1000) are
scored by ``class_subset_protocol``:

- ``argmax_before`` (default; the SED authors' ``ImagenetARMapper``): each
  member predicts its 1000-way argmax; a prediction outside the set's classes
  counts as wrong; the ensemble is a vote of those predictions (no vote inside
  the classes: wrong; ties: the lowest class); the soup likewise;
- ``restrict_logits``: the logits are restricted to the set's classes first
  (every prediction falls inside; the scores see those logits too).

Everything is computed batch by batch; only per-sample scalars (one per score)
and per-member correct counts are kept, so memory does not grow with
M x N x K (ImageNet val with 50 members and 1000 classes fits). All results go
to ``eval_results.json`` in the run folder, headline numbers into the row.
"""
from __future__ import annotations

import os
from typing import Dict, List

import numpy as np
import torch

from runner import report
from runner.core.rundir import write_json
from tasks.common import load_config, pick_device, run_dir
from tasks.metrics.ood import SCORES, all_scores, auroc
from tasks.sed.cache import resolve_sets
from tasks.sed.features import CachedFeatures
from tasks.sed.heads import EnsembleHeads

PROTOCOLS = ("argmax_before", "restrict_logits")


def subset_votes(member_pred: torch.Tensor, classes: int) -> torch.Tensor:
    """The ensemble's vote [B] from member predictions [M, B] (positions in the subset, -1 outside):
    the most voted position, the lowest on ties; -1 (wrong) where no member voted inside."""
    inside = member_pred >= 0
    votes = torch.zeros(member_pred.shape[1], classes, dtype=torch.long, device=member_pred.device)
    votes.scatter_add_(1, member_pred.clamp_min(0).t(), inside.t().long())
    pred = votes.argmax(-1)
    return torch.where(votes.sum(-1) > 0, pred, torch.full_like(pred, -1))


def evaluate_set(model: EnsembleHeads, soup, entry: dict, batch_size: int, device, max_memory_gb: float,
                 protocol: str = "argmax_before") -> dict:
    """Accuracies and per-sample scores of one cached set."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"class_subset_protocol must be one of {PROTOCOLS}, got {protocol!r}")
    feats = CachedFeatures(entry["path"], max_memory_gb)
    subset = entry.get("class_subset")
    subset_t = torch.tensor(subset, device=device) if subset is not None else None
    position = None
    if subset is not None:
        position = torch.full((model.num_classes,), -1, dtype=torch.long, device=device)
        position[subset_t] = torch.arange(len(subset), device=device)
    m = model.num_members
    member_correct = torch.zeros(m, dtype=torch.long)
    ens_correct = soup_correct = labelled = 0
    scores: Dict[str, List[np.ndarray]] = {name: [] for name in SCORES}
    with torch.no_grad():
        for x, y in feats.batches(batch_size, shuffle=False, device=device):
            logits = model(x)                                   # [M, B, K]
            soup_logits = model.soup_forward(x, soup)           # [B, K]
            if subset_t is not None:
                y = torch.where(y >= 0, position[y.clamp_min(0)], y)
                if protocol == "restrict_logits":
                    logits, soup_logits = logits[..., subset_t], soup_logits[..., subset_t]
            for name, value in all_scores(logits).items():
                scores[name].append(value.double().cpu().numpy())
            if subset_t is not None and protocol == "argmax_before":
                member_pred = position[logits.argmax(-1)]                    # [M, B], -1 outside
                ens_pred = subset_votes(member_pred, len(subset))
                soup_pred = position[soup_logits.argmax(-1)]
            else:
                member_pred = logits.argmax(-1)
                ens_pred = logits.mean(0).argmax(-1)
                soup_pred = soup_logits.argmax(-1)
            keep = y >= 0
            if keep.any():
                yk = y[keep]
                member_correct += (member_pred[:, keep] == yk).sum(1).cpu()
                ens_correct += (ens_pred[keep] == yk).sum().item()
                soup_correct += (soup_pred[keep] == yk).sum().item()
                labelled += int(keep.sum())
    feats.close()
    out = {"n": len(feats), "labelled": labelled, "group": entry.get("group"),
           "scores": {k: np.concatenate(v) for k, v in scores.items()}}
    if labelled:
        acc = (member_correct.double() / labelled).tolist()
        out.update(ensemble_acc=ens_correct / labelled, member_acc=acc, mean_member_acc=float(np.mean(acc)),
                   soup_acc=soup_correct / labelled)
    return out


ACC_KEYS = ("ensemble_acc", "mean_member_acc", "best_member_acc", "worst_member_acc", "soup_acc")


def chosen_members(validation: dict) -> tuple[int, int]:
    """The best and the worst member by their accuracy on the validation set (the lowest index on ties)."""
    acc = validation.get("member_acc")
    if not acc:
        raise ValueError("the in_distribution set has no labels: the best member cannot be chosen on it")
    return int(np.argmax(acc)), int(np.argmin(acc))


def set_accuracies(result: dict, best: int, worst: int) -> dict:
    """The accuracies of one evaluated set, with the chosen best and worst members'."""
    return {"ensemble_acc": result["ensemble_acc"], "mean_member_acc": result["mean_member_acc"],
            "best_member_acc": result["member_acc"][best], "worst_member_acc": result["member_acc"][worst],
            "soup_acc": result["soup_acc"]}


def main(argv=None) -> None:
    cfg = load_config(__doc__.splitlines()[0], argv)
    device = pick_device(cfg.get("device", "auto"))
    saved = torch.load(cfg["model"], map_location="cpu", weights_only=False)
    model = EnsembleHeads.from_file_dict(saved).to(device).eval()
    protocol = cfg.get("class_subset_protocol", "argmax_before")
    if protocol not in PROTOCOLS:
        raise ValueError(f"class_subset_protocol must be one of {PROTOCOLS}, got {protocol!r}")
    wanted = [cfg["in_distribution"], *cfg.get("eval_sets", []), *cfg.get("ood_sets", [])]
    groups = cached_groups(cfg["cache_dir"], wanted, saved["backbone_id"])
    print(f"{model.num_members} members; evaluating {sum(len(v) for v in groups.values())} cached sets", flush=True)
    per_set = evaluate_sets(model, groups, int(cfg.get("batch_size", 1024)), device,
                            float(cfg.get("max_memory_gb", 4)), protocol)
    members_of = {name: [e["name"] for e in entries] for name, entries in groups.items()}
    in_distribution = per_set[members_of[cfg["in_distribution"]][0]]
    best, worst = chosen_members(in_distribution) if cfg.get("eval_sets") else (None, None)
    accuracy = {name: set_group_accuracy(name, [per_set[s] for s in members_of[name]], best, worst)
                for name in cfg.get("eval_sets", [])}
    detection = {name: ood_aurocs(in_distribution["scores"], [per_set[s]["scores"] for s in members_of[name]])
                 for name in cfg.get("ood_sets", [])}
    results = {"model": cfg["model"], "members": model.num_members, "backbone_id": saved["backbone_id"],
               "class_subset_protocol": protocol,
               "best_member": best, "worst_member": worst, "members_chosen_on": cfg["in_distribution"],
               "in_distribution": cfg["in_distribution"], "accuracy": accuracy, "ood_detection": detection,
               "sets": {s: {k: v for k, v in r.items() if k != "scores"} | {
                   "mean_scores": {k: float(np.mean(v)) for k, v in r["scores"].items()}}
                   for s, r in per_set.items()}}
    path = cfg.get("results_path") or os.path.join(run_dir() or ".", "eval_results.json")
    write_json(path, results)
    report(headline_row(accuracy, detection, cfg.get("headline_scores", ["pds"])))
    show(accuracy, detection)
    print(f"results: {path}")


def cached_groups(cache_dir: str, wanted: list, backbone_id: str) -> dict:
    """Each named set's cached files; every one must come from the backbone the ensemble trained on."""
    groups = {name: resolve_sets(cache_dir, name) for name in dict.fromkeys(wanted)}
    for entries in groups.values():
        for e in entries:
            if e["backbone_id"] != backbone_id:
                raise ValueError(f"{e['file']} was cached with another backbone than the ensemble was "
                                 "trained on; recache the evaluation sets")
    return groups


def evaluate_sets(model, groups: dict, batch_size: int, device, max_memory_gb: float, protocol: str) -> dict:
    """Every cached set scored once (a set named by several groups too), by its name."""
    soup = {k: v.detach() for k, v in model.soup().items()}
    per_set: Dict[str, dict] = {}
    for entries in groups.values():
        for e in entries:
            if e["name"] not in per_set:
                per_set[e["name"]] = evaluate_set(model, soup, e, batch_size, device, max_memory_gb, protocol)
    return per_set


def set_group_accuracy(name: str, sets: list, best, worst) -> dict:
    """A group's accuracies: the mean over its labelled sets of the ensemble's, the members' and the soup's."""
    results = [set_accuracies(s, best, worst) for s in sets if "ensemble_acc" in s]
    if not results:
        raise ValueError(f"evaluation set {name!r} has no labels; list it under ood_sets")
    return {**{k: float(np.mean([r[k] for r in results])) for k in ACC_KEYS}, "sets": len(results)}


def ood_aurocs(ind: dict, shifted: list) -> dict:
    """Each score's AUROC, the OOD sets against the in-distribution one (the mean over the group's sets)."""
    table = {}
    for score, (_, higher_is_ood) in SCORES.items():
        sign = 1.0 if higher_is_ood else -1.0
        table[score] = float(np.mean([auroc(sign * ind[score], sign * s[score]) for s in shifted]))
    return table


def headline_row(accuracy: dict, detection: dict, scores: list) -> dict:
    row = {f"acc_{name}": round(100 * a["ensemble_acc"], 2) for name, a in accuracy.items()}
    for name, table in detection.items():
        for score in scores:
            row[f"auroc_{score}_{name}"] = round(table[score], 4)
    return row


def show(accuracy: dict, detection: dict) -> None:
    for name, a in accuracy.items():
        print(f"{name:>16}: ensemble {100 * a['ensemble_acc']:.1f}%  members {100 * a['mean_member_acc']:.1f}% "
              f"(best {100 * a['best_member_acc']:.1f}, worst {100 * a['worst_member_acc']:.1f})  "
              f"soup {100 * a['soup_acc']:.1f}%")
    for name, table in detection.items():
        print(f"{name:>16}: AUROC " + "  ".join(f"{k} {v:.3f}" for k, v in table.items()))


if __name__ == "__main__":
    main()
