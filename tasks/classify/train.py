"""Train an image classifier: any timm architecture or a tasks/models family, on a catalog dataset.

    python tasks/classify/train.py --config default_configs/classify/train.yaml

One config covers single models, ensemble members (rows that differ in
``seed``) and MIMO (``model.mimo.members`` > 1). What it does:

- data: ``data.train`` / ``data.val`` are set specs of :mod:`tasks.data`; without ``data.val``,
  ``data.holdout`` carves a validation split from the training set (its own seed);
- the network: ``model.weights`` (a local file) with ``weights_exclude`` (a fresh head),
  ``model.zero_shot_head`` (a file of CLIP text embeddings: the head starts as CLIP's zero-shot
  classifier) and ``model.trainable`` (a regular expression: only the parameters it matches train —
  a linear probe);
- optimisation: SGD (Nesterov) or AdamW (:data:`OPTIMIZERS`), weight decay that can spare
  norm and bias parameters, gradient-norm clipping (``optim.clip_grad_norm``), label smoothing, a per-step schedule (:mod:`tasks.classify.schedules`),
  mixed precision on CUDA (``amp: bf16 | fp16``; fp16 with a gradient scaler);
- seeds: ``seed.init`` (weights), ``seed.data`` (order, augmentation, dropout, MIMO pairing);
  every sample's augmentation is seeded by (seed.data, epoch, sample), every step's dropout by
  (seed.data, epoch, step, rank), so a run is reproducible at any number of workers and resumes
  batch-exact; a joint ensemble (``model.joint_members`` M) sees one batch per step
  (``member_batches: shared``) or one per member (``own``: member m's order and augmentation
  drawn from seed.data x M + m, as a run of its own — a deep ensemble);
- validation after every epoch reads the network as tasks/classify/evaluate.py reads its file (its
  model kind: one network, MIMO, a Dirichlet student; ``validation`` sets the kind's options);
- checkpoints every epoch and on SIGTERM (resumed by the next run of the same config), copies
  kept at ``keep_checkpoints`` epochs, the model at ``save_path``; per-epoch metrics into the row;
- several devices (``devices: N``): the script starts N processes itself (DistributedDataParallel;
  gloo on CPU, NCCL on CUDA), or runs under ``torchrun``; each process takes 1/N of every global
  batch of ``batch_size`` rows, so N processes compute what one does on the same global batch.
"""
from __future__ import annotations

from tasks.classify.training import train
from tasks.common import load_config


def main(argv=None) -> None:
    train(load_config(__doc__.splitlines()[0], argv))


if __name__ == "__main__":
    main()
