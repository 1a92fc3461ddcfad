"""Latent in-painting on AudioLDM: continue a clip, long pieces window by window, seamless loops.

AudioLDM denoises a latent of shape ``[1, 8, frames, 16]``; one latent frame is
``hop × vae_scale_factor`` samples (640 at 16 kHz: 0.04 s, so 1 s = 25 frames). In-painting
(RePaint / SDEdit style): before every denoising step the *known* frames of the latent are
replaced by the known latents noised to that step, so the model fills the unknown frames in a way
that agrees with them; after the last step the known frames are set to the known latents exactly.

Loops: :func:`inpaint` with ``circular=True`` rolls the latent along time before each step and
back after it, with a different shift every step (the last one by half the length), so every
position, the wrap point included, is denoised with context on both sides: the end flows into the
start. :func:`decode_circular` then decodes with the latent wrapped around, so the VAE and vocoder
see no edge at the wrap either.

Reused from :mod:`.sdedit`: ``encode_audio``, ``denoise`` (one step at a time here), ``decode``
and ``_embeddings``. paddle is imported inside the functions only.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from ..errors import GenerationCancelled
from ..runtime import import_paddle
from ..types import StepCallback
from .audioldm import LoadedModel, holding_pipeline_lock, make_scheduler
from .sdedit import _embeddings, decode, denoise, encode_audio, log_mel

__all__ = [
    "WINDOW_S",
    "OVERLAP_S",
    "MAX_SECONDS",
    "make_piece",
    "continue_wave",
    "frame_samples",
    "embeddings",
    "encode_frames",
    "inpaint",
    "loop_shifts",
    "decode_circular",
    "crossfade",
    "latent_seam",
    "spectral_seam",
]


WINDOW_S = 10.0
"""Seconds per window: AudioLDM was trained on 10 s clips."""
OVERLAP_S = 2.5
"""Seconds each window is held to the end of the one before (and a loop's last one to the start)."""
MAX_SECONDS = 300.0
"""The longest piece made window by window (5 minutes)."""


def frame_samples(model: LoadedModel) -> int:
    """Samples per latent frame (640 for AudioLDM at 16 kHz: hop 160 × VAE scale 4)."""
    return model.hop_length * int(model.pipe.vae_scale_factor)


def embeddings(model: LoadedModel, prompt: str, negative_prompt: str | None, guidance_scale: float):
    """The prompt embeddings :func:`inpaint` takes (``[negative; prompt]`` under guidance)."""
    return _embeddings(model, prompt, negative_prompt, guidance_scale)


def encode_frames(model: LoadedModel, wave: np.ndarray, frames: int):
    """VAE latents ``[1, C, frames, W]`` of ``wave``, which holds ``frames`` latent frames of samples.

    The mel is AudioLDM's (:func:`~.sdedit.log_mel`, which levels the input to a peak of 0.5);
    the latent is the posterior mean, so nothing random is involved.
    """
    seconds = (frames * frame_samples(model) + 0.5 * model.hop_length) / model.sample_rate
    latents = encode_audio(model, wave, seconds)
    return latents[:, :, :frames]


def loop_shifts(num_steps: int, height: int) -> list[int]:
    """How far the latent is rolled along time at each step of a loop; the last step by half.

    The shifts walk round the clip by the golden ratio, so the wrap point sits at a different
    place at every step and mostly in the middle of what the UNet sees.

    Examples
    --------
    >>> loop_shifts(4, 100)
    [35, 74, 12, 50]
    """
    golden = (np.sqrt(5.0) - 1.0) / 2.0
    return [
        int(height // 2 + round((num_steps - 1 - i) * golden * height)) % height for i in range(num_steps)
    ]


def _noised(scheduler, known, noise, t):
    paddle = import_paddle()
    return scheduler.add_noise(known, noise, paddle.to_tensor([int(t)], dtype="int64"))


def inpaint(
    model: LoadedModel,
    noise,
    embeds,
    *,
    num_inference_steps: int,
    guidance_scale: float,
    known=None,
    mask=None,
    circular: bool = False,
    scheduler: str | None = None,
    callback: StepCallback | None = None,
    step_offset: int = 0,
    total_steps: int | None = None,
    cancel: threading.Event | None = None,
):
    """Denoise from ``noise`` (``[1, C, H, W]``), holding the frames where ``mask`` is 1 to ``known``.

    Parameters
    ----------
    noise : paddle.Tensor
        Standard-normal starting noise; it also noises the known frames at every step.
    embeds : paddle.Tensor
        From :func:`embeddings`.
    known, mask : paddle.Tensor, optional
        Latents (same shape as ``noise``) and a ``[1, 1, H, 1]`` 0/1 mask of the frames to hold.
        ``None``: plain text-to-music.
    circular : bool
        Treat time as a circle (a loop): roll the latent by :func:`loop_shifts` around each step.
    callback : callable, optional
        ``callback(step_offset + i, total_steps, latents)`` after each step (latents unrolled).
    cancel : threading.Event, optional
        Set it to stop before the next step with :class:`GenerationCancelled`.
    """
    paddle = import_paddle()
    sched = make_scheduler(model.pipe, scheduler)
    sched.set_timesteps(num_inference_steps)
    timesteps = list(sched.timesteps)
    total = total_steps or len(timesteps)
    shifts = loop_shifts(len(timesteps), int(noise.shape[2])) if circular else [0] * len(timesteps)
    latents = noise * sched.init_noise_sigma
    for i, (t, shift) in enumerate(zip(timesteps, shifts, strict=True)):
        GenerationCancelled.raise_if_set(cancel, f"after step {step_offset + i} of {total}")
        if known is not None:
            latents = latents * (1.0 - mask) + _noised(sched, known, noise, t) * mask
        latents = paddle.roll(latents, shift, axis=2) if shift else latents
        latents = denoise(model, latents, [t], sched, embeds, guidance_scale)
        latents = paddle.roll(latents, -shift, axis=2) if shift else latents
        if callback is not None:
            callback(step_offset + i, total, latents.numpy())
    if known is not None:
        latents = latents * (1.0 - mask) + known * mask
    return latents


def decode_circular(model: LoadedModel, latents, pad: int) -> np.ndarray:
    """Decode a loop's latents with ``pad`` frames of the other end on each side; ``[batch, samples]``.

    The VAE and the vocoder then see the wrap point as the middle of the music, not an edge; the
    padding is cut off, so the waveform is ``H × frame_samples`` long and its end flows into its start.
    """
    paddle = import_paddle()
    height = int(latents.shape[2])
    pad = max(0, min(int(pad), height))
    if pad == 0:
        return decode(model, latents)
    wrapped = paddle.concat([latents[:, :, height - pad :], latents, latents[:, :, :pad]], axis=2)
    hop = frame_samples(model)
    return decode(model, wrapped)[:, pad * hop : (pad + height) * hop]


def crossfade(head: np.ndarray, tail: np.ndarray) -> np.ndarray:
    """``head`` fading out while ``tail`` fades in over their common length (raised cosine, gains sum to 1).

    The two sides of a window join are the same latents decoded twice, so they are strongly
    correlated: gains that sum to 1 keep the level, where equal-power gains (squares summing to
    1) would lift it by up to 3 dB in the middle.

    Examples
    --------
    >>> crossfade(np.ones(5), np.ones(5))
    array([1., 1., 1., 1., 1.])
    """
    n = head.shape[-1]
    fade_in = np.sin(0.5 * np.pi * (np.arange(n) + 0.5) / n) ** 2
    return head * (1.0 - fade_in) + tail * fade_in


def latent_seam(latents: np.ndarray) -> float:
    """The jump from a latent's last frame to its first, over the median jump between neighbours.

    About 1 when the end flows into the start as smoothly as the music flows inside; larger when
    the wrap is an edge.
    """
    z = np.asarray(latents, dtype=np.float64)
    z = z.reshape(-1, *z.shape[-2:])  # [channels, frames, bins]
    steps = np.linalg.norm(np.diff(z, axis=1), axis=(0, 2))
    wrap = float(np.linalg.norm(z[:, 0] - z[:, -1]))
    return wrap / float(np.median(steps) + 1e-12)


def spectral_seam(wave: np.ndarray, sample_rate: int, at: int | None = None) -> float:
    """Spectral flux across sample ``at`` over the median flux inside the clip (``None``: the wrap).

    Flux is the L2 change between neighbouring log-mel frames (hop 160, window 1024). For the wrap,
    the clip is rolled so that its end meets its start in the middle. About 1 means the join is
    no bigger a change than the music makes from frame to frame.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if at is None:
        half = wave.shape[0] // 2
        wave, at = np.roll(wave, -half), wave.shape[0] - half
    mel = log_mel(wave, sample_rate)
    flux = np.linalg.norm(np.diff(mel, axis=0), axis=1)  # flux[i]: frame i -> i + 1
    centre = int(round(at / 160))
    near = flux[max(0, centre - 3) : centre + 3]
    return float(near.max() / (np.median(flux) + 1e-12))


# ---------------------------------------------------------------------------------------------
# Window by window: long pieces, continuations and in-painted loops, memory bounded by a window.
# ---------------------------------------------------------------------------------------------
def plan_windows(new_frames: int, window: int, overlap: int, *, held: bool, loop: bool) -> list[int]:
    """How many new latent frames each window makes.

    Every window is at most ``window`` frames: ``overlap`` held frames at its start (all but the
    first window of a fresh piece; all of them when continuing a clip, ``held=True``), its new
    frames, and for a loop's last window ``overlap`` more held frames at its end (the start of the
    piece). The last window is as short as the remaining frames allow.

    Examples
    --------
    >>> plan_windows(600, 250, 62, held=False, loop=False)
    [250, 188, 162]
    >>> plan_windows(200, 250, 62, held=True, loop=True)
    [188, 12]
    """
    sizes: list[int] = []
    left = new_frames
    while left > 0:
        lead = overlap if (held or sizes) else 0
        room = window - lead
        if loop and left <= room - overlap:  # the last window: room for the head at its end
            sizes.append(left)
            break
        take = min(left, room)
        if loop and take == left:  # it fits, but not with the head: leave some for one more window
            take = max(1, left - (window - 2 * overlap))
        sizes.append(take)
        left -= take
    return sizes


def _window_noise(seed: int, index: int, shape: tuple[int, ...]) -> np.ndarray:
    """Standard-normal noise of window ``index`` of the piece made with ``seed`` (numpy; seed alone decides)."""
    return np.random.default_rng((int(seed), int(index))).standard_normal((1, *shape), dtype=np.float32)


def run_windows(
    model: LoadedModel,
    out: np.ndarray,
    *,
    start: int,
    sizes: list[int],
    overlap: int,
    embeds: list,
    seed: int,
    num_inference_steps: int,
    guidance_scale: float,
    lead=None,
    head=None,
    input_join: bool = False,
    scheduler: str | None = None,
    callback: StepCallback | None = None,
    cancel: threading.Event | None = None,
) -> dict:
    """Fill ``out`` from sample ``start`` on, window by window; return what was done.

    Parameters
    ----------
    out : numpy.ndarray
        The whole piece's samples, written in place. With ``lead`` given, the ``overlap`` frames
        before ``start`` hold the audio being continued.
    sizes : list of int
        New frames per window (:func:`plan_windows`).
    embeds : list
        One prompt embedding per window (:func:`embeddings`).
    lead : paddle.Tensor, optional
        Latents ``[1, C, overlap, W]`` of the audio just before ``start``: the first window is held
        to them (continuing a clip).
    head : paddle.Tensor or True, optional
        A loop: the last window is also held, at its end, to these latents of the piece's start
        (``True``: the first window's own first frames).
    input_join : bool
        The audio before ``start`` is the user's and stays as it is: the first window joins it at
        ``start`` (level matched) instead of crossfading inside the overlap.

    Returns
    -------
    dict
        ``joins`` (sample positions), ``gain`` (level applied to the new audio), ``wrap_fade``.
    """
    paddle = import_paddle()
    hop = frame_samples(model)
    channels, bins = int(model.pipe.unet.config.in_channels), int(model.pipe.vocoder.config.model_in_dim)
    bins //= int(model.pipe.vae_scale_factor)
    q = overlap * hop
    fade = (q // 4, 3 * q // 4)
    total = num_inference_steps * len(sizes)
    held_prev, head_latents, gain, joins = lead, None if head is True else head, 1.0, []
    position = start - (q if lead is not None else 0)  # sample where the current window begins
    for k, new in enumerate(sizes):
        lead_n = overlap if held_prev is not None else 0
        tail_n = overlap if (head is not None and k == len(sizes) - 1) else 0
        height = lead_n + new + tail_n
        noise = paddle.to_tensor(_window_noise(seed, k, (channels, height, bins))).cast(model.pipe.unet.dtype)
        known, mask = _held(noise, held_prev, head_latents if tail_n else None, lead_n, tail_n)
        latents = inpaint(
            model, noise, embeds[k], num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale, known=known, mask=mask, scheduler=scheduler,
            callback=callback, step_offset=k * num_inference_steps, total_steps=total, cancel=cancel,
        )  # fmt: skip
        audio = decode(model, latents)[0]
        if k == 0 and head is True:
            head_latents = latents[:, :, :overlap]
        if lead_n and k == 0 and input_join:
            gain = _level_gain(out[position + fade[0] : position + fade[1]], audio[fade[0] : fade[1]])
        audio = audio * gain
        cut = (q, q) if (lead_n and k == 0 and input_join) else fade if lead_n else (0, 0)
        end = position + (lead_n + new) * hop
        out[position + cut[0] : position + cut[1]] = crossfade(
            out[position + cut[0] : position + cut[1]], audio[cut[0] : cut[1]]
        )
        out[position + cut[1] : end] = audio[cut[1] : (lead_n + new) * hop]
        if lead_n:
            joins.append(position + q)
        if tail_n and not input_join:  # the loop's start continues this window's end
            head_audio = audio[(lead_n + new) * hop :]
            out[: fade[0]] = head_audio[: fade[0]]
            out[fade[0] : fade[1]] = crossfade(head_audio[fade[0] : fade[1]], out[fade[0] : fade[1]])
        held_prev = latents[:, :, height - tail_n - overlap : height - tail_n]
        position = end - q
    return {
        "joins": joins,
        "gain": float(gain),
        "wrap_fade": (0, fade[1]) if head is not None and not input_join else None,
    }


def _held(noise, lead, head, lead_n: int, tail_n: int):
    """The known latents and 0/1 mask of a window: ``lead`` at its start, ``head`` at its end."""
    paddle = import_paddle()
    if not lead_n and not tail_n:
        return None, None
    height = int(noise.shape[2])
    parts = ([lead] if lead_n else []) + [paddle.zeros_like(noise[:, :, : height - lead_n - tail_n])]
    parts += [head] if tail_n else []
    flags = np.zeros((1, 1, height, 1), dtype=np.float32)
    flags[:, :, :lead_n] = 1.0
    flags[:, :, height - tail_n :] = 1.0
    return paddle.concat(parts, axis=2), paddle.to_tensor(flags).cast(noise.dtype)


MAX_GAIN = 16.0
"""The most a continuation is raised or lowered to match the level of the clip it continues."""


def _level_gain(given: np.ndarray, made: np.ndarray) -> float:
    """The gain that brings ``made`` (the model's rendering of the held audio) to ``given``'s RMS.

    AudioLDM reads audio levelled to a peak of 0.5, so its continuation comes back at that level;
    this brings it back to the input's.
    """
    rms_given = float(np.sqrt(np.mean(np.square(given, dtype=np.float64))))
    rms_made = float(np.sqrt(np.mean(np.square(made, dtype=np.float64))))
    if rms_made < 1e-8 or rms_given < 1e-8:
        return 1.0
    return float(np.clip(rms_given / rms_made, 1.0 / MAX_GAIN, MAX_GAIN))


def level_seam(wave: np.ndarray, sample_rate: int, at: int | None = None) -> float:
    """RMS of the 10 ms on each side of sample ``at`` over the median RMS of 10 ms blocks.

    About 1 when the level runs on through the join; below 1 for a dip (a clip's edge decoded
    with silence beyond it), above for a bump. ``None``: the wrap from the end to the start.
    """
    wave = np.asarray(wave, dtype=np.float64)
    block = max(1, sample_rate // 100)
    if at is None:
        half = wave.shape[0] // 2
        wave, at = np.roll(wave, -half), wave.shape[0] - half
    at = int(np.clip(at, block, wave.shape[0] - block))
    count = wave.shape[0] // block
    rms = np.sqrt(np.mean(wave[: count * block].reshape(count, block) ** 2, axis=1))
    near = np.sqrt(np.mean(wave[at - block : at + block] ** 2))
    return float(near / (np.median(rms) + 1e-12))


def seams(wave: np.ndarray, sample_rate: int, joins: list[int], *, wrap: bool) -> dict:
    """The seam measures of a piece: at each window join (±2 s around it) and, for a loop, the wrap."""
    span = 2 * sample_rate
    result: dict = {}
    if joins:
        result["joins_spectral_seam"] = [
            round(spectral_seam(wave[max(0, j - span) : j + span], sample_rate, j - max(0, j - span)), 3)
            for j in joins
        ]
    if wrap:
        result["spectral_seam"] = round(spectral_seam(wave, sample_rate), 3)
        result["level_seam"] = round(level_seam(wave, sample_rate), 3)
    return result


def loop_clip(
    model: LoadedModel,
    embeds,
    *,
    frames: int,
    seed: int,
    num_inference_steps: int,
    guidance_scale: float,
    scheduler: str | None = None,
    callback: StepCallback | None = None,
    cancel: threading.Event | None = None,
) -> np.ndarray:
    """A seamless loop of ``frames`` latent frames in one window: circular denoising and decoding."""
    paddle = import_paddle()
    channels = int(model.pipe.unet.config.in_channels)
    bins = int(model.pipe.vocoder.config.model_in_dim) // int(model.pipe.vae_scale_factor)
    noise = paddle.to_tensor(_window_noise(seed, 0, (channels, frames, bins))).cast(model.pipe.unet.dtype)
    latents = inpaint(
        model, noise, embeds, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
        circular=True, scheduler=scheduler, callback=callback, cancel=cancel,
    )  # fmt: skip
    return decode_circular(model, latents, pad=max(4, frames // 4))[0]


def frames_of(model: LoadedModel, seconds: float) -> int:
    """Whole latent frames nearest to ``seconds`` (at least one)."""
    return max(1, int(round(seconds * model.sample_rate / frame_samples(model))))


def _prompt_embeds(model, prompts: list[str], count: int, negative_prompt, guidance_scale) -> list:
    """One embedding per window: window ``k`` takes ``prompts[k]`` (the last one for the rest)."""
    cache: dict[str, object] = {}
    chosen = [prompts[min(k, len(prompts) - 1)] for k in range(count)]
    for text in chosen:
        if text not in cache:
            cache[text] = embeddings(model, text, negative_prompt, guidance_scale)
    return [cache[text] for text in chosen], chosen


@holding_pipeline_lock
def make_piece(
    model: LoadedModel,
    *,
    prompts: list[str],
    negative_prompt: str | None,
    audio_length_in_s: float,
    num_inference_steps: int,
    guidance_scale: float,
    seed: int,
    window_s: float | None = None,
    overlap_s: float | None = None,
    loop: bool = False,
    scheduler: str | None = None,
    callback: StepCallback | None = None,
    cancel: threading.Event | None = None,
) -> tuple[np.ndarray, dict[str, float], dict]:
    """Text to music of any length, window by window; or a loop.

    Each window costs the same (one ``window_s`` denoising and decoding) and only one is in
    memory at a time, so the cost grows linearly with the length. A loop no longer than one
    window is made in one circular pass (:func:`loop_clip`); a longer one holds its last window's
    end to the first window's start. A loop is a whole number of latent frames (0.04 s) long.

    Returns
    -------
    waveform, timings, info
        ``info`` holds ``window_s``, ``overlap_s``, ``windows``, ``new_frames``, ``prompts``,
        ``joins_s`` and the seam measures (:func:`seams`).
    """
    t0 = time.perf_counter()
    hop, rate = frame_samples(model), model.sample_rate
    window = frames_of(model, WINDOW_S if window_s is None else window_s)
    overlap = frames_of(model, OVERLAP_S if overlap_s is None else overlap_s)
    total = (
        frames_of(model, audio_length_in_s) if loop else int(np.ceil(audio_length_in_s * rate / hop - 1e-9))
    )
    if loop and total <= window:
        embeds, chosen = _prompt_embeds(model, prompts, 1, negative_prompt, guidance_scale)
        kwargs = dict(num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, seed=seed)
        wave = loop_clip(
            model, embeds[0], frames=total, scheduler=scheduler, callback=callback, cancel=cancel, **kwargs
        )
        sizes, joins = [total], []
    else:
        sizes = plan_windows(total, window, overlap, held=False, loop=loop)
        embeds, chosen = _prompt_embeds(model, prompts, len(sizes), negative_prompt, guidance_scale)
        wave = np.zeros(total * hop, dtype=np.float32)
        done = run_windows(
            model, wave, start=0, sizes=sizes, overlap=overlap, embeds=embeds, seed=seed,
            num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
            head=True if loop else None, scheduler=scheduler, callback=callback, cancel=cancel,
        )  # fmt: skip
        joins = done["joins"]
    wave = np.clip(wave if loop else wave[: int(round(audio_length_in_s * rate))], -1.0, 1.0)
    info = _window_info(model, window, overlap, sizes, chosen, joins, held=False)
    info.update(seams(wave, rate, joins, wrap=loop))
    return wave.astype(np.float32), {"total_s": time.perf_counter() - t0}, info


@holding_pipeline_lock
def continue_wave(
    model: LoadedModel,
    wave: np.ndarray,
    *,
    prompts: list[str],
    negative_prompt: str | None,
    seconds: float,
    num_inference_steps: int,
    guidance_scale: float,
    seed: int,
    window_s: float | None = None,
    overlap_s: float | None = None,
    loop: bool = False,
    scheduler: str | None = None,
    callback: StepCallback | None = None,
    cancel: threading.Event | None = None,
) -> tuple[np.ndarray, dict[str, float], dict]:
    """``wave`` followed by ``seconds`` (whole latent frames) of its continuation.

    The first window is held to the VAE latents of the last ``overlap_s`` of ``wave``; the new
    audio starts exactly where ``wave`` ends, brought to its level, and ``wave`` itself is copied
    unchanged. With ``loop`` the last window is also held to the start of ``wave``, so the end
    flows back into it.
    """
    t0 = time.perf_counter()
    hop, rate = frame_samples(model), model.sample_rate
    window = frames_of(model, WINDOW_S if window_s is None else window_s)
    overlap = frames_of(model, OVERLAP_S if overlap_s is None else overlap_s)
    new = frames_of(model, seconds)
    sizes = plan_windows(new, window, overlap, held=True, loop=loop)
    embeds, chosen = _prompt_embeds(model, prompts, len(sizes), negative_prompt, guidance_scale)
    n = wave.shape[0]
    lead = encode_frames(model, wave[n - overlap * hop :], overlap)
    head = encode_frames(model, wave[: overlap * hop], overlap) if loop else None
    out = np.concatenate([wave, np.zeros(new * hop, dtype=np.float32)])
    done = run_windows(
        model, out, start=n, sizes=sizes, overlap=overlap, embeds=embeds, seed=seed,
        num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, lead=lead, head=head,
        input_join=True, scheduler=scheduler, callback=callback, cancel=cancel,
    )  # fmt: skip
    out[n:] = np.clip(out[n:], -1.0, 1.0)
    info = _window_info(model, window, overlap, sizes, chosen, done["joins"], held=True)
    info.update(input_s=round(n / rate, 6), added_s=round(new * hop / rate, 6), gain=round(done["gain"], 4))
    info.update(seams(out, rate, done["joins"], wrap=loop))
    return out, {"total_s": time.perf_counter() - t0}, info


def _window_info(model, window: int, overlap: int, sizes, prompts, joins, *, held: bool) -> dict:
    hop, rate = frame_samples(model), model.sample_rate
    return {
        "window_s": round(window * hop / rate, 6),
        "overlap_s": round(overlap * hop / rate, 6),
        "windows": len(sizes),
        "new_frames": list(sizes),
        "prompts": list(prompts),
        "joins_s": [round(j / rate, 6) for j in joins],
        "held_to_input": held,
    }
