"""Full-size AudioLDM architectures with random weights, built from their real configs (no download).

Speed does not depend on weight values, so a pipeline with the real layer sizes and random weights
times exactly like the released one. Where each number comes from:

- UNet, VAE, scheduler: diffusers' ``scripts/convert_original_audioldm_to_diffusers.py``
  (``DEFAULT_CONFIG`` = audioldm-s-full: ``model_channels`` 128, ``channel_mult`` [1, 2, 3, 5],
  ``attention_resolutions`` [8, 4, 2], ``num_res_blocks`` 2, ``extra_film_condition_dim`` 512 with
  ``extra_film_use_concat``; first-stage ``ch`` 128, ``ch_mult`` [1, 2, 4], ``z_channels`` 8;
  ``linear_start`` 0.0015, ``linear_end`` 0.0195, 1000 timesteps). ``attention_head_dim`` is not
  passed by the script, so the library default (8) applies.
- Text encoder: ``ClapTextConfig`` defaults (RoBERTa-base text tower, 12 layers × 768, 50,265-token
  vocabulary, 512-d projection), as in ``cvssp/audioldm-s-full-v2/text_encoder/config.json``.
- Vocoder: AudioLDM's HiFi-GAN (``cvssp/audioldm-s-full-v2/vocoder/config.json``): 64 mels, 16 kHz,
  upsample rates [5, 4, 2, 2, 2], kernels [16, 16, 8, 4, 4], 1024 initial channels, resblock
  kernels [3, 7, 11] with dilations [1, 3, 5].
- Tokenizer: a small byte-level BPE written by :func:`mgtoolkit.testing.tiny.write_bpe_tokenizer_files`
  (``model_max_length`` 512 as in the real tokenizer); token ids stay below the real vocabulary size.

The same numbers are in ``/work/shared/peer/torch_audioldm_bench.py``, which builds the torch twin.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["ARCHITECTURES", "BUILD_VERSION", "architecture", "build", "fullsize_dir"]

BUILD_VERSION = 1

_S_UNET = dict(
    sample_size=128,
    in_channels=8,
    out_channels=8,
    layers_per_block=2,
    block_out_channels=(128, 256, 384, 640),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=(128, 256, 384, 640),
    attention_head_dim=8,
    class_embed_type="simple_projection",
    projection_class_embeddings_input_dim=512,
    class_embeddings_concat=True,
)
_S_VAE = dict(
    sample_size=512,
    in_channels=1,
    out_channels=1,
    latent_channels=8,
    layers_per_block=2,
    block_out_channels=(128, 256, 512),
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    scaling_factor=0.18215,
)
_TEXT = dict(
    vocab_size=50265,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_act="gelu",
    max_position_embeddings=514,
    type_vocab_size=1,
    projection_dim=512,
    projection_hidden_act="relu",
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
    layer_norm_eps=1e-5,
)
_VOCODER = dict(
    model_in_dim=64,
    sampling_rate=16000,
    upsample_initial_channel=1024,
    upsample_rates=[5, 4, 2, 2, 2],
    upsample_kernel_sizes=[16, 16, 8, 4, 4],
    resblock_kernel_sizes=[3, 7, 11],
    resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    normalize_before=False,
)
_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.0015,
    beta_end=0.0195,
    beta_schedule="scaled_linear",
    steps_offset=1,
    clip_sample=False,
    set_alpha_to_one=False,
    prediction_type="epsilon",
)
_S = {"unet": _S_UNET, "vae": _S_VAE, "text": _TEXT, "vocoder": _VOCODER, "scheduler": _SCHEDULER}

# The AudioLDM 1 "small" checkpoints share one architecture.
ARCHITECTURES = {"audioldm-s-full-v2": _S, "audioldm-s-full": _S, "audioldm": _S}


def architecture(preset: str) -> dict[str, dict]:
    """The component configs of ``preset``.

    Raises
    ------
    ValueError
        If no offline config is recorded for ``preset``.
    """
    if preset not in ARCHITECTURES:
        raise ValueError(
            f"preset={preset!r} has no recorded full-size config; use one of {', '.join(ARCHITECTURES)}"
        )
    return ARCHITECTURES[preset]


def build(preset: str, folder: Path, seed: int = 0) -> None:
    """Build ``preset`` with random weights and ``save_pretrained`` it into ``folder``."""
    from mgtoolkit.runtime import import_paddle
    from mgtoolkit.testing.tiny import write_bpe_tokenizer_files

    paddle = import_paddle()
    from ppdiffusers import AudioLDMPipeline, AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from ppdiffusers.transformers import (
        ClapTextConfig,
        ClapTextModelWithProjection,
        RobertaTokenizer,
        SpeechT5HifiGan,
        SpeechT5HifiGanConfig,
    )

    cfg = architecture(preset)
    paddle.seed(seed)
    tok_dir = folder / "_tok_src"
    write_bpe_tokenizer_files(tok_dir)
    tokenizer = RobertaTokenizer(
        vocab_file=str(tok_dir / "vocab.json"), merges_file=str(tok_dir / "merges.txt"), model_max_length=512
    )
    pipe = AudioLDMPipeline(
        vae=AutoencoderKL(**cfg["vae"]),
        text_encoder=ClapTextModelWithProjection(ClapTextConfig(**cfg["text"])),
        tokenizer=tokenizer,
        unet=UNet2DConditionModel(**cfg["unet"]),
        scheduler=DDIMScheduler(**cfg["scheduler"]),
        vocoder=SpeechT5HifiGan(SpeechT5HifiGanConfig(**cfg["vocoder"])),
    )
    pipe.save_pretrained(str(folder))
    shutil.rmtree(tok_dir)


def fullsize_dir(preset: str, root: Path | None = None) -> Path:
    """Folder of the saved random-weight ``preset``, building it (about 1.7 GB, once) if missing."""
    from mgtoolkit.testing.tiny import cache_root

    architecture(preset)
    target = (root or cache_root()) / f"bench-{preset}-random-v{BUILD_VERSION}"
    if (target / "model_index.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bench-", dir=target.parent))
    try:
        build(preset, staging)
        os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
