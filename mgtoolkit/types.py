"""Requests and results: plain keyword-only frozen dataclasses, no hidden state. The bottom layer.

Only :mod:`mgtoolkit.errors` and :mod:`mgtoolkit.io.audio` (for ``Clip.save`` and the inline
player) are imported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import VERSION
from .io import audio as audio_io

__all__ = ["GenerationRequest", "Clip", "StepCallback"]

StepCallback = Callable[[int, int, Any], None]
"""``callback(step, num_inference_steps, latents)`` after each denoising step (``step`` from 0)."""


@dataclass(frozen=True, kw_only=True)
class GenerationRequest:
    """Everything that decides what a text-to-music call makes.

    Field names are ppdiffusers' ``AudioLDMPipeline`` argument names, plus ``seed``, ``model``
    and ``scheduler``.

    Attributes
    ----------
    prompt : str
        What the music should be.
    negative_prompt : str or None
        What it should not be (used when ``guidance_scale > 1``).
    audio_length_in_s : float
        Length of each clip in seconds.
    num_inference_steps : int
        Denoising steps; more is slower and usually cleaner.
    guidance_scale : float
        How strongly the prompt steers; ``<= 1`` turns classifier-free guidance off.
    seed : int or None
        Seed of the first candidate (candidate ``k`` uses ``seed + k``); ``None`` picks one.
    num_waveforms_per_prompt : int
        Number of candidates.
    model : str or None
        Preset name, hub id or local directory; ``None`` uses ``$MGTOOLKIT_MODEL`` or the default.
    scheduler : str or None
        Sampler name (see ``mgtoolkit.SCHEDULERS``); ``None`` keeps the model's own.
    """

    prompt: str
    negative_prompt: str | None = None
    audio_length_in_s: float = 5.0
    num_inference_steps: int = 20
    guidance_scale: float = 2.5
    seed: int | None = None
    num_waveforms_per_prompt: int = 1
    model: str | None = None
    scheduler: str | None = None

    def replace(self, **changes: Any) -> GenerationRequest:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, eq=False, kw_only=True)
class Clip:
    """One generated waveform and everything needed to make it again.

    Attributes
    ----------
    waveform : numpy.ndarray
        Mono float32 samples in ``[-1, 1]``.
    sample_rate : int
        Samples per second, read from the model's vocoder config.
    seed : int
        The seed that made this clip (``generate(..., seed=clip.seed)`` makes it again).
    request : GenerationRequest
        The request, with ``seed`` and ``model`` resolved; ``num_waveforms_per_prompt`` is the
        number of candidates made together.
    model_info : mapping
        Model id, weights license, device, dtype, pipeline class.
    timings : mapping
        Seconds spent per stage.
    extra : mapping
        Anything a chain adds (the caption and prompt of an image, the source of a restyle).
    score : float or None
        CLAP text-audio similarity with the prompt (``-1`` to ``1``) when the candidates were
        ranked; ``None`` otherwise.
    """

    waveform: np.ndarray
    sample_rate: int
    seed: int
    request: GenerationRequest
    model_info: Mapping[str, Any] = field(default_factory=dict)
    timings: Mapping[str, float] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    score: float | None = None

    @property
    def prompt(self) -> str:
        return self.request.prompt

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.waveform.shape[-1] / self.sample_rate

    def metadata(self) -> dict[str, Any]:
        """The provenance written to the JSON sidecar."""
        params = self.request.to_dict()
        params["seed"] = self.seed
        return {
            "prompt": self.request.prompt,
            "negative_prompt": self.request.negative_prompt,
            "seed": self.seed,
            "parameters": params,
            "model": dict(self.model_info),
            "sample_rate": self.sample_rate,
            "num_samples": int(self.waveform.shape[-1]),
            "duration_s": round(self.duration, 6),
            "timings_s": {k: round(float(v), 4) for k, v in self.timings.items()},
            "mgtoolkit_version": VERSION,
            **({"score": self.score} if self.score is not None else {}),
            **({"extra": dict(self.extra)} if self.extra else {}),
        }

    def save(
        self,
        out_dir: str | Path = "outputs",
        *,
        name: str | None = None,
        format: str = "wav",
        sample_rate: int | None = None,
        loudness: float | None = None,
    ) -> Path:
        """Write an audio file and a JSON sidecar; never overwrite.

        Parameters
        ----------
        out_dir : str or Path
            Folder to write into (created if missing).
        name : str, optional
            File stem; defaults to one derived from the prompt and seed. If a file of that name
            exists, ``-1``, ``-2``, ... is appended.
        format : {"wav", "flac", "ogg", "mp3"}
            File format. The default with no other option is a 16-bit WAV at the model's rate.
        sample_rate : int, optional
            Resample (soxr) to this rate, e.g. 44100 or 48000 for a DAW session.
        loudness : float, optional
            Normalise to this integrated loudness in LUFS (e.g. -14), never above -1 dBTP.

        Returns
        -------
        Path
            The audio file written; the sidecar is the same path with ``.json``.
        """
        if format == "wav" and sample_rate is None and loudness is None:
            return audio_io.save_clip(self, out_dir, name=name)
        from .io import export

        return export.export_clip(
            self, out_dir, name=name, format=format, sample_rate=sample_rate, loudness=loudness
        )

    def to_midi(self, path: str | Path, *, quantize: int | None = None, **options: Any) -> Path:
        """Transcribe the clip's notes (Basic Pitch; the ``midi`` extra) and write a MIDI file.

        The tempo is the conformed ``bpm`` (``clip.extra["conform"]``), else 120; ``quantize``
        snaps the notes to that many steps a beat (4: sixteenths). ``options`` go to
        :func:`mgtoolkit.transcribe`. Returns the path written.
        """
        from .io import midi

        return midi.write_midi(midi.transcribe(self, **options), path, quantize=quantize)

    def with_extra(self, **extra: Any) -> Clip:
        """A copy with more provenance in ``extra``."""
        return dataclasses.replace(self, extra={**self.extra, **extra})

    def summary(self) -> str:
        """One line: seed, length, steps, guidance and model."""
        model = self.model_info.get("name") or self.request.model or ""
        return " · ".join(
            [
                f"seed {self.seed}",
                f"{self.duration:.2f} s",
                f"{self.request.num_inference_steps} steps",
                f"guidance {self.request.guidance_scale:g}",
                f"model {model}",
                *([f"score {self.score:.3f}"] if self.score is not None else []),
            ]
        )

    def _repr_html_(self) -> str:
        """A clip as a cell's last expression plays inline (a player and a caption)."""
        return audio_io.player_html(self.waveform, self.sample_rate, f"{self.prompt} · {self.summary()}")

    def __repr__(self) -> str:
        return (
            f"Clip({self.prompt!r}, seed={self.seed}, {self.duration:.2f} s at {self.sample_rate} Hz, "
            f"model={self.model_info.get('name', self.request.model)!r})"
        )
