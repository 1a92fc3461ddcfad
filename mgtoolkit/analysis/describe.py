"""What a musician hears first: length, tempo and beats, key and mode, loudness, and a few tags.

The measurements are plain functions on ``(y, sr)`` arrays in :mod:`mgtoolkit.io.features`
(:func:`estimate_tempo`, :func:`estimate_key`, :func:`integrated_loudness`, re-exported here);
:func:`describe_audio` does it all and returns a record with a sentence. The CLAP tags load a
model through :mod:`mgtoolkit.analysis.clap` (paddle imported there, inside functions).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import MgtoolkitWarning, ModelUnavailableError
from ..io.features import PITCH_CLASSES, estimate_key, estimate_tempo, integrated_loudness, peak_dbfs

__all__ = [
    "AudioDescription",
    "describe_audio",
    "estimate_tempo",
    "estimate_key",
    "integrated_loudness",
    "ANALYSIS_RATE",
    "MIN_DESCRIBE_S",
    "MAX_DESCRIBE_S",
    "PITCH_CLASSES",
    "NoTagsWarning",
    "listen",
]

ANALYSIS_RATE = 22050
"""Rate the clip is analysed at (librosa's default; covers the pitch range of chroma)."""
MIN_DESCRIBE_S = 1.0
"""Shortest clip described: a tempo needs a few beats, a loudness 0.4 s blocks."""
MAX_DESCRIBE_S = 600.0
"""Longest clip described (10 minutes); longer files are refused before they are decoded."""


class NoTagsWarning(MgtoolkitWarning):
    """The CLAP model for tags could not be loaded; the description has no tags."""


@dataclass(frozen=True, kw_only=True)
class AudioDescription:
    """What :func:`describe_audio` heard.

    Attributes
    ----------
    duration_s : float
        Length in seconds.
    tempo_bpm : float or None
        Beats per minute, from the slope of the beat times; ``None`` with fewer than 4 beats.
    beat_times : tuple of float
        Seconds of each beat found.
    key : str or None
        Tonic pitch class (``"C"``, ``"F#"``, ...); ``None`` when there is no pitched content.
    mode : str or None
        ``"major"`` or ``"minor"``.
    key_strength : float
        Correlation of the clip's chroma with the key's profile (``-1`` to ``1``; above ~0.6 is clear).
    loudness_lufs : float or None
        Integrated loudness (ITU-R BS.1770-4) in LUFS of the mono mix (a stereo file's channels
        averaged, as every mgtoolkit input is); ``None`` if every block is gated out.
    peak_dbfs : float
        Highest sample level in dBFS.
    tags : mapping
        ``{"genre": (("techno", 0.41), ...), "mood": ..., "instruments": ...}``, best first, from
        CLAP zero-shot scores (softmax over each category's labels). Empty if not asked for.
    tagged_by : str or None
        The CLAP model that made the tags.
    """

    duration_s: float
    tempo_bpm: float | None
    beat_times: tuple[float, ...] = ()
    key: str | None = None
    mode: str | None = None
    key_strength: float = 0.0
    loudness_lufs: float | None = None
    peak_dbfs: float = -math.inf
    tags: Mapping[str, tuple[tuple[str, float], ...]] = field(default_factory=dict)
    tagged_by: str | None = None

    @property
    def key_name(self) -> str | None:
        """``"A minor"``, or ``None``."""
        return f"{self.key} {self.mode}" if self.key else None

    def top_tags(self) -> dict[str, str]:
        """The best label of each category."""
        return {cat: labels[0][0] for cat, labels in self.tags.items() if labels}

    def sentence(self) -> str:
        """One sentence a musician would say, e.g. ``"A 12.0 s clip at about 128 BPM in A minor, ..."``."""
        parts = [f"A {self.duration_s:.1f} s clip"]
        if self.tempo_bpm is not None:
            parts.append(f"at about {self.tempo_bpm:.0f} BPM")
        if self.key_name:
            parts.append(f"in {self.key_name}")
        text = " ".join(parts)
        if self.loudness_lufs is not None:
            text += f", {self.loudness_lufs:.1f} LUFS"
        top = self.top_tags()
        sounds = [top[c] for c in ("genre", "mood") if c in top]
        sounds += [f"with {top['instruments']}"] if "instruments" in top else []
        sounds += [v for c, v in top.items() if c not in ("genre", "mood", "instruments")]
        if sounds:
            text += "; it sounds like " + ", ".join(sounds)
        return text + "."

    def music_prompt(self) -> str:
        """A starting prompt for restyling or generating: tags, tempo and key, comma separated."""
        top = self.top_tags()
        words = [top[c] for c in ("mood", "genre", "instruments") if c in top]
        words += [v for c, v in top.items() if c not in ("genre", "mood", "instruments")]
        if self.tempo_bpm is not None:
            words.append(f"{self.tempo_bpm:.0f} BPM")
        if self.key_name:
            words.append(self.key_name)
        return ", ".join(words) or "music"

    def musical_line(self) -> str:
        """Tempo and key for a caption, e.g. ``"about 120 BPM · A minor"``."""
        tempo = f"about {self.tempo_bpm:.0f} BPM" if self.tempo_bpm is not None else "no clear beat"
        return f"{tempo} · {self.key_name or 'no clear key'}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (beat times rounded to ms)."""
        data = dataclasses.asdict(self)
        data["beat_times"] = [round(t, 3) for t in self.beat_times]
        data["tags"] = {c: [[label, round(p, 4)] for label, p in v] for c, v in self.tags.items()}
        data["peak_dbfs"] = None if not math.isfinite(self.peak_dbfs) else round(self.peak_dbfs, 2)
        return data

    def __str__(self) -> str:
        return self.sentence()


# ---------------------------------------------------------------------------------------------
# All of it at once.


def describe_audio(
    audio: Any,
    *,
    tags: bool = True,
    labels: Mapping[str, Sequence[str]] | None = None,
    clap: str | None = None,
    device: str | None = None,
) -> AudioDescription:
    """Describe a clip like a musician: length, tempo and beats, key, loudness and CLAP tags.

    Parameters
    ----------
    audio : str, Path, bytes, (numpy.ndarray, int) or Clip
        The sound (see :func:`mgtoolkit.io.audio.load_audio`), between 1 s and 10 minutes.
    tags : bool
        Add zero-shot CLAP tags (loads a CLAP model; ``False`` keeps it to signal processing).
    labels : mapping of str to list of str, optional
        The candidate tags per category; ``None`` uses
        :data:`mgtoolkit.analysis.clap.DEFAULT_LABELS` (genre, mood, instruments).
    clap : str, optional
        CLAP model for the tags (see :func:`mgtoolkit.models.clap.resolve_clap`); ``None`` is
        ``laion/clap-htsat-unfused``, or the tiny CLAP when ``MGTOOLKIT_MODEL=tiny``.
    device : str, optional
        Where the CLAP model runs.

    Returns
    -------
    AudioDescription
        ``.tempo_bpm``, ``.beat_times``, ``.key_name``, ``.loudness_lufs``, ``.tags``,
        ``.sentence()``. If the CLAP model cannot be loaded, the tags are empty and a
        :class:`NoTagsWarning` says why.

    Raises
    ------
    InvalidInputError
        For silence, NaNs, clips shorter than 1 s or longer than 10 minutes, unreadable files and
        empty label lists: one line naming the argument and the fix.

    Examples
    --------
    >>> import numpy as np
    >>> sr = 22050
    >>> t = np.arange(4 * sr) / sr
    >>> triad = sum(np.sin(2 * np.pi * f * t) for f in (261.63, 329.63, 392.0)) * 0.2  # C E G
    >>> describe_audio((triad, sr), tags=False).key_name
    'C major'
    """
    from ..io.audio import load_audio
    from . import clap as clap_tags

    # 1. Check everything before decoding or loading anything.
    if tags:
        labels = clap_tags.check_labels(labels)
    _refuse_long_file(audio)
    # 2. Mono float32 at the analysis rate; silence, NaNs and odd lengths refused here.
    y = load_audio(audio, ANALYSIS_RATE, min_s=MIN_DESCRIBE_S, max_s=MAX_DESCRIBE_S)
    # 3. Signal processing.
    tempo, beats = estimate_tempo(y, ANALYSIS_RATE)
    key, mode, strength = estimate_key(y, ANALYSIS_RATE)
    description = AudioDescription(
        duration_s=round(y.shape[0] / ANALYSIS_RATE, 3),
        tempo_bpm=None if tempo is None else round(tempo, 2),
        beat_times=tuple(float(t) for t in beats),
        key=key,
        mode=mode,
        key_strength=round(strength, 3),
        loudness_lufs=_rounded(integrated_loudness(y, ANALYSIS_RATE)),
        peak_dbfs=peak_dbfs(y),
    )
    # 4. CLAP tags (a model).
    if not tags:
        return description
    try:
        found, name = clap_tags.zero_shot_tags(y, ANALYSIS_RATE, labels, clap=clap, device=device)
    except ModelUnavailableError as exc:
        warnings.warn(NoTagsWarning(f"no tags: {exc}"), stacklevel=2)
        return description
    return dataclasses.replace(description, tags=found, tagged_by=name)


def listen(audio: Any) -> AudioDescription | None:
    """:func:`describe_audio` without tags, or ``None`` for a clip that cannot be described.

    For captions and plots: a silent, too short or broken clip gets no tempo and key, not an error.
    """
    from ..errors import InvalidInputError

    try:
        return describe_audio(audio, tags=False)
    except InvalidInputError:
        return None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _refuse_long_file(audio: Any) -> None:
    """Refuse a file longer than :data:`MAX_DESCRIBE_S` from its header, before decoding it."""
    import os

    if not isinstance(audio, (str, os.PathLike)) or not os.path.isfile(audio):
        return
    import soundfile as sf

    from ..errors import InvalidInputError

    try:
        info = sf.info(os.fspath(audio))
    except (RuntimeError, sf.LibsndfileError):
        return  # not readable by soundfile: load_audio tries librosa and says what is wrong
    if info.duration > MAX_DESCRIBE_S:
        raise InvalidInputError(
            "audio",
            f"{info.duration:.1f} s of audio",
            f"is longer than {MAX_DESCRIBE_S:g} s",
            f"trim it to at most {MAX_DESCRIBE_S:g} s (e.g. the part you want described)",
        )
