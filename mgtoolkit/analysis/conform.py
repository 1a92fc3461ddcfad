"""Make a clip obey a grid: an exact tempo, whole bars from a downbeat, a chosen key.

The steps, each a plain function on ``(y, sr)`` arrays:

1. :func:`measure_pulse` finds the tempo and the beat grid: the project's beat tracker
   (:func:`mgtoolkit.io.features.estimate_tempo`) gives the beats to within a hop (11.6 ms);
   each beat is then moved to the sharpest rise of energy near it (1 ms blocks) and a straight
   line through them gives the period and the phase.
2. :func:`stretch` changes the tempo (and the key) with Rubber Band, through ``pedalboard``
   (its wheels carry the library: no system package, no subprocess). Rubber Band's high-quality
   mode keeps the length exact but may place the beats a little off the asked ratio (about
   0.2 %), so the result is measured and the stretch made once more from the original with the
   ratio corrected.
3. The cut starts on the downbeat (the beat of the bar with the strongest accents) and is
   exactly ``bars * beats_per_bar * 60 / bpm`` seconds, to the sample. A loop's start takes
   in the audio that follows its end over 10 ms, so the end flows into the start.

:func:`conform` does it all on any audio (a clip, a file, an array with its rate);
:func:`mgtoolkit.generate` calls :func:`conform_clip` when given ``bpm``, ``bars`` or ``key``.
What is asked (:class:`Grid`, :class:`Key`, their checks) lives in :mod:`.grid`, re-exported here.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..io.features import PITCH_CLASSES, estimate_key, estimate_tempo
from ..types import Clip, GenerationRequest
from .grid import (
    KEY_FORMS,  # noqa: F401 - importable from here, as before the split
    MAX_BARS,
    MAX_BEATS_PER_BAR,
    MAX_BPM,
    MAX_STRETCH,
    MIN_BPM,
    MIN_STRETCH,
    Grid,
    Key,
    check_grid,
    generation_length,
    parse_key,
)

__all__ = [
    "Key",
    "Grid",
    "Pulse",
    "parse_key",
    "check_grid",
    "measure_pulse",
    "key_shift",
    "stretch",
    "conform",
    "conform_clip",
    "generation_length",
    "click_along",
    "MIN_BPM",
    "MAX_BPM",
    "MAX_BARS",
    "MAX_BEATS_PER_BAR",
    "MIN_STRETCH",
    "MAX_STRETCH",
]

_BLOCK_S = 0.001  # energy blocks of the fine onset curve
_SNAP_S = 0.06  # how far a tracked beat may move to the sharpest rise near it
_STEADY_S = 0.01  # beats further than this from the fitted grid are left out of a second fit
_MIN_STEADY = 4
_SEAM_S = 0.010  # a loop's start takes in what follows its end over this long
_TOLERANCE_BPM = 0.05  # below this the stretch is not made again
_HELD_BPM = 0.5  # a result further than this from the asked tempo is refused, never handed back


# ---------------------------------------------------------------------------------------------
# Measuring: the pulse, the key.


@dataclass(frozen=True, kw_only=True)
class Pulse:
    """A steady beat: ``bpm``, the period in seconds, beat times snapped to onsets, and a phase.

    ``first_beat_s`` is the grid's first beat at or after 0 s (``first_beat_s + k * period_s``).
    """

    bpm: float
    period_s: float
    first_beat_s: float
    beats: tuple[float, ...]

    def grid(self, duration_s: float) -> np.ndarray:
        """Every grid beat inside ``[0, duration_s)``."""
        return np.arange(self.first_beat_s, duration_s, self.period_s)


def measure_pulse(y: np.ndarray, sr: int) -> Pulse | None:
    """The tempo and beat grid of ``y``, or ``None`` when it has no clear pulse.

    Examples
    --------
    >>> from mgtoolkit.analysis.synth import click_track
    >>> round(measure_pulse(*click_track(bpm=97, seconds=8)).bpm, 1)
    97.0
    """
    tempo, beats = estimate_tempo(y, sr)
    if tempo is None:
        return None
    curve, block_s = _rise_curve(y, sr)
    period = 60.0 / tempo
    snapped = np.array([_sharpest_rise(curve, block_s, b, period) for b in beats])
    numbers = np.round((snapped - snapped[0]) / period)
    slope, intercept = np.polyfit(numbers, snapped, 1)
    # beats off the line (a snap to the wrong hit): fit again without them
    steady = np.abs(snapped - (intercept + slope * numbers)) < _STEADY_S
    if _MIN_STEADY <= steady.sum() < steady.size:
        slope, intercept = np.polyfit(numbers[steady], snapped[steady], 1)
    if slope <= 0:
        return None
    first = intercept - math.floor(intercept / slope) * slope
    return Pulse(
        bpm=float(60.0 / slope), period_s=float(slope), first_beat_s=float(first), beats=tuple(snapped)
    )


def _rise_curve(y: np.ndarray, sr: int) -> tuple[np.ndarray, float]:
    """Rise of the RMS level from one ~1 ms block to the next (falls count 0), and the block's seconds.

    Linear, not in dB: a hit's attack is the biggest jump, where a dB curve would also jump in
    the quiet between hits.
    """
    block = max(1, int(round(sr * _BLOCK_S)))
    count = y.shape[0] // block
    level = np.sqrt(np.mean(np.square(y[: count * block], dtype=np.float64).reshape(count, block), axis=1))
    return np.maximum(np.diff(level, prepend=level[:1]), 0.0), block / sr


def _sharpest_rise(curve: np.ndarray, block_s: float, beat_s: float, period_s: float) -> float:
    """Start (s) of the block with the sharpest rise within ``_SNAP_S`` (a sixth of a beat at most) of ``beat_s``."""
    reach = min(_SNAP_S, period_s / 6)
    lo = max(0, int((beat_s - reach) / block_s))
    hi = min(curve.shape[0], int((beat_s + reach) / block_s) + 1)
    if hi - lo < 2 or curve[lo:hi].max() <= 0:
        return float(beat_s)
    return (lo + int(np.argmax(curve[lo:hi]))) * block_s


def key_shift(found: tuple[str | None, str | None, float], target: Key) -> int:
    """Semitones (-6 to +5) that move the key ``found`` (:func:`estimate_key`) onto ``target``.

    Transposing cannot turn major into minor: between modes the shift takes the found key's
    relative (C major to A minor: 0; A major, i.e. F# minor, to A minor: +3).
    """
    tonic, mode, _ = found
    start = PITCH_CLASSES.index(tonic)
    if mode != target.mode:
        start += 9 if mode == "major" else 3  # the relative minor / major
    return (target.tonic - start + 6) % 12 - 6


# ---------------------------------------------------------------------------------------------
# Changing: stretch and shift, cut, loop.


def stretch(y: np.ndarray, sr: int, *, ratio: float, semitones: float = 0.0) -> np.ndarray:
    """``y`` made ``ratio`` times as long (Rubber Band, high quality) and ``semitones`` higher."""
    try:
        import pedalboard
    except ImportError:  # pragma: no cover - pedalboard is a dependency
        raise InvalidInputError(
            "bpm", "a tempo change", "needs the pedalboard package", "pip install pedalboard"
        ) from None
    if ratio == 1.0 and semitones == 0:
        return np.asarray(y, dtype=np.float32).copy()
    out = pedalboard.time_stretch(
        np.asarray(y, dtype=np.float32)[None, :],
        float(sr),
        stretch_factor=1.0 / ratio,
        pitch_shift_in_semitones=float(semitones),
    )
    return np.ascontiguousarray(out[0], dtype=np.float32)


def _on_tempo(
    y: np.ndarray, sr: int, bpm: float, measured: float, semitones: int
) -> tuple[np.ndarray, float, Pulse]:
    """``y`` stretched from ``measured`` to ``bpm``, measured and once corrected; with the ratio used."""
    ratio = measured / bpm
    out = stretch(y, sr, ratio=ratio, semitones=semitones)
    pulse = measure_pulse(out, sr)
    if pulse is not None and abs(_folded(pulse.bpm, bpm) - bpm) > _TOLERANCE_BPM:
        ratio *= _folded(pulse.bpm, bpm) / bpm
        out = stretch(y, sr, ratio=ratio, semitones=semitones)
        pulse = measure_pulse(out, sr)
    if pulse is None or abs(_folded(pulse.bpm, bpm) - bpm) > _HELD_BPM:
        found = "no pulse" if pulse is None else f"{_folded(pulse.bpm, bpm):.1f} BPM"
        raise InvalidInputError(
            "audio",
            f"stretched to {bpm:g} BPM",
            f"measures {found} afterwards: its beat is not steady enough to hold a tempo",
            "give audio with a steadier beat",
        )
    return out, ratio, pulse


def _folded(measured: float, bpm: float) -> float:
    """``measured`` halved or doubled towards ``bpm`` (trackers often hear half or double time)."""
    options = [measured / 2, measured, measured * 2]
    return min(options, key=lambda m: abs(math.log(m / bpm)))


def _downbeat(y: np.ndarray, sr: int, beats: np.ndarray, beats_per_bar: int) -> int:
    """Index (in ``beats``) of the first downbeat: the bar position with the most accent (lows weigh most)."""
    span = max(1, int(0.05 * sr))
    width = max(1, sr // 150)
    lows = np.convolve(y, np.ones(width) / width, mode="same")
    accents = []
    for t in beats:
        s = int(round(t * sr))
        accents.append(np.sum(np.square(y[s : s + span])) + 4 * np.sum(np.square(lows[s : s + span])))
    accents = np.asarray(accents)
    strength = [
        accents[j::beats_per_bar].mean() if accents[j::beats_per_bar].size else 0.0
        for j in range(beats_per_bar)
    ]
    return int(np.argmax(strength[: max(1, min(beats_per_bar, beats.size))]))


def _join_loop(cut: np.ndarray, tail: np.ndarray, sr: int) -> np.ndarray:
    """``cut`` whose first 10 ms fade in from ``tail`` (what followed its end): the wrap flows on."""
    n = min(int(_SEAM_S * sr), tail.shape[0], cut.shape[0] // 4)
    if n < 2:
        return cut
    fade = np.sin(0.5 * np.pi * np.arange(n) / n) ** 2
    out = cut.copy()
    out[:n] = tail[:n] * (1.0 - fade) + cut[:n] * fade
    return out


# ---------------------------------------------------------------------------------------------
# All of it.


def conform(
    audio: Any,
    *,
    bpm: float | None = None,
    bars: int | None = None,
    beats_per_bar: int = 4,
    key: str | None = None,
    loop: bool = False,
) -> Clip:
    """Make any audio obey a grid: exactly ``bpm``, ``bars`` whole bars from a downbeat, in ``key``.

    Parameters
    ----------
    audio : str, Path, (numpy.ndarray, int) or Clip
        The sound, as :func:`mgtoolkit.restyle` takes it; a clip keeps its provenance.
    bpm : float, optional
        Tempo to stretch to, 40 to 240. ``None`` keeps the tempo (only ``key`` applies).
    bars : int, optional
        Whole bars to cut, 1 to 64, from the first downbeat; ``None`` keeps every whole bar.
    beats_per_bar : int
        1 to 12.
    key : str, optional
        ``"A minor"``, ``"Am"``, ``"F#"``, ``"Gb major"``: shift by the smallest interval from the
        key found. ``None`` keeps the pitch.
    loop : bool
        Mark the bars as a loop (``clip.save()`` writes loop points on the bar lines); its start
        takes in what follows its end over 10 ms, so the end flows into the start.

    Returns
    -------
    Clip
        ``clip.extra["conform"]`` records the tempo and key before and after, the stretch ratio,
        the shift in semitones and the cut points (seconds and samples of the stretched audio).

    Raises
    ------
    InvalidInputError
        One line naming the field: ``bpm``, ``bars``, ``beats_per_bar`` out of range, an unknown
        ``key``, audio with no clear pulse, a stretch outside 0.7 to 1.4, too little audio for the bars.

    Examples
    --------
    >>> from mgtoolkit.analysis.synth import drum_pattern
    >>> clip = conform(drum_pattern(bpm=100, seconds=12), bpm=97, bars=2)
    >>> clip.waveform.shape[0] == round(2 * 4 * 60 / 97 * clip.sample_rate)
    True
    """
    grid = check_grid(bpm=bpm, bars=bars, beats_per_bar=beats_per_bar, key=key, loop=loop)
    if grid is None:
        raise InvalidInputError("bpm", None, "nothing to conform to", "pass bpm=, bars= or key=")
    return conform_clip(_as_clip(audio), grid)


def conform_clip(clip: Clip, grid: Grid) -> Clip:
    """:func:`conform` for a clip and a checked :class:`Grid`."""
    y, sr = np.asarray(clip.waveform, dtype=np.float32), int(clip.sample_rate)
    # 1. Measure: the pulse (needed for a tempo) and the key (needed for a shift).
    before = measure_pulse(y, sr)
    if grid.bpm is not None and before is None:
        raise InvalidInputError(
            "audio",
            f"{y.shape[0] / sr:.1f} s of audio",
            "has no clear pulse, so no tempo to stretch from",
            "give audio with a steady beat, or leave bpm unset",
        )
    key_before = estimate_key(y, sr)
    semitones = _semitones(key_before, grid.key)
    # 2. Stretch to the tempo (and shift to the key) in one pass.
    record: dict[str, Any] = {
        "bpm_before": _round(before.bpm if before else None),
        "key_before": _key_record(key_before),
    }
    if grid.bpm is None:
        out, ratio, pulse = stretch(y, sr, ratio=1.0, semitones=semitones), 1.0, None
    else:
        measured = _heard(before.bpm, grid.bpm)
        out, ratio, pulse = _on_tempo(y, sr, grid.bpm, measured, semitones)
    # 3. Cut whole bars from the first downbeat.
    start, end = _cut_points(out, sr, grid, pulse)
    wave = out[start:end]
    if grid.loop and grid.bpm is not None:
        wave = _join_loop(wave, out[end:], sr)
    # 4. Measure again and record it all.
    tempo_after, _ = estimate_tempo(wave, sr) if wave.shape[0] >= sr else (None, None)
    record.update(
        bpm=grid.bpm,
        bars=(end - start) / sr / grid.bar_s if grid.bpm and grid.bars is None else grid.bars,
        beats_per_bar=grid.beats_per_bar,
        key=grid.key.name if grid.key else None,
        bpm_after=_round(None if tempo_after is None else _folded(tempo_after, grid.bpm or tempo_after)),
        key_after=_key_record(estimate_key(wave, sr)) if grid.key else None,
        stretch_ratio=round(ratio, 6),
        semitones=semitones,
        cut_start_sample=start,
        cut_end_sample=end,
        cut_start_s=round(start / sr, 6),
        cut_end_s=round(end / sr, 6),
        stretcher=f"Rubber Band (pedalboard {_pedalboard_version()})",
        label=grid.label(),
    )
    extra = {"conform": record}
    if grid.loop:
        extra["loop"] = {"start_sample": 0, "end_sample": int(wave.shape[0])}
    return dataclasses.replace(clip, waveform=np.ascontiguousarray(wave), extra={**clip.extra, **extra})


def click_along(clip: Clip, *, level: float = 0.5) -> Clip:
    """``clip`` with a metronome mixed in at its conformed tempo (downbeats higher), to hear it line up.

    Examples
    --------
    >>> from mgtoolkit.analysis.synth import drum_pattern
    >>> clicked = click_along(conform(drum_pattern(bpm=100, seconds=12), bpm=100, bars=2))
    >>> clicked.extra["click_along"]
    0.5
    """
    from .synth import click_track

    record = clip.extra.get("conform") or {}
    if not record.get("bpm"):
        raise InvalidInputError(
            "clip",
            clip.prompt,
            "has no conformed tempo to click along to",
            "conform it first: mg.conform(clip, bpm=...)",
        )
    y = np.asarray(clip.waveform, dtype=np.float32)
    clicks, _ = click_track(
        bpm=record["bpm"],
        seconds=y.shape[0] / clip.sample_rate,
        sr=clip.sample_rate,
        beats_per_bar=record["beats_per_bar"],
    )
    mixed = y + level * clicks[: y.shape[0]]
    peak = float(np.max(np.abs(mixed)))
    mixed = mixed / peak if peak > 1.0 else mixed
    return dataclasses.replace(
        clip, waveform=mixed.astype(np.float32), extra={**clip.extra, "click_along": level}
    )


def _semitones(found: tuple[str | None, str | None, float], target: Key | None) -> int:
    if target is None:
        return 0
    if found[0] is None:
        raise InvalidInputError(
            "key",
            target.name,
            "cannot be set: the audio has no clear key (no pitched notes found)",
            "leave key unset for drums and noise",
        )
    return key_shift(found, target)


def _heard(measured: float, bpm: float) -> float:
    """The tempo to stretch from: ``measured``, or its half or double when that is within 10 % of
    ``bpm`` (a tracker often hears half or double time); refused beyond a sane stretch."""
    ratio = measured / bpm
    if not MIN_STRETCH <= ratio <= MAX_STRETCH:
        folded = _folded(measured, bpm)
        if abs(math.log(folded / bpm)) > math.log(1.1):
            _refuse_ratio(ratio, measured, bpm)
        measured = folded
    return measured


def _refuse_ratio(ratio: float, measured: float, bpm: float) -> None:
    raise InvalidInputError(
        "bpm",
        bpm,
        f"would stretch the audio {ratio:.2f} times (it is at {measured:.1f} BPM); "
        f"the stretch must stay within {MIN_STRETCH:g} to {MAX_STRETCH:g}",
        f"ask a tempo from {measured / MAX_STRETCH:.0f} to {measured / MIN_STRETCH:.0f} BPM",
    )


def _cut_points(out: np.ndarray, sr: int, grid: Grid, pulse: Pulse | None) -> tuple[int, int]:
    """Samples ``(start, end)``: from the first downbeat, whole bars, exactly, to the sample."""
    if grid.bpm is None:
        return 0, out.shape[0]
    beats = pulse.grid(out.shape[0] / sr)
    first = beats[_downbeat(out, sr, beats, grid.beats_per_bar)]
    start = int(round(first * sr))
    bar = grid.bar_s * sr
    bars = grid.bars if grid.bars is not None else int((out.shape[0] - start) // bar)
    length = int(round(bars * bar))
    if bars < 1 or start + length > out.shape[0]:
        have = (out.shape[0] - start) / sr
        raise InvalidInputError(
            "bars",
            grid.bars,
            f"need {max(bars, 1) * grid.bar_s:.2f} s after the first downbeat, but the audio has {have:.2f} s "
            f"at {grid.bpm:g} BPM",
            "ask fewer bars or give longer audio",
        )
    return start, start + length


def _as_clip(audio: Any) -> Clip:
    """A :class:`Clip` from any accepted audio, at its own rate (mono)."""
    from ..io.audio import load_audio

    if isinstance(audio, Clip):
        return audio
    rate = _native_rate(audio)
    y = load_audio(audio, rate, min_s=1.0)
    name = os.path.splitext(os.path.basename(os.fspath(audio)))[0] if _is_path(audio) else "audio"
    return Clip(
        waveform=y,
        sample_rate=rate,
        seed=0,
        request=GenerationRequest(prompt=name, audio_length_in_s=round(y.shape[0] / rate, 6)),
        extra={"source": os.fspath(audio) if _is_path(audio) else "array"},
    )


def _is_path(audio: Any) -> bool:
    return isinstance(audio, (str, os.PathLike))


def _native_rate(audio: Any) -> int:
    if isinstance(audio, tuple) and len(audio) == 2 and isinstance(audio[1], (int, np.integer)):
        return int(audio[1])
    if _is_path(audio) and os.path.isfile(audio):
        import soundfile as sf

        try:
            return int(sf.info(os.fspath(audio)).samplerate)
        except (RuntimeError, sf.LibsndfileError):
            pass
    return 44100


def _key_record(found: tuple[str | None, str | None, float]) -> dict[str, Any] | None:
    tonic, mode, strength = found
    return None if tonic is None else {"key": f"{tonic} {mode}", "confidence": round(float(strength), 3)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def _pedalboard_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pedalboard")
    except PackageNotFoundError:  # pragma: no cover
        return "?"
