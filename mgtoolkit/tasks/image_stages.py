"""The image chain's first two stages, each usable alone: describe the image (a captioner, or the
user's own words with ``captioner="text:..."``), then write a musical prompt from the description
(a chat LLM, or ``writer="template"`` with no model). :mod:`mgtoolkit.tasks.image` chains them with
the music and re-exports every name here.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from typing import Any

from ..config import setting
from ..errors import InvalidInputError, MgtoolkitWarning
from ..models.captioners import CAPTIONERS
from ..models.writers import WRITERS

__all__ = [
    "describe_image",
    "write_music_prompt",
    "default_captioner",
    "default_writer",
    "CAPTIONERS",
    "WRITERS",
    "TEXT_PREFIX",
    "WriterFallbackWarning",
]

TEXT_PREFIX = "text:"
"""``captioner="text:<description>"`` uses the user's own description as the first stage."""
# CAPTIONERS and WRITERS (imported above): name -> spec (source, family, size_gb, description).


class WriterFallbackWarning(MgtoolkitWarning):
    """The prompt writer's answer was empty or unusable; the template writer was used instead."""


# --------------------------------------------------------------------------------------------------
# Which models by default


def _tiny_setup(model: Any = None) -> bool:
    from ..models.loading import spec_of

    try:
        return spec_of(model).is_tiny
    except InvalidInputError:
        return False


def default_captioner(model: str | None = None) -> str:
    """``$MGTOOLKIT_CAPTIONER``, else ``"tiny-clip"`` when the music model is tiny, else ``"clip"``.

    CLIP tags (about 0.6 GB download and memory) fit a 2 GiB Binder; ``captioner="blip2"`` (free
    text, about 8 GB download and 15 GB of memory on a CPU) and ``captioner="minigpt4"`` (about
    15 GB) are one argument away.
    """
    return setting("MGTOOLKIT_CAPTIONER") or ("tiny-clip" if _tiny_setup(model) else "clip")


def default_writer(model: str | None = None) -> str:
    """``$MGTOOLKIT_WRITER``, else ``"tiny"`` when the music model is tiny, else ``"qwen2-0.5b"``.

    Qwen2-0.5B (about 1 GB) rather than the app's ChatGLM-6B (about 13 GB), so that the default
    chain fits a laptop; ``writer="chatglm-6b"`` is one argument away.
    """
    return setting("MGTOOLKIT_WRITER") or ("tiny" if _tiny_setup(model) else "qwen2-0.5b")


# --------------------------------------------------------------------------------------------------
# Stage 1: describe the image


def _typed_description(captioner: Any) -> str | None:
    if isinstance(captioner, str) and captioner.startswith(TEXT_PREFIX):
        text = " ".join(captioner[len(TEXT_PREFIX) :].split())
        if not text:
            raise InvalidInputError(
                "captioner",
                captioner,
                "has no description after 'text:'",
                "write e.g. captioner='text:a crowded nightclub with neon lights'",
            )
        return text
    return None


def _free_music_models(needed, notes: list[str] | None) -> None:
    """In a chain, release cached AudioLDM pipelines before a real (multi-GB) captioner or writer loads.

    Only the chain does this (``notes`` is its list, where it says so); a stage called on its own
    leaves the user's loaded music model alone.
    """
    if notes is None or needed.is_tiny:
        return
    from ..models.loading import unload

    unload(forget=False)  # loaded again as the user loaded it
    if "the music model was unloaded" not in " ".join(notes):
        notes.append(
            f"the music model was unloaded to make room for {needed.name!r} and loaded again "
            "(keep_loaded=True keeps every model in memory)"
        )


def _describe(
    image: Any,
    captioner: str,
    question: str | None,
    *,
    device: str | None,
    keep_loaded: bool,
    notes: list[str] | None = None,
    labels: Mapping[str, Any] | None = None,
) -> tuple[str, dict[str, float]]:
    """Caption ``image``; returns the caption and the stage's timings."""
    typed = _typed_description(captioner)
    if typed is not None:
        return typed, {"caption_s": 0.0}
    from ..io.images import load_image
    from ..models import captioners
    from ..runtime import pick_device

    spec = captioners.resolve_captioner(captioner)
    _check_labels(spec, labels)
    picture = load_image(image)
    t0 = time.perf_counter()
    if not keep_loaded:
        _free_music_models(spec, notes)
    loaded = captioners.load_captioner(spec, pick_device(device))
    load_s = loaded.load_s
    try:
        text = _tidy(captioners.caption(loaded, picture, question, labels=labels))
    finally:
        if not keep_loaded:
            from ..accel.pieces import give_back_free_memory

            loaded = None  # the last reference, so that releasing frees the model
            captioners.release_captioners()
            give_back_free_memory()  # the freed heap goes back before the music model loads
    return text, {"caption_s": time.perf_counter() - t0, "caption_load_s": load_s}


def _check_labels(spec, labels: Mapping[str, Any] | None) -> None:
    """CLIP's tag lists, checked before any model loads; the other captioners read none."""
    if labels is None:
        return
    from ..models.clip_tagger import check_labels

    check_labels(labels)
    if spec.family != "clip":
        raise InvalidInputError(
            "labels", labels, f"is read by CLIP captioners only, not {spec.name!r}", "pass captioner='clip'"
        )


def _tidy(text: str) -> str:
    """One line of printable text, without the model's control characters."""
    printable = "".join(ch if ch.isprintable() else " " for ch in text or "")
    return " ".join(printable.split()).replace("\ufffd", "")


def describe_image(
    image: Any,
    captioner: str | None = None,
    *,
    question: str | None = None,
    labels: Mapping[str, Any] | None = None,
    device: str | None = None,
    keep_loaded: bool = False,
) -> str:
    """What a captioner sees in ``image``: CLIP's best tags, or a vision-language model's sentence.

    Parameters
    ----------
    image : str, Path, bytes, PIL.Image.Image or numpy.ndarray
        The picture (see :func:`mgtoolkit.images.load_image`); may be ``None`` with ``captioner="text:..."``.
    captioner : str, optional
        ``"clip"`` (zero-shot tags, about 0.6 GB), ``"blip2"`` (about 8 GB download, 15 GB of memory
        on a CPU), ``"minigpt4"`` (about 15 GB), ``"tiny-clip"``, ``"tiny"``, a hub id, a local model
        folder, or ``"text:<description>"`` for the user's own words. ``None``: see
        :func:`default_captioner`.
    question : str, optional
        What to ask MiniGPT4 or BLIP-2; ``None`` asks the appflow's ``"describe the image, "``.
        CLIP ignores it.
    labels : mapping of str to list of str, optional
        CLIP only: the tag lists, ``{category: [label, ...]}``; ``None`` is
        :data:`mgtoolkit.models.clip_tagger.DEFAULT_LABELS` (scene, mood, colour, time of day,
        energy). :func:`mgtoolkit.tag_image` gives the tags with their scores.
    device : str, optional
        ``"cpu"``, ``"gpu"`` or ``None`` for automatic.
    keep_loaded : bool
        Keep the captioner in memory for the next call (else it is released at once).

    Returns
    -------
    str
        The description (may be empty if the model said nothing).

    Examples
    --------
    >>> describe_image(None, captioner="text:a quiet forest at dawn")
    'a quiet forest at dawn'
    """
    captioner = default_captioner() if captioner is None else captioner
    text, _ = _describe(image, captioner, question, device=device, keep_loaded=keep_loaded, labels=labels)
    return text


# --------------------------------------------------------------------------------------------------
# Stage 2: write the musical prompt


def _write(
    description: str,
    writer: str,
    instruction: str | None,
    *,
    device: str | None,
    keep_loaded: bool,
    notes: list[str] | None = None,
) -> tuple[str, str | None, dict[str, float]]:
    """The cleaned prompt, a note if the template had to stand in, and the stage's timings."""
    from .. import prompts
    from ..models import writers

    spec = writers.resolve_writer(writer)
    question = prompts.build_instruction(description, instruction)
    t0 = time.perf_counter()
    if not spec.needs_model:
        return prompts.template_prompt(description), None, {"write_s": time.perf_counter() - t0}
    from ..runtime import pick_device

    if not keep_loaded:
        _free_music_models(spec, notes)
    loaded = writers.load_writer(spec, pick_device(device))
    try:
        answer = writers.complete(loaded, question)
    finally:
        if not keep_loaded:
            writers.release_writers()
    cleaned = prompts.clean_answer(answer, instruction=question)
    timings = {"write_s": time.perf_counter() - t0, "write_load_s": loaded.load_s}
    if prompts.is_usable(cleaned):
        return cleaned, None, timings
    note = f"writer {spec.name!r} answer unusable ({_tidy(answer)[:40]!r}), used template"
    warnings.warn(WriterFallbackWarning(note), stacklevel=3)
    return prompts.template_prompt(description), note, timings


def write_music_prompt(
    description: str,
    writer: str | None = None,
    *,
    instruction: str | None = None,
    device: str | None = None,
    keep_loaded: bool = False,
) -> str:
    """One or two sentences of musical style for a scene description.

    Parameters
    ----------
    description : str
        What the scene shows (a caption, or the user's words).
    writer : str, optional
        ``"chatglm-6b"``, ``"chatglm2-6b"``, ``"qwen2-0.5b"``, ``"tiny"``, ``"template"`` (no model),
        a hub id or a local model folder. ``None``: see :func:`default_writer`.
    instruction : str, optional
        Template with ``{description}``; ``None`` uses :data:`mgtoolkit.prompts.DEFAULT_INSTRUCTION`.
    device, keep_loaded
        As for :func:`describe_image`.

    Returns
    -------
    str
        The cleaned prompt. If the LLM's answer is empty or unusable, the template writer's
        prompt, with a :class:`WriterFallbackWarning`.

    Examples
    --------
    >>> write_music_prompt("A crowded nightclub, people dancing.", writer="template")
    'Energetic electronic dance music with a pounding kick drum, deep bass and bright synths, fast tempo around 128 BPM, euphoric and lively.'
    """
    writer = default_writer() if writer is None else writer
    text, _, _ = _write(description, writer, instruction, device=device, keep_loaded=keep_loaded)
    return text
