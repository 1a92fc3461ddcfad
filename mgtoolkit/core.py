"""The pure core: check a request, turn it into clips. No widgets, no plots, no files."""

from __future__ import annotations

import math
import numbers
import secrets
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import GenerationCancelled, InvalidInputError
from .history import record
from .models import ModelSpec, resolve_model
from .types import Clip, GenerationRequest

__all__ = [
    "generate",
    "validate_request",
    "load_model",
    "unload",
    "StepCallback",
    "MAX_CANDIDATES",
    "MAX_STEPS",
    "MAX_GUIDANCE",
    "SEED_MAX",
]

StepCallback = Callable[[int, int, Any], None]
"""``callback(step, num_inference_steps, latents)`` after each denoising step (``step`` from 0)."""

MAX_CANDIDATES = 16
MAX_STEPS = 1000
MAX_GUIDANCE = 30.0
SEED_MAX = 2**32 - 1


def _require_number(field: str, value: Any, fix: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInputError(field, value, "is not a number", fix)
    if not math.isfinite(float(value)):
        raise InvalidInputError(field, value, "is not a finite number", fix)
    return float(value)


def _require_int(field: str, value: Any, low: int, high: int, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise InvalidInputError(field, value, "is not a whole number", fix)
    if not low <= int(value) <= high:
        raise InvalidInputError(field, value, f"must be between {low} and {high}", fix)
    return int(value)


def _require_text(field: str, value: Any, *, allow_empty: bool) -> str | None:
    if value is None and allow_empty:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(field, value, "is not text", "pass a string such as 'calm piano'")
    if not value.strip() and not allow_empty:
        raise InvalidInputError(field, value, "is empty", "describe the music, e.g. 'calm piano, soft rain'")
    return " ".join(value.split()) or None


def validate_request(request: GenerationRequest, spec: ModelSpec | None = None) -> GenerationRequest:
    """Check every field of ``request``; return it with text tidied and the seed resolved.

    Raises
    ------
    InvalidInputError
        On the first bad field, naming it, its value and the fix.

    Examples
    --------
    >>> validate_request(GenerationRequest("  calm   piano ", seed=3, model="tiny")).prompt
    'calm piano'
    """
    spec = spec or resolve_model(request.model)
    prompt = _require_text("prompt", request.prompt, allow_empty=False)
    negative = _require_text("negative_prompt", request.negative_prompt, allow_empty=True)
    limit = spec.max_audio_length_in_s
    length = _require_number("audio_length_in_s", request.audio_length_in_s, "pass seconds, e.g. 5.0")
    if not 0 < length <= limit:
        raise InvalidInputError(
            "audio_length_in_s",
            request.audio_length_in_s,
            f"must be above 0 and at most {limit:g} s for {spec.name}",
            "pass seconds, e.g. 5.0",
        )
    steps = _require_int("num_inference_steps", request.num_inference_steps, 1, MAX_STEPS, "pass e.g. 20")
    guidance = _require_number("guidance_scale", request.guidance_scale, "pass e.g. 2.5")
    if not 0 <= guidance <= MAX_GUIDANCE:
        raise InvalidInputError(
            "guidance_scale",
            request.guidance_scale,
            f"must be between 0 and {MAX_GUIDANCE:g}",
            "pass e.g. 2.5 (values <= 1 turn guidance off)",
        )
    count = _require_int(
        "num_waveforms_per_prompt", request.num_waveforms_per_prompt, 1, MAX_CANDIDATES, "pass e.g. 1 to 4"
    )
    seed = request.seed
    if seed is None:
        seed = secrets.randbelow(2**31)
    seed = _require_int("seed", seed, 0, SEED_MAX - count + 1, "pass a whole number such as 120, or None")
    if request.scheduler is not None:
        from .backends.audioldm import SCHEDULERS

        if request.scheduler not in SCHEDULERS:
            raise InvalidInputError(
                "scheduler",
                request.scheduler,
                "is not a known sampler",
                f"use one of {', '.join(SCHEDULERS)}, or None for the model's own",
            )
    return request.replace(
        prompt=prompt,
        negative_prompt=negative,
        audio_length_in_s=length,
        num_inference_steps=steps,
        guidance_scale=guidance,
        num_waveforms_per_prompt=count,
        seed=seed,
        model=spec.name,
    )


def load_model(model: str | None = None, *, device: str | None = None, dtype: str | None = None):
    """Load a text-to-audio model (cached per process) and return it.

    Parameters
    ----------
    model : str, optional
        Preset, hub id or directory; ``None`` uses ``$MGTOOLKIT_MODEL`` or the default.
    device : {"auto", "cpu", "gpu"}, optional
        ``None`` means ``$MGTOOLKIT_DEVICE`` or automatic (GPU if paddle sees one).
    dtype : {"float32", "float16"}, optional
        ``None`` means float16 on GPU, float32 on CPU.
    """
    from .backends import audioldm
    from .runtime import pick_device, pick_dtype

    spec = resolve_model(model)
    dev = pick_device(device)
    return audioldm.load(spec, dev, pick_dtype(dev, dtype))


def unload() -> None:
    """Release every cached model (and the GPU memory it held)."""
    from .backends import audioldm

    audioldm.unload()


def generate(
    prompt: str | GenerationRequest,
    negative_prompt: str | None = None,
    *,
    audio_length_in_s: float = 5.0,
    num_inference_steps: int = 20,
    guidance_scale: float = 2.5,
    seed: int | None = None,
    num_waveforms_per_prompt: int = 1,
    model: str | None = None,
    scheduler: str | None = None,
    device: str | None = None,
    callback: StepCallback | None = None,
    cancel: threading.Event | None = None,
) -> Clip | list[Clip]:
    """Make music from a text prompt with AudioLDM.

    Parameters
    ----------
    prompt : str or GenerationRequest
        What the music should be, or a whole request (then the other fields are ignored).
    negative_prompt : str, optional
        What it should not be; used when ``guidance_scale > 1``.
    audio_length_in_s : float
        Seconds of audio per clip.
    num_inference_steps : int
        Denoising steps.
    guidance_scale : float
        Prompt strength; ``<= 1`` disables classifier-free guidance.
    seed : int, optional
        Seed of the first candidate; ``None`` draws one (recorded in ``clip.seed``).
    num_waveforms_per_prompt : int
        Candidates to make; candidate ``k`` uses ``seed + k``.
    model : str, optional
        Preset (``"audioldm-s-full-v2"``, ``"tiny"``, ...), hub id or directory.
    scheduler : str, optional
        Sampler (see ``mgtoolkit.SCHEDULERS``); ``None`` keeps the model's own (DDIM).
    device : str, optional
        ``"cpu"``, ``"gpu"`` or ``None`` for automatic.
    callback : callable, optional
        ``callback(step, num_inference_steps, latents)`` after every denoising step.
    cancel : threading.Event, optional
        Set it (from another thread) to stop at the next step with :class:`GenerationCancelled`.

    Returns
    -------
    Clip or list of Clip
        One clip, or a list when ``num_waveforms_per_prompt > 1``.

    Examples
    --------
    >>> clip = generate("calm piano", seed=1, audio_length_in_s=1.0, num_inference_steps=2, model="tiny")
    >>> clip.sample_rate, clip.waveform.shape
    (16000, (16000,))
    """
    if isinstance(prompt, GenerationRequest):
        request = prompt
    else:
        request = GenerationRequest(
            prompt,
            negative_prompt,
            audio_length_in_s,
            num_inference_steps,
            guidance_scale,
            seed,
            num_waveforms_per_prompt,
            model,
            scheduler,
        )
    clips = generate_clips(request, device=device, callback=callback, cancel=cancel)
    record(clips)
    return clips[0] if len(clips) == 1 else clips


def generate_clips(
    request: GenerationRequest,
    *,
    device: str | None = None,
    callback: StepCallback | None = None,
    cancel: threading.Event | None = None,
) -> list[Clip]:
    """Like :func:`generate` for a ready request, always returning a list."""
    from .backends import audioldm

    # 1. Check the request before touching any model.
    spec = resolve_model(request.model)
    request = validate_request(request, spec)
    # 2. Load (cached) the model.
    loaded = load_model(spec.source if spec.is_local else spec.name, device=device)
    # 3. Run the pipeline, stopping at the next step if asked to.
    seeds = [request.seed + k for k in range(request.num_waveforms_per_prompt)]
    waves, timings = audioldm.run(
        loaded,
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        audio_length_in_s=request.audio_length_in_s,
        num_inference_steps=request.num_inference_steps,
        guidance_scale=request.guidance_scale,
        seeds=seeds,
        scheduler=request.scheduler,
        callback=_with_cancel(callback, cancel),
    )
    # 4. Wrap each waveform with its provenance.
    timings = {"load_s": loaded.load_s, **timings}
    return [
        Clip(_tidy(w), loaded.sample_rate, s, request, loaded.info(), timings)
        for w, s in zip(waves, seeds, strict=True)
    ]


def _with_cancel(callback: StepCallback | None, cancel: threading.Event | None) -> StepCallback | None:
    if cancel is None:
        return callback

    def step(i: int, n: int, latents: Any) -> None:
        if cancel.is_set():
            raise GenerationCancelled(f"cancelled after step {i + 1} of {n}")
        if callback is not None:
            callback(i, n, latents)

    if cancel.is_set():
        raise GenerationCancelled("cancelled before the first step")
    return step


def _tidy(wave: np.ndarray) -> np.ndarray:
    """Mono float32 in [-1, 1], contiguous."""
    wave = np.nan_to_num(np.asarray(wave, dtype=np.float32).reshape(-1))
    return np.ascontiguousarray(np.clip(wave, -1.0, 1.0))
