"""Full-scale datasets read from image folders.

- ``image_folder``: an ImageFolder tree, ``<root>/<class>/<image>`` (ImageNet
  train / val). Classes are ImageNet's 1000 WordNet ids in timm's order when
  ``classes: imagenet`` (the default when the folder names are wnids), else the
  sorted folder names.
- ``imagenet_c``: the ImageNet-C layout ``<root>/<corruption>/<severity>/<class>/<image>``.
- ``class_subset``: ImageNet-A / ImageNet-R style: a folder with a subset (200)
  of the classes. Labels are indices into the full class list, and the set
  records which classes it covers, so evaluation can restrict the logits to them.
- ``ood_folder``: any folder of images (iNaturalist, OpenImages, ...), searched
  recursively; every label is -1.
- ``objectnet``: ObjectNet as distributed (``images/<folder>/`` and ``mappings/``): the images of
  the 113 classes that match ImageNet classes, labelled by ObjectNet class; each of those stands for
  one or more ImageNet classes (:class:`ObjectNetImages`).
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

from torch.utils.data import Dataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def imagenet_classes() -> List[str]:
    """ImageNet-1k WordNet ids in the standard (timm / torchvision) label order."""
    from timm.data import ImageNetInfo

    return list(ImageNetInfo().label_names())


def is_system_folder(name: str) -> bool:
    """Folders no dataset means as a class: hidden ones (``.ipynb_checkpoints``, ``.DS_Store``),
    macOS archive leftovers (``__MACOSX``) and ``lost+found``."""
    return name.startswith((".", "__")) or name == "lost+found"


def class_list(spec, folder_names: Sequence[str]) -> List[str]:
    """The full class list a folder's labels index into.

    ``spec`` is ``"imagenet"``, a list of names, a path to a text file with one
    name per line, or None: ImageNet's when the folders are ImageNet wnids, the
    sorted folder names when none is. Folders of which some are wnids and some
    not are refused (one stray folder must not silently relabel a dataset).
    """
    if spec is None:
        names = imagenet_classes()
        known = set(names)
        wnids = [f for f in folder_names if f in known]
        if not wnids:
            return sorted(folder_names)
        others = [f for f in folder_names if f not in known]
        if others:
            raise ValueError(f"class folders {', '.join(others[:5])} are not ImageNet WordNet ids, while "
                             f"{len(wnids)} others are: move them out of the dataset, or give 'classes' "
                             "(imagenet, a list, or a file of names)")
        return names
    if spec == "imagenet":
        return imagenet_classes()
    if isinstance(spec, str):
        with open(spec, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    return [str(c) for c in spec]


def list_images(root: str) -> List[str]:
    """Every image file under ``root``, recursively, in a stable (sorted) order."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder not found: {root}")
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not is_system_folder(d))
        found += [os.path.join(folder, f) for f in sorted(files) if f.lower().endswith(IMAGE_EXTENSIONS)]
    return found


def labelled_images(root: str, classes=None) -> Tuple[List[Tuple[str, int]], List[int]]:
    """``(path, label)`` pairs of a ``<root>/<class>/...`` tree, and the labels present."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder not found: {root}")
    folders = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not is_system_folder(d))
    if not folders:
        flat = flat_imagenet_val(root, classes)
        if flat is not None:
            return flat
        raise ValueError(f"{root} has no class folders (expected <root>/<class>/<image>, or ImageNet val as "
                         f"distributed: its images in one folder with LOC_val_solution.csv (Kaggle) or the devkit's "
                         f"ILSVRC2012_validation_ground_truth.txt and meta.mat beside them)")
    names = class_list(classes, folders)
    index = {name: i for i, name in enumerate(names)}
    unknown = [f for f in folders if f not in index]
    if unknown:
        raise ValueError(f"{root}: class folders not in the class list: {', '.join(unknown[:5])}")
    samples = [(path, index[f]) for f in folders for path in list_images(os.path.join(root, f))]
    if not samples:
        raise ValueError(f"{root} has class folders but no images")
    return samples, sorted(index[f] for f in folders)


VAL_SOLUTION = "LOC_val_solution.csv"                        # Kaggle's copy: ImageId,PredictionString
DEVKIT_TRUTH = "ILSVRC2012_validation_ground_truth.txt"      # the devkit: one ILSVRC2012 id per image, in order
DEVKIT_META = "meta.mat"


def _find(root: str, name: str) -> Optional[str]:
    """``name`` in ``root``, its parent, or the devkit's data folder in either."""
    for folder in (root, os.path.dirname(os.path.abspath(root))):
        for path in (os.path.join(folder, name), os.path.join(folder, "ILSVRC2012_devkit_t12", "data", name)):
            if os.path.isfile(path):
                return path
    return None


def flat_imagenet_val(root: str, classes=None) -> Optional[Tuple[List[Tuple[str, int]], List[int]]]:
    """ImageNet val as distributed — 50,000 images in one folder — labelled by Kaggle's
    ``LOC_val_solution.csv`` (the first WordNet id of each image's boxes) or by the devkit's
    ground truth (ILSVRC2012 ids, mapped to WordNet ids by its ``meta.mat``). None when the
    folder has no images or neither file is found."""
    images = sorted(f for f in os.listdir(root) if f.lower().endswith(IMAGE_EXTENSIONS))
    if not images:
        return None
    names = class_list("imagenet" if classes is None else classes, [])
    index = {name: i for i, name in enumerate(names)}
    wnid_of: dict = {}
    solution, truth, meta = _find(root, VAL_SOLUTION), _find(root, DEVKIT_TRUTH), _find(root, DEVKIT_META)
    if solution:
        import csv

        with open(solution, newline="", encoding="utf-8") as f:
            for record in csv.DictReader(f):
                wnid_of[record["ImageId"]] = record["PredictionString"].split()[0]
    elif truth and meta:
        from scipy.io import loadmat

        synsets = loadmat(meta, squeeze_me=True)["synsets"]
        wnid_by_id = {int(s[0]): str(s[1]) for s in synsets}
        with open(truth, encoding="utf-8") as f:
            ids = [int(line) for line in f if line.strip()]
        if len(ids) != len(images):
            raise ValueError(f"{truth} has {len(ids)} labels for {len(images)} images in {root}")
        wnid_of = {os.path.splitext(img)[0]: wnid_by_id[i] for img, i in zip(images, ids)}
    else:
        return None
    samples = []
    for img in images:
        wnid = wnid_of.get(os.path.splitext(img)[0])
        if wnid is None:
            raise ValueError(f"{img} in {root} has no label in {solution or truth}")
        if wnid not in index:
            raise ValueError(f"{img}: {wnid} is not in the class list")
        samples.append((os.path.join(root, img), index[wnid]))
    return samples, sorted({label for _, label in samples})


class ImageFiles(Dataset):
    """Images from a list of files; items are ``(image, label, index)``."""

    def __init__(self, samples: List[Tuple[str, int]], transform=None):
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, path: str):
        from torchvision.datasets.folder import default_loader

        return default_loader(path)

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        img = self.load(path)
        if self.transform is not None:
            img = self.transform(img)
        return img, label, i


def image_folder(root: str, transform, classes=None) -> Tuple[ImageFiles, Optional[List[int]]]:
    samples, _ = labelled_images(root, classes)
    return ImageFiles(samples, transform), None


def imagenet_c(root: str, corruption: str, severity: int, transform, classes=None):
    return image_folder(os.path.join(root, corruption, str(severity)), transform, classes)


def class_subset(root: str, transform, classes=None, classes_of: Optional[str] = None):
    samples, present = labelled_images(root, classes)
    if classes_of:
        keep = set(labelled_images(classes_of, classes)[1])
        samples = [(path, label) for path, label in samples if label in keep]
        present = sorted(keep & set(present))
        if not samples:
            raise ValueError(f"{root} has no images of the classes of {classes_of}")
    return ImageFiles(samples, transform), present


def imagenet_v2(root: str, transform) -> Tuple[ImageFiles, None]:
    """ImageNet-V2 as distributed (``imagenetv2-matched-frequency-format-val`` and its siblings):
    folders ``0`` ... ``999`` named by the ImageNet class index, which is each image's label."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder not found: {root}")
    samples = []
    folders = sorted((d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not is_system_folder(d)),
                     key=lambda d: (not d.isdigit(), int(d) if d.isdigit() else 0, d))
    for name in folders:
        if not name.isdigit() or not 0 <= int(name) < 1000:
            raise ValueError(f"{root}: ImageNet-V2 folders are class indices 0-999, found {name!r}")
        samples += [(p, int(name)) for p in list_images(os.path.join(root, name))]
    if not samples:
        raise ValueError(f"no images under {root}")
    return ImageFiles(samples, transform), None


def folder_classes(root: str) -> List[int]:
    """The ImageNet indices of the WordNet-id folders directly under ``root`` (ImageNet-O's 200
    classes: the in-distribution classes its images were picked against)."""
    index = {name: i for i, name in enumerate(imagenet_classes())}
    return sorted(index[d] for d in os.listdir(root) if d in index and os.path.isdir(os.path.join(root, d)))


def ood_folder(root: str, transform):
    paths = list_images(root)
    if not paths:
        raise ValueError(f"no images under {root}")
    return ImageFiles([(p, -1) for p in paths], transform), None


class ObjectNetImages(ImageFiles):
    """ObjectNet's images of the classes it shares with ImageNet. Labels are ObjectNet classes
    (0 ... G-1, in ``group_names`` order); ``class_groups[j]`` is the ObjectNet class of ImageNet
    class ``classes[j]``. Evaluation cuts the logits to ``classes`` and adds up each group's
    probabilities (the ObjectNet authors' rule: a prediction is right when its ImageNet class maps to
    the image's ObjectNet class). ``border`` pixels are cut from every side first (the images carry
    a 1-pixel red border)."""

    def __init__(self, samples, transform, classes, class_groups, group_names, border: int = 1):
        super().__init__(samples, transform)
        self.classes, self.class_groups, self.group_names, self.border = classes, class_groups, group_names, border

    def load(self, path: str):
        img = super().load(path)
        if self.border:
            w, h = img.size
            img = img.crop((self.border, self.border, w - self.border, h - self.border))
        return img


def objectnet(root: str, transform, border: int = 1) -> Tuple[ObjectNetImages, List[int]]:
    """ObjectNet 1.0 from ``root`` (``images/``, ``mappings/folder_to_objectnet_label.json``,
    ``mappings/objectnet_to_imagenet_1k.json``, ``mappings/imagenet_to_label_2012_v2``,
    ``mappings/pytorch_to_imagenet_2012_id.json``): (dataset, the ImageNet classes it covers)."""
    import json

    maps = os.path.join(root, "mappings")
    needed = ("folder_to_objectnet_label.json", "objectnet_to_imagenet_1k.json", "imagenet_to_label_2012_v2",
              "pytorch_to_imagenet_2012_id.json")
    missing = [n for n in needed if not os.path.isfile(os.path.join(maps, n))]
    if missing:
        raise FileNotFoundError(f"ObjectNet at {root}: mappings/{', mappings/'.join(missing)} not found "
                                "(they ship with the dataset)")
    with open(os.path.join(maps, "folder_to_objectnet_label.json"), encoding="utf-8") as f:
        folder_label = json.load(f)
    with open(os.path.join(maps, "objectnet_to_imagenet_1k.json"), encoding="utf-8") as f:
        to_imagenet = json.load(f)
    with open(os.path.join(maps, "imagenet_to_label_2012_v2"), encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    with open(os.path.join(maps, "pytorch_to_imagenet_2012_id.json"), encoding="utf-8") as f:
        line_of = {int(k): int(v) for k, v in json.load(f).items()}
    index_of_name = {names[line]: index for index, line in line_of.items()}
    group_names = sorted(to_imagenet)
    classes, class_groups = [], []
    for g, label in enumerate(group_names):
        for name in (n.strip() for n in to_imagenet[label].split(";")):
            if name not in index_of_name:
                raise ValueError(f"ObjectNet class {label!r} maps to {name!r}, which is not in imagenet_to_label_2012_v2")
            classes.append(index_of_name[name])
            class_groups.append(g)
    order = sorted(range(len(classes)), key=lambda j: classes[j])
    classes, class_groups = [classes[j] for j in order], [class_groups[j] for j in order]
    if len(set(classes)) != len(classes):
        raise ValueError("ObjectNet mappings give one ImageNet class to two ObjectNet classes")
    group_of_label = {label: g for g, label in enumerate(group_names)}
    samples = []
    images = os.path.join(root, "images")
    for folder in sorted(os.listdir(images)):
        label = folder_label.get(folder)
        if label in group_of_label and os.path.isdir(os.path.join(images, folder)):
            samples += [(p, group_of_label[label]) for p in list_images(os.path.join(images, folder))]
    if not samples:
        raise ValueError(f"no images of ObjectNet's ImageNet classes under {images}")
    return ObjectNetImages(samples, transform, classes, class_groups, group_names, border), classes

