"""What captioners and prompt writers share: a spec, resolving a name, where weights come from.

paddle and paddlenlp are imported inside functions only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, ModelUnavailableError

__all__ = ["StageSpec", "resolve_stage", "weights_source", "prepare_paddle", "unavailable"]


@dataclass(frozen=True)
class StageSpec:
    """Where the model of one chain stage (captioner or writer) comes from.

    Attributes
    ----------
    name : str
        The name the user gave (or the preset's).
    source : str
        Hub id or directory ``from_pretrained`` reads; ``tiny-<kind>`` for a tiny model; ``""`` for
        a stage with no model (the template writer).
    family : str
        The model family (``"minigpt4"``, ``"blip2"``, ``"chatglm"``, ``"chatglm2"``, ``"qwen2"``,
        ``"template"``): decides how it is loaded and prompted.
    size_gb : float
        Approximate download size, for the offline message.
    description : str
        One line for listings.
    """

    name: str
    source: str
    family: str
    size_gb: float = 0.0
    description: str = ""

    @property
    def is_tiny(self) -> bool:
        return self.source.startswith("tiny-")

    @property
    def needs_model(self) -> bool:
        return self.family != "template"


def resolve_stage(
    field: str,
    value: str | os.PathLike,
    presets: Mapping[str, StageSpec],
    aliases: Mapping[str, str],
    families: Mapping[str, str],
    fix: str,
) -> StageSpec:
    """The spec for a preset name, a hub alias or a local folder (family read from its config.json).

    ``families`` maps a ``config.json`` ``model_type`` to a family; ``field`` and ``fix`` make the
    error if ``value`` is none of those.
    """
    name = os.fspath(value).strip() if isinstance(value, (str, os.PathLike)) else value
    if isinstance(name, str) and name in presets:
        return presets[name]
    if isinstance(name, str) and name in aliases:
        return presets[aliases[name]]
    if isinstance(name, str) and os.path.isdir(name):
        model_type = _model_type(name)
        if model_type not in families:
            raise InvalidInputError(
                field,
                name,
                f"holds no {'/'.join(sorted(set(families.values())))} model (model_type={model_type!r})",
                "point it at a folder written by save_pretrained",
            )
        return StageSpec(name, name, families[model_type])
    raise InvalidInputError(field, value, "is not a known name nor a model directory", fix)


def _model_type(path: str) -> str:
    from .model_files import read_config

    try:  # a regular file of a configuration's size (a link to /dev/zero was read without end)
        config = read_config(Path(path, "config.json"))
    except ModelUnavailableError:
        return ""
    return str(config.get("model_type", ""))[:80] if isinstance(config, dict) else ""


def weights_source(
    spec: StageSpec, *, field: str = "model", model_class: Any = None, allow_unsafe: bool | None = None
) -> str:
    """What ``from_pretrained`` reads: a paddle-format folder, or a hub id for paddlenlp's store.

    A tiny model's folder (built once); a local folder or the Hugging Face cache's copy of the hub
    id, or a download through :func:`mgtoolkit.models.weights.fetch_repo`; always read through
    :func:`mgtoolkit.models.weights.paddle_folder` (``model_class`` is the paddle class, or a
    function of the folder giving it), so paddlenlp only ever sees a folder mgtoolkit built.
    """
    from . import weights

    if spec.is_tiny:
        from .tiny.llm import tiny_dir

        weights.check_cache_root(field=field, name=spec.name)
        return str(tiny_dir(spec.source.removeprefix("tiny-")))
    folder = weights.locate(spec.source, marker="config.json")
    if folder is None:  # downloaded through mgtoolkit (never code), then read as any folder
        size = f" (about {spec.size_gb:g} GB)" if spec.size_gb else ""
        folder = weights.fetch_repo(spec.source, field=field, name=spec.name, size=size)
    if callable(model_class) and not isinstance(model_class, type):
        model_class = model_class(folder)
    return str(
        weights.paddle_folder(
            folder, name=spec.name, field=field, model_class=model_class, allow_unsafe=allow_unsafe
        )
    )


def prepare_paddle(device: str) -> str:
    """Import paddle on ``device`` with quiet logs; return the dtype to load weights in."""
    from ..runtime import import_paddle, pick_dtype, quiet_model_logs

    import_paddle().set_device(device)
    quiet_model_logs()
    return pick_dtype(device)


def unavailable(field: str, spec: StageSpec, exc: Exception, instead: str) -> ModelUnavailableError:
    """The one-line error for weights that could not be had; ``instead`` says what else to pass."""
    detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
    return ModelUnavailableError(
        f"{field}={spec.name!r}: could not load {spec.source!r} (about {spec.size_gb:g} GB) locally or from "
        f"the model hubs; download it where there is internet and pass {field}='/path/to/that/folder', "
        f"{instead}, or use 'tiny' to check the setup offline. ({detail})"
    )
