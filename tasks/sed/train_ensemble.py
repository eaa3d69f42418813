"""Train an ensemble of M heads on cached features, with optional diversification.

    python tasks/sed/train_ensemble.py --config default_configs/sed/train_ensemble.yaml

Members start from the backbone's head (saved by tasks/sed/cache_features.py) and
are computed as one batched model (:class:`tasks.sed.heads.EnsembleHeads`).
Each batch trains ``active_members`` random members (SED: 2) with the loss of
:mod:`tasks.sed.losses`; only their rows of the weight matrix are differentiated
and updated (:mod:`tasks.sed.optim`, per-member step counts). Per-epoch metrics go into the sheet row. A checkpoint
is written every ``checkpoint_every`` epochs and when the job is stopped
(SIGTERM, e.g. Ctrl-C in sheetrun or a SLURM preemption); with ``resume: true``
the next run with the same config continues from it, batch for batch as if it
had not stopped. The finished ensemble goes to ``save_path``.
"""
from __future__ import annotations

import math
import os
import signal
import sys
import time
from typing import Optional

import numpy as np
import torch

from runner import report
from tasks.common import load_config, pick_device, save_atomic
from tasks.sed.cache import digest, resolve_sets
from tasks.sed.features import CachedFeatures
from tasks.sed.heads import EnsembleHeads, mlp_head
from tasks.sed.losses import sed_loss
from tasks.sed.optim import make_optimizer

# config keys that do not change the result (left out of the resume check)
CHECKPOINT_FORMAT = "sheetrun_ensemble_checkpoint/2"   # /1: one tensor per member and weight
NOT_RESULT = ("resume", "checkpoint_path", "checkpoint_every", "device", "save_path", "max_memory_gb")


def one_set(cache_dir: str, name: str) -> dict:
    entries = resolve_sets(cache_dir, name)
    if len(entries) != 1:
        raise ValueError(f"{name!r} names a group of {len(entries)} sets; give one set")
    return entries[0]


def load_head(cache_dir: str, backbone_id: str) -> dict:
    path = os.path.join(cache_dir, "heads", f"{backbone_id}.pt")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing; rerun tasks/sed/cache_features.py for this backbone")
    return torch.load(path, map_location="cpu", weights_only=False)


SCHEDULES = ("cosine", "cosine_epochs", "constant")


def lr_factor(step: int, total: int, warmup: int, cosine: bool) -> float:
    """Linear warm-up over ``warmup`` steps, then a half cosine from 1 to 0 over the remaining steps."""
    if step < warmup:
        return (step + 1) / warmup
    if not cosine:
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def schedule_name(o: dict) -> str:
    """``optim.schedule``; configs written before it had ``cosine: true|false``."""
    name = o.get("schedule") or ("cosine" if o.get("cosine", True) else "constant")
    if name not in SCHEDULES:
        raise ValueError(f"optim.schedule must be one of {SCHEDULES}, got {name!r}")
    return name


def make_lr(o: dict, steps: list, freeze: int):
    """lr(epoch, step) for the schedule of ``o``; ``steps[e]`` = batches of epoch e, the first
    ``freeze`` epochs make no update and take no part in the schedule.

    - ``cosine``: per step, a half cosine over all updating steps (after ``warmup_steps``);
    - ``cosine_epochs``: PyTorch's CosineAnnealingLR(T_max=``t_max``) stepped once per updating epoch,
      lr = lr0 (1 + cos(pi e / T_max)) / 2 in updating epoch e = 0, 1, ... (the SED authors' schedule);
    - ``constant``: lr0 (after ``warmup_steps``).
    """
    name, lr0, warmup = schedule_name(o), float(o["lr"]), int(o.get("warmup_steps", 0))
    starts = np.concatenate([[0], np.cumsum(steps[freeze:])]).astype(int)
    total = int(starts[-1])
    t_max = float(o.get("t_max", 15))

    def lr(epoch: int, step: int) -> float:
        e = max(0, epoch - freeze)
        g = int(starts[min(e, len(starts) - 1)]) + step          # updating steps before this one
        if name == "cosine":
            return lr0 * lr_factor(g, total, warmup, True)
        base = lr0 if name == "constant" else lr0 * 0.5 * (1 + math.cos(math.pi * e / t_max))
        return base * ((g + 1) / warmup if g < warmup else 1.0)
    return lr


def epoch_spans(n: int, epochs: int, epoch_rows) -> list:
    """Rows each epoch passes over: the whole set, or (``epoch_rows`` given) chunk e mod C of the
    set cut into C chunks of that many rows (the last may be shorter), as the SED authors count epochs."""
    if not epoch_rows:
        return [(0, n)] * epochs
    r = int(epoch_rows)
    if r <= 0:
        raise ValueError(f"epoch_rows must be positive, got {epoch_rows!r}")
    if r >= n:
        return [(0, n)] * epochs
    chunks = [(a, min(n, a + r)) for a in range(0, n, r)]
    return [chunks[e % len(chunks)] for e in range(epochs)]


def ensemble_accuracy(model: EnsembleHeads, feats: CachedFeatures, device, batch_size: int = 4096) -> float:
    correct = total = 0
    with torch.no_grad():
        for x, y in feats.batches(batch_size, shuffle=False, device=device):
            correct += (model(x).mean(0).argmax(-1) == y).sum().item()
            total += len(y)
    return correct / max(1, total)


def build(cfg: dict):
    """The ensemble, its head description and the train set's index entry."""
    e = cfg["ensemble"]
    train_entry = one_set(cfg["cache_dir"], cfg["train_set"])
    saved = load_head(cfg["cache_dir"], train_entry["backbone_id"])
    head = {k: saved[k] for k in saved if k not in ("backbone", "backbone_id", "data_config")}
    if e.get("head", "auto") == "mlp":
        head = mlp_head(head["dim"], int(e.get("mlp_hidden", 512)), head["num_classes"], cfg["seed"])
    elif e.get("head", "auto") != "auto":
        raise ValueError(f"ensemble.head must be auto or mlp, got {e['head']!r}")
    model = EnsembleHeads(head, int(e["members"]), float(e.get("init_noise", 0.0)), cfg["seed"])
    return model, train_entry


class StopFlag:
    """Turns SIGTERM / SIGINT into a flag the training loop checks after each step."""

    def __init__(self):
        self.raised: Optional[int] = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._set)

    def _set(self, signum, frame):
        self.raised = signum


def train(cfg: dict) -> dict:
    run = EnsembleRun(cfg)
    run.resume()
    run.announce()
    for epoch in range(run.start_epoch, run.epochs):
        run.train_epoch(epoch)
    return run.finish()


class EnsembleRun:
    """One training run of the ensemble's heads on cached features: what it trains and where it is."""

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.device = pick_device(cfg.get("device", "auto"))
        torch.manual_seed(cfg["seed"])
        self.model, self.train_entry = build(cfg)
        self.model.to(self.device)
        self.m = self.model.num_members
        self.active_n = min(int(cfg["ensemble"].get("active_members", 2)) or self.m, self.m)
        self.train_set, self.div_set, self.val_set = self._sets(cfg)
        self.bs = int(cfg["batch_size"])
        self.epochs, self.freeze = int(cfg["epochs"]), int(cfg.get("freeze_epochs", 0))
        if not 0 <= self.freeze < self.epochs:
            raise ValueError(f"freeze_epochs must be in [0, epochs), got {self.freeze} of {self.epochs}")
        self.spans = epoch_spans(len(self.train_set), self.epochs, cfg.get("epoch_rows"))
        self.steps = [self.train_set.num_batches(self.bs, drop_last=True, span=sp) for sp in self.spans]
        if min(self.steps) == 0:
            raise ValueError(f"batch_size {self.bs} is larger than the training set ({len(self.train_set)} rows)")
        self.opt = make_optimizer(self.model.flat, cfg["optim"])
        self.lr_at = make_lr(cfg["optim"], self.steps, self.freeze)
        self.digest = digest({"cfg": {k: v for k, v in cfg.items() if k not in NOT_RESULT},
                              "train": self.train_entry["key"]})
        self.ckpt_path = cfg.get("checkpoint_path") or cfg["save_path"] + ".last.pt"
        self.start_epoch, self.start_step, self.history = 0, 0, []
        self.stop = StopFlag()
        self.started = time.time()

    def _sets(self, cfg: dict) -> tuple:
        """The training set, the diversity set and the validation set (the last two optional)."""
        mem = float(cfg.get("max_memory_gb", 4))
        train_set = CachedFeatures(self.train_entry["path"], mem)
        div_name = cfg.get("diversity_set")
        div_set = CachedFeatures(one_set(cfg["cache_dir"], div_name)["path"], mem) if div_name else None
        val_set = CachedFeatures(one_set(cfg["cache_dir"], cfg["val_set"])["path"], mem) if cfg.get("val_set") else None
        if div_set is not None and div_set.num_batches(int(cfg.get("div_batch_size", cfg["batch_size"])), True) == 0:
            raise ValueError(f"div_batch_size is larger than the diversity set {div_name!r} ({len(div_set)} rows)")
        return train_set, div_set, val_set

    def resume(self) -> None:
        """Go on from the checkpoint of an interrupted run of the same config and training set."""
        if not (self.cfg.get("resume", True) and os.path.exists(self.ckpt_path)):
            return
        ckpt = torch.load(self.ckpt_path, map_location=self.device, weights_only=False)
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            print(f"ignoring {self.ckpt_path}: written by an older version of this script", flush=True)
        elif ckpt.get("config_digest") == self.digest:
            self.model.load_state_dict(ckpt["model"])
            self.opt.load_state_dict(ckpt["optimizer"])
            self.start_epoch, self.start_step, self.history = ckpt["epoch"], ckpt["step"], ckpt["history"]
            print(f"resuming from {self.ckpt_path}: epoch {self.start_epoch + 1}, batch {self.start_step}", flush=True)
        else:
            print(f"ignoring {self.ckpt_path}: it was written for another config", flush=True)

    def checkpoint(self, epoch: int, step: int) -> None:
        save_atomic({"format": CHECKPOINT_FORMAT, "config_digest": self.digest, "model": self.model.state_dict(),
                     "optimizer": self.opt.state_dict(), "epoch": epoch, "step": step, "history": self.history},
                    self.ckpt_path)

    def announce(self) -> None:
        spans, freeze = self.spans, self.freeze
        print(f"{self.m} members ({self.model.head['kind']} heads, {self.active_n} active per batch), "
              f"{len(self.train_set)} training rows, {self.steps[0]} batches per epoch"
              + (f" (epochs of {spans[0][1] - spans[0][0]} rows)" if spans[0] != (0, len(self.train_set)) else "")
              + (f", the first {freeze} epoch(s) frozen" if freeze else "") + f", on {self.device}", flush=True)

    def train_epoch(self, epoch: int) -> None:
        cfg, frozen = self.cfg, epoch < self.freeze
        sums = {"loss": 0.0, "ce": 0.0, "div": 0.0}
        n_steps = 0
        skip = self.start_step if epoch == self.start_epoch else 0
        div_batches = self._div_batches(epoch, skip)
        batches = self.train_set.batches(self.bs, seed=cfg["seed"], epoch=epoch, drop_last=True, device=self.device,
                                         skip=skip, span=self.spans[epoch])
        for step, (x, y) in enumerate(batches, start=skip):
            loss, parts = self.train_step(epoch, step, x, y, div_batches, frozen)
            sums["loss"] += loss
            sums["ce"] += parts["ce"]
            sums["div"] += parts["div"]
            n_steps += 1
            self.stop_if_signalled(epoch, step)
        row = {"epoch": epoch + 1, "lr": 0.0 if frozen else self.lr_at(epoch, self.steps[epoch] - 1),
               **{f"train_{k}": v / max(1, n_steps) for k, v in sums.items()}}
        self.end_epoch(epoch, row)

    def _div_batches(self, epoch: int, skip: int):
        """The diversity set's batches of this epoch (endless), past the ``skip`` steps already done."""
        if self.div_set is None:
            return None
        batches = iter(_cycle(self.div_set, int(self.cfg.get("div_batch_size", self.bs)), self.cfg["seed"] + 1,
                              epoch, self.device))
        for _ in range(skip):
            next(batches)
        return batches

    def train_step(self, epoch: int, step: int, x, y, div_batches, frozen: bool) -> tuple[float, dict]:
        """One step on the active members: their loss, and its parts (a frozen epoch changes nothing)."""
        rng = np.random.default_rng([self.cfg["seed"], epoch, step])
        chosen = np.sort(rng.choice(self.m, size=self.active_n, replace=False))
        active = None if self.active_n == self.m else torch.as_tensor(chosen)
        anchor = int(rng.integers(self.active_n))
        rows = self.model.rows(active)            # only these members are differentiated and updated
        if frozen:                                # a frozen epoch measures the loss, changes nothing
            rows = rows.detach()
        if div_batches is not None:
            xd, yd = next(div_batches)
            logits_all = self.model.forward_rows(torch.cat([x, xd]), rows)
            logits, div_logits = logits_all[:, :len(x)], logits_all[:, len(x):]
        else:
            logits, div_logits, yd = self.model.forward_rows(x, rows), None, None
        loss_cfg = self.cfg["loss"]
        loss, parts = sed_loss(logits, y, div_logits, yd, lam=float(loss_cfg["lam"]),
                               lam_manual=float(loss_cfg["lam_manual"]),
                               diversity=loss_cfg.get("diversity", "a2d"), budget=bool(loss_cfg.get("budget")),
                               label_smoothing=float(loss_cfg.get("label_smoothing", 0.0)), anchor=anchor)
        if not frozen:
            loss.backward()
            self.opt.step(rows.grad, active, self.lr_at(epoch, step))
        return loss.item(), parts

    def stop_if_signalled(self, epoch: int, step: int) -> None:
        if self.stop.raised:
            self.checkpoint(epoch, step + 1)
            print(f"stopped by signal {self.stop.raised}; checkpoint saved at epoch {epoch + 1}, "
                  f"batch {step + 1} ({self.ckpt_path})", flush=True)
            sys.exit(128 + self.stop.raised)

    def end_epoch(self, epoch: int, row: dict) -> None:
        if self.val_set is not None:
            row["val_acc"] = ensemble_accuracy(self.model, self.val_set, self.device)
        self.history.append(row)
        report({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()})
        print("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
              + f"  ({time.time() - self.started:.1f} s)", flush=True)
        if (epoch + 1) % int(self.cfg.get("checkpoint_every", 1)) == 0:
            self.checkpoint(epoch + 1, 0)

    def finish(self) -> dict:
        cfg = self.cfg
        save_atomic(self.model.to("cpu").to_file_dict({"backbone_id": self.train_entry["backbone_id"], "config": cfg,
                                                       "train_set": self.train_entry, "history": self.history}),
                    cfg["save_path"])
        if os.path.exists(self.ckpt_path):
            os.remove(self.ckpt_path)        # finished: a rerun of this row trains afresh
        print(f"saved {cfg['save_path']}", flush=True)
        return {"history": self.history}


def _cycle(feats: CachedFeatures, batch_size: int, seed: int, epoch: int, device):
    """Endless shuffled batches (a diversity set may be shorter than the training set)."""
    k = 0
    while True:
        for batch in feats.batches(batch_size, seed=seed, epoch=epoch * 1000 + k, drop_last=True, device=device):
            yield batch
        k += 1


def main(argv=None) -> None:
    train(load_config(__doc__.splitlines()[0], argv))


if __name__ == "__main__":
    main()
