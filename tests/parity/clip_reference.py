"""transformers' CLIP on small random weights, for the ``clip`` captioner's parity test.

Runs in the torch venv (``build/parity-venv``), started by ``tests/models/test_clip_tagger.py``: it builds
a ``CLIPModel`` from the geometry and tokenizer files the test wrote, saves it as transformers
publishes a CLIP (``model.safetensors``, ``config.json``, tokenizer and processor files), and
writes what transformers computes for the test's picture and texts: pixel values, token ids, image
and text embeddings and ``logits_per_image``. torch is imported inside functions only.

Usage: ``python clip_reference.py --work DIR`` (DIR holds ``geometry.json``, ``vocab.json``,
``merges.txt``, ``image.png``, ``texts.json``; the model goes to ``DIR/model``, results to
``DIR/reference.npz``).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np


def build(work: Path):
    """The transformers model, tokenizer and processor, saved into ``work/model``."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    geometry = json.loads((work / "geometry.json").read_text(encoding="utf-8"))
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=geometry["text_config"],
        vision_config=geometry["vision_config"],
        projection_dim=geometry["projection_dim"],
    )
    model = CLIPModel(config).eval()
    with torch.no_grad():  # a scale other than the default, so a lost logit_scale shows
        model.logit_scale.fill_(3.1)
    tokenizer = CLIPTokenizer(str(work / "vocab.json"), str(work / "merges.txt"))
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = CLIPProcessor(image_processor=images, tokenizer=tokenizer)
    # As openai/clip-vit-base-patch32 is published: the slow tokenizer's vocab.json and merges.txt
    # beside tokenizer.json, and the image processor's preprocessor_config.json.
    model.save_pretrained(str(work / "model"), safe_serialization=True)
    tokenizer.save_pretrained(str(work / "model"))
    images.save_pretrained(str(work / "model"))
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(work / name, work / "model" / name)
    return model, processor


def run(work: Path) -> dict[str, np.ndarray]:
    """What transformers computes for the picture and texts."""
    import torch
    from PIL import Image

    model, processor = build(work)
    texts = json.loads((work / "texts.json").read_text(encoding="utf-8"))
    image = Image.open(work / "image.png").convert("RGB")
    inputs = processor(text=texts, images=image, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**inputs)
    return {
        "pixel_values": inputs["pixel_values"].numpy(),
        "input_ids": inputs["input_ids"].numpy(),
        "image_embeds": out.image_embeds.numpy(),
        "text_embeds": out.text_embeds.numpy(),
        "logits_per_image": out.logits_per_image.numpy(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args()
    np.savez(args.work / "reference.npz", **run(args.work))


if __name__ == "__main__":
    main()
