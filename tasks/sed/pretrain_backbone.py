"""Train a timm backbone on the in-distribution training split and save it under models/.

    python tasks/sed/pretrain_backbone.py --config default_configs/sed/pretrain_backbone.yaml

The offline stand-in for downloading pretrained weights: the SED pipeline
needs a backbone whose frozen features are good on in-distribution data. Real
runs skip this task and point ``backbone.checkpoint`` at a local weights file
(e.g. DeiT3-B). The saved file records the timm model name and arguments, so
``tasks.sed.backbones.load_backbone`` rebuilds the model from it alone.
Reports per-epoch loss and accuracy into the sheet row.
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from runner import report
from tasks.common import load_config, pick_device, save_atomic
from tasks.data import build_set
from tasks.sed.backbones import BACKBONE_FORMAT


def evaluate(model, loader, device) -> float:
    model.eval()
    correct = total = 0
    with torch.inference_mode():
        for images, labels, _ in loader:
            correct += (model(images.to(device)).argmax(1).cpu() == labels).sum().item()
            total += len(labels)
    return correct / max(total, 1)


def main(argv=None) -> None:
    import timm

    cfg = load_config(__doc__.splitlines()[0], argv)
    device = pick_device(cfg.get("device", "auto"))
    if device.type == "cpu" and cfg.get("threads"):
        # Threads split float sums differently, and 30 epochs turn that into another backbone: a
        # fixed count trains the same one whatever the machine's cores or the runner's budget.
        torch.set_num_threads(int(cfg["threads"]))
    torch.manual_seed(cfg["seed"])

    m, t = cfg["model"], cfg["train"]
    size = int(m["image_size"])
    overlay = {"input_size": [3, size, size], "mean": list(m["mean"]), "std": list(m["std"]),
               "crop_pct": 1.0, "interpolation": "bilinear", "num_classes": int(m["num_classes"])}
    kwargs = dict(m.get("kwargs") or {}, img_size=size, num_classes=int(m["num_classes"]),
                  pretrained_cfg_overlay=overlay)
    model = timm.create_model(m["name"], pretrained=False, **kwargs).to(device)
    data_cfg = {"input_size": [3, size, size], "mean": m["mean"], "std": m["std"]}
    train_set, _ = build_set(dict(cfg["train_set"], augment=True), data_cfg)
    val_set, _ = build_set(cfg["val_set"], data_cfg)
    g = torch.Generator().manual_seed(cfg["seed"])
    train_loader = DataLoader(train_set, batch_size=t["batch_size"], shuffle=True, generator=g, drop_last=True)
    val_loader = DataLoader(val_set, batch_size=256)

    opt = torch.optim.AdamW(model.parameters(), lr=t["lr"], weight_decay=t["weight_decay"])
    steps = t["epochs"] * len(train_loader)
    warmup = t.get("warmup_epochs", 0) * len(train_loader)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup))))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{m['name']} ({n_params / 1e6:.2f} M parameters) on {len(train_set)} images, {device}", flush=True)
    start = time.time()
    for epoch in range(1, t["epochs"] + 1):
        model.train()
        loss_sum = n = 0
        for images, labels, _ in train_loader:
            images, labels = images.to(device), labels.to(device)
            loss = F.cross_entropy(model(images), labels, label_smoothing=t.get("label_smoothing", 0.0))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(labels)
            n += len(labels)
        val_acc = evaluate(model, val_loader, device)
        report(epoch=epoch, train_loss=round(loss_sum / n, 4), val_acc=round(val_acc, 4))
        print(f"epoch {epoch:3d}  loss {loss_sum / n:.4f}  val_acc {val_acc:.4f}  "
              f"({time.time() - start:.0f} s)", flush=True)

    save_atomic({"format": BACKBONE_FORMAT, "name": m["name"], "kwargs": kwargs,
                 "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "val_acc": val_acc},
                cfg["save_path"])
    print(f"saved {cfg['save_path']}")


if __name__ == "__main__":
    main()
