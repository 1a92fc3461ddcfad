"""What happens inside a generation, as data: the mel spectrogram at chosen denoising steps.

The latents the step callback hands over are decoded with the pipeline's own VAE
(``pipe.decode_latents``), exactly as the final step is, so a class can watch noise turn into
music. Drawing lives in :mod:`mgtoolkit.plots`; this module only computes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..types import Clip

__all__ = ["Denoising", "denoise_with_snapshots", "denoising_snapshots", "decode_mel"]

_LOG_TO_DB = 20.0 / math.log(10.0)  # AudioLDM's mel is the natural log of magnitude
TOP_DB = 80.0
"""Dynamic range of the snapshots, as :func:`mgtoolkit.plots.mel_db`'s ``top_db``."""


@dataclass(frozen=True)
class Denoising:
    """One generation and the mel spectrograms seen along the way.

    Attributes
    ----------
    clip : Clip
        The finished clip.
    snapshots : list of (int, numpy.ndarray)
        ``(step, mel)`` with ``step`` counted from 0 and ``mel`` in dB below its loudest bin (0 to -80),
        shaped ``(n_mels, frames)``: the colour scale of every other mel plot.
    sample_rate, hop_length : int
        What the mel frames are measured in (for :func:`mgtoolkit.plots.melshow`).
    """

    clip: Clip
    snapshots: list[tuple[int, np.ndarray]]
    sample_rate: int
    hop_length: int

    @property
    def total_steps(self) -> int:
        return self.clip.request.num_inference_steps


def decode_mel(loaded: Any, latents: np.ndarray) -> np.ndarray:
    """Decode latents (``[batch, C, H, W]``) of the first candidate to a mel in dB, ``(n_mels, frames)``.

    ``loaded`` is what :func:`mgtoolkit.load_model` returns.
    """
    from ..runtime import import_paddle

    paddle = import_paddle()
    pipe = loaded.pipe
    with paddle.no_grad():
        tensor = paddle.to_tensor(np.asarray(latents[:1])).cast(pipe.vae.dtype)
        mel = pipe.decode_latents(tensor)  # [1, 1, frames, n_mels], log magnitude
    db = mel.cast("float32").numpy()[0, 0].T * _LOG_TO_DB
    # referenced to its loudest bin and floored at -TOP_DB, like every other mel plot (mel_db)
    return np.maximum(db - float(np.max(db)), -TOP_DB).astype(np.float32)


def _check_steps(steps_to_show: tuple[int, ...], num_inference_steps: int) -> tuple[int, ...]:
    steps = tuple(sorted({int(s) for s in steps_to_show}))
    if not steps or steps[0] < 0 or steps[-1] >= num_inference_steps:
        raise InvalidInputError(
            "steps_to_show",
            steps_to_show,
            f"must name steps between 0 and {num_inference_steps - 1}",
            f"pass e.g. (0, {num_inference_steps // 2}, {num_inference_steps - 1})",
        )
    return steps


def denoise_with_snapshots(
    prompt: str,
    *,
    steps_to_show: tuple[int, ...] = (0, 5, 10, 19),
    num_inference_steps: int = 20,
    **generate_kwargs: Any,
) -> Denoising:
    """Generate one clip and keep the decoded mel spectrogram after each of ``steps_to_show``.

    Parameters
    ----------
    prompt : str
        What the music should be.
    steps_to_show : tuple of int
        Denoising steps (from 0) to decode; each must be below ``num_inference_steps``.
    num_inference_steps : int
        Denoising steps of the generation.
    **generate_kwargs
        Anything else :func:`mgtoolkit.generate` takes (``seed``, ``guidance_scale``, ``model``...).

    Examples
    --------
    >>> run = denoise_with_snapshots("calm piano", steps_to_show=(0, 3), num_inference_steps=4,
    ...                              audio_length_in_s=1.0, seed=1, model="tiny")
    >>> [step for step, _ in run.snapshots], run.snapshots[0][1].shape
    ([0, 3], (64, 100))
    """
    from ..models.loading import use_model
    from ..tasks.text import generate

    steps = _check_steps(steps_to_show, num_inference_steps)
    generate_kwargs.pop("num_waveforms_per_prompt", None)
    loaded = use_model(
        generate_kwargs.get("model"), device=generate_kwargs.get("device"), dtype=generate_kwargs.get("dtype")
    )
    snapshots: list[tuple[int, np.ndarray]] = []
    user_callback = generate_kwargs.pop("callback", None)

    def keep(step: int, total: int, latents: np.ndarray) -> None:
        if step in steps:
            snapshots.append((step, decode_mel(loaded, latents)))
        if user_callback is not None:
            user_callback(step, total, latents)

    clip = generate(prompt, num_inference_steps=num_inference_steps, callback=keep, **generate_kwargs)
    return Denoising(clip, snapshots, loaded.sample_rate, loaded.hop_length)


def denoising_snapshots(
    prompt: str, *, steps_to_show: tuple[int, ...] = (0, 5, 10, 19), **generate_kwargs: Any
) -> list[tuple[int, np.ndarray]]:
    """Only the ``(step, mel dB)`` pairs of :func:`denoise_with_snapshots`."""
    return denoise_with_snapshots(prompt, steps_to_show=steps_to_show, **generate_kwargs).snapshots
