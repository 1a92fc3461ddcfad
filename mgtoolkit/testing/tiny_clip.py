"""The ``tiny`` CLIP: ppdiffusers' real ``CLIPModel`` with tiny configs and random weights.

Like the tiny CLAP (:mod:`mgtoolkit.testing.tiny_clap`), it is built once from configs with a
CLIP-style BPE tokenizer written here, saved with ``save_pretrained`` (safetensors, never a pickle)
into the mgtoolkit cache, and from then on loaded by the same code as ``openai/clip-vit-base-patch32``.
Its tags are meaningless but depend on the image and the labels exactly as a real CLIP's do, so the
image chain's ``clip`` captioner runs offline in tests.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .tiny_clap import built_once

__all__ = ["TINY_CLIP_VERSION", "tiny_clip_dir", "write_clip_tokenizer_files", "tiny_clip_configs"]

TINY_CLIP_VERSION = 1
_MERGES = [("a", "n"), ("e", "r"), ("i", "n"), ("o", "n"), ("t", "h"), ("th", "e</w>"), ("a", "t</w>")]


def write_clip_tokenizer_files(folder: Path) -> dict[str, int]:
    """Write a CLIP-format BPE ``vocab.json`` and ``merges.txt`` into ``folder``; return the vocabulary.

    CLIP's vocabulary is the 256 byte symbols, each again with the end-of-word mark ``</w>``, the
    merged pairs, then ``<|startoftext|>`` and ``<|endoftext|>`` (the largest id, which CLIP's text
    tower pools at). Any text encodes without an unknown token.
    """
    from ppdiffusers.transformers.roberta.tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in [*symbols, *(s + "</w>" for s in symbols), *(a + b for a, b in _MERGES)]:
        vocab.setdefault(token, len(vocab))
    for token in ("<|startoftext|>", "<|endoftext|>"):
        vocab[token] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in _MERGES]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return vocab


def tiny_clip_configs(vocab_size: int) -> dict:
    """The tiny geometry as plain dicts (``text_config``, ``vision_config``, ``projection_dim``): the
    same numbers build the paddle model here and the transformers one in the parity test."""
    text = {
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 77,
        "bos_token_id": vocab_size - 2,
        "eos_token_id": vocab_size - 1,
        "pad_token_id": vocab_size - 1,
        "hidden_act": "quick_gelu",
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": 32,
        "patch_size": 8,
        "num_channels": 3,
        "hidden_act": "quick_gelu",
    }
    return {"text_config": text, "vision_config": vision, "projection_dim": 16}


def _build(folder: Path) -> None:
    """Build the tiny CLIP, its tokenizer and image processor into ``folder``."""
    from ppdiffusers.transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPTextConfig,
        CLIPTokenizer,
        CLIPVisionConfig,
    )

    vocab = write_clip_tokenizer_files(folder / "_src")
    tokenizer = CLIPTokenizer(
        vocab_file=str(folder / "_src" / "vocab.json"), merges_file=str(folder / "_src" / "merges.txt")
    )
    geometry = tiny_clip_configs(len(vocab))
    config = CLIPConfig.from_text_vision_configs(
        CLIPTextConfig(**geometry["text_config"]),
        CLIPVisionConfig(**geometry["vision_config"]),
        projection_dim=geometry["projection_dim"],
    )
    model = CLIPModel(config)
    model.eval()
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    processor.save_pretrained(str(folder))
    shutil.rmtree(folder / "_src", ignore_errors=True)


def tiny_clip_dir(root: Path | None = None) -> Path:
    """The folder of the saved tiny CLIP, built on first use (a second or two, once)."""
    return built_once(f"tiny-clip-v{TINY_CLIP_VERSION}", _build, seed=3, root=root)
