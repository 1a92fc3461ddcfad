"""What a studio allows, decided in Python: the browser shows the limits, the kernel enforces them.

A slider's ``max``, a hidden box or a disabled button live in the visitor's browser, which can
change them. :class:`StudioLimits` is kept in the kernel: every request built from widget values is
checked against it before anything runs, uploads are checked before they are decoded, and typed
paths are read only where it allows. Pure functions and a frozen dataclass: no widgets here.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import InvalidInputError, ModelUnavailableError

__all__ = ["StudioLimits", "in_voila", "read_allowed_file"]


def in_voila() -> bool:
    """True in a kernel Voilà started for a visitor (it sets ``VOILA_KERNEL_ID`` there)."""
    return "VOILA_KERNEL_ID" in os.environ


@dataclass(frozen=True, kw_only=True)
class StudioLimits:
    """What a studio lets its user do; checked in the kernel, whatever the browser sends.

    Attributes
    ----------
    max_audio_length_in_s : float
        Longest clip a panel makes (the Seconds slider's maximum).
    max_num_inference_steps : int
        Most denoising steps (the Steps slider's maximum).
    max_candidates : int
        Most clips per Generate (the Candidates slider's maximum).
    max_extended_s : float or None
        Longest clip the history's Extend may make (``None``: the core's own limit).
    models : tuple of str or None
        The model names offered and accepted (``None``: every preset, and any name or folder).
    allow_downloads : bool
        Whether a model that is not on this machine may be downloaded on the user's request.
    paths : bool, str or Path
        ``True``: the Path boxes read any file the kernel can read; ``False``: no Path boxes
        (uploads only); a folder: only files inside it (symlinks resolved).
    max_upload_bytes : int
        Largest uploaded file, and largest file a Path box reads.
    max_upload_s : float
        Longest uploaded audio, read from its header before it is decoded.
    max_upload_channels : int
        Most channels of uploaded audio, read from its header.
    max_text_chars : int
        Longest prompt, negative prompt, caption or music prompt, in characters.

    Examples
    --------
    >>> limits = StudioLimits.published(max_audio_length_in_s=10.0)
    >>> limits.paths, limits.allow_downloads, limits.max_audio_length_in_s
    (False, False, 10.0)
    """

    max_audio_length_in_s: float = 30.0
    max_num_inference_steps: int = 200
    max_candidates: int = 4
    max_extended_s: float | None = None
    models: tuple[str, ...] | None = None
    allow_downloads: bool = True
    paths: bool | str | os.PathLike = True
    max_upload_bytes: int = 100_000_000
    max_upload_s: float = 600.0
    max_upload_channels: int = 8
    max_text_chars: int = 10_000

    def __post_init__(self) -> None:
        if self.models is not None:
            object.__setattr__(self, "models", tuple(dict.fromkeys(str(m) for m in self.models)))
        if not isinstance(self.paths, bool):
            object.__setattr__(self, "paths", Path(self.paths).expanduser().resolve())

    @classmethod
    def notebook(cls, **changes: Any) -> StudioLimits:
        """The limits of a notebook on the user's own machine (the sliders' ranges; any path)."""
        return dataclasses.replace(cls(), **changes)

    @classmethod
    def published(cls, *, model: str | None = None, **changes: Any) -> StudioLimits:
        """Strict limits for an app served to visitors (Voilà): no Path boxes, no downloads, only
        ``model`` (the default model otherwise) and ``tiny``, 30 s clips, 100 steps, 2 candidates,
        uploads of at most 10 MB, 30 s and 2 channels, texts of at most 1000 characters."""
        from ...models.registry import default_model

        strict = cls(
            max_num_inference_steps=100,
            max_candidates=2,
            max_extended_s=60.0,
            models=(model or default_model(), "tiny"),
            allow_downloads=False,
            paths=False,
            max_upload_bytes=10_000_000,
            max_upload_s=30.0,
            max_upload_channels=2,
            max_text_chars=1000,
        )
        return dataclasses.replace(strict, **changes)

    @classmethod
    def for_environment(cls, *, model: str | None = None) -> StudioLimits:
        """:meth:`published` when Voilà serves the page, :meth:`notebook` otherwise."""
        return cls.published(model=model) if in_voila() else cls.notebook()

    # --- checks, each raising the one-line message a panel shows ------------------------------------

    def check(self, values: Mapping[str, Any]) -> None:
        """Refuse generation arguments (names as in :func:`mgtoolkit.generate`) beyond these limits:
        the sliders' maxima, the tempo controls' bounds (``bpm`` 40-240, ``bars`` 1-64,
        ``beats_per_bar`` 1-12) and the length the bars make at that tempo."""
        _at_most("audio_length_in_s", values.get("audio_length_in_s"), self.max_audio_length_in_s, "s")
        _at_most("num_inference_steps", values.get("num_inference_steps"), self.max_num_inference_steps, "")
        _at_most("num_waveforms_per_prompt", values.get("num_waveforms_per_prompt"), self.max_candidates, "")
        for field, low, high in _GRID:
            _within(field, values.get(field), low, high)
        if values.get("bpm") is not None and values.get("bars") is not None:
            bpm, bars = float(values["bpm"]), int(values["bars"])
            seconds = bars * int(values.get("beats_per_bar") or 4) * 60.0 / bpm
            if seconds > self.max_audio_length_in_s:
                raise InvalidInputError(
                    "bars",
                    bars,
                    f"is {seconds:.1f} s at {bpm:g} BPM, above this app's limit of {self.max_audio_length_in_s:g} s",
                    "choose fewer bars or a faster tempo",
                )
        if values.get("model") is not None:
            self.check_model(values["model"])

    def check_texts(self, texts: Mapping[str, Any]) -> None:
        """Refuse a text box holding more than :attr:`max_text_chars` characters."""
        for field, text in texts.items():
            if text is not None and len(str(text)) > self.max_text_chars:
                raise InvalidInputError(
                    field,
                    len(str(text)),
                    f"characters are more than this app's {self.max_text_chars}",
                    "shorten it",
                )

    def check_model(self, name: Any) -> None:
        """Refuse a model this app does not offer, or one it would have to download."""
        if self.models is not None and (not isinstance(name, str) or name not in self.models):
            raise InvalidInputError(
                "model", name, "is not offered by this app", f"choose one of {', '.join(self.models)}"
            )
        if not self.allow_downloads and not _on_this_machine(str(name)):
            raise ModelUnavailableError(
                f"model={str(name)!r}: not on this machine, and this app does not download models"
            )

    def may_load(self, field: str, name: str | None) -> bool:
        """Whether the captioner, writer or CLAP model (``field``) ``name`` may be loaded here:
        downloads are allowed, or it needs none."""
        return self.allow_downloads or not _needs_download(field, name)

    def check_helper(self, field: str, name: str) -> None:
        """Refuse a captioner or writer (``field``) that would be downloaded where downloads are off."""
        if self.may_load(field, name):
            return
        raise ModelUnavailableError(
            f"{field}={name!r}: not on this machine, and this app does not download models"
        )

    def check_extended(self, seconds: float) -> None:
        """Refuse an Extend whose result would be longer than :attr:`max_extended_s`."""
        if self.max_extended_s is not None:
            _at_most("audio_length_in_s", round(float(seconds), 2), self.max_extended_s, "s")

    def check_upload_size(self, size: int, field: str, shown: str) -> None:
        """Refuse a file larger than :attr:`max_upload_bytes`."""
        if size > self.max_upload_bytes:
            raise InvalidInputError(
                field,
                shown,
                f"is larger than this app's limit of {self.max_upload_bytes / 1e6:g} MB",
                "upload a smaller file",
            )


_GRID = (("bpm", 40, 240), ("bars", 1, 64), ("beats_per_bar", 1, 12))
"""The tempo controls' bounds (as :func:`mgtoolkit.generate` takes them)."""


def _within(field: str, value: Any, low: float, high: float) -> None:
    """Refuse a tempo control's value outside its slider's bounds."""
    if value is None:
        return
    try:
        inside = float(low) <= float(value) <= float(high)  # NaN is outside too
    except (TypeError, ValueError):
        raise InvalidInputError(field, value, "is not a number", "use the slider") from None
    if not inside:
        raise InvalidInputError(
            field, value, f"must be a number from {low:g} to {high:g}", f"choose one from {low:g} to {high:g}"
        )


def _at_most(field: str, value: Any, limit: float, unit: str) -> None:
    if value is None:
        return
    try:
        over = not float(value) <= float(limit)  # NaN is over too
    except (TypeError, ValueError):
        raise InvalidInputError(field, value, "is not a number", "use the slider") from None
    if over:
        raise InvalidInputError(
            field,
            value,
            f"is above this app's limit of {limit:g}{' ' + unit if unit else ''}",
            f"choose at most {limit:g}",
        )


def _needs_download(field: str, name: str | None) -> bool:
    """Whether the captioner, writer or CLAP model ``name`` has weights to fetch before it can run."""
    if isinstance(name, str) and (name.startswith(("tiny", "text:")) or name == "template"):
        return False
    from ...models.captioners import resolve_captioner
    from ...models.clap import resolve_clap
    from ...models.writers import resolve_writer

    resolvers = {
        "captioner": lambda n: resolve_captioner(n).source,
        "writer": lambda n: resolve_writer(n).source,
        "clap": lambda n: resolve_clap(n)[1],
    }
    try:
        source = resolvers[field](name)
    except Exception:  # noqa: BLE001 - an unknown name is reported by the task itself, downloading nothing
        return False
    if not source or source.startswith("tiny") or os.path.isdir(source):
        return False
    from ...models.weights import locate

    return locate(source, marker="config.json") is None


def _on_this_machine(name: str) -> bool:
    """Whether ``name``'s weights are here already (tiny, a folder, or in a model cache)."""
    from ...models.registry import resolve_model

    try:
        spec = resolve_model(name)
    except Exception:  # noqa: BLE001 - an unknown name is not here
        return False
    if spec.is_tiny or spec.is_local:
        return True
    from ...models.weights import locate

    return locate(spec.source) is not None


def read_allowed_file(typed: str, root: Path, *, field: str, max_bytes: int) -> bytes:
    """The bytes of the file ``typed`` names inside ``root`` (relative paths start there).

    Missing, outside ``root`` (``..``, absolute paths, symlinks leading out), not a regular file
    or unreadable: all get the same message, so that nobody learns which files exist.
    """
    refused = InvalidInputError(
        field, typed, "is not a file this app can read", "type the path of a file in the app's folder"
    )
    try:
        target = (root / typed).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        raise refused from None
    if target != root and root not in target.parents:
        raise refused
    try:
        fd = os.open(target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except (OSError, ValueError):
        raise refused from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise refused
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read(max_bytes + 1)
        except OSError:
            raise refused from None
    if len(data) > max_bytes:
        raise InvalidInputError(
            field,
            typed,
            f"is larger than this app's limit of {max_bytes / 1e6:g} MB",
            "choose a smaller file",
        )
    return data
