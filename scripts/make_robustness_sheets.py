"""Write the full-scale sheets of seed 002 (effective robustness of pre-training on ImageNet) from the
authors' experiment definitions, so the committed sheets and their code agree row for row.

    python scripts/make_robustness_sheets.py            # rewrites result_sheets/robustness_imagenet_*.csv
    python scripts/make_robustness_sheets.py --check    # exit 1 if a committed sheet differs from its definition

One sheet per experiment of the authors' src/experiments/imagenet_synthetic_shift.py (each of its
``managers``):

- ``robustness_imagenet_out_of_support``: trained on clean ImageNet; targets: val tinted with random
  classes' colours (p = 0) and val flipped upside down;
- ``robustness_imagenet_tint_p<p>`` for p in 0.5 ... 0.9: trained on ImageNet tinted with the
  class's own colour with probability p; target: the tint decorrelated from the class (p = 0).

Each has the from-scratch baseline (CLIP's ViT-B/32, 100 epochs) with its snapshots after 52-86
epochs evaluated (the authors' files ``epoch=51`` .. ``epoch=85``, saved after epoch + 1 epochs), CLIP and AugReg ViT-B/32 fine-tuned with a random head (FT) and from a linear
probe (LP-FT) over the learning-rate grid, 4 copies of each at the grid's best reference accuracy,
their evaluations and the effective-robustness rows; CLIP also from its zero-shot classifier (ZS-FT:
the head written by tasks/robustness/zero_shot_head.py from CLIP's text tower).

``robustness_imagenet_split`` is src/experiments/splitting_shifts/imagenet.py: per shift
(ImageNet-V2, -Sketch, -R) the domain classifier's learning-rate grid and its 10 folds (each a
linear probe, then the fine-tuning), the published ImageNet models the authors evaluate
(imported from local weight files, then evaluated), and the split rows.

Every row carries ``slurm:`` columns as the authors' sbatch scripts: one A100 and 10 CPUs, 24 hours.
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = "default_configs/robustness/full_scale"
TRAIN, EVALUATE, ER = "tasks/classify/train.py", "tasks/classify/evaluate.py", "tasks/robustness/effective_robustness.py"
IMPORT, SPLIT = "tasks/classify/import_weights.py", "tasks/robustness/split_shift.py"
ZERO_SHOT = "tasks/robustness/zero_shot_head.py"

TINT_PS = (0.5, 0.6, 0.7, 0.8, 0.9)                  # imagenet_synthetic_shift.py: tint_p=...
# EPOCH_START .. EPOCH_END label the authors' files epoch=51.pt .. epoch=85.pt, which their training.py saves
# after epoch + 1 epochs (0-indexed): the models after 52 .. 86 epochs, sheetrun's snapshots 52 .. 86
AUTHORS_EPOCH_LABELS = range(51, 86)
BASELINE_EPOCHS = [label + 1 for label in AUTHORS_EPOCH_LABELS]
FINETUNE_LRS = (3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6)  # PRETRAINED_PARAM_OPTIONS
COPIES = 4                                           # num_copies (and num_tuning_copies = 1)
PRETRAINED = {"clip": "CLIP", "augreg": "AugReg"}    # PRETRAINED_CONFIGS_AND_MANAGERS
HEADS = {"ft": "FT", "lpft": "LP-FT", "zs": "ZS-FT"}  # INIT_STRATEGIES (zero_shot: CLIP only)
DOMAIN_LRS = (2e-4, 1e-4, 5e-5, 2e-5, 1e-5, 5e-6, 2e-6, 1e-6)   # splitting_shifts: support_estimation_configs
FOLDS = 10
SHIFTS = ("v2", "sketch", "r")
SLURM = {"slurm:gres": "gpu:1", "slurm:cpus-per-task": "10", "slurm:time": "24:00:00"}

# splitting_shifts/imagenet.py: the published models the authors evaluate (timm names and tags)
PUBLISHED_BASELINES = (
    "resnet18.a1_in1k", "resnet34.a1_in1k", "resnet50.a1_in1k", "resnet101.a1h_in1k", "resnet152.a1h_in1k",
    "resnetv2_50.a1h_in1k", "resnetv2_101.a1h_in1k", "legacy_seresnet18.in1k", "legacy_seresnet34.in1k",
    "legacy_seresnet50.in1k", "legacy_seresnet101.in1k", "legacy_seresnet152.in1k", "resnext50_32x4d.a1h_in1k",
    "resnext101_32x4d.gluon_in1k", "resnext101_32x8d.tv_in1k", "wide_resnet50_2.racm_in1k",
    "wide_resnet101_2.tv_in1k", "convit_tiny.fb_in1k", "convit_small.fb_in1k", "convit_base.fb_in1k",
    "convnext_tiny.fb_in1k", "convnext_small.fb_in1k", "convnext_base.fb_in1k", "convnext_large.fb_in1k",
    "convnextv2_atto.fcmae_ft_in1k", "convnextv2_femto.fcmae_ft_in1k", "convnextv2_pico.fcmae_ft_in1k",
    "convnextv2_nano.fcmae_ft_in1k", "convnextv2_tiny.fcmae_ft_in1k", "convnextv2_base.fcmae_ft_in1k",
    "convnextv2_large.fcmae_ft_in1k", "convnextv2_huge.fcmae_ft_in1k", "densenet121.ra_in1k", "densenet161.tv_in1k",
    "densenet169.tv_in1k", "densenet201.tv_in1k", "mobilenetv3_small_100.lamb_in1k",
    "mobilenetv3_large_100.ra_in1k", "mobilevitv2_050.cvnets_in1k", "mobilevitv2_075.cvnets_in1k",
    "mobilevitv2_100.cvnets_in1k", "mobilevitv2_125.cvnets_in1k", "mobilevitv2_150.cvnets_in1k",
    "mobilevitv2_175.cvnets_in1k", "mobilevitv2_200.cvnets_in1k", "spnasnet_100.rmsp_in1k",
    "swinv2_tiny_window8_256.ms_in1k", "swinv2_tiny_window16_256.ms_in1k", "swinv2_small_window8_256.ms_in1k",
    "swinv2_small_window16_256.ms_in1k", "swinv2_base_window8_256.ms_in1k", "swinv2_base_window16_256.ms_in1k",
    "efficientnet_b0.ra_in1k", "efficientnet_b1.ft_in1k", "efficientnet_b2.ra_in1k", "efficientnet_b3.ra2_in1k",
    "efficientnet_b4.ra2_in1k", "efficientformerv2_l.snap_dist_in1k", "efficientformerv2_s0.snap_dist_in1k",
    "efficientformerv2_s1.snap_dist_in1k", "efficientformerv2_s2.snap_dist_in1k", "deit3_base_patch16_224.fb_in1k",
    "deit3_base_patch16_384.fb_in1k", "deit3_small_patch16_224.fb_in1k", "deit3_small_patch16_384.fb_in1k",
    "deit3_medium_patch16_224.fb_in1k", "deit3_large_patch16_224.fb_in1k", "deit3_large_patch16_384.fb_in1k",
    "cait_xxs24_224.fb_dist_in1k", "cait_xxs24_384.fb_dist_in1k", "cait_xxs36_224.fb_dist_in1k",
    "cait_xxs36_384.fb_dist_in1k", "cait_xs24_384.fb_dist_in1k", "cait_s24_224.fb_dist_in1k",
    "cait_s24_384.fb_dist_in1k", "cait_s36_384.fb_dist_in1k", "cait_m36_384.fb_dist_in1k",
    "cait_m48_448.fb_dist_in1k",
)
PUBLISHED_PRETRAINED = (
    "resnet18.fb_swsl_ig1b_ft_in1k", "resnet50.fb_swsl_ig1b_ft_in1k", "resnext50_32x4d.fb_swsl_ig1b_ft_in1k",
    "resnext101_32x4d.fb_swsl_ig1b_ft_in1k", "resnext101_32x8d.fb_swsl_ig1b_ft_in1k",
    "resnext101_32x8d.fb_wsl_ig1b_ft_in1k", "resnext101_32x16d.fb_swsl_ig1b_ft_in1k",
    "resnext101_32x16d.fb_wsl_ig1b_ft_in1k", "resnext101_32x32d.fb_wsl_ig1b_ft_in1k",
    "beit_base_patch16_224.in22k_ft_in22k_in1k", "beit_base_patch16_384.in22k_ft_in22k_in1k",
    "beit_large_patch16_224.in22k_ft_in22k_in1k", "beit_large_patch16_384.in22k_ft_in22k_in1k",
    "deit3_base_patch16_224.fb_in22k_ft_in1k", "deit3_base_patch16_384.fb_in22k_ft_in1k",
    "deit3_small_patch16_224.fb_in22k_ft_in1k", "deit3_small_patch16_384.fb_in22k_ft_in1k",
    "deit3_medium_patch16_224.fb_in22k_ft_in1k", "deit3_large_patch16_224.fb_in22k_ft_in1k",
    "deit3_large_patch16_384.fb_in22k_ft_in1k", "convnext_tiny.fb_in22k_ft_in1k",
    "convnext_tiny.fb_in22k_ft_in1k_384", "convnext_small.fb_in22k_ft_in1k", "convnext_small.fb_in22k_ft_in1k_384",
    "convnext_base.fb_in22k_ft_in1k", "convnext_base.fb_in22k_ft_in1k_384",
    "convnext_base.clip_laion2b_augreg_ft_in1k", "convnext_base.clip_laion2b_augreg_ft_in12k_in1k",
    "convnext_base.clip_laion2b_augreg_ft_in12k_in1k_384", "convnext_base.clip_laiona_augreg_ft_in1k_384",
    "convnext_large.fb_in22k_ft_in1k", "convnext_base.clip_laion2b_augreg_ft_in12k_in1k",
    "convnext_large_mlp.clip_laion2b_augreg_ft_in1k", "convnext_large_mlp.clip_laion2b_augreg_ft_in1k_384",
    "convnext_large_mlp.clip_laion2b_soup_ft_in12k_in1k_320",
    "convnext_large_mlp.clip_laion2b_soup_ft_in12k_in1k_384", "convnext_xxlarge.clip_laion2b_soup_ft_in1k",
    "vit_base_patch32_clip_224.openai_ft_in1k", "vit_base_patch32_clip_224.laion2b_ft_in12k_in1k",
    "vit_base_patch32_clip_384.openai_ft_in12k_in1k", "vit_base_patch32_clip_384.laion2b_ft_in12k_in1k",
    "vit_base_patch32_clip_448.laion2b_ft_in12k_in1k", "vit_base_patch16_clip_224.openai_ft_in1k",
    "vit_base_patch16_clip_224.laion2b_ft_in12k_in1k", "vit_base_patch16_clip_384.openai_ft_in12k_in1k",
    "vit_base_patch16_clip_384.laion2b_ft_in12k_in1k", "vit_large_patch14_clip_224.openai_ft_in1k",
    "vit_large_patch14_clip_224.openai_ft_in12k_in1k", "vit_large_patch14_clip_224.laion2b_ft_in1k",
    "vit_large_patch14_clip_224.laion2b_ft_in12k_in1k", "vit_large_patch14_clip_336.openai_ft_in12k_in1k",
    "vit_large_patch14_clip_336.laion2b_ft_in1k", "vit_large_patch14_clip_336.laion2b_ft_in12k_in1k",
    "vit_huge_patch14_clip_224.laion2b_ft_in1k", "vit_huge_patch14_clip_224.laion2b_ft_in12k_in1k",
    "vit_huge_patch14_clip_336.laion2b_ft_in12k_in1k",
)


def lr_text(lr: float) -> str:
    return f"{lr:g}"


def synthetic_rows(p) -> list:
    """The rows of one synthetic-shift experiment: tint probability ``p``, or None (out of support)."""
    shift = {"delta:data/train/shift": "none", "delta:data/val/shift": "none"} if p is None else \
        {"delta:data/train/shift/p": str(p), "delta:data/val/shift/p": str(p)}
    evaluate = f"{CONFIGS}/evaluate_{'out_of_support' if p is None else 'tint'}.yaml"
    eval_shift = {} if p is None else {"delta:data/in_distribution/shift/p": str(p)}
    rows = [dict(name="baseline", path_to_main=TRAIN, path_to_default_config=f"{CONFIGS}/baseline.yaml",
                 **{"delta:save_path": "models/__WORKSHEET__/baseline.pt"}, **shift,
                 notes="CLIP's ViT-B/32 from scratch, 100 epochs; snapshots after 52-86 epochs (the authors' epoch=51..85)")]
    for e in BASELINE_EPOCHS:
        rows.append(dict(name=f"baseline epoch {e}", path_to_main=EVALUATE, path_to_default_config=evaluate,
                         depends_on="baseline", **{"delta:models": f"[models/__WORKSHEET__/baseline.epoch{e}.pt]"},
                         **eval_shift, notes="a point of the baseline line"))
    evaluated = []
    rows.append(dict(name="CLIP zero-shot head", path_to_main=ZERO_SHOT, path_to_default_config=f"{CONFIGS}/zero_shot_head.yaml",
                     **{"delta:save_path": "models/__WORKSHEET__/clip_zero_shot_head.pt"},
                     notes="CLIP's text embeddings of the 1000 classes: ZS-FT's head"))
    for fam, label in PRETRAINED.items():
        for seed in range(COPIES + 1):              # seed 0: the grid's probe; 1-4: the copies'
            rows.append(dict(name=f"{label} probe seed {seed}", path_to_main=TRAIN,
                             path_to_default_config=f"{CONFIGS}/probe_{fam}.yaml",
                             **{"delta:seed/init": str(seed), "delta:seed/data": str(seed),
                                "delta:save_path": f"models/__WORKSHEET__/{fam}_probe_{seed}.pt"}, **shift,
                             notes="LP-FT's linear probe (frozen features)"))
        for head, head_label in HEADS.items():
            if head == "zs" and fam != "clip":        # a zero-shot head needs a text tower
                continue
            start = ({} if head == "ft" else {"delta:model/weights_exclude": "none"})
            if head == "zs":
                start["delta:model/zero_shot_head"] = "models/__WORKSHEET__/clip_zero_shot_head.pt"
            after = {"ft": [], "lpft": [f"{label} probe seed 0"], "zs": ["CLIP zero-shot head"]}[head]
            grid = []
            for lr in FINETUNE_LRS:
                name = f"{label} ({head_label}) lr {lr_text(lr)}"
                grid.append(name)
                weights = {} if head != "lpft" else {"delta:model/weights": f"models/__WORKSHEET__/{fam}_probe_0.pt"}
                rows.append(dict(name=name, path_to_main=TRAIN, path_to_default_config=f"{CONFIGS}/finetune_{fam}.yaml",
                                 depends_on=", ".join(after),
                                 **{"delta:optim/lr": lr_text(lr),
                                    "delta:save_path": f"models/__WORKSHEET__/{fam}_{head}_lr{lr_text(lr)}.pt"},
                                 **weights, **start, **shift, notes="the learning-rate grid (one tuning copy)"))
            for seed in range(1, COPIES + 1):
                name = f"{label} ({head_label}) copy {seed}"
                weights = {} if head != "lpft" else {"delta:model/weights": f"models/__WORKSHEET__/{fam}_probe_{seed}.pt"}
                needs = grid + {"ft": [], "lpft": [f"{label} probe seed {seed}"], "zs": after}[head]
                rows.append(dict(name=name, path_to_main=TRAIN, path_to_default_config=f"{CONFIGS}/finetune_{fam}.yaml",
                                 depends_on=", ".join(needs),
                                 **{"delta:seed/init": str(seed), "delta:seed/data": str(seed),
                                    "delta:optim/lr_from/models": f"[models/__WORKSHEET__/{fam}_{head}_lr*.pt]",
                                    "delta:save_path": f"models/__WORKSHEET__/{fam}_{head}_copy{seed}.pt"},
                                 **weights, **start, **shift, notes="a copy at the grid's best reference accuracy"))
                evaluated.append((f"pre-trained {label} ({head_label}) {seed}", name,
                                  f"models/__WORKSHEET__/{fam}_{head}_copy{seed}.pt"))
    for name, trained, path in evaluated:
        rows.append(dict(name=name, path_to_main=EVALUATE, path_to_default_config=evaluate, depends_on=trained,
                         **{"delta:models": f"[{path}]"}, **eval_shift, notes="a pre-trained model"))
    points = [f"baseline epoch {e}" for e in BASELINE_EPOCHS] + [e[0] for e in evaluated]
    for target in (("tint", "flip") if p is None else ("target",)):
        rows.append(dict(name=f"effective robustness {target}", path_to_main=ER,
                         path_to_default_config=f"{CONFIGS}/effective_robustness.yaml", depends_on=", ".join(points),
                         **{"delta:shifted": target, "delta:column": f"er_{target}"},
                         notes="the line of the baseline's snapshots; the plot and table in its run folder"))
    return rows


def split_rows() -> list:
    rows = []
    published = [("baseline", m) for m in PUBLISHED_BASELINES] + \
        [("pre-trained", m) for m in dict.fromkeys(PUBLISHED_PRETRAINED)]      # the authors list one twice
    evaluations = []
    for group, model in published:
        path = f"models/__WORKSHEET__/{model}.pt"
        rows.append(dict(name=f"import {model}", path_to_main=IMPORT,
                         path_to_default_config=f"{CONFIGS}/import_model.yaml",
                         **{"delta:model/name": model, "delta:model/weights": f"models/timm/{model}.safetensors",
                            "delta:save_path": path}, notes="published weights from a local file"))
        evaluations.append(f"{group} {model}")
        rows.append(dict(name=f"{group} {model}", path_to_main=EVALUATE,
                         path_to_default_config=f"{CONFIGS}/evaluate_natural.yaml", depends_on=f"import {model}",
                         **{"delta:models": f"[{path}]"}, notes=f"a published {group} model"))
    for shift in SHIFTS:
        config = f"{CONFIGS}/domain_classifier_{shift}.yaml"
        probe = {"delta:model/trainable": "^head\\.", "delta:optim/lr": "0.001", "delta:optim/weight_decay": "0"}
        rows.append(dict(name=f"domain {shift} probe tune", path_to_main=TRAIN, path_to_default_config=config,
                         **probe, **{"delta:save_path": f"models/__WORKSHEET__/domain_{shift}_probe_tune.pt"},
                         notes="the linear probe of the learning-rate grid (its 9/10 split)"))
        grid = []
        for lr in DOMAIN_LRS:
            grid.append(f"domain {shift} tune lr {lr_text(lr)}")
            rows.append(dict(name=grid[-1], path_to_main=TRAIN, path_to_default_config=config,
                             depends_on=f"domain {shift} probe tune",
                             **{"delta:model/weights": f"models/__WORKSHEET__/domain_{shift}_probe_tune.pt",
                                "delta:model/weights_exclude": "none", "delta:optim/lr": lr_text(lr),
                                "delta:save_path": f"models/__WORKSHEET__/domain_{shift}_tune_lr{lr_text(lr)}.pt"},
                             notes="the domain classifier's learning-rate grid, scored by held-out AUROC"))
        folds = []
        for k in range(FOLDS):
            fold = {"delta:data/train/fold": str(k), "delta:data/val/fold": str(k)}
            rows.append(dict(name=f"domain {shift} probe fold {k}", path_to_main=TRAIN, path_to_default_config=config,
                             **probe, **fold, **{"delta:save_path": f"models/__WORKSHEET__/domain_{shift}_probe_fold{k}.pt"},
                             notes="fold k's linear probe"))
            folds.append(f"domain {shift} fold {k}")
            rows.append(dict(name=folds[-1], path_to_main=TRAIN, path_to_default_config=config,
                             depends_on=", ".join(grid + [f"domain {shift} probe fold {k}"]), **fold,
                             **{"delta:model/weights": f"models/__WORKSHEET__/domain_{shift}_probe_fold{k}.pt",
                                "delta:model/weights_exclude": "none",
                                "delta:optim/lr_from/models": f"[models/__WORKSHEET__/domain_{shift}_tune_lr*.pt]",
                                "delta:save_path": f"models/__WORKSHEET__/domain_{shift}_fold{k}.pt"},
                             notes="trained without fold k, scores fold k (at the grid's best lr)"))
        rows.append(dict(name=f"split {shift}", path_to_main=SPLIT, path_to_default_config=f"{CONFIGS}/split_{shift}.yaml",
                         depends_on=", ".join(folds + evaluations),
                         **{"delta:classifier/models": f"[models/__WORKSHEET__/domain_{shift}_fold*.pt]"},
                         notes="the in- and out-of-support parts, and every model on both"))
    return rows


def sheets() -> dict:
    """{sheet name: rows}."""
    out = {"robustness_imagenet_out_of_support": synthetic_rows(None)}
    out.update({f"robustness_imagenet_tint_p{p}": synthetic_rows(p) for p in TINT_PS})
    out["robustness_imagenet_split"] = split_rows()
    return out


def render(rows: list) -> str:
    """The sheet as CSV text: the columns in first-seen order, slurm columns and notes last."""
    columns = ["name", "path_to_main", "path_to_default_config", "whether_to_run", "depends_on"]
    for row in rows:
        columns += [k for k in row if k not in columns and k != "notes"]
    columns += list(SLURM) + ["notes"]
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({"whether_to_run": "1", **SLURM, **row})
    return text.getvalue()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed sheets; write nothing")
    parser.add_argument("--out", default=os.path.join(REPO, "result_sheets"))
    args = parser.parse_args(argv)
    differ = []
    for name, rows in sheets().items():
        path = os.path.join(args.out, f"{name}.csv")
        text = render(rows)
        if args.check:
            current = open(path, encoding="utf-8").read() if os.path.exists(path) else None
            if current != text:
                differ.append(path)
            continue
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        print(f"{path}: {len(rows)} rows")
    for path in differ:
        print(f"{path} differs from scripts/make_robustness_sheets.py: rerun it", file=sys.stderr)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
