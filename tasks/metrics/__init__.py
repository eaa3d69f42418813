"""Metrics as pure functions over arrays / tensors (see :mod:`tasks.metrics.ood`)."""
from tasks.metrics.ood import SCORES, all_scores, auroc  # noqa: F401
