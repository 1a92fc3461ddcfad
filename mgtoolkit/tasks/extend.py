"""Music of any length: continue a clip window by window, long pieces, seamless loops.

The maths (latent in-painting, circular denoising, window joins) is in
:mod:`mgtoolkit.models.inpaint`; here the arguments are checked, the model loaded and the result
wrapped as a :class:`~mgtoolkit.types.Clip` whose ``extra`` records the windows (it lands in the
sidecar). :func:`mgtoolkit.generate` uses :func:`piece_clips` for lengths beyond one window and
for ``loop=True``.
"""

from __future__ import annotations

import math
import numbers
import threading
from typing import Any

from ..config import draw_seed
from ..errors import InvalidInputError
from ..models.inpaint import MAX_SECONDS, OVERLAP_S, WINDOW_S
from ..models.loading import spec_of, use_model
from ..types import Clip, GenerationRequest, StepCallback
from .text import validate_request

__all__ = ["extend", "check_windows", "check_seconds", "WINDOW_S", "OVERLAP_S", "MAX_SECONDS"]


def check_seconds(field: str, value: Any, low: float, high: float = MAX_SECONDS) -> float:
    """``value`` as seconds within ``[low, high]``, or a one-line error naming ``field``."""
    fix = f"pass seconds from {low:g} to {high:g}, e.g. 10"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise InvalidInputError(field, value, "is not a number of seconds", fix)
    if not low <= float(value) <= high:
        raise InvalidInputError(field, value, f"must be between {low:g} and {high:g} s", fix)
    return float(value)


def check_windows(window_s: Any, overlap_s: Any) -> tuple[float, float]:
    """The window and overlap lengths, checked: a window of 1 to 30 s, an overlap under half of it."""
    window = check_seconds("window_s", window_s, 1.0, 30.0)
    overlap = check_seconds("overlap_s", overlap_s, 0.2, 30.0)
    if overlap > window / 2:
        raise InvalidInputError(
            "overlap_s", overlap_s, f"is more than half the {window:g} s window", "pass e.g. a quarter of it"
        )
    return window, overlap


def _prompts(prompt: Any, clip_or_audio: Any) -> list[str]:
    """The prompt per window: one string, a list (one per window), or the clip's own."""
    if prompt is None and isinstance(clip_or_audio, Clip):
        prompt = clip_or_audio.prompt
    if prompt is None:
        raise InvalidInputError(
            "prompt", None, "is needed when the input is not a Clip", "pass prompt='what comes next'"
        )
    prompts = (
        [prompt] if isinstance(prompt, str) else list(prompt) if isinstance(prompt, (list, tuple)) else None
    )
    if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise InvalidInputError(
            "prompt", prompt, "is not text or a list of texts", "pass e.g. ['calm intro', 'drums come in']"
        )
    return [" ".join(p.split()) for p in prompts]


def _wave_of(clip_or_audio: Any, sample_rate: int, overlap_s: float, loop: bool):
    """The input as float32 at the model's rate; a clip or array at another rate is refused."""
    from ..io.audio import load_audio

    rate = getattr(clip_or_audio, "sample_rate", None)
    if isinstance(clip_or_audio, tuple) and len(clip_or_audio) == 2:
        rate = next((r for r in clip_or_audio if isinstance(r, numbers.Integral)), None)
    if rate is not None and int(rate) != sample_rate:
        raise InvalidInputError(
            "audio",
            f"sample rate {int(rate)} Hz",
            f"differs from the model's {sample_rate} Hz, so the clip cannot be continued unchanged",
            f"resample it to {sample_rate} Hz first (e.g. librosa.resample) or pass its file",
        )
    least = 2 * overlap_s if loop else overlap_s
    return load_audio(clip_or_audio, sample_rate, min_s=least, max_s=MAX_SECONDS)


def extend(
    clip_or_audio: Any,
    seconds: float = 10.0,
    prompt: str | list[str] | None = None,
    *,
    negative_prompt: str | None = None,
    num_inference_steps: int = 20,
    guidance_scale: float = 2.5,
    seed: int | None = None,
    model: str | None = None,
    device: str | None = None,
    loop: bool = False,
    window_s: float = WINDOW_S,
    overlap_s: float = OVERLAP_S,
    scheduler: str | None = None,
    callback: StepCallback | None = None,
    cancel: threading.Event | None = None,
) -> Clip:
    """Continue a clip by ``seconds``: the input comes back unchanged, the new part follows on.

    Window by window, each window's first ``overlap_s`` is held to the end of what came before
    (latent in-painting: before every denoising step those latent frames are replaced by the
    known latents noised to that step), so the model writes what comes next. The new audio starts
    exactly where the input ends, brought to the input's level; windows of new audio are joined
    with a short crossfade inside their overlap.

    Parameters
    ----------
    clip_or_audio : Clip, str, Path, bytes or (numpy.ndarray, int)
        What to continue: at least ``overlap_s`` long, at the model's sample rate for a clip or
        an array (a file is read at the model's rate).
    seconds : float
        How much to add, in whole latent frames (0.04 s); at most :data:`MAX_SECONDS` in all.
    prompt : str or list of str, optional
        What comes next; a list gives one prompt per window (the last one for any further
        windows). ``None`` reuses a Clip's own prompt.
    negative_prompt, num_inference_steps, guidance_scale, seed, model, device, scheduler
        As for :func:`mgtoolkit.generate` (a Clip's model is reused when ``model`` is None).
    loop : bool
        Make the result a loop: the last window is also held to the input's start, so the end
        flows back into it (``clip.save()`` writes the loop points).
    window_s, overlap_s : float
        Window length (AudioLDM's 10 s) and how much of it is held to what came before.
    callback : callable, optional
        ``callback(step, total_steps, latents)`` after each step of each window (``total_steps``
        counts all windows: a progress bar over the whole piece).
    cancel : threading.Event, optional
        Set it to stop at the next step with :class:`GenerationCancelled`.

    Returns
    -------
    Clip
        ``clip.waveform[:n]`` is the input's ``n`` samples, bit for bit; ``clip.extra["windows"]``
        holds the window length, overlap, count, prompts, join times and seam measures.

    Examples
    --------
    >>> import numpy as np
    >>> hum = (0.3 * np.sin(np.arange(16000, dtype=np.float32) / 3.0), 16000)
    >>> clip = extend(hum, 2.0, "piano", num_inference_steps=2, seed=1, window_s=2.0, overlap_s=0.5, model="tiny")
    >>> clip.duration, clip.extra["windows"]["windows"]
    (3.0, 2)
    """
    from ..models.inpaint import continue_wave

    # 1. Check what needs no model.
    window, overlap = check_windows(window_s, overlap_s)
    prompts = _prompts(prompt, clip_or_audio)
    if isinstance(clip_or_audio, Clip):
        negative_prompt = negative_prompt or clip_or_audio.request.negative_prompt
        model = model or clip_or_audio.request.model
    spec = spec_of(model)
    _require_audioldm(spec)
    added = check_seconds("seconds", seconds, 0.04)
    request = GenerationRequest(
        prompt=prompts[0],
        negative_prompt=negative_prompt,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        seed=draw_seed() if seed is None else seed,
        model=spec.name,
        scheduler=scheduler,
    )
    request = validate_request(request, spec)
    # 2. The model, and the input at its rate.
    loaded = use_model(model, spec, device=device)
    wave = _wave_of(clip_or_audio, loaded.sample_rate, overlap, bool(loop))
    _check_total(seconds, wave.shape[0] / loaded.sample_rate)
    # 3. Window by window.
    out, timings, info = continue_wave(
        loaded,
        wave,
        prompts=prompts,
        negative_prompt=request.negative_prompt,
        seconds=added,
        num_inference_steps=request.num_inference_steps,
        guidance_scale=request.guidance_scale,
        seed=request.seed,
        window_s=window,
        overlap_s=overlap,
        loop=bool(loop),
        scheduler=request.scheduler,
        callback=callback,
        cancel=cancel,
    )
    # 4. Wrap with provenance.
    from .audio import _describe

    request = request.replace(audio_length_in_s=round(out.shape[0] / loaded.sample_rate, 6))
    extra: dict[str, Any] = {"extend": {"source": _describe(clip_or_audio)}, "windows": info}
    if loop:
        extra["loop"] = {"start_sample": 0, "end_sample": int(out.shape[0])}
    return Clip(
        waveform=out,
        sample_rate=loaded.sample_rate,
        seed=request.seed,
        request=request,
        model_info=loaded.info(),
        timings={"load_s": loaded.load_s, **timings},
        extra=extra,
    )


def _check_total(seconds: float, given_s: float) -> None:
    if given_s + float(seconds) > MAX_SECONDS:
        raise InvalidInputError(
            "seconds",
            seconds,
            f"makes a {given_s + float(seconds):g} s piece, over the {MAX_SECONDS:g} s maximum",
            f"pass at most {MAX_SECONDS - given_s:g} for this {given_s:g} s input",
        )


def _require_audioldm(spec) -> None:
    if spec.pipeline != "AudioLDMPipeline":
        raise InvalidInputError(
            "model",
            spec.name,
            f"is a {spec.pipeline}; windows and loops work with AudioLDM models",
            "use e.g. model='audioldm-s-full-v2' or 'tiny'",
        )
