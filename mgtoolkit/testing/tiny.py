"""The ``tiny`` AudioLDM: real ppdiffusers classes, tiny configs, random weights, no download.

The pipeline is built once from configs with a byte-level BPE tokenizer whose files this module
writes itself, saved with ``save_pretrained`` into the mgtoolkit cache, and from then on loaded
with ``from_pretrained`` like any downloaded model. The vocoder has AudioLDM's real geometry
(64 mel bins, hop 160, 16 kHz) and the VAE its real scale factor (4), so clip lengths, latent
shapes and file sizes are those of the real model; only the widths are small.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from ..config import cache_root, private_dir

__all__ = ["TINY_VERSION", "cache_root", "tiny_dir", "tiny_audioldm_dir", "write_bpe_tokenizer_files"]

TINY_VERSION = 2
_CORPUS_MERGES = [
    ("Ġ", "a"),
    ("Ġ", "s"),
    ("Ġ", "p"),
    ("Ġ", "m"),
    ("i", "n"),
    ("e", "r"),
    ("o", "u"),
    ("in", "g"),
    ("Ġp", "i"),
    ("Ġm", "u"),
    ("a", "n"),
    ("o", "r"),
]


def write_bpe_tokenizer_files(
    folder: Path,
    specials: tuple[str, ...] = ("<s>", "<pad>", "</s>", "<unk>"),
    merges: list[tuple[str, str]] | None = None,
    trailing: tuple[str, ...] = ("<mask>",),
) -> dict[str, int]:
    """Write a byte-level BPE ``vocab.json`` and ``merges.txt`` (RoBERTa/GPT-2 format).

    The vocabulary is ``specials``, the 256 byte symbols (so any text encodes without ``<unk>``),
    the merged pairs, then ``trailing``. Returns the vocabulary.
    """
    from ppdiffusers.transformers.roberta.tokenizer import bytes_to_unicode

    merges = _CORPUS_MERGES if merges is None else merges
    vocab: dict[str, int] = {tok: i for i, tok in enumerate(specials)}
    for symbol in bytes_to_unicode().values():
        vocab.setdefault(symbol, len(vocab))
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    for token in trailing:
        vocab.setdefault(token, len(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return vocab


def _build_audioldm(folder: Path) -> None:
    """Build the tiny pipeline from configs and ``save_pretrained`` it into ``folder``."""
    from ..runtime import import_paddle

    paddle = import_paddle()
    from ppdiffusers import AudioLDMPipeline, AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from ppdiffusers.transformers import (
        ClapTextConfig,
        ClapTextModelWithProjection,
        RobertaTokenizer,
        SpeechT5HifiGan,
        SpeechT5HifiGanConfig,
    )

    state = paddle.get_rng_state()  # building must not disturb the caller's random stream
    try:
        paddle.seed(0)
        tok_dir = folder / "_tok_src"
        vocab = write_bpe_tokenizer_files(tok_dir)
        tokenizer = RobertaTokenizer(
            vocab_file=str(tok_dir / "vocab.json"),
            merges_file=str(tok_dir / "merges.txt"),
            model_max_length=512,
        )
        text_encoder = ClapTextModelWithProjection(
            ClapTextConfig(
                vocab_size=len(vocab),
                hidden_size=32,
                intermediate_size=37,
                num_hidden_layers=2,
                num_attention_heads=4,
                projection_dim=32,
                max_position_embeddings=514,
                bos_token_id=0,
                pad_token_id=1,
                eos_token_id=2,
                layer_norm_eps=1e-5,
            )
        )
        unet = UNet2DConditionModel(
            sample_size=32,
            in_channels=8,
            out_channels=8,
            layers_per_block=1,
            block_out_channels=(32, 64),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=(32, 64),
            attention_head_dim=8,
            norm_num_groups=16,
            class_embed_type="simple_projection",
            projection_class_embeddings_input_dim=32,
            class_embeddings_concat=True,
        )
        vae = AutoencoderKL(
            in_channels=1,
            out_channels=1,
            latent_channels=8,
            block_out_channels=(16, 32, 32),
            down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3,
            layers_per_block=1,
            norm_num_groups=8,
            sample_size=256,
            scaling_factor=1.0,
        )
        vocoder = SpeechT5HifiGan(
            SpeechT5HifiGanConfig(
                model_in_dim=64,
                sampling_rate=16000,
                upsample_initial_channel=64,
                upsample_rates=[5, 4, 2, 2, 2],
                upsample_kernel_sizes=[16, 16, 8, 4, 4],
                resblock_kernel_sizes=[3],
                resblock_dilation_sizes=[[1, 3, 5]],
                normalize_before=False,
            )
        )
        # Random weights give a waveform near 1e-4; make the noise audible and visible in plots.
        vocoder.conv_post.weight.set_value(vocoder.conv_post.weight * 2000.0)
        scheduler = DDIMScheduler(
            beta_start=0.0015,
            beta_end=0.0195,
            beta_schedule="scaled_linear",
            num_train_timesteps=1000,
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
        )
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
    from ..runtime import import_paddle

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
        text = ClapTextConfig(
            vocab_size=base.tokenizer.vocab_size + 1,
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
            patch_embed_input_channels=4,
            layer_norm_eps=1e-5,
        )
        clap = ClapModel(
            ClapConfig.from_text_audio_configs(text_config=text, audio_config=audio, projection_dim=32)
        )
        pipe = MusicLDMPipeline(
            vae=base.vae,
            text_encoder=clap,
            tokenizer=base.tokenizer,
            feature_extractor=ClapFeatureExtractor(feature_size=64, sampling_rate=16000, frequency_max=8000),
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
    from ..runtime import import_paddle

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
        gpt2_dim, t5_dim = 32, 48
        text_encoder_2 = T5EncoderModel(
            T5Config(vocab_size=len(tokenizer_2), d_model=t5_dim, d_ff=64, d_kv=12, num_heads=4, num_layers=2,
                     relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1)
        )  # fmt: skip
        language_model = GPT2Model(
            GPT2Config(n_embd=gpt2_dim, n_head=4, n_layer=2, vocab_size=50, n_positions=64, max_new_tokens=8)
        )
        unet = AudioLDM2UNet2DConditionModel(
            sample_size=32,
            in_channels=8,
            out_channels=8,
            layers_per_block=1,
            block_out_channels=(32, 64),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=([None, gpt2_dim, t5_dim],) * 2,
            attention_head_dim=8,
            norm_num_groups=16,
        )
        projection = AudioLDM2ProjectionModel(
            text_encoder_dim=32, text_encoder_1_dim=t5_dim, langauge_model_dim=gpt2_dim
        )
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
        input=str(corpus), model_prefix=str(folder / "spiece"), vocab_size=40, hard_vocab_limit=False,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>",
        unk_piece="<unk>", character_coverage=1.0, minloglevel=2,
    )  # fmt: skip
    return folder / "spiece.model"


_BUILDERS = {"tiny": _build_audioldm, "tiny-musicldm": _build_musicldm, "tiny-audioldm2": _build_audioldm2}


def tiny_dir(name: str = "tiny", root: Path | None = None) -> Path:
    """The folder of a saved tiny pipeline (``"tiny"``, ``"tiny-musicldm"``, ``"tiny-audioldm2"``),
    built on first use."""
    folder_name = {"tiny": "tiny-audioldm"}.get(name, name)
    target = (root or cache_root()) / f"{folder_name}-v{TINY_VERSION}"
    if (target / "model_index.json").is_file():
        return target
    private_dir(target.parent)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=target.parent))  # 0700, like the cache
    try:
        _BUILDERS[name](staging)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "model_index.json").is_file():  # not a concurrent build that won
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def tiny_audioldm_dir(root: Path | None = None) -> Path:
    """The folder of the saved tiny AudioLDM, built on first use (a few seconds, once)."""
    return tiny_dir("tiny", root)
