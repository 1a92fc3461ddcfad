"""The ``tiny`` AudioLDM: real ppdiffusers classes, tiny configs, random weights, no download.

The pipeline is built once from configs with a byte-level BPE tokenizer whose files this module
writes itself, saved with ``save_pretrained`` into the mgtoolkit cache, and from then on loaded
with ``from_pretrained`` like any downloaded model. The vocoder has AudioLDM's real geometry
(64 mel bins, hop 160, 16 kHz) and the VAE its real scale factor (4), so clip lengths, latent
shapes and file sizes are those of the real model; only the widths are small.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..architectures import tiny
from .build import built_once, roberta_tokenizer

__all__ = ["TINY_VERSION", "tiny_dir", "tiny_audioldm_dir"]

TINY_VERSION = 2


def _build_audioldm(folder: Path) -> None:
    """Build the tiny pipeline from configs and ``save_pretrained`` it into ``folder``."""
    from ...runtime import import_paddle

    paddle = import_paddle()
    from ppdiffusers import AudioLDMPipeline, AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from ppdiffusers.transformers import (
        ClapTextConfig,
        ClapTextModelWithProjection,
        SpeechT5HifiGan,
        SpeechT5HifiGanConfig,
    )

    state = paddle.get_rng_state()  # building must not disturb the caller's random stream
    try:
        paddle.seed(0)
        tok_dir = folder / "_tok_src"
        tokenizer, vocab = roberta_tokenizer(tok_dir)
        text_encoder = ClapTextModelWithProjection(
            ClapTextConfig(**tiny("clap_text", vocab_size=len(vocab), projection_dim=32))
        )
        unet = UNet2DConditionModel(**tiny("unet"))
        vae = AutoencoderKL(**tiny("vae"))
        vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(**tiny("vocoder")))
        # Random weights give a waveform near 1e-4; make the noise audible and visible in plots.
        vocoder.conv_post.weight.set_value(vocoder.conv_post.weight * 2000.0)
        scheduler = DDIMScheduler(**tiny("scheduler"))
        pipe = AudioLDMPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            vocoder=vocoder,
        )
        pipe.save_pretrained(str(folder))
        shutil.rmtree(tok_dir)
    finally:
        paddle.set_rng_state(state)


def _build_musicldm(folder: Path) -> None:
    """A tiny MusicLDM (CLAP text + audio towers) from configs, saved into ``folder``."""
    from ...runtime import import_paddle

    paddle = import_paddle()
    from ppdiffusers import AudioLDMPipeline, MusicLDMPipeline
    from ppdiffusers.transformers import (
        ClapAudioConfig,
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapTextConfig,
    )

    state = paddle.get_rng_state()
    try:
        _build_audioldm(folder / "_base")  # the same UNet, VAE, vocoder, scheduler and tokenizer
        base = AudioLDMPipeline.from_pretrained(str(folder / "_base"))
        paddle.seed(1)
        text = ClapTextConfig(**tiny("clap_text", vocab_size=base.tokenizer.vocab_size + 1))
        audio = ClapAudioConfig(**tiny("clap_audio"))
        clap = ClapModel(
            ClapConfig.from_text_audio_configs(text_config=text, audio_config=audio, projection_dim=32)
        )
        pipe = MusicLDMPipeline(
            vae=base.vae,
            text_encoder=clap,
            tokenizer=base.tokenizer,
            feature_extractor=ClapFeatureExtractor(**tiny("clap_features")),
            unet=base.unet,
            scheduler=base.scheduler,
            vocoder=base.vocoder,
        )
        pipe.save_pretrained(str(folder))
        shutil.rmtree(folder / "_base")
    finally:
        paddle.set_rng_state(state)


def _build_audioldm2(folder: Path) -> None:
    """A tiny AudioLDM 2 (CLAP, T5 and GPT-2 encoders, projection, two-context UNet) from configs."""
    from ...runtime import import_paddle

    paddle = import_paddle()
    from ppdiffusers import (
        AudioLDM2Pipeline,
        AudioLDM2ProjectionModel,
        AudioLDM2UNet2DConditionModel,
        MusicLDMPipeline,
    )
    from ppdiffusers.transformers import GPT2Config, GPT2Model, T5Config, T5EncoderModel, T5Tokenizer

    state = paddle.get_rng_state()
    try:
        _build_musicldm(folder / "_base")  # CLAP (text + audio), VAE, vocoder, scheduler, tokenizer
        base = MusicLDMPipeline.from_pretrained(str(folder / "_base"))
        paddle.seed(2)
        spiece = _train_t5_spiece(folder / "_spm")
        tokenizer_2 = T5Tokenizer(sentencepiece_model_file=str(spiece), extra_ids=0, model_max_length=128)
        text_encoder_2 = T5EncoderModel(T5Config(**tiny("t5", vocab_size=len(tokenizer_2))))
        language_model = GPT2Model(GPT2Config(**tiny("gpt2")))
        unet = AudioLDM2UNet2DConditionModel(**tiny("audioldm2_unet"))
        projection = AudioLDM2ProjectionModel(**tiny("audioldm2_projection"))
        pipe = AudioLDM2Pipeline(
            vae=base.vae,
            text_encoder=base.text_encoder,
            text_encoder_2=text_encoder_2,
            projection_model=projection,
            language_model=language_model,
            tokenizer=base.tokenizer,
            tokenizer_2=tokenizer_2,
            feature_extractor=base.feature_extractor,
            unet=unet,
            scheduler=base.scheduler,
            vocoder=base.vocoder,
        )
        pipe.save_pretrained(str(folder))
        shutil.rmtree(folder / "_base")
        shutil.rmtree(folder / "_spm")
    finally:
        paddle.set_rng_state(state)


def _train_t5_spiece(folder: Path) -> Path:
    """A tiny unigram ``spiece.model`` (T5's tokenizer file) trained on a few music prompts."""
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    lines = ["soft piano in the rain", "techno music with a strong upbeat tempo", "calm ambient pads"]
    corpus.write_text("\n".join(lines * 20) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(folder / "spiece"), **tiny("t5_spiece")
    )
    return folder / "spiece.model"


_BUILDERS = {"tiny": _build_audioldm, "tiny-musicldm": _build_musicldm, "tiny-audioldm2": _build_audioldm2}


def tiny_dir(name: str = "tiny", root: Path | None = None) -> Path:
    """The folder of a saved tiny pipeline (``"tiny"``, ``"tiny-musicldm"``, ``"tiny-audioldm2"``),
    built on first use."""
    folder_name = {"tiny": "tiny-audioldm"}.get(name, name)
    return built_once(
        f"{folder_name}-v{TINY_VERSION}", _BUILDERS[name], seed=0, root=root, marker="model_index.json"
    )


def tiny_audioldm_dir(root: Path | None = None) -> Path:
    """The folder of the saved tiny AudioLDM, built on first use (a few seconds, once)."""
    return tiny_dir("tiny", root)
