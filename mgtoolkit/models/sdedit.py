"""SDEdit on AudioLDM: waveform → log-mel → VAE latents → noise to a strength → denoise under a prompt.

The same steps as the original AudioLDM's style transfer, written against the public pieces of a
loaded ppdiffusers ``AudioLDMPipeline`` (its VAE, UNet, scheduler config, ``decode_latents`` and
``mel_spectrogram_to_waveform``). :func:`denoise` is the shared guided denoising loop.

paddle is imported inside the functions only.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from ..errors import GenerationCancelled
from ..runtime import import_paddle
from ..types import StepCallback
from .audioldm import (
    LoadedModel,
    encode_prompts,
    holding_pipeline_lock,
    initial_latents,
    latent_shape,
    make_scheduler,
)

__all__ = ["MEL_FLOOR", "log_mel", "encode_audio", "noise_schedule", "denoise", "decode", "sdedit"]

MEL_FLOOR = 1e-5
"""AudioLDM's clamp before the log (``log(1e-5)`` is its silence level)."""


def log_mel(
    wave: np.ndarray,
    sample_rate: int,
    *,
    n_mels: int = 64,
    hop_length: int = 160,
    n_fft: int = 1024,
    fmin: float = 0.0,
    fmax: float = 8000.0,
) -> np.ndarray:
    """AudioLDM's log-mel spectrogram, ``(frames, n_mels)``.

    As AudioLDM's ``TacotronSTFT``: centred STFT with a Hann window of ``n_fft`` samples (reflect
    padding), magnitude (not power), Slaney-normalised mel filters from ``fmin`` to ``fmax``, and
    ``log(clamp(mel, 1e-5))``. The waveform is first made zero-mean with a peak of 0.5, as
    AudioLDM does when it reads a file.

    Examples
    --------
    >>> import numpy as np
    >>> log_mel(np.sin(np.arange(16000) / 5.0), 16000).shape
    (101, 64)
    """
    import librosa

    wave = np.asarray(wave, dtype=np.float32)
    wave = wave - wave.mean()
    wave = 0.5 * wave / (np.max(np.abs(wave)) + 1e-8)
    spectrum = np.abs(
        librosa.stft(
            wave,
            n_fft=n_fft,
            hop_length=hop_length,
            win_length=n_fft,
            window="hann",
            center=True,
            pad_mode="reflect",
        )
    )
    basis = librosa.filters.mel(
        sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=False, norm="slaney"
    )
    return np.log(np.maximum(basis @ spectrum, MEL_FLOOR)).T.astype(np.float32)


def encode_audio(model: LoadedModel, wave: np.ndarray, audio_length_in_s: float):
    """VAE latents (already × ``scaling_factor``) of ``wave``, shape ``[1, C, H, W]``.

    The mel is cut or padded (with silence) to the frame count the pipeline uses for
    ``audio_length_in_s``; the latent is the posterior mean, so no randomness is involved.
    """
    paddle = import_paddle()
    pipe = model.pipe
    channels, height, width = latent_shape(model, audio_length_in_s)
    frames, bins = height * pipe.vae_scale_factor, int(pipe.vocoder.config.model_in_dim)
    mel = log_mel(wave, model.sample_rate, n_mels=bins, hop_length=model.hop_length)[:frames]
    if mel.shape[0] < frames:
        pad = np.full((frames - mel.shape[0], bins), np.log(MEL_FLOOR), dtype=np.float32)
        mel = np.concatenate([mel, pad])
    x = paddle.to_tensor(mel[None, None]).cast(pipe.vae.dtype)
    with paddle.no_grad():
        latents = pipe.vae.encode(x).latent_dist.mean * pipe.vae.config.scaling_factor
    return latents.cast(pipe.unet.dtype)


def noise_schedule(scheduler, num_inference_steps: int, strength: float) -> list:
    """The timesteps left to denoise when starting at ``strength`` (empty for 0, all for 1)."""
    scheduler.set_timesteps(num_inference_steps)
    count = min(num_inference_steps, int(round(num_inference_steps * strength)))
    order = getattr(scheduler, "order", 1)
    return list(scheduler.timesteps[(num_inference_steps - count) * order :]) if count else []


def denoise(
    model: LoadedModel,
    latents,
    timesteps: list,
    scheduler,
    embeds,
    guidance_scale: float,
    *,
    callback: StepCallback | None = None,
    cancel: threading.Event | None = None,
):
    """The guided denoising loop over ``timesteps``; returns the final latents.

    ``embeds`` holds ``[negative; prompt]`` when ``guidance_scale > 1`` (classifier-free guidance),
    else ``[prompt]``. ``callback(step, len(timesteps), latents_numpy)`` runs after each step;
    a set ``cancel`` event stops the loop with :class:`GenerationCancelled`.
    """
    paddle = import_paddle()
    unet = model.pipe.unet
    guided = guidance_scale > 1.0
    total = len(timesteps)
    for i, t in enumerate(timesteps):
        GenerationCancelled.raise_if_set(cancel, f"after step {i} of {total}")
        model_input = paddle.concat([latents] * 2) if guided else latents
        model_input = scheduler.scale_model_input(model_input, t)
        with paddle.no_grad():
            noise = unet(model_input, t, encoder_hidden_states=None, class_labels=embeds).sample
        if guided:
            uncond, text = noise.chunk(2)
            noise = uncond + guidance_scale * (text - uncond)
        latents = scheduler.step(noise, t, latents).prev_sample
        if callback is not None:
            callback(i, total, latents.numpy())
    return latents


def decode(model: LoadedModel, latents) -> np.ndarray:
    """Latents → mel (VAE decoder) → waveform (vocoder), as the pipeline does; ``[batch, samples]``."""
    paddle = import_paddle()
    with paddle.no_grad():
        mel = model.pipe.decode_latents(latents)
        wave = model.pipe.mel_spectrogram_to_waveform(mel)
    return np.asarray(wave.numpy(), dtype=np.float32).reshape(latents.shape[0], -1)


def _embeddings(model: LoadedModel, prompt: str, negative_prompt: str | None, guidance_scale: float):
    paddle = import_paddle()
    with paddle.no_grad():
        if guidance_scale <= 1.0:
            return encode_prompts(model, [prompt])
        embeds = encode_prompts(model, [prompt, negative_prompt or ""])
        return paddle.concat([embeds[1:], embeds[:1]])  # the pipeline's order: unconditional first


@holding_pipeline_lock
def sdedit(
    model: LoadedModel,
    wave: np.ndarray,
    *,
    prompt: str,
    negative_prompt: str | None,
    strength: float,
    num_inference_steps: int,
    guidance_scale: float,
    seed: int,
    callback: StepCallback | None = None,
    cancel: threading.Event | None = None,
) -> tuple[np.ndarray, dict[str, float], dict[str, Any]]:
    """Restyle ``wave`` (mono, at the model's rate) under ``prompt``.

    Returns
    -------
    waveform : numpy.ndarray
        As long as ``wave``.
    timings : dict
        ``text_s``, ``encode_s``, ``denoise_s``, ``decode_s``, ``total_s``.
    info : dict
        ``denoising_steps`` actually run and ``start_timestep``.

    Notes
    -----
    With ``strength`` 0 nothing is noised or denoised and the input comes back unchanged (no VAE
    round trip). With ``strength`` 1 the start is pure noise, as in text-to-music, so the input
    has no influence. Between, the encoded input is noised to the matching timestep with noise
    drawn by numpy from ``seed``; DDIM then runs deterministically.
    """
    paddle = import_paddle()
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    # Enough mel frames to cover every sample (half a hop more, so float rounding cannot lose one).
    duration = (np.ceil(wave.shape[0] / model.hop_length) + 0.5) * model.hop_length / model.sample_rate
    scheduler = make_scheduler(model.pipe, None)
    timesteps = noise_schedule(scheduler, num_inference_steps, strength)
    if not timesteps:
        GenerationCancelled.raise_if_set(cancel, "before the first step")
        return (
            np.clip(wave, -1.0, 1.0).astype(np.float32),
            {"total_s": time.perf_counter() - t0},
            {"denoising_steps": 0, "start_timestep": None},
        )
    # 1. Prompt embeddings.
    embeds = _embeddings(model, prompt, negative_prompt, guidance_scale)
    timings["text_s"] = time.perf_counter() - t0
    # 2. Starting latents: the noised input, or pure noise at strength 1.
    mark = time.perf_counter()
    noise = paddle.to_tensor(initial_latents(latent_shape(model, duration), [seed])).cast(
        model.pipe.unet.dtype
    )
    if len(timesteps) == num_inference_steps and strength >= 1.0:
        latents = noise * scheduler.init_noise_sigma
    else:
        start = paddle.to_tensor([int(timesteps[0])], dtype="int64")
        latents = scheduler.add_noise(encode_audio(model, wave, duration), noise, start)
    timings["encode_s"] = time.perf_counter() - mark
    # 3. Denoise the remaining steps under the prompt.
    mark = time.perf_counter()
    latents = denoise(
        model, latents, timesteps, scheduler, embeds, guidance_scale, callback=callback, cancel=cancel
    )
    timings["denoise_s"] = time.perf_counter() - mark
    # 4. Back to a waveform as long as the input.
    mark = time.perf_counter()
    out = decode(model, latents)[0, : wave.shape[0]]
    out = np.pad(out, (0, wave.shape[0] - out.shape[0]))  # never shorter than the input
    timings["decode_s"] = time.perf_counter() - mark
    timings["total_s"] = time.perf_counter() - t0
    return out, timings, {"denoising_steps": len(timesteps), "start_timestep": int(timesteps[0])}
