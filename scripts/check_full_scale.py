"""Run the full-scale sheets end to end on a generated ImageNet-shaped tree, with only sizes shrunk.

    python scripts/check_full_scale.py                       # every full-scale sheet
    python scripts/check_full_scale.py --sheets distillation_imagenet --keep /tmp/fullscale

So a GPU user is never the first to run them. In a temporary project (a copy of ``tasks/``, ``scripts/``,
``default_configs/`` and the sheets) it writes the data the full-scale configs read, in the
layouts they expect — ImageNet train / val as WordNet-id class folders (with a grayscale, a
CMYK and a PNG image among the JPEGs, and the hidden folders archives leave), ImageNet-C as
corruption / severity / class, ImageNet-A and -R as 200-class-style subsets, ImageNet-V2 as folders
named by class index, ImageNet-Sketch as WordNet-id folders, ImageNet-O,
iNaturalist and OpenImages as folders of images; CIFAR-10 / -100 as their pickled "python
version" batches, CIFAR-10-C / -100-C as one ``.npy`` per corruption, TinyImageNet with its
``wnids.txt`` and ``val_annotations.txt``, TinyImageNet-C as corruption / severity / wnid — a
backbone checkpoint in the original DeiT file format, and the published weights seed 002's sheets
read as timm's ``.safetensors`` files. Then it shrinks what only costs time
(epochs, batch sizes, workers, one device, no fp16 on a CPU, a small network of the same family:
ResNet-18 for ResNet-50, a ViT-Tiny for the DeiT-III-B, FoRDE's ResNets at width 8 with 3
members; the distillation configs' learning rates, which the seed scales with the batch, scaled
with it; TinyImageNet at 32 x 32, so its PCA's eigen-decomposition is 3072², not 12288²; seed 002's
ViTs as ViT-Tiny at 32 x 32, its baseline 85 epochs (the sheets' snapshot rows past it dropped), and 5 of the
133 published models its split sheet evaluates) and runs each sheet with ``sheetrun run``. Every other value is
the sheet's and the config's own. The table at the end gives each sheet's rows and time; the
exit status is 1 if any row did not complete.
"""
from __future__ import annotations

import argparse
import csv
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHEETS = ["caching", "training", "evaluation", "distillation_imagenet", "forde_full_scale",
          "robustness_imagenet_out_of_support", "robustness_imagenet_split"]  # in dependency order
CLASSES = 4                      # ImageNet classes in the generated tree
SED_CORRUPTIONS = 15
SEVERITIES = [1, 2, 3, 4, 5]

# value -> what it becomes, by key, wherever the key appears in a full-scale config
SHRINK = {"epochs": 2, "batch_size": 4, "eval_batch_size": 8, "div_batch_size": 4, "num_workers": 0, "devices": 1,
          "epoch_rows": 16, "max_memory_gb": 1}
NETWORKS = {"resnet50": "resnet18", "deit3_base_patch16_224.fb_in22k_ft_in1k": "vit_tiny_patch16_224",
            "vit_base_patch32_clip_224": "vit_tiny_patch16_224", "vit_base_patch32_clip_quickgelu_224": "vit_tiny_patch16_224",
            "vit_base_patch32_224": "vit_tiny_patch16_224", "vit_large_patch14_clip_224": "vit_tiny_patch16_224",
            "ViT-B-32-quickgelu": "sheetrun-tiny-clip"}       # open_clip's, for the zero-shot head's text tower
# FoRDE's configs shrink these too: narrower ResNets, fewer members, TinyImageNet at CIFAR's size
FORDE_SHRINK = {"width": 8, "joint_members": 3, "size": 32}
# seed 002's: ViTs at 32 x 32 (2 x 2 patches); its baseline trains 85 epochs and the snapshot rows past it are dropped
# (on 16 random-noise images the ER rows need snapshots whose accuracies differ, which the 85-epoch run's do)
# (and CLIP's text tower as a 1-layer open_clip model of the same embedding size, described by model_config)
TINY_CLIP = "models/pretrained/sheetrun-tiny-clip.json"
ROBUSTNESS_SHRINK = {"size": 32, "resize": 36, "img_size": 32, "epochs": 85, "model_config": TINY_CLIP}
FOLDERS = {"default_configs/sed/imagenet": {}, "default_configs/distill/imagenet": {},
           "default_configs/forde/full_scale": FORDE_SHRINK, "default_configs/robustness/full_scale": ROBUSTNESS_SHRINK}
# the published models of robustness_imagenet_split.csv kept (3 baselines fix a line; 2 pre-trained)
PUBLISHED_KEPT = ("resnet18.a1_in1k", "resnet34.a1_in1k", "legacy_seresnet18.in1k", "resnet18.fb_swsl_ig1b_ft_in1k",
                  "resnet50.fb_swsl_ig1b_ft_in1k")
# the published weights the robustness configs read, as (file, classes of its head), made as ViT-Tiny at 32 x 32
ROBUSTNESS_WEIGHTS = (("models/pretrained/vit_base_patch32_clip_quickgelu_224.openai.safetensors", 512),
                      ("models/pretrained/vit_base_patch32_224.augreg_in21k.safetensors", 21843),
                      ("models/pretrained/vit_large_patch14_clip_224.laion2b.safetensors", 768))
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
    for name, count in (("imagenet-a", 2), ("imagenet-r", 6)):
        for wnid in classes[:2]:
            for i in range(count):
                write_image(os.path.join(data, name, wnid, f"{i}.JPEG"), rng)
    # ImageNet-V2 (folders by class index) and -Sketch; 16 images each, so that the domain classifiers'
    # 9/10 tuning split (of 16 ImageNet + 16 shifted images) holds out both kinds and its AUROC is defined
    for c, wnid in enumerate(classes):
        for i in range(4):
            write_image(os.path.join(data, "imagenetv2-matched-frequency-format-val", str(wnids.index(wnid)),
                                     f"{i}.jpeg"), rng)
            write_image(os.path.join(data, "imagenet-sketch", wnid, f"{i}.JPEG"), rng, kinds[(c + i) % 3])
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


def make_robustness_weights(root: str) -> None:
    """Seed 002's published weights as timm's .safetensors files, of the shrunk networks: ViT-Tiny at
    32 x 32 with the published heads' sizes, and the kept published ImageNet models at their size."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    for path, classes in ROBUSTNESS_WEIGHTS:
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=classes,
                                  img_size=ROBUSTNESS_SHRINK["img_size"])
        os.makedirs(os.path.dirname(os.path.join(root, path)), exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(root, path))
    import json

    import open_clip

    tiny = {"embed_dim": 512, "quick_gelu": True, "vision_cfg": {"image_size": 32, "layers": 1, "width": 64,
                                                                 "patch_size": 16},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}
    with open(os.path.join(root, TINY_CLIP), "w") as f:
        json.dump(tiny, f)
    open_clip.add_model_config(os.path.join(root, TINY_CLIP))
    import logging

    logging.getLogger().setLevel(logging.ERROR)       # open_clip says that a model without weights has none
    torch.save(open_clip.create_model("sheetrun-tiny-clip").state_dict(),
               os.path.join(root, "models", "pretrained", "open_clip_ViT-B-32-quickgelu.openai.bin"))
    for name in PUBLISHED_KEPT:
        model = timm.create_model(name.split(".")[0], pretrained=False)
        os.makedirs(os.path.join(root, "models", "timm"), exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  os.path.join(root, "models", "timm", f"{name}.safetensors"))


def drop_rows(path: str, dropped: set) -> None:
    """The sheet at ``path`` without the rows named in ``dropped`` (nor their mention in depends_on)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
        columns = list(rows[0])
    kept = [r for r in rows if r["name"] not in dropped]
    for row in kept:
        row["depends_on"] = ", ".join(t.strip() for t in row["depends_on"].split(",") if t.strip() and t.strip() not in dropped)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)


def keep_published(path: str) -> None:
    """robustness_imagenet_split.csv with only the rows of the PUBLISHED_KEPT models (and no mention
    of the others in depends_on): fewer published models, the one size of that sheet that is a row count."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    dropped = set()
    for row in rows:
        model = row["name"].split(" ", 1)[1] if row["name"].startswith(("import ", "baseline ", "pre-trained ")) else ""
        if row["path_to_main"] in ("tasks/classify/import_weights.py", "tasks/classify/evaluate.py") \
                and model not in PUBLISHED_KEPT:
            dropped.add(row["name"])
    drop_rows(path, dropped)


def shrink(value, key: str = "", extra: dict = None):
    """A config with only its sizes changed (see SHRINK, NETWORKS and, where given, ``extra``)."""
    sizes = {**SHRINK, **(extra or {})}
    if isinstance(value, dict):
        return {k: shrink(v, k, extra) for k, v in value.items()}
    if key == "keep_checkpoints" and isinstance(value, list) and "epochs" in sizes:
        return [e for e in value if int(e) <= sizes["epochs"]]          # snapshots the shrunk run reaches
    if key == "input_size" and extra and isinstance(value, list):
        return value[:1] + [min(int(v), SMALL_SIDE) for v in value[1:]]
    if isinstance(value, list):
        return [shrink(v, "", extra) for v in value]
    if key in sizes and isinstance(value, int) and not isinstance(value, bool):
        return min(value, sizes[key]) if key != "devices" else sizes[key]
    if key == "amp":
        return "none" if isinstance(value, str) else False
    if key == "model_config" and "model_config" in sizes:
        return sizes["model_config"]
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
    keep_published(os.path.join(root, "result_sheets", "robustness_imagenet_split.csv"))
    for path in glob.glob(os.path.join(root, "result_sheets", "robustness_imagenet_*.csv")):
        # the baseline's snapshots past the shrunk epochs are not there to evaluate
        drop_rows(path, {f"baseline epoch {e}" for e in range(ROBUSTNESS_SHRINK["epochs"] + 1, 101)})
    make_data(root)
    make_robustness_weights(root)
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
