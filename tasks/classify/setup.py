"""What a classifier's training run is made of, shared by the scripts that build the same data or
network as training does (tasks/jacobian, tasks/forde, tasks/robustness): the data config and the
data, seeds and seeded batches, the network, the optimiser and its parameter groups.

Entry scripts import this module, never another entry script.
"""
from __future__ import annotations

import re
from typing import Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from tasks.classify.checkpoints import joint_members, mimo_members
from tasks.data import build_set
from tasks.models import create_model
from tasks.registry import Registry

OPTIMIZERS: Registry = Registry("optimiser", key="optim.name")
OPTIMIZERS.add("sgd", lambda groups, o: torch.optim.SGD(groups, lr=float(o["lr"]), momentum=float(o.get("momentum", 0.9)),
                                                        nesterov=bool(o.get("nesterov", True))))
OPTIMIZERS.add("adamw", lambda groups, o: torch.optim.AdamW(groups, lr=float(o["lr"]),
                                                            betas=tuple(o.get("betas", (0.9, 0.999)))))


def build_optimizer(o: dict, model: nn.Module) -> torch.optim.Optimizer:
    """The optimiser ``optim`` names, over :func:`param_groups` of ``model``."""
    make = OPTIMIZERS.get(o.get("name"))
    return make(param_groups(model, float(o.get("weight_decay", 0.0)), bool(o.get("decay_norm_and_bias", False)),
                             o.get("no_decay")), o)


def seed_of(*parts: int) -> int:
    """A 63-bit seed from a tuple of integers (independent streams for independent purposes)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


class SeededItems(Dataset):
    """Items of ``dataset`` whose random augmentation is a function of (seed, epoch, index) only.

    With several ``seeds`` (one stream of batches per member, ``member_batches: own``) item
    ``s x N + i`` is sample ``i`` as stream ``s`` sees it."""

    def __init__(self, dataset: Dataset, seeds: list):
        self.dataset, self.seeds, self.epoch = dataset, list(seeds), 0

    def __len__(self) -> int:
        return len(self.dataset) * len(self.seeds)

    def __getitem__(self, k: int):
        stream, i = divmod(k, len(self.dataset))
        # the CPU generator alone (data transforms draw from it): torch.manual_seed would also queue a
        # seed for every CUDA device, recording a stack trace per call until CUDA starts (~1 ms a sample)
        torch.random.default_generator.manual_seed(seed_of(self.seeds[stream], self.epoch, i))
        return self.dataset[i]


MEMBER_BATCHES = ("shared", "own")


def data_seeds(cfg: dict) -> list:
    """The data seed of each stream of batches: ``seed.data`` alone (``member_batches: shared``, every
    member of a joint ensemble sees the same batch), or one per member, ``seed.data x M + m``
    (``own``: member m's order and augmentation are those of a run of its own with that seed)."""
    mode = cfg.get("member_batches", "shared")
    if mode not in MEMBER_BATCHES:
        raise ValueError(f"member_batches must be one of {MEMBER_BATCHES}, got {mode!r}")
    seed = int(cfg["seed"]["data"])
    if mode == "shared":
        return [seed]
    count = joint_members(cfg["model"])
    if count < 1:
        raise ValueError("member_batches: own gives each member of a joint ensemble its own batches; "
                         "this model has none (model.joint_members)")
    return [seed * count + m for m in range(count)]


def epoch_batches(seeds: list, n: int, epoch: int, steps: int, global_bs: int, rank: int, world: int,
                  skip: int = 0) -> list:
    """This process's batches of one epoch, as item indices of :class:`SeededItems`: step k of stream
    s is the k-th slice of the permutation drawn from (seed_s, epoch), this process's 1/world of it."""
    local = global_bs // world
    orders = [np.random.default_rng(seed_of(s, epoch)).permutation(n) for s in seeds]
    return [[stream * n + int(i) for stream, order in enumerate(orders)
             for i in order[k * global_bs + rank * local: k * global_bs + (rank + 1) * local]]
            for k in range(skip, steps)]


def data_config(cfg: dict) -> dict:
    d = cfg["data"]
    return {"input_size": list(d.get("input_size", [3, 32, 32])), "mean": list(d.get("mean", [0.5] * 3)),
            "std": list(d.get("std", [0.5] * 3)), "interpolation": d.get("interpolation", "bilinear"),
            "crop_pct": 1.0}


def build_data(cfg: dict, root: Optional[str] = None):
    """(train set, val set or None). ``label_noise`` of the training spec changes the labels of
    the training samples only — after ``holdout`` took the validation ones, which keep theirs."""
    d, dcfg = cfg["data"], data_config(cfg)
    train_spec = {k: v for k, v in d["train"].items() if k != "label_noise"}
    noise = d["train"].get("label_noise")
    train, _ = build_set(train_spec, dcfg, root)
    val = None
    if d.get("val"):
        val = build_set(d["val"], dcfg, root)[0]
    elif float((d.get("holdout") or {}).get("fraction", 0)) > 0:
        hold = d["holdout"]
        n_val = int(round(len(train) * float(hold["fraction"])))
        if hold.get("order", "numpy") == "torch":
            # torch.utils.data.random_split(train, [N - n_val, n_val], Generator().manual_seed(seed)),
            # the Jacobian-statistics authors' split: the permutation's first N - n_val are training
            perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(int(hold.get("seed", 0))))
            order = np.concatenate([perm[len(train) - n_val:].numpy(), perm[:len(train) - n_val].numpy()])
        elif hold.get("order", "numpy") == "numpy":
            order = np.random.default_rng(int(hold.get("seed", 0))).permutation(len(train))
        else:
            raise ValueError(f"data.holdout.order must be numpy or torch, got {hold.get('order')!r}")
        val_spec = dict(train_spec, augment=False)
        if "transform" in hold:
            val_spec["transform"] = hold["transform"]
        val_full, _ = build_set(val_spec, dcfg, root)
        train, val = (torch.utils.data.Subset(train, order[n_val:].tolist()),
                      torch.utils.data.Subset(val_full, order[:n_val].tolist()))
    if noise:
        from tasks.data.label_noise import NoisyLabels

        train = NoisyLabels(train, dict(noise))
    return train, val


# The seed's exemption from weight decay (seed 000's model.py): the batch norms inside the residual
# blocks only — not the stem's or the downsample paths' batch norms, not the classifier's bias.
BLOCK_BN = r"layer\d.\d.bn\d.(bias|weight)"


def param_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool, no_decay: str | None = None) -> list:
    """Two groups: the parameters with weight decay, and those without: by default every bias and
    norm parameter (1-d, or named ``.bias``: a joint ensemble's stacked biases) unless ``decay_norm_and_bias``; with ``no_decay`` (a regular expression,
    searched in each parameter's name: the seed matches names without the prefix a wrapper such
    as MIMO's adds) exactly the parameters it matches."""
    pattern = re.compile(no_decay) if no_decay else None
    decay, exempt = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            spared = bool(pattern.search(name)) if pattern else \
                ((p.ndim <= 1 or name.endswith(".bias")) and not decay_norm_and_bias)
            (exempt if spared else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": exempt, "weight_decay": 0.0}]


def member_seeds(cfg: dict) -> list:
    """The initialisation seed of each member of a joint ensemble: seed.init x M + m (runs of
    different seeds never share a member)."""
    count = joint_members(cfg["model"])
    return [int(cfg["seed"]["init"]) * count + m for m in range(count)]


def build_model(cfg: dict) -> nn.Module:
    m = cfg["model"]
    torch.manual_seed(int(cfg["seed"]["init"]))
    model = create_model(m["name"], num_classes=int(cfg["data"]["num_classes"]),
                         in_chans=int(data_config(cfg)["input_size"][0]), weights=m.get("weights"),
                         weights_exclude=m.get("weights_exclude"), mimo=mimo_members(m), joint_members=joint_members(m),
                         member_seeds=member_seeds(cfg) if joint_members(m) else None, init=m.get("init", "torch"),
                         zero_shot_head=m.get("zero_shot_head"), **(m.get("kwargs") or {}))
    if m.get("trainable"):
        freeze_except(model, m["trainable"])
    return model


def freeze_except(model: nn.Module, trainable: str) -> list:
    """Train only the parameters whose names match the regular expression ``trainable`` (a linear
    probe: ``"^head\\."``, the seed-002 authors' ``freeze_features``); the others keep their values.
    Batch-norm running statistics are buffers, not parameters: in training mode they still follow the
    data, as in the authors' code (whose ViTs have none). Returns the names left trainable; none
    matching is an error."""
    pattern = re.compile(trainable)
    kept = []
    for name, p in model.named_parameters():
        p.requires_grad_(bool(pattern.search(name)))
        if p.requires_grad:
            kept.append(name)
    if not kept:
        names = [n for n, _ in model.named_parameters()]
        raise ValueError(f"model.trainable {trainable!r} matches no parameter (they are named like "
                         f"{', '.join(names[:2] + names[-2:])})")
    return kept
