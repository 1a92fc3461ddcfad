"""What a waveform measures: tempo and beats, key and mode, loudness and peaks.

Plain functions on ``(y, sr)`` numpy arrays, with librosa, pyloudnorm and soxr imported inside
them. They sit low (with the other audio in/out code) because both the export
(:mod:`mgtoolkit.io.export`: loudness, tags) and the description
(:mod:`mgtoolkit.analysis.describe`) use them.

Examples
--------
>>> sr = 22050
>>> y = np.zeros(8 * sr, np.float32)
>>> for k in range(16):  # a click every 0.5 s: 120 BPM
...     y[int(k * 0.5 * sr) : int(k * 0.5 * sr) + 200] = 0.5
>>> round(estimate_tempo(y, sr)[0])
120
"""

from __future__ import annotations

import math
import warnings

import numpy as np

__all__ = [
    "estimate_tempo",
    "estimate_key",
    "integrated_loudness",
    "peak_dbfs",
    "true_peak_dbfs",
    "PITCH_CLASSES",
]

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_HOP = 256
_MIN_BEATS = 4
_MIN_PULSE_DB = 1.0  # onset strength is a mean rise of log-mel bands in dB
_MIN_PULSE_RATIO = 1.5
_OVERSAMPLE = 4
_ANALYSIS_RATE = 22050
_MIN_CHROMA_CONTRAST = 0.25  # white noise: ~0.1; a held triad: ~0.99

# Krumhansl & Kessler (1982) probe-tone ratings, tonic first.
_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def estimate_tempo(y: np.ndarray, sr: int) -> tuple[float | None, np.ndarray]:
    """Tempo in BPM and beat times in seconds.

    librosa's beat tracker finds the beats; the tempo is the slope of a straight line through
    them (beat time against beat number), which is not tied to the tracker's tempo grid: a click
    track at 128 BPM reads 128.x, not 129.2.

    Returns
    -------
    (float or None, numpy.ndarray)
        ``(None, [])`` when there is no clear pulse: fewer than 4 beats, or beats that stand out
        too little from the onsets between them (a held chord, steady noise).
    """
    import librosa

    y, sr = _at_most(y, sr, _ANALYSIS_RATE)
    envelope = librosa.onset.onset_strength(y=y, sr=sr, hop_length=_HOP)
    _, frames = librosa.beat.beat_track(onset_envelope=envelope, sr=sr, hop_length=_HOP)
    frames = np.asarray(frames, dtype=int)
    frames = frames[frames < envelope.shape[0]]
    if frames.size < _MIN_BEATS or not _clear_pulse(envelope, frames):
        return None, np.zeros(0)
    beats = _trim_edges(librosa.frames_to_time(frames, sr=sr, hop_length=_HOP))
    slope = np.polyfit(np.arange(beats.size), beats, 1)[0]
    return (float(60.0 / slope) if slope > 0 else None), beats


def _at_most(y: np.ndarray, sr: int, rate: int) -> tuple[np.ndarray, int]:
    """``y`` resampled down to ``rate`` if faster (beats and pitch classes live far below 11 kHz)."""
    if sr <= rate:
        return y, sr
    import soxr

    return soxr.resample(np.asarray(y, dtype=np.float32), sr, rate, quality="HQ"), rate


def _trim_edges(beats: np.ndarray) -> np.ndarray:
    """Drop first/last beats more than 10 % off the median interval (the tracker's edge guesses)."""
    period = float(np.median(np.diff(beats)))
    while beats.size > _MIN_BEATS and abs(beats[1] - beats[0] - period) > 0.1 * period:
        beats = beats[1:]
    while beats.size > _MIN_BEATS and abs(beats[-1] - beats[-2] - period) > 0.1 * period:
        beats = beats[:-1]
    return beats


def _clear_pulse(envelope: np.ndarray, frames: np.ndarray) -> bool:
    """Beats whose onsets average at least 1 dB of rise and 1.5 times the clip's mean onset."""
    at_beats = float(envelope[frames].mean())
    return at_beats >= _MIN_PULSE_DB and at_beats >= _MIN_PULSE_RATIO * float(envelope.mean())


def estimate_key(y: np.ndarray, sr: int) -> tuple[str | None, str | None, float]:
    """Key and mode: the clip's mean constant-Q chroma against the 24 rotated Krumhansl-Kessler profiles.

    Returns
    -------
    (str or None, str or None, float)
        Tonic, ``"major"``/``"minor"``, and the winning correlation; ``(None, None, 0.0)`` when
        the mean chroma is nearly flat (its weakest pitch class within 25 % of its strongest:
        noise, clicks, silence).
    """
    import librosa

    y, sr = _at_most(y, sr, _ANALYSIS_RATE)
    with warnings.catch_warnings():  # the CQT's lowest octaves warn on clips under ~2 s
        warnings.simplefilter("ignore", UserWarning)
        chroma = librosa.feature.chroma_cqt(y=y, sr=sr, hop_length=512).mean(axis=1)
    if not np.isfinite(chroma).all() or np.ptp(chroma) < _MIN_CHROMA_CONTRAST * max(
        float(chroma.max()), 1e-9
    ):
        return None, None, 0.0  # every pitch class about as strong: noise, clicks, no tonal centre
    best = (-2.0, 0, "major")
    for mode, profile in (("major", _MAJOR_PROFILE), ("minor", _MINOR_PROFILE)):
        for tonic in range(12):
            r = float(np.corrcoef(chroma, np.roll(profile, tonic))[0, 1])
            best = max(best, (r, tonic, mode), key=lambda b: b[0])
    strength, tonic, mode = best
    return PITCH_CLASSES[tonic], mode, strength


def integrated_loudness(y: np.ndarray, sr: int) -> float | None:
    """Integrated loudness in LUFS (pyloudnorm, ITU-R BS.1770-4); ``None`` if all of it is gated out.

    Examples
    --------
    >>> sr = 16000
    >>> sine = 0.1 * np.sin(2 * np.pi * 1000 * np.arange(3 * sr) / sr)
    >>> round(integrated_loudness(sine, sr))  # a 1 kHz sine at -20 dBFS peak reads -23 LUFS
    -23
    """
    import pyloudnorm

    y = np.asarray(y, dtype=np.float64)
    if y.shape[0] < int(0.4 * sr):
        return None
    value = float(pyloudnorm.Meter(sr).integrated_loudness(y))
    return value if math.isfinite(value) else None


def peak_dbfs(y: np.ndarray) -> float:
    """Highest sample level in dBFS (``-inf`` for digital silence)."""
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


def true_peak_dbfs(y: np.ndarray, sr: int) -> float:
    """Estimated true peak in dBTP: the peak of the signal oversampled 4x (ITU-R BS.1770-4, annex 2).

    Inter-sample peaks of a sine near a quarter of the rate sit up to 3 dB above its samples;
    a converter or an MP3 decoder will reach them.
    """
    import soxr

    y = np.asarray(y, dtype=np.float64)
    if y.size == 0:
        return -math.inf
    up = soxr.resample(y, sr, sr * _OVERSAMPLE, quality="VHQ") if y.size > 1 else y
    return peak_dbfs(np.concatenate([y, up]))
