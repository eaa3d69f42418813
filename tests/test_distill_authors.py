"""The full-scale distillation configs carry the authors' settings, and the pieces that differ
from sheetrun's defaults behave as theirs.

The reference values below were read from the authors' public code
(github.com/yandex-research/proxy-dirichlet-distillation, imagenet/): the commands of
README.md (8 GPUs, --batch_size 256 / 512 for MIMO, --lr 0.1, --wd 1e-4, 120 / 150 / 90
epochs, --precision 16, --model_offset 1 --target_offset 1), train*.py (lr x batch x gpus /
256; MIMO's loader batch = batch / batch_repetitions / ensemble_size), model.py (SGD Nesterov
0.9, MultiStepLR at (30, 60, 80) x epochs // 90, the weight-decay exemption regex, MIMO's
row sharing), data_utils.py (Resize(256, 256) + CenterCrop(224), the 19 ImageNet-C
corruptions, the -A / -R / -O class masks) and evaluation.py / uncertainty.py (logits
restricted to the set's classes, np.digitize bins, softmax(z) for a student, MIMO's averaged
logits).
"""
from __future__ import annotations

import os

import pytest
import torch
import yaml

from conftest import REPO

GPUS = 8


def seed_lr(batch_per_gpu: int) -> float:
    return 0.1 * batch_per_gpu * GPUS / 256                # train.py: actual_learning_rate


def milestones(epochs: int) -> list:
    return [(30 * epochs) // 90, (60 * epochs) // 90, (80 * epochs) // 90]


EVERY_TRAINING = {"optim/name": "sgd", "optim/momentum": 0.9, "optim/nesterov": True, "optim/weight_decay": 1e-4,
                  "optim/no_decay": r"layer\d.\d.bn\d.(bias|weight)", "schedule/name": "step", "schedule/gamma": 0.1,
                  "schedule/warmup_epochs": 0, "amp": "fp16", "devices": GPUS, "model/name": "resnet50",
                  "label_smoothing": 0.0, "data/num_classes": 1000}
AUTHORS = {
    "member": {"epochs": 120, "batch_size": 256 * GPUS, "optim/lr": seed_lr(256), "schedule/milestones": milestones(120),
               "model/mimo/members": 0},
    "mimo": {"epochs": 150, "batch_size": 512 // 2 // 2 * GPUS, "optim/lr": seed_lr(512),
             "schedule/milestones": milestones(150), "model/mimo/members": 2, "model/mimo/rho": 0.6,
             "model/mimo/batch_reps": 2, "model/mimo/sharing": "exact"},
    "student": {"epochs": 90, "batch_size": 256 * GPUS, "optim/lr": seed_lr(256), "schedule/milestones": milestones(90),
                "distill/loss": "proxy", "distill/model_offset": 1.0, "distill/target_offset": 1.0},
}
EVAL_TRANSFORM = {"recipe": "squash_center_crop", "resize": 256, "size": 224, "interpolation": "bilinear"}
SEED_CORRUPTIONS = ["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
                    "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
                    "jpeg_compression", "speckle_noise", "gaussian_blur", "spatter", "saturate"]


def load(name):
    with open(os.path.join(REPO, "default_configs", "distill", "imagenet", f"{name}.yaml")) as f:
        return yaml.safe_load(f)


def get(cfg, key):
    for part in key.split("/"):
        cfg = cfg[part]
    return cfg


@pytest.mark.parametrize("model", sorted(AUTHORS))
def test_training_configs_carry_the_authors_values(model):
    cfg = load(model)
    for key, value in {**EVERY_TRAINING, **AUTHORS[model]}.items():
        got = get(cfg, key)
        assert got == pytest.approx(value) if isinstance(value, float) else got == value, (model, key, got, value)
    assert cfg["data"]["val"]["transform"] == EVAL_TRANSFORM
    train = cfg["data"]["train"]                     # the seed's training transform: random crop and flip
    assert train["augment"] is True and train["transform"]["recipe"] == "rrc_flip"


def test_evaluation_config_carries_the_authors_protocols():
    cfg = load("evaluate")
    assert cfg["class_subset_protocol"] == "restrict_logits"
    assert cfg["calibration_confidence_one"] == "own_bin"
    assert cfg["mimo_combine"] == "logits" and cfg["dirichlet_probs"] == "softmax"
    d = cfg["data"]
    assert d["in_distribution"]["transform"] == EVAL_TRANSFORM
    assert d["domains"]["C"]["corruptions"] == SEED_CORRUPTIONS and d["domains"]["C"]["severities"] == [1, 2, 3, 4, 5]
    for name in ("C", "imagenet_a", "imagenet_r", "imagenet_o"):
        assert d["domains"][name]["transform"] == EVAL_TRANSFORM, name
    assert set(d["ood"]) == {"imagenet_o", "imagenet_a", "imagenet_r", "C-1", "C-2", "C-3", "C-4", "C-5"}


def test_the_weight_decay_exemption_is_the_seeds_96_block_batch_norms():
    """timm's ResNet-50 names its parameters as torchvision's does: the seed's regex spares the
    48 batch norms inside the blocks (96 tensors), not the stem's, the downsample paths' or fc.bias."""
    from timm import create_model

    from tasks.classify.setup import param_groups

    model = create_model("resnet50", num_classes=1000)
    decay, spared = param_groups(model, 1e-4, False, AUTHORS_REGEX)
    assert len(spared["params"]) == 96
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in decay["params"]} >= {"bn1.weight", "layer1.0.downsample.1.weight", "fc.bias"}
    _, everything_1d = param_groups(model, 1e-4, False)
    assert len(everything_1d["params"]) == 107                 # sheetrun's default: every bias and norm


AUTHORS_REGEX = EVERY_TRAINING["optim/no_decay"]


def test_mimo_exact_sharing_is_the_seeds_batch():
    """model.py's training_step: the B*r rows shuffled once; the first int(B*r*(1-rho)) permuted again
    per member, the rest shared by every member."""
    from tasks.models.mimo import mimo_batch

    x = torch.arange(64).float().view(64, 1)
    y = torch.arange(64)
    xm, ym = mimo_batch(x, y, members=3, rho=0.6, batch_reps=2, generator=torch.Generator().manual_seed(0),
                        sharing="exact")
    assert xm.shape == (128, 3, 1) and torch.equal(xm[..., 0].long(), ym)
    shared = (ym == ym[:, :1]).all(1)
    k = int(128 * (1 - 0.6))
    assert bool(shared[k:].all())                              # exactly the last 128 - k rows are shared
    assert int(shared[:k].sum()) < k // 4                      # the others are each member's own order
    for m in range(3):                                         # every image twice per member
        assert torch.equal(torch.bincount(ym[:, m], minlength=64), torch.full((64,), 2))


def test_the_squash_transform_does_not_keep_the_aspect_ratio():
    from PIL import Image

    from tasks.data.transforms import build_transform

    img = Image.new("RGB", (400, 100), (255, 0, 0))
    for x in range(200, 400):                                  # right half blue
        for yy in range(100):
            img.putpixel((x, yy), (0, 0, 255))
    cfg = {"input_size": [3, 224, 224], "mean": [0, 0, 0], "std": [1, 1, 1]}
    out = build_transform({"transform": EVAL_TRANSFORM}, cfg)(img)
    assert out.shape == (3, 224, 224)
    assert out[0, :, :100].mean() > 0.99 and out[2, :, -100:].mean() > 0.99    # both halves still in view


def test_the_authors_caps_are_options_and_the_full_scale_default():
    """beta0 and the student's concentrations: sheetrun caps both at 1e6 on digits (a logit above
    ln 1e6 gets no gradient there); the full-scale student uses the seed's: beta0 capped by
    float32's epsilon only, concentrations up to float64's max / K - 1 (gradients kept)."""
    from tasks.distill import losses as L

    d = load("student")["distill"]
    authors = {"max_alpha": d["max_alpha"], "max_precision": d["max_precision"], "eps": d["eps"]}
    assert authors == {"max_alpha": None, "max_precision": None, "eps": float(torch.finfo(torch.float32).eps)}
    k = 1000
    same = torch.full((3, 2, k), 1.0 / k)                       # members that agree: MKL = 0
    assert float(L.proxy_targets(same, 0.0, authors["max_precision"], authors["eps"]).sum(-1)[0]) \
        == pytest.approx((k - 1) / authors["eps"])
    assert float(L.proxy_targets(same, 0.0).sum(-1)[0]) == pytest.approx(1e6)
    teachers = torch.softmax(torch.randn(5, 4, k) * 3, -1)
    for z0, gets_gradient in ((13.0, True), (20.0, False)):
        for options, cap in ((authors, None), ({}, 1e6)):
            z = torch.zeros(4, k)
            z[:, 0] = z0
            z.requires_grad_(True)
            L.proxy(z, teachers, **options).backward()
            moved = bool(z.grad[:, 0].abs().max() > 0)
            assert moved == (gets_gradient or cap is None), (z0, options)


def test_the_proxy_loss_equals_the_authors_proxy_loss():
    """losses.py's proxy_loss (with model.py's ensemble statistics), written out here, on random
    students and teachers, with the authors' caps."""
    from tasks.distill import losses as L

    torch.manual_seed(0)
    k, eps = 10, float(torch.finfo(torch.float32).eps)
    teachers = torch.softmax(torch.randn(5, 8, k, dtype=torch.float64) * 2, -1)   # rows summing to 1 in float64:
    z = torch.randn(8, k) * 2                  # the seed's precision + K offset is then our sum of the targets
    mean = teachers.double().mean(0)
    mkl = (mean * (mean.log() - teachers.double().log())).sum(-1).mean(0)       # compute_mkl
    precision = (k - 1) / (2 * mkl.unsqueeze(1) + eps)
    params = mean * precision + 1.0                                               # target_offset 1
    precision = precision + 1.0 * k
    alphas = z.double().exp() + 1.0                                               # model_offset 1
    a0 = alphas.sum(-1)
    theirs = (torch.lgamma(precision.squeeze(1)) - torch.lgamma(params).sum(-1) + torch.lgamma(alphas).sum(-1)
              - torch.lgamma(a0) + ((params - alphas) * (torch.digamma(params) - torch.digamma(precision))).sum(-1)).mean()
    ours = L.proxy(z, teachers, 1.0, 1.0, max_alpha=None, max_precision=None, eps=eps)
    assert float(ours) == pytest.approx(float(theirs), rel=1e-9)
