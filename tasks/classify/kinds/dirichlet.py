"""A distilled Dirichlet student: concentrations alpha = exp(z) + model_offset."""
from __future__ import annotations

import math

import torch

from tasks.classify.checkpoints import classifier_from
from tasks.classify.kinds import ModelKind, register_kind
from tasks.metrics.uncertainty import dirichlet_uncertainty


@register_kind
class Dirichlet(ModelKind):
    """``dirichlet_probs``: the predictive distribution scored — ``alpha`` (the Dirichlet's mean,
    alpha / alpha_0) or ``softmax`` (softmax(z), the seed's ``single_model_predictions``). The
    measures are those of Dir(alpha) either way. ``model_offset``: the one the student was trained
    with (recorded in its file), else the option's."""
    name = "dirichlet"
    options = {"dirichlet_probs": ("alpha", "softmax")}

    def __init__(self, saved, device, options=None, network=None):
        super().__init__(saved, device, options, network)
        if len(self.saved) != 1:
            raise ValueError(f"kind 'dirichlet' evaluates one model; {len(self.saved)} were given")
        self.offset = float(self.saved[0].get("distill", {}).get("model_offset", (options or {}).get("model_offset", 0.0)))
        self.choices["model_offset"] = self.offset
        self.net = self.network(lambda: classifier_from(self.saved[0]))

    @classmethod
    def detect(cls, saved):
        return len(saved) == 1 and saved[0].get("distill", {}).get("loss") in ("proxy", "dirichlet_likelihood")

    @property
    def headline_measure(self):
        return "knowledge_uncertainty"

    @torch.no_grad()
    def log_predict(self, x, classes=None):
        z = self.net(x).double()
        alpha = z.clamp(max=80).exp() + self.offset
        measures = dirichlet_uncertainty(alpha.clamp_min(1e-12))
        if self.choices["dirichlet_probs"] == "softmax":
            return (z if classes is None else z[..., classes]).log_softmax(-1), measures
        if self.offset > 0:       # log(exp(z) + offset), without the clamp that keeps alpha finite
            log_alpha = torch.logaddexp(z, torch.tensor(math.log(self.offset), dtype=z.dtype, device=z.device))
        else:
            log_alpha = z if self.offset == 0 else alpha.log()
        if classes is not None:
            log_alpha = log_alpha[..., classes]
        return log_alpha - log_alpha.logsumexp(-1, keepdim=True), measures     # log(alpha / alpha_0)
