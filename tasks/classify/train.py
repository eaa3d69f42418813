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

import os
import signal
import socket
import sys
import time
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tasks.classify.checkpoints import MODEL_FORMAT, joint_members, mimo_members, snapshot_path
from tasks.classify.kinds import ModelKind, create_kind
from tasks.classify.schedules import make_schedule
from tasks.common import digest, load_config, pick_device, save_atomic
from tasks.data import build_set
from tasks.models import create_model
from tasks.models.mimo import mimo_batch

CHECKPOINT_FORMAT = "sheetrun_classifier_checkpoint/1"
# config keys that do not change the result (left out of the resume check)
NOT_RESULT = ("resume", "checkpoint_path", "save_path", "keep_checkpoints", "num_workers", "device")

OPTIMIZERS = {
    "sgd": lambda groups, o: torch.optim.SGD(groups, lr=float(o["lr"]), momentum=float(o.get("momentum", 0.9)),
                                             nesterov=bool(o.get("nesterov", True))),
    "adamw": lambda groups, o: torch.optim.AdamW(groups, lr=float(o["lr"]), betas=tuple(o.get("betas", (0.9, 0.999)))),
}


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


def joint_cross_entropy(logits: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0):
    """(Σ_m CE(logits[m], y_m), predictions, targets) of a joint ensemble's logits [M, b, K]: with one
    batch for all (y [b]), the ensemble's prediction; with a batch per member (y [M, b]), each
    member's own on its batch (``train_acc`` is then the members' mean accuracy)."""
    if y.dim() == 1:
        loss = sum(F.cross_entropy(member, y, label_smoothing=smoothing) for member in logits)
        return loss, logits.softmax(-1).mean(0).argmax(-1), y
    loss = sum(F.cross_entropy(member, target, label_smoothing=smoothing) for member, target in zip(logits, y))
    return loss, logits.argmax(-1).flatten(), y.flatten()


def param_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool, no_decay: str | None = None) -> list:
    """Two groups: the parameters with weight decay, and those without: by default every bias and
    norm parameter (1-d, or named ``.bias``: a joint ensemble's stacked biases) unless ``decay_norm_and_bias``; with ``no_decay`` (a regular expression,
    searched in each parameter's name: the seed matches names without the prefix a wrapper such
    as MIMO's adds) exactly the parameters it matches."""
    import re

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
    import re

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


class StopFlag:
    def __init__(self):
        self.raised = 0
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._set)

    def _set(self, signum, frame):
        self.raised = signum


def validation_kind(cfg: dict, record: dict, network: nn.Module, device) -> ModelKind:
    """How the in-training validation reads ``network``: as the model kind tasks/classify/evaluate.py
    reads its saved file (``record``, less the weights), with ``validation``'s options (``kind``,
    default auto; ``mimo_combine``, ``dirichlet_probs``): the same predictions, in place."""
    options = dict(cfg.get("validation") or {})
    return create_kind([record], options.pop("kind", "auto"), device, options, network=network)


def evaluate(kind: ModelKind, dataset: Dataset, batch_size: int, device, num_workers: int = 0) -> dict:
    """Top-1 accuracy and NLL over ``dataset`` of the predictions of ``kind`` (:func:`validation_kind`);
    for two classes also ``val_auroc``, the AUROC of p(class 1) (a domain classifier's score, by which
    the seed-002 authors pick its learning rate)."""
    was_training = kind.net.training
    kind.net.eval()
    correct = total = 0
    nll = 0.0
    scores, labels = [], []
    with torch.no_grad():
        for x, y, _ in DataLoader(dataset, batch_size=batch_size, num_workers=num_workers):
            log_probs, _ = kind.log_predict(x.to(device))
            y = y.to(device)
            keep = y >= 0
            log_p, y = log_probs[keep], y[keep]
            p = log_p.exp()
            correct += (p.argmax(-1) == y).sum().item()
            nll -= log_p.gather(-1, y.unsqueeze(-1)).sum().item()
            total += len(y)
            if p.shape[-1] == 2:
                scores.append(p[:, 1].double().cpu())
                labels.append(y.cpu())
    kind.net.train(was_training)
    out = {"val_acc": correct / max(1, total), "val_nll": nll / max(1, total)}
    if labels:
        y = torch.cat(labels).numpy()
        if 0 < y.sum() < len(y):
            from sklearn.metrics import roc_auc_score

            out["val_auroc"] = float(roc_auc_score(y, torch.cat(scores).numpy()))
    return out


def train_process(rank: int, world: int, cfg: dict, port: Optional[int] = None, objective_factory=None) -> dict:
    """One process of a run (the only one when ``world`` is 1).

    ``objective_factory(cfg, device)``, when given, makes the training objective: a callable
    ``(model, x, y) -> (loss, predictions, targets)``, or ``(..., extras)`` with ``extras`` a dict of
    scalar tensors averaged over each epoch into the row (tasks/forde: the repulsion), and a
    ``metadata`` dict saved with the model under ``metadata_key`` (default ``distill``; tasks/forde:
    ``forde``); by default
    cross-entropy (MIMO: averaged over members)."""
    distributed = world > 1
    if distributed and not dist.is_initialized():
        if port is not None:
            os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        use_cuda = torch.cuda.is_available() and cfg.get("device", "auto") in ("auto", "cuda")
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world)
    device = pick_device(cfg.get("device", "auto"))
    if device.type == "cuda" and distributed:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    main = rank == 0
    seed_data = int(cfg["seed"]["data"])
    streams = data_seeds(cfg)

    train_set, val_set = build_data(cfg)
    items = SeededItems(train_set, streams)
    model = build_model(cfg).to(device)
    if distributed and cfg.get("sync_bn", True) and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    core = model
    if distributed:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    o = cfg["optim"]
    if o.get("name") not in OPTIMIZERS:
        raise ValueError(f"optim.name must be one of {sorted(OPTIMIZERS)}, got {o.get('name')!r}")
    opt = OPTIMIZERS[o["name"]](param_groups(core, float(o.get("weight_decay", 0.0)),
                                             bool(o.get("decay_norm_and_bias", False)), o.get("no_decay")), o)
    amp = cfg.get("amp") or "none"
    if amp not in ("none", "bf16", "fp16"):
        raise ValueError(f"amp must be none, bf16 or fp16, got {amp!r}")
    use_amp = amp != "none" and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp == "fp16")

    global_bs, epochs = int(cfg["batch_size"]), int(cfg["epochs"])
    if global_bs % world:
        raise ValueError(f"batch_size {global_bs} does not split evenly over {world} processes")
    local_bs = global_bs // world
    steps = len(train_set) // global_bs
    if steps == 0:
        raise ValueError(f"batch_size {global_bs} is larger than the training set ({len(train_set)} rows)")
    factor = make_schedule(cfg.get("schedule") or {}, steps, epochs)
    mimo = (cfg["model"].get("mimo") or {})
    members = mimo_members(cfg["model"])
    smoothing = float(cfg.get("label_smoothing", 0.0))
    objective = objective_factory(cfg, device) if objective_factory is not None else None
    clip = float(o.get("clip_grad_norm") or 0.0)

    cdigest = digest({k: v for k, v in cfg.items() if k not in NOT_RESULT})
    ckpt_path = cfg.get("checkpoint_path") or cfg["save_path"] + ".last.pt"
    start_epoch, start_step, history = 0, 0, []
    if cfg.get("resume", True) and os.path.exists(ckpt_path):
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        if ckpt.get("format") == CHECKPOINT_FORMAT and ckpt.get("config_digest") == cdigest:
            core.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            scaler.load_state_dict(ckpt["scaler"])
            start_epoch, start_step, history = ckpt["epoch"], ckpt["step"], ckpt["history"]
            if main:
                print(f"resuming from {ckpt_path}: epoch {start_epoch + 1}, batch {start_step}", flush=True)
        elif main:
            print(f"ignoring {ckpt_path}: written for another config or version", flush=True)

    def save_checkpoint(epoch: int, step: int, path: str = ckpt_path) -> None:
        save_atomic({"format": CHECKPOINT_FORMAT, "config_digest": cdigest, "model": core.state_dict(),
                     "optimizer": opt.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch, "step": step,
                     "history": history}, path)

    def model_record(weights: bool = True) -> dict:
        """The model as tasks/classify/checkpoints.py reads it (the final one, and each snapshot)."""
        return {"format": MODEL_FORMAT, "model": cfg["model"], "num_classes": int(cfg["data"]["num_classes"]),
                "data_config": data_config(cfg), "history": list(history), "config": cfg,
                **({"state_dict": core.state_dict()} if weights else {}),
                **({getattr(objective, "metadata_key", "distill"): objective.metadata} if objective is not None else {})}

    validator = validation_kind(cfg, model_record(weights=False), core, device) if main and val_set is not None else None

    stop = StopFlag()
    if main:
        print(f"{cfg['model']['name']}{f' (MIMO, {members} members)' if members else ''}: "
              f"{sum(p.numel() for p in core.parameters()):,} parameters; {len(train_set)} training samples, "
              f"{steps} steps of {global_bs} per epoch on {world} x {device}", flush=True)
        if validator is not None:
            print("validation: " + ", ".join(f"{k} {v}" for k, v in validator.describe().items()), flush=True)
    started = time.time()
    kept = kept_epochs(cfg.get("keep_checkpoints"), epochs)
    if main and 0 in kept and start_epoch == 0 and start_step == 0:
        save_atomic(dict(model_record(), epoch=0), snapshot_path(cfg["save_path"], 0))   # the initialisation
    for epoch in range(start_epoch, epochs):
        items.epoch = epoch
        skip = start_step if epoch == start_epoch else 0
        batches = epoch_batches(streams, len(train_set), epoch, steps, global_bs, rank, world, skip)
        loader = DataLoader(items, batch_sampler=batches, num_workers=int(cfg.get("num_workers", 0)))
        sums = torch.zeros(3, dtype=torch.float64)        # loss x n, correct, n
        extra_sums: dict = {}                              # an objective's extras x n
        lr = float(o["lr"]) * factor(epoch * steps + skip)
        for step, (x, y, _) in enumerate(loader, start=skip):
            torch.manual_seed(seed_of(seed_data, epoch, step, rank, 1))
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if len(streams) > 1:                                  # member m's batch: x[m] [b, ...], y[m] [b]
                x, y = x.view(len(streams), local_bs, *x.shape[1:]), y.view(len(streams), local_bs)
            lr = float(o["lr"]) * factor(epoch * steps + step)
            for group in opt.param_groups:
                group["lr"] = lr
            with torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16,
                                enabled=use_amp):
                extras = {}
                if objective is not None:
                    loss, pred, target, *more = objective(model, x, y)
                    extras = more[0] if more else {}
                elif members:
                    g = torch.Generator().manual_seed(seed_of(seed_data, epoch, step, rank, 2))
                    xm, ym = mimo_batch(x, y, members, float(mimo.get("rho", 0.6)),
                                        int(mimo.get("batch_reps", 2)), g, str(mimo.get("sharing", "bernoulli")))
                    logits = model(xm).float()                               # [b, M, K]
                    # mean over samples and members, as seed 000's train_mimo.py
                    loss = F.cross_entropy(logits.flatten(0, 1), ym.flatten(), label_smoothing=smoothing)
                    pred, target = logits.mean(1).argmax(-1), ym[:, 0]
                elif joint_members(cfg["model"]):
                    logits = model(x).float()                                # [M, b, K]
                    # each member's own cross-entropy, summed: M independent networks (tasks/forde)
                    loss, pred, target = joint_cross_entropy(logits, y, smoothing)
                else:
                    logits = model(x).float()
                    loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
                    pred, target = logits.argmax(-1), y
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if clip:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_([p for p in core.parameters() if p.requires_grad], clip)
            scaler.step(opt)
            scaler.update()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the loss is {loss.item()} at epoch {epoch + 1}, step {step + 1}")
            sums += torch.tensor([loss.item() * len(target), (pred == target).sum().item(), len(target)],
                                 dtype=torch.float64)
            for key, value in extras.items():
                extra_sums[key] = extra_sums.get(key, 0.0) + float(value) * len(target)
            flag = torch.tensor([float(stop.raised)])
            if distributed:
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if flag.item():
                if main:
                    save_checkpoint(epoch, step + 1)
                    print(f"stopped by signal {int(flag.item())}; checkpoint saved at epoch {epoch + 1}, "
                          f"batch {step + 1} ({ckpt_path})", flush=True)
                if distributed:
                    dist.barrier()
                    dist.destroy_process_group()
                sys.exit(128 + int(flag.item()))
        keys = sorted(extra_sums)
        extra = torch.tensor([extra_sums[k] for k in keys], dtype=torch.float64)
        if distributed:
            dist.all_reduce(sums)
            if keys:
                dist.all_reduce(extra)
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": float(sums[0] / sums[2]), "train_acc": float(sums[1] / sums[2]),
               **{k: float(v / sums[2]) for k, v in zip(keys, extra)}}
        if main:
            if val_set is not None:
                row.update(evaluate(validator, val_set, int(cfg.get("eval_batch_size", 256)), device))
            history.append(row)
            from runner import report

            report({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()})
            print("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
                  + f"  ({time.time() - started:.1f} s)", flush=True)
            save_checkpoint(epoch + 1, 0)
            if epoch + 1 in kept:
                save_atomic(dict(model_record(), epoch=epoch + 1), snapshot_path(cfg["save_path"], epoch + 1))
        if distributed:
            dist.barrier()
    result = {"history": history}
    if main:
        save_atomic(dict(model_record(), epoch=epochs), cfg["save_path"])
        if os.path.exists(ckpt_path):
            os.remove(ckpt_path)
        print(f"saved {cfg['save_path']}", flush=True)
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return result


def kept_epochs(keep, epochs: int) -> set:
    """The epochs whose model ``keep_checkpoints`` keeps: a list of epochs (0: the initialisation),
    or ``{every: n}``: 0, n, 2n, ... up to ``epochs``."""
    if not keep:
        return set()
    if isinstance(keep, dict):
        if set(keep) != {"every"} or int(keep["every"]) < 1:
            raise ValueError(f"keep_checkpoints takes a list of epochs or {{every: n}} with n >= 1, got {keep!r}")
        return set(range(0, epochs + 1, int(keep["every"])))
    found = {int(e) for e in keep}
    outside = sorted(e for e in found if not 0 <= e <= epochs)
    if outside:
        raise ValueError(f"keep_checkpoints: epochs {outside} are outside 0..{epochs}")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_devices(cfg: dict, world: int) -> None:
    """Before anything starts: ``devices`` GPUs must be visible (else an error that says how to
    give them); more processes than CPU cores, and ``amp`` on a CPU (where it does nothing), are said."""
    if world < 1:
        raise ValueError(f"devices must be 1 or more, got {world}")
    device = pick_device(cfg.get("device", "auto"))
    if device.type == "cuda":
        visible = torch.cuda.device_count()
        if world > visible:
            shown = os.environ.get("CUDA_VISIBLE_DEVICES", "not set")
            raise ValueError(f"devices: {world}, but {visible} GPU(s) are visible to this job (CUDA_VISIBLE_DEVICES="
                             f"{shown}); run the sheet with 'sheetrun run --gpus-per-job {world}' (locally) or give "
                             f"the row slurm:gres gpu:{world} (SLURM), or lower devices")
        return
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    if world > cores:
        print(f"warning: devices: {world} runs {world} processes on the CPU, which has {cores} core(s) for this job: "
              "they share them (slower than one process)", file=sys.stderr, flush=True)
    if (cfg.get("amp") or "none") != "none":
        print(f"warning: amp: {cfg['amp']} does nothing on the CPU: this run trains in float32", file=sys.stderr,
              flush=True)


def _spawned(rank: int, world: int, cfg: dict, port: int, objective_factory) -> None:
    train_process(rank, world, cfg, port, objective_factory)


def lr_from(cfg: dict) -> dict:
    """``cfg`` with ``optim.lr`` set from ``optim.lr_from: {models, metric, mode}``: the learning rate
    of the run, among the saved models ``models`` (paths or globs), whose last epoch scored best on
    ``metric`` (a key of their history, default ``val_acc``; ``mode``: max, or min for a loss) —
    the fine-tuning copies at the best rate of a grid (seed 002). Ties go to the first file."""
    pick = (cfg.get("optim") or {}).get("lr_from")
    if not pick or not pick.get("models"):
        return cfg
    from tasks.classify.checkpoints import model_paths, read_classifier

    metric, mode = pick.get("metric", "val_acc"), pick.get("mode", "max")
    if mode not in ("max", "min"):
        raise ValueError(f"optim.lr_from.mode must be max or min, got {mode!r}")
    scored = []
    for path in model_paths(pick["models"]):
        saved = read_classifier(path)
        last = (saved.get("history") or [{}])[-1]
        if metric not in last:
            raise ValueError(f"optim.lr_from: {path} has no {metric!r} in its last epoch ({sorted(last)})")
        scored.append((float(last[metric]), float(saved["config"]["optim"]["lr"]), path))
    best = (max if mode == "max" else min)(scored, key=lambda t: t[0])
    print(f"optim.lr_from: lr {best[1]:g} of {best[2]} ({metric} {best[0]:.4g}, best of {len(scored)})", flush=True)
    return {**cfg, "optim": {**cfg["optim"], "lr": best[1], "lr_from": {**pick, "chosen": best[2]}}}


def train(cfg: dict, objective_factory=None) -> dict:
    """Run the training: in this process, under torchrun, or in ``devices`` processes started here.
    ``objective_factory`` must be a module-level function (it is sent to the processes)."""
    cfg = lr_from(cfg)
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:        # torchrun
        return train_process(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), cfg, None, objective_factory)
    world = int(cfg.get("devices", 1))
    check_devices(cfg, world)
    if world <= 1:
        return train_process(0, 1, cfg, None, objective_factory)
    import torch.multiprocessing as mp

    signal.signal(signal.SIGTERM, signal.SIG_IGN)     # the processes save and stop; this one waits for them
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        mp.spawn(_spawned, args=(world, cfg, _free_port(), objective_factory), nprocs=world, join=True)
    except mp.ProcessExitedException as e:
        sys.exit(e.exit_code if e.exit_code and e.exit_code > 0 else 1)
    return {}


def main(argv=None) -> None:
    train(load_config(__doc__.splitlines()[0], argv))


if __name__ == "__main__":
    main()
