"""Audio from users: a path, bytes, ``(array, sr)`` or a Clip, as mono float32 at the model's rate.

numpy, soundfile and librosa only; no paddle. Bad input raises a one-line
:class:`InvalidInputError` naming ``audio``.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidInputError

__all__ = ["load_audio", "MIN_AUDIO_S", "SILENCE_PEAK"]

MIN_AUDIO_S = 0.5
"""Shortest clip accepted, in seconds."""

SILENCE_PEAK = 1e-4
"""Clips whose loudest sample is below this are treated as silent."""

_FIX = "pass a WAV/FLAC/OGG/MP3 file path, its bytes, (samples, sample_rate) or a Clip"


def load_audio(
    audio: Any,
    sample_rate: int,
    *,
    min_s: float = MIN_AUDIO_S,
    max_s: float | None = None,
    field: str = "audio",
) -> np.ndarray:
    """Read, check and resample a clip to mono float32 at ``sample_rate``.

    Parameters
    ----------
    audio : str, Path, bytes, file object, (numpy.ndarray, int) or Clip
        The sound. Arrays are ``(samples,)`` or ``(samples, channels)`` / ``(channels, samples)``;
        channels are averaged.
    sample_rate : int
        The rate to return (the model's).
    min_s, max_s : float
        Accepted duration range in seconds (``max_s=None``: no upper limit).
    field : str
        Argument name used in error messages.

    Returns
    -------
    numpy.ndarray
        Mono float32 samples at ``sample_rate``, finite, not silent.

    Raises
    ------
    InvalidInputError
        Missing, empty, corrupt or non-audio input; silent, too short or too long clips.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(44100) / 44100
    >>> load_audio((np.sin(2 * np.pi * 440 * t), 44100), 16000).shape
    (16000,)
    """
    wave, rate = _decode(audio, field)
    wave = _mono(wave, field)
    duration = wave.shape[0] / rate
    if duration < min_s:
        raise InvalidInputError(
            field, f"{duration:.2f} s of audio", f"is shorter than {min_s:g} s", "pass a longer clip"
        )
    if max_s is not None and duration > max_s:
        raise InvalidInputError(
            field,
            f"{duration:.1f} s of audio",
            f"is longer than the model's {max_s:g} s",
            f"trim it to at most {max_s:g} s",
        )
    if not np.isfinite(wave).all():
        raise InvalidInputError(
            field, "samples with NaN/inf", "has non-finite samples", "pass finite samples"
        )
    if float(np.max(np.abs(wave))) < SILENCE_PEAK:
        raise InvalidInputError(
            field, f"{duration:.2f} s of audio", "is silent", "pass a clip with some sound in it"
        )
    if rate != sample_rate:
        import librosa

        wave = librosa.resample(wave, orig_sr=rate, target_sr=sample_rate)
    return np.ascontiguousarray(wave, dtype=np.float32)


def _decode(audio: Any, field: str) -> tuple[np.ndarray, int]:
    """Samples and their rate, from any accepted kind of input."""
    if audio is None:
        raise InvalidInputError(field, audio, "is missing", _FIX)
    if hasattr(audio, "waveform") and hasattr(audio, "sample_rate"):  # a Clip
        return np.asarray(audio.waveform, dtype=np.float32), int(audio.sample_rate)
    if isinstance(audio, tuple):
        return _from_pair(audio, field)
    if isinstance(audio, np.ndarray):
        raise InvalidInputError(
            field,
            f"array of shape {audio.shape}",
            "has no sample rate",
            "pass (samples, sample_rate), e.g. (y, 16000)",
        )
    return _read_file(audio, field)


def _from_pair(pair: tuple, field: str) -> tuple[np.ndarray, int]:
    if len(pair) != 2:
        raise InvalidInputError(field, f"tuple of {len(pair)} items", "is not (samples, sample_rate)", _FIX)
    samples, rate = pair
    if isinstance(samples, (int, float)) and not isinstance(rate, (int, float)):
        samples, rate = rate, samples  # accept (sr, samples) as scipy.io.wavfile.read returns it
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or not 1000 <= int(rate) <= 384000:
        raise InvalidInputError(
            field,
            f"sample rate {rate!r}",
            "is not a sample rate in Hz",
            "pass (samples, sample_rate) with e.g. 16000",
        )
    wave = np.asarray(samples)
    if wave.dtype.kind not in "fiu" or wave.size == 0:
        raise InvalidInputError(
            field, f"array of {wave.dtype} {wave.shape}", "holds no audio samples", "pass numeric samples"
        )
    if wave.dtype.kind in "iu":  # PCM integers to [-1, 1]
        wave = wave.astype(np.float32) / float(np.iinfo(wave.dtype).max)
    return wave.astype(np.float32), int(rate)


def _read_file(audio: Any, field: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    shown = f"{len(audio)} bytes" if isinstance(audio, (bytes, bytearray)) else str(audio)[:60]
    path = None
    if isinstance(audio, (bytes, bytearray, memoryview)):
        data = bytes(audio)
    elif isinstance(audio, (str, os.PathLike)):
        path = Path(audio).expanduser()
        if not path.is_file():
            raise InvalidInputError(field, str(audio), "is not an existing file", _FIX)
        data = path.read_bytes()
    elif hasattr(audio, "read"):
        data = audio.read()
    else:
        raise InvalidInputError(field, audio, f"is a {type(audio).__name__}, not audio", _FIX)
    if not data:
        raise InvalidInputError(field, shown, "is empty (zero bytes)", "upload the file again; " + _FIX)
    try:
        wave, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return _read_with_librosa(path, shown, field)
    if wave.size == 0:
        raise InvalidInputError(field, shown, "holds no samples", "pass a clip with sound in it")
    return wave, int(rate)


def _read_with_librosa(path: Path | None, shown: str, field: str) -> tuple[np.ndarray, int]:
    """Formats libsndfile does not know (m4a, ...) through librosa's audioread fallback."""
    problem = "is corrupt or not an audio file soundfile/librosa can read"
    if path is None:
        raise InvalidInputError(field, shown, problem, _FIX)
    import librosa

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wave, rate = librosa.load(str(path), sr=None, mono=False)
    except Exception:  # noqa: BLE001 - any decoder failure means: not usable audio
        raise InvalidInputError(field, shown, problem, _FIX) from None
    if wave.size == 0:
        raise InvalidInputError(field, shown, "holds no samples", "pass a clip with sound in it")
    return wave.T, int(rate)


def _mono(wave: np.ndarray, field: str) -> np.ndarray:
    """Average channels; the channel axis is the short one of a 2-D array."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=1 if wave.shape[1] <= wave.shape[0] else 0)
    if wave.ndim != 1:
        raise InvalidInputError(
            field,
            f"array of shape {wave.shape}",
            "is not mono or stereo samples",
            "pass (samples,) or (samples, channels)",
        )
    return wave
