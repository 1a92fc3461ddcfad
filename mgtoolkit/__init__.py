"""mgtoolkit: make music in Jupyter with AudioLDM on PaddlePaddle.

>>> import mgtoolkit as mg
>>> clip = mg.generate("smooth jazz piano", seed=120, model="tiny")  # doctest: +SKIP

``import mgtoolkit`` is light: paddle, ppdiffusers and paddlenlp load only with a model, and the
widget and plotting parts load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from .core import generate, load_model, unload, validate_request  # noqa: E402
from .errors import GenerationCancelled, InvalidInputError, MgtoolkitError, ModelUnavailableError  # noqa: E402
from .models import PRESETS, resolve_model  # noqa: E402
from .types import Clip, GenerationRequest  # noqa: E402

# name -> module; imported on first attribute access so that ipywidgets, matplotlib and the
# model code load only when used.
_LAZY = {
    "SCHEDULERS": "mgtoolkit.backends.audioldm",
    "PromptTruncatedWarning": "mgtoolkit.backends.audioldm",
    # notebook studio (issue 4): plots, display, teaching, widgets
    "show": "mgtoolkit.display",
    "show_denoising": "mgtoolkit.display",
    "about": "mgtoolkit.display",
    "waveshow": "mgtoolkit.plots",
    "melshow": "mgtoolkit.plots",
    "clip_figure": "mgtoolkit.plots",
    "denoising_snapshots": "mgtoolkit.teaching",
    "studio": "mgtoolkit.widgets",
    "TextPanel": "mgtoolkit.widgets",
    "ImagePanel": "mgtoolkit.widgets",
    "AudioPanel": "mgtoolkit.widgets",
    # image -> music, audio -> music (issue 3)
    "image_to_music": "mgtoolkit.chains",
    "describe_image": "mgtoolkit.chains",
    "write_music_prompt": "mgtoolkit.chains",
    "Story": "mgtoolkit.chains",
    "CAPTIONERS": "mgtoolkit.chains",
    "WRITERS": "mgtoolkit.chains",
    "WriterFallbackWarning": "mgtoolkit.chains",
    "restyle": "mgtoolkit.restyle",
    "variations": "mgtoolkit.restyle",
    "example_image": "mgtoolkit.images",
}


# submodules reachable as attributes (mg.plots.waveshow, ...) without importing them up front
_SUBMODULES = {"appflow", "audio", "display", "images", "plots", "prompts", "teaching", "widgets"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"mgtoolkit.{name}")
    else:
        raise AttributeError(f"module 'mgtoolkit' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)


__all__ = [
    "__version__",
    "generate",
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
