"""Signals with known answers: click tracks, drum patterns, chord progressions and melodies.

The tests of :mod:`mgtoolkit.analysis.conform` and :mod:`mgtoolkit.io.midi` measure what comes
out of these against what went in; :func:`example_loop` is the notebook's groove to conform.
Each returns ``(y, sr)`` (mono float32); the melody also returns its notes.
"""

from __future__ import annotations

import numpy as np

__all__ = ["click_track", "drum_pattern", "chord_progression", "melody", "example_loop", "midi_to_hz"]

SR = 22050


def midi_to_hz(pitch: float) -> float:
    """Equal temperament, A4 (MIDI 69) at 440 Hz."""
    return 440.0 * 2.0 ** ((pitch - 69) / 12)


def _hits(seconds: float, sr: int, period_s: float, offset_s: float = 0.0) -> list[int]:
    return [
        int(round((offset_s + k * period_s) * sr)) for k in range(int((seconds - offset_s) / period_s) + 1)
    ]


def _add(y: np.ndarray, at: int, sound: np.ndarray) -> None:
    end = min(y.shape[0], at + sound.shape[0])
    if at < end:
        y[at:end] += sound[: end - at]


def _click(sr: int, freq: float, level: float) -> np.ndarray:
    t = np.arange(int(0.03 * sr)) / sr
    return (level * np.sin(2 * np.pi * freq * t) * np.exp(-t / 0.005)).astype(np.float32)


def click_track(
    *, bpm: float, seconds: float, sr: int = SR, beats_per_bar: int = 4
) -> tuple[np.ndarray, int]:
    """A metronome: a 1.5 kHz click on every downbeat, 1 kHz on the other beats, each 30 ms."""
    y = np.zeros(int(seconds * sr), np.float32)
    for k, at in enumerate(_hits(seconds, sr, 60.0 / bpm)):
        down = k % beats_per_bar == 0
        _add(y, at, _click(sr, 1500.0 if down else 1000.0, 0.8 if down else 0.5))
    return y, sr


def _kick(sr: int) -> np.ndarray:
    t = np.arange(int(0.25 * sr)) / sr
    sweep = 2 * np.pi * (50 * t + 60 * 0.03 * (1 - np.exp(-t / 0.03)))  # 110 Hz falling to 50 Hz
    return (0.9 * np.sin(sweep) * np.exp(-t / 0.08)).astype(np.float32)


def _noise_hit(sr: int, seconds: float, decay: float, level: float, seed: int) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    noise = np.random.default_rng(seed).standard_normal(t.shape[0])
    return (level * noise * np.exp(-t / decay)).astype(np.float32)


def drum_pattern(*, bpm: float, seconds: float, sr: int = SR) -> tuple[np.ndarray, int]:
    """Four on the floor: kick on beats 1 and 3, snare on 2 and 4, closed hi-hat on every eighth."""
    beat = 60.0 / bpm
    y = np.zeros(int(seconds * sr), np.float32)
    for at in _hits(seconds, sr, 2 * beat):
        _add(y, at, _kick(sr))
    for at in _hits(seconds, sr, 2 * beat, beat):
        _add(y, at, _noise_hit(sr, 0.15, 0.04, 0.35, 1))
    hat = np.diff(_noise_hit(sr, 0.05, 0.01, 0.25, 2), prepend=0.0).astype(np.float32)  # bright
    for at in _hits(seconds, sr, beat / 2):
        _add(y, at, hat)
    return y, sr


def _tone(sr: int, freq: float, seconds: float, level: float) -> np.ndarray:
    """Additive tone: 4 harmonics falling 1/k, 10 ms attack, 30 ms release."""
    t = np.arange(int(seconds * sr)) / sr
    wave = sum(np.sin(2 * np.pi * k * freq * t) / k for k in range(1, 5) if k * freq < sr / 2)
    envelope = np.minimum(1.0, np.minimum(t / 0.01, (seconds - t) / 0.03).clip(0))
    return (level * wave * envelope).astype(np.float32)


_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)


def chord_progression(
    *, tonic: int, mode: str, bpm: float, bars: int, sr: int = SR, degrees: tuple[int, ...] | None = None
) -> tuple[np.ndarray, int]:
    """Triads on the scale ``degrees`` (0 = I), one a bar in 4/4, around middle C, with the root as bass.

    ``None``: I-IV-V-I in major, i-iv-VI-i in minor (a minor v would make it sound like its relative major).
    """
    scale = _MAJOR if mode == "major" else _MINOR
    degrees = degrees or ((0, 3, 4, 0) if mode == "major" else (0, 3, 5, 0))
    bar = 4 * 60.0 / bpm
    y = np.zeros(int(bars * bar * sr), np.float32)
    for b in range(bars):
        d = degrees[b % len(degrees)]
        root = 60 + tonic
        chord = [root + scale[(d + s) % 7] + 12 * ((d + s) // 7) for s in (0, 2, 4)]
        at = int(round(b * bar * sr))
        for pitch in chord:
            _add(y, at, _tone(sr, midi_to_hz(pitch), bar, 0.15))
        _add(y, at, _tone(sr, midi_to_hz(chord[0] - 24), bar, 0.2))
    return y, sr


def melody(
    pitches: tuple[int, ...], *, note_s: float = 0.4, gap_s: float = 0.1, sr: int = SR
) -> tuple[np.ndarray, int, list[tuple[float, float, int]]]:
    """One additive tone per pitch (MIDI numbers), ``note_s`` long, ``gap_s`` apart; with its notes."""
    step = note_s + gap_s
    y = np.zeros(int((len(pitches) * step + 0.5) * sr), np.float32)
    notes = []
    for k, pitch in enumerate(pitches):
        start = 0.25 + k * step
        _add(y, int(round(start * sr)), _tone(sr, midi_to_hz(pitch), note_s, 0.3))
        notes.append((start, start + note_s, int(pitch)))
    return y, sr, notes


def example_loop(*, bpm: float = 104.0, bars: int = 6, sr: int = SR) -> tuple[np.ndarray, int]:
    """A groove to conform: drums, and chords i-iv-VI-i in G minor, ``bars`` bars at ``bpm``."""
    seconds = bars * 4 * 60.0 / bpm
    drums, _ = drum_pattern(bpm=bpm, seconds=seconds, sr=sr)
    chords, _ = chord_progression(tonic=7, mode="minor", bpm=bpm, bars=bars, sr=sr)
    n = min(drums.shape[0], chords.shape[0])
    return (0.7 * drums[:n] + chords[:n]).astype(np.float32), sr
