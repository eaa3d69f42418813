"""Write CLIP's zero-shot classifier for a list of classes: the head a "ZS-FT" fine-tuning starts from (seed 002).

    python tasks/robustness/zero_shot_head.py --config default_configs/robustness/full_scale/zero_shot_head.yaml

For each class c, every template t (``a photo of a {}.`` ...) is filled with c's name, embedded by
CLIP's text tower and L2-normalised; their mean, normalised again and multiplied by CLIP's logit
scale exp(s), is row c of W (the authors' ``get_zero_shot_weights``). ``clip``: open_clip's model
``name`` (``ViT-B-32-quickgelu`` for the openai weights) and ``weights``, a local open_clip
checkpoint of the same weights as the image tower's (e.g. the hub's ``open_clip_pytorch_model.bin``);
``model_config``, optional: an open_clip model config file, for an architecture open_clip does not list.
``classes``: ``imagenet`` (the names of OpenAI's prompt-engineering notebook, as open_clip ships
them and the authors use) or a text file, one name per line. ``templates``: ``openai_imagenet``
(the notebook's 80) or a text file, one template per line with ``{}`` for the name. Needs open_clip
(``pip install open_clip_torch``). Writes ``{"weight": W [classes, embedding], ...}`` to ``save_path``.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _lines(path: str) -> list:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def class_names(spec) -> list:
    if spec == "imagenet":
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

        return list(IMAGENET_CLASSNAMES)
    return _lines(spec)


def templates(spec) -> list:
    if spec == "openai_imagenet":
        from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

        return list(OPENAI_IMAGENET_TEMPLATES)
    found = _lines(spec)
    bad = [t for t in found if "{}" not in t]
    if bad:
        raise ValueError(f"templates in {spec} without {{}} for the class name: {bad[:3]}")
    return [t.format for t in found]


def zero_shot_weights(model, tokenizer, names: list, prompts: list, device="cpu", batch: int = 256):
    """W [classes, embedding]: per class, the normalised mean of its normalised prompt embeddings, times exp(s)."""
    import torch

    rows = []
    with torch.no_grad():
        for name in names:
            texts = [t(name) for t in prompts]
            emb = torch.cat([model.encode_text(tokenizer(texts[i:i + batch]).to(device)).float()
                             for i in range(0, len(texts), batch)])
            emb = emb / emb.norm(dim=-1, keepdim=True)
            mean = emb.mean(0)
            rows.append(mean / mean.norm())
        return torch.stack(rows) * model.logit_scale.exp().float()


def main(argv=None) -> None:
    import open_clip

    from runner import report
    from tasks.common import load_config, pick_device, save_atomic

    cfg = load_config(__doc__.splitlines()[0], argv)
    clip = cfg["clip"]
    if not clip.get("weights") or not os.path.isfile(clip["weights"]):
        raise FileNotFoundError(f"clip.weights: the local open_clip checkpoint {clip.get('weights')!r} is not there")
    device = pick_device(cfg.get("device", "auto"))
    if clip.get("model_config"):                 # an architecture open_clip does not list (a JSON named <name>.json)
        open_clip.add_model_config(clip["model_config"])
    model = open_clip.create_model(clip["name"], pretrained=clip["weights"], device=device).eval()
    tokenizer = open_clip.get_tokenizer(clip["name"])
    names, prompts = class_names(cfg.get("classes", "imagenet")), templates(cfg.get("templates", "openai_imagenet"))
    print(f"{clip['name']}: {len(names)} classes x {len(prompts)} templates", flush=True)
    weight = zero_shot_weights(model, tokenizer, names, prompts, device).cpu()
    save_atomic({"weight": weight, "classes": names, "templates": len(prompts), "clip": dict(clip)}, cfg["save_path"])
    print(f"-> {cfg['save_path']}: {tuple(weight.shape)}, logit scale {float(model.logit_scale.exp()):.2f}", flush=True)
    report({"classes": len(names), "embedding": int(weight.shape[1])})


if __name__ == "__main__":
    main()
