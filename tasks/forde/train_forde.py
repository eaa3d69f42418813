"""Train a FoRDE ensemble (or, with ``forde.repulsion: none``, a plain deep ensemble): M members
trained jointly, each by its cross-entropy plus the repulsion of the members' input gradients.

    python tasks/forde/train_forde.py --config default_configs/forde/train.yaml

The members are one network (``model.joint_members``: :class:`tasks.models.joint.JointEnsemble`),
trained by tasks/classify/train.py's loop — its data, seeds, SGD, schedules, checkpoints, resume
after SIGTERM, several processes and mixed precision — with this objective per batch:

1. every member gets its own copy of the batch, and one forward gives the logits [M, B, K];
2. the gradient of each member's true-class logit with respect to its copy (training mode,
   double backprop: ``create_graph``), flattened: [M, B, D];
3. loss = sum_m CE_m + R, R the repulsion of :mod:`tasks.forde.repulsion` with the length scales
   of ``forde.repulsion``: ``pca`` (the PCA file at ``forde.pca_path``, from
   tasks/forde/compute_pca.py), ``identity``, or ``none`` (R = 0: the members train as M
   independent networks).

The deep-ensemble baseline is ``repulsion: none`` with ``member_batches: own``: each member
gets its own batch (its own order and augmentation, data seed ``seed.data`` x M + m) instead
of a copy of one shared batch, so member m is exactly a tasks/classify/train.py run of its own
with seeds (init x M + m, data x M + m). FoRDE keeps ``shared``: the repulsion compares the
members' input gradients at the same inputs.

With several processes the input gradients of the whole global batch are gathered for R
(the authors' ``all_gather``), each process's share of R's gradient flowing back to its own.
Member m starts from seed ``seed.init`` x M + m, so the members of different seeds' runs never
coincide, and a plain tasks/classify/train.py run with that ``seed.init`` (same data seed and
optimiser) trains the same network as member m of ``repulsion: none`` (with ``member_batches: own``,
its data seed is data x M + m too). Per epoch the row gets
the loss, the members' mean cross-entropy (``train_ce``), R / M (``repulsion``) and the mean
bandwidth. The saved file holds all members; tasks/classify/evaluate.py reads it as the
``joint`` model kind.

``forde.members`` says how each forward walks the members (:mod:`tasks.models.joint`): ``joint``
(one grouped network), ``loop`` (member after member), ``vmap`` (``torch.vmap`` over the
members), or ``auto``: what bench/forde_step.py measured fastest for the device and the size
(:func:`members_way`). All give the same loss and gradients; only the time differs.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from tasks.classify.objectives import Objective, joint_cross_entropy
from tasks.classify.training import train
from tasks.common import load_config
from tasks.forde.repulsion import KINDS, repulsion
from tasks.models.joint import WAYS

# forde.members: auto on a CPU takes the joint network while its largest feature map (all members, one
# batch) stays under this many bytes, and a loop over members past it: batch norm's double backward is
# memory-bound, and the joint network's activations leave the cache (bench/forde_step.py, 2 cores,
# 10 members, batch 64: joint 1.33x the loop at 5 MB, 1.31x at 10 MB, 1.09x at 21 MB, 0.66x at 42 MB)
CPU_JOINT_MAX_BYTES = 16 * 2 ** 20


def check_members_setting(setting) -> str:
    setting = setting or "auto"
    if setting != "auto" and setting not in WAYS:
        raise ValueError(f"forde.members must be auto or one of {WAYS}, got {setting!r}")
    return setting


def members_way(setting, device, joint=None, input_shape=None) -> str:
    """The way the members run (``forde.members``): ``setting`` itself, or for ``auto`` the fastest
    measured: on a CPU, ``joint`` while the largest feature map of ``joint`` (a
    :class:`~tasks.models.joint.JointEnsemble`) for inputs of ``input_shape`` [B, C, H, W] is at
    most :data:`CPU_JOINT_MAX_BYTES`, else ``loop``; on another device ``joint`` (one kernel per
    layer for all members)."""
    setting = check_members_setting(setting)
    if setting != "auto":
        return setting
    if torch.device(device).type != "cpu":
        return "joint"
    return "joint" if 4 * joint.largest_feature_map(input_shape) <= CPU_JOINT_MAX_BYTES else "loop"


class FordeObjective(Objective):
    """A joint ensemble's summed cross-entropy plus the repulsion of its input gradients."""
    metadata_key = "forde"          # the saved model records how it was trained under this key

    def __init__(self, cfg: dict, device):
        super().__init__(cfg, device)
        f = cfg.get("forde") or {}
        self.kind = f.get("repulsion", "pca")
        if self.kind is None:          # a sheet cell reads `none` as null (as stnd does): the same thing
            self.kind = "none"
        if self.kind not in KINDS:
            raise ValueError(f"forde.repulsion must be one of {KINDS}, got {self.kind!r}")
        self.members = int(cfg["model"].get("joint_members") or 0)
        if self.members < 2:
            raise ValueError(f"FoRDE trains an ensemble: model.joint_members must be 2 or more, got {self.members}")
        self.own_batches = cfg.get("member_batches", "shared") == "own"
        if self.own_batches and self.kind != "none":
            raise ValueError(f"forde.repulsion: {self.kind} compares the members at the same inputs: it needs "
                             "member_batches: shared (own batches are the deep-ensemble baseline's, repulsion: none)")
        self.eps = float(f.get("eps", 1e-12))
        self.device = device
        self.eigenvectors = self.scales = None
        if self.kind == "pca":
            from tasks.forde.pca import load_pca

            if not f.get("pca_path"):
                raise ValueError("forde.repulsion: pca needs forde.pca_path (a file of tasks/forde/compute_pca.py)")
            vectors, scales = load_pca(f["pca_path"], cfg["data"]["input_size"])
            self.eigenvectors, self.scales = vectors.to(device), scales.to(device)
        self.metadata = {"repulsion": self.kind, "pca_path": f.get("pca_path") if self.kind == "pca" else None,
                         "eps": self.eps, "members": check_members_setting(f.get("members"))}

    @property
    def way(self) -> str:
        return self.metadata["members"]

    def __call__(self, model, x, y, generator=None):
        m = self.members
        if self.way == "auto":             # decided at the first batch, by its shape; kept for the run
            joint = getattr(model, "module", model)            # DDP's module
            self.metadata["members"] = members_way("auto", self.device, joint, x.shape[-4:])
        if self.own_batches:                 # x [M, b, ...], y [M, b]: M networks on their own batches
            loss, pred, target = joint_cross_entropy(model(x, way=self.way).float(), y, self.smoothing)
            return loss, pred, target, {"train_ce": loss.detach() / m, "repulsion": loss.new_zeros(())}
        xm = x.unsqueeze(0).expand(m, *x.shape).clone().requires_grad_(self.kind != "none")
        logits = model(xm, way=self.way).float()                                    # [M, B, K]
        ce = sum(F.cross_entropy(logits[i], y, label_smoothing=self.smoothing) for i in range(m))
        pred = logits.softmax(-1).mean(0).argmax(-1)
        if self.kind == "none":
            # no input gradients are taken: no bandwidth to report
            return ce, pred, y, {"train_ce": ce.detach() / m, "repulsion": ce.new_zeros(())}
        true_logits = logits.gather(-1, y.view(1, -1, 1).expand(m, -1, 1)).sum()
        (grads,) = torch.autograd.grad(true_logits, xm, create_graph=True)
        grads = grads.flatten(2).float()                                            # [M, B, D]
        world = dist.get_world_size() if dist.is_initialized() else 1
        if world > 1:
            from torch.distributed.nn.functional import all_gather

            # every process computes R over the global batch; all_gather's backward sums the
            # processes' gradients for each share (world x), and DDP averages: R / world
            grads = torch.cat(all_gather(grads), dim=1)
        r, bandwidth = repulsion(grads, len(y), self.eigenvectors, self.scales, self.eps)
        loss = ce + r / world
        # R / world: the value of one process over the whole batch (the authors log repulsion / M / devices)
        return loss, pred, y, {"train_ce": ce.detach() / m, "repulsion": r.detach() / m / world, "bandwidth": bandwidth}


def make_objective(cfg: dict, device) -> FordeObjective:
    return FordeObjective(cfg, device)


def main(argv=None) -> None:
    train(load_config(__doc__.splitlines()[0], argv), make_objective)


if __name__ == "__main__":
    main()
