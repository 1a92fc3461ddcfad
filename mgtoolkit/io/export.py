"""Export that fits a DAW: WAV, FLAC, OGG or MP3, at the session's rate, at a chosen loudness.

:func:`export_clip` resamples with soxr (very high quality), optionally normalises the integrated
loudness (ITU-R BS.1770-4, pyloudnorm) while keeping the true peak at or below -1 dBTP, writes
the file and its JSON sidecar atomically (both or neither, never overwriting), and puts tempo, key,
prompt and seed in the sidecar and in the file's tags (RIFF INFO for WAV, Vorbis comments for
FLAC/OGG, ID3 for MP3). The default ``Clip.save()`` (16-bit WAV at the model's rate) stays
:func:`mgtoolkit.io.audio.save_clip`.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..config import VERSION
from ..errors import InvalidInputError
from . import features
from .audio import (
    SILENCE_PEAK,
    SavableClip,
    default_stem,
    ensure_writable_dir,
    free_stem,
    safe_stem,
    write_atomic,
)

__all__ = [
    "FORMATS",
    "MP3_RATES",
    "TRUE_PEAK_CEILING",
    "MAX_EXPORT_S",
    "check_export",
    "prepare_waveform",
    "export_clip",
]

FORMATS: dict[str, tuple[str, str]] = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_24"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
"""Format name -> (libsndfile format, subtype)."""
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
"""The rates MPEG audio can hold."""
TRUE_PEAK_CEILING = -1.0
"""dBTP the loudness normalisation never goes above (the streaming services' ceiling)."""
LOUDNESS_RANGE = (-40.0, -5.0)
MAX_EXPORT_S = 1800.0
"""Longest clip exported (30 minutes)."""
_MIN_LOUDNESS_S = 0.4  # one BS.1770 gating block


def check_export(format: Any, sample_rate: Any, loudness: Any) -> tuple[str, int | None, float | None]:
    """The export options checked and tidied, or a one-line error naming the bad one.

    Examples
    --------
    >>> check_export("MP3", 44100, -14)
    ('mp3', 44100, -14.0)
    >>> check_export("aiff", None, None)
    Traceback (most recent call last):
    ...
    mgtoolkit.errors.InvalidInputError: format='aiff': is not a format mgtoolkit exports; use one of wav, flac, ogg, mp3.
    """
    fmt = format.strip().lower().lstrip(".") if isinstance(format, str) else format
    if fmt not in FORMATS:
        raise InvalidInputError(
            "format", format, "is not a format mgtoolkit exports", f"use one of {', '.join(FORMATS)}"
        )
    rate = None if sample_rate is None else _check_rate(sample_rate, fmt)
    level = None if loudness is None else _check_loudness(loudness)
    return fmt, rate, level


def _check_rate(sample_rate: Any, fmt: str) -> int:
    fix = "pass e.g. 44100 or 48000"
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Integral):
        raise InvalidInputError("sample_rate", sample_rate, "is not a whole number of Hz", fix)
    if not 8000 <= int(sample_rate) <= 192000:
        raise InvalidInputError("sample_rate", sample_rate, "must be between 8000 and 192000 Hz", fix)
    if fmt == "mp3" and int(sample_rate) not in MP3_RATES:
        raise InvalidInputError(
            "sample_rate",
            sample_rate,
            "is not a rate MP3 can hold",
            f"use one of {', '.join(map(str, MP3_RATES))}",
        )
    return int(sample_rate)


def _check_loudness(loudness: Any) -> float:
    low, high = LOUDNESS_RANGE
    fix = "pass LUFS such as -14.0 (streaming) or -23.0 (broadcast), or None to keep the level"
    if isinstance(loudness, bool) or not isinstance(loudness, numbers.Real) or not math.isfinite(loudness):
        raise InvalidInputError("loudness", loudness, "is not a finite number of LUFS", fix)
    if not low <= float(loudness) <= high:
        raise InvalidInputError("loudness", loudness, f"must be between {low:g} and {high:g} LUFS", fix)
    return float(loudness)


def _check_waveform(waveform: np.ndarray, sample_rate: int, loudness: float | None) -> np.ndarray:
    seconds = np.size(waveform) / sample_rate
    if seconds > MAX_EXPORT_S:  # before any copy is made
        raise InvalidInputError(
            "waveform", f"{seconds:.1f} s", f"is longer than {MAX_EXPORT_S:g} s", "export it in parts"
        )
    wave = np.asarray(waveform, dtype=np.float64).reshape(-1)
    if wave.size == 0:
        raise InvalidInputError("waveform", "0 samples", "is empty", "export a clip with sound in it")
    if not np.isfinite(wave).all():
        raise InvalidInputError(
            "waveform", "samples with NaN/inf", "has non-finite samples", "pass finite samples"
        )
    if loudness is not None and float(np.max(np.abs(wave))) < SILENCE_PEAK:
        raise InvalidInputError(
            "waveform",
            f"{seconds:.2f} s of silence",
            "is silent, so it has no loudness to set",
            "pass loudness=None",
        )
    if loudness is not None and seconds < _MIN_LOUDNESS_S:
        raise InvalidInputError(
            "waveform",
            f"{seconds * 1000:.0f} ms",
            f"is shorter than the {_MIN_LOUDNESS_S:g} s a loudness measurement needs",
            "pass loudness=None or a longer clip",
        )
    return wave


def prepare_waveform(
    waveform: np.ndarray, rate: int, *, sample_rate: int | None = None, loudness: float | None = None
) -> tuple[np.ndarray, int, dict[str, Any]]:
    """Resample and loudness-normalise; returns (float64 samples in [-1, 1], rate, what was done).

    The gain that reaches ``loudness`` is lowered if it would push the true peak above
    :data:`TRUE_PEAK_CEILING` (no limiter: the sound is not changed, only quieter than asked;
    ``"peak_limited": True`` says so).
    """
    wave = _check_waveform(waveform, rate, loudness)
    done: dict[str, Any] = {"source_sample_rate": int(rate)}
    if sample_rate is not None and sample_rate != rate:
        import soxr

        wave = soxr.resample(wave, rate, sample_rate, quality="VHQ")
        done["resampler"] = "soxr VHQ"
        rate = sample_rate
    # Measured once: a plain gain moves loudness and true peak by exactly its dB.
    level = features.integrated_loudness(wave, rate)
    peak = features.true_peak_dbfs(np.clip(wave, -1.0, 1.0), rate)
    if loudness is not None:
        if level is None:
            raise InvalidInputError(
                "waveform", "too quiet", "has no block above the loudness gate", "pass loudness=None"
            )
        gain_db = loudness - level
        limited = gain_db > TRUE_PEAK_CEILING - peak
        gain_db = min(gain_db, TRUE_PEAK_CEILING - peak)
        wave = wave * 10.0 ** (gain_db / 20.0)
        done.update(target_lufs=loudness, input_lufs=round(level, 2), gain_db=round(gain_db, 2))
        done["peak_limited"] = bool(limited)
        level, peak = level + gain_db, peak + gain_db
    done["loudness_lufs"] = _round(level)
    done["true_peak_dbtp"] = _round(peak)
    return np.clip(wave, -1.0, 1.0), rate, done


def _round(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 2)


def _musical_facts(wave: np.ndarray, rate: int) -> dict[str, Any]:
    """Tempo and key for the sidecar and tags (``None`` where the clip has none)."""
    tempo, _ = features.estimate_tempo(wave, rate)
    key, mode, strength = features.estimate_key(wave, rate)
    return {
        "tempo_bpm": None if tempo is None else round(tempo, 2),
        "key": f"{key} {mode}" if key else None,
        "key_strength": round(strength, 3),
    }


def _tags(clip: SavableClip, facts: dict[str, Any], fmt: str) -> dict[str, str]:
    notes = [f"seed {clip.seed}"]
    notes += [f"tempo {facts['tempo_bpm']:g} BPM"] if facts["tempo_bpm"] else []
    notes += [f"key {facts['key']}"] if facts["key"] else []
    title = " ".join(clip.prompt.split())[:200]
    if fmt == "wav":  # RIFF INFO strings are ASCII
        title = title.encode("ascii", "ignore").decode()
    return {
        "title": title or "mgtoolkit clip",
        "comment": "; ".join(notes),
        "software": f"mgtoolkit {VERSION}",
    }


def _write_audio(path: Path, wave: np.ndarray, rate: int, fmt: str, tags: dict[str, str]) -> None:
    import soundfile as sf

    container, subtype = FORMATS[fmt]
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=1, format=container, subtype=subtype) as f:
        for key, value in tags.items():
            setattr(f, key, value)
        f.write(wave.astype(np.float32))


def export_clip(
    clip: SavableClip,
    out_dir: str | os.PathLike = "outputs",
    *,
    name: str | None = None,
    format: str = "wav",
    sample_rate: int | None = None,
    loudness: float | None = None,
) -> Path:
    """Write ``clip`` as ``<stem>.<format>`` plus ``<stem>.json``; return the audio path.

    Parameters
    ----------
    clip : Clip
        The clip.
    out_dir : str or Path
        Folder (created if missing).
    name : str, optional
        File stem; defaults to the prompt and seed. ``-1``, ``-2``, ... is appended if taken.
    format : {"wav", "flac", "ogg", "mp3"}
        16-bit WAV, 24-bit FLAC, Ogg Vorbis or MP3.
    sample_rate : int, optional
        Resample to this rate (``None`` keeps the clip's).
    loudness : float, optional
        Integrated loudness to reach in LUFS, true peak kept at or below -1 dBTP.

    Raises
    ------
    InvalidInputError
        For an unknown format, a bad rate or loudness, NaNs, a clip too long, or a loudness asked
        of silence or of less than 0.4 s; nothing is written.

    Examples
    --------
    >>> import tempfile, soundfile as sf
    >>> from mgtoolkit import Clip, GenerationRequest
    >>> tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    >>> clip = Clip(waveform=tone.astype(np.float32), sample_rate=16000, seed=1,
    ...             request=GenerationRequest(prompt="a tone"))
    >>> path = export_clip(clip, tempfile.mkdtemp(), format="flac", sample_rate=44100)
    >>> sf.info(str(path)).samplerate, path.suffix
    (44100, '.flac')
    """
    # 1. Check every option and the samples before writing anything.
    fmt, rate, level = check_export(format, sample_rate, loudness)
    wave, rate, done = prepare_waveform(clip.waveform, clip.sample_rate, sample_rate=rate, loudness=level)
    folder = ensure_writable_dir(out_dir)
    # 2. What goes into the sidecar and the tags.
    facts = _musical_facts(np.asarray(clip.waveform, dtype=np.float32), clip.sample_rate)  # the source
    metadata = clip.metadata()
    metadata.update(facts)
    container, subtype = FORMATS[fmt]
    metadata["export"] = {"format": fmt, "subtype": subtype, "sample_rate": rate, **done}
    tags = _tags(clip, facts, fmt)
    # 3. Audio, then sidecar, each through a temporary file; both or neither.
    base = safe_stem(name) if name else default_stem(clip)
    for _ in range(100):
        stem = free_stem(folder, base, (f".{fmt}", ".json"))
        audio_path, sidecar = folder / f"{stem}.{fmt}", folder / f"{stem}.json"
        try:
            write_atomic(audio_path, lambda tmp: _write_audio(tmp, wave, rate, fmt, tags))
        except FileExistsError:
            continue
        try:
            metadata["file"] = audio_path.name
            text = json.dumps(metadata, indent=2, ensure_ascii=False, default=_jsonable) + "\n"
            write_atomic(sidecar, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
        except BaseException:
            audio_path.unlink(missing_ok=True)
            raise
        return audio_path
    raise FileExistsError(f"could not find a free file name for {base!r} in {folder}")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj) if isinstance(obj, Path) else repr(obj)
