"""Image → caption → musical prompt → music, each stage usable alone, and re-runnable from any stage.

>>> import mgtoolkit as mg
>>> story = mg.image_to_music("dance.png", captioner="minigpt4", writer="chatglm-6b", seed=120)  # doctest: +SKIP
>>> story.caption, story.music_prompt, story.clip                                               # doctest: +SKIP
>>> story.rerun(music_prompt="Pulsing house with neon synths.")                                 # doctest: +SKIP

The first stage can always be the user's own words: ``captioner="text:a foggy harbour at dawn"``
(then ``image`` may be ``None``). ``writer="template"`` needs no model at all.

The two stages before the music (:func:`describe_image`, :func:`write_music_prompt`, their defaults)
live in :mod:`mgtoolkit.tasks.image_stages`; every name is importable from here too.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import draw_seed
from ..errors import GenerationCancelled, InvalidInputError
from ..types import Clip, StepCallback
from .image_stages import (
    CAPTIONERS,
    TEXT_PREFIX,
    WRITERS,
    WriterFallbackWarning,
    _check_labels,
    _describe,
    _tiny_setup,  # noqa: F401 - tasks/audio.py's audio_to_music imports it from here
    _typed_description,
    _write,
    default_captioner,
    default_writer,
    describe_image,
    write_music_prompt,
)

__all__ = [
    "Story",
    "image_to_music",
    "describe_image",
    "write_music_prompt",
    "default_captioner",
    "default_writer",
    "CAPTIONERS",
    "WRITERS",
    "TEXT_PREFIX",
    "WriterFallbackWarning",
]


# --------------------------------------------------------------------------------------------------
# The whole chain

_GENERATE_KEYS = (
    "negative_prompt",
    "audio_length_in_s",
    "num_inference_steps",
    "guidance_scale",
    "seed",
    "model",
    "scheduler",
    "device",
)
_WRITE_KEYS = ("writer", "instruction")
_CAPTION_KEYS = ("captioner", "question", "labels", "image")
_CALL_KEYS = ("keep_loaded", "callback", "cancel")


@dataclass(frozen=True, eq=False)
class Story:
    """The result of :func:`image_to_music`: every stage's output, and how to re-run from any stage.

    Attributes
    ----------
    caption : str
        What the captioner saw (or the user's own description).
    music_prompt : str
        The musical sentence the writer made from it (the prompt of :attr:`clip`).
    clip : Clip
        The music; its sidecar records caption, prompt, captioner, writer and stage timings.
    captioner, writer : str
        Names of the models used (``"text"`` for a typed description).
    notes : tuple of str
        What did not go as asked, e.g. ``"writer 'tiny' answer unusable (...), used template"``,
        or which stages a :meth:`rerun` reused.
    timings : mapping
        Seconds per stage: ``caption_s``, ``write_s`` (each with ``*_load_s``), ``generate_s``.
    settings : mapping
        The arguments of the run (so :meth:`rerun` can repeat them).
    image : PIL.Image.Image or None
        The prepared image the captioner saw.
    """

    caption: str
    music_prompt: str
    clip: Clip
    captioner: str
    writer: str
    notes: tuple[str, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    image: Any = field(default=None, repr=False)

    def rerun(self, caption: str | None = None, music_prompt: str | None = None, **overrides: Any) -> Story:
        """Run again from the first stage whose input changed; earlier stages are reused, not recomputed.

        Parameters
        ----------
        caption : str, optional
            A new (edited) description: the prompt is written again from it, then the music made.
        music_prompt : str, optional
            A new musical prompt: only the music is made again.
        **overrides
            ``captioner``/``question``/``image`` re-run everything; ``writer``/``instruction`` re-run
            from the writer; generation arguments (``seed``, ``negative_prompt``,
            ``audio_length_in_s``, ``num_inference_steps``, ``guidance_scale``, ``model``, ...) only
            re-make the music. The seed stays the same unless given.

        Examples
        --------
        >>> story = image_to_music(None, captioner="text:a sunny beach", writer="template",
        ...                        audio_length_in_s=1.0, num_inference_steps=2, seed=3, model="tiny")
        >>> story.rerun(music_prompt="steel drums").timings.keys() >= {"generate_s"}
        True
        """
        unknown = set(overrides) - set(_GENERATE_KEYS + _WRITE_KEYS + _CAPTION_KEYS + _CALL_KEYS)
        if unknown:
            name = sorted(unknown)[0]
            raise InvalidInputError(
                name,
                overrides[name],
                "is not an argument of image_to_music",
                "pass caption=, music_prompt= or a generation argument such as seed=",
            )
        settings = {**self.settings, "seed": self.clip.seed, **overrides}
        image = overrides.get("image", self.image)
        if set(overrides) & set(_CAPTION_KEYS) and caption is None and music_prompt is None:
            return _chain(image, None, None, settings, ())
        edited = caption is not None and caption != self.caption
        caption = self.caption if caption is None else caption
        if music_prompt is not None:
            return _chain(image, caption, music_prompt, settings, ("caption and writer stages reused",))
        if edited or set(overrides) & set(_WRITE_KEYS):
            return _chain(
                image, caption, None, settings, ("caption edited",) if edited else ("caption stage reused",)
            )
        return _chain(image, caption, self.music_prompt, settings, ("caption and writer stages reused",))

    def __repr__(self) -> str:
        notes = f", notes={list(self.notes)!r}" if self.notes else ""
        return (
            f"Story(caption={_short(self.caption)!r}, music_prompt={_short(self.music_prompt)!r}, "
            f"clip={self.clip!r}, captioner={self.captioner!r}, writer={self.writer!r}{notes})"
        )

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{k}</th><td>{html.escape(v)}</td></tr>"
            for k, v in (
                ("caption", self.caption),
                ("music prompt", self.music_prompt),
                *(("note", n) for n in self.notes),
            )
        )
        clip_html = (
            self.clip._repr_html_() if hasattr(self.clip, "_repr_html_") else html.escape(repr(self.clip))
        )
        return f"<table>{rows}</table>{clip_html}"


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def image_to_music(
    image: Any,
    *,
    captioner: str | None = None,
    writer: str | None = None,
    instruction: str | None = None,
    question: str | None = None,
    labels: Mapping[str, Any] | None = None,
    negative_prompt: str | None = None,
    audio_length_in_s: float = 5.0,
    num_inference_steps: int = 20,
    guidance_scale: float = 2.5,
    seed: int | None = None,
    model: str | None = None,
    scheduler: str | None = None,
    device: str | None = None,
    keep_loaded: bool = False,
    callback: StepCallback | None = None,
    cancel: threading.Event | None = None,
) -> Story:
    """Music for a picture: caption it, write a musical prompt from the caption, generate.

    Parameters
    ----------
    image : str, Path, bytes, PIL.Image.Image or numpy.ndarray
        The picture; may be ``None`` with ``captioner="text:<description>"``.
    captioner : str, optional
        See :func:`describe_image`; ``None`` → :func:`default_captioner`.
    writer : str, optional
        See :func:`write_music_prompt`; ``None`` → :func:`default_writer`.
    instruction : str, optional
        The writer's instruction template (with ``{description}``).
    question : str, optional
        What to ask the captioner.
    labels : mapping, optional
        The CLIP captioner's tag lists (see :func:`describe_image`).
    negative_prompt, audio_length_in_s, num_inference_steps, guidance_scale, seed, model, scheduler, device
        As for :func:`mgtoolkit.generate`.
    keep_loaded : bool
        Keep captioner and writer in memory (big GPUs). By default each is released before the
        next stage needs the memory, and cached music models are released before a real
        (multi-GB) captioner or writer loads.
    callback, cancel
        As for :func:`mgtoolkit.generate`; ``cancel`` is also checked between stages.

    Returns
    -------
    Story
        ``.caption``, ``.music_prompt``, ``.clip``, ``.notes``, ``.timings``, ``.rerun(...)``.

    Raises
    ------
    InvalidInputError
        Naming the first bad argument (``image``, ``captioner``, ``writer``, ``instruction``, or a
        generation argument), before any model is loaded.

    Examples
    --------
    >>> story = image_to_music(None, captioner="text:a crowded nightclub", writer="template",
    ...                        audio_length_in_s=1.0, num_inference_steps=2, seed=120, model="tiny")
    >>> story.music_prompt.startswith("Energetic electronic dance music")
    True
    """
    settings = dict(
        captioner=captioner,
        writer=writer,
        instruction=instruction,
        question=question,
        labels=labels,
        negative_prompt=negative_prompt,
        audio_length_in_s=audio_length_in_s,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        seed=seed,
        model=model,
        scheduler=scheduler,
        device=device,
        keep_loaded=keep_loaded,
        callback=callback,
        cancel=cancel,
    )
    return _chain(image, None, None, settings, ())


def _check(
    image: Any, caption: str | None, music_prompt: str | None, s: dict[str, Any]
) -> tuple[dict[str, Any], Any]:
    """Validate every argument before any model loads.

    Returns the settings with defaults resolved, and the image prepared for the captioner (or
    ``image`` as given when no caption is to be made).
    """
    from .. import prompts
    from ..models.captioners import resolve_captioner
    from ..models.loading import spec_of, split_model
    from ..models.writers import resolve_writer
    from ..types import GenerationRequest
    from .text import validate_request

    s = {
        **s,
        "captioner": default_captioner(s["model"]) if s["captioner"] is None else s["captioner"],
        "writer": default_writer(s["model"]) if s["writer"] is None else s["writer"],
    }
    if s["seed"] is None:
        s["seed"] = draw_seed()
    request = GenerationRequest(
        prompt=music_prompt or "placeholder",
        negative_prompt=s["negative_prompt"],
        audio_length_in_s=s["audio_length_in_s"],
        num_inference_steps=s["num_inference_steps"],
        guidance_scale=s["guidance_scale"],
        seed=s["seed"],
        model=split_model(s["model"])[0],
        scheduler=s["scheduler"],
    )
    validate_request(request, spec_of(s["model"]))
    if music_prompt is None:
        resolve_writer(s["writer"])
        prompts.build_instruction(caption or "scene", s["instruction"])
    if caption is None and _typed_description(s["captioner"]) is None:
        _check_labels(resolve_captioner(s["captioner"]), s.get("labels"))
        from ..io.images import load_image

        return s, load_image(image)
    return s, image


def _chain(
    image: Any,
    caption: str | None,
    music_prompt: str | None,
    settings: dict[str, Any],
    notes: tuple[str, ...],
) -> Story:
    """Run the stages whose output is missing (``None``), in order, and wrap the result."""
    # 1. Check everything first: a bad argument costs no model load.
    s, picture = _check(image, caption, music_prompt, settings)
    cancel, keep, device = s["cancel"], s["keep_loaded"], s["device"]
    timings: dict[str, float] = {}
    notes = list(notes)
    # 2. Caption (unless given).
    if caption is None:
        GenerationCancelled.raise_if_set(cancel, "before describing the image")
        caption, stage = _describe(
            picture,
            s["captioner"],
            s["question"],
            device=device,
            keep_loaded=keep,
            notes=notes,
            labels=s.get("labels"),
        )
        timings.update(stage)
        if not caption:
            notes.append(f"captioner {s['captioner']!r} said nothing; the scene was described as 'an image'")
            caption = "an image"
    # 3. Musical prompt (unless given).
    if music_prompt is None:
        GenerationCancelled.raise_if_set(cancel, "before writing the musical prompt")
        music_prompt, note, stage = _write(
            caption, s["writer"], s["instruction"], device=device, keep_loaded=keep, notes=notes
        )
        timings.update(stage)
        notes.extend([note] if note else [])
    # 4. Music.
    GenerationCancelled.raise_if_set(cancel, "before making the music")
    clip, timings["generate_s"] = _generate(music_prompt, s)
    captioner_name = "text" if _typed_description(s["captioner"]) else str(s["captioner"])
    clip = clip.with_extra(
        caption=caption,
        music_prompt=music_prompt,
        captioner=captioner_name,
        writer=str(s["writer"]),
        stage_timings={k: round(v, 4) for k, v in timings.items()},
        **({"notes": list(notes)} if notes else {}),
    )
    stored = {**s, "callback": None, "cancel": None}  # per call, not repeated by a rerun
    return Story(
        caption, music_prompt, clip, captioner_name, str(s["writer"]), tuple(notes), timings, stored, picture
    )


def _generate(music_prompt: str, s: dict[str, Any]) -> tuple[Clip, float]:
    from ..models.loading import split_model
    from ..types import GenerationRequest
    from .text import generate_clips

    t0 = time.perf_counter()
    model, loaded = split_model(s["model"])
    request = GenerationRequest(
        prompt=music_prompt,
        negative_prompt=s["negative_prompt"],
        audio_length_in_s=s["audio_length_in_s"],
        num_inference_steps=s["num_inference_steps"],
        guidance_scale=s["guidance_scale"],
        seed=s["seed"],
        model=model,
        scheduler=s["scheduler"],
    )
    clips = generate_clips(
        request, device=s["device"], callback=s["callback"], cancel=s["cancel"], model=loaded
    )
    return clips[0], time.perf_counter() - t0
