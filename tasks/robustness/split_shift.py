"""Split a shifted set into the part the reference distribution covers and the part it does not, and
measure every model's effective robustness on each part (seed 002).

    python tasks/robustness/split_shift.py --config default_configs/robustness/split_tint.yaml

1. A domain classifier tells ``shifted`` examples from ``reference`` ones (set specs of
   tasks/data, joined as tasks/data/domains.py joins them: ``max_reference`` reference examples
   drawn with ``seed`` — the authors draw 100,000 ImageNet training images —, only those of the
   shifted set's classes with ``reference_classes: shifted``). It is cross-fitted over ``folds``
   folds, so every example is scored by a classifier trained without it; the out-of-fold logits
   are calibrated by one temperature and turned into density ratios r
   (tasks/robustness/support.py). ``classifier.kind``:

   - ``logistic``: scikit-learn's logistic regression on the standardised pixels, fitted here
     (option ``C``; the digits);
   - ``models``: networks trained by other rows (tasks/classify/train.py on a ``domains`` set,
     one row per fold: the authors' fine-tuned CLIP, one array job per fold); ``models`` names
     their files, and each scores its own held-out fold.
2. For each ``epsilons`` value, the shifted examples with r >= 1 / eps are out of support, the
   others in support.
3. The evaluation rows named by ``rows`` (shell-style patterns over the rows of ``sheets``,
   default the sheet this row runs in) give each model's reference accuracy (their
   ``reference_domain``) and which shifted examples it got right (their ``shifted_domain``, the
   per-example results tasks/classify/evaluate.py keeps: each model seen through its own data
   config). Per part and epsilon, the rows matching ``baselines`` fix a line
   (tasks/robustness/fit.py) and every model gets its effective robustness on that part.

Writes ``support.npz`` (logits, folds, density ratios, the split per epsilon),
``split_shift.md`` / ``.csv`` (per epsilon: the share out of support, each model's accuracy and
effective robustness on both parts) and ``split_shift.png`` (the two parts' plots at
``figure_epsilon``) to its run folder (or ``out``); the row gets the domain classifier's AUROC and
the share out of support per epsilon.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tasks.robustness.fit import effective_robustness, fit_line, resolve_clip  # noqa: E402
from tasks.robustness.support import (calibrate, cross_fit, density_ratios, logistic_domain_classifier,  # noqa: E402
                                      out_of_support)
from tasks.sheets import as_list, config_sheets  # noqa: E402

CLASSIFIERS = ("logistic", "models")


def images(dataset) -> np.ndarray:
    """A set's images as one array."""
    return np.stack([dataset[i][0].numpy() for i in range(len(dataset))])


def logistic_logits(union, spec: dict, options: dict):
    """Out-of-fold logits of logistic regressions on the pixels, cross-fitted here."""
    x = images(union)
    fit = cross_fit(x, union.is_shifted, logistic_domain_classifier(float(options.get("C", 1.0)), spec["seed"]),
                    spec["folds"], spec["seed"])
    return fit.logits, fit.fold_of


def fold_model_logits(union, spec: dict, options: dict, device, batch_size: int):
    """Out-of-fold logits l1 - l0 of the fold networks ``options["models"]``: files saved by
    tasks/classify/train.py whose ``data.val`` is this union's fold k, part held_out (one per fold;
    their union keys must be this split's). Each scores its held-out fold, as its own evaluation read it."""
    import json

    import torch
    from torch.utils.data import DataLoader, Subset

    from tasks.classify.checkpoints import classifier_from, model_paths, read_classifier
    from tasks.data import build_set
    from tasks.data.domains import UNION_KEYS, fold_parts, union_of

    logits = np.full(len(union), np.nan)
    fold_of = np.full(len(union), -1, dtype=np.int64)
    seen = {}             # the union as the fold networks see it, built once per preprocessing (listing
    #                       ImageNet's 1.28M training images takes a while)
    for path in model_paths(as_list(options.get("models"))):
        saved = read_classifier(path)
        val = (saved["config"].get("data") or {}).get("val") or {}
        if val.get("dataset") != "domains" or val.get("part") != "held_out" or val.get("fold") in (None, "tune"):
            raise ValueError(f"{path}: its data.val is not a domains fold (part: held_out, fold: k), so its "
                             "held-out examples are unknown")
        theirs = union_of(val)
        for key in UNION_KEYS:
            if theirs[key] != spec[key]:
                raise ValueError(f"{path} was trained on another union than this split's: {key} is "
                                 f"{theirs[key]!r} there, {spec[key]!r} here")
        k = int(val["fold"])
        if (fold_of == k).any():
            raise ValueError(f"{path}: fold {k} is given twice")
        as_seen = json.dumps([{key: v for key, v in val.items() if key not in ("fold", "part")}, saved["data_config"]],
                             sort_keys=True)
        if as_seen not in seen:
            seen[as_seen] = build_set(dict(val, part="all"), saved["data_config"])[0]
        held = Subset(seen[as_seen], fold_parts(len(seen[as_seen]), spec["folds"], k, spec["seed"])[1].tolist())
        net = classifier_from(saved).to(device)
        print(f"  fold {k}: {path} scores {len(held)} held-out examples", flush=True)
        with torch.no_grad():
            for x, y, position in DataLoader(held, batch_size=batch_size):
                out = net(x.to(device)).float().cpu().numpy()
                if out.shape[-1] != 2:
                    raise ValueError(f"{path} has {out.shape[-1]} outputs; a domain classifier has 2")
                logits[position.numpy()] = out[:, 1] - out[:, 0]
                fold_of[position.numpy()] = k
    missing = sorted(set(range(spec["folds"])) - set(fold_of.tolist()))
    if missing:
        raise ValueError(f"no fold model for folds {missing} of {spec['folds']}: every example must be scored")
    return logits, fold_of


def model_rows(sheets, rows, baselines, reference_domain, shifted_domain, n_shifted):
    """The evaluation rows named by ``rows``: name, group, reference accuracy and which shifted
    examples they got right (their evaluation's per-example results for ``shifted_domain``)."""
    from tasks.classify.scoring import read_correct
    from tasks.sheets import evaluated_rows, matches

    found = []
    for sheet in sheets:
        for r in evaluated_rows(sheet, "eval_metrics.json"):
            if not matches(r["name"], rows):
                continue
            res = r["results"]
            acc = res.get("results", {}).get(reference_domain, {}).get("acc1")
            if acc is None:
                continue
            correct = read_correct(res, r["path"], shifted_domain)
            if len(correct) != n_shifted:
                raise ValueError(f"row {r['name']!r}: its {shifted_domain!r} has {len(correct)} examples, the "
                                 f"shifted set here {n_shifted}: not the same set")
            found.append({"sheet": r["sheet"], "name": r["name"], "ref": float(acc), "correct": correct,
                          "group": "baseline" if matches(r["name"], baselines) else "evaluated"})
    return found


def main(argv=None) -> pd.DataFrame:
    from runner import report
    from tasks.common import load_config, run_dir

    cfg = load_config(__doc__.splitlines()[0], argv)
    epsilons = [float(e) for e in cfg.get("epsilons", [0.01, 0.1])]
    out = cfg.get("out") or run_dir() or "."
    os.makedirs(out, exist_ok=True)
    support = find_support(cfg, epsilons, out)
    df = part_accuracies(cfg, support, epsilons)
    metrics = {"domain_auroc": round(support.auroc, 4), "temperature": round(support.alpha, 4),
               **{f"out_of_support_{e:g}": round(float(support.split[e].mean()), 4) for e in epsilons}}
    if not df.empty:
        fit_parts(df, cfg)
        df.to_csv(os.path.join(out, "split_shift.csv"), index=False)
        metrics.update(mean_effective_robustness(df, float(cfg.get("figure_epsilon", epsilons[-1]))))
    write_table(os.path.join(out, "split_shift.md"), support, epsilons, df)
    if not df.empty:
        figure(df, float(cfg.get("figure_epsilon", epsilons[-1])), os.path.join(out, "split_shift.png"))
    report(metrics)
    print(f"-> {out}/support.npz, split_shift.md" + (", .csv, .png" if not df.empty else ""), flush=True)
    return df


@dataclass
class Support:
    """The domain classifier's verdict: its out-of-fold logits, their calibration, the AUROC, and which
    shifted examples are out of the reference's support at each epsilon."""
    kind: str
    n_ref: int
    n_shift: int
    auroc: float
    alpha: float
    split: dict


def find_support(cfg: dict, epsilons: list, out: str) -> Support:
    """Cross-fit the domain classifier, calibrate it, and split the shifted set (``support.npz``)."""
    from sklearn.metrics import roc_auc_score

    from tasks.classify.setup import data_config
    from tasks.common import pick_device
    from tasks.data import build_set
    from tasks.data.domains import build_union, union_of

    dcfg, spec = data_config(cfg), union_of(cfg)
    classifier = dict(cfg.get("classifier") or {"kind": "logistic"})
    kind = classifier.get("kind", "logistic")
    if kind not in CLASSIFIERS:
        raise ValueError(f"classifier.kind must be one of {CLASSIFIERS}, got {kind!r}")
    union = build_union(spec, lambda s: build_set(s, dcfg))
    is_shifted = union.is_shifted
    n_ref, n_shift = len(union.reference_index), len(union.shifted)
    print(f"domain classifier ({kind}): {n_ref} reference and {n_shift} shifted examples, "
          f"{spec['folds']}-fold cross-fitting", flush=True)
    if kind == "logistic":
        logits, fold_of = logistic_logits(union, spec, classifier)
    else:
        logits, fold_of = fold_model_logits(union, spec, classifier, pick_device(cfg.get("device", "auto")),
                                            int(cfg.get("batch_size", 256)))
    alpha = calibrate(logits, is_shifted)
    ratios = density_ratios(logits, alpha, n_ref, n_shift)
    split = out_of_support(ratios[is_shifted], epsilons)
    np.savez(os.path.join(out, "support.npz"), logits=logits, fold=fold_of, is_shifted=is_shifted,
             reference_index=union.reference_index, ratios=ratios, temperature=alpha, epsilons=np.array(epsilons),
             out_of_support=np.stack([split[e] for e in epsilons]))
    for e in epsilons:
        print(f"  eps {e:g}: {int(split[e].sum())} of {n_shift} shifted examples out of support", flush=True)
    return Support(kind, n_ref, n_shift, float(roc_auc_score(is_shifted, logits)), alpha, split)


def part_accuracies(cfg: dict, support: Support, epsilons: list) -> pd.DataFrame:
    """One line per evaluated row, epsilon and part (in / out of support): its reference accuracy and
    its accuracy on that part of the shifted set."""
    sheets, patterns = config_sheets(cfg), as_list(cfg.get("rows"))
    lines = []
    if sheets and patterns:
        found = model_rows(sheets, patterns, as_list(cfg.get("baselines"), ["baseline*"]),
                           cfg.get("reference_domain", "in_distribution"), cfg.get("shifted_domain", "target"),
                           support.n_shift)
        for r in found:
            for e in epsilons:
                for part, mask in (("in_support", ~support.split[e]), ("out_of_support", support.split[e])):
                    lines.append({"sheet": r["sheet"], "name": r["name"], "group": r["group"], "epsilon": e,
                                  "part": part, "examples": int(mask.sum()), "ref": r["ref"],
                                  "shift": float(r["correct"][mask].mean()) if mask.any() else np.nan})
    return pd.DataFrame(lines)


def fit_parts(df: pd.DataFrame, cfg: dict) -> None:
    """``effective_robustness`` of every line: against the baselines' line of its epsilon and part."""
    df["effective_robustness"] = np.nan
    for (e, part), chunk in df.groupby(["epsilon", "part"]):
        base = chunk[chunk["group"] == "baseline"].dropna(subset=["shift"])
        if len(base) < 3 or chunk["examples"].iloc[0] == 0:
            continue
        try:
            line = fit_line(base["ref"], base["shift"], scale=cfg.get("scale", "probit"),
                            interval=cfg.get("interval", "exact"),
                            clip=resolve_clip(cfg.get("clip"), int(chunk["examples"].iloc[0])))
        except ValueError as exc:             # one part without a line must not cost the others theirs
            print(f"  eps {e:g}, {part}: no line ({exc})", flush=True)
            continue
        df.loc[chunk.index, "effective_robustness"] = 100 * effective_robustness(line, chunk["ref"], chunk["shift"])


def mean_effective_robustness(df: pd.DataFrame, epsilon: float) -> dict:
    """The row's ``mean_er_<part>``: the evaluated rows' mean ER on each part, at ``epsilon``."""
    evaluated = df[df["group"] == "evaluated"]
    out = {}
    for part in ("in_support", "out_of_support"):
        values = evaluated[(evaluated["part"] == part) & (evaluated["epsilon"] == epsilon)]["effective_robustness"]
        if len(values.dropna()):
            out[f"mean_er_{part}"] = round(float(values.dropna().mean()), 3)
    return out


def write_table(path: str, support: Support, epsilons: list, df: pd.DataFrame) -> None:
    """``split_shift.md``: the split at each epsilon, and every line with its accuracy and ER."""
    split = support.split
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"Domain classifier ({support.kind}) AUROC {support.auroc:.4f} (out of fold), temperature "
                f"{support.alpha:.3f}; {support.n_ref} reference, {support.n_shift} shifted examples.\n\n"
                "| epsilon | out of support |\n|---|---|\n")
        for e in epsilons:
            f.write(f"| {e:g} | {int(split[e].sum())} ({100 * split[e].mean():.1f}%) |\n")
        if not df.empty:
            f.write("\n| epsilon | row | group | part | examples | acc (%) | ER (points) |\n|---|---|---|---|---|---|---|\n")
            for r in df.itertuples():
                er = "" if np.isnan(r.effective_robustness) else f"{r.effective_robustness:+.2f}"
                acc = "" if np.isnan(r.shift) else f"{100 * r.shift:.2f}"
                f.write(f"| {r.epsilon:g} | {r.name} | {r.group} | {r.part} | {r.examples} | {acc} | {er} |\n")


def figure(df: pd.DataFrame, epsilon: float, path: str) -> None:
    """Shifted accuracy against reference accuracy on each part, baselines and the others."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    parts = ("in_support", "out_of_support")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    for ax, part in zip(axes, parts):
        chunk = df[(df["epsilon"] == epsilon) & (df["part"] == part)].dropna(subset=["shift"])
        for group, colour, marker in (("baseline", "tab:blue", "o"), ("evaluated", "tab:red", "*")):
            g = chunk[chunk["group"] == group]
            ax.scatter(norm.ppf(np.clip(g["ref"], 1e-3, 1 - 1e-3)), norm.ppf(np.clip(g["shift"], 1e-3, 1 - 1e-3)),
                       c=colour, marker=marker, s=40 if marker == "o" else 110, edgecolors="k", linewidths=0.4,
                       label=group)
        n = int(chunk["examples"].iloc[0]) if len(chunk) else 0
        ax.set_title(f"{part.replace('_', ' ')} (eps {epsilon:g}, {n} examples)", fontsize=10)
        ticks = np.array([0.1, 0.3, 0.5, 0.7, 0.9, 0.97, 0.99])
        ax.set_xticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
        ax.set_yticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
        ax.set_xlabel("reference accuracy (%, probit axis)")
        ax.set_ylabel("shifted accuracy (%, probit axis)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
