"""Image transforms of a set spec, by recipe (a registry, like the datasets).

A set spec may carry ``transform: {recipe: NAME, ...}``; without one, timm's
transform for the backbone is used (``timm``: its eval transform, or its
training transform when the spec has ``augment: true``). Recipes:

- ``resize_center_crop``: Resize(``resize``, shorter side) -> CenterCrop(``size``);
  the SED authors' evaluation transform (256 / 224, bilinear); ``flip: true`` adds a random
  horizontal flip when the set is augmented (the seed-002 authors' domain classifier);
- ``squash_center_crop``: Resize to ``resize`` x ``resize`` (the aspect ratio is not
  kept) -> CenterCrop(``size``); the distillation authors' ``A.Resize(256, 256)``;
- ``rrc_flip``: RandomResizedCrop(``size``, ``scale``, ``ratio``) -> RandomHorizontalFlip;
  the SED authors' training passes ((0.08, 1), (3/4, 4/3), bilinear); read without
  augmentation, the standard evaluation view: Resize(``resize``, default size / 0.875) ->
  CenterCrop(``size``);
- ``crop_flip``: RandomCrop(``size``, ``padding``) -> RandomHorizontalFlip; the
  standard CIFAR / TinyImageNet training augmentation (padding 4); read without
  augmentation, CenterCrop(``size``) (the image itself at its size);
- ``plain``: nothing but ToTensor -> Normalize (images already at size);
- ``timm``: ``timm.data.create_transform`` from the backbone's data config.

A recipe makes random operations only when the set is augmented (``augment: true``):
read with ``augment: false`` (a statistic, a validation holdout, an evaluation), every
recipe gives the same tensor for the same image, read after read.

Every recipe ends in ToTensor -> Normalize(``mean``, ``std``; default: the
backbone's). ``interpolation`` is ``bilinear``, ``bicubic`` or ``nearest``.
The transform is part of the spec, so it is part of the cache key: changing it
never reuses a cache made with another.
"""
from __future__ import annotations

from typing import Callable

from tasks.registry import Registry

RECIPES: Registry[Callable] = Registry("transform recipe")
KEYS = {"recipe", "resize", "size", "interpolation", "scale", "ratio", "mean", "std", "padding", "flip"}


recipe = RECIPES.register


def _interpolation(name: str):
    from torchvision.transforms import InterpolationMode

    modes = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
             "nearest": InterpolationMode.NEAREST}
    if name not in modes:
        raise ValueError(f"transform.interpolation must be one of {sorted(modes)}, got {name!r}")
    return modes[name]


def _finish(steps: list, t: dict, data_cfg: dict):
    from torchvision import transforms as T

    mean, std = t.get("mean", data_cfg["mean"]), t.get("std", data_cfg["std"])
    return T.Compose(steps + [T.ToTensor(), T.Normalize(list(mean), list(std))])


@recipe("resize_center_crop")
def _resize_center_crop(t: dict, data_cfg: dict, augment: bool):
    from torchvision import transforms as T

    interp = _interpolation(t.get("interpolation", "bilinear"))
    size = int(t.get("size", data_cfg["input_size"][-1]))
    steps = [T.Resize(int(t.get("resize", size)), interpolation=interp), T.CenterCrop(size)]
    if t.get("flip") and augment:
        steps.append(T.RandomHorizontalFlip())
    return _finish(steps, t, data_cfg)


@recipe("squash_center_crop")
def _squash_center_crop(t: dict, data_cfg: dict, augment: bool):
    from torchvision import transforms as T

    interp = _interpolation(t.get("interpolation", "bilinear"))
    size = int(t.get("size", data_cfg["input_size"][-1]))
    side = int(t.get("resize", size))
    return _finish([T.Resize((side, side), interpolation=interp), T.CenterCrop(size)], t, data_cfg)


@recipe("rrc_flip")
def _rrc_flip(t: dict, data_cfg: dict, augment: bool):
    from torchvision import transforms as T

    interp = _interpolation(t.get("interpolation", "bilinear"))
    size = int(t.get("size", data_cfg["input_size"][-1]))
    if not augment:
        side = int(t.get("resize", round(size / 0.875)))
        return _finish([T.Resize(side, interpolation=interp), T.CenterCrop(size)], t, data_cfg)
    rrc = T.RandomResizedCrop(size, scale=tuple(t.get("scale", (0.08, 1.0))),
                              ratio=tuple(t.get("ratio", (3 / 4, 4 / 3))), interpolation=interp)
    return _finish([rrc, T.RandomHorizontalFlip()], t, data_cfg)


@recipe("crop_flip")
def _crop_flip(t: dict, data_cfg: dict, augment: bool):
    from torchvision import transforms as T

    size = int(t.get("size", data_cfg["input_size"][-1]))
    if not augment:
        return _finish([T.CenterCrop(size)], t, data_cfg)
    return _finish([T.RandomCrop(size, padding=int(t.get("padding", 4))), T.RandomHorizontalFlip()], t, data_cfg)


@recipe("plain")
def _plain(t: dict, data_cfg: dict, augment: bool):
    return _finish([], t, data_cfg)


@recipe("timm")
def _timm(t: dict, data_cfg: dict, augment: bool):
    from timm.data import create_transform

    keys = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
    cfg = {k: data_cfg[k] for k in keys if k in data_cfg}
    cfg.update({k: t[k] for k in ("interpolation", "mean", "std") if k in t})
    return create_transform(**cfg, is_training=augment)


def build_transform(spec: dict, data_cfg: dict):
    """The transform of a set spec (its ``transform`` mapping, or timm's for the backbone)."""
    t = spec.get("transform") or {"recipe": "timm"}
    if not isinstance(t, dict):
        raise ValueError(f"transform must be a mapping with a 'recipe', got {t!r}")
    unknown = set(t) - KEYS
    if unknown:
        raise ValueError(f"transform does not take {', '.join(sorted(unknown))} (it takes {', '.join(sorted(KEYS))})")
    name = t.get("recipe", "timm")
    return RECIPES.get(name)(t, data_cfg, bool(spec.get("augment", False)))
