"""Load a timm backbone and cut it into a frozen featurizer and a trainable head.

    model = load_backbone({"name": "deit3_base_patch16_224", "checkpoint": "models/deit3.pth"})
    featurizer, head = split_backbone(model, "auto")

Weights come from a local file (``checkpoint``): either one written by
``tasks/sed/pretrain_backbone.py`` (it records the timm name and arguments), or any
checkpoint timm can load for that model name (timm's ``pretrained_cfg_overlay``
``file=``, which also converts the original DeiT / FB checkpoints). With
``pretrained: true`` and no file, timm's own pretrained weights are used (this
needs them in the local Hugging Face cache, or a network).

Split modes (``split``):

- ``vit_mlp`` — SED's cut for ViTs with a class token: the featurizer runs
  everything up to and including the last block's attention residual and
  returns the CLS token; the head is that block's MLP residual, the final norm
  and the classifier, initialised from the pretrained weights. Because the MLP
  and norms act per token, featurizer + head reproduce the full model's logits.
- ``pre_logits`` — any timm model: the featurizer returns the pooled
  pre-logits features, the head is the model's linear classifier.
- ``auto`` — ``vit_mlp`` where it applies, else ``pre_logits``.

The head travels as a plain dict (kind, sizes, tensors) so the ensemble code
builds its members without timm; see :mod:`tasks.sed.heads`.
"""
from __future__ import annotations

import hashlib
import os
from typing import Optional, Tuple

import torch
import torch.nn as nn

BACKBONE_FORMAT = "sheetrun_backbone/1"


def file_digest(path: str, size: int = 10) -> str:
    """blake2b content digest of a file (hex, ``size`` bytes)."""
    h = hashlib.blake2b(digest_size=size)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _resolve(path: Optional[str], root: Optional[str]) -> Optional[str]:
    if path and root and not os.path.isabs(path):
        return os.path.join(root, path)
    return path


def load_backbone(cfg: dict, root: Optional[str] = None) -> nn.Module:
    """A timm model in eval mode, with weights as ``cfg`` says (see the module doc)."""
    import timm

    name, kwargs = cfg.get("name"), dict(cfg.get("kwargs") or {})
    checkpoint = _resolve(cfg.get("checkpoint"), root)
    if checkpoint:
        if not os.path.isfile(checkpoint):
            raise FileNotFoundError(f"backbone checkpoint not found: {checkpoint}")
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if isinstance(saved, dict) and saved.get("format") == BACKBONE_FORMAT:
            model = timm.create_model(saved["name"], pretrained=False, **saved["kwargs"])
            model.load_state_dict(saved["state_dict"])
            return model.eval()
        if not name:
            raise ValueError("backbone.name is needed to load a timm checkpoint file")
        model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": checkpoint}, **kwargs)
        return model.eval()
    if not name:
        raise ValueError("backbone needs a name (a timm model) or a checkpoint")
    try:
        model = timm.create_model(name, pretrained=bool(cfg.get("pretrained", False)), **kwargs)
    except Exception as e:  # noqa: BLE001 - offline downloads fail in many ways
        raise RuntimeError(f"could not create {name!r} with pretrained weights ({e}); "
                           "give backbone.checkpoint, a local weights file") from e
    return model.eval()


def backbone_identity(cfg: dict, root: Optional[str] = None) -> dict:
    """What determines the features: the config plus the checkpoint's content digest."""
    ident = {"name": cfg.get("name"), "kwargs": cfg.get("kwargs") or {}, "split": cfg.get("split", "auto"),
             "pretrained": bool(cfg.get("pretrained", False))}
    checkpoint = _resolve(cfg.get("checkpoint"), root)
    if checkpoint:
        ident["checkpoint_blake2b"] = file_digest(checkpoint)
    return ident


def data_config(model: nn.Module) -> dict:
    """The model's input configuration (size, mean, std, interpolation, crop)."""
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}


def _vit_parts(model: nn.Module):
    """The last block of a token-pooled timm ViT, or None if SED's cut does not apply."""
    try:
        from timm.layers import LayerScale
        from timm.models.vision_transformer import Block, VisionTransformer
    except ImportError:
        return None
    if not isinstance(model, VisionTransformer) or model.global_pool != "token" or model.attn_pool is not None:
        return None
    last = model.blocks[-1]
    if type(last) is not Block or not isinstance(last.mlp.act, nn.GELU):
        return None
    if not isinstance(last.ls2, (LayerScale, nn.Identity)) or not isinstance(model.fc_norm, nn.Identity):
        return None
    if not isinstance(model.norm, nn.LayerNorm) or not isinstance(last.norm2, nn.LayerNorm):
        return None
    if not isinstance(getattr(last.mlp, "norm", nn.Identity()), nn.Identity) or not isinstance(model.head, nn.Linear):
        return None
    return last


class ViTFeaturizer(nn.Module):
    """A ViT up to the last block's attention residual; returns the CLS token [B, D]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(x))))
        for blk in m.blocks[:-1]:
            x = blk(x)
        last = m.blocks[-1]
        x = x + last.drop_path1(last.ls1(last.attn(last.norm1(x))))
        return x[:, 0]


class PreLogitsFeaturizer(nn.Module):
    """Any timm model's pooled pre-logits features [B, D]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


def _tensors(prefix_modules: dict) -> dict:
    out = {}
    for prefix, module in prefix_modules.items():
        for key, value in module.state_dict().items():
            out[f"{prefix}.{key}"] = value.detach().clone().float()
    return out


def split_backbone(model: nn.Module, mode: str = "auto") -> Tuple[nn.Module, dict]:
    """``(featurizer, head)``: the frozen part and the head description (see module doc)."""
    if mode not in ("auto", "vit_mlp", "pre_logits"):
        raise ValueError(f"backbone.split must be auto, vit_mlp or pre_logits, got {mode!r}")
    last = _vit_parts(model) if mode in ("auto", "vit_mlp") else None
    if mode == "vit_mlp" and last is None:
        raise ValueError(f"{type(model).__name__} does not allow the vit_mlp split "
                         "(needs a timm VisionTransformer with a class token, token pooling and a GELU MLP)")
    if last is not None:
        state = _tensors({"norm2": last.norm2, "fc1": last.mlp.fc1, "fc2": last.mlp.fc2,
                          "norm": model.norm, "head": model.head})
        if isinstance(last.ls2, nn.Module) and hasattr(last.ls2, "gamma"):
            state["ls2.gamma"] = last.ls2.gamma.detach().clone().float()
        head = {"kind": "vit_mlp", "dim": model.embed_dim, "hidden": last.mlp.fc1.out_features,
                "num_classes": model.num_classes, "eps": float(model.norm.eps),
                "gelu_approximate": getattr(last.mlp.act, "approximate", "none"), "state": state}
        featurizer = ViTFeaturizer(model)
    else:
        classifier = model.get_classifier()
        if not isinstance(classifier, nn.Linear):
            raise ValueError(f"{type(model).__name__}: the classifier is not a single Linear layer; "
                             "cannot initialise a head from it")
        head = {"kind": "linear", "dim": classifier.in_features, "num_classes": classifier.out_features,
                "state": _tensors({"head": classifier})}
        featurizer = PreLogitsFeaturizer(model)
    for p in featurizer.parameters():
        p.requires_grad_(False)
    return featurizer.eval(), head
