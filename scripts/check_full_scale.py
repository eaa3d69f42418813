"""Run the full-scale sheets end to end on a generated ImageNet-shaped tree, with only sizes shrunk.

    python scripts/check_full_scale.py                       # every full-scale sheet
    python scripts/check_full_scale.py --sheets distillation_imagenet --keep /tmp/fullscale

So a GPU user is never the first to run them. In a temporary project (a copy of ``tasks/``, ``scripts/``,
``default_configs/`` and the sheets) it writes the data the full-scale configs read, in the
layouts they expect — ImageNet train / val as WordNet-id class folders (with a grayscale, a
CMYK and a PNG image among the JPEGs, and the hidden folders archives leave), ImageNet-C as
corruption / severity / class, ImageNet-A and -R as 200-class-style subsets, ImageNet-O,
iNaturalist and OpenImages as folders of images; CIFAR-10 / -100 as their pickled "python
version" batches, CIFAR-10-C / -100-C as one ``.npy`` per corruption, TinyImageNet with its
``wnids.txt`` and ``val_annotations.txt``, TinyImageNet-C as corruption / severity / wnid — and a
backbone checkpoint in the original DeiT file format. Then it shrinks what only costs time
(epochs, batch sizes, workers, one device, no fp16 on a CPU, a small network of the same family:
ResNet-18 for ResNet-50, a ViT-Tiny for the DeiT-III-B, FoRDE's ResNets at width 8 with 3
members; the distillation configs' learning rates, which the seed scales with the batch, scaled
with it; TinyImageNet at 32 x 32, so its PCA's eigen-decomposition is 3072², not 12288²) and
runs each sheet with ``sheetrun run``. Every other value is
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
SHEETS = ["caching", "training", "evaluation", "distillation_imagenet", "forde_full_scale"]  # in dependency order
CLASSES = 4                      # ImageNet classes in the generated tree
SED_CORRUPTIONS = 15
SEVERITIES = [1, 2, 3, 4, 5]

# value -> what it becomes, by key, wherever the key appears in a full-scale config
SHRINK = {"epochs": 2, "batch_size": 4, "eval_batch_size": 8, "div_batch_size": 4, "num_workers": 0, "devices": 1,
          "epoch_rows": 16, "max_memory_gb": 1}
NETWORKS = {"resnet50": "resnet18", "deit3_base_patch16_224.fb_in22k_ft_in1k": "vit_tiny_patch16_224"}
# FoRDE's configs shrink these too: narrower ResNets, fewer members, TinyImageNet at CIFAR's size
FORDE_SHRINK = {"width": 8, "joint_members": 3, "size": 32}
FOLDERS = {"default_configs/sed/imagenet": {}, "default_configs/distill/imagenet": {},
           "default_configs/forde/full_scale": FORDE_SHRINK}
SMALL_SIDE = 32


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


def write_pickle(path: str, content: dict) -> None:
    import pickle

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(content, f)


def forde_corruptions(setting: str) -> list:
    """The corruptions the FoRDE evaluation config of ``setting`` reads."""
    with open(os.path.join(REPO, "default_configs", "forde", "full_scale", f"{setting}_evaluate.yaml")) as f:
        return yaml.safe_load(f)["data"]["domains"]["C"]["corruptions"]


def make_cifar_data(root: str, seed: int = 1) -> None:
    """CIFAR-10 / -100 ("python version") and CIFAR-10-C / -100-C (2 images per severity)."""
    rng = np.random.default_rng(seed)
    data = os.path.join(root, "data")
    for classes, folder, names, key in ((10, "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)]
                                         + ["test_batch"], b"labels"),
                                        (100, "cifar-100-python", ["train", "test"], b"fine_labels")):
        for name in names:
            n = 2 if classes == 10 and name != "test_batch" else 8          # 8 training images either way
            write_pickle(os.path.join(data, folder, name), {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                                                            key: rng.integers(0, classes, n).tolist()})
        c_root = os.path.join(data, f"CIFAR-{classes}-C")
        os.makedirs(c_root, exist_ok=True)
        np.save(os.path.join(c_root, "labels.npy"), rng.integers(0, classes, 5 * 2))
        for corruption in forde_corruptions(f"cifar{classes}"):
            np.save(os.path.join(c_root, f"{corruption}.npy"), rng.integers(0, 256, (5 * 2, 32, 32, 3), dtype=np.uint8))


def make_tiny_imagenet(root: str, seed: int = 2) -> None:
    """TinyImageNet (200 wnids, images for 4 of them) and TinyImageNet-C, at 32 x 32 (see FORDE_SHRINK)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    wnids = imagenet_wnids()[::5]
    tiny = os.path.join(root, "data", "tiny-imagenet-200")

    def image(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (SMALL_SIDE, SMALL_SIDE, 3), dtype=np.uint8)).save(path)

    os.makedirs(tiny, exist_ok=True)
    with open(os.path.join(tiny, "wnids.txt"), "w") as f:
        f.write("\n".join(wnids) + "\n")
    annotations = []
    for k, wnid in enumerate(wnids):
        os.makedirs(os.path.join(tiny, "train", wnid, "images"), exist_ok=True)
        if k % 50 == 0:
            for i in range(2):
                image(os.path.join(tiny, "train", wnid, "images", f"{wnid}_{i}.JPEG"))
            image(os.path.join(tiny, "val", "images", f"val_{k}.JPEG"))
            annotations.append(f"val_{k}.JPEG\t{wnid}\t0\t0\t{SMALL_SIDE}\t{SMALL_SIDE}\n")
    with open(os.path.join(tiny, "val", "val_annotations.txt"), "w") as f:
        f.writelines(annotations)
    for corruption in forde_corruptions("tinyimagenet"):
        for severity in SEVERITIES:
            image(os.path.join(root, "data", "Tiny-ImageNet-C", corruption, str(severity),
                               wnids[(7 * severity) % len(wnids)], "a.JPEG"))


def make_backbone(root: str) -> None:
    """A ViT-Tiny with random weights, saved as the original DeiT-III file ({"model": state_dict})."""
    import timm
    import torch

    torch.manual_seed(0)
    model = timm.create_model(NETWORKS["deit3_base_patch16_224.fb_in22k_ft_in1k"], pretrained=False)
    path = os.path.join(root, "models", "deit3", "deit_3_base_224_21k.pth")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({"model": model.state_dict()}, path)


def shrink(value, key: str = "", extra: dict = None):
    """A config with only its sizes changed (see SHRINK, NETWORKS and, where given, ``extra``)."""
    sizes = {**SHRINK, **(extra or {})}
    if isinstance(value, dict):
        return {k: shrink(v, k, extra) for k, v in value.items()}
    if key == "input_size" and extra and isinstance(value, list):
        return value[:1] + [min(int(v), SMALL_SIDE) for v in value[1:]]
    if isinstance(value, list):
        return [shrink(v, "", extra) for v in value]
    if key in sizes and isinstance(value, int) and not isinstance(value, bool):
        return min(value, sizes[key]) if key != "devices" else sizes[key]
    if key == "amp":
        return "none" if isinstance(value, str) else False
    if key == "name" and value in NETWORKS:
        return NETWORKS[value]
    return value


def make_project(root: str) -> None:
    for part in ("tasks", "default_configs", "result_sheets", "scripts"):
        shutil.copytree(os.path.join(REPO, part), os.path.join(root, part),
                        ignore=shutil.ignore_patterns("__pycache__", ".sheetrun"))
    for folder, extra in FOLDERS.items():
        for name in os.listdir(os.path.join(root, folder)):
            path = os.path.join(root, folder, name)
            with open(path) as f:
                cfg = yaml.safe_load(f)
            small = shrink(cfg, extra=extra)
            if folder.endswith("distill/imagenet") and "lr" in (cfg.get("optim") or {}):
                # the seed's lr is 0.1 x (global batch) / 256: it shrinks with the batch
                small["optim"]["lr"] = cfg["optim"]["lr"] * small["batch_size"] / cfg["batch_size"]
            with open(path, "w") as f:
                yaml.safe_dump(small, f, sort_keys=False)
    make_data(root)
    make_cifar_data(root)
    make_tiny_imagenet(root)
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
