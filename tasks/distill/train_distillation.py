"""Distil an ensemble into one network: forward KL, proxy Dirichlet, or Dirichlet likelihood.

    python tasks/distill/train_distillation.py --config default_configs/distill/student_proxy.yaml

The student is trained by tasks/classify/train.py's loop (same data, optimiser, schedules,
checkpoints, resume, several processes) with the distillation loss of ``distill.loss``
(:mod:`tasks.distill.losses`) in place of cross-entropy. The teachers (``distill.teachers``:
checkpoint paths, globs allowed) run on the student's own augmented batch, in evaluation mode,
members of one architecture as one batched computation (:mod:`tasks.models.ensemble`): the
teacher statistics are those of augmented inputs, not of memorised training images. The saved
student records the loss and ``model_offset``, so tasks/classify/evaluate.py reads a Dirichlet
student as one (alpha = exp(z) + model_offset).
"""
from __future__ import annotations

import torch

from tasks.classify.checkpoints import load_ensemble, model_paths
from tasks.classify.objectives import Objective
from tasks.classify.training import train
from tasks.common import load_config
from tasks.distill.losses import EPS, LOSSES, MAX_ALPHA


class DistillationObjective(Objective):
    """The student's loss against its teachers' predictions (``distill.loss``: :data:`LOSSES`)."""
    metadata_key = "distill"

    def __init__(self, cfg: dict, device):
        super().__init__(cfg, device)
        d = cfg["distill"]
        paths = model_paths(d["teachers"])
        self.teachers = load_ensemble(paths).to(device).eval()
        self.loss_fn = LOSSES.get(d.get("loss"))
        optional = lambda key: None if d.get(key, MAX_ALPHA) is None else float(d.get(key, MAX_ALPHA))  # noqa: E731
        self.kwargs = {"model_offset": float(d.get("model_offset", 1.0)),
                       "target_offset": float(d.get("target_offset", 1.0)),
                       "max_alpha": optional("max_alpha"), "max_precision": optional("max_precision"),
                       "eps": float(d.get("eps", EPS))}
        self.metadata = {"loss": d["loss"], "teachers": paths, **self.kwargs}

    def __call__(self, model, x, y, generator=None):
        with torch.no_grad():
            teacher_probs = self.teachers(x).float().softmax(-1)          # [M, B, K]
        logits = model(x).float()
        loss = self.loss_fn(logits, teacher_probs, **self.kwargs).float()
        return loss, logits.argmax(-1), y


def make_objective(cfg: dict, device) -> DistillationObjective:
    return DistillationObjective(cfg, device)


def main(argv=None) -> None:
    train(load_config(__doc__.splitlines()[0], argv), make_objective)


if __name__ == "__main__":
    main()
