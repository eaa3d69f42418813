"""Model kinds: how saved models become predictions and uncertainty measures.

One class per kind, one file per kind (this folder), found by name in :data:`KINDS`:

    from tasks.classify.kinds import create_kind
    kind = create_kind(saved, "auto", device, options)     # saved: the files' dicts; options: the config
    probs, measures = kind(x)                              # [B, K], {measure: [B]}
    log_probs, measures = kind.log_predict(x)              # the same in log space, exact for tiny p
    probs, measures = kind(x, classes)                     # probabilities over ``classes`` only
    kind = create_kind([record], "auto", device, options, network=net)   # a network being trained

The last form is the in-training validation's: ``record`` is what the file will hold, less its
weights, and ``network`` the live network it describes (the kind reads it in place).

A kind subclasses :class:`ModelKind`, sets ``name``, and is registered with
``@register_kind``; ``detect(saved)`` lets ``kind: auto`` pick it (kinds are asked in
:data:`AUTO_ORDER`). Every kind computes in float64 and returns the measures of its full
output (the class subset restricts the probabilities only, as the seeds' authors do).
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch

from tasks.registry import Registry

KINDS: Registry[type] = Registry("model kind", discover="tasks.classify.kinds")   # each module registers its own
AUTO_ORDER: List[str] = ["ensemble", "joint", "mimo", "dirichlet", "single"]
register_kind = KINDS.register()


class ModelKind:
    """A model read for evaluation. ``members``: how many predictions it averages (1: one network)."""

    name = ""
    options: Dict[str, tuple] = {}        # option -> its allowed values, the first the default

    def __init__(self, saved: Sequence[dict], device, options: dict | None = None, network=None):
        self.saved = list(saved)
        self.device = device
        self.given = network
        self.choices = {}
        for option, allowed in self.options.items():
            value = (options or {}).get(option, allowed[0])
            if value not in allowed:
                raise ValueError(f"{option} must be one of {allowed}, got {value!r}")
            self.choices[option] = value
        self.members = 1

    def network(self, build):
        """The network given to the constructor, else ``build()`` moved to the device."""
        return self.given if self.given is not None else build().to(self.device)

    @classmethod
    def detect(cls, saved: Sequence[dict]) -> bool:
        """Whether ``kind: auto`` reads these files as this kind."""
        return False

    @property
    def headline_measure(self) -> str:
        """The uncertainty whose rejection ratio goes into the row."""
        return "knowledge_uncertainty" if self.members > 1 else "confidence"

    def describe(self) -> dict:
        """What was evaluated, for ``eval_metrics.json``."""
        return {"kind": self.name, "members": self.members, **self.choices}

    @torch.no_grad()
    def log_predict(self, x: torch.Tensor, classes: torch.Tensor | None = None):
        """(log-probabilities [B, K] in float64, {measure: [B]}): the prediction's logarithm computed
        as such (log-sum-exp over members), so a likelihood is exact however small it is."""
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, classes: torch.Tensor | None = None):
        """(probabilities [B, K], {measure: [B]})."""
        log_probs, measures = self.log_predict(x, classes)
        return log_probs.exp(), measures


def create_kind(saved: Sequence[dict], kind: str, device, options: dict | None = None, network=None) -> ModelKind:
    """The kind ``kind`` (``auto``: the first of :data:`AUTO_ORDER` that detects the files);
    ``network``: the live network ``saved`` describes, used as it is (in-training validation)."""
    if kind == "auto":
        kind = KINDS.find(lambda k: k.detect(saved), AUTO_ORDER) or "single"
    if kind not in KINDS:
        raise ValueError(f"kind must be auto or one of {KINDS.names()}, got {kind!r}")
    return KINDS.get(kind)(saved, device, options, network)


def known_kinds() -> List[str]:
    return ["auto", *KINDS.names()]
