"""The grid a clip is made to obey: key names, tempo, bars and beats per bar, checked.

Pure values and checks, no audio: :func:`check_grid` turns what was asked (``bpm``, ``bars``,
``beats_per_bar``, ``key``, ``loop``) into a :class:`Grid` or one line naming the field, and
:func:`generation_length` says how long to generate so the bars can be cut after a stretch.
:mod:`mgtoolkit.analysis.conform` then makes the audio obey it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidInputError

__all__ = [
    "Key",
    "Grid",
    "parse_key",
    "check_grid",
    "generation_length",
    "MIN_BPM",
    "MAX_BPM",
    "MAX_BARS",
    "MAX_BEATS_PER_BAR",
    "MIN_STRETCH",
    "MAX_STRETCH",
    "KEY_FORMS",
]

MIN_BPM, MAX_BPM = 40.0, 240.0
MAX_BARS = 64
MAX_BEATS_PER_BAR = 12
MIN_STRETCH, MAX_STRETCH = 0.7, 1.4
"""Sane range of the stretch ratio (new length over old); beyond it Rubber Band's artefacts show."""
KEY_FORMS = '"A minor", "Am", "F#", "Gb major"'
_LETTERS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_KEY = re.compile(r"^\s*([A-Ga-g])\s*([#♯b♭]?)\s*(major|minor|maj|min|m|M)?\s*$")


@dataclass(frozen=True, kw_only=True)
class Key:
    """A key as asked: tonic pitch class (0 = C), mode and its spelling.

    Examples
    --------
    >>> parse_key("Gb major").tonic, parse_key("Am").name, parse_key("F#m").short
    (6, 'A minor', 'Fsharpm')
    """

    tonic: int
    mode: str
    spelled: str

    @property
    def name(self) -> str:
        """``"A minor"``, ``"Gb major"``."""
        return f"{self.spelled} {self.mode}"

    @property
    def short(self) -> str:
        """For file names: ``"Am"``, ``"Gb"``, ``"Fsharpm"`` (letters and digits only)."""
        return self.spelled.replace("#", "sharp") + ("m" if self.mode == "minor" else "")


def parse_key(value: Any, field: str = "key") -> Key:
    """``"A minor"``, ``"Am"``, ``"a min"``, ``"F#"``, ``"Gb major"``, ``"Bbm"`` as a :class:`Key`.

    A bare tonic is major; ``m``/``min``/``minor`` make it minor.
    """
    found = _KEY.match(value) if isinstance(value, str) else None
    if not found:
        raise InvalidInputError(
            field,
            value,
            "is not a key name",
            f"write it as one of {KEY_FORMS} (a tonic, then major or minor)",
        )
    letter, accidental, mode = found.groups()
    accidental = {"♯": "#", "♭": "b"}.get(accidental, accidental)
    tonic = (_LETTERS[letter.upper()] + {"#": 1, "b": -1, "": 0}[accidental]) % 12
    minor = mode in ("m", "min", "minor")
    return Key(tonic=tonic, mode="minor" if minor else "major", spelled=letter.upper() + accidental)


@dataclass(frozen=True, kw_only=True)
class Grid:
    """What the clip must obey; ``bpm=None`` changes only the key, ``bars=None`` keeps the length."""

    bpm: float | None = None
    bars: int | None = None
    beats_per_bar: int = 4
    key: Key | None = None
    loop: bool = False

    @property
    def bar_s(self) -> float:
        return self.beats_per_bar * 60.0 / self.bpm

    def seconds(self) -> float | None:
        """Length of the bars asked, or ``None``."""
        return None if self.bars is None else self.bars * self.bar_s

    def label(self) -> str:
        """``"120bpm_Am_4bars"``: what sample packs put in a file name."""
        parts = [f"{self.bpm:g}bpm".replace(".", "p")] if self.bpm else []
        parts += [self.key.short] if self.key else []
        parts += [f"{self.bars}bars"] if self.bars else []
        return "_".join(parts)


def check_grid(
    *,
    bpm: Any = None,
    bars: Any = None,
    beats_per_bar: Any = 4,
    key: Any = None,
    loop: bool = False,
) -> Grid | None:
    """The grid asked for, checked; ``None`` when nothing is asked (the clip stays as made)."""
    if bpm is None and bars is None and key is None:
        return None
    if bpm is not None and (
        isinstance(bpm, bool) or not isinstance(bpm, (int, float)) or not MIN_BPM <= bpm <= MAX_BPM
    ):
        raise InvalidInputError(
            "bpm", bpm, f"must be a number from {MIN_BPM:g} to {MAX_BPM:g}", "pass e.g. bpm=120"
        )
    _check_count("bars", bars, MAX_BARS, "bars=4", allow_none=True)
    _check_count("beats_per_bar", beats_per_bar, MAX_BEATS_PER_BAR, "beats_per_bar=4 (3 for a waltz)")
    if bars is not None and bpm is None:
        raise InvalidInputError(
            "bars", bars, "needs a tempo to know how long a bar is", "pass bpm= as well, e.g. bpm=120"
        )
    return Grid(
        bpm=None if bpm is None else float(bpm),
        bars=bars,
        beats_per_bar=int(beats_per_bar),
        key=None if key is None else parse_key(key),
        loop=bool(loop),
    )


def _check_count(field: str, value: Any, most: int, example: str, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= most:
        raise InvalidInputError(
            field, value, f"must be a whole number from 1 to {most}", f"pass e.g. {example}"
        )


def generation_length(grid: Grid, audio_length_in_s: float, default_s: float) -> tuple[Grid, float]:
    """The grid with its bars settled, and the seconds to generate to cut them after any stretch.

    ``audio_length_in_s`` other than ``default_s`` must agree with the bars (to 1 ms): a
    contradiction is refused, never guessed. Without ``bars`` they are the whole bars that fit
    in ``audio_length_in_s`` (at least one). The margin allows a stretch down to
    :data:`MIN_STRETCH` and a bar to find the downbeat in.
    """
    if grid.bpm is None:
        return grid, audio_length_in_s
    wanted = grid.seconds()
    if wanted is None:
        grid = dataclasses.replace(grid, bars=max(1, int(audio_length_in_s / grid.bar_s + 1e-9)))
        wanted = grid.seconds()
    elif audio_length_in_s != default_s and abs(audio_length_in_s - wanted) > 1e-3:
        raise InvalidInputError(
            "audio_length_in_s",
            audio_length_in_s,
            f"contradicts bars={grid.bars} at bpm={grid.bpm:g} ({wanted:.3f} s)",
            "leave audio_length_in_s out (the bars decide the length) or give the bars' length",
        )
    return grid, math.ceil((wanted + grid.bar_s) / MIN_STRETCH * 10) / 10
