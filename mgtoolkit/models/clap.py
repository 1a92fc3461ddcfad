"""CLAP (contrastive language-audio pretraining): how well a text fits a sound.

One small interface over two sources of a CLAP model: the one inside a MusicLDM or AudioLDM 2
pipeline (its ``text_encoder`` is a full ``ClapModel`` with an audio tower), and
``laion/clap-htsat-unfused`` loaded through paddlenlp's ``ClapModel`` for AudioLDM, whose pipeline
keeps only the text tower. ``tiny`` is a random CLAP built offline
(:mod:`mgtoolkit.models.tiny.clap`). paddle and paddlenlp are imported inside functions only.

Scores are cosine similarities of L2-normalised embeddings, in ``[-1, 1]``: the same order as the
pipelines' own ``score_waveforms`` (which sorts by ``logits_per_text``, the cosine times a positive
scale), but comparable across prompts and models.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError, ModelUnavailableError

__all__ = [
    "CLAP_MODELS",
    "DEFAULT_CLAP",
    "LoadedClap",
    "resolve_clap",
    "load_clap",
    "release_clap",
    "pipeline_clap",
    "text_embeddings",
    "audio_embeddings",
    "similarity",
]

CLAP_MODELS = {
    "clap-htsat-unfused": "laion/clap-htsat-unfused",
    "tiny": "tiny-clap",
}
"""Named CLAP models: name -> hub id (``tiny-clap`` is built locally)."""

DEFAULT_CLAP = "clap-htsat-unfused"
_SIZE_GB = 0.6
_LOCK = threading.RLock()


@dataclass(frozen=True)
class LoadedClap:
    """A CLAP model with its tokenizer and feature extractor.

    Attributes
    ----------
    name : str
        Where it came from: a name in :data:`CLAP_MODELS`, a folder, or ``"pipeline"`` (the
        generating pipeline's own CLAP).
    model : paddlenlp.transformers.ClapModel
    tokenizer : tokenizer
    feature_extractor : paddlenlp.transformers.ClapFeatureExtractor
    load_s : float
        Seconds spent loading (0 for a pipeline's own).
    """

    name: str
    model: Any = field(repr=False)
    tokenizer: Any = field(repr=False)
    feature_extractor: Any = field(repr=False)
    load_s: float = 0.0

    @property
    def sample_rate(self) -> int:
        """The rate the audio tower takes (48 kHz for laion's CLAP)."""
        return int(self.feature_extractor.sampling_rate)

    @property
    def window_samples(self) -> int:
        """Samples per window the audio tower sees at once (10 s for laion's CLAP)."""
        return int(self.feature_extractor.nb_max_samples)


def _looks_like_hub_id(name: str) -> bool:
    """``owner/name`` with plain parts (no ``..``, no spaces, no further slashes)."""
    from .registry import _looks_like_hub_id as hub_id

    return hub_id(name)


def resolve_clap(clap: str | os.PathLike | None = None, *, tiny: bool = False) -> tuple[str, str]:
    """``(name, source)`` for a CLAP name, hub id or folder; ``None`` is the default (``tiny`` if asked).

    Examples
    --------
    >>> resolve_clap(None)
    ('clap-htsat-unfused', 'laion/clap-htsat-unfused')
    >>> resolve_clap(None, tiny=True)
    ('tiny', 'tiny-clap')
    """
    if clap is None:
        clap = "tiny" if tiny else DEFAULT_CLAP
    name = os.fspath(clap).strip() if isinstance(clap, (str, os.PathLike)) else clap
    if isinstance(name, str) and name in CLAP_MODELS:
        return name, CLAP_MODELS[name]
    if isinstance(name, str) and (os.path.isdir(name) or _looks_like_hub_id(name)):
        return name, name
    raise InvalidInputError(
        "clap",
        clap,
        "is not a known CLAP model, hub id nor folder",
        f"use one of {', '.join(CLAP_MODELS)}, or a folder written by save_pretrained",
    )


def load_clap(clap: str | os.PathLike | None = None, *, tiny: bool = False, device: str | None = None):
    """Load (cached until :func:`release_clap`) a CLAP model; see :func:`resolve_clap`."""
    from ..runtime import pick_device

    name, source = resolve_clap(clap, tiny=tiny)
    with _LOCK:
        return _load_cached(name, source, pick_device(device))


def release_clap() -> None:
    """Forget the loaded CLAP model and give its memory back."""
    with _LOCK:
        _load_cached.cache_clear()
    gc.collect()


@lru_cache(maxsize=1)
def _load_cached(name: str, source: str, device: str) -> LoadedClap:
    t0 = time.perf_counter()
    from ..runtime import import_paddle, quiet_model_logs

    import_paddle().set_device(device)
    quiet_model_logs()
    model, tokenizer, extractor = _from_pretrained(name, source)
    model.eval()
    return LoadedClap(name, model, tokenizer, extractor, time.perf_counter() - t0)


def _from_pretrained(name: str, source: str):
    """Model, tokenizer and feature extractor from the folder mgtoolkit builds for ``source``.

    A folder, the hub id's copy in the Hugging Face cache or PaddleNLP's, or a download through
    :func:`mgtoolkit.models.weights.fetch_repo` (configurations, tokenizer files and safetensors,
    never code): always read through :func:`mgtoolkit.models.weights.paddle_folder`, so torch
    weights are converted and pickles go through the restricted reader. The libraries' own
    download and pickle readers are never reached.
    """
    from .audioldm import import_ppdiffusers

    import_ppdiffusers()  # its RobertaTokenizer reads the hub's vocab.json + merges.txt, as AudioLDM's
    from ppdiffusers.transformers import ClapFeatureExtractor, ClapModel, RobertaTokenizer

    from . import weights

    if source == "tiny-clap":  # built by mgtoolkit in its own cache
        from .tiny.clap import tiny_clap_dir

        weights.check_cache_root(field="clap", name=name)
        folder = tiny_clap_dir()
        source = str(folder)
    else:
        folder = weights.locate(source, marker="config.json")  # a folder, or the hub id's cached copy
        if folder is None:
            folder = weights.fetch_repo(source, field="clap", name=name, size=f" (about {_SIZE_GB:g} GB)")
        source = str(weights.paddle_folder(folder, name=name, field="clap", model_class=ClapModel))
    try:
        return (
            _load_model(ClapModel, source),
            RobertaTokenizer.from_pretrained(source),
            ClapFeatureExtractor.from_pretrained(source),
        )
    except ModelUnavailableError:
        raise
    except Exception as exc:  # noqa: BLE001 - the libraries raise anything on odd files; one line
        detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise ModelUnavailableError(
            f"clap={name!r}: {folder} does not load as a CLAP model ({type(exc).__name__}: {detail}); some "
            "files are missing or damaged: download it again and pass clap='/path/to/that/folder', or rank=False "
            "to keep the candidates in seed order."
        ) from None


TOWERS = {
    "clap_text": (("text_model", "text_projection"), ("get_text_features",)),
    "clap_audio": (("audio_model", "audio_projection"), ("get_audio_features",)),
}
"""CLAP's two towers, as :func:`mgtoolkit.accel.lowmem.enable_towers` swaps them in low-memory mode."""


def _load_model(cls, source: str, **extra):
    """``cls.from_pretrained`` without a second copy of the weights in memory (paddlenlp's
    ``low_cpu_mem_usage``: 0.6 GB less at the peak and 5x faster for laion's CLAP, same tensors).

    In low-memory mode (:func:`mgtoolkit.accel.lowmem.choose`, on a CPU) the music model's resident
    stage is released first, and only the running tower keeps its weights, read back from
    ``source`` (the converted copy; no second copy on disk).
    """
    from ..accel import lowmem
    from ..runtime import import_paddle
    from .model_files import load_despite_stray_warnings

    small = lowmem.choose() and import_paddle().get_device() == "cpu"
    if small:
        lowmem.make_room()
    model = load_despite_stray_warnings(lambda: cls.from_pretrained(source, low_cpu_mem_usage=True, **extra))
    if small:
        model.eval()
        lowmem.enable_towers(model, TOWERS, Path(source) if os.path.isdir(source) else None, guard=_LOCK)
    return model


def pipeline_clap(pipe: Any) -> LoadedClap | None:
    """The CLAP inside a MusicLDM / AudioLDM 2 pipeline, or ``None`` if it has no audio tower."""
    model = getattr(pipe, "text_encoder", None)
    extractor = getattr(pipe, "feature_extractor", None)
    if model is None or extractor is None or not hasattr(model, "get_audio_features"):
        return None
    return LoadedClap("pipeline", model, pipe.tokenizer, extractor)


def text_embeddings(clap: LoadedClap, texts: Sequence[str]) -> np.ndarray:
    """L2-normalised text embeddings, ``[len(texts), dim]`` float32."""
    from ..runtime import import_paddle

    paddle = import_paddle()
    inputs = clap.tokenizer(
        list(texts), padding=True, truncation=True, return_attention_mask=True, return_tensors="pd"
    )
    with _LOCK, paddle.no_grad():
        out = clap.model.get_text_features(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
        )
    return _normalise(out.cast("float32").numpy())


def audio_embeddings(clap: LoadedClap, waveforms: Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
    """L2-normalised audio embeddings, ``[len(waveforms), dim]`` float32.

    Each waveform is resampled to the model's rate and cut into windows the tower sees whole (no
    random crop, so the same audio always gives the same embedding); the windows' embeddings are
    averaged. The caller's numpy random stream is left as it was.
    """
    from ..runtime import import_paddle

    paddle = import_paddle()
    rows = []
    for wave in waveforms:
        windows = _windows(_resample(np.asarray(wave, np.float32), sample_rate, clap.sample_rate), clap)
        features = _features(clap, windows)
        dtype = clap.model.audio_projection.linear1.weight.dtype
        with _LOCK, paddle.no_grad():
            out = clap.model.get_audio_features(
                input_features=paddle.to_tensor(features["input_features"]).cast(dtype),
                is_longer=paddle.to_tensor(features["is_longer"]),
            )
        rows.append(_normalise(out.cast("float32").numpy()).mean(axis=0))
    return _normalise(np.stack(rows))


def similarity(
    clap: LoadedClap, texts: Sequence[str], waveforms: Sequence[np.ndarray], sample_rate: int
) -> np.ndarray:
    """Cosine similarity of every waveform with every text, ``[len(waveforms), len(texts)]``."""
    return audio_embeddings(clap, waveforms, sample_rate) @ text_embeddings(clap, texts).T


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def _resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return wave
    import soxr

    return soxr.resample(wave, rate, target, quality="HQ").astype(np.float32)


def _windows(wave: np.ndarray, clap: LoadedClap) -> list[np.ndarray]:
    """Whole windows of the tower's length covering all of ``wave`` (the last one ends at its end).

    Examples
    --------
    >>> fake = LoadedClap("x", None, None, type("FE", (), {"nb_max_samples": 4})())
    >>> [w.tolist() for w in _windows(np.arange(10), fake)]
    [[0, 1, 2, 3], [4, 5, 6, 7], [6, 7, 8, 9]]
    """
    size = clap.window_samples
    if wave.shape[0] <= size:
        return [wave]  # the extractor repeats and pads it
    starts = list(range(0, wave.shape[0] - size + 1, size))
    if starts[-1] + size < wave.shape[0]:
        starts.append(wave.shape[0] - size)
    return [wave[s : s + size] for s in starts]


def _features(clap: LoadedClap, windows: list[np.ndarray]) -> dict:
    """The feature extractor's output, with numpy's global random state untouched.

    ``"fusion"`` extractors draw random crops (and a random ``is_longer``) from numpy's global
    generator: it is seeded here for the same answer each time, and restored afterwards.
    """
    state = np.random.get_state()  # noqa: NPY002 - the global stream the extractor draws from
    try:
        np.random.seed(0)  # noqa: NPY002
        out = clap.feature_extractor(
            [w.astype(np.float64) for w in windows], sampling_rate=clap.sample_rate, return_tensors="np"
        )
    finally:
        np.random.set_state(state)  # noqa: NPY002
    return {
        "input_features": np.asarray(out["input_features"], np.float32),
        "is_longer": np.asarray(out["is_longer"]),
    }
