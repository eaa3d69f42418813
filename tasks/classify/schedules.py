"""Learning-rate schedules as pure functions of the step: lr(step) = base_lr x factor(step).

``make_schedule(cfg, steps_per_epoch, epochs)`` reads ``cfg["name"]`` from
:data:`SCHEDULES` (a registry); every schedule takes ``warmup_epochs`` (a
linear ramp from ~0 to 1 over that many epochs' steps, then the schedule,
which starts from its own step 0):

- ``constant``: 1;
- ``step``: gamma ** (number of ``milestones`` (epochs) passed);
- ``cosine``: (1 + cos(pi t / T)) / 2 over the steps after warm-up, down to ``min_factor``;
- ``flat_linear_flat``: 1 until ``flat_until`` of the run, then linearly to ``final_factor``
  at ``linear_until``, then flat (fractions of the post-warm-up steps);
- ``ignite_warmup``: what the Jacobian-statistics authors' warm-up gives (seed 003's train.py:
  pytorch-ignite 0.4.9's ``create_lr_scheduler_with_warmup`` over ``duration`` epochs from
  ``start_factor`` x lr, then ``MultiplicativeLR`` by 1). Set once per epoch, it rises by
  (1 - start_factor) / (duration - 1) per epoch and stops one rise short of 1, where it stays:
  start 0.001, lr 0.005, 5 epochs -> 0.001, 0.002, 0.003, 0.004, 0.004, ... (ignite shortens its
  last milestone so the rate after it is not repeated, and MultiplicativeLR then keeps the rate
  it finds). Its own warm-up: ``warmup_epochs`` must be 0.

``per_epoch: true`` holds each epoch's factor for all its steps: the factor of the epoch's first
step (the FoRDE authors set the rate once per epoch, at t = epoch / epochs).
"""
from __future__ import annotations

import math
from typing import Callable

from tasks.registry import Registry

Factor = Callable[[int], float]
SCHEDULES: Registry[Callable[..., Factor]] = Registry("schedule", key="schedule.name")
schedule = SCHEDULES.register


@schedule("constant")
def _constant(cfg: dict, total: int, steps_per_epoch: int) -> Factor:
    return lambda t: 1.0


@schedule("step")
def _step(cfg: dict, total: int, steps_per_epoch: int) -> Factor:
    milestones = [int(m) * steps_per_epoch for m in cfg.get("milestones", [])]
    gamma = float(cfg.get("gamma", 0.1))
    return lambda t: gamma ** sum(t >= m for m in milestones)


@schedule("cosine")
def _cosine(cfg: dict, total: int, steps_per_epoch: int) -> Factor:
    lo = float(cfg.get("min_factor", 0.0))
    return lambda t: lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * min(1.0, t / max(1, total))))


@schedule("flat_linear_flat")
def _flat_linear_flat(cfg: dict, total: int, steps_per_epoch: int) -> Factor:
    a, b = float(cfg.get("flat_until", 0.5)), float(cfg.get("linear_until", 0.9))
    final = float(cfg.get("final_factor", 0.01))
    if not 0 <= a <= b <= 1:
        raise ValueError(f"schedule needs 0 <= flat_until <= linear_until <= 1, got {a}, {b}")

    def factor(t: int) -> float:
        x = t / max(1, total)
        if x <= a:
            return 1.0
        if x >= b or b == a:
            return final
        return 1.0 + (final - 1.0) * (x - a) / (b - a)
    return factor


@schedule("ignite_warmup")
def _ignite_warmup(cfg: dict, total: int, steps_per_epoch: int) -> Factor:
    start, duration = float(cfg.get("start_factor", 0.2)), int(cfg.get("duration", 5))
    if duration < 2 or not 0 < start <= 1:
        raise ValueError(f"ignite_warmup needs duration >= 2 and 0 < start_factor <= 1, got {duration}, {start}")
    if float(cfg.get("warmup_epochs", 0)):
        raise ValueError("ignite_warmup is its own warm-up: leave warmup_epochs at 0")
    rise = (1.0 - start) / (duration - 1)
    return lambda t: start + rise * min(t // steps_per_epoch, duration - 2)


def make_schedule(cfg: dict, steps_per_epoch: int, epochs: int) -> Factor:
    """factor(global step) for the schedule ``cfg`` (see the module docstring)."""
    name = cfg.get("name", "cosine")
    make = SCHEDULES.get(name)
    warmup = int(round(float(cfg.get("warmup_epochs", 0)) * steps_per_epoch))
    total = steps_per_epoch * epochs - warmup
    after = make(cfg, max(1, total), steps_per_epoch)
    if name == "step":            # milestones count epochs from the start of the run
        factor = lambda t: ((t + 1) / warmup if t < warmup else 1.0) * after(t)  # noqa: E731
    else:
        factor = lambda t: (t + 1) / warmup if t < warmup else after(t - warmup)  # noqa: E731
    if cfg.get("per_epoch"):
        return lambda t: factor(t // steps_per_epoch * steps_per_epoch)
    return factor
