"""The full-scale effective-robustness configs and sheets (seed 002) against the authors' code, value by value.

The authors' values (github MadryLab/pretraining-distribution-shift-robustness):
src/experiments/imagenet_synthetic_shift.py (BASELINE_CONFIG, EPOCH_START / END,
PRETRAINED_BASE_CONFIG and its two models, PRETRAINED_PARAM_OPTIONS, LINEAR_PROBE_BASE_CONFIG,
INIT_STRATEGIES, num_copies, TintTransform and the managers' tint probabilities);
src/experiments/splitting_shifts/imagenet.py (EPSILONS, SUPPORT_ESTIMATION_DEFAULT_CONFIG, its
learning-rate grid and linear probe, the 100,000 reference images, ImageNet-R's class subset, the
published models) and density_ratio_estimation.py (10 folds, KFold(shuffle, random_state=0), the
9/10 tuning split); scripts/*.sbatch (one A100, 10 CPUs, 24 hours).
"""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import REPO

FULL = os.path.join(REPO, "default_configs", "robustness", "full_scale")
sys.path.insert(0, os.path.join(REPO, "scripts"))
import make_robustness_sheets as sheets  # noqa: E402

BASELINE = {"optimizer": "adamw", "lr": 0.003, "lr_schedule": "cosine", "warmup_epochs": 10, "epochs": 100,
            "batch_size": 512, "weight_decay": 0.1, "label_smoothing": 0.1, "use_scaler": True, "clip_grad": True,
            "grad_clip_norm": 1.0, "image_dtype": "float16", "decoder": "imagenet_random_crop", "augmentation": "flip",
            "num_workers": 10, "model_name": "clip_ViT-B-32", "pretrained": "None"}
PRETRAINED = {"freeze_features": False, "optimizer": "adamw", "lr": 3e-5, "lr_schedule": "cosine", "warmup_epochs": 1,
              "epochs": 8, "batch_size": 512, "weight_decay": 0.1, "label_smoothing": 0.0, "use_scaler": True,
              "clip_grad": True, "grad_clip_norm": 1.0, "image_dtype": "float16", "decoder": "imagenet_random_crop",
              "augmentation": "flip", "num_workers": 10}
PRETRAINED_MODELS = {"clip": ("clip_ViT-B-32", "openai"), "augreg": ("timm_vit_base_patch32_224", "augreg_in21k")}
PROBE = {"freeze_features": True, "optimizer": "adamw", "lr": 0.001, "lr_schedule": "cosine", "warmup_epochs": 0,
         "epochs": 4, "batch_size": 512, "weight_decay": 0.0, "label_smoothing": 0.0, "use_scaler": True,
         "clip_grad": False, "image_dtype": "float16", "decoder": "imagenet_random_crop", "augmentation": "flip",
         "num_workers": 10}
LRS = [3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6]
# EPOCH_START .. EPOCH_END: the labels of the authors' baseline files, epoch={e}.pt, which their training.py
# saves once epoch e (0-indexed) has ended — after e + 1 epochs. Compared by the epochs trained:
AUTHORS_EPOCH_LABELS = list(range(51, 86))
EPOCHS = [label + 1 for label in AUTHORS_EPOCH_LABELS]
COPIES = 4
TINT = {"alpha": 0.25, "seed": 0, "num_classes": 1000, "num_examples": 1281167}
TINT_PS = [0.5, 0.6, 0.7, 0.8, 0.9]
SUPPORT = {"optimizer": "adamw", "lr": 3e-5, "lr_schedule": "cosine", "warmup_epochs": 1, "epochs": 8, "batch_size": 64,
           "weight_decay": 0.1, "label_smoothing": 0.0, "use_scaler": True, "clip_grad": True, "grad_clip_norm": 1.0,
           "image_dtype": "float16", "decoder": "simple", "augmentation": "flip", "num_workers": 10,
           "model_name": "clip_ViT-L-14", "pretrained": "laion2b_s32b_b82k"}
SUPPORT_LRS = [2e-4, 1e-4, 5e-5, 2e-5, 1e-5, 5e-6, 2e-6, 1e-6]
SUPPORT_PROBE = {"freeze_features": True, "weight_decay": 0.0, "lr": 0.001}
EPSILONS = [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1, 2e-1, 5e-1]
SLURM = {"slurm:gres": "gpu:1", "slurm:cpus-per-task": "10", "slurm:time": "24:00:00"}
# what each authors' model name is in timm, whose weights sheetrun reads from a local file
TIMM_NAMES = {("clip_ViT-B-32", "None"): "vit_base_patch32_clip_224",
              ("clip_ViT-B-32", "openai"): "vit_base_patch32_clip_quickgelu_224",
              ("timm_vit_base_patch32_224", "augreg_in21k"): "vit_base_patch32_224",
              ("clip_ViT-L-14", "laion2b_s32b_b82k"): "vit_large_patch14_clip_224"}
DECODERS = {"imagenet_random_crop": {"recipe": "rrc_flip", "size": 224, "scale": [0.08, 1.0]},
            "simple": {"recipe": "resize_center_crop", "size": 224, "flip": True}}


def load(name):
    with open(os.path.join(FULL, f"{name}.yaml")) as f:
        return yaml.safe_load(f)


def as_authors(cfg: dict) -> dict:
    """A sheetrun training config in the authors' vocabulary."""
    o, t = cfg["optim"], cfg["data"]["train"]["transform"]
    decoder = next(k for k, v in DECODERS.items() if all(t.get(key) == value for key, value in v.items()))
    return {"freeze_features": bool(cfg["model"].get("trainable")), "optimizer": o["name"], "lr": o["lr"],
            "lr_schedule": cfg["schedule"]["name"], "warmup_epochs": cfg["schedule"]["warmup_epochs"],
            "epochs": cfg["epochs"], "batch_size": cfg["batch_size"], "weight_decay": o["weight_decay"],
            "label_smoothing": cfg["label_smoothing"], "use_scaler": cfg["amp"] == "fp16",
            "clip_grad": bool(o["clip_grad_norm"]), "grad_clip_norm": o["clip_grad_norm"] or None,
            "image_dtype": "float16" if cfg["amp"] == "fp16" else "float32", "decoder": decoder,
            "augmentation": "flip" if cfg["data"]["train"].get("augment") else "", "num_workers": cfg["num_workers"],
            "decay_everything": o["decay_norm_and_bias"], "betas": tuple(o["betas"])}


def same(ours: dict, theirs: dict):
    for key, value in theirs.items():
        if key in ("model_name", "pretrained") or (key == "grad_clip_norm" and not theirs.get("clip_grad")):
            continue
        assert ours[key] == value, f"{key}: sheetrun {ours[key]!r}, the authors {value!r}"
    assert ours["decay_everything"] and ours["betas"] == (0.9, 0.999)     # torch.optim.AdamW(parameters, lr, wd)


def test_the_baseline_is_the_authors_baseline_config():
    cfg = load("baseline")
    same(as_authors(cfg), BASELINE)
    assert cfg["model"]["name"] == TIMM_NAMES[(BASELINE["model_name"], BASELINE["pretrained"])]
    assert not cfg["model"]["weights"] and not cfg["model"]["trainable"]
    assert cfg["keep_checkpoints"] == EPOCHS
    for part in ("train", "val"):
        assert cfg["data"][part]["shift"] == {"kind": "tint", "p": 0.8, **TINT}     # TintTransform's defaults
    assert cfg["data"]["mean"] == [0.48145466, 0.4578275, 0.40821073]              # CLIP's preprocessing


@pytest.mark.parametrize("family", ["clip", "augreg"])
def test_fine_tuning_and_the_linear_probe_are_the_authors_configs(family):
    ft, probe = load(f"finetune_{family}"), load(f"probe_{family}")
    same(as_authors(ft), PRETRAINED)
    same(as_authors(probe), PROBE)
    name = TIMM_NAMES[PRETRAINED_MODELS[family]]
    for cfg in (ft, probe):
        assert cfg["model"]["name"] == name
        assert os.path.basename(cfg["model"]["weights"]).startswith(f"{name}.{PRETRAINED_MODELS[family][1]}")
        assert cfg["model"]["weights_exclude"] == "^head\\."                          # a new head
    assert probe["model"]["trainable"] == "^head\\." and not ft["model"]["trainable"]
    assert ft["optim"]["lr_from"]["metric"] == "val_acc" and ft["optim"]["lr_from"]["mode"] == "max"


def rows_of(name):
    with open(os.path.join(REPO, "result_sheets", f"{name}.csv"), newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("p", [None] + TINT_PS)
def test_each_synthetic_sheet_is_one_of_the_authors_experiments(p):
    name = "robustness_imagenet_out_of_support" if p is None else f"robustness_imagenet_tint_p{p}"
    rows = {r["name"]: r for r in rows_of(name)}
    trains = [r for r in rows.values() if r["path_to_main"] == "tasks/classify/train.py"]
    for r in trains:
        if p is None:
            assert r["delta:data/train/shift"] == r["delta:data/val/shift"] == "none"
        else:
            assert r["delta:data/train/shift/p"] == r["delta:data/val/shift/p"] == str(p)
    assert [int(r["delta:models"].split("epoch")[1].split(".")[0]) for r in rows.values()
            if r["name"].startswith("baseline epoch")] == EPOCHS
    for family in ("CLIP", "AugReg"):
        for head in ("FT", "LP-FT", "ZS-FT"):         # INIT_STRATEGIES; zero-shot heads for CLIP only
            grid = [r for r in trains if r["name"].startswith(f"{family} ({head}) lr ")]
            if head == "ZS-FT" and family == "AugReg":
                assert not grid
                continue
            assert sorted(float(r["delta:optim/lr"]) for r in grid) == sorted(LRS)
            copies = [r for r in trains if r["name"].startswith(f"{family} ({head}) copy ")]
            assert len(copies) == COPIES and all(r["delta:optim/lr_from/models"] for r in copies)
            assert len({r["delta:seed/init"] for r in copies}) == COPIES
            for r in grid + copies:
                assert (r["delta:model/weights_exclude"] == "none") == (head != "FT")
                assert bool(r["delta:model/zero_shot_head"]) == (head == "ZS-FT")
    evaluated = [r for r in rows.values() if r["name"].startswith("pre-trained ")]
    assert len(evaluated) == (3 + 2) * COPIES
    targets = sorted(r["delta:shifted"] for r in rows.values() if r["path_to_main"].endswith("effective_robustness.py"))
    assert targets == (["flip", "tint"] if p is None else ["target"])
    assert all(all(r[k] == v for k, v in SLURM.items()) for r in rows.values())


def test_the_zero_shot_head_is_the_authors():
    """get_zero_shot_weights(model, "ViT-B-32", IMAGENET_COMMON_CLASS_NAMES, IMAGENET_TEMPLATES) of CLIP ViT-B/32
    (openai): the class names and 80 templates of OpenAI's notebook, which open_clip ships as its own."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES

    cfg = load("zero_shot_head")
    assert cfg["clip"]["name"] == "ViT-B-32-quickgelu" and "openai" in cfg["clip"]["weights"]
    assert cfg["classes"] == "imagenet" and cfg["templates"] == "openai_imagenet"
    assert len(IMAGENET_CLASSNAMES) == 1000 and len(OPENAI_IMAGENET_TEMPLATES) == 80
    assert IMAGENET_CLASSNAMES[:3] == ("tench", "goldfish", "great white shark") or \
        list(IMAGENET_CLASSNAMES[:3]) == ["tench", "goldfish", "great white shark"]
    assert OPENAI_IMAGENET_TEMPLATES[0]("cat") == "a bad photo of a cat."


def test_the_evaluations_shift_as_the_authors_targets():
    tint, oos = load("evaluate_tint"), load("evaluate_out_of_support")
    assert tint["data"]["in_distribution"]["shift"] == {"kind": "tint", "p": 0.8, **TINT}
    assert tint["data"]["domains"]["target"]["shift"] == {"kind": "tint", "p": 0.0, **TINT}
    assert "shift" not in oos["data"]["in_distribution"]
    assert oos["data"]["domains"]["tint"]["shift"] == {"kind": "tint", "p": 0.0, **TINT}
    assert oos["data"]["domains"]["flip"]["shift"] == {"kind": "vflip"}
    assert load("effective_robustness")["interval"] == "authors" and load("effective_robustness")["scale"] == "probit"
    assert load("effective_robustness")["aggregate"] == "models"      # copies averaged per model, then models


@pytest.mark.parametrize("p", [None] + TINT_PS)
def test_the_er_rows_aggregate_the_copies_of_each_model_as_the_authors(p):
    """Each evaluated model of a synthetic sheet is one of the authors' model managers with 4 copies:
    the config's copies pattern names those 5 models (their notebook's pretrained_model_names)."""
    from tasks.robustness.effective_robustness import model_names

    name = "robustness_imagenet_out_of_support" if p is None else f"robustness_imagenet_tint_p{p}"
    evaluated = [r["name"] for r in rows_of(name)
                 if r["path_to_main"] == "tasks/classify/evaluate.py" and not r["name"].startswith("baseline")]
    models = model_names(evaluated, load("effective_robustness")["copies"])
    counts = {m: models.count(m) for m in models}
    assert counts == {f"pre-trained {m}": COPIES for m in ("CLIP (FT)", "CLIP (LP-FT)", "CLIP (ZS-FT)",
                                                            "AugReg (FT)", "AugReg (LP-FT)")}


@pytest.mark.parametrize("shift", ["v2", "sketch", "r"])
def test_the_domain_classifier_and_the_split_are_the_authors(shift):
    cfg, split = load(f"domain_classifier_{shift}"), load(f"split_{shift}")
    same(as_authors(cfg), SUPPORT)
    assert cfg["model"]["name"] == TIMM_NAMES[(SUPPORT["model_name"], SUPPORT["pretrained"])]
    union = {k: cfg["data"]["train"][k] for k in ("reference", "shifted", "max_reference", "reference_classes",
                                                  "seed", "folds")}
    assert union["max_reference"] == 100_000 and union["folds"] == 10 and union["seed"] == 0
    assert union["reference_classes"] == ("shifted" if shift == "r" else "all")     # source_indices[mask] for R
    assert {k: cfg["data"]["val"][k] for k in union} == union == {k: split[k] for k in union}
    assert cfg["data"]["train"]["part"] == "train" and cfg["data"]["val"]["part"] == "held_out"
    assert cfg["optim"]["lr_from"]["metric"] == "val_auroc"
    assert split["epsilons"] == EPSILONS and split["interval"] == "authors"
    assert split["figure_epsilon"] == 0.1      # their notebook's figures: {shared,target}_support_epsilon=0.1
    assert split["classifier"]["kind"] == "models"
    rows = [r for r in rows_of("robustness_imagenet_split") if r["name"].startswith(f"domain {shift} ")]
    grid = [r for r in rows if " tune lr " in r["name"]]
    assert sorted(float(r["delta:optim/lr"]) for r in grid) == sorted(SUPPORT_LRS)
    probes = [r for r in rows if " probe " in r["name"]]
    assert len(probes) == 11                                 # the grid's and each fold's linear probe
    for r in probes:
        assert r["delta:model/trainable"] == "^head\\." and float(r["delta:optim/lr"]) == SUPPORT_PROBE["lr"]
        assert float(r["delta:optim/weight_decay"]) == SUPPORT_PROBE["weight_decay"]
    folds = [r for r in rows if " fold " in r["name"] and " probe " not in r["name"]]
    assert sorted(int(r["delta:data/train/fold"]) for r in folds) == list(range(10))
    assert all(r["delta:data/train/fold"] == r["delta:data/val/fold"] for r in folds)


def test_the_split_sheet_evaluates_the_authors_published_models():
    rows = rows_of("robustness_imagenet_split")
    imported = [r["delta:model/name"] for r in rows if r["path_to_main"] == "tasks/classify/import_weights.py"]
    assert imported == list(sheets.PUBLISHED_BASELINES) + list(dict.fromkeys(sheets.PUBLISHED_PRETRAINED))
    assert len(sheets.PUBLISHED_BASELINES) == 78 and len(set(sheets.PUBLISHED_PRETRAINED)) == 55
    import timm

    for name in imported:                               # timm knows every one (and their preprocessing)
        assert timm.models.get_pretrained_cfg(name) is not None, name


def test_the_committed_sheets_are_what_their_generator_writes():
    proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "make_robustness_sheets.py"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_the_authors_draws():
    """The reference draw, the folds and the tuning split, against the authors' calls written out."""
    from sklearn.model_selection import KFold, train_test_split

    from tasks.data.domains import fold_parts, reference_draw

    labels = np.random.default_rng(0).integers(0, 10, 5000)
    np.testing.assert_array_equal(reference_draw(labels, 300, 0),
                                  np.random.RandomState(0).choice(np.arange(5000), size=300, replace=False))
    mask = np.isin(labels, [2, 5])
    np.testing.assert_array_equal(reference_draw(labels, 300, 0, [2, 5]),
                                  np.random.RandomState(0).choice(np.arange(5000)[mask], size=300, replace=False))
    n = 420
    for k, (train, held) in enumerate(KFold(n_splits=10, random_state=0, shuffle=True).split(np.arange(n))):
        ours = fold_parts(n, 10, k, 0)
        np.testing.assert_array_equal(ours[0], train)
        np.testing.assert_array_equal(ours[1], held)
    train, held = train_test_split(np.arange(n), train_size=9 / 10, random_state=0)
    ours = fold_parts(n, 10, "tune", 0)
    np.testing.assert_array_equal(ours[0], train)
    np.testing.assert_array_equal(ours[1], held)
