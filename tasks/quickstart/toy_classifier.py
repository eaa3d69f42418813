"""A quick sanity task: softmax regression on scikit-learn's digits, in NumPy.

It exists so a new user sees the runner work end to end in seconds: it reads
its config, trains for a few epochs, and reports per-epoch accuracy into its
sheet row while it runs.

    python tasks/quickstart/toy_classifier.py --config default_configs/quickstart/toy_classifier.yaml
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
import yaml
from sklearn.datasets import load_digits

from runner import report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    cfg = yaml.safe_load(open(parser.parse_args().config))
    rng = np.random.default_rng(cfg["seed"])

    x, y = load_digits(return_X_y=True)
    keep = y < cfg["data"]["n_classes"]
    x, y = x[keep] / 16.0, y[keep]
    order = rng.permutation(len(y))
    n_val = int(len(y) * cfg["data"]["val_fraction"])
    val, train = order[:n_val], order[n_val:]
    k = int(y.max()) + 1
    w = np.zeros((x.shape[1], k))
    b = np.zeros(k)
    t = cfg["train"]
    for epoch in range(1, t["epochs"] + 1):
        rng.shuffle(train)
        for start in range(0, len(train), t["batch_size"]):
            idx = train[start:start + t["batch_size"]]
            logits = x[idx] @ w + b
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            p[np.arange(len(idx)), y[idx]] -= 1.0
            w -= t["lr"] * (x[idx].T @ p / len(idx) + t["weight_decay"] * w)
            b -= t["lr"] * p.mean(0)
        val_acc = float(((x[val] @ w + b).argmax(1) == y[val]).mean())
        train_acc = float(((x[train] @ w + b).argmax(1) == y[train]).mean())
        report(epoch=epoch, train_acc=round(train_acc, 4), val_acc=round(val_acc, 4))
    run_dir = os.environ.get("SHEETRUN_RUN_DIR")
    if run_dir:
        np.savez(os.path.join(run_dir, "weights.npz"), w=w, b=b)
    print(json.dumps({"val_acc": val_acc}))


if __name__ == "__main__":
    main()
