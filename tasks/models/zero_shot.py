"""A CLIP image tower with a zero-shot head: the classifier the seed-002 authors fine-tune as "ZS-FT".

    net = create_model("vit_base_patch32_clip_quickgelu_224", num_classes=1000,
                       weights="models/pretrained/vit_base_patch32_clip_quickgelu_224.openai.safetensors",
                       zero_shot_head="models/robustness_imagenet/clip_zero_shot_head.pt")

logits = W · z / ‖z‖ + b, with z the image tower's embedding (timm's CLIP ViT with ``num_classes``
= the embedding size: its head is CLIP's projection), W the classes' text embeddings times CLIP's
logit scale (tasks/robustness/zero_shot_head.py writes them) and b = 0 at the start; every part
trains.
"""
from __future__ import annotations

import torch
from torch import nn


def read_head(path: str) -> torch.Tensor:
    """The [classes, embedding] weight of a zero-shot head file."""
    saved = torch.load(path, map_location="cpu", weights_only=False)
    weight = saved["weight"] if isinstance(saved, dict) else saved
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        raise ValueError(f"{path} is not a zero-shot head (a [classes, embedding] weight under 'weight')")
    return weight.float()


class ZeroShotClassifier(nn.Module):
    """``image_encoder`` -> L2-normalised embedding -> ``classification_head`` (the authors' names)."""

    def __init__(self, image_encoder: nn.Module, weight: torch.Tensor):
        super().__init__()
        self.image_encoder = image_encoder
        self.classification_head = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.classification_head.weight.copy_(weight)
            self.classification_head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.image_encoder(x)
        return self.classification_head(z / z.norm(dim=-1, keepdim=True))
