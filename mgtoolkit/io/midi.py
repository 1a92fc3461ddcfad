"""Notes as MIDI: polyphonic transcription with Basic Pitch's model, and standard MIDI files.

The transcriber is Spotify's Basic Pitch (ICASSP 2022): a 230 KB ONNX model that ships inside
the ``basic-pitch`` wheel (``basic_pitch/saved_models/icassp_2022/nmp.onnx``). The package's
own inference needs TensorFlow on Linux with Python 3.11, so mgtoolkit never imports it: it
reads the model file with ``onnxruntime`` and turns the model's note and onset maps into notes
here (plain numpy). Install with ``pip install "mgtoolkit[midi]"`` and then
``pip install --no-deps basic-pitch==0.4.0`` (``make install`` does both); the model is data,
read from the installed package's folder without importing it.

MIDI files are written with ``mido``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError, ModelUnavailableError

__all__ = ["Note", "Notes", "transcribe", "write_midi", "model_path", "MIDI_EXTRA"]

MIDI_EXTRA = 'transcribing needs the midi extra: pip install "mgtoolkit[midi]" && pip install --no-deps basic-pitch==0.4.0'
_RATE = 22050  # the model's input rate
_HOP = 256  # samples per output frame
_WINDOW = 2 * _RATE - _HOP  # samples per model window (43844 -> 172 frames)
_EDGE = 15  # frames dropped at each side of a window (they see a cut-off context)
_LOWEST = 21  # MIDI number of the model's first bin (A0)
_MODEL = ("saved_models", "icassp_2022", "nmp.onnx")
_INPUT, _OUTPUTS = "serving_default_input_2:0", ("StatefulPartitionedCall:1", "StatefulPartitionedCall:2")
_GAP_FRAMES = 11  # a note may dip below the frame threshold this long and go on
_OVERTONES = (12, 19, 24)  # semitones from a fundamental to its 2nd, 3rd and 4th harmonic
_OVERTONE_RATIO = (
    1.5  # a note this much weaker than one starting with it at an overtone's distance below is that overtone
)
_PPQ = 480


@dataclass(frozen=True, kw_only=True)
class Note:
    """One note: ``start``/``end`` in seconds, MIDI ``pitch``, ``velocity`` 1-127."""

    start: float
    end: float
    pitch: int
    velocity: int = 80


@dataclass(frozen=True, kw_only=True)
class Notes:
    """What :func:`transcribe` heard: the notes by start time, and the tempo to write them at."""

    notes: tuple[Note, ...]
    bpm: float = 120.0

    def __len__(self) -> int:
        return len(self.notes)

    def save(self, path: str | os.PathLike) -> Path:
        """Write a standard MIDI file (see :func:`write_midi`)."""
        return write_midi(self, path)


# ---------------------------------------------------------------------------------------------
# The model.


def model_path() -> Path:
    """Where the installed ``basic-pitch`` package keeps ``nmp.onnx`` (found without importing it)."""
    spec = importlib.util.find_spec("basic_pitch")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        candidate = Path(folder).joinpath(*_MODEL)
        if candidate.is_file():
            return candidate
    raise ModelUnavailableError(MIDI_EXTRA)


@functools.lru_cache(maxsize=1)
def _session(path: str) -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise ModelUnavailableError(MIDI_EXTRA) from None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _activations(y: np.ndarray, session: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Note and onset maps ``[frames, 88]`` and each frame's time in seconds.

    The clip is cut into overlapping 2 s windows; each keeps its middle frames, whose times come
    from the window's own start (no drift from windows overlapping by a fractional frame count).
    """
    pad = _EDGE * _HOP
    padded = np.concatenate([np.zeros(pad, np.float32), y, np.zeros(_WINDOW, np.float32)])
    step = _WINDOW - 2 * pad
    starts = range(0, y.shape[0] + pad, step)
    batch = np.stack([padded[s : s + _WINDOW] for s in starts])[:, :, None]
    notes, onsets = session.run(list(_OUTPUTS), {_INPUT: batch})
    keep = slice(_EDGE, notes.shape[1] - _EDGE)
    frame_times = np.arange(notes.shape[1])[keep] * _HOP / _RATE
    times = np.concatenate([(s - pad) / _RATE + frame_times for s in starts])
    notes = notes[:, keep].reshape(-1, notes.shape[-1])
    onsets = onsets[:, keep].reshape(-1, onsets.shape[-1])
    inside = (times >= 0) & (times < y.shape[0] / _RATE)
    return notes[inside], onsets[inside], times[inside]


# ---------------------------------------------------------------------------------------------
# From activations to notes.


def _decode(
    frames: np.ndarray, onsets: np.ndarray, *, onset_threshold: float, frame_threshold: float, min_frames: int
) -> list[tuple[int, int, int, float]]:
    """``(start frame, end frame, bin, mean activation)`` per note.

    Each onset peak above ``onset_threshold`` starts a note; it lasts while its bin's frame
    activation stays above ``frame_threshold`` (dips of up to ``_GAP_FRAMES`` allowed). Later
    onsets are taken first so that a repeated note ends where the next one starts; a note
    takes its bin and the two neighbours, so a vibrato is not two notes.
    """
    peaks = (onsets[1:-1] > onsets[:-2]) & (onsets[1:-1] >= onsets[2:]) & (onsets[1:-1] >= onset_threshold)
    times, bins = np.nonzero(peaks)
    left = frames.copy()
    found = []
    for t, b in sorted(zip(times + 1, bins, strict=True), reverse=True):
        end = _note_end(left[:, b], t, frame_threshold)
        if end - t < min_frames:
            continue
        left[t:end, max(0, b - 1) : b + 2] = 0.0
        found.append((int(t), int(end), int(b), float(frames[t:end, b].mean())))
    return sorted(n for n in found if not _is_overtone(n, found))


def _is_overtone(note: tuple[int, int, int, float], others: list[tuple[int, int, int, float]]) -> bool:
    """A weak note starting with a much stronger one an octave, a twelfth or two octaves below."""
    start, _, pitch, level = note
    return any(
        abs(s - start) <= 3 and pitch - p in _OVERTONES and a >= _OVERTONE_RATIO * level
        for s, _, p, a in others
    )


def _note_end(activation: np.ndarray, start: int, threshold: float) -> int:
    """First frame after ``start`` that begins ``_GAP_FRAMES`` frames below ``threshold``."""
    below, t = 0, start + 1
    while t < activation.shape[0] and below < _GAP_FRAMES:
        below = below + 1 if activation[t] < threshold else 0
        t += 1
    return t - below


def transcribe(
    audio: Any,
    *,
    bpm: float | None = None,
    onset_threshold: float = 0.5,
    frame_threshold: float = 0.3,
    min_note_s: float = 0.127,
) -> Notes:
    """The notes of ``audio``, polyphonic, with Basic Pitch's model.

    Parameters
    ----------
    audio : str, Path, (numpy.ndarray, int) or Clip
        The sound (mono mix), at least 0.5 s.
    bpm : float, optional
        Tempo for the MIDI file; ``None`` takes a conformed clip's (``clip.extra["conform"]``),
        else 120.
    onset_threshold, frame_threshold : float
        How sure the model must be that a note starts, and that it still sounds (0 to 1).
    min_note_s : float
        Shorter notes are dropped.

    Returns
    -------
    Notes
        ``.notes`` (start, end, pitch, velocity) by start time; ``.save(path)`` writes MIDI.

    Raises
    ------
    ModelUnavailableError
        Without the ``midi`` extra: one line naming what to install.
    """
    from .audio import load_audio

    for name, value in (("onset_threshold", onset_threshold), ("frame_threshold", frame_threshold)):
        if not 0.0 < value < 1.0:
            raise InvalidInputError(name, value, "must be between 0 and 1", f"pass e.g. {name}=0.5")
    session = _session(str(model_path()))
    y = load_audio(audio, _RATE)
    frames, onsets, times = _activations(y, session)
    fps = _RATE / _HOP
    found = _decode(
        frames,
        onsets,
        onset_threshold=onset_threshold,
        frame_threshold=frame_threshold,
        min_frames=max(1, int(round(min_note_s * fps))),
    )
    step = _HOP / _RATE
    notes = tuple(
        Note(
            start=round(float(times[s]), 4),
            end=round(float(times[e - 1]) + step, 4),
            pitch=b + _LOWEST,
            velocity=int(np.clip(round(127 * a), 1, 127)),
        )
        for s, e, b, a in found
    )
    return Notes(notes=notes, bpm=float(bpm or _clip_bpm(audio) or 120.0))


def _clip_bpm(audio: Any) -> float | None:
    record = (getattr(audio, "extra", None) or {}).get("conform") or {}
    return record.get("bpm")


# ---------------------------------------------------------------------------------------------
# Standard MIDI files.


def write_midi(notes: Notes, path: str | os.PathLike, *, quantize: int | None = None) -> Path:
    """Write ``notes`` as a type-0 standard MIDI file at their tempo; never half-written.

    Parameters
    ----------
    notes : Notes
        From :func:`transcribe`.
    path : str or Path
        The ``.mid`` file (its folder is created).
    quantize : int, optional
        Snap starts and ends to this many steps a beat (4: sixteenths in 4/4); ``None`` keeps
        the times as heard.
    """
    import mido

    from .audio import write_atomic

    if quantize is not None and (
        isinstance(quantize, bool) or not isinstance(quantize, int) or not 1 <= quantize <= 16
    ):
        raise InvalidInputError(
            "quantize", quantize, "must be steps per beat from 1 to 16", "pass e.g. quantize=4"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(notes.bpm), time=0))
    events = []
    for note in notes.notes:
        start, end = (_ticks(t, notes.bpm, quantize) for t in (note.start, note.end))
        end = max(end, start + (_PPQ // quantize if quantize else 1))
        events += [(start, 1, note.pitch, note.velocity), (end, 0, note.pitch, 0)]
    now = 0
    for tick, on, pitch, velocity in sorted(events):
        kind = "note_on" if on else "note_off"
        track.append(mido.Message(kind, note=pitch, velocity=velocity, time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    song = mido.MidiFile(type=0, ticks_per_beat=_PPQ, tracks=[track])
    return write_atomic(path, lambda tmp: song.save(os.fspath(tmp)))


def _ticks(seconds: float, bpm: float, quantize: int | None) -> int:
    beats = seconds * bpm / 60.0
    if quantize:
        beats = round(beats * quantize) / quantize
    return int(round(beats * _PPQ))
