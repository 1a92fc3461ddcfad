"""The named text-to-audio models mgtoolkit knows, and how a ``model=`` value is resolved.

Pure data: nothing here imports paddle.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..config import DEFAULTS, setting
from ..errors import InvalidInputError, ModelUnavailableError

__all__ = ["ModelSpec", "PRESETS", "DEFAULT_MODEL", "default_model", "resolve_model"]

DEFAULT_MODEL = DEFAULTS["MGTOOLKIT_MODEL"]
_NC_LICENSE = "CC-BY-NC-SA-4.0 (non-commercial; see the model card)"


@dataclass(frozen=True)
class ModelSpec:
    """Where a text-to-audio model comes from and what it can do.

    Attributes
    ----------
    name : str
        The preset name, hub id or directory the user gave.
    source : str
        What ``from_pretrained`` is called with (hub id or local directory), or ``"tiny"``.
    pipeline : str
        The ppdiffusers pipeline class name.
    license : str
        The weights' license, recorded in every sidecar.
    size_gb : float or None
        Approximate download size, for the offline message.
    max_audio_length_in_s : float
        The longest clip this model is asked for.
    min_audio_length_in_s : float
        The shortest: one latent frame (hop × VAE scale / rate; 0.04 s for every preset). The
        loaded model's own value is checked again before it runs.
    text_language : str
        The language its text encoder was trained on: ``"en"`` (every preset: CLAP's RoBERTa,
        T5), or ``"multi"`` for a multilingual encoder, whose prompts are not translated.
    """

    name: str
    source: str
    pipeline: str = "AudioLDMPipeline"
    license: str = "unknown (see the model card)"
    size_gb: float | None = None
    max_audio_length_in_s: float = 60.0
    min_audio_length_in_s: float = 0.04
    description: str = ""
    text_language: str = "en"

    @property
    def is_tiny(self) -> bool:
        return self.source.startswith("tiny")

    @property
    def is_local(self) -> bool:
        return os.path.isdir(self.source)


PRESETS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            "audioldm-s-full-v2",
            "cvssp/audioldm-s-full-v2",
            license=_NC_LICENSE,
            size_gb=1.7,
            description="AudioLDM small (421 M parameters), the recommended default",
        ),
        ModelSpec(
            "audioldm-s-full",
            "cvssp/audioldm-s-full",
            license=_NC_LICENSE,
            size_gb=1.7,
            description="AudioLDM small, first release",
        ),
        ModelSpec(
            "audioldm",
            "cvssp/audioldm",
            license=_NC_LICENSE,
            size_gb=1.7,
            description="AudioLDM small as hosted for PaddleMIX (the appflow's model)",
        ),
        ModelSpec(
            "audioldm-m-full",
            "cvssp/audioldm-m-full",
            license=_NC_LICENSE,
            size_gb=2.6,
            description="AudioLDM medium",
        ),
        ModelSpec(
            "audioldm-l-full",
            "cvssp/audioldm-l-full",
            license=_NC_LICENSE,
            size_gb=3.9,
            description="AudioLDM large",
        ),
        ModelSpec(
            "audioldm2-music",
            "cvssp/audioldm2-music",
            pipeline="AudioLDM2Pipeline",
            license=_NC_LICENSE,
            size_gb=4.5,
            description="AudioLDM 2 trained on music",
        ),
        ModelSpec(
            "musicldm",
            "ucsd-reach/musicldm",
            pipeline="MusicLDMPipeline",
            license=_NC_LICENSE,
            size_gb=4.0,
            description="MusicLDM",
        ),
        ModelSpec(
            "tiny",
            "tiny",
            license="random weights, no license needed",
            size_gb=0.0,
            description="tiny AudioLDM with random weights: makes noise, checks the setup offline",
        ),
        ModelSpec(
            "tiny-musicldm",
            "tiny-musicldm",
            pipeline="MusicLDMPipeline",
            license="random weights, no license needed",
            size_gb=0.0,
            description="tiny MusicLDM with random weights, for tests of the MusicLDM path",
        ),
        ModelSpec(
            "tiny-audioldm2",
            "tiny-audioldm2",
            pipeline="AudioLDM2Pipeline",
            license="random weights, no license needed",
            size_gb=0.0,
            description="tiny AudioLDM 2 with random weights, for tests of the AudioLDM 2 path",
        ),
    ]
}
# Names used by PaddleMIX's appflow and on the hubs map to the same presets.
_ALIASES = {spec.source: name for name, spec in PRESETS.items() if not spec.is_tiny}


def default_model() -> str:
    """The model used when ``model=None``: ``$MGTOOLKIT_MODEL`` or ``audioldm-s-full-v2``."""
    return setting("MGTOOLKIT_MODEL")


def resolve_model(model: str | os.PathLike | None = None) -> ModelSpec:
    """Turn a ``model=`` value into a :class:`ModelSpec`.

    Parameters
    ----------
    model : str, path or None
        A preset name (see ``mgtoolkit.PRESETS``), a hub id such as ``"cvssp/audioldm-s-full-v2"``,
        or a pipeline folder (``model_index.json``): as the hub ships it (diffusers format, torch
        weights, converted once on load) or as ``save_pretrained`` writes it. ``None`` uses
        :func:`default_model`. Where the weights are found and how they are read is
        :mod:`mgtoolkit.models.weights`' business.

    Raises
    ------
    InvalidInputError
        If the name is neither a preset, a hub id (``owner/name``) nor an existing directory.

    Examples
    --------
    >>> resolve_model("tiny").is_tiny
    True
    >>> resolve_model("cvssp/audioldm-s-full-v2").name
    'audioldm-s-full-v2'
    """
    name = default_model() if model is None else os.fspath(model)
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError("model", model, "is empty", f"pass a preset such as {DEFAULT_MODEL!r}")
    name = name.strip()
    if name in PRESETS:
        return PRESETS[name]
    if name in _ALIASES:
        return PRESETS[_ALIASES[name]]
    if os.path.isdir(name):
        return _local_spec(Path(name))
    if _looks_like_hub_id(name):
        return ModelSpec(name, name, pipeline=_guess_pipeline(name))
    raise InvalidInputError(
        "model",
        name,
        "is not a known preset, a hub id (owner/name) nor an existing directory",
        f"use one of {', '.join(sorted(PRESETS))}, or a pipeline folder (with model_index.json)",
    )


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(p and not p.startswith(".") and " " not in p for p in parts)


def _guess_pipeline(name: str) -> str:
    low = name.lower()
    if "audioldm2" in low:
        return "AudioLDM2Pipeline"
    if "musicldm" in low:
        return "MusicLDMPipeline"
    return "AudioLDMPipeline"


def _local_spec(path: Path) -> ModelSpec:
    """A spec for a directory; its ``model_index.json`` names the pipeline."""

    index = path / "model_index.json"
    if not index.is_file():
        raise InvalidInputError(
            "model",
            str(path),
            "is a directory but holds no model_index.json, so it is not a pipeline",
            "point it at the pipeline's top folder (as the hub ships it or save_pretrained writes it), "
            "or use a preset name",
        )
    try:
        from .model_files import read_model_index

        pipeline = read_model_index(path)["_class_name"]
    except (ModelUnavailableError, KeyError, TypeError, IndexError) as exc:
        raise InvalidInputError(
            "model",
            str(path),
            f"has an unreadable model_index.json ({exc})",
            "re-save the pipeline with save_pretrained()",
        ) from None
    if isinstance(pipeline, list):
        pipeline = pipeline[-1]
    return ModelSpec(str(path), str(path), pipeline=str(pipeline), license="see the model's own files")
