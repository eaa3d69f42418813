"""Effective robustness (seed 002): the baseline line and its band, the synthetic shifts, splitting a
shift by support, fine-tuning from a saved classifier."""
import os

import numpy as np
import pytest
import torch
from scipy import stats

from tasks.data import build_set
from tasks.robustness.fit import effective_robustness, fit_line

CFG = {"input_size": [3, 8, 8], "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}
DIGITS = {"dataset": "digits", "split": "val", "id_classes": list(range(10))}


@pytest.mark.parametrize("scale", ["probit", "logit"])
def test_the_fit_recovers_a_known_line_and_points_on_it_have_no_effective_robustness(scale):
    forward, inverse = {"probit": (stats.norm.ppf, stats.norm.cdf),
                        "logit": (lambda a: np.log(a / (1 - a)), lambda z: 1 / (1 + np.exp(-z)))}[scale]
    ref = np.linspace(0.3, 0.95, 9)
    shift = inverse(0.8 * forward(ref) - 0.4)
    line = fit_line(ref, shift, scale=scale)
    assert line.slope == pytest.approx(0.8, abs=1e-6) and line.intercept == pytest.approx(-0.4, abs=1e-6)
    others = np.array([0.5, 0.77, 0.9])
    on_line = inverse(0.8 * forward(others) - 0.4)
    np.testing.assert_allclose(effective_robustness(line, others, on_line), 0, atol=1e-6)
    np.testing.assert_allclose(effective_robustness(line, others, on_line + 0.03), 0.03, atol=1e-6)


def test_the_band_contains_the_line_and_is_the_textbook_interval():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0.4, 0.9, 20)
    shift = stats.norm.cdf(0.9 * stats.norm.ppf(ref) - 0.5 + rng.normal(0, 0.05, 20))
    line = fit_line(ref, shift, alpha=0.05)
    grid = np.linspace(0.2, 0.99, 50)
    lower, mid, upper = line.predict(grid)
    assert (lower < mid).all() and (mid < upper).all()
    # the textbook confidence interval of the mean, written out with numpy
    x, y = stats.norm.ppf(ref), stats.norm.ppf(shift)
    slope, intercept = np.polyfit(x, y, 1)
    s = np.sqrt(((y - slope * x - intercept) ** 2).sum() / 18)
    g = stats.norm.ppf(grid)
    half = stats.t(18).ppf(0.975) * s * np.sqrt(1 / 20 + (g - x.mean()) ** 2 / ((x - x.mean()) ** 2).sum())
    np.testing.assert_allclose(upper, stats.norm.cdf(slope * g + intercept + half), rtol=1e-9)
    np.testing.assert_allclose(lower, stats.norm.cdf(slope * g + intercept - half), rtol=1e-9)
    # narrowest at the baselines' mean, wider away from it; the authors' band is sqrt((n-1)/n) as wide
    widths = stats.norm.ppf(upper) - stats.norm.ppf(lower)
    assert np.argmin(widths) == np.argmin(np.abs(g - x.mean()))
    authors = fit_line(ref, shift, interval="authors")
    lo_a, _, up_a = authors.predict(grid)
    np.testing.assert_allclose(stats.norm.ppf(up_a) - stats.norm.ppf(lo_a), widths * np.sqrt(19 / 20), rtol=1e-9)


def test_fit_inputs_are_validated():
    with pytest.raises(ValueError, match="has no probit"):
        fit_line([0.5, 0.7, 1.0], [0.4, 0.5, 0.6])
    line = fit_line([0.5, 0.7, 1.0], [0.4, 0.5, 0.6], clip=0.001)
    assert np.isfinite(line.slope)
    with pytest.raises(ValueError, match="at least 3"):
        fit_line([0.5, 0.6], [0.4, 0.5])
    with pytest.raises(ValueError, match="all equal"):
        fit_line([0.5, 0.5, 0.5], [0.4, 0.5, 0.6])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fit_line([50, 60, 70], [40, 50, 60])                   # percentages, not fractions


def pixels(x):
    return x * torch.tensor(CFG["std"]).view(3, 1, 1) + torch.tensor(CFG["mean"]).view(3, 1, 1)


def test_tint_is_a_convex_mix_with_the_class_colour_shared_by_reference_and_target():
    clean, _ = build_set(DIGITS, CFG)
    ref, _ = build_set(dict(DIGITS, shift={"kind": "tint", "p": 1.0, "seed": 3}), CFG)
    target, _ = build_set(dict(DIGITS, shift={"kind": "tint", "p": 0.0, "seed": 3}), CFG)
    from tasks.data.shifts import tint_draws

    colours, random_class, _ = tint_draws(10, len(clean), 0.0, 3)
    # the colours travel with the results (evaluate.py writes a set's record into eval_metrics.json)
    assert ref.record["colours"] == target.record["colours"] == np.round(colours, 6).tolist()
    assert ref.record["p"] == 1.0 and target.record["p"] == 0.0
    for i in (0, 5, 17):
        x, y, index = clean[i]
        xr, yr, ir = ref[i]
        xt, _, _ = target[i]
        assert (yr, ir) == (y, index)
        expected = 0.75 * pixels(x) + 0.25 * torch.tensor(colours[y], dtype=torch.float32).view(3, 1, 1)
        torch.testing.assert_close(pixels(xr), expected, atol=1e-5, rtol=0)
        other = 0.75 * pixels(x) + 0.25 * torch.tensor(colours[random_class[i]], dtype=torch.float32).view(3, 1, 1)
        torch.testing.assert_close(pixels(xt), other, atol=1e-5, rtol=0)


def test_at_p_1_the_class_is_predictable_from_colour_alone_and_at_p_0_it_is_not():
    def colour_accuracy(p):
        ds, _ = build_set(dict(DIGITS, shift={"kind": "tint", "p": p, "seed": 0}), CFG)
        from tasks.data.shifts import tint_draws

        colours = torch.tensor(tint_draws(10, len(ds), p, 0)[0], dtype=torch.float32)
        clean, _ = build_set(DIGITS, CFG)
        right = 0
        for i in range(len(ds)):
            xs, y, _ = ds[i]
            tint = (pixels(xs) - 0.75 * pixels(clean[i][0])) / 0.25          # the colour added, recovered
            guess = int(((colours - tint.mean((1, 2))) ** 2).sum(1).argmin())
            right += guess == y
        return right / len(ds)

    assert colour_accuracy(1.0) == 1.0
    assert colour_accuracy(0.0) < 0.25                      # chance (0.1) and the random class's own hits
    assert 0.4 < colour_accuracy(0.5) < 0.7                 # p + (1 - p) / K = 0.55


def test_vflip_turns_the_image_upside_down_and_shifts_are_validated():
    clean, _ = build_set(DIGITS, CFG)
    flipped, _ = build_set(dict(DIGITS, shift={"kind": "vflip"}), CFG)
    torch.testing.assert_close(flipped[4][0], torch.flip(clean[4][0], dims=[-2]), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="own seed"):
        build_set(dict(DIGITS, shift={"kind": "tint", "p": 0.5}), CFG)
    with pytest.raises(ValueError, match="kind must be one of"):
        build_set(dict(DIGITS, shift={"kind": "rotate"}), CFG)
    with pytest.raises(ValueError, match="does not take"):
        build_set(dict(DIGITS, shift={"kind": "vflip", "p": 0.5}), CFG)


def gaussians(n_ref=400, n_in=200, n_out=200, gap=8.0, seed=0):
    """Reference N(0, I) in 2-D; the shift: half from the same Gaussian, half from one `gap` away."""
    rng = np.random.default_rng(seed)
    ref = rng.normal(0, 1, (n_ref, 2))
    shifted = np.concatenate([rng.normal(0, 1, (n_in, 2)), rng.normal(gap, 1, (n_out, 2))])
    x = np.concatenate([ref, shifted])
    is_shifted = np.concatenate([np.zeros(n_ref, bool), np.ones(n_in + n_out, bool)])
    only_shift = np.concatenate([np.zeros(n_ref + n_in, bool), np.ones(n_out, bool)])
    return x, is_shifted, only_shift


def test_cross_fitting_never_scores_an_example_with_a_model_trained_on_it():
    from tasks.robustness.support import cross_fit, logistic_domain_classifier

    x, is_shifted, _ = gaussians()
    seen = []

    def spy(train_x, train_y, score_x):
        seen.append((train_x.copy(), score_x.copy()))
        return logistic_domain_classifier()(train_x, train_y, score_x)

    fit = cross_fit(x, is_shifted, spy, folds=5, seed=1)
    assert np.isfinite(fit.logits).all() and set(fit.fold_of) == set(range(5))
    for k, trained in enumerate(fit.trained_on):
        scored = np.flatnonzero(fit.fold_of == k)
        assert len(np.intersect1d(trained, scored)) == 0                   # never scored by its own model
        assert len(trained) + len(scored) == len(x)
        train_rows = {tuple(r) for r in seen[k][0]}
        assert not any(tuple(r) in train_rows for r in seen[k][1])          # and the model got only those rows
    with pytest.raises(ValueError, match="both reference and shifted"):
        cross_fit(x, np.ones(len(x), bool), spy, folds=5)


def test_the_split_puts_the_shift_only_mass_out_of_support_and_grows_with_epsilon():
    from tasks.robustness.support import (calibrate, cross_fit, density_ratios, logistic_domain_classifier,
                                          out_of_support)

    x, is_shifted, only_shift = gaussians()
    fit = cross_fit(x, is_shifted, logistic_domain_classifier(), folds=10, seed=0)
    alpha = calibrate(fit.logits, is_shifted)
    r = density_ratios(fit.logits, alpha, n_ref=400, n_shift=400)
    split = out_of_support(r[is_shifted], [1e-3, 0.05, 0.1, 0.2, 0.5])
    far = only_shift[is_shifted]
    for eps, mask in split.items():
        if eps < 0.05:        # r >= 1000 asks more than a linear classifier of 800 points gives: fewer, not more
            assert mask.sum() <= split[0.05].sum()
            continue
        # the far cluster, which the reference never produces, is out of support; the shared half is not
        assert mask[far].mean() > 0.95, (eps, mask[far].mean())
        assert mask[~far].mean() < 0.2, (eps, mask[~far].mean())
    sizes = [split[e].sum() for e in sorted(split)]
    assert sizes == sorted(sizes)                                          # monotone in epsilon
    assert all((split[a] <= split[b]).all() for a, b in zip(sorted(split), sorted(split)[1:]))
    # the temperature is the minimiser of the calibrated cross-entropy
    from scipy.optimize import minimize_scalar

    def bce(a):
        z = a * fit.logits
        return np.mean(np.logaddexp(0, z) - is_shifted * z)
    assert alpha == pytest.approx(minimize_scalar(bce, bounds=(0.01, 10), method="bounded").x, rel=1e-3)
    np.testing.assert_allclose(density_ratios(np.array([0.0, np.log(3)]), 1.0, 100, 50), [2.0, 6.0])


def test_fine_tuning_starts_from_a_saved_classifier_with_a_new_head(tmp_path):
    """A tasks/classify model file as `weights`; `weights_exclude` leaves the classifier fresh and
    refuses a file that does not fit the rest."""
    from tasks.models import create_model

    torch.manual_seed(0)
    source = create_model("small_cnn", 5, width=4)
    torch.save({"format": "sheetrun_classifier/1", "model": {"name": "small_cnn"}, "state_dict": source.state_dict()},
               tmp_path / "pre.pt")
    torch.manual_seed(1)
    fresh = create_model("small_cnn", 3, width=4)
    head = next(n for n, m in fresh.named_modules() if isinstance(m, torch.nn.Linear))
    torch.manual_seed(1)
    tuned = create_model("small_cnn", 3, width=4, weights=str(tmp_path / "pre.pt"), weights_exclude=rf"^{head}\.")
    for name, value in tuned.state_dict().items():
        expected = fresh.state_dict()[name] if name.startswith(f"{head}.") else source.state_dict()[name]
        assert torch.equal(value, expected), name
    with pytest.raises(ValueError, match="does not fit"):
        create_model("small_cnn", 3, width=4, depth=2, weights=str(tmp_path / "pre.pt"), weights_exclude=rf"^{head}\.")
    with pytest.raises(RuntimeError):
        create_model("small_cnn", 3, width=4, weights=str(tmp_path / "pre.pt"))     # a 5-class head, no exclude


def test_effective_robustness_of_a_sheet_s_rows_goes_into_those_rows(tmp_path):
    """A sheet with 6 baseline evaluations on a known probit line and 3 others above or on it: the
    script writes each row's effective robustness (accuracy points) and draws the plot."""
    import csv
    import json
    import subprocess
    import sys

    from conftest import REPO

    root = tmp_path / "project"
    (root / "result_sheets").mkdir(parents=True)
    rows, truth = [], {}
    points = [(f"baseline s{i}", r, stats.norm.cdf(0.7 * stats.norm.ppf(r) - 0.3))
              for i, r in enumerate([0.55, 0.62, 0.7, 0.76, 0.83, 0.9])]
    points += [("pretrained a", 0.8, stats.norm.cdf(0.7 * stats.norm.ppf(0.8) - 0.3) + 0.05),
               ("pretrained b", 0.85, stats.norm.cdf(0.7 * stats.norm.ppf(0.85) - 0.3)),
               ("pretrained c", 0.88, 0.4)]
    for i, (name, ref, shift) in enumerate(points):
        folder = root / "runs" / f"r{i}"
        folder.mkdir(parents=True)
        (folder / "eval_metrics.json").write_text(json.dumps({"results": {
            "in_distribution": {"acc1": ref}, "target": {"acc1": shift}}}))
        rows.append({"name": name, "path_to_main": "tasks/classify/evaluate.py", "status": "Completed",
                     "run_id": f"rid{i}", "run_folder": f"runs/r{i}", "notes": "kept"})
        truth[name] = 100 * (shift - stats.norm.cdf(0.7 * stats.norm.ppf(ref) - 0.3))
    rows.append({"name": "not finished", "path_to_main": "x.py", "status": "Running", "run_id": "rid9",
                 "run_folder": "", "notes": ""})
    sheet = root / "result_sheets" / "er.csv"
    with open(sheet, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (tmp_path / "er.yaml").write_text(f"sheets: [{sheet}]\nshifted: target\nbaselines: ['baseline *']\n"
                                      f"out: {tmp_path / 'out'}\n")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tasks", "robustness", "effective_robustness.py"),
                           "--config", str(tmp_path / "er.yaml")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = {r["name"]: r for r in csv.DictReader(open(sheet))}
    for name, er in truth.items():
        assert float(written[name]["effective_robustness"]) == pytest.approx(er, abs=2e-3), name
        assert float(written[name]["effective_robustness_low"]) <= float(written[name]["effective_robustness"]) <= \
            float(written[name]["effective_robustness_high"])
        assert written[name]["notes"] == "kept"
    assert written["pretrained a"]["effective_robustness"] and float(written["pretrained a"]["effective_robustness"]) > 4.9
    assert written["not finished"].get("effective_robustness", "") == ""
    assert (tmp_path / "out" / "effective_robustness.png").stat().st_size > 20_000
    assert "| pretrained a | evaluated |" in (tmp_path / "out" / "effective_robustness.md").read_text()



def test_split_shift_finds_the_tint_in_support_and_the_flip_out_of_it(tmp_path):
    """Digits tinted with p = 0.5 as the reference: the p = 0 tint uses colours the reference also shows
    (in support); the same tinted digits upside down are partly new (out of support), the more so for
    digits that do not look like themselves flipped."""
    import subprocess
    import sys

    import yaml

    from conftest import REPO

    shares, flipped = {}, None
    reference_tint = {"kind": "tint", "p": 0.5, "seed": 0}
    for name, target in (("tint", {"kind": "tint", "p": 0.0, "seed": 0}), ("flip", [reference_tint, {"kind": "vflip"}])):
        cfg = {"data": {"input_size": [3, 8, 8], "mean": [0.5] * 3, "std": [0.5] * 3},
               "reference": {"dataset": "digits", "split": "train", "id_classes": [0, 1, 2, 3, 4],
                             "shift": {"kind": "tint", "p": 0.5, "seed": 0}},
               "shifted": {"dataset": "digits", "split": "val", "id_classes": [0, 1, 2, 3, 4], "shift": target},
               "folds": 3, "epsilons": [0.1, 0.5], "out": str(tmp_path / name)}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
        proc = subprocess.run([sys.executable, os.path.join(REPO, "tasks", "robustness", "split_shift.py"),
                               "--config", str(tmp_path / f"{name}.yaml")], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        saved = np.load(tmp_path / name / "support.npz")
        assert list(saved["epsilons"]) == [0.1, 0.5] and saved["out_of_support"].shape == (2, 226)
        assert (saved["fold"] >= 0).all() and np.isfinite(saved["logits"]).all()
        shares[name] = saved["out_of_support"].mean(1)
        assert (saved["out_of_support"][0] <= saved["out_of_support"][1]).all()        # monotone in epsilon
        flipped = saved["out_of_support"][0] if name == "flip" else flipped
    assert shares["flip"][0] > 0.3 and shares["tint"][0] < 0.1, shares
    # upside down, a 0 or a 1 still looks like one (in support); a 2, 3 or 4 does not
    clean, _ = build_set({"dataset": "digits", "split": "val", "id_classes": [0, 1, 2, 3, 4]}, CFG)
    labels = np.array([clean[i][1] for i in range(len(clean))])
    assert flipped[labels >= 2].mean() > flipped[labels <= 1].mean() + 0.15


def test_shifts_compose_in_order():
    clean, _ = build_set(DIGITS, CFG)
    tint = {"kind": "tint", "p": 1.0, "seed": 2}
    both, _ = build_set(dict(DIGITS, shift=[tint, {"kind": "vflip"}]), CFG)
    tinted, _ = build_set(dict(DIGITS, shift=tint), CFG)
    torch.testing.assert_close(both[7][0], torch.flip(tinted[7][0], dims=[-2]), atol=1e-5, rtol=0)
    assert [r["kind"] for r in both.record] == ["tint", "vflip"] and "colours" in both.record[0]


@pytest.mark.timeout(2400)          # minutes on a quiet 2-core machine; more with its cores busy
def test_robustness_sheet_end_to_end_through_sheetrun(tmp_path):
    """result_sheets/robustness.csv (narrower networks, 3 folds): pre-training, 3 baselines with 4
    snapshots each, a fine-tuning lr grid and 2 copies at its best lr, 17 evaluations, effective
    robustness on the tint and the flip, and both splits."""
    import csv
    import json

    import yaml

    from conftest import copy_project, run_project_sheet

    root = copy_project(tmp_path / "project")
    folder = root / "default_configs" / "robustness"
    for name in ("pretrain", "train"):
        cfg = yaml.safe_load((folder / f"{name}.yaml").read_text())
        cfg["model"]["kwargs"]["width"] = 8
        if name == "pretrain":
            cfg["epochs"] = 4
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    for name in ("split_tint", "split_flip"):
        cfg = yaml.safe_load((folder / f"{name}.yaml").read_text())
        cfg["folds"] = 3
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    sheet = root / "result_sheets" / "robustness.csv"
    rows = run_project_sheet(root, sheet, tmp_path)
    assert [r["status"] for r in rows] == ["Completed"] * len(rows) and len(rows) == 30
    by = {r["name"]: r for r in rows}
    # the copies took the lr of the grid's best reference accuracy
    grid = {lr: float(by[f"finetune lr {lr}"]["val_acc"]) for lr in ("0.003", "0.01", "0.03")}
    best = max(grid, key=lambda lr: (grid[lr], -list(grid).index(lr)))
    for s in (1, 2):
        saved = torch.load(root / "models" / "robustness" / f"finetune_best_{s}.pt", weights_only=False)
        assert saved["config"]["optim"]["lr"] == float(best)
    # every evaluation row got both effective robustness columns, the baselines' scattered around 0
    evals = [r for r in rows if r["path_to_main"] == "tasks/classify/evaluate.py"]
    assert len(evals) == 17 and all(r["er_tint"] and r["er_flip"] for r in evals)
    baseline = [float(r["er_tint"]) for r in evals if r["name"].startswith("baseline")]
    assert abs(np.mean(baseline)) < 1.0
    metrics = json.load(open(root / evals[0]["run_folder"] / "eval_metrics.json"))
    assert metrics["shifts"]["tint"]["colours"] == metrics["shifts"]["in_distribution"]["colours"]
    for shift in ("tint", "flip"):
        out = root / by[f"effective robustness {shift}"]["run_folder"]
        assert (out / "effective_robustness.png").stat().st_size > 20_000
        table = list(csv.DictReader(open(out / "effective_robustness.csv")))
        assert sum(t["group"] == "baseline" for t in table) == 12 and sum(t["group"] == "evaluated" for t in table) == 5
        split = by[f"split {shift}"]
        assert float(split["domain_auroc"]) > 0.5
    # the flip is out of the reference's support, the decorrelated tint is not
    assert float(by["split flip"]["out_of_support_0.1"]) > 0.3 > 0.1 > float(by["split tint"]["out_of_support_0.1"])


UNION = {"reference": {"dataset": "digits", "split": "train", "id_classes": [0, 1],
                       "shift": {"kind": "tint", "p": 0.5, "seed": 0}},
         "shifted": {"dataset": "digits", "split": "val", "id_classes": [0, 1],
                     "shift": [{"kind": "tint", "p": 0.5, "seed": 0}, {"kind": "vflip"}]},
         "max_reference": 150, "reference_classes": "all", "seed": 0, "folds": 3}


def domain_classifier_config(tmp_path, fold, **model):
    from conftest import set_nested

    data = {"train": {"dataset": "domains", **UNION, "fold": fold, "part": "train", "augment": True},
            "val": {"dataset": "domains", **UNION, "fold": fold, "part": "held_out"},
            "num_classes": 2, "input_size": [3, 8, 8], "mean": [0.5] * 3, "std": [0.5] * 3}
    cfg = {"model": {"name": "small_cnn", "kwargs": {"width": 4}, **model}, "data": data,
           "optim": {"name": "adamw", "lr": 0.01, "weight_decay": 0.0}, "schedule": {"name": "cosine"},
           "epochs": 2, "batch_size": 32, "seed": {"init": fold if fold != "tune" else 9, "data": 0}, "device": "cpu",
           "save_path": str(tmp_path / f"domain_fold{fold}.pt"), "resume": False}
    return set_nested(cfg, {})


def test_fold_networks_score_only_their_own_held_out_fold_and_the_split_reads_them(tmp_path):
    """Domain classifiers trained by tasks/classify/train.py on `domains` folds (the full-scale way):
    each fold's network never saw the examples it scores, the split gets every example's score from
    the right one, reports a held-out AUROC per network, and refuses a missing fold or another union."""
    import yaml

    from tasks.classify.checkpoints import classifier_from, read_classifier
    from tasks.classify.setup import build_data
    from tasks.classify.training import train
    from tasks.data.domains import build_union, fold_parts
    from tasks.robustness import split_shift

    dcfg = {"input_size": [3, 8, 8], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear", "crop_pct": 1.0}
    union = build_union(UNION, lambda s: build_set(s, dcfg))
    n = len(union)
    assert len(union.reference_index) == 150 and union.is_shifted.sum() == n - 150
    for k in range(3):
        cfg = domain_classifier_config(tmp_path, k)
        train_set, val_set = build_data(cfg)
        train_pos = {int(train_set[i][2]) for i in range(len(train_set))}
        held_pos = {int(val_set[i][2]) for i in range(len(val_set))}
        assert not train_pos & held_pos and len(train_pos | held_pos) == n
        assert held_pos == set(fold_parts(n, 3, k, 0)[1].tolist())
        train(cfg)
        saved = read_classifier(cfg["save_path"])
        assert 0.5 < saved["history"][-1]["val_auroc"] <= 1.0          # two classes: the held-out AUROC
    split_cfg = {"data": {"input_size": [3, 8, 8], "mean": [0.5] * 3, "std": [0.5] * 3}, **UNION,
                 "classifier": {"kind": "models", "models": [str(tmp_path / "domain_fold*.pt")]},
                 "epsilons": [0.1, 0.5], "device": "cpu", "out": str(tmp_path / "split")}
    (tmp_path / "split.yaml").write_text(yaml.safe_dump(split_cfg))
    split_shift.main(["--config", str(tmp_path / "split.yaml")])
    saved = np.load(tmp_path / "split" / "support.npz")
    for k in range(3):
        held = fold_parts(n, 3, k, 0)[1]
        assert (saved["fold"][held] == k).all()
        net = classifier_from(read_classifier(str(tmp_path / f"domain_fold{k}.pt")))
        x = torch.stack([union[int(i)][0] for i in held[:5]])
        with torch.no_grad():
            out = net(x)
        np.testing.assert_allclose(saved["logits"][held[:5]], (out[:, 1] - out[:, 0]).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(saved["is_shifted"], union.is_shifted)
    os.rename(tmp_path / "domain_fold2.pt", tmp_path / "kept_aside.pt")
    with pytest.raises(ValueError, match=r"no fold model for folds \[2\]"):
        split_shift.main(["--config", str(tmp_path / "split.yaml")])
    os.rename(tmp_path / "kept_aside.pt", tmp_path / "domain_fold2.pt")
    (tmp_path / "other.yaml").write_text(yaml.safe_dump({**split_cfg, "max_reference": 140}))
    with pytest.raises(ValueError, match="trained on another union"):
        split_shift.main(["--config", str(tmp_path / "other.yaml")])


def test_a_linear_probe_trains_the_head_alone(tmp_path):
    """`model.trainable` (the authors' freeze_features): only the parameters it matches change."""
    from tasks.classify.checkpoints import read_classifier
    from tasks.classify.setup import build_model
    from tasks.classify.training import train

    cfg = domain_classifier_config(tmp_path, "tune", trainable=r"^13\.")
    cfg["epochs"] = 1
    before = build_model(cfg).state_dict()
    assert [n for n, p in build_model(cfg).named_parameters() if p.requires_grad] == ["13.weight", "13.bias"]
    train(cfg)
    after = read_classifier(cfg["save_path"])["state_dict"]
    params = {n for n, _ in build_model(cfg).named_parameters()}
    changed = {k for k in params if not torch.equal(before[k], after[k])}
    assert changed == {"13.weight", "13.bias"}
    # batch-norm statistics still follow the data in training mode, as in the authors' freeze_features
    assert not torch.equal(before["1.running_mean"], after["1.running_mean"])
    with pytest.raises(ValueError, match="matches no parameter"):
        build_model(domain_classifier_config(tmp_path, 0, trainable="^head"))


def test_published_weights_become_a_model_file_with_their_preprocessing(tmp_path):
    """tasks/classify/import_weights.py: a timm architecture and a local .safetensors file; the file
    carries timm's preprocessing, which an evaluation with `preprocessing: model` uses; and the
    evaluation keeps which samples it got right (split_shift scores parts of a set with them)."""
    import json
    import subprocess
    import sys

    import timm
    import yaml
    from safetensors.torch import save_file

    from conftest import REPO
    from tasks.classify.checkpoints import classifier_from, read_classifier
    from tasks.classify.scoring import read_correct

    torch.manual_seed(0)
    net = timm.create_model("resnet10t", pretrained=False, num_classes=10)
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    (tmp_path / "import.yaml").write_text(yaml.safe_dump({
        "model": {"name": "resnet10t.c3_in1k", "weights": str(tmp_path / "w.safetensors")},
        "num_classes": 10, "data": {"input_size": [3, 16, 16], "mean": [0.5] * 3, "std": [0.25] * 3, "crop_pct": 1.0,
                                    "interpolation": "bilinear"}, "save_path": str(tmp_path / "m.pt")}))
    run = [sys.executable, os.path.join(REPO, "tasks", "classify", "import_weights.py"), "--config"]
    proc = subprocess.run(run + [str(tmp_path / "import.yaml")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = read_classifier(str(tmp_path / "m.pt"))
    assert saved["published"] == "resnet10t.c3_in1k" and saved["data_config"]["std"] == [0.25] * 3
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(classifier_from(saved)(x), net.eval()(x))
    from tasks.classify.import_weights import published_data_config

    timm_cfg = timm.models.get_pretrained_cfg("resnet10t.c3_in1k")
    assert published_data_config("resnet10t.c3_in1k")["crop_pct"] == timm_cfg.crop_pct
    assert published_data_config("resnet10t.c3_in1k")["mean"] == list(timm_cfg.mean)
    # digits scored with the file's own preprocessing (mean 0.5, std 0.25)
    digits = {"dataset": "digits", "split": "val", "id_classes": list(range(10))}
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump({
        "models": [str(tmp_path / "m.pt")], "data": {"preprocessing": "model", "in_distribution": digits,
                                                     "domains": {"flip": {**digits, "shift": {"kind": "vflip"}}}},
        "device": "cpu", "results_path": str(tmp_path / "ev" / "eval_metrics.json")}))
    run[1] = os.path.join(REPO, "tasks", "classify", "evaluate.py")
    proc = subprocess.run(run + [str(tmp_path / "eval.yaml")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "std [0.25, 0.25, 0.25]" in proc.stdout
    results = json.loads((tmp_path / "ev" / "eval_metrics.json").read_text())
    for domain in ("in_distribution", "flip"):
        correct = read_correct(results, str(tmp_path / "ev" / "eval_metrics.json"), domain)
        assert len(correct) == results["results"][domain]["n"]
        assert correct.mean() == pytest.approx(results["results"][domain]["acc1"])


def test_clip_auto_puts_an_accuracy_of_0_or_1_half_a_sample_inside():
    from tasks.robustness.fit import resolve_clip

    assert resolve_clip("auto", 200) == 0.0025 and resolve_clip(None, 200) is None and resolve_clip(0.01, 5) == 0.01
    auto = fit_line([0.5, 0.7, 1.0], [0.4, 0.5, 0.0], clip=resolve_clip("auto", 200))
    same = fit_line([0.5, 0.7, 0.9975], [0.4, 0.5, 0.0025])
    assert auto.slope == pytest.approx(same.slope) and auto.intercept == pytest.approx(same.intercept)


def test_the_authors_aggregation_is_each_models_mean_point_then_the_mean_over_models():
    """aggregate: models (the authors' experiment manager and notebook): a model's copies are averaged
    into one point, its ER taken there, then the ERs averaged over models; rows: every row's ER averaged."""
    import pandas as pd

    from tasks.robustness.effective_robustness import headline, per_model

    line_of = lambda r: stats.norm.cdf(0.7 * stats.norm.ppf(r) - 0.3)  # noqa: E731
    refs = [0.55, 0.62, 0.7, 0.76, 0.83, 0.9]
    line = fit_line(refs, [line_of(r) for r in refs])
    copies = {"CLIP (FT)": [(0.80, 0.62), (0.84, 0.55), (0.78, 0.60)], "AugReg (LP-FT)": [(0.70, 0.45), (0.72, 0.52)],
              "alone": [(0.9, 0.85)]}
    rows = [{"name": f"{model} {k + 1}" if model != "alone" else model, "ref": ref, "shift": shift}
            for model, points in copies.items() for k, (ref, shift) in enumerate(points)]
    evaluated = pd.DataFrame(rows)
    lower, _, upper = line.predict(evaluated["ref"])
    evaluated["effective_robustness"] = 100 * (evaluated["shift"] - line_of(evaluated["ref"]))
    evaluated["er_low"], evaluated["er_high"] = 100 * (evaluated["shift"] - upper), 100 * (evaluated["shift"] - lower)
    models = per_model(evaluated, line, r"^(.*) \d+$")
    assert list(models["model"]) == list(copies) and list(models["copies"]) == [3, 2, 1]
    want = {}
    for model, points in copies.items():
        ref, shift = np.mean([p[0] for p in points]), np.mean([p[1] for p in points])
        want[model] = 100 * (shift - line_of(ref))
    np.testing.assert_allclose(models["effective_robustness"], list(want.values()), atol=1e-9)
    by_models = headline(evaluated, models, "models")
    assert by_models["mean_er"] == pytest.approx(np.mean(list(want.values())), abs=1e-3) and by_models["models"] == 3
    assert by_models["mean_er_low"] <= by_models["mean_er"] <= by_models["mean_er_high"]
    by_rows = headline(evaluated, models, "rows")
    assert by_rows["mean_er"] == pytest.approx(evaluated["effective_robustness"].mean(), abs=1e-3)
    assert abs(by_rows["mean_er"] - by_models["mean_er"]) > 0.5          # the two aggregations differ here
    with pytest.raises(ValueError, match="aggregate must be one of"):
        headline(evaluated, models, "copies")
    with pytest.raises(ValueError, match="group naming the model"):
        per_model(evaluated, line, r"\d+$")


def test_no_sheet_overrides_the_configs_clip_auto():
    """A fixed clip on a small split part fits a part whose baselines reach 100% at a lower accuracy
    (a 30-example part at 99.8%, not 1 - 0.5/30); every sheet leaves clip to its config's auto."""
    import csv
    import glob

    import yaml

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    overrides = []
    for path in sorted(glob.glob(os.path.join(repo, "result_sheets", "*.csv"))):
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if (row.get("delta:clip") or "auto") != "auto":
                    overrides.append((os.path.basename(path), row.get("name"), row["delta:clip"]))
    assert overrides == []
    for name in ("effective_robustness", "split_flip", "split_tint"):
        with open(os.path.join(repo, "default_configs", "robustness", f"{name}.yaml")) as f:
            assert yaml.safe_load(f)["clip"] == "auto", name


def write_objectnet(root, rng):
    """An ObjectNet-shaped tree: images/<folder>/*.png with the mappings files as distributed."""
    import json

    from PIL import Image

    maps = root / "mappings"
    maps.mkdir(parents=True)
    lines = [f"synset {j}, thing {j}" for j in range(1000)]                 # ImageNet 2012 ids' names
    (maps / "imagenet_to_label_2012_v2").write_text("\n".join(lines) + "\n")
    line_of = {i: (i * 7) % 1000 for i in range(1000)}                       # torch index -> 2012 id
    (maps / "pytorch_to_imagenet_2012_id.json").write_text(json.dumps({str(k): v for k, v in line_of.items()}))
    # two ObjectNet classes match ImageNet: "alarm clock" (torch classes 3 and 5), "banana" (torch class 9)
    (maps / "objectnet_to_imagenet_1k.json").write_text(json.dumps(
        {"alarm clock": f"{lines[line_of[3]]}; {lines[line_of[5]]}", "banana": lines[line_of[9]]}))
    (maps / "folder_to_objectnet_label.json").write_text(json.dumps(
        {"alarm_clock": "alarm clock", "banana": "banana", "sandal": "sandal"}))
    for folder, count in (("alarm_clock", 3), ("banana", 2), ("sandal", 2)):
        (root / "images" / folder).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)
            pixels[0, :] = pixels[-1, :] = pixels[:, 0] = pixels[:, -1] = [255, 0, 0]      # the red border
            Image.fromarray(pixels).save(root / "images" / folder / f"{i}.png")


def test_objectnet_reads_its_mappings_and_scores_a_class_by_its_imagenet_classes_together(tmp_path):
    """ObjectNet: only the classes matched to ImageNet, labelled by ObjectNet class; the border cut;
    a prediction counts for its ImageNet class's ObjectNet class, whose probability is the sum of its
    ImageNet classes' (here 0.3 + 0.3 beats a single class's 0.4)."""
    from tasks.classify.scoring import evaluate_domain

    write_objectnet(tmp_path / "objectnet-1.0", np.random.default_rng(0))
    spec = {"dataset": "objectnet", "root": str(tmp_path / "objectnet-1.0"),
            "transform": {"recipe": "plain", "mean": [0.0] * 3, "std": [1.0] * 3}}
    ds, subset = build_set(spec, {"input_size": [3, 10, 8], "mean": [0.0] * 3, "std": [1.0] * 3})
    assert subset == [3, 5, 9] and ds.class_groups == [0, 0, 1] and ds.group_names == ["alarm clock", "banana"]
    assert [label for _, label in ds.samples] == [0, 0, 0, 1, 1]                       # no sandals
    image = ds[0][0]
    assert image.shape == (3, 10, 8) and not (image[0] == 1).all(-1).any()              # the red rows are gone

    class Known:
        """Probabilities given outright: 0.3 / 0.3 on the two alarm-clock classes, 0.4 on banana."""
        def __call__(self, x, classes):
            assert classes.tolist() == [3, 5, 9]
            return torch.tensor([[0.3, 0.3, 0.4]]).repeat(len(x), 1), {"total_uncertainty": torch.zeros(len(x))}

    out = evaluate_domain(Known(), ds, 4, "cpu", subset=subset, groups=ds.class_groups)
    np.testing.assert_array_equal(out["correct"], [True, True, True, False, False])
    np.testing.assert_allclose(out["nll"], -np.log([0.6, 0.6, 0.6, 0.4, 0.4]), rtol=1e-6)
    with pytest.raises(ValueError, match="restrict_logits"):
        evaluate_domain(Known(), ds, 4, "cpu", subset=subset, protocol="argmax_before", groups=ds.class_groups)
    (tmp_path / "objectnet-1.0" / "mappings" / "pytorch_to_imagenet_2012_id.json").unlink()
    with pytest.raises(FileNotFoundError, match="pytorch_to_imagenet_2012_id.json"):
        build_set(spec, {"input_size": [3, 10, 8], "mean": [0.0] * 3, "std": [1.0] * 3})


def test_a_zero_shot_head_gives_clip_s_own_zero_shot_logits(tmp_path):
    """ZS-FT's starting point against open_clip itself: a CLIP model (random weights, saved as a local
    checkpoint), the head written by tasks/robustness/zero_shot_head.py, the image tower in timm's
    layout with that head (create_model's zero_shot_head) — its logits are open_clip's zero-shot
    logits, 100 · normalise(image) · W."""
    import subprocess
    import sys

    import open_clip
    import timm
    import yaml
    from timm.models.vision_transformer import checkpoint_filter_fn

    from conftest import REPO
    from tasks.models import create_model

    torch.manual_seed(0)
    clip = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None).eval()
    torch.save(clip.state_dict(), tmp_path / "clip.bin")
    (tmp_path / "classes.txt").write_text("tench\ngoldfish\ngreat white shark\n")
    (tmp_path / "templates.txt").write_text("a photo of a {}.\na drawing of the {}.\n")
    (tmp_path / "zs.yaml").write_text(yaml.safe_dump({
        "clip": {"name": "ViT-B-32-quickgelu", "weights": str(tmp_path / "clip.bin")},
        "classes": str(tmp_path / "classes.txt"), "templates": str(tmp_path / "templates.txt"),
        "device": "cpu", "save_path": str(tmp_path / "head.pt")}))
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tasks", "robustness", "zero_shot_head.py"),
                           "--config", str(tmp_path / "zs.yaml")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    head = torch.load(tmp_path / "head.pt")
    assert head["weight"].shape == (3, 512) and head["classes"] == ["tench", "goldfish", "great white shark"]
    scale = float(clip.logit_scale.exp().detach())
    np.testing.assert_allclose(head["weight"].norm(dim=-1).numpy(), scale, rtol=1e-5)

    tower = timm.create_model("vit_base_patch32_clip_quickgelu_224", pretrained=False, num_classes=512)
    torch.save(checkpoint_filter_fn(clip.state_dict(), tower), tmp_path / "tower.pt")   # timm's layout, as on the hub
    net = create_model("vit_base_patch32_clip_quickgelu_224", num_classes=3, weights=str(tmp_path / "tower.pt"),
                       zero_shot_head=str(tmp_path / "head.pt")).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        image = clip.encode_image(x)
        text = clip.encode_text(open_clip.get_tokenizer("ViT-B-32-quickgelu")(["a photo of a tench."]))
        expected = (image / image.norm(dim=-1, keepdim=True)) @ head["weight"].T
        np.testing.assert_allclose(net(x).numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)
    # one template, one class: the row is that prompt's normalised embedding times the logit scale
    (tmp_path / "templates.txt").write_text("a photo of a {}.\n")
    (tmp_path / "classes.txt").write_text("tench\n")
    subprocess.run([sys.executable, os.path.join(REPO, "tasks", "robustness", "zero_shot_head.py"),
                    "--config", str(tmp_path / "zs.yaml")], capture_output=True, text=True, timeout=600, check=True)
    row = torch.load(tmp_path / "head.pt")["weight"][0]
    np.testing.assert_allclose(row.numpy(), (text[0] / text[0].norm() * scale).numpy(), rtol=1e-4, atol=1e-5)


def test_baselines_of_one_reference_accuracy_give_no_line():
    same = [0.08687617154257521] * 3        # equal accuracies whose probits' mean rounds to another float
    with pytest.raises(ValueError, match="all equal"):
        fit_line(same, [0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="all equal"):
        fit_line(same, [0.2, 0.3, 0.4], interval="authors")
