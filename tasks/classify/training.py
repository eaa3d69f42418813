"""The training loop of tasks/classify/train.py, shared by every script that trains a classifier
(tasks/distill, tasks/forde bring their own objective): :func:`train` runs it in this process,
under torchrun, or in ``devices`` processes; :class:`Trainer` is one process's run.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import time
from typing import Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tasks.classify.checkpoints import MODEL_FORMAT, mimo_members, snapshot_path
from tasks.classify.kinds import ModelKind, create_kind
from tasks.classify.objectives import default_objective
from tasks.classify.schedules import make_schedule
from tasks.classify.setup import (SeededItems, build_data, build_model, build_optimizer, data_config,
                                  data_seeds, epoch_batches, seed_of)
from tasks.common import digest, pick_device, save_atomic
from tasks.metrics.classification import sample_scores

CHECKPOINT_FORMAT = "sheetrun_classifier_checkpoint/1"
# config keys that do not change the result (left out of the resume check)
NOT_RESULT = ("resume", "checkpoint_path", "save_path", "keep_checkpoints", "num_workers", "device")


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
            sample = sample_scores(log_p, y, k=1)
            correct += sample["correct"].sum().item()
            nll += sample["nll"].sum().item()
            total += len(y)
            if log_p.shape[-1] == 2:
                scores.append(log_p[:, 1].exp().double().cpu())
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

    ``objective_factory(cfg, device)`` makes the training objective (:mod:`tasks.classify.objectives`:
    tasks/distill's distillation, tasks/forde's repulsion); by default the cross-entropy the model
    calls for (one network, MIMO, a joint ensemble)."""
    run = Trainer(rank, world, cfg, port, objective_factory or default_objective)
    run.resume()
    run.announce()
    for epoch in range(run.start_epoch, run.epochs):
        run.train_epoch(epoch)
    return run.finish()


class Trainer:
    """One process's run: what it trains (model, optimiser, objective, data) and where it is."""

    def __init__(self, rank: int, world: int, cfg: dict, port: Optional[int], objective_factory):
        self.rank, self.world, self.cfg = rank, world, cfg
        self.distributed, self.main = world > 1, rank == 0
        self.device = _start_process_group(rank, world, cfg, port)
        self.seed_data, self.streams = int(cfg["seed"]["data"]), data_seeds(cfg)
        self.train_set, self.val_set = build_data(cfg)
        self.items = SeededItems(self.train_set, self.streams)
        self.core = build_model(cfg).to(self.device)
        self.model = self._parallel(self.core)
        self.o = cfg["optim"]
        self.opt = build_optimizer(self.o, self.core)
        self.amp = cfg.get("amp") or "none"
        if self.amp not in ("none", "bf16", "fp16"):
            raise ValueError(f"amp must be none, bf16 or fp16, got {self.amp!r}")
        self.use_amp = self.amp != "none" and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp == "fp16")
        self.global_bs, self.epochs = int(cfg["batch_size"]), int(cfg["epochs"])
        self.local_bs, self.steps = _batch_sizes(self.global_bs, world, len(self.train_set))
        self.factor = make_schedule(cfg.get("schedule") or {}, self.steps, self.epochs)
        self.objective = objective_factory(cfg, self.device)
        self.clip = float(self.o.get("clip_grad_norm") or 0.0)
        self.digest = digest({k: v for k, v in cfg.items() if k not in NOT_RESULT})
        self.ckpt_path = cfg.get("checkpoint_path") or cfg["save_path"] + ".last.pt"
        self.start_epoch, self.start_step, self.history = 0, 0, []
        self.validator = validation_kind(cfg, self.model_record(weights=False), self.core, self.device) \
            if self.main and self.val_set is not None else None
        self.stop = StopFlag()
        self.kept = kept_epochs(cfg.get("keep_checkpoints"), self.epochs)
        self.started = time.time()

    def _parallel(self, model: nn.Module) -> nn.Module:
        """The model as the step runs it: DistributedDataParallel over the processes (SyncBatchNorm on CUDA)."""
        if not self.distributed:
            return model
        if self.cfg.get("sync_bn", True) and self.device.type == "cuda":
            model = self.core = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return nn.parallel.DistributedDataParallel(
            model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    # -- checkpoints ---------------------------------------------------------------------------
    def resume(self) -> None:
        """Go on from the checkpoint of an interrupted run of the same config, if there is one."""
        if not (self.cfg.get("resume", True) and os.path.exists(self.ckpt_path)):
            return
        ckpt = torch.load(self.ckpt_path, map_location=self.device, weights_only=False)
        if ckpt.get("format") == CHECKPOINT_FORMAT and ckpt.get("config_digest") == self.digest:
            self.core.load_state_dict(ckpt["model"])
            self.opt.load_state_dict(ckpt["optimizer"])
            self.scaler.load_state_dict(ckpt["scaler"])
            self.start_epoch, self.start_step, self.history = ckpt["epoch"], ckpt["step"], ckpt["history"]
            self.say(f"resuming from {self.ckpt_path}: epoch {self.start_epoch + 1}, batch {self.start_step}")
        else:
            self.say(f"ignoring {self.ckpt_path}: written for another config or version")

    def save_checkpoint(self, epoch: int, step: int) -> None:
        save_atomic({"format": CHECKPOINT_FORMAT, "config_digest": self.digest, "model": self.core.state_dict(),
                     "optimizer": self.opt.state_dict(), "scaler": self.scaler.state_dict(), "epoch": epoch,
                     "step": step, "history": self.history}, self.ckpt_path)

    def model_record(self, weights: bool = True) -> dict:
        """The model as tasks/classify/checkpoints.py reads it (the final one, and each snapshot); an
        objective with metadata records it under its key, and ``objective`` names that key."""
        cfg, objective = self.cfg, self.objective
        trained = {"objective": objective.metadata_key, objective.metadata_key: objective.metadata} \
            if objective.metadata_key else {}
        return {"format": MODEL_FORMAT, "model": cfg["model"], "num_classes": int(cfg["data"]["num_classes"]),
                "data_config": data_config(cfg), "history": list(self.history), "config": cfg,
                **({"state_dict": self.core.state_dict()} if weights else {}), **trained}

    def save_model(self, epoch: int, path: str) -> None:
        save_atomic(dict(self.model_record(), epoch=epoch), path)

    # -- the loop ------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        if self.main:
            print(text, flush=True)

    def announce(self) -> None:
        members = mimo_members(self.cfg["model"])
        self.say(f"{self.cfg['model']['name']}{f' (MIMO, {members} members)' if members else ''}: "
                 f"{sum(p.numel() for p in self.core.parameters()):,} parameters; {len(self.train_set)} training "
                 f"samples, {self.steps} steps of {self.global_bs} per epoch on {self.world} x {self.device}")
        if self.validator is not None:
            self.say("validation: " + ", ".join(f"{k} {v}" for k, v in self.validator.describe().items()))
        if self.main and 0 in self.kept and self.start_epoch == 0 and self.start_step == 0:
            self.save_model(0, snapshot_path(self.cfg["save_path"], 0))   # the initialisation

    def train_epoch(self, epoch: int) -> None:
        self.items.epoch = epoch
        skip = self.start_step if epoch == self.start_epoch else 0
        batches = epoch_batches(self.streams, len(self.train_set), epoch, self.steps, self.global_bs, self.rank,
                                self.world, skip)
        loader = DataLoader(self.items, batch_sampler=batches, num_workers=int(self.cfg.get("num_workers", 0)))
        sums = EpochSums()
        lr = float(self.o["lr"]) * self.factor(epoch * self.steps + skip)
        for step, (x, y, _) in enumerate(loader, start=skip):
            lr = self.train_step(epoch, step, x, y, sums)
            self.stop_if_signalled(epoch, step)
        row = {"epoch": epoch + 1, "lr": lr, **sums.means(self.distributed)}
        if self.main:
            self.end_epoch(epoch, row)
        if self.distributed:
            dist.barrier()

    def train_step(self, epoch: int, step: int, x, y, sums: "EpochSums") -> float:
        """One optimiser step on this process's share of the global batch; returns its learning rate."""
        torch.manual_seed(seed_of(self.seed_data, epoch, step, self.rank, 1))
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        if len(self.streams) > 1:                                  # member m's batch: x[m] [b, ...], y[m] [b]
            x, y = x.view(len(self.streams), self.local_bs, *x.shape[1:]), y.view(len(self.streams), self.local_bs)
        lr = float(self.o["lr"]) * self.factor(epoch * self.steps + step)
        for group in self.opt.param_groups:
            group["lr"] = lr
        generator = torch.Generator().manual_seed(seed_of(self.seed_data, epoch, step, self.rank, 2))
        with torch.autocast(self.device.type, dtype=torch.bfloat16 if self.amp == "bf16" else torch.float16,
                            enabled=self.use_amp):
            loss, pred, target, *more = self.objective(self.model, x, y, generator)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.clip:
            self.scaler.unscale_(self.opt)
            nn.utils.clip_grad_norm_([p for p in self.core.parameters() if p.requires_grad], self.clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss is {loss.item()} at epoch {epoch + 1}, step {step + 1}")
        sums.add(loss, pred, target, more[0] if more else {})
        return lr

    def stop_if_signalled(self, epoch: int, step: int) -> None:
        """SIGTERM / SIGINT (any process): a checkpoint after this step, then exit 128 + signal."""
        flag = torch.tensor([float(self.stop.raised)])
        if self.distributed:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if not flag.item():
            return
        if self.main:
            self.save_checkpoint(epoch, step + 1)
            self.say(f"stopped by signal {int(flag.item())}; checkpoint saved at epoch {epoch + 1}, "
                     f"batch {step + 1} ({self.ckpt_path})")
        if self.distributed:
            dist.barrier()
            dist.destroy_process_group()
        sys.exit(128 + int(flag.item()))

    def end_epoch(self, epoch: int, row: dict) -> None:
        """Validation, the row's metrics, the checkpoint and a kept copy (the main process)."""
        from runner import report

        if self.val_set is not None:
            row.update(evaluate(self.validator, self.val_set, int(self.cfg.get("eval_batch_size", 256)), self.device))
        self.history.append(row)
        report({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()})
        print("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
              + f"  ({time.time() - self.started:.1f} s)", flush=True)
        self.save_checkpoint(epoch + 1, 0)
        if epoch + 1 in self.kept:
            self.save_model(epoch + 1, snapshot_path(self.cfg["save_path"], epoch + 1))

    def finish(self) -> dict:
        if self.main:
            self.save_model(self.epochs, self.cfg["save_path"])
            if os.path.exists(self.ckpt_path):
                os.remove(self.ckpt_path)
            print(f"saved {self.cfg['save_path']}", flush=True)
        if self.distributed:
            dist.barrier()
            dist.destroy_process_group()
        return {"history": self.history}


class EpochSums:
    """An epoch's running sums: loss x n, correct, n, and each of an objective's extras x n."""

    def __init__(self):
        self.sums = torch.zeros(3, dtype=torch.float64)
        self.extras: dict = {}

    def add(self, loss, pred, target, extras: dict) -> None:
        self.sums += torch.tensor([loss.item() * len(target), (pred == target).sum().item(), len(target)],
                                  dtype=torch.float64)
        for key, value in extras.items():
            self.extras[key] = self.extras.get(key, 0.0) + float(value) * len(target)

    def means(self, distributed: bool) -> dict:
        """``train_loss``, ``train_acc`` and the extras' means, over every process."""
        keys = sorted(self.extras)
        extra = torch.tensor([self.extras[k] for k in keys], dtype=torch.float64)
        if distributed:
            dist.all_reduce(self.sums)
            if keys:
                dist.all_reduce(extra)
        n = self.sums[2]
        return {"train_loss": float(self.sums[0] / n), "train_acc": float(self.sums[1] / n),
                **{k: float(v / n) for k, v in zip(keys, extra)}}


def _start_process_group(rank: int, world: int, cfg: dict, port: Optional[int]) -> torch.device:
    """This process's device, its process group started when there are several (gloo / NCCL)."""
    if world > 1 and not dist.is_initialized():
        if port is not None:
            os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        use_cuda = torch.cuda.is_available() and cfg.get("device", "auto") in ("auto", "cuda")
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world)
    device = pick_device(cfg.get("device", "auto"))
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    return device


def _batch_sizes(global_bs: int, world: int, samples: int) -> tuple[int, int]:
    """(each process's share of a global batch, steps per epoch)."""
    if global_bs % world:
        raise ValueError(f"batch_size {global_bs} does not split evenly over {world} processes")
    steps = samples // global_bs
    if steps == 0:
        raise ValueError(f"batch_size {global_bs} is larger than the training set ({samples} rows)")
    return global_bs // world, steps


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

    # the processes save and stop; this one waits for them. Its own handlers come back after: left ignored,
    # every process it starts later (a caller's, a notebook's) would inherit a Ctrl-C that does nothing
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        mp.spawn(_spawned, args=(world, cfg, _free_port(), objective_factory), nprocs=world, join=True)
    except mp.ProcessExitedException as e:
        sys.exit(e.exit_code if e.exit_code and e.exit_code > 0 else 1)
    finally:
        for s, handler in previous.items():
            if handler is not None:          # None: set outside Python, left as it is
                signal.signal(s, handler)
    return {}
