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

:func:`lay_hf_cache` also lays the models a class downloads (AudioLDM-S, ``laion/clap-htsat-unfused``
for ranking and tags, ``openai/clip-vit-base-patch32`` for the image chain's tags) into a Hugging
Face cache exactly as a first download leaves them: ``models--owner--name/blobs``,
``snapshots/<rev>/...`` symlinks, ``refs/main``; diffusers/transformers layout (torch names and
``nn.Linear`` orientation), safetensors with ``pt`` metadata. Full-size geometry, random weights:

- CLAP: ``ClapConfig()`` defaults are laion's unfused HTSAT-tiny audio tower (depths [2, 2, 6, 2],
  768 wide, 256-bin spec, ``enable_fusion`` false) beside the RoBERTa-base text tower, 512-d
  projection; the feature extractor at 48 kHz, 10 s, ``rand_trunc`` as in the repo.
- CLIP: ``CLIPConfig()`` defaults are ViT-B/32 (vision 768 × 12 layers, patch 32, 224 px; text
  512 × 12 layers, 77 positions, 49,408-token vocabulary; 512-d projection).

Tokenizers are small BPE files written here (ids stay below the real vocabularies).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

__all__ = [
    "ARCHITECTURES",
    "BUILD_VERSION",
    "HUB_IDS",
    "architecture",
    "build",
    "fullsize_dir",
    "lay_hf_cache",
]

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
    from mgtoolkit.testing.tiny import write_bpe_tokenizer_files

    from mgtoolkit.runtime import import_paddle

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


# ---------------------------------------------------------------------------------------------
# The hub models a class downloads, laid in a Hugging Face cache as a download leaves them.
# ---------------------------------------------------------------------------------------------
HUB_IDS = {
    "audioldm-s-full-v2": "cvssp/audioldm-s-full-v2",
    "clap": "laion/clap-htsat-unfused",
    "clip": "openai/clip-vit-base-patch32",
}
"""What :func:`lay_hf_cache` can lay: short name -> hub id."""


def build_clap(folder: Path, seed: int = 0) -> None:
    """laion/clap-htsat-unfused's geometry with random weights, saved by paddlenlp into ``folder``."""
    from mgtoolkit.testing.tiny import write_bpe_tokenizer_files

    from mgtoolkit.runtime import import_paddle

    import_paddle().seed(seed)
    from ppdiffusers.transformers import ClapConfig, ClapFeatureExtractor, ClapModel, RobertaTokenizer

    write_bpe_tokenizer_files(folder / "_tok_src")
    tokenizer = RobertaTokenizer(
        vocab_file=str(folder / "_tok_src" / "vocab.json"),
        merges_file=str(folder / "_tok_src" / "merges.txt"),
        model_max_length=512,
    )
    ClapModel(ClapConfig()).save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    ClapFeatureExtractor(truncation="rand_trunc").save_pretrained(str(folder))
    shutil.rmtree(folder / "_tok_src")


def write_clip_tokenizer_files(folder: Path) -> None:
    """A small CLIP BPE vocabulary: the byte symbols, each with ``</w>``, a few merges, the specials."""
    import json

    from mgtoolkit.testing.tiny import write_bpe_tokenizer_files

    folder.mkdir(parents=True, exist_ok=True)
    write_bpe_tokenizer_files(folder / "_bytes")
    symbols = [s for s in json.loads((folder / "_bytes" / "vocab.json").read_text(encoding="utf-8"))
               if len(s) == 1]  # fmt: skip
    shutil.rmtree(folder / "_bytes")
    merges = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "d</w>")]
    vocab: dict[str, int] = {}
    for token in symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]:
        vocab.setdefault(token, len(vocab))
    vocab.setdefault("<|startoftext|>", len(vocab))
    vocab.setdefault("<|endoftext|>", len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def build_clip(folder: Path, seed: int = 0) -> None:
    """openai/clip-vit-base-patch32's geometry with random weights, saved by paddlenlp into ``folder``."""
    from mgtoolkit.runtime import import_paddle

    import_paddle().seed(seed)
    from ppdiffusers.transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    write_clip_tokenizer_files(folder / "_tok_src")
    tokenizer = CLIPTokenizer(
        str(folder / "_tok_src" / "vocab.json"), str(folder / "_tok_src" / "merges.txt")
    )
    CLIPModel(CLIPConfig()).save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    CLIPImageProcessor(crop_size=224, size={"shortest_edge": 224}).save_pretrained(str(folder))
    shutil.rmtree(folder / "_tok_src")


def lay_hf_cache(
    cache: Path, names: tuple[str, ...] = tuple(HUB_IDS), *, work: Path | None = None
) -> dict[str, Path]:
    """Lay each of ``names`` (keys of :data:`HUB_IDS`) into the Hugging Face cache ``cache``.

    Built with paddle, written in torch layout by :mod:`mgtoolkit.testing.hub_layouts`, then laid as
    blobs + snapshot symlinks + ``refs/main``. A model whose ``refs/main`` is there already is kept.
    Returns ``{name: snapshot folder}``.
    """
    from mgtoolkit.testing.hub_layouts import (
        write_diffusers_folder,
        write_hf_cache,
        write_transformers_folder,
    )

    laid = {}
    for name in names:
        repo_id = HUB_IDS[name]
        repo = cache / ("models--" + repo_id.replace("/", "--"))
        if (repo / "refs" / "main").is_file():
            laid[name] = repo / "snapshots" / (repo / "refs" / "main").read_text(encoding="utf-8").strip()
            continue
        (work or cache).mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".lay-", dir=work or cache))
        try:
            src, hub = staging / "paddle", staging / "hub"
            src.mkdir()
            if name in ARCHITECTURES:
                build(name, src)
                write_diffusers_folder(src, hub)
            else:
                from ppdiffusers.transformers import ClapModel, CLIPModel

                (build_clap if name == "clap" else build_clip)(src)
                write_transformers_folder(src, hub, ClapModel if name == "clap" else CLIPModel)
            laid[name] = write_hf_cache(hub, cache, repo_id)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return laid
