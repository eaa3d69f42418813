"""ImageNet-C style corruptions, implemented locally in PyTorch (+ PIL for JPEG).

Each corruption takes a batch of images ``x`` (float tensor [N, C, H, W] in
[0, 1]), a severity 1-5 and a ``numpy.random.Generator``, and returns a
corrupted batch of the same shape, clipped to [0, 1]. The severity parameters
follow Hendrycks & Dietterich's CIFAR-10-C settings (made for 32-pixel images);
kernel sizes scale with the image side, so the same severity means the same
visual strength at any resolution.

    from tasks.data.corruptions import CORRUPTIONS, corrupt
    y = corrupt(x, "gaussian_noise", severity=3, rng=np.random.default_rng(0))
"""
from __future__ import annotations

import io
import math
from typing import Callable, Dict

import numpy as np
import torch
import torch.nn.functional as F

Corruption = Callable[[torch.Tensor, int, np.random.Generator], torch.Tensor]
CORRUPTIONS: Dict[str, Corruption] = {}


def register(name: str):
    def wrap(fn: Corruption) -> Corruption:
        CORRUPTIONS[name] = fn
        return fn
    return wrap


def corrupt(x: torch.Tensor, name: str, severity: int, rng: np.random.Generator) -> torch.Tensor:
    """Apply the corruption ``name`` at ``severity`` (1-5) to images in [0, 1]."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; known: {', '.join(sorted(CORRUPTIONS))}")
    if not 1 <= int(severity) <= 5:
        raise ValueError(f"severity must be 1-5, got {severity!r}")
    if x.dim() != 4 or x.min() < 0 or x.max() > 1:
        raise ValueError("corrupt() expects a float batch [N, C, H, W] with values in [0, 1]")
    return CORRUPTIONS[name](x.float(), int(severity), rng).clamp_(0.0, 1.0)


def _scale(x: torch.Tensor) -> float:
    """Kernel sizes are given for 32-pixel images; scale them to this one."""
    return min(x.shape[-2:]) / 32.0


def _filter(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Depthwise 2-D convolution with reflection padding (output keeps the size)."""
    k = kernel / kernel.sum()
    kh, kw = k.shape
    c = x.shape[1]
    padded = F.pad(x, (kw // 2, (kw - 1) // 2, kh // 2, (kh - 1) // 2), mode="replicate")
    return F.conv2d(padded, k.to(x)[None, None].expand(c, 1, kh, kw), groups=c)


def _noise(x: torch.Tensor, rng: np.random.Generator, kind: str, *args) -> torch.Tensor:
    return torch.from_numpy(getattr(rng, kind)(*args, size=tuple(x.shape)).astype(np.float32))


# --- noise ---------------------------------------------------------------------

@register("gaussian_noise")
def gaussian_noise(x, severity, rng):
    sigma = [0.04, 0.06, 0.08, 0.09, 0.10][severity - 1]
    return x + sigma * _noise(x, rng, "standard_normal")


@register("shot_noise")
def shot_noise(x, severity, rng):
    photons = [500, 250, 100, 75, 50][severity - 1]
    return torch.from_numpy(rng.poisson(x.numpy() * photons).astype(np.float32) / photons)


@register("impulse_noise")
def impulse_noise(x, severity, rng):
    amount = [0.01, 0.02, 0.03, 0.05, 0.07][severity - 1]
    u = _noise(x, rng, "random")
    out = x.clone()
    out[u < amount / 2] = 0.0
    out[u > 1 - amount / 2] = 1.0
    return out


# --- blur ----------------------------------------------------------------------

@register("defocus_blur")
def defocus_blur(x, severity, rng):
    radius = [1.0, 1.25, 1.5, 2.0, 2.5][severity - 1] * _scale(x)
    r = math.ceil(radius)
    yy, xx = torch.meshgrid(torch.arange(-r, r + 1.0), torch.arange(-r, r + 1.0), indexing="ij")
    # an anti-aliased disk: weight 1 inside, falling to 0 over the half pixel past the radius
    disk = (radius + 0.5 - torch.sqrt(xx ** 2 + yy ** 2)).clamp(0, 1)
    return _filter(x, disk)


@register("gaussian_blur")
def gaussian_blur(x, severity, rng):
    sigma = [0.4, 0.6, 0.7, 0.8, 1.0][severity - 1] * _scale(x)
    r = max(1, math.ceil(3 * sigma))
    g = torch.exp(-torch.arange(-r, r + 1.0) ** 2 / (2 * sigma ** 2))
    return _filter(x, g[:, None] * g[None, :])


@register("motion_blur")
def motion_blur(x, severity, rng):
    length = [3, 5, 7, 9, 11][severity - 1] * _scale(x)
    r = max(1, round(length / 2))
    angle = rng.uniform(-math.pi / 4, math.pi / 4)
    kernel = torch.zeros(2 * r + 1, 2 * r + 1)
    for t in np.linspace(0, r, 4 * r + 1):   # a line from the centre to one side
        kernel[r + round(t * math.sin(angle)), r + round(t * math.cos(angle))] = 1.0
    return _filter(x, kernel)


@register("zoom_blur")
def zoom_blur(x, severity, rng):
    top = [1.06, 1.11, 1.16, 1.21, 1.26][severity - 1]
    h, w = x.shape[-2:]
    out = x.clone()
    zooms = np.arange(1.0, top, 0.02)[1:]
    for z in zooms:
        big = F.interpolate(x, size=(round(h * z), round(w * z)), mode="bilinear", align_corners=False)
        top_h, top_w = (big.shape[-2] - h) // 2, (big.shape[-1] - w) // 2
        out += big[..., top_h:top_h + h, top_w:top_w + w]
    return out / (len(zooms) + 1)


# --- digital -------------------------------------------------------------------

@register("contrast")
def contrast(x, severity, rng):
    c = [0.75, 0.5, 0.4, 0.3, 0.15][severity - 1]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * c + mean


@register("brightness")
def brightness(x, severity, rng):
    """Adds to the HSV value channel, keeping hue and saturation."""
    c = [0.05, 0.1, 0.15, 0.2, 0.3][severity - 1]
    value = x.max(dim=1, keepdim=True).values
    new_value = (value + c).clamp(max=1.0)
    # black pixels (value 0) have no hue: they become grey at the new value
    return torch.where(value > 0, x * new_value / value.clamp(min=1e-8), new_value.expand_as(x))


@register("pixelate")
def pixelate(x, severity, rng):
    c = [0.95, 0.9, 0.85, 0.75, 0.65][severity - 1]
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, int(h * c)), max(1, int(w * c))), mode="area")
    return F.interpolate(small, size=(h, w), mode="nearest")


@register("jpeg_compression")
def jpeg_compression(x, severity, rng):
    from PIL import Image

    quality = [80, 65, 58, 50, 40][severity - 1]
    out = torch.empty_like(x)
    arrays = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i, a in enumerate(arrays):
        img = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())), dtype=np.float32) / 255.0
        if decoded.ndim == 2:
            decoded = decoded[..., None]
        out[i] = torch.from_numpy(decoded).permute(2, 0, 1)
    return out
