"""What a training step minimises: an :class:`Objective` per way of training, one signature.

``objective(model, x, y, generator)`` returns ``(loss, predictions, targets)`` or
``(loss, predictions, targets, extras)``, ``extras`` a dict of scalar tensors averaged over each
epoch into the row; ``metadata`` is saved with the model under ``metadata_key`` (which
tasks/classify/evaluate.py reads back as how the model was trained). Cross-entropy, MIMO's and a
joint ensemble's live here; tasks/distill and tasks/forde bring their own. Adding one touches no
other file: the training loop calls whatever ``objective_factory(cfg, device)`` makes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

def joint_cross_entropy(logits: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0):
    """(Σ_m CE(logits[m], y_m), predictions, targets) of a joint ensemble's logits [M, b, K]: with one
    batch for all (y [b]), the ensemble's prediction; with a batch per member (y [M, b]), each
    member's own on its batch (``train_acc`` is then the members' mean accuracy)."""
    if y.dim() == 1:
        loss = sum(F.cross_entropy(member, y, label_smoothing=smoothing) for member in logits)
        return loss, logits.softmax(-1).mean(0).argmax(-1), y
    loss = sum(F.cross_entropy(member, target, label_smoothing=smoothing) for member, target in zip(logits, y))
    return loss, logits.argmax(-1).flatten(), y.flatten()


class Objective:
    """The loss of one training step. ``metadata_key``: where the saved model records ``metadata``
    ("" for nothing: a model trained by plain cross-entropy)."""

    metadata_key = ""

    def __init__(self, cfg: dict, device):
        self.smoothing = float(cfg.get("label_smoothing", 0.0))
        self.metadata: dict = {}

    def __call__(self, model, x, y, generator=None) -> tuple:
        raise NotImplementedError


class CrossEntropy(Objective):
    """One network: the mean cross-entropy of its logits."""

    def __call__(self, model, x, y, generator=None) -> tuple:
        logits = model(x).float()
        return F.cross_entropy(logits, y, label_smoothing=self.smoothing), logits.argmax(-1), y


class MimoCrossEntropy(Objective):
    """MIMO (``model.mimo``): M subnetworks on their own inputs, mixed by :func:`tasks.models.mimo.mimo_batch`
    (``rho``, ``batch_reps``, ``sharing``) from the step's ``generator``; the cross-entropy's mean over
    samples and members, as seed 000's train_mimo.py; predictions are the members' mean."""

    def __init__(self, cfg: dict, device):
        from tasks.classify.checkpoints import mimo_members

        super().__init__(cfg, device)
        self.members = mimo_members(cfg["model"])
        mimo = cfg["model"].get("mimo") or {}
        self.rho, self.reps = float(mimo.get("rho", 0.6)), int(mimo.get("batch_reps", 2))
        self.sharing = str(mimo.get("sharing", "bernoulli"))

    def __call__(self, model, x, y, generator=None) -> tuple:
        from tasks.models.mimo import mimo_batch

        xm, ym = mimo_batch(x, y, self.members, self.rho, self.reps, generator, self.sharing)
        logits = model(xm).float()                               # [b, M, K]
        loss = F.cross_entropy(logits.flatten(0, 1), ym.flatten(), label_smoothing=self.smoothing)
        return loss, logits.mean(1).argmax(-1), ym[:, 0]


class JointCrossEntropy(Objective):
    """A joint ensemble (``model.joint_members``): each member's own cross-entropy, summed — M
    independent networks trained as one (tasks/forde's baseline)."""

    def __call__(self, model, x, y, generator=None) -> tuple:
        return joint_cross_entropy(model(x).float(), y, self.smoothing)


def default_objective(cfg: dict, device) -> Objective:
    """The cross-entropy the model calls for: MIMO's, a joint ensemble's, or one network's."""
    from tasks.classify.checkpoints import joint_members, mimo_members

    if mimo_members(cfg["model"]):
        return MimoCrossEntropy(cfg, device)
    if joint_members(cfg["model"]):
        return JointCrossEntropy(cfg, device)
    return CrossEntropy(cfg, device)
