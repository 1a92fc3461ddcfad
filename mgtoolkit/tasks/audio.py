"""Audio + prompt → music: restyle a clip under a prompt (SDEdit), variations of a clip, and music
from a clip's description (the image chain with the clip as its first stage)."""

from __future__ import annotations

import dataclasses
import numbers
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..config import draw_seed
from ..errors import GenerationCancelled, InvalidInputError
from ..models.loading import spec_of, use_model
from ..models.registry import ModelSpec
from ..types import Clip, GenerationRequest, StepCallback
from .text import validate_request

if TYPE_CHECKING:
    from .image import Story

__all__ = ["restyle", "variations", "audio_to_music", "MAX_VARIATIONS"]

MAX_VARIATIONS = 16


def _check_strength(strength: Any) -> float:
    fix = "pass a number from 0 (keep the input) to 1 (ignore it), e.g. 0.6"
    if isinstance(strength, bool) or not isinstance(strength, numbers.Real):
        raise InvalidInputError("strength", strength, "is not a number", fix)
    if not 0.0 <= float(strength) <= 1.0:
        raise InvalidInputError("strength", strength, "must be between 0 and 1", fix)
    return float(strength)


def _describe(audio: Any) -> str:
    """A short, JSON-friendly note of where the input came from, for the sidecar."""
    if isinstance(audio, Clip):
        return f"clip {audio.prompt!r} seed {audio.seed}"
    if isinstance(audio, (bytes, bytearray)):
        return f"{len(audio)} bytes"
    if isinstance(audio, tuple):
        return "array"
    return str(audio)[:200]


def restyle(
    audio: Any,
    prompt: str,
    *,
    strength: float = 0.6,
    negative_prompt: str | None = None,
    num_inference_steps: int = 20,
    guidance_scale: float = 2.5,
    seed: int | None = None,
    model: str | None = None,
    device: str | None = None,
    callback: StepCallback | None = None,
    cancel: threading.Event | None = None,
) -> Clip:
    """Turn an existing clip into music that fits ``prompt``, keeping its shape to ``strength``.

    The clip (any format soundfile/librosa reads, any rate, mono or stereo) is resampled to the
    model's rate, turned into AudioLDM's log-mel and VAE latents, noised to ``strength`` and
    denoised under the prompt (SDEdit, as in AudioLDM's style transfer).

    Parameters
    ----------
    audio : str, Path, bytes, (numpy.ndarray, int) or Clip
        The input sound, between 0.5 s and the model's longest clip.
    prompt : str
        What the music should become.
    strength : float
        0 returns the input unchanged, 1 ignores it (plain text-to-music); 0.3–0.7 restyles.
    negative_prompt, num_inference_steps, guidance_scale, seed, model, device
        As for :func:`mgtoolkit.generate`; ``num_inference_steps × strength`` steps are run.
    callback : callable, optional
        ``callback(step, steps_run, latents)`` after each denoising step.
    cancel : threading.Event, optional
        Set it to stop at the next step with :class:`GenerationCancelled`.

    Returns
    -------
    Clip
        As long as the input; ``clip.extra["restyle"]`` records the source and strength.

    Raises
    ------
    InvalidInputError
        Naming ``strength``, ``audio`` (missing, empty, corrupt, silent, too short or too long),
        or any generation argument.

    Examples
    --------
    >>> import numpy as np
    >>> hum = (0.3 * np.sin(np.arange(16000) / 3.0), 16000)
    >>> clip = restyle(hum, "jazz piano", strength=0.5, num_inference_steps=4, seed=1, model="tiny")
    >>> clip.duration
    1.0
    """
    from ..io.audio import load_audio
    from ..models.sdedit import sdedit

    # 1. Check everything that needs no model.
    strength = _check_strength(strength)
    spec = spec_of(model)
    _require_audioldm(spec)
    request = GenerationRequest(
        prompt=prompt,
        negative_prompt=negative_prompt,
        audio_length_in_s=1.0,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        seed=draw_seed() if seed is None else seed,
        model=spec.name,
    )
    request = validate_request(request, spec)
    # 2. Load the model and the user's audio at the model's rate.
    loaded = use_model(model, spec, device=device)
    wave = load_audio(audio, loaded.sample_rate, max_s=spec.max_audio_length_in_s)
    request = request.replace(audio_length_in_s=round(wave.shape[0] / loaded.sample_rate, 6))
    # 3. Noise and denoise.
    out, timings, info = sdedit(
        loaded,
        wave,
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        strength=strength,
        num_inference_steps=request.num_inference_steps,
        guidance_scale=request.guidance_scale,
        seed=request.seed,
        callback=callback,
        cancel=cancel,
    )
    # 4. Wrap with provenance.
    source = {"source": _describe(audio), "strength": strength, **info}
    return Clip(
        waveform=out,
        sample_rate=loaded.sample_rate,
        seed=request.seed,
        request=request,
        model_info=loaded.info(),
        timings={"load_s": loaded.load_s, **timings},
        extra={"restyle": source},
    )


def _require_audioldm(spec: ModelSpec) -> None:
    if spec.pipeline != "AudioLDMPipeline":
        raise InvalidInputError(
            "model",
            spec.name,
            f"is a {spec.pipeline}; restyle works with AudioLDM models",
            "use e.g. model='audioldm-s-full-v2' or 'tiny'",
        )


def variations(
    clip_or_audio: Any,
    n: int = 4,
    *,
    prompt: str | None = None,
    strength: float = 0.3,
    negative_prompt: str | None = None,
    num_inference_steps: int = 20,
    guidance_scale: float = 2.5,
    seed: int | None = None,
    model: str | None = None,
    device: str | None = None,
    callback: StepCallback | None = None,
    cancel: threading.Event | None = None,
) -> list[Clip]:
    """``n`` light restyles of a clip under its own prompt, with seeds ``seed``, ``seed + 1``, ...

    Parameters
    ----------
    clip_or_audio : Clip or audio
        A :class:`Clip` (its prompt, negative prompt and model are reused unless given), or any
        audio :func:`restyle` takes (then ``prompt`` is required).
    n : int
        How many variations (1 to 16).
    strength : float
        How far each may wander from the original (0.2–0.4 keeps it recognisable).
    others
        As for :func:`restyle`.

    Examples
    --------
    >>> import numpy as np
    >>> hum = (0.3 * np.sin(np.arange(16000) / 3.0), 16000)
    >>> clips = variations(hum, 2, prompt="piano", num_inference_steps=4, seed=5, model="tiny")
    >>> [c.seed for c in clips]
    [5, 6]
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 1 <= n <= MAX_VARIATIONS:
        raise InvalidInputError("n", n, f"must be a whole number from 1 to {MAX_VARIATIONS}", "pass e.g. 4")
    if isinstance(clip_or_audio, Clip):
        prompt = prompt or clip_or_audio.prompt
        negative_prompt = negative_prompt or clip_or_audio.request.negative_prompt
        model = model or clip_or_audio.request.model
    if prompt is None:
        raise InvalidInputError(
            "prompt", None, "is needed when the input is not a Clip", "pass prompt='what the music is'"
        )
    first = draw_seed(int(n) if isinstance(n, int) and n > 0 else 1) if seed is None else seed
    return [
        restyle(
            clip_or_audio,
            prompt,
            strength=strength,
            negative_prompt=negative_prompt,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            seed=first + k,
            model=model,
            device=device,
            callback=callback,
            cancel=cancel,
        )
        for k in range(int(n))
    ]


# --------------------------------------------------------------------------------------------------
# A clip as the first stage of the image chain


def audio_to_music(
    audio: Any,
    *,
    writer: str | None = None,
    instruction: str | None = None,
    labels: Mapping[str, Any] | None = None,
    clap: str | None = None,
    **generation: Any,
) -> Story:
    """Music from a clip: describe it like a musician, write a musical prompt from that, generate.

    The first stage is :func:`mgtoolkit.describe_audio` (tempo, key, loudness, CLAP tags) in place
    of a captioner; its sentence goes to the chain's writer stage, then to the music model.

    Parameters
    ----------
    audio : str, Path, bytes, (numpy.ndarray, int) or Clip
        The clip to start from (1 s to 10 minutes).
    writer, instruction
        As for :func:`image_to_music` (``writer="template"`` needs no model).
    labels, clap
        The tag lists and CLAP model of :func:`mgtoolkit.describe_audio` (``clap=None`` with a
        tiny ``model`` is the tiny CLAP).
    **generation
        ``negative_prompt``, ``audio_length_in_s``, ``num_inference_steps``, ``guidance_scale``,
        ``seed``, ``model``, ``scheduler``, ``device``, ``keep_loaded``, ``callback``, ``cancel``.

    Returns
    -------
    Story
        ``.caption`` is the clip's description; its sidecar keeps the whole description under
        ``extra["audio_description"]``; ``.rerun(...)`` reuses it.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(2 * 16000) / 16000
    >>> story = audio_to_music((0.3 * np.sin(2 * np.pi * 440 * t), 16000), writer="template",
    ...                        audio_length_in_s=1.0, num_inference_steps=2, seed=1, model="tiny")
    >>> story.caption.startswith("A 2.0 s clip")
    True
    """
    from ..analysis.describe import describe_audio
    from .image import _CALL_KEYS, _GENERATE_KEYS, TEXT_PREFIX, _chain, _check, _tiny_setup

    unknown = set(generation) - set(_GENERATE_KEYS + _CALL_KEYS)
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidInputError(
            name,
            generation[name],
            "is not an argument of audio_to_music",
            "pass e.g. seed= or audio_length_in_s=",
        )
    settings = {k: generation.get(k) for k in _GENERATE_KEYS + _CALL_KEYS}
    settings.update(
        captioner=TEXT_PREFIX + "a clip",
        writer=writer,
        instruction=instruction,
        question=None,
        audio_length_in_s=generation.get("audio_length_in_s", 5.0),
        num_inference_steps=generation.get("num_inference_steps", 20),
        guidance_scale=generation.get("guidance_scale", 2.5),
        keep_loaded=bool(generation.get("keep_loaded", False)),
    )
    # 1. Check the generation and writer arguments before the clip is analysed.
    settings, _ = _check(None, None, None, settings)
    # 2. Describe the clip (signal processing, then CLAP tags).
    GenerationCancelled.raise_if_set(settings["cancel"], "before describing the clip")
    t0 = time.perf_counter()
    if clap is None and _tiny_setup(settings["model"]):
        clap = "tiny"  # a tiny music model: tags from the tiny CLAP too, like the tiny writer
    description = describe_audio(audio, labels=labels, clap=clap, device=settings["device"])
    seconds = time.perf_counter() - t0
    # 3. The rest of the chain, with the description as the first stage's words.
    settings["captioner"] = TEXT_PREFIX + description.sentence()
    story = _chain(None, None, None, settings, ())
    clip = story.clip.with_extra(audio_description=description.to_dict(), captioner="describe_audio")
    timings = {"describe_s": seconds, **story.timings}
    return dataclasses.replace(story, clip=clip, captioner="describe_audio", timings=timings)
