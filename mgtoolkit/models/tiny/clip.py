"""The ``tiny`` CLIP: ppdiffusers' real ``CLIPModel`` with tiny configs and random weights.

Like the tiny CLAP (:mod:`mgtoolkit.models.tiny.clap`), it is built once from configs with a
CLIP-style BPE tokenizer written here, saved with ``save_pretrained`` (safetensors, never a pickle)
into the mgtoolkit cache, and from then on loaded by the same code as ``openai/clip-vit-base-patch32``.
Its tags are meaningless but depend on the image and the labels exactly as a real CLIP's do, so the
image chain's ``clip`` captioner runs offline in tests.
"""

from __future__ import annotations

from pathlib import Path

from .. import architectures
from ..architectures import tiny
from .build import built_once, save_model

__all__ = ["TINY_CLIP_VERSION", "tiny_clip_dir", "write_clip_tokenizer_files", "tiny_clip_configs"]

TINY_CLIP_VERSION = 1
_MERGES = [("a", "n"), ("e", "r"), ("i", "n"), ("o", "n"), ("t", "h"), ("th", "e</w>"), ("a", "t</w>")]


def write_clip_tokenizer_files(folder: Path) -> dict[str, int]:
    """Write the tiny CLIP's BPE ``vocab.json`` and ``merges.txt`` into ``folder``; return the vocabulary
    (see :func:`mgtoolkit.models.architectures.clip_vocab`)."""
    return architectures.write_clip_tokenizer_files(folder, _MERGES)


def tiny_clip_configs(vocab_size: int) -> dict:
    """The tiny geometry as plain dicts (``text_config``, ``vision_config``, ``projection_dim``): the
    same numbers build the paddle model here and the transformers one in the parity test."""
    ids = {"bos_token_id": vocab_size - 2, "eos_token_id": vocab_size - 1, "pad_token_id": vocab_size - 1}
    return {
        "text_config": tiny("clip_text", vocab_size=vocab_size, **ids),
        "vision_config": tiny("clip_vision"),
        "projection_dim": 16,
    }


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
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    save_model(folder, model, tokenizer, processor)


def tiny_clip_dir(root: Path | None = None) -> Path:
    """The folder of the saved tiny CLIP, built on first use (a second or two, once)."""
    return built_once(f"tiny-clip-v{TINY_CLIP_VERSION}", _build, seed=3, root=root)
