"""Messages a panel shows: written for the panel's user (the control to change, the uploaded file
by its name), in full, without terminal colour codes. Pure functions: no widgets here."""

from __future__ import annotations

import re

from ...config import SEED_MAX
from ...errors import InvalidInputError, MgtoolkitError, ModelUnavailableError
from .catalogue import ZH_FIELDS, tr, zh_error

__all__ = ["strip_ansi", "one_line", "panel_message", "FILE_FIXES", "UPLOAD_FIXES"]

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]|\[\d{1,3}(;\d{1,3})*m")


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour codes (``\\x1b[93m``, or a bare ``[93m`` left by a copy).

    Examples
    --------
    >>> strip_ansi("\\x1b[93mdeprecated\\x1b[0m, [1mbold[0m")
    'deprecated, bold'
    """
    return _ANSI.sub("", text)


def one_line(exc: BaseException) -> str:
    """The message a panel shows for ``exc``: mgtoolkit's own one line, or type and first line."""
    if isinstance(exc, MgtoolkitError):
        return strip_ansi(str(exc))
    first = (strip_ansi(str(exc)).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


# --- messages written for the panel --------------------------------------------------------------------

_CONTROLS = {
    "prompt": "Prompt",
    "negative_prompt": "Negative prompt",
    "audio_length_in_s": "Seconds",
    "num_inference_steps": "Steps",
    "guidance_scale": "Guidance",
    "num_waveforms_per_prompt": "Candidates",
    "strength": "Strength",
    "model": "Model",
    "caption": "Caption",
    "music_prompt": "Music prompt",
}
FILE_FIXES = {
    "image": "upload a PNG, JPEG or WebP picture, or remove the upload and type the path of one",
    "audio": "upload a WAV, FLAC, OGG or MP3 file (at least 0.5 s), or remove the upload and type a path",
}
UPLOAD_FIXES = {
    "image": "upload a PNG, JPEG or WebP picture",
    "audio": "upload a WAV, FLAC, OGG or MP3 file (at least 0.5 s)",
}
"""The fixes in an app without Path boxes (a published app: uploads only)."""


def panel_message(
    exc: BaseException,
    *,
    files: dict[str, str] | None = None,
    fixes: dict[str, str] | None = None,
    lang: str = "en",
) -> str:
    """What a panel says about ``exc``: the control to change, the uploaded file by its name.

    Parameters
    ----------
    exc : BaseException
        What the task raised.
    files : dict, optional
        ``{"image": "Uploaded file 'lake.png'", ...}``: how to name each file input's value.
    fixes : dict, optional
        What to do about each file input's value (:data:`FILE_FIXES` by default).
    lang : str
        ``"en"`` or ``"zh"``: in Chinese a core error is said from its field, problem and fix where
        the catalogue knows them, else its English line follows a Chinese prefix.

    Examples
    --------
    >>> panel_message(InvalidInputError("seed", -1, "must be between 0 and 4294967295", "pass 120 or None"))
    'Seed: -1 must be a whole number from 0 to 4294967295; type one, or tick random for a new seed each time.'
    """
    if isinstance(exc, ModelUnavailableError):
        return _unavailable(exc, lang)
    if not isinstance(exc, InvalidInputError):
        return _foreign(one_line(exc), lang)
    field = exc.field
    if field == "seed":
        return tr(
            lang,
            "Seed: {value} must be a whole number from 0 to {max}; type one, or tick random for a new "
            "seed each time.",
            value=repr(exc.value),
            max=SEED_MAX,
        )
    if field in FILE_FIXES and (files is None or field in files):  # a file input of this panel
        named = (files or {}).get(field) or tr(lang, field).capitalize()
        fix = tr(lang, (fixes or FILE_FIXES)[field])
        if lang == "zh":
            return zh_error(exc, named=named, fix=fix) or _foreign(f"{named}: {one_line(exc)}", lang)
        problem = _LIBRARIES.sub("this panel", strip_ansi(exc.problem))
        return f"{named}: {problem}; {fix}."
    if lang == "zh":
        return zh_error(exc) or _foreign(one_line(exc), lang, ZH_FIELDS.get(field))
    if field in _CONTROLS:
        return f"{_CONTROLS[field]}: {exc.value!r} {strip_ansi(exc.problem)}; {strip_ansi(exc.fix)}."
    return one_line(exc)


def _foreign(line: str, lang: str, field: str | None = None) -> str:
    """An English line the catalogue cannot say in ``lang``: as it is, under that language's prefix."""
    if lang == "en":
        return line
    said = tr(lang, "Something went wrong (in English): {line}", line=line)
    return f"{field}：{said}" if field else said


_LIBRARIES = re.compile(r"\b(soundfile/librosa|soundfile|librosa|PIL|Pillow)\b")
"""Library names in the core's messages: a panel's user knows the panel, not the readers behind it."""
_NAMED = re.compile(r"^(model|captioner|writer)='([^']+)'")
_ROLES = {"model": "music model", "captioner": "captioner (stage 1)", "writer": "writer (stage 2)"}


def _unavailable(exc: BaseException, lang: str = "en") -> str:
    """Weights missing offline: what the panel's user can do, and what to ask the notebook's author."""
    if "midi extra" in str(exc):
        line = one_line(exc)
        return (
            line
            if lang == "en"
            else tr(
                lang,
                "Writing notes as MIDI needs the midi extra, which this install lacks: {line}",
                line=line,
            )
        )
    found = _NAMED.match(str(exc))
    if found is None:
        return tr(
            lang,
            "A model's weights are not on this machine and cannot be downloaded from here: choose 'tiny' in "
            "the Model list to try the panel, or ask the notebook's author. ({line})",
            line=one_line(exc),
        )
    field, name = found.groups()
    try_tiny = (
        "Choose 'tiny' in the Model list to try the panel (its clips are noise by design)"
        if field == "model"
        else "Type your own description into the Caption box and press 2 · Write music prompt"
        if field == "captioner"
        else "Type the musical prompt yourself into the Music prompt box and press Generate music"
    )
    return tr(
        lang,
        "The {role} {shown} is not on this machine and cannot be downloaded from here. {try_tiny}, or ask "
        "the notebook's author to download it first (python -m mgtoolkit fetch {name}).",
        role=tr(lang, _ROLES[field]),
        shown=repr(name),
        name=name,
        try_tiny=tr(lang, try_tiny),
    )
