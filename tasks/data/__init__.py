"""Datasets behind one interface: a *set spec* (a dict from a config) becomes a
torch ``Dataset`` of ``(image, label, index)`` items.

    from tasks.data import build_set, expand_catalog
    specs = expand_catalog(cfg["catalog"], ["in_val", "C"])
    dataset, class_subset = build_set(specs["in_val"], data_cfg)

``spec["dataset"]`` picks a builder from :data:`DATASETS` (``digits``,
``image_folder``, ``imagenet_c``, ``class_subset``, ``ood_folder``,
``imagenet_o``, ``imagenet_v2``, ``objectnet``, ``cifar10``, ``cifar100``, ``cifar10_c``, ``cifar100_c``,
``tiny_imagenet``, ``tiny_imagenet_c``; see folders.py and cifar.py; ``domains``: reference
versus shifted examples by fold, a domain classifier's data, see domains.py); the
other keys are that builder's arguments. ``data_cfg`` is the backbone's input
configuration (timm's ``resolve_data_config``: input_size, mean, std,
interpolation, crop_pct); a spec's ``transform`` picks a recipe
(:mod:`tasks.data.transforms`) and overrides it. ``class_subset`` is None, or the class indices a set
covers (ImageNet-A / -R), to which evaluation restricts the logits. Any labelled set takes
``label_noise: {fraction, seed}`` (:mod:`tasks.data.label_noise`) and ``shift: {kind: tint | vflip,
...}`` (:mod:`tasks.data.shifts`).

A catalog entry with ``corruptions`` (a list, or ``all``) and ``severities``
expands into one set per pair, named ``<corruption>_<severity>`` and grouped as
``C-<severity>`` — the "mean over corruption types" sets of the papers.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, Optional

from tasks.data import folders
from tasks.data.corruptions import CORRUPTIONS
from tasks.data.transforms import build_transform
from tasks.registry import Registry

# ImageNet-C's corruption folders (the 15 benchmark ones)
IMAGENET_C_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
    "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
    "jpeg_compression",
)

Builder = Callable[[dict, dict, bool], tuple]
DATASETS: Registry[Builder] = Registry("dataset")

# keys every spec may have, besides its builder's arguments
COMMON_KEYS = {"dataset", "epochs", "augment", "group", "corruptions", "severities", "transform", "label_noise",
               "shift"}


register = DATASETS.register


def _transform(spec: dict, data_cfg: dict):
    return build_transform(spec, data_cfg)


def _args(spec: dict, allowed: set) -> dict:
    args = {k: v for k, v in spec.items() if k not in COMMON_KEYS and k != "corruption" and k != "severity"}
    unknown = set(args) - allowed
    if unknown:
        raise ValueError(f"dataset {spec['dataset']!r} does not take {', '.join(sorted(unknown))} "
                         f"(it takes {', '.join(sorted(allowed)) or 'nothing'})")
    return args


@register("digits")
def _digits(spec, data_cfg, augment):
    from tasks.data.digits import DigitsDataset

    args = _args(spec, {"split", "id_classes", "val_fraction", "seed"})
    if spec.get("transform"):
        raise ValueError("the digits dataset makes its own tensors (resize, normalise, augment); it takes no transform")
    _, h, w = data_cfg["input_size"]
    ds = DigitsDataset(image_size=h, mean=data_cfg["mean"], std=data_cfg["std"], augment=augment,
                       corruption=spec.get("corruption"), severity=spec.get("severity"), **args)
    return ds, None


@register("image_folder")
def _image_folder(spec, data_cfg, augment):
    args = _args(spec, {"root", "classes"})
    return folders.image_folder(args["root"], _transform(spec, data_cfg), args.get("classes"))


@register("imagenet_c")
def _imagenet_c(spec, data_cfg, augment):
    args = _args(spec, {"root", "classes"})
    return folders.imagenet_c(args["root"], spec["corruption"], spec["severity"],
                              _transform(spec, data_cfg), args.get("classes"))


@register("class_subset")
def _class_subset(spec, data_cfg, augment):
    """A folder with some of the classes (ImageNet-A / -R); ``classes_of``: another such folder whose
    classes this one is cut to (ImageNet val on ImageNet-R's 200 classes, the seed-002 authors' reference)."""
    args = _args(spec, {"root", "classes", "classes_of"})
    return folders.class_subset(args["root"], _transform(spec, data_cfg), args.get("classes"), args.get("classes_of"))


@register("ood_folder")
def _ood_folder(spec, data_cfg, augment):
    args = _args(spec, {"root"})
    return folders.ood_folder(args["root"], _transform(spec, data_cfg))


@register("imagenet_v2")
def _imagenet_v2(spec, data_cfg, augment):
    """ImageNet-V2: folders named by class index (ImageNet-Sketch is an ``image_folder``: wnid folders)."""
    args = _args(spec, {"root"})
    return folders.imagenet_v2(args["root"], _transform(spec, data_cfg))


@register("objectnet")
def _objectnet(spec, data_cfg, augment):
    """ObjectNet: the 113 classes it shares with ImageNet, labelled by ObjectNet class (folders.objectnet)."""
    args = _args(spec, {"root", "border"})
    return folders.objectnet(args["root"], _transform(spec, data_cfg), int(args.get("border", 1)))


@register("imagenet_o")
def _imagenet_o(spec, data_cfg, augment):
    """ImageNet-O: 200 wnid folders of natural adversarial OOD images; every label is -1."""
    args = _args(spec, {"root"})
    return folders.ood_folder(args["root"], _transform(spec, data_cfg))


@register("domains")
def _domains(spec, data_cfg, augment):
    """Reference (label 0) versus shifted (label 1) examples, by fold: a domain classifier's data
    (:mod:`tasks.data.domains`). ``augment`` and ``transform`` of this spec apply to both sets."""
    from tasks.data.domains import domains_set

    _args(spec, {"reference", "shifted", "max_reference", "reference_classes", "seed", "folds", "fold", "part"})

    def build(inner: dict):
        inner = dict(inner, augment=augment)
        if spec.get("transform"):
            inner["transform"] = spec["transform"]
        return build_set(inner, data_cfg)
    return domains_set(spec, build), None


def _cifar_builder(classes: int):
    def build(spec, data_cfg, augment):
        from tasks.data import cifar

        args = _args(spec, {"root", "split"})
        return cifar.cifar(args["root"], classes, args.get("split", "train"), _transform(spec, data_cfg)), None
    return build


def _cifar_c_builder():
    def build(spec, data_cfg, augment):
        from tasks.data import cifar

        args = _args(spec, {"root"})
        return cifar.cifar_c(args["root"], spec["corruption"], spec["severity"], _transform(spec, data_cfg)), None
    return build


register("cifar10")(_cifar_builder(10))
register("cifar100")(_cifar_builder(100))
register("cifar10_c")(_cifar_c_builder())
register("cifar100_c")(_cifar_c_builder())


@register("tiny_imagenet")
def _tiny_imagenet(spec, data_cfg, augment):
    from tasks.data import cifar

    args = _args(spec, {"root", "split"})
    return cifar.tiny_imagenet(args["root"], args.get("split", "train"), _transform(spec, data_cfg)), None


@register("tiny_imagenet_c")
def _tiny_imagenet_c(spec, data_cfg, augment):
    from tasks.data import cifar

    args = _args(spec, {"root", "wnids"})
    return cifar.tiny_imagenet_c(args["root"], spec["corruption"], spec["severity"], _transform(spec, data_cfg),
                                 args.get("wnids")), None


PATH_KEYS = ("root", "wnids", "classes_of")


def with_root(spec: dict, root: Optional[str]) -> dict:
    """``spec`` with its relative paths (and those of the set specs inside it: a ``domains`` set's
    two) taken relative to ``root``."""
    spec = dict(spec)
    for key, value in spec.items():
        if key in PATH_KEYS and root and isinstance(value, str) and not os.path.isabs(value):
            spec[key] = os.path.join(root, value)
        elif isinstance(value, dict) and "dataset" in value:
            spec[key] = with_root(value, root)
    return spec


def build_set(spec: dict, data_cfg: dict, root: Optional[str] = None):
    """Build the dataset of one (expanded) set spec: ``(dataset, class_subset)``.

    Relative ``root`` paths are taken relative to ``root`` (the project root).
    """
    kind = spec.get("dataset")
    build = DATASETS.get(kind)
    spec = with_root(spec, root)
    dataset, subset = build(spec, data_cfg, bool(spec.get("augment", False)))
    if spec.get("shift"):                      # on the true labels, before any label noise
        from tasks.data.shifts import shifted

        t = spec.get("transform") if isinstance(spec.get("transform"), dict) else {}
        dataset = shifted(dataset, spec["shift"], t.get("mean", data_cfg["mean"]), t.get("std", data_cfg["std"]))
    if spec.get("label_noise"):
        from tasks.data.label_noise import NoisyLabels

        dataset = NoisyLabels(dataset, dict(spec["label_noise"]))
    return dataset, subset


def expand_catalog(catalog: dict, names="all") -> Dict[str, dict]:
    """The named set specs selected by ``names`` (``all``, or catalog / expanded names)."""
    expanded: Dict[str, dict] = {}
    families: Dict[str, list] = {}
    for name, spec in catalog.items():
        if not isinstance(spec, dict) or "dataset" not in spec:
            raise ValueError(f"catalog entry {name!r} must be a mapping with a 'dataset' key")
        if "corruptions" not in spec:
            expanded[name] = dict(spec)
            families[name] = [name]
            continue
        corruptions = spec["corruptions"]
        if corruptions == "all":
            corruptions = CORRUPTIONS.names() if spec["dataset"] == "digits" else list(IMAGENET_C_CORRUPTIONS)
            if spec["dataset"] in ("cifar10_c", "cifar100_c"):
                corruptions = list(IMAGENET_C_CORRUPTIONS)    # the 15 benchmark ones (the extra 4 by name)
        families[name] = []
        for c in corruptions:
            if spec["dataset"] == "digits" and c not in CORRUPTIONS:
                raise ValueError(f"catalog entry {name!r}: unknown corruption {c!r}; "
                                 f"known: {', '.join(CORRUPTIONS.names())}")
            for s in spec.get("severities", [1, 2, 3, 4, 5]):
                set_name = f"{c}_{s}"
                expanded[set_name] = dict(spec, corruption=c, severity=int(s), group=f"C-{s}")
                families[name].append(set_name)
    if names == "all" or names is None:
        return expanded
    if isinstance(names, str):
        names = [names]
    chosen: Dict[str, dict] = {}
    for n in names:
        if n in families:
            chosen.update({m: expanded[m] for m in families[n]})
        elif n in expanded:
            chosen[n] = expanded[n]
        else:
            raise ValueError(f"no set {n!r} in the catalog; it has: {', '.join(families)}")
    return chosen
