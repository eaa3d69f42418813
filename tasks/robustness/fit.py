"""The baseline line of effective robustness, and each model's distance from it (seed 002).

    line = fit_line(baseline_ref, baseline_shift, scale="probit")   # accuracies in (0, 1)
    lower, predicted, upper = line.predict(ref)                     # the band at these reference accuracies
    er = effective_robustness(line, ref, shift)                     # shift - predicted

In transformed axes (``probit``: Phi^-1, the standard normal quantile; ``logit``: log(a / (1 - a)))
the baselines' shifted accuracy is fitted by least squares as a line of their reference accuracy,
T(shift) = a T(ref) + b. A model's effective robustness is how far above the line it lies, in
accuracy: ER = shift - T^-1(a T(ref) + b).

The band is the (1 - alpha) confidence interval of the line's mean at each x (not a prediction
interval for one more model): T^-1(a x + b -+ t s sqrt(1/n + (x - mean x)^2 / Sxx)), with
t the (1 - alpha/2) quantile of Student's t with n - 2 degrees of freedom, Sxx = sum (x_i - mean
x)^2 and s the residuals' standard error, sqrt(sum residual^2 / (n - 2)) (``interval: exact``).
``interval: authors`` is the authors' robustness_utils.py, whose s uses the population standard
deviation of T(shift) where the sample one belongs: its band is sqrt((n - 1) / n) times as wide.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
from scipy import stats
from scipy.special import expit, logit

SCALES = {"probit": (stats.norm.ppf, stats.norm.cdf), "logit": (logit, expit)}
INTERVALS = ("exact", "authors")


def _accuracies(values, name: str, clip: float | None, transformed: bool = True) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64).ravel()
    if a.size == 0 or not np.isfinite(a).all() or (a < 0).any() or (a > 1).any():
        raise ValueError(f"{name}: accuracies must be finite fractions in [0, 1]")
    if not transformed:
        return a
    if clip is not None:
        return np.clip(a, clip, 1 - clip)
    if ((a <= 0) | (a >= 1)).any():
        raise ValueError(f"{name}: an accuracy of exactly 0 or 1 has no probit / logit; give clip "
                         "(e.g. 0.5 / the number of test samples)")
    return a


@dataclass(frozen=True)
class Line:
    """The fitted line in transformed axes and what its band needs."""
    slope: float
    intercept: float
    scale: str
    n: int
    x_mean: float
    sxx: float
    s: float             # the residuals' standard error (as ``interval`` defines it)
    t: float             # Student's t quantile, n - 2 degrees of freedom
    alpha: float
    clip: float | None = None

    def predict(self, ref) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lower, predicted, upper) shifted accuracy at reference accuracies ``ref``."""
        forward, inverse = SCALES[self.scale]
        x = forward(_accuracies(ref, "ref", self.clip))
        y = self.slope * x + self.intercept
        half = self.t * self.s * np.sqrt(1.0 / self.n + (x - self.x_mean) ** 2 / self.sxx)
        return inverse(y - half), inverse(y), inverse(y + half)


def fit_line(ref, shift, scale: str = "probit", alpha: float = 0.05, interval: str = "exact",
             clip: float | None = None) -> Line:
    """The least-squares line T(shift) = a T(ref) + b over the baselines (see the module docstring)."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}")
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {INTERVALS}, got {interval!r}")
    forward, _ = SCALES[scale]
    x, y = forward(_accuracies(ref, "ref", clip)), forward(_accuracies(shift, "shift", clip))
    n = len(x)
    if n != len(y) or n < 3:
        raise ValueError(f"the line needs at least 3 baselines with both accuracies, got {n} and {len(y)}")
    sxx = float(((x - x.mean()) ** 2).sum())
    if np.ptp(x) == 0 or sxx == 0:              # (the mean of equal numbers can differ from them by rounding)
        raise ValueError("the baselines' reference accuracies are all equal: no line through them")
    slope = float(((x - x.mean()) * (y - y.mean())).sum() / sxx)
    intercept = float(y.mean() - slope * x.mean())
    if interval == "exact":
        s = float(np.sqrt(((y - (slope * x + intercept)) ** 2).sum() / (n - 2)))
    else:
        r = stats.linregress(x, y).rvalue
        s = float(np.std(y) * np.sqrt((1 - r ** 2) * (n - 1) / (n - 2)))
    return Line(slope, intercept, scale, n, float(x.mean()), sxx, s, float(stats.t(n - 2).ppf(1 - alpha / 2)),
                alpha, clip)


def effective_robustness(line: Line, ref, shift) -> np.ndarray:
    """ER = shift - T^-1(a T(ref) + b) per model (accuracy units)."""
    shift = _accuracies(shift, "shift", None, transformed=False)
    predicted = line.predict(ref)[1]
    if len(shift) != len(predicted):
        raise ValueError(f"{len(predicted)} reference accuracies but {len(shift)} shifted ones")
    return shift - predicted


def resolve_clip(clip, samples: int):
    """A config's ``clip``: None (accuracies of 0 or 1 are refused), a number, or ``auto``: half a
    sample, 0.5 / ``samples`` (an accuracy of exactly 0 or 1 is then placed half a sample inside)."""
    if clip == "auto":
        return 0.5 / max(1, int(samples))
    return None if clip is None else float(clip)

