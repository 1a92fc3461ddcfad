"""The ``tiny`` CLAP: paddlenlp's real ``ClapModel`` with tiny configs and random weights.

Like the tiny AudioLDM (:mod:`mgtoolkit.testing.tiny`), it is built once from configs with a
byte-level BPE tokenizer written here, saved with ``save_pretrained`` (safetensors, never a
pickle) into the mgtoolkit cache, and from then on loaded by the same ``from_pretrained`` code as
``laion/clap-htsat-unfused``. Its scores and tags are meaningless but depend on the audio and the
text exactly as a real CLAP's do, so ranking and zero-shot tags run offline in tests.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..config import cache_root, private_dir
from .tiny import write_bpe_tokenizer_files

__all__ = ["TINY_CLAP_VERSION", "built_once", "tiny_clap_dir"]

TINY_CLAP_VERSION = 1


def _build(folder: Path) -> None:
    """Build the tiny CLAP, its tokenizer and feature extractor into ``folder``."""
    from ppdiffusers.transformers import (  # paddlenlp's CLAP; the BPE tokenizer the pipelines use
        ClapAudioConfig,
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapTextConfig,
        RobertaTokenizer,
    )

    vocab = write_bpe_tokenizer_files(folder / "_src")
    tokenizer = RobertaTokenizer(
        vocab_file=str(folder / "_src" / "vocab.json"),
        merges_file=str(folder / "_src" / "merges.txt"),
        model_max_length=512,
    )
    text = ClapTextConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=514,
        bos_token_id=0,
        pad_token_id=1,
        eos_token_id=2,
        layer_norm_eps=1e-5,
    )
    audio = ClapAudioConfig(
        spec_size=64,
        window_size=4,
        num_mel_bins=64,
        intermediate_size=37,
        depths=[2, 2],
        num_attention_heads=[2, 2],
        num_hidden_layers=2,
        hidden_size=32,
        patch_size=2,
        patch_stride=2,
        patch_embed_input_channels=1,  # unfused, like laion/clap-htsat-unfused
        enable_fusion=False,
        patch_embeds_hidden_size=16,  # x2 after the one merge = hidden_size
        layer_norm_eps=1e-5,
    )
    model = ClapModel(
        ClapConfig.from_text_audio_configs(text_config=text, audio_config=audio, projection_dim=32)
    )
    model.eval()
    # 16 kHz like the tiny AudioLDM (the real CLAP takes 48 kHz); "rand_trunc" like the unfused model.
    extractor = ClapFeatureExtractor(
        feature_size=64,
        sampling_rate=16000,
        frequency_max=8000,
        hop_length=512,
        max_length_s=2,  # 63 frames: what a 64-wide tiny tower takes
        truncation="rand_trunc",
        padding="repeatpad",
    )
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    extractor.save_pretrained(str(folder))
    shutil.rmtree(folder / "_src", ignore_errors=True)


def tiny_clap_dir(root: Path | None = None) -> Path:
    """The folder of the saved tiny CLAP, built on first use (a second or two, once)."""
    return built_once(f"tiny-clap-v{TINY_CLAP_VERSION}", _build, seed=2, root=root)


def built_once(name: str, build, *, seed: int, root: Path | None = None) -> Path:
    """``root / name`` (default the cache), made once by ``build(folder)`` with paddle seeded to
    ``seed``: built in a private staging folder and renamed into place, so a half-built model is
    never seen and two concurrent builds leave one; the caller's random stream is left as it was."""
    target = (root or cache_root()) / name
    if (target / "config.json").is_file():
        return target
    from ..runtime import import_paddle, quiet_model_logs

    paddle = import_paddle()
    quiet_model_logs()
    private_dir(target.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))  # 0700, like the cache
    state = paddle.get_rng_state()  # building must not disturb the caller's random stream
    try:
        paddle.seed(seed)
        build(staging)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "config.json").is_file():  # not a concurrent build that won
                raise
    finally:
        paddle.set_rng_state(state)
        shutil.rmtree(staging, ignore_errors=True)
    return target
