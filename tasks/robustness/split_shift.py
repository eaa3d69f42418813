"""Split a shifted set into the part the reference distribution covers and the part it does not, and
measure every model's effective robustness on each part (seed 002).

    python tasks/robustness/split_shift.py --config default_configs/robustness/split_tint.yaml

1. A domain classifier tells ``shifted`` examples from ``reference`` ones (set specs of
   tasks/data; ``max_reference`` draws a subset of the reference, as the authors draw 100,000
   ImageNet training images). It is cross-fitted over ``folds`` folds, so every example is
   scored by a classifier trained without it; the out-of-fold logits are calibrated by one
   temperature and turned into density ratios r (tasks/robustness/support.py). ``classifier``:
   ``logistic`` (scikit-learn's logistic regression on the standardised pixels, option ``C``).
2. For each ``epsilons`` value, the shifted examples with r >= 1 / eps are out of support, the
   others in support.
3. The models of the evaluation rows named by ``rows`` (shell-style patterns over the rows of
   ``sheets``, default the sheet this row runs in) are read as their evaluation read them (their
   ``eval_metrics.json``: files and model kind) and scored on every shifted example; their
   reference accuracy is their evaluation's ``reference_domain``. Per part and epsilon, the rows
   matching ``baselines`` fix a line (tasks/robustness/fit.py) and every model gets its effective
   robustness on that part.

Writes ``support.npz`` (logits, folds, density ratios, the split per epsilon),
``split_shift.md`` / ``.csv`` (per epsilon: the share out of support, each model's accuracy and
effective robustness on both parts) and ``split_shift.png`` (the two parts' plots at
``figure_epsilon``) to its run folder (or ``out``); the row gets the domain classifier's AUROC and
the share out of support per epsilon.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tasks.robustness.fit import effective_robustness, fit_line  # noqa: E402
from tasks.robustness.support import (calibrate, cross_fit, density_ratios, logistic_domain_classifier,  # noqa: E402
                                      out_of_support)

CLASSIFIERS = {"logistic": lambda opts, seed: logistic_domain_classifier(float(opts.get("C", 1.0)), seed)}


def images(dataset, limit: int | None, seed: int) -> np.ndarray:
    """The set's images as one array (``limit``: a random subset of that many, drawn with ``seed``)."""
    order = np.arange(len(dataset))
    if limit is not None and limit < len(dataset):
        order = np.sort(np.random.RandomState(seed).choice(len(dataset), size=int(limit), replace=False))
    return np.stack([dataset[int(i)][0].numpy() for i in order])


def model_rows(sheets, rows, baselines, reference_domain):
    """The evaluation rows named by ``rows``: name, group, files, kind options, reference accuracy."""
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
            group = "baseline" if matches(r["name"], baselines) else "evaluated"
            found.append({"sheet": r["sheet"], "name": r["name"], "group": group, "models": res["models"],
                          "kind": res.get("kind", "auto"), "options": res, "ref": float(acc)})
    return found


def main(argv=None) -> pd.DataFrame:
    from sklearn.metrics import roc_auc_score

    from runner import report
    from tasks.classify.evaluate import evaluate_domain, load_kind
    from tasks.classify.train import data_config
    from tasks.common import load_config, pick_device, run_dir
    from tasks.data import build_set
    from tasks.sheets import as_list, config_sheets

    cfg = load_config(__doc__.splitlines()[0], argv)
    dcfg = data_config(cfg)
    seed, folds = int(cfg.get("seed", 0)), int(cfg.get("folds", 10))
    epsilons = [float(e) for e in cfg.get("epsilons", [0.01, 0.1])]
    classifier = dict(cfg.get("classifier") or {"kind": "logistic"})
    if classifier.get("kind", "logistic") not in CLASSIFIERS:
        raise ValueError(f"classifier.kind must be one of {sorted(CLASSIFIERS)}, got {classifier.get('kind')!r}")

    reference, _ = build_set(cfg["reference"], dcfg)
    shifted, _ = build_set(cfg["shifted"], dcfg)
    x_ref = images(reference, cfg.get("max_reference"), seed)
    x_shift = images(shifted, None, seed)
    x = np.concatenate([x_ref, x_shift])
    is_shifted = np.concatenate([np.zeros(len(x_ref), bool), np.ones(len(x_shift), bool)])
    print(f"domain classifier ({classifier.get('kind', 'logistic')}): {len(x_ref)} reference and {len(x_shift)} "
          f"shifted examples, {folds}-fold cross-fitting", flush=True)
    fit = cross_fit(x, is_shifted, CLASSIFIERS[classifier.get("kind", "logistic")](classifier, seed), folds, seed)
    alpha = calibrate(fit.logits, is_shifted)
    ratios = density_ratios(fit.logits, alpha, len(x_ref), len(x_shift))
    auroc = float(roc_auc_score(is_shifted, fit.logits))
    split = out_of_support(ratios[is_shifted], epsilons)
    out = cfg.get("out") or run_dir() or "."
    os.makedirs(out, exist_ok=True)
    np.savez(os.path.join(out, "support.npz"), logits=fit.logits, fold=fit.fold_of, is_shifted=is_shifted,
             ratios=ratios, temperature=alpha, epsilons=np.array(epsilons),
             out_of_support=np.stack([split[e] for e in epsilons]))
    for e in epsilons:
        print(f"  eps {e:g}: {int(split[e].sum())} of {len(x_shift)} shifted examples out of support", flush=True)

    metrics = {"domain_auroc": round(auroc, 4), "temperature": round(alpha, 4),
               **{f"out_of_support_{e:g}": round(float(split[e].mean()), 4) for e in epsilons}}
    sheets, patterns = config_sheets(cfg), as_list(cfg.get("rows"))
    lines = []
    if sheets and patterns:
        device = pick_device(cfg.get("device", "auto"))
        found = model_rows(sheets, patterns, as_list(cfg.get("baselines"), ["baseline*"]),
                           cfg.get("reference_domain", "in_distribution"))
        for r in found:
            predict = load_kind(r["models"], r["kind"], device, r["options"])
            correct = evaluate_domain(predict, shifted, int(cfg.get("batch_size", 256)), device)["correct"]
            for e in epsilons:
                for part, mask in (("in_support", ~split[e]), ("out_of_support", split[e])):
                    lines.append({"sheet": r["sheet"], "name": r["name"], "group": r["group"], "epsilon": e,
                                  "part": part, "examples": int(mask.sum()), "ref": r["ref"],
                                  "shift": float(correct[mask].mean()) if mask.any() else np.nan})
    df = pd.DataFrame(lines)
    if not df.empty:
        df["effective_robustness"] = np.nan
        for (e, part), chunk in df.groupby(["epsilon", "part"]):
            base = chunk[chunk["group"] == "baseline"].dropna(subset=["shift"])
            if len(base) < 3 or chunk["examples"].iloc[0] == 0:
                continue
            line = fit_line(base["ref"], base["shift"], scale=cfg.get("scale", "probit"),
                            interval=cfg.get("interval", "exact"), clip=cfg.get("clip"))
            df.loc[chunk.index, "effective_robustness"] = 100 * effective_robustness(line, chunk["ref"], chunk["shift"])
        df.to_csv(os.path.join(out, "split_shift.csv"), index=False)
        evaluated = df[df["group"] == "evaluated"]
        for part in ("in_support", "out_of_support"):
            values = evaluated[(evaluated["part"] == part) & (evaluated["epsilon"] == float(cfg.get(
                "figure_epsilon", epsilons[-1])))]["effective_robustness"].dropna()
            if len(values):
                metrics[f"mean_er_{part}"] = round(float(values.mean()), 3)
    with open(os.path.join(out, "split_shift.md"), "w", encoding="utf-8") as f:
        f.write(f"Domain classifier AUROC {auroc:.4f} (out of fold), temperature {alpha:.3f}; "
                f"{len(x_ref)} reference, {len(x_shift)} shifted examples.\n\n| epsilon | out of support |\n|---|---|\n")
        for e in epsilons:
            f.write(f"| {e:g} | {int(split[e].sum())} ({100 * split[e].mean():.1f}%) |\n")
        if not df.empty:
            f.write("\n| epsilon | row | group | part | examples | acc (%) | ER (points) |\n|---|---|---|---|---|---|---|\n")
            for r in df.itertuples():
                er = "" if np.isnan(r.effective_robustness) else f"{r.effective_robustness:+.2f}"
                acc = "" if np.isnan(r.shift) else f"{100 * r.shift:.2f}"
                f.write(f"| {r.epsilon:g} | {r.name} | {r.group} | {r.part} | {r.examples} | {acc} | {er} |\n")
    if not df.empty:
        figure(df, float(cfg.get("figure_epsilon", epsilons[-1])), os.path.join(out, "split_shift.png"))
    report(metrics)
    print(f"-> {out}/support.npz, split_shift.md" + (", .csv, .png" if not df.empty else ""), flush=True)
    return df


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
