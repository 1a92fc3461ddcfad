"""Full-size AudioLDM architectures with random weights, built from their real configs (no download).

Speed does not depend on weight values, so a pipeline with the real layer sizes and random weights
times exactly like the released one. The configs, with where each number comes from, are
:data:`mgtoolkit.models.architectures.AUDIOLDM_S` (UNet, VAE, scheduler from diffusers' AudioLDM
conversion script; the ``ClapTextConfig`` defaults; the checkpoint's vocoder config); the tokenizer
is the small byte-level BPE of :func:`mgtoolkit.models.architectures.write_bpe_tokenizer_files`
(``model_max_length`` 512 as in the real tokenizer; token ids stay below the real vocabulary size).
``benchmarks/torch_reference.py`` builds the torch twin from the same dicts.

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

import importlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from mgtoolkit.models.architectures import FULL_SIZE, full_size, write_clip_tokenizer_files
from mgtoolkit.models.tiny.build import roberta_tokenizer, save_model

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
ARCHITECTURES = FULL_SIZE
TESTS = Path(__file__).resolve().parents[1] / "tests"


def architecture(preset: str) -> dict[str, dict]:
    """The component configs of ``preset`` (see :func:`mgtoolkit.models.architectures.full_size`).

    Raises
    ------
    ValueError
        If no offline config is recorded for ``preset``.
    """
    return full_size(preset)


def hub_layouts():
    """The test fixture that writes a paddle folder as the hubs publish it (``tests/fixtures``)."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    return importlib.import_module("fixtures.hub_layouts")


def build(preset: str, folder: Path, seed: int = 0) -> None:
    """Build ``preset`` with random weights and ``save_pretrained`` it into ``folder``."""
    from mgtoolkit.runtime import import_paddle

    paddle = import_paddle()
    from ppdiffusers import AudioLDMPipeline, AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from ppdiffusers.transformers import (
        ClapTextConfig,
        ClapTextModelWithProjection,
        SpeechT5HifiGan,
        SpeechT5HifiGanConfig,
    )

    cfg = architecture(preset)
    paddle.seed(seed)
    tok_dir = folder / "_tok_src"
    tokenizer, _ = roberta_tokenizer(tok_dir)
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
    from mgtoolkit.config import cache_root

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

    from mgtoolkit.runtime import import_paddle

    import_paddle().seed(seed)
    from ppdiffusers.transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    tokenizer, _ = roberta_tokenizer(folder / "_src")
    save_model(folder, ClapModel(ClapConfig()), tokenizer, ClapFeatureExtractor(truncation="rand_trunc"))


def build_clip(folder: Path, seed: int = 0) -> None:
    """openai/clip-vit-base-patch32's geometry with random weights, saved by paddlenlp into ``folder``."""
    from mgtoolkit.runtime import import_paddle

    import_paddle().seed(seed)
    from ppdiffusers.transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    write_clip_tokenizer_files(folder / "_src", [("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "d</w>")])
    tokenizer = CLIPTokenizer(str(folder / "_src" / "vocab.json"), str(folder / "_src" / "merges.txt"))
    processor = CLIPImageProcessor(crop_size=224, size={"shortest_edge": 224})
    save_model(folder, CLIPModel(CLIPConfig()), tokenizer, processor)


def lay_hf_cache(
    cache: Path, names: tuple[str, ...] = tuple(HUB_IDS), *, work: Path | None = None
) -> dict[str, Path]:
    """Lay each of ``names`` (keys of :data:`HUB_IDS`) into the Hugging Face cache ``cache``.

    Built with paddle, written in torch layout by ``tests/fixtures/hub_layouts.py``, then laid as
    blobs + snapshot symlinks + ``refs/main``. A model whose ``refs/main`` is there already is kept.
    Returns ``{name: snapshot folder}``.
    """
    layouts = hub_layouts()

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
            if name in FULL_SIZE:
                build(name, src)
                layouts.write_diffusers_folder(src, hub)
            else:
                from ppdiffusers.transformers import ClapModel, CLIPModel

                (build_clap if name == "clap" else build_clip)(src)
                layouts.write_transformers_folder(src, hub, ClapModel if name == "clap" else CLIPModel)
            laid[name] = layouts.write_hf_cache(hub, cache, repo_id)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return laid
