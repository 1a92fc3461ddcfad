"""Text to music: check a request, load the model, turn it into clips. No widgets, plots or files."""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
import threading
import warnings
from typing import Any

import numpy as np

from .. import accel
from ..config import SEED_MAX, draw_seed, setting
from ..errors import InvalidInputError, MgtoolkitWarning, ModelUnavailableError
from ..i18n import has_words
from ..models.registry import ModelSpec, resolve_model
from ..types import Clip, GenerationRequest, StepCallback

__all__ = [
    "generate",
    "generate_clips",
    "rank_candidates",
    "validate_request",
    "load_model",
    "unload",
    "check_length",
    "exact_length",
    "MAX_CANDIDATES",
    "MAX_STEPS",
    "MAX_GUIDANCE",
]

MAX_CANDIDATES = 16
MAX_STEPS = 1000
MAX_GUIDANCE = 30.0


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
    if not has_words(value) and not allow_empty:  # empty, or only punctuation and emoji
        if _CJK_MARKS.search(value):  # the user writes Chinese: say it in Chinese
            raise InvalidInputError(field, value, "是空的（没有文字）", "请描述音乐，例如“轻松的钢琴，细雨”")
        raise InvalidInputError(field, value, "is empty", "describe the music, e.g. 'calm piano, soft rain'")
    return " ".join(value.split()) or None


_CJK_MARKS = re.compile("[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")


def validate_request(request: GenerationRequest, spec: ModelSpec | None = None) -> GenerationRequest:
    """Check every field of ``request``; return it with text tidied and the seed resolved.

    Raises
    ------
    InvalidInputError
        On the first bad field, naming it, its value and the fix.

    Examples
    --------
    >>> validate_request(GenerationRequest(prompt="  calm   piano ", seed=3, model="tiny")).prompt
    'calm piano'
    """
    spec = spec or resolve_model(request.model)
    prompt = _require_text("prompt", request.prompt, allow_empty=False)
    negative = _require_text("negative_prompt", request.negative_prompt, allow_empty=True)
    length = check_length(request.audio_length_in_s, spec.min_audio_length_in_s, max_length(spec), spec.name)
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
    seed = draw_seed(count) if request.seed is None else request.seed
    seed = _require_int("seed", seed, 0, SEED_MAX - count + 1, "pass a whole number such as 120, or None")
    if request.scheduler is not None:
        from ..models.audioldm import SCHEDULERS

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


def max_length(spec: ModelSpec) -> float:
    """The longest clip ``generate`` makes with ``spec``: AudioLDM models go window by window
    (:data:`mgtoolkit.models.inpaint.MAX_SECONDS`), the others in one pass."""
    from ..models.inpaint import MAX_SECONDS

    return MAX_SECONDS if spec.pipeline == "AudioLDMPipeline" else spec.max_audio_length_in_s


def check_length(value: Any, low: float, high: float, model: str) -> float:
    """``audio_length_in_s`` as a float within ``[low, high]`` seconds, or a one-line error.

    ``low`` is one latent frame of the model (0.04 s for AudioLDM): ppdiffusers refuses less.

    Examples
    --------
    >>> check_length(0.01, 0.04, 60.0, "tiny")
    Traceback (most recent call last):
    ...
    mgtoolkit.errors.InvalidInputError: audio_length_in_s=0.01: must be at least 0.04 s and at most 60 s for tiny; pass seconds, e.g. 5.0.
    """
    length = _require_number("audio_length_in_s", value, "pass seconds, e.g. 5.0")
    if not low <= length <= high:
        raise InvalidInputError(
            "audio_length_in_s",
            value,
            f"must be at least {low:g} s and at most {high:g} s for {model}",
            "pass seconds, e.g. 5.0",
        )
    return length


def load_model(
    model: str | None = None,
    *,
    device: str | None = None,
    dtype: str | None = None,
    optimize: bool | None = None,
    low_memory: bool | str | None = None,
    allow_unsafe_pickle: bool | None = None,
):
    """Load a text-to-audio model (cached per process) and return it.

    Parameters
    ----------
    model : str, optional
        Preset, hub id or directory; ``None`` uses ``$MGTOOLKIT_MODEL`` or the default.
    device : {"auto", "cpu", "gpu"}, optional
        ``None`` means ``$MGTOOLKIT_DEVICE`` or automatic (GPU if paddle sees one).
    dtype : {"float32", "float16", "bfloat16"}, optional
        ``bfloat16`` on a CPU with AVX512_BF16 or AMX runs the UNet and VAE decoder as oneDNN
        bfloat16 predictors (the weights load in float32; the text encoder and vocoder stay
        float32). ``None`` means ``$MGTOOLKIT_DTYPE`` (``auto``): float16 on a GPU; on a CPU
        bfloat16 where it was measured to pay (full-size model, machine with 12 GB or more, such
        a CPU, speed-ups on: 1.36x faster, each stage within 1e-2 of float32; see
        :func:`mgtoolkit.accel.onednn.auto_precision`), float32 elsewhere. The dtype used is
        recorded in the clip's sidecar; same seed and dtype give the same waveform.
    optimize : bool, optional
        Apply :func:`mgtoolkit.accel.optimize` (CPU speed-ups that keep every output); ``None``
        means yes unless ``MGTOOLKIT_OPTIMIZE=0``. Optimised and plain pipelines are cached apart.
    low_memory : bool or "auto", optional
        Keep only the running stage's weights in memory, and no float32 predictors (same output,
        a little slower); ``None`` means ``MGTOOLKIT_LOW_MEMORY`` (``auto``: on when the machine or
        its cgroup has under 4 GB). CPU only.
    allow_unsafe_pickle : bool, optional
        Read pickled weights (``.bin``, ``.pdparams``) with the full unpickler (code in them runs);
        ``None`` means ``MGTOOLKIT_ALLOW_UNSAFE_PICKLE`` (off). Recorded in the clip's sidecar when on.
    """
    from ..models import audioldm
    from ..runtime import pick_device, pick_dtype

    spec = resolve_model(model)
    dev = pick_device(device)
    wanted = accel.enabled() if optimize is None else bool(optimize)
    if dev != "cpu":
        prepare = accel.optimize if wanted else None
        chosen = pick_dtype(dev, _asked_dtype(dtype))
        return audioldm.load(spec, dev, chosen, prepare=prepare, allow_unsafe_pickle=allow_unsafe_pickle)
    import contextlib

    from ..accel.lowmem import choose, stashing_loads

    small = choose(low_memory)
    precision = cpu_precision(spec, dtype, optimize=wanted, low_memory=small)
    chosen = "float32" if precision == "auto" else precision
    prepare = accel.Optimizer(wanted, precision, small) if wanted or small or chosen != "float32" else None
    # bfloat16 lives in the predictors: the dygraph weights load (and stay) float32
    with stashing_loads() if small else contextlib.nullcontext():  # never the whole model in memory
        loaded = audioldm.load(spec, dev, "float32", prepare=prepare, allow_unsafe_pickle=allow_unsafe_pickle)
    report = getattr(loaded.pipe, "_mgtoolkit_optimizations", None) or {}
    chosen = report.get("precision", chosen)
    return loaded if chosen == "float32" else dataclasses.replace(loaded, dtype=chosen)


def _asked_dtype(dtype: str | None) -> str | None:
    """``dtype``, or ``$MGTOOLKIT_DTYPE``; ``None`` for ``auto``."""
    if dtype is None:
        dtype = setting("MGTOOLKIT_DTYPE").strip().lower()
    return None if dtype in ("", "auto") else dtype


def cpu_precision(spec: ModelSpec, dtype: str | None, *, optimize: bool, low_memory: bool) -> str:
    """The CPU dtype to load ``spec`` with, or ``"auto"`` when only the loaded model can tell.

    ``auto`` (``dtype=None`` and ``MGTOOLKIT_DTYPE=auto``) means bfloat16 where it pays
    (:func:`mgtoolkit.accel.onednn.auto_precision`). Where the answer is known before loading (a
    tiny model, low-memory mode, speed-ups off, a machine or CPU that rules bfloat16 out) it is
    given here, so that such loads share the float32 pipeline in the model cache.
    """
    from ..accel.onednn import bfloat16_possible
    from ..runtime import pick_dtype

    asked = _asked_dtype(dtype)
    chosen = pick_dtype("cpu", asked)
    if asked is None and optimize and not low_memory and not spec.is_tiny and bfloat16_possible():
        return "auto"
    return chosen


def unload() -> None:
    """Release every cached model (and the GPU memory it held)."""
    from ..models import audioldm

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
    rank: bool = True,
    loop: bool = False,
    dtype: str | None = None,
    translate: bool | str = True,
    bpm: float | None = None,
    bars: int | None = None,
    beats_per_bar: int = 4,
    key: str | None = None,
) -> Clip | list[Clip]:
    """Make music from a text prompt with AudioLDM.

    Parameters
    ----------
    prompt : str or GenerationRequest
        What the music should be, or a whole request (then the other fields are ignored).
    negative_prompt : str, optional
        What it should not be; used when ``guidance_scale > 1``.
    audio_length_in_s : float
        Seconds of audio per clip. Beyond one window (10 s) AudioLDM models make it window by
        window, each held to the end of the one before (see :func:`mgtoolkit.extend`), up to
        300 s, at a cost linear in the length; ``clip.extra["windows"]`` records the windows.
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
    dtype : str, optional
        ``"float32"``, or ``"bfloat16"`` on CPUs with AVX512_BF16 or AMX; ``None``: ``$MGTOOLKIT_DTYPE``
        (``auto``: float16 on a GPU, bfloat16 on a CPU where it pays, else float32; see
        :func:`load_model`).
    callback : callable, optional
        ``callback(step, num_inference_steps, latents)`` after every denoising step (made window
        by window, the second argument counts the steps of all windows).
    cancel : threading.Event, optional
        Set it (from another thread) to stop at the next step with :class:`GenerationCancelled`.
    loop : bool
        Make a seamless loop: its end flows into its start (``clip.save()`` writes loop points).
        Its length is a whole number of latent frames (0.04 s), at least one overlap (2.5 s).
    rank : bool
        With several candidates, return them best first, each with ``clip.score`` (CLAP
        similarity to the prompt; see :func:`rank_candidates`). ``False`` keeps seed order.
    translate : bool or str
        Prompts in Chinese (simplified or traditional, or mixed with English) become English
        before they reach an English text encoder: ``True`` through the built-in music glossary
        (no model; unknown words are left out with an :class:`UntranslatedWordsWarning`), a writer
        name (``"qwen2-0.5b"``, ``"chatglm-6b"``) through that chat model, ``False`` not at all.
        The request keeps your words; ``clip.extra["translation"]`` records both.
    bpm, bars, beats_per_bar, key : optional
        Make each clip obey a grid (see :func:`mgtoolkit.conform`): generated with a margin,
        stretched to exactly ``bpm`` (40-240), cut at a downbeat to exactly ``bars`` bars
        (1-64) of ``beats_per_bar`` beats (1-12), shifted to ``key`` (``"A minor"``, ``"Am"``,
        ``"F#"``); with ``loop`` the loop points fall on the bar lines. The bars decide the
        length: an ``audio_length_in_s`` that contradicts them is refused.

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
            prompt=prompt,
            negative_prompt=negative_prompt,
            audio_length_in_s=audio_length_in_s,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            seed=seed,
            num_waveforms_per_prompt=num_waveforms_per_prompt,
            model=model,
            scheduler=scheduler,
        )
    from ..analysis import conform

    grid = conform.check_grid(bpm=bpm, bars=bars, beats_per_bar=beats_per_bar, key=key, loop=loop)
    if grid is not None:  # a margin to cut whole bars from; the loop is made from the bars
        grid, length = conform.generation_length(grid, request.audio_length_in_s, 5.0)
        request, loop = request.replace(audio_length_in_s=length), loop and grid.bpm is None
    clips = generate_clips(
        request,
        device=device,
        callback=callback,
        cancel=cancel,
        rank=rank,
        loop=loop,
        dtype=dtype,
        translate=translate,
    )
    if grid is not None:
        clips = [conform.conform_clip(c, grid) for c in clips]
    return clips[0] if len(clips) == 1 else clips


def generate_clips(
    request: GenerationRequest,
    *,
    device: str | None = None,
    callback: StepCallback | None = None,
    cancel: threading.Event | None = None,
    rank: bool = True,
    loop: bool = False,
    dtype: str | None = None,
    translate: bool | str = True,
) -> list[Clip]:
    """Like :func:`generate` for a ready request, always returning a list."""
    from ..models import audioldm
    from .language import english_request

    # 1. Check the request before touching any model; the words in the encoder's language.
    spec = resolve_model(request.model)
    request = validate_request(request, spec)
    _check_loop(loop, request, spec)
    asked, (request, translation) = request, english_request(request, spec, translate)
    # 2. Load (cached) the model; its own shortest clip decides (the spec's is a default).
    loaded = load_model(spec.source if spec.is_local else spec.name, device=device, dtype=dtype)
    check_length(request.audio_length_in_s, loaded.min_audio_length_in_s, max_length(spec), spec.name)
    # A whole number of samples, so a slider's 2.9999999999999996 s is 3 s in the clip and its record.
    request = request.replace(audio_length_in_s=loaded.snap_seconds(request.audio_length_in_s))
    # 3. Run the pipeline, stopping at the next step if asked to.
    seeds = [request.seed + k for k in range(request.num_waveforms_per_prompt)]
    if loop or _beyond_window(request, spec):  # window by window (mgtoolkit.models.inpaint)
        clips = [_piece_clip(loaded, request, s, loop, callback, cancel) for s in seeds]
        clips = rank_candidates(clips, loaded, device=device) if rank and len(clips) > 1 else clips
        return _in_users_words(clips, asked, translation)
    waves, timings = audioldm.run(
        loaded,
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        audio_length_in_s=request.audio_length_in_s,
        num_inference_steps=request.num_inference_steps,
        guidance_scale=request.guidance_scale,
        seeds=seeds,
        scheduler=request.scheduler,
        callback=callback,
        cancel=cancel,
    )
    # 4. Wrap each waveform with its provenance.
    timings = {"load_s": loaded.load_s, **timings}
    clips = [
        Clip(
            waveform=_tidy(w, loaded.sample_rate, request.audio_length_in_s),
            sample_rate=loaded.sample_rate,
            seed=s,
            request=request,
            model_info=loaded.info(),
            timings=timings,
        )
        for w, s in zip(waves, seeds, strict=True)
    ]
    # 5. Several candidates: best first by CLAP score (each keeps its own seed).
    clips = rank_candidates(clips, loaded, device=device) if rank and len(clips) > 1 else clips
    return _in_users_words(clips, asked, translation)


def _in_users_words(clips: list[Clip], asked: GenerationRequest, translation: dict | None) -> list[Clip]:
    """The clips with the user's own request back, and what the model received in ``extra``."""
    if translation is None:
        return clips
    return [
        dataclasses.replace(
            c,
            request=asked.replace(audio_length_in_s=c.request.audio_length_in_s),
            extra={**c.extra, "translation": translation},
        )
        for c in clips
    ]


def rank_candidates(clips: list[Clip], loaded, *, device: str | None = None) -> list[Clip]:
    """``clips`` best first by CLAP text-audio similarity, each with ``score`` set.

    The scorer is the pipeline's own CLAP when it has an audio tower (MusicLDM, AudioLDM 2: the
    model their ``score_waveforms`` uses), else ``laion/clap-htsat-unfused`` loaded for the purpose
    (AudioLDM keeps only CLAP's text tower); the tiny models use the tiny CLAP. Ties keep seed order.
    The seconds spent (loading a CLAP included) are each clip's ``timings["rank_s"]``.
    """
    import dataclasses
    import time

    from ..analysis.clap import rank_clips
    from ..models import clap

    t0 = time.perf_counter()
    own = None if loaded.spec.is_tiny else clap.pipeline_clap(loaded.pipe)
    try:
        scorer = own or clap.load_clap(tiny=loaded.spec.is_tiny, device=device)
    except ModelUnavailableError as exc:  # the clips are made: never lose them for want of a ranker
        warnings.warn(
            MgtoolkitWarning(f"candidates kept in seed order: no CLAP model to rank them ({exc})"),
            stacklevel=3,
        )
        return clips
    name = f"{loaded.spec.name} (its own CLAP)" if own else scorer.name
    ranked = rank_clips(clips, scorer, scored_by=name)
    seconds = time.perf_counter() - t0
    return [dataclasses.replace(c, timings={**c.timings, "rank_s": seconds}) for c in ranked]


def _beyond_window(request: GenerationRequest, spec: ModelSpec) -> bool:
    from ..models.inpaint import WINDOW_S

    return spec.pipeline == "AudioLDMPipeline" and request.audio_length_in_s > WINDOW_S


def _check_loop(loop: Any, request: GenerationRequest, spec: ModelSpec) -> None:
    from ..models.inpaint import OVERLAP_S

    if not isinstance(loop, bool):
        raise InvalidInputError("loop", loop, "is not True or False", "pass loop=True for a seamless loop")
    if loop and spec.pipeline != "AudioLDMPipeline":
        raise InvalidInputError(
            "loop",
            loop,
            f"needs an AudioLDM model ({spec.name} is a {spec.pipeline})",
            "use model='tiny' or an AudioLDM preset",
        )
    if loop and request.audio_length_in_s < OVERLAP_S:
        raise InvalidInputError(
            "audio_length_in_s",
            request.audio_length_in_s,
            f"is shorter than one window overlap ({OVERLAP_S:g} s), too short for a loop",
            f"pass at least {OVERLAP_S:g} s",
        )


def _piece_clip(loaded, request: GenerationRequest, seed: int, loop: bool, callback, cancel) -> Clip:
    """One clip made window by window (or as one circular window for a short loop)."""
    from ..models.inpaint import make_piece

    wave, timings, info = make_piece(
        loaded,
        prompts=[request.prompt],
        negative_prompt=request.negative_prompt,
        audio_length_in_s=request.audio_length_in_s,
        num_inference_steps=request.num_inference_steps,
        guidance_scale=request.guidance_scale,
        seed=seed,
        loop=loop,
        scheduler=request.scheduler,
        callback=callback,
        cancel=cancel,
    )
    extra: dict[str, Any] = {"windows": info}
    if loop:
        extra["loop"] = {"start_sample": 0, "end_sample": int(wave.shape[0])}
    return Clip(
        waveform=np.ascontiguousarray(wave),
        sample_rate=loaded.sample_rate,
        seed=seed,
        request=request.replace(audio_length_in_s=round(wave.shape[0] / loaded.sample_rate, 6)),
        model_info=loaded.info(),
        timings={"load_s": loaded.load_s, **timings},
        extra=extra,
    )


def exact_length(wave: np.ndarray, sample_rate: int, seconds: float) -> np.ndarray:
    """``wave`` cut or zero-padded to exactly ``round(seconds * sample_rate)`` samples.

    ppdiffusers cuts to ``int(seconds * rate)``, one sample short when a slider sends
    ``2.9999999999999996``; here a 3 s clip is 48,000 samples at 16 kHz, always.

    Examples
    --------
    >>> exact_length(np.ones(47_999, np.float32), 16_000, 2.9999999999999996).shape
    (48000,)
    """
    n = int(round(seconds * sample_rate))
    if wave.shape[-1] >= n:
        return wave[..., :n]
    return np.concatenate([wave, np.zeros(wave.shape[:-1] + (n - wave.shape[-1],), wave.dtype)], axis=-1)


def _tidy(wave: np.ndarray, sample_rate: int, seconds: float) -> np.ndarray:
    """Mono float32 in [-1, 1], contiguous, exactly ``round(seconds * sample_rate)`` samples."""
    wave = np.nan_to_num(np.asarray(wave, dtype=np.float32).reshape(-1))
    return np.ascontiguousarray(np.clip(exact_length(wave, sample_rate, seconds), -1.0, 1.0))
