"""mgtoolkit: make music in Jupyter with AudioLDM on PaddlePaddle.

>>> import mgtoolkit as mg
>>> clip = mg.generate("smooth jazz piano", seed=120, model="tiny")  # doctest: +SKIP

``import mgtoolkit`` is light: paddle, ppdiffusers and paddlenlp load only with a model, and the
widget and plotting parts load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .config import VERSION as __version__  # noqa: E402
from .errors import GenerationCancelled, InvalidInputError, MgtoolkitError, ModelUnavailableError  # noqa: E402
from .models.loading import load_model, unload  # noqa: E402
from .models.registry import PRESETS, resolve_model  # noqa: E402
from .tasks.text import validate_request  # noqa: E402
from .types import Clip, GenerationRequest  # noqa: E402

# name -> module; imported on first attribute access so that ipywidgets, matplotlib and the
# model code load only when used. The flow reads top to bottom: request -> model -> waveform -> display.
_LAZY = {
    # the tasks (recorded in the studio's history)
    "generate": "mgtoolkit.api",
    "image_to_music": "mgtoolkit.api",
    "audio_to_music": "mgtoolkit.api",
    "restyle": "mgtoolkit.api",
    "extend": "mgtoolkit.api",
    "variations": "mgtoolkit.api",
    "describe_image": "mgtoolkit.tasks.image",
    "write_music_prompt": "mgtoolkit.tasks.image",
    "Story": "mgtoolkit.tasks.image",
    "CAPTIONERS": "mgtoolkit.tasks.image",
    "WRITERS": "mgtoolkit.tasks.image",
    "WriterFallbackWarning": "mgtoolkit.tasks.image",
    # seeing: CLIP tags of a picture (the default captioner)
    "tag_image": "mgtoolkit.tasks.image_tags",
    "ImageTags": "mgtoolkit.tasks.image_tags",
    # listening: describe a clip, CLAP tags
    "describe_audio": "mgtoolkit.analysis.describe",
    "AudioDescription": "mgtoolkit.analysis.describe",
    # a DAW's grid: exact tempo, whole bars, a key; the notes as MIDI
    "conform": "mgtoolkit.analysis.conform",
    "transcribe": "mgtoolkit.io.midi",
    "example_loop": "mgtoolkit.analysis.synth",
    "click_along": "mgtoolkit.analysis.conform",
    # the models
    "SCHEDULERS": "mgtoolkit.models.audioldm",
    "PromptTruncatedWarning": "mgtoolkit.models.audioldm",
    # speed-ups
    "optimize": "mgtoolkit.accel",
    # files
    "example_image": "mgtoolkit.io.images",
    # the notebook: plots, display, teaching, widgets
    "show": "mgtoolkit.notebook.display",
    "show_denoising": "mgtoolkit.notebook.teaching",
    "about": "mgtoolkit.notebook.display",
    "waveshow": "mgtoolkit.notebook.plots",
    "melshow": "mgtoolkit.notebook.plots",
    "clip_figure": "mgtoolkit.notebook.plots",
    "denoising_snapshots": "mgtoolkit.notebook.teaching",
    "studio": "mgtoolkit.notebook.widgets",
    "TextPanel": "mgtoolkit.notebook.widgets",
    "ImagePanel": "mgtoolkit.notebook.widgets",
    "AudioPanel": "mgtoolkit.notebook.widgets",
    # many prompts to files, here or on a Ray cluster (not recorded: it writes files)
    "batch": "mgtoolkit.batching",
}


# submodules reachable as attributes (mg.plots.waveshow, ...) without importing them up front
_SUBMODULES = {
    "appflow": "mgtoolkit.appflow",
    "accel": "mgtoolkit.accel",
    "config": "mgtoolkit.config",
    "tasks": "mgtoolkit.tasks",
    "models": "mgtoolkit.models",
    "audio": "mgtoolkit.io.audio",
    "images": "mgtoolkit.io.images",
    "prompts": "mgtoolkit.prompts",
    "display": "mgtoolkit.notebook.display",
    "plots": "mgtoolkit.notebook.plots",
    "teaching": "mgtoolkit.notebook.teaching",
    "widgets": "mgtoolkit.notebook.widgets",
    "history": "mgtoolkit.notebook.history",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(_SUBMODULES[name])
    else:
        raise AttributeError(f"module 'mgtoolkit' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


__all__ = [
    "__version__",
    "load_model",
    "unload",
    "validate_request",
    "Clip",
    "GenerationRequest",
    "PRESETS",
    "resolve_model",
    "MgtoolkitError",
    "InvalidInputError",
    "ModelUnavailableError",
    "GenerationCancelled",
    *_LAZY,
]
