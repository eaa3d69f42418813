"""The full-scale SED sheets carry the authors' settings, and the protocols they need behave as theirs.

The reference values below were read from the SED authors' public code
(github.com/AlexanderRubinstein/diverse-universe-public, branch share_code):
configs/training/{50_models,OOD_gen,OOD_det_covariate,OOD_det_semantic}.yaml,
diverse_universe/caching/main.py (transforms), train/train.py (frozen first
epoch, scheduler stepped per epoch), local_datasets/from_h5.py (max_chunk) and
local_models/wrappers.py (ImagenetARMapper, argmax_before).
"""
from __future__ import annotations

import csv
import os

import numpy as np
import pytest
import torch
import yaml

from conftest import REPO

# the authors' value for each model; keys are our config's nested keys
AUTHORS = {
    "50_models": {"ensemble/members": 50, "ensemble/active_members": 2, "batch_size": 16,
                  "optim/name": "sgd", "optim/momentum": 0.9, "optim/weight_decay": 1e-4, "optim/lr": 1e-3,
                  "optim/schedule": "constant", "loss/lam": 0.5, "loss/lam_manual": 0.0002,
                  "loss/label_smoothing": 0.0,
                  # use_always_labeled false + no unlabeled data: their loss has no disagreement term
                  "loss/diversity": "none"},
    "ood_gen": {"ensemble/members": 5, "ensemble/active_members": 2, "batch_size": 32,
                "optim/name": "adamw", "optim/weight_decay": 0.1, "optim/lr": 1e-3,
                "optim/schedule": "cosine_epochs", "optim/t_max": 15, "loss/lam": 0.5, "loss/lam_manual": 0.0,
                "loss/label_smoothing": 0.5, "loss/diversity": "a2d", "loss/budget": True},
    "ood_det_cov": {"ensemble/members": 5, "ensemble/active_members": 2, "batch_size": 32,
                    "optim/name": "adamw", "optim/weight_decay": 0.1, "optim/lr": 1e-3,
                    "optim/schedule": "cosine_epochs", "optim/t_max": 15, "loss/lam": 0.5, "loss/lam_manual": 5,
                    "loss/label_smoothing": 0.5, "loss/diversity": "a2d", "loss/budget": True},
    "ood_det_sem": {"ensemble/members": 5, "ensemble/active_members": 2, "batch_size": 256,
                    "optim/name": "adamw", "optim/weight_decay": 0.01,       # torch's AdamW default: none given
                    "optim/lr": 1e-4, "optim/schedule": "cosine_epochs", "optim/t_max": 15,
                    "loss/lam": 0.5, "loss/lam_manual": 0.5, "loss/label_smoothing": 0.0,
                    "loss/diversity": "a2d", "loss/budget": True},
}
EVERY_MODEL = {"epochs": 11, "freeze_epochs": 1, "epoch_rows": 1281167, "seed": 42, "diversity_set": None,
               "ensemble/head": "auto", "ensemble/init_noise": 0.0}
EVAL_TRANSFORM = {"recipe": "resize_center_crop", "resize": 256, "size": 224, "interpolation": "bilinear",
                  "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
TRAIN_TRANSFORM = {"recipe": "rrc_flip", "size": 224, "scale": [0.08, 1.0], "ratio": [0.75, 4 / 3],
                   "interpolation": "bilinear", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def load(path):
    with open(os.path.join(REPO, path)) as f:
        return yaml.safe_load(f)


def get(cfg, key):
    for part in key.split("/"):
        cfg = cfg[part]
    return cfg


def sheet(name):
    with open(os.path.join(REPO, "result_sheets", name), newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("model", sorted(AUTHORS))
def test_training_configs_carry_the_authors_values(model):
    cfg = load(f"default_configs/sed/imagenet/train_{model}.yaml")
    for key, value in {**AUTHORS[model], **EVERY_MODEL}.items():
        got = get(cfg, key)
        assert got == pytest.approx(value) if isinstance(value, float) else got == value, (model, key, got, value)


def test_training_sheet_has_every_model_and_the_divdis_row():
    rows = {r["name"]: r for r in sheet("training.csv")}
    assert set(rows) == {*AUTHORS, "sed_divdis", "plain"}
    for name in AUTHORS:           # the authors' rows run their configs unchanged
        assert rows[name]["path_to_default_config"] == f"default_configs/sed/imagenet/train_{name}.yaml"
        assert not any(v for k, v in rows[name].items() if k.startswith("delta:"))
    assert rows["sed_divdis"]["delta:loss/diversity"] == "divdis"
    saves = {get(load(r["path_to_default_config"]), "save_path") if not r["delta:save_path"] else r["delta:save_path"]
             for r in rows.values()}
    assert len(saves) == len(rows)                   # no two rows write one model file
    evaluated = {r["delta:model"] for r in sheet("evaluation.csv")}
    assert saves <= evaluated, saves - evaluated     # every trained model has an evaluation row


def same(got, want) -> bool:
    """Equal structures, floats within 1e-9 (the YAML writes 4/3 as a decimal). pytest.approx
    does not take nested dictionaries."""
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(same(got[k], want[k]) for k in want)
    if isinstance(want, (list, tuple)):
        return isinstance(got, (list, tuple)) and len(got) == len(want) and all(map(same, got, want))
    if isinstance(want, float) and not isinstance(got, bool) and isinstance(got, (int, float)):
        return abs(got - want) <= 1e-9 * max(1.0, abs(want))
    return got == want


def test_caching_config_uses_the_authors_transforms():
    cfg = load("default_configs/sed/imagenet/cache_features.yaml")
    cat = cfg["catalog"]
    assert cat["in_train"]["epochs"] == 4 and cat["in_train"]["augment"] is True   # 4 random views
    assert same(cat["in_train"]["transform"], TRAIN_TRANSFORM), cat["in_train"]["transform"]
    for name in ("in_val", "imagenet_a", "imagenet_r", "in_c", "inaturalist", "openimages"):
        assert cat[name]["transform"] == EVAL_TRANSFORM, name
    assert cat["in_c"]["severities"] == [1, 5]
    assert cfg["backbone"]["split"] == "vit_mlp"


def test_evaluation_config_uses_the_authors_protocols():
    cfg = load("default_configs/sed/imagenet/evaluate.yaml")
    assert cfg["class_subset_protocol"] == "argmax_before"
    assert cfg["eval_sets"] == ["in_val", "imagenet_a", "imagenet_r", "C-1", "C-5"]
    assert cfg["ood_sets"] == ["C-1", "C-5", "inaturalist", "openimages"]


# --- schedules and epochs ---------------------------------------------------------------

def test_cosine_epochs_is_torch_cosine_annealing_stepped_per_epoch_after_the_frozen_one():
    from tasks.sed.train_ensemble import make_lr

    o = {"lr": 1e-3, "schedule": "cosine_epochs", "t_max": 15}
    steps = [7] * 11
    lr = make_lr(o, steps, freeze=1)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=15)
    for epoch in range(1, 11):                       # epoch 0 is frozen: no step, no scheduler step
        for step in range(7):
            assert lr(epoch, step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        opt.step()
        sched.step()
    const = make_lr({"lr": 1e-3, "schedule": "constant"}, steps, freeze=1)
    assert {const(e, s) for e in range(1, 11) for s in range(7)} == {1e-3}


def test_per_step_cosine_is_unchanged_by_default():
    from tasks.sed.train_ensemble import lr_factor, make_lr

    lr = make_lr({"lr": 0.1, "cosine": True, "warmup_steps": 3}, [10] * 4, freeze=0)
    for e in range(4):
        for s in range(10):
            assert lr(e, s) == pytest.approx(0.1 * lr_factor(e * 10 + s, 40, 3, True))
    with pytest.raises(ValueError, match="schedule"):
        make_lr({"lr": 0.1, "schedule": "linear"}, [10], 0)


def test_epochs_counted_in_chunks_as_the_authors():
    from tasks.sed.train_ensemble import epoch_spans

    n = 4 * 1281167
    spans = epoch_spans(n, 11, 1281167)
    assert spans[:5] == [(0, 1281167), (1281167, 2562334), (2562334, 3843501), (3843501, n), (0, 1281167)]
    assert epoch_spans(1000, 3, None) == [(0, 1000)] * 3
    assert epoch_spans(1000, 2, 5000) == [(0, 1000)] * 2
    assert epoch_spans(1000, 3, 400) == [(0, 400), (400, 800), (800, 1000)]


# --- ImageNet-A / -R accuracy ----------------------------------------------------------------

def test_argmax_before_votes_of_masked_member_predictions():
    from tasks.sed.evaluate import subset_votes

    # positions in a 3-class subset; -1 = the member's 1000-way argmax fell outside it
    preds = torch.tensor([[0, -1, 2, -1, 1],
                          [0, -1, 1, 1, 2],
                          [1, -1, 1, -1, 2]])
    assert subset_votes(preds, 3).tolist() == [0, -1, 1, 1, 2]
    tie = torch.tensor([[2], [1]])                # one vote each: the lowest class, as argmax
    assert subset_votes(tie, 3).tolist() == [1]


def test_subset_protocols_on_a_cached_set(tmp_path):
    """Accuracy of an ensemble on a 3-of-6-class set under both protocols, against direct numpy."""
    from tasks.sed.evaluate import evaluate_set
    from tasks.sed.cache import CacheWriter
    from tasks.sed.heads import EnsembleHeads, mlp_head

    rng = np.random.default_rng(0)
    n, dim, k, subset = 400, 8, 6, [1, 3, 4]
    x = rng.normal(size=(n, dim)).astype(np.float32)
    y = np.array(subset)[rng.integers(0, 3, n)]
    path = str(tmp_path / "sub.hdf5")
    w = CacheWriter(path, "k", n, dim, {"class_subset": np.array(subset)})
    w.write(x, y, np.arange(n))
    w.finish()
    model = EnsembleHeads(mlp_head(dim, 16, k, 0), 4, init_noise=0.5, seed=1).eval()
    soup = {key: v.detach() for key, v in model.soup().items()}
    entry = {"path": path, "class_subset": subset}
    with torch.no_grad():
        z = model(torch.from_numpy(x)).numpy()                       # [M, n, K]
        zs = model.soup_forward(torch.from_numpy(x), soup).numpy()
    pos = {c: i for i, c in enumerate(subset)}
    yp = np.array([pos[c] for c in y])

    # argmax_before: full argmax, outside = wrong, ensemble = vote
    member = np.array([[pos.get(c, -1) for c in zm.argmax(-1)] for zm in z])
    votes = np.zeros((n, 3), int)
    for mp in member:
        for i, c in enumerate(mp):
            if c >= 0:
                votes[i, c] += 1
    ens = np.where(votes.sum(1) > 0, votes.argmax(1), -1)
    soup_pred = np.array([pos.get(c, -1) for c in zs.argmax(-1)])
    got = evaluate_set(model, soup, entry, 64, torch.device("cpu"), 1.0, "argmax_before")
    assert got["member_acc"] == pytest.approx(list((member == yp).mean(1)))
    assert got["ensemble_acc"] == pytest.approx((ens == yp).mean())
    assert got["soup_acc"] == pytest.approx((soup_pred == yp).mean())
    assert (member == -1).any()                   # the case that tells the protocols apart occurs

    # restrict_logits: argmax over the subset's logits
    zr = z[..., subset]
    got = evaluate_set(model, soup, entry, 64, torch.device("cpu"), 1.0, "restrict_logits")
    assert got["member_acc"] == pytest.approx(list((zr.argmax(-1) == yp).mean(1)))
    assert got["ensemble_acc"] == pytest.approx((zr.mean(0).argmax(-1) == yp).mean())
    assert got["soup_acc"] == pytest.approx((zs[:, subset].argmax(-1) == yp).mean())
    with pytest.raises(ValueError, match="class_subset_protocol"):
        evaluate_set(model, soup, entry, 64, torch.device("cpu"), 1.0, "restrict")


# --- transforms -------------------------------------------------------------------------------

def test_transform_recipes_match_torchvision_and_enter_the_cache_key():
    from PIL import Image
    from torchvision import transforms as T

    from tasks.data.transforms import build_transform
    from tasks.sed.cache import cache_key

    data_cfg = {"input_size": [3, 224, 224], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                "interpolation": "bicubic", "crop_pct": 1.0}
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    spec = {"dataset": "image_folder", "transform": EVAL_TRANSFORM}
    ours = build_transform(spec, data_cfg)(img)
    ref = T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BILINEAR), T.CenterCrop(224), T.ToTensor(),
                     T.Normalize(EVAL_TRANSFORM["mean"], EVAL_TRANSFORM["std"])])(img)
    assert torch.equal(ours, ref)
    torch.manual_seed(3)
    ours = build_transform({"dataset": "image_folder", "augment": True, "transform": TRAIN_TRANSFORM}, data_cfg)(img)
    torch.manual_seed(3)
    ref = T.Compose([T.RandomResizedCrop(224, scale=(0.08, 1.0), interpolation=T.InterpolationMode.BILINEAR),
                     T.RandomHorizontalFlip(), T.ToTensor(),
                     T.Normalize(TRAIN_TRANSFORM["mean"], TRAIN_TRANSFORM["std"])])(img)
    assert torch.equal(ours, ref)
    timm_default = {"dataset": "image_folder"}
    assert cache_key("b", spec, data_cfg) != cache_key("b", timm_default, data_cfg)
    assert cache_key("b", spec, data_cfg) != cache_key("b", dict(spec, transform=dict(EVAL_TRANSFORM, resize=224)),
                                                         data_cfg)
    with pytest.raises(ValueError, match="recipe"):
        build_transform({"transform": {"recipe": "autoaugment"}}, data_cfg)
    with pytest.raises(ValueError, match="does not take"):
        build_transform({"transform": {"recipe": "rrc_flip", "sizes": 3}}, data_cfg)


def test_full_scale_sheets_plan_cleanly_and_a_none_cell_means_no_diversity():
    """The three sheets pass sheetrun's checks (configs exist, deltas name real keys); the
    'none' a person types for loss/diversity decodes to null, which trains without diversity."""
    import subprocess
    import sys

    from tasks.sed.losses import sed_loss

    for name in ("caching.csv", "training.csv", "evaluation.csv"):
        proc = subprocess.run([sys.executable, "-m", "runner", "run", os.path.join("result_sheets", name),
                               "--dry-run"], capture_output=True, text=True, cwd=REPO, timeout=120)
        assert proc.returncode == 0, (name, proc.stdout[-1500:], proc.stderr[-1500:])
    logits, y = torch.randn(2, 8, 5), torch.randint(0, 5, (8,))
    a, _ = sed_loss(logits, y, None, None, lam=0.5, lam_manual=1.0, diversity=None)
    b, _ = sed_loss(logits, y, None, None, lam=0.5, lam_manual=1.0, diversity="none")
    assert torch.equal(a, b)
