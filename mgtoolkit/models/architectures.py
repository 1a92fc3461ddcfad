"""Every architecture mgtoolkit builds from a config, written once, as plain dicts; and the BPE files.

The tiny models (:mod:`mgtoolkit.models.tiny`, ``MGTOOLKIT_MODEL=tiny``), the full-size random-weight
models of ``benchmarks/`` and the torch side of the parity tests (``tests/parity/reference.py``, run
in a venv with torch and without paddle or mgtoolkit) all take their configs from here. So this
module imports nothing but the standard library and no other mgtoolkit module: the torch scripts load
it by its path.

- :data:`TINY`: small widths with the real geometry where it shapes the output (64 mel bins, hop 160,
  16 kHz, VAE scale 4), so clip lengths, latent shapes and file sizes are those of the real models.
- :data:`AUDIOLDM_S` (``cvssp/audioldm-s-full-v2``) and :data:`CLIP_B32`
  (``openai/clip-vit-base-patch32``): the published sizes. Where each number comes from:

  - UNet, VAE, scheduler: diffusers' ``scripts/convert_original_audioldm_to_diffusers.py``
    (``DEFAULT_CONFIG`` = audioldm-s-full: ``model_channels`` 128, ``channel_mult`` [1, 2, 3, 5],
    ``attention_resolutions`` [8, 4, 2], ``num_res_blocks`` 2, ``extra_film_condition_dim`` 512 with
    ``extra_film_use_concat``; first-stage ``ch`` 128, ``ch_mult`` [1, 2, 4], ``z_channels`` 8;
    ``linear_start`` 0.0015, ``linear_end`` 0.0195, 1000 timesteps). ``attention_head_dim`` is not
    passed by the script, so the library default (8) applies. ``scaling_factor`` is the learned
    ``scale_factor`` of the checkpoint, unknown offline; it only rescales latents.
  - Text encoder: ``ClapTextConfig`` defaults (RoBERTa-base text tower, 12 layers x 768, 50,265-token
    vocabulary, 512-d projection), as in ``cvssp/audioldm-s-full-v2/text_encoder/config.json``.
  - Vocoder: AudioLDM's HiFi-GAN (``cvssp/audioldm-s-full-v2/vocoder/config.json``): 64 mels, 16 kHz,
    upsample rates [5, 4, 2, 2, 2], kernels [16, 16, 8, 4, 4], 1024 initial channels, resblock
    kernels [3, 7, 11] with dilations [1, 3, 5].
  - CLIP, from the model card's ``config.json``: text tower 49,408-token vocabulary, 12 layers x 512,
    8 heads, 2,048 MLP, 77 positions; vision tower 224 px in 32 px patches, 12 layers x 768, 12 heads,
    3,072 MLP; quick_gelu; projection 512.

Tokenizer files: :func:`write_bpe_tokenizer_files` (byte-level BPE, RoBERTa/GPT-2 format) and
:func:`write_clip_tokenizer_files` (CLIP's ``</w>`` format) write a small vocabulary in which any
text encodes without an unknown token; ids stay below the real vocabularies.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

__all__ = [
    "AUDIOLDM_S",
    "CLIP_B32",
    "FULL_SIZE",
    "TINY",
    "TINY_MERGES",
    "bpe_vocab",
    "bytes_to_unicode",
    "clip_preprocessor",
    "clip_vocab",
    "full_size",
    "tiny",
    "write_bpe_files",
    "write_bpe_tokenizer_files",
    "write_clip_tokenizer_files",
]

# ---------------------------------------------------------------------------------------------
# The tiny models.
# ---------------------------------------------------------------------------------------------
_LM = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 512,
}
_TWO_BLOCKS = {
    "sample_size": 32,
    "in_channels": 8,
    "out_channels": 8,
    "layers_per_block": 1,
    "block_out_channels": (32, 64),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
}
_GPT2_DIM, _T5_DIM = 32, 48
# What every AudioLDM-family model shares, tiny or not: mel spectrograms of 64 bins at hop 160 and
# 16 kHz (the vocoder's input and rates), one-channel mel images in an 8-channel latent (the VAE),
# the DDIM schedule the checkpoints were trained with, RoBERTa's special ids in CLAP's text tower.
_MEL_VOCODER = {
    "model_in_dim": 64,
    "sampling_rate": 16000,
    "upsample_rates": [5, 4, 2, 2, 2],
    "upsample_kernel_sizes": [16, 16, 8, 4, 4],
    "normalize_before": False,
}
_MEL_VAE = {
    "in_channels": 1,
    "out_channels": 1,
    "latent_channels": 8,
    "down_block_types": ("DownEncoderBlock2D",) * 3,
    "up_block_types": ("UpDecoderBlock2D",) * 3,
}
_DDIM = {
    "beta_start": 0.0015,
    "beta_end": 0.0195,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}
_ROBERTA_TEXT = {
    "max_position_embeddings": 514,
    "bos_token_id": 0,
    "pad_token_id": 1,
    "eos_token_id": 2,
    "layer_norm_eps": 1e-5,
}

TINY: dict[str, dict] = {
    # AudioLDM's UNet; MusicLDM's is the same.
    "unet": {
        **_TWO_BLOCKS,
        "cross_attention_dim": (32, 64),
        "attention_head_dim": 8,
        "norm_num_groups": 16,
        "class_embed_type": "simple_projection",
        "projection_class_embeddings_input_dim": 32,
        "class_embeddings_concat": True,
    },
    "vae": {
        **_MEL_VAE,
        "block_out_channels": (16, 32, 32),
        "layers_per_block": 1,
        "norm_num_groups": 8,
        "sample_size": 256,
        "scaling_factor": 1.0,
    },
    "vocoder": {
        **_MEL_VOCODER,
        "upsample_initial_channel": 64,
        "resblock_kernel_sizes": [3],
        "resblock_dilation_sizes": [[1, 3, 5]],
    },
    "scheduler": _DDIM,
    # CLAP's text tower (``vocab_size`` from the tokenizer; AudioLDM's adds ``projection_dim``).
    "clap_text": {
        **_ROBERTA_TEXT,
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
    },
    # CLAP's audio tower as MusicLDM and AudioLDM 2 carry it (the tiny CLAP preset: unfused).
    "clap_audio": {
        "spec_size": 64,
        "window_size": 4,
        "num_mel_bins": 64,
        "intermediate_size": 37,
        "depths": [2, 2],
        "num_attention_heads": [2, 2],
        "num_hidden_layers": 2,
        "hidden_size": 32,
        "patch_size": 2,
        "patch_stride": 2,
        "patch_embed_input_channels": 4,
        "layer_norm_eps": 1e-5,
    },
    "clap_features": {"feature_size": 64, "sampling_rate": 16000, "frequency_max": 8000},
    # AudioLDM 2: T5 (``vocab_size`` from its tokenizer), GPT-2, the projection, a two-context UNet.
    "t5": {
        "d_model": _T5_DIM,
        "d_ff": 64,
        "d_kv": 12,
        "num_heads": 4,
        "num_layers": 2,
        "relative_attention_num_buckets": 8,
        "pad_token_id": 0,
        "eos_token_id": 1,
    },
    "t5_spiece": {  # sentencepiece trainer options of T5's tiny unigram ``spiece.model``
        "vocab_size": 40,
        "hard_vocab_limit": False,
        "model_type": "unigram",
        "pad_id": 0,
        "eos_id": 1,
        "unk_id": 2,
        "bos_id": -1,
        "pad_piece": "<pad>",
        "eos_piece": "</s>",
        "unk_piece": "<unk>",
        "character_coverage": 1.0,
        "minloglevel": 2,
    },
    "gpt2": {
        "n_embd": _GPT2_DIM,
        "n_head": 4,
        "n_layer": 2,
        "vocab_size": 50,
        "n_positions": 64,
        "max_new_tokens": 8,
    },
    "audioldm2_unet": {
        **_TWO_BLOCKS,
        "cross_attention_dim": ([None, _GPT2_DIM, _T5_DIM],) * 2,
        "attention_head_dim": 8,
        "norm_num_groups": 16,
    },
    "audioldm2_projection": {
        "text_encoder_dim": 32,
        "text_encoder_1_dim": _T5_DIM,
        "langauge_model_dim": _GPT2_DIM,
    },
    # CLIP (``vocab_size`` and the special ids follow the tokenizer: see :func:`tiny`'s callers).
    "clip_text": {
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 77,
        "hidden_act": "quick_gelu",
    },
    "clip_vision": {
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": 32,
        "patch_size": 8,
        "num_channels": 3,
        "hidden_act": "quick_gelu",
    },
    # Captioners and writers: the language model, a ViT and a Q-Former (BLIP-2, MiniGPT-4).
    "lm": _LM,
    "qwen2": {**_LM, "num_key_value_heads": 2},
    "chatglm": {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "inner_hidden_size": 128,
        "max_sequence_length": 512,
        "num_image_tokens": 0,
        "use_cache": True,
    },
    "chatglm2": {
        "num_hidden_layers": 2,
        "hidden_size": 64,
        "ffn_hidden_size": 128,
        "kv_channels": 16,
        "num_attention_heads": 4,
        "multi_query_group_num": 2,
        "max_sequence_length": 512,
        "seq_length": 512,
    },
    "opt": {
        "hidden_size": 64,
        "word_embed_proj_dim": 64,
        "ffn_dim": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 512,
    },
    "vision": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": 32,
        "patch_size": 8,
    },
    "qformer": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "vocab_size": 100,
        "max_position_embeddings": 64,
        "cross_attention_frequency": 1,
    },
}
"""Tiny component configs by name (keyword arguments of the library classes)."""

# ---------------------------------------------------------------------------------------------
# The published sizes.
# ---------------------------------------------------------------------------------------------
AUDIOLDM_S: dict[str, dict] = {
    "unet": {
        "sample_size": 128,
        "in_channels": 8,
        "out_channels": 8,
        "layers_per_block": 2,
        "block_out_channels": (128, 256, 384, 640),
        "down_block_types": (
            "DownBlock2D",
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
        ),
        "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        "cross_attention_dim": (128, 256, 384, 640),
        "attention_head_dim": 8,
        "class_embed_type": "simple_projection",
        "projection_class_embeddings_input_dim": 512,
        "class_embeddings_concat": True,
    },
    "vae": {
        **_MEL_VAE,
        "sample_size": 512,
        "layers_per_block": 2,
        "block_out_channels": (128, 256, 512),
        "scaling_factor": 0.18215,
    },
    "text": {
        **_ROBERTA_TEXT,
        "vocab_size": 50265,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "hidden_act": "gelu",
        "type_vocab_size": 1,
        "projection_dim": 512,
        "projection_hidden_act": "relu",
    },
    "vocoder": {
        **_MEL_VOCODER,
        "upsample_initial_channel": 1024,
        "resblock_kernel_sizes": [3, 7, 11],
        "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    },
    "scheduler": {**_DDIM, "prediction_type": "epsilon"},
}
"""AudioLDM-S (``cvssp/audioldm-s-full-v2``): component configs by name."""

CLIP_B32: dict[str, dict] = {
    "text": {
        "vocab_size": 49408,
        "hidden_size": 512,
        "intermediate_size": 2048,
        "num_hidden_layers": 12,
        "num_attention_heads": 8,
        "max_position_embeddings": 77,
        "hidden_act": "quick_gelu",
        "bos_token_id": 0,
        "pad_token_id": 1,
        "eos_token_id": 2,
    },
    "vision": {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "image_size": 224,
        "patch_size": 32,
        "num_channels": 3,
        "hidden_act": "quick_gelu",
    },
    "projection": {"projection_dim": 512, "logit_scale_init_value": 2.6592},
}
"""``openai/clip-vit-base-patch32``: the text and vision towers, the projection."""

# The AudioLDM 1 "small" checkpoints share one architecture.
FULL_SIZE: dict[str, dict[str, dict]] = {
    "audioldm-s-full-v2": AUDIOLDM_S,
    "audioldm-s-full": AUDIOLDM_S,
    "audioldm": AUDIOLDM_S,
}
"""Full-size pipelines by preset name."""


def tiny(part: str, **changes) -> dict:
    """A fresh copy of the tiny config ``part`` (a key of :data:`TINY`) with ``changes`` applied.

    Raises
    ------
    KeyError
        If ``part`` is not a key of :data:`TINY`.
    """
    return {**copy.deepcopy(TINY[part]), **changes}


def full_size(preset: str) -> dict[str, dict]:
    """A fresh copy of the component configs of the full-size ``preset`` (a key of :data:`FULL_SIZE`).

    Raises
    ------
    ValueError
        If no full-size config is recorded for ``preset``.
    """
    if preset not in FULL_SIZE:
        raise ValueError(
            f"preset={preset!r} has no recorded full-size config; use one of {', '.join(FULL_SIZE)}"
        )
    return copy.deepcopy(FULL_SIZE[preset])


# ---------------------------------------------------------------------------------------------
# Tokenizer files.
# ---------------------------------------------------------------------------------------------
TINY_MERGES = [
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
"""The merges of the tiny pipelines' and the tiny CLAP's byte-level BPE."""
ROBERTA_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table, in GPT-2's order (printable bytes first)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {b: chr(b) for b in printable}
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + len(table) - len(printable))
    return table


def bpe_vocab(
    specials: tuple[str, ...] = ROBERTA_SPECIALS,
    merges: list[tuple[str, str]] | None = None,
    trailing: tuple[str, ...] = ("<mask>",),
    *,
    byte_order: bool = False,
) -> dict[str, int]:
    """A byte-level BPE vocabulary: ``specials``, the 256 byte symbols, the merged pairs, ``trailing``.

    The byte symbols come in GPT-2's order, or by byte value with ``byte_order=True``. ``merges``
    defaults to :data:`TINY_MERGES`.
    """
    table = bytes_to_unicode()
    symbols = [table[b] for b in range(256)] if byte_order else list(table.values())
    vocab: dict[str, int] = {tok: i for i, tok in enumerate(specials)}
    pairs = TINY_MERGES if merges is None else merges
    for token in [*symbols, *(a + b for a, b in pairs), *trailing]:
        vocab.setdefault(token, len(vocab))
    return vocab


def clip_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """CLIP's vocabulary: the 256 byte symbols, each again with the end-of-word mark ``</w>``, the
    merged pairs, then ``<|startoftext|>`` and ``<|endoftext|>`` (the largest id, which CLIP's text
    tower pools at)."""
    symbols = list(bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in [*symbols, *(s + "</w>" for s in symbols), *(a + b for a, b in merges)]:
        vocab.setdefault(token, len(vocab))
    for token in ("<|startoftext|>", "<|endoftext|>"):
        vocab.setdefault(token, len(vocab))
    return vocab


def write_bpe_files(folder: Path, vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
    """Write ``vocab.json`` and ``merges.txt`` (the slow tokenizers' files) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_bpe_tokenizer_files(
    folder: Path,
    specials: tuple[str, ...] = ROBERTA_SPECIALS,
    merges: list[tuple[str, str]] | None = None,
    trailing: tuple[str, ...] = ("<mask>",),
) -> dict[str, int]:
    """Write a byte-level BPE ``vocab.json`` and ``merges.txt`` (RoBERTa/GPT-2 format) into ``folder``.

    The vocabulary is :func:`bpe_vocab`'s (any text encodes without ``<unk>``). Returns it.
    """
    merges = TINY_MERGES if merges is None else merges
    vocab = bpe_vocab(specials, merges, trailing)
    write_bpe_files(folder, vocab, merges)
    return vocab


def write_clip_tokenizer_files(folder: Path, merges: list[tuple[str, str]]) -> dict[str, int]:
    """Write a CLIP-format BPE ``vocab.json`` and ``merges.txt`` (:func:`clip_vocab`) into ``folder``;
    return the vocabulary."""
    vocab = clip_vocab(merges)
    write_bpe_files(folder, vocab, merges)
    return vocab


def clip_preprocessor(size: int) -> dict:
    """A CLIP ``preprocessor_config.json`` as the hub publishes it (openai's mean and std, bicubic),
    for ``size``-pixel pictures (224 for ViT-B/32)."""
    return {
        "crop_size": size,
        "do_center_crop": True,
        "do_normalize": True,
        "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor",
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "resample": 3,
        "size": size,
    }
