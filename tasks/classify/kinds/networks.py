"""The kinds that are networks scored by their softmax: one network, an ensemble of files, members
trained jointly in one file, one MIMO network, and an ensemble read through its proxy Dirichlet."""
from __future__ import annotations

import math

import torch

from tasks.classify.checkpoints import classifier_from, ensemble_from, joint_members, mimo_members
from tasks.classify.kinds import ModelKind, register_kind
from tasks.metrics.uncertainty import dirichlet_uncertainty, ensemble_uncertainty, proxy_dirichlet


class _Softmax(ModelKind):
    """Member logits [M, B, K] -> the mean of the members' softmax, and the ensemble measures."""

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def measures(self, probs: torch.Tensor) -> dict:
        return ensemble_uncertainty(probs)

    @torch.no_grad()
    def log_predict(self, x, classes=None):
        """log (1/M) Σ_m softmax(z_m) = logsumexp_m log_softmax(z_m) − log M."""
        logits = self.member_logits(x).double()
        measures = self.measures(logits.softmax(-1))
        if classes is not None:
            logits = logits[..., classes]
        return logits.log_softmax(-1).logsumexp(0) - math.log(logits.shape[0]), measures


@register_kind
class Single(_Softmax):
    name = "single"

    def __init__(self, saved, device, options=None, network=None):
        super().__init__(saved, device, options, network)
        if len(self.saved) != 1:
            raise ValueError(f"kind 'single' evaluates one model; {len(self.saved)} were given")
        self.net = self.network(lambda: classifier_from(self.saved[0]))

    def member_logits(self, x):
        return self.net(x).unsqueeze(0)


@register_kind
class Ensemble(_Softmax):
    name = "ensemble"

    def __init__(self, saved, device, options=None, network=None):
        super().__init__(saved, device, options, network)
        self.net = self.network(lambda: ensemble_from(self.saved))
        self.members = len(self.saved)

    @classmethod
    def detect(cls, saved):
        return len(saved) > 1

    def member_logits(self, x):
        return self.net(x)


@register_kind
class Joint(_Softmax):
    """One file holding M members trained as one network (``model.joint_members``: tasks/forde),
    scored as an ensemble: the mean of the members' softmax, the ensemble measures."""
    name = "joint"

    def __init__(self, saved, device, options=None, network=None):
        super().__init__(saved, device, options, network)
        if len(self.saved) != 1 or joint_members(self.saved[0]["model"]) < 1:
            raise ValueError("kind 'joint' evaluates one file of jointly trained members (model.joint_members)")
        self.net = self.network(lambda: classifier_from(self.saved[0]))
        self.members = self.net.members

    @classmethod
    def detect(cls, saved):
        return len(saved) == 1 and joint_members(saved[0]["model"]) > 0

    def member_logits(self, x):
        return self.net(x)


@register_kind
class Proxy(Ensemble):
    """An ensemble read through its proxy Dirichlet (:func:`tasks.metrics.uncertainty.proxy_dirichlet`)."""
    name = "proxy"

    @classmethod
    def detect(cls, saved):
        return False

    def measures(self, probs):
        return dirichlet_uncertainty(proxy_dirichlet(probs))


@register_kind
class Mimo(_Softmax):
    """One MIMO network. ``mimo_combine``: ``probabilities`` — the members' softmax averaged, with the
    ensemble measures; ``logits`` — the seed's ``mimo_predictions``: the members' logits averaged,
    softmax(z̄) the prediction, the measures those of Dir(exp(z̄))."""
    name = "mimo"
    options = {"mimo_combine": ("probabilities", "logits")}

    def __init__(self, saved, device, options=None, network=None):
        super().__init__(saved, device, options, network)
        if len(self.saved) != 1 or mimo_members(self.saved[0]["model"]) < 1:
            raise ValueError("kind 'mimo' evaluates one MIMO model")
        self.net = self.network(lambda: classifier_from(self.saved[0]))
        self.members = self.net.members

    @classmethod
    def detect(cls, saved):
        return len(saved) == 1 and mimo_members(saved[0]["model"]) > 1

    def member_logits(self, x):
        m = self.members
        return self.net(x.unsqueeze(1).expand(-1, m, *x.shape[1:])).transpose(0, 1)

    @torch.no_grad()
    def log_predict(self, x, classes=None):
        if self.choices["mimo_combine"] == "probabilities":
            return super().log_predict(x, classes)
        z = self.member_logits(x).double().mean(0)
        measures = dirichlet_uncertainty(z.clamp(max=80).exp().clamp_min(1e-12))
        return (z if classes is None else z[..., classes]).log_softmax(-1), measures
