"""Keep the oneDNN predictors' memory down: the vocoder in pieces, freed heap given back.

A Paddle Inference predictor frees most activations during a run, but what it frees stays in
glibc's heap, and the largest run sets the high-water mark: a 5 s clip's vocoder (500 mel frames)
took the process 1.7 GB above the predictor's weights, and 1.1 GB stayed after ``malloc_trim``
(full-size AudioLDM-S, ``benchmarks/README.md``). Two levers, each measured there:

- :func:`vocoder_windows`: the vocoder runs over overlapping pieces of at most
  :func:`piece_frames` frames of its own (``MGTOOLKIT_VOCODER_PIECE``), each padded on both sides
  with the receptive-field margin of :func:`.pieces.vocoder_receptive_frames`, so every kept
  sample sees exactly the frames it sees in one whole run: the waveform is the same to float
  rounding (``tests/accel/test_memory_options.py``). Every piece has the same length, so one set of
  oneDNN primitives serves them all (the predictors cache one input shape).
- :func:`after_run`: once the VAE decoder or the vocoder has run (once per call each), its freed
  heap pages go back to the system (``malloc_trim``); the UNet, which runs once per step, is
  left alone (trimming there would make every step fault its pages in again) and its pages are
  given back when the VAE starts (:func:`before_run`). ``MGTOOLKIT_TRIM=0`` turns both off.

Measured and not kept: fewer malloc arenas (``MALLOC_ARENA_MAX=2``: the same peak), a fixed
mmap threshold (a lower peak, but the vocoder about twice as slow), ``try_shrink_memory()``
(nothing freed), ``enable_memory_optim()`` (fails under PIR).

numpy-free and paddle-free at import.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
from collections.abc import Mapping
from typing import Any

from ..config import flag, setting

__all__ = ["piece_frames", "vocoder_windows", "trim_heap", "before_run", "after_run"]


def piece_frames(*, environ: Mapping[str, str] | None = None) -> int:
    """The vocoder's own frames per piece, from ``MGTOOLKIT_VOCODER_PIECE`` (``0``: never split).

    Raises
    ------
    ValueError
        If the setting is not a whole number of frames.
    """
    value = setting("MGTOOLKIT_VOCODER_PIECE", environ=environ)
    try:
        frames = int(value)
    except ValueError:
        raise ValueError(
            f"MGTOOLKIT_VOCODER_PIECE={value!r} is not a number of mel frames; "
            "give one such as 256, or 0 to vocode in one piece"
        ) from None
    if frames < 0:
        raise ValueError(f"MGTOOLKIT_VOCODER_PIECE={frames} is negative; give 0 or more mel frames")
    return frames


def vocoder_windows(frames: int, piece: int, margin: int) -> list[tuple[int, int, int, int]]:
    """``(lo, hi, a, b)`` per piece: frames ``lo:hi`` are its own, ``a:b`` what it is given.

    The ``frames`` are cut into the fewest pieces of at most ``piece`` own frames; every window has
    the same length (its own frames plus ``margin`` on each side that has neighbours, shifted
    inward at the two ends), and each own range lies ``margin`` or more frames inside its window
    unless it touches the spectrogram's edge. One window (``(0, frames, 0, frames)``) when
    ``piece`` is 0 or the pieces would be as long as the whole.

    Examples
    --------
    >>> vocoder_windows(500, 256, 45)
    [(0, 250, 0, 295), (250, 500, 205, 500)]
    >>> vocoder_windows(500, 0, 45)
    [(0, 500, 0, 500)]
    """
    parts = math.ceil(frames / piece) if piece > 0 else 1
    own = math.ceil(frames / parts) if parts > 1 else frames
    length = min(frames, own + margin * min(2, parts - 1))
    if parts <= 1 or length >= frames:
        return [(0, frames, 0, frames)]
    windows = []
    for i in range(parts):
        lo, hi = i * own, min(frames, (i + 1) * own)
        a = min(max(0, lo - margin), frames - length)
        if lo < frames:
            windows.append((lo, hi, a, a + length))
    return windows


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def trim_heap(*, environ: Mapping[str, str] | None = None) -> bool:
    """Give glibc's free heap pages back to the system (``malloc_trim(0)``); whether it ran.

    Nothing happens with ``MGTOOLKIT_TRIM=0`` or without glibc.
    """
    libc = _libc() if flag("MGTOOLKIT_TRIM", environ=environ) else None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return False
    trim(0)
    return True


M_ARENA_MAX = -8  # glibc's mallopt parameter: how many malloc arenas the process may have


def cap_arenas(count: int = 1) -> bool:
    """Let glibc's malloc keep at most ``count`` arenas (``mallopt(M_ARENA_MAX, count)``); whether
    it was set (not without glibc).

    Each thread that allocates otherwise gets an arena of its own, and what a thread frees stays in
    its arena: the two threads that run the halves of a guidance pair each kept their own heap of
    UNet activations (a 10 s window: +365 MiB the first step, against +67 MiB for the same batch in
    one thread). Process-wide: low-memory mode sets it, as a small machine wants; arenas that exist
    already are kept.
    """
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    return bool(mallopt is not None and mallopt(M_ARENA_MAX, int(count)) == 1)


def before_run(kind: str) -> None:
    """Called before a predictor of ``kind`` (``unet``, ``vae``, ``vocoder``) runs.

    The VAE decoder runs right after the last UNet step: the pages the UNet's runs freed go back
    first, so they do not add to the decoder's and the vocoder's peak.
    """
    if kind == "vae":
        trim_heap()


def after_run(kind: str, predictor: Any) -> None:
    """Called after a predictor of ``kind`` ran and its output was copied out.

    Its intermediate tensors are cleared (every kind), and for the stages that run once per call
    (VAE decoder, vocoder) the freed heap pages go back to the system.
    """
    predictor.clear_intermediate_tensor()
    if kind != "unet":
        trim_heap()
