"""The ``tiny`` CLAP: paddlenlp's real ``ClapModel`` with tiny configs and random weights.

Like the tiny AudioLDM (:mod:`mgtoolkit.models.tiny.pipelines`), it is built once from configs with a
byte-level BPE tokenizer written here, saved with ``save_pretrained`` (safetensors, never a
pickle) into the mgtoolkit cache, and from then on loaded by the same ``from_pretrained`` code as
``laion/clap-htsat-unfused``. Its scores and tags are meaningless but depend on the audio and the
text exactly as a real CLAP's do, so ranking and zero-shot tags run offline in tests.
"""

from __future__ import annotations

from pathlib import Path

from ..architectures import tiny
from .build import built_once, roberta_tokenizer, save_model

__all__ = ["TINY_CLAP_VERSION", "tiny_clap_dir"]

TINY_CLAP_VERSION = 1


def _build(folder: Path) -> None:
    """Build the tiny CLAP, its tokenizer and feature extractor into ``folder``."""
    from ppdiffusers.transformers import (  # paddlenlp's CLAP; the BPE tokenizer the pipelines use
        ClapAudioConfig,
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapTextConfig,
    )

    tokenizer, vocab = roberta_tokenizer(folder / "_src")
    text = ClapTextConfig(**tiny("clap_text", vocab_size=len(vocab)))
    audio = ClapAudioConfig(
        **tiny(
            "clap_audio",
            patch_embed_input_channels=1,  # unfused, like laion/clap-htsat-unfused
            enable_fusion=False,
            patch_embeds_hidden_size=16,  # x2 after the one merge = hidden_size
        )
    )
    model = ClapModel(
        ClapConfig.from_text_audio_configs(text_config=text, audio_config=audio, projection_dim=32)
    )
    # 16 kHz like the tiny AudioLDM (the real CLAP takes 48 kHz); "rand_trunc" like the unfused model.
    extractor = ClapFeatureExtractor(
        **tiny(
            "clap_features",
            hop_length=512,
            max_length_s=2,  # 63 frames: what a 64-wide tiny tower takes
            truncation="rand_trunc",
            padding="repeatpad",
        )
    )
    save_model(folder, model, tokenizer, extractor)


def tiny_clap_dir(root: Path | None = None) -> Path:
    """The folder of the saved tiny CLAP, built on first use (a second or two, once)."""
    return built_once(f"tiny-clap-v{TINY_CLAP_VERSION}", _build, seed=2, root=root)
