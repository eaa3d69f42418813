"""Run the full-scale sheets end to end on a generated ImageNet-shaped tree, with only sizes shrunk.

    python scripts/check_full_scale.py                       # every full-scale sheet
    python scripts/check_full_scale.py --sheets distillation_imagenet --keep /tmp/fullscale

So a GPU user is never the first to run them. In a temporary project (a copy of ``tasks/``,
``default_configs/`` and the sheets) it writes the data the full-scale configs read, in the
layouts they expect — ImageNet train / val as WordNet-id class folders (with a grayscale, a
CMYK and a PNG image among the JPEGs, and the hidden folders archives leave), ImageNet-C as
corruption / severity / class, ImageNet-A and -R as 200-class-style subsets, ImageNet-O,
iNaturalist and OpenImages as folders of images — and a backbone checkpoint in the original
DeiT file format. Then it shrinks what only costs time (epochs, batch sizes, workers, one
device, no fp16 on a CPU, a small network of the same family: ResNet-18 for ResNet-50, a
ViT-Tiny for the DeiT-III-B; the distillation configs' learning rates, which the seed scales
with the batch, scaled with it) and runs each sheet with ``sheetrun run``. Every other value is
the sheet's and the config's own. The table at the end gives each sheet's rows and time; the
exit status is 1 if any row did not complete.
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHEETS = ["caching", "training", "evaluation", "distillation_imagenet"]     # in the order they depend on
CLASSES = 4                      # ImageNet classes in the generated tree
SED_CORRUPTIONS = 15
SEVERITIES = [1, 2, 3, 4, 5]

# value -> what it becomes, by key, wherever the key appears in a full-scale config
SHRINK = {"epochs": 2, "batch_size": 4, "eval_batch_size": 8, "div_batch_size": 4, "num_workers": 0, "devices": 1,
          "epoch_rows": 16, "max_memory_gb": 1}
NETWORKS = {"resnet50": "resnet18", "deit3_base_patch16_224.fb_in22k_ft_in1k": "vit_tiny_patch16_224"}


def imagenet_wnids() -> list:
    from timm.data import ImageNetInfo

    return list(ImageNetInfo().label_names())


def write_image(path: str, rng: np.random.Generator, kind: str = "rgb") -> None:
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    if kind == "gray":
        img = img.convert("L")
    elif kind == "cmyk":
        img = img.convert("CMYK")
    img.save(path)


def make_data(root: str, seed: int = 0) -> None:
    """The folders the full-scale configs read, under ``root``/data/datasets."""
    rng = np.random.default_rng(seed)
    wnids = imagenet_wnids()
    classes = [wnids[i] for i in np.linspace(0, 999, CLASSES).astype(int)]
    data = os.path.join(root, "data", "datasets")
    kinds = ["rgb", "gray", "cmyk"]
    for split, per_class in (("train", 4), ("val", 2)):
        for c, wnid in enumerate(classes):
            for i in range(per_class):
                kind = kinds[(c + i) % 3]
                ext = ".png" if (c, i) == (1, 0) else ".JPEG"
                write_image(os.path.join(data, "ImageNet2012", split, wnid, f"{wnid}_{i}{ext}"), rng, kind)
        write_image(os.path.join(data, "ImageNet2012", split, "__MACOSX", "._junk.JPEG"), rng)
    from tasks.data import IMAGENET_C_CORRUPTIONS

    extra = ["speckle_noise", "gaussian_blur", "spatter", "saturate"]
    for k, corruption in enumerate(list(IMAGENET_C_CORRUPTIONS) + extra):
        for severity in SEVERITIES:                  # one image per set, of a class that varies
            wnid = classes[(k + severity) % len(classes)]
            write_image(os.path.join(data, "imagenet-c", corruption, str(severity), wnid, "a.JPEG"), rng)
    for name in ("imagenet-a", "imagenet-r"):
        for wnid in classes[:2]:
            for i in range(2):
                write_image(os.path.join(data, name, wnid, f"{i}.JPEG"), rng)
    for wnid in (wnids[5], wnids[600]):
        write_image(os.path.join(data, "imagenet-o", wnid, "o.JPEG"), rng)
    for name in ("iNaturalist", "openimages"):
        for i in range(3):
            write_image(os.path.join(data, name, "images", f"{i}.jpg"), rng)


def make_backbone(root: str) -> None:
    """A ViT-Tiny with random weights, saved as the original DeiT-III file ({"model": state_dict})."""
    import timm
    import torch

    torch.manual_seed(0)
    model = timm.create_model(NETWORKS["deit3_base_patch16_224.fb_in22k_ft_in1k"], pretrained=False)
    path = os.path.join(root, "models", "deit3", "deit_3_base_224_21k.pth")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({"model": model.state_dict()}, path)


def shrink(value, key: str = ""):
    """A config with only its sizes changed (see SHRINK and NETWORKS)."""
    if isinstance(value, dict):
        return {k: shrink(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [shrink(v) for v in value]
    if key in SHRINK and isinstance(value, int) and not isinstance(value, bool):
        return min(value, SHRINK[key]) if key != "devices" else SHRINK[key]
    if key == "amp":
        return "none" if isinstance(value, str) else False
    if key == "name" and value in NETWORKS:
        return NETWORKS[value]
    return value


def make_project(root: str) -> None:
    for part in ("tasks", "default_configs", "result_sheets"):
        shutil.copytree(os.path.join(REPO, part), os.path.join(root, part),
                        ignore=shutil.ignore_patterns("__pycache__", ".sheetrun"))
    for folder in ("default_configs/sed/imagenet", "default_configs/distill/imagenet"):
        for name in os.listdir(os.path.join(root, folder)):
            path = os.path.join(root, folder, name)
            with open(path) as f:
                cfg = yaml.safe_load(f)
            small = shrink(cfg)
            if folder.endswith("distill/imagenet") and "lr" in (cfg.get("optim") or {}):
                # the seed's lr is 0.1 x (global batch) / 256: it shrinks with the batch
                small["optim"]["lr"] = cfg["optim"]["lr"] * small["batch_size"] / cfg["batch_size"]
            with open(path, "w") as f:
                yaml.safe_dump(small, f, sort_keys=False)
    make_data(root)
    make_backbone(root)


def run_sheet(root: str, name: str, jobs: int) -> dict:
    sheet = os.path.join(root, "result_sheets", f"{name}.csv")
    subprocess.run([sys.executable, "-m", "runner", "reset", sheet, "--root", root], capture_output=True, check=True)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "runner", "run", sheet, "--root", root, "--jobs", str(jobs)],
                          capture_output=True, text=True, cwd=root, env=dict(os.environ, SHEETRUN_PLAIN="1"))
    seconds = time.monotonic() - started
    with open(sheet, newline="") as f:
        rows = list(csv.DictReader(f))
    failed = [(r.get("name") or r["path_to_main"], r.get("status"), r.get("error", "")) for r in rows
              if r.get("status") != "Completed"]
    return {"sheet": name, "rows": len(rows), "completed": len(rows) - len(failed), "seconds": seconds,
            "failed": failed, "exit": proc.returncode, "stderr": proc.stderr[-2000:]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sheets", default=",".join(SHEETS), help=f"comma-separated, in order (default: {','.join(SHEETS)})")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--keep", help="build the project here and keep it (default: a temporary folder)")
    args = parser.parse_args(argv)
    sys.path.insert(0, REPO)
    root = args.keep or tempfile.mkdtemp(prefix="sheetrun-fullscale-")
    os.makedirs(root, exist_ok=True)
    print(f"project: {root}", flush=True)
    make_project(root)
    results = []
    for name in args.sheets.split(","):
        print(f"running result_sheets/{name}.csv ...", flush=True)
        results.append(run_sheet(root, name.strip(), args.jobs))
        r = results[-1]
        print(f"  {r['completed']}/{r['rows']} rows completed in {r['seconds']:.0f} s", flush=True)
        for row, status, error in r["failed"]:
            print(f"  {row}: {status} {error}", flush=True)
    print("\n| sheet | rows completed | time |\n|---|---|---|")
    for r in results:
        print(f"| {r['sheet']} | {r['completed']} / {r['rows']} | {r['seconds']:.0f} s |")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if all(r["completed"] == r["rows"] and r["exit"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
