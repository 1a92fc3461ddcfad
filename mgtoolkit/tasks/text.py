"""Text to music: check a request, load the model, turn it into clips. No widgets, plots or files."""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
import threading
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import SEED_MAX, draw_seed
from ..errors import InvalidInputError, MgtoolkitWarning, ModelUnavailableError
from ..i18n import has_words
from ..models.loading import load_model, split_model, unload, use_model
from ..models.registry import ModelSpec, resolve_model
from ..types import Clip, GenerationRequest, StepCallback

if TYPE_CHECKING:
    from ..models.audioldm import LoadedModel

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


def cpu_precision(spec: ModelSpec, dtype: str | None, *, optimize: bool, low_memory: bool) -> str:
    """The CPU dtype :func:`mgtoolkit.models.plan.plan` gives ``spec``, or ``"auto"`` when only the
    loaded model can tell (bfloat16 predictors if its UNet is full-size). A view of the plan, kept
    for callers of the former decision function; the loader uses the plan itself.
    """
    from ..accel import onednn
    from ..models.plan import LoadOptions, Machine, plan
    from ..runtime import cpu_has_bfloat16

    possible = onednn.bfloat16_possible()  # the environment's predictors, this machine's memory and CPU
    machine = Machine(memory_bytes=None if possible else 0, bf16_cpu=possible or cpu_has_bfloat16())
    options = LoadOptions(device="cpu", dtype=dtype, optimize=optimize, low_memory=low_memory)
    chosen = plan(spec, LoadOptions(predictors="auto").over(options.with_defaults()), machine)
    if chosen.predictors == "bfloat16":
        return "auto" if chosen.full_size_only else "bfloat16"
    return "float32"


def generate(
    prompt: str | GenerationRequest,
    negative_prompt: str | None = None,
    *,
    audio_length_in_s: float = 5.0,
    num_inference_steps: int = 20,
    guidance_scale: float = 2.5,
    seed: int | None = None,
    num_waveforms_per_prompt: int = 1,
    model: str | LoadedModel | None = None,
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
    model : str or LoadedModel, optional
        Preset (``"audioldm-s-full-v2"``, ``"tiny"``, ...), hub id or directory: it runs as its
        latest :func:`load_model` loaded it (the ``MGTOOLKIT_*`` defaults if none did); or the
        model :func:`load_model` returned.
    scheduler : str, optional
        Sampler (see ``mgtoolkit.SCHEDULERS``); ``None`` keeps the model's own (DDIM).
    device : str, optional
        ``"cpu"``, ``"gpu"`` or ``None``: the model's own (as loaded) or automatic.
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
    model, loaded = split_model(model)
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
    grid = None
    if bpm is not None or bars is not None or key is not None:  # analysis loads only when asked
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
        model=loaded,
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
    model: LoadedModel | None = None,
) -> list[Clip]:
    """Like :func:`generate` for a ready request, always returning a list; ``model``, when given,
    is the loaded model to run (``request.model`` then names it)."""
    from ..models import audioldm
    from .language import english_request

    # 1. Check the request before touching any model; the words in the encoder's language.
    spec = model.spec if model is not None else resolve_model(request.model)
    request = validate_request(request, spec)
    _check_loop(loop, request, spec)
    asked, (request, translation) = request, english_request(request, spec, translate)
    # 2. Load (cached) the model; its own shortest clip decides (the spec's is a default).
    loaded = use_model(model if model is not None else request.model, spec, device=device, dtype=dtype)
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
