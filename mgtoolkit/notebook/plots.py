"""Drawing waveforms and mel spectrograms, in the style of ``librosa.display``.

Every function takes the data first and everything else by keyword, draws on ``ax`` (or the
current axes), forwards ``**kwargs`` to matplotlib and returns the artist it made. Nothing here
calls ``plt.show()``. Computing (:func:`mel_db`) is kept apart from drawing (:func:`melshow`), and
all of it works on any mono waveform, not only on clips made by mgtoolkit.

Examples
--------
>>> import numpy as np
>>> import matplotlib.pyplot as plt
>>> from mgtoolkit import plots
>>> y = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype("float32")
>>> fig, (ax1, ax2) = plt.subplots(2)
>>> line = plots.waveshow(y, sr=16000, ax=ax1)
>>> mesh = plots.melshow(y, sr=16000, ax=ax2, colorbar=True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.collections import QuadMesh
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from ..types import Clip

__all__ = [
    "mel_db",
    "chroma",
    "waveshow",
    "beatshow",
    "joinshow",
    "loopshow",
    "melshow",
    "chromashow",
    "pianoshow",
    "clip_figure",
    "grid_figure",
    "denoising_figure",
]

MAX_POINTS = 4000


# --- computing -------------------------------------------------------------------------------------


def mel_db(
    y: np.ndarray,
    *,
    sr: int,
    n_fft: int = 1024,
    hop_length: int = 160,
    n_mels: int = 64,
    fmin: float = 0.0,
    fmax: float | None = None,
    top_db: float = 80.0,
) -> np.ndarray:
    """A mel power spectrogram in dB (``(n_mels, frames)``), relative to its loudest bin.

    The defaults match AudioLDM's own mel front end (1024-point FFT, hop 160, 64 bands).

    Examples
    --------
    >>> mel_db(np.zeros(16000, dtype="float32"), sr=16000).shape
    (64, 101)
    """
    import librosa

    y = np.asarray(y, dtype=np.float32).reshape(-1)
    n_fft = min(n_fft, max(16, len(y)))
    power = librosa.feature.melspectrogram(
        y=y, sr=sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, fmin=fmin, fmax=fmax
    )
    return librosa.power_to_db(power, ref=lambda s: max(float(np.max(s)), 1e-10), top_db=top_db)


def chroma(y: np.ndarray, *, sr: int, hop_length: int = 512) -> np.ndarray:
    """Constant-Q chromagram (``(12, frames)``, each frame scaled to its strongest pitch class).

    The same chroma :func:`mgtoolkit.describe_audio` names the key from.

    Examples
    --------
    >>> chroma(np.zeros(16000, dtype="float32"), sr=16000).shape
    (12, 32)
    """
    import warnings

    import librosa

    with warnings.catch_warnings():  # the CQT's lowest octaves warn on clips under ~2 s
        warnings.simplefilter("ignore", UserWarning)
        return librosa.feature.chroma_cqt(
            y=np.asarray(y, dtype=np.float32).reshape(-1), sr=sr, hop_length=hop_length
        )


def _envelope(y: np.ndarray, sr: int, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Times (s) and values to draw: the samples, or per-block min/max when there are many."""
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    if len(y) <= max_points:
        return np.arange(len(y)) / sr, y
    block = int(np.ceil(2 * len(y) / max_points))
    usable = len(y) // block * block
    blocks = y[:usable].reshape(-1, block)
    values = np.stack([blocks.min(axis=1), blocks.max(axis=1)], axis=1).reshape(-1)
    starts = np.arange(blocks.shape[0]) * block / sr
    times = np.stack([starts, starts + block / (2 * sr)], axis=1).reshape(-1)
    return times, values


# --- drawing ---------------------------------------------------------------------------------------


def _axes(ax: Axes | None) -> Axes:
    """``ax``, or the current axes of pyplot (the one place pyplot is touched)."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.gca()


def waveshow(
    y: np.ndarray, *, sr: int, ax: Axes | None = None, max_points: int = MAX_POINTS, **kwargs: Any
) -> Line2D:
    """Draw a mono waveform against time in seconds.

    Long signals are drawn as their min/max envelope (about ``max_points`` points), so a minute
    of audio draws as fast as a second.

    Parameters
    ----------
    y : numpy.ndarray
        Mono samples.
    sr : int
        Sample rate in Hz.
    ax : matplotlib.axes.Axes, optional
        Where to draw; the current axes if omitted.
    max_points : int
        Above this many samples the envelope is drawn.
    **kwargs
        Passed to ``ax.plot`` (``color``, ``linewidth``, ``alpha``...).

    Returns
    -------
    matplotlib.lines.Line2D

    Examples
    --------
    >>> import numpy as np
    >>> line = waveshow(np.zeros(8000), sr=16000)
    >>> float(line.get_xdata()[-1]) < 0.5
    True
    """
    ax = _axes(ax)
    times, values = _envelope(y, sr, max_points)
    kwargs.setdefault("linewidth", 0.6)
    (line,) = ax.plot(times, values, **kwargs)
    ax.set_xlim(0.0, len(np.asarray(y).reshape(-1)) / sr)
    ax.set_xlabel("Time (s)")
    ax.set_ylabel("Amplitude")
    return line


def beatshow(beat_times: Any, *, ax: Axes | None = None, **kwargs: Any):
    """Draw a beat grid: a thin vertical line at each beat time (seconds), over what ``ax`` shows.

    Parameters
    ----------
    beat_times : sequence of float
        Seconds of each beat (e.g. ``mg.describe_audio(clip).beat_times``).
    ax : matplotlib.axes.Axes, optional
        Where to draw; the current axes if omitted.
    **kwargs
        Passed to ``ax.vlines`` (``color``, ``linewidth``, ``alpha``...).

    Returns
    -------
    matplotlib.collections.LineCollection

    Examples
    --------
    >>> grid = beatshow([0.5, 1.0, 1.5])
    >>> len(grid.get_segments())
    3
    """
    ax = _axes(ax)
    kwargs.setdefault("color", "tab:red")
    kwargs.setdefault("linewidth", 0.8)
    kwargs.setdefault("alpha", 0.6)
    kwargs.setdefault("label", "beats")
    return ax.vlines(np.asarray(beat_times, dtype=float), 0, 1, transform=ax.get_xaxis_transform(), **kwargs)


def joinshow(join_times: Any, *, ax: Axes | None = None, **kwargs: Any):
    """Mark where the windows of a long piece or a continuation join (seconds): dashed lines.

    ``clip.extra["windows"]["joins_s"]`` holds them for clips made window by window.

    Returns
    -------
    matplotlib.collections.LineCollection

    Examples
    --------
    >>> marks = joinshow([10.0, 17.52])
    >>> len(marks.get_segments())
    2
    """
    ax = _axes(ax)
    kwargs.setdefault("color", "tab:purple")
    kwargs.setdefault("linestyles", "dashed")
    kwargs.setdefault("linewidth", 1.0)
    kwargs.setdefault("label", "window joins")
    return ax.vlines(np.asarray(join_times, dtype=float), 0, 1, transform=ax.get_xaxis_transform(), **kwargs)


def loopshow(start: float, end: float, *, ax: Axes | None = None, **kwargs: Any):
    """Mark a loop (seconds): a thick line at its start and end, with "loop" written at the end.

    Returns
    -------
    matplotlib.collections.LineCollection

    Examples
    --------
    >>> len(loopshow(0.0, 4.0).get_segments())
    2
    """
    ax = _axes(ax)
    kwargs.setdefault("color", "tab:green")
    kwargs.setdefault("linewidth", 2.0)
    kwargs.setdefault("label", "loop points")
    lines = ax.vlines([float(start), float(end)], 0, 1, transform=ax.get_xaxis_transform(), **kwargs)
    ax.text(float(end), 1.0, " loop ↺", transform=ax.get_xaxis_transform(), ha="right", va="top", fontsize=8)
    return lines


def pianoshow(notes: Any, *, ax: Axes | None = None, **kwargs: Any):
    """Draw a piano roll: a bar per note, time (s) across, MIDI pitch up, darker when louder.

    ``notes`` is what :func:`mgtoolkit.transcribe` returns (or any sequence with ``start``,
    ``end``, ``pitch`` and ``velocity``).

    Returns
    -------
    matplotlib.collections.PolyCollection

    Examples
    --------
    >>> from mgtoolkit.io.midi import Note
    >>> len(pianoshow([Note(start=0.0, end=0.5, pitch=60), Note(start=0.5, end=1.0, pitch=64)]).get_paths())
    2
    """
    from matplotlib.collections import PolyCollection

    ax = _axes(ax)
    found = list(getattr(notes, "notes", notes))
    boxes = [
        [(n.start, n.pitch - 0.4), (n.end, n.pitch - 0.4), (n.end, n.pitch + 0.4), (n.start, n.pitch + 0.4)]
        for n in found
    ]
    kwargs.setdefault("cmap", "Blues")
    kwargs.setdefault("edgecolor", "none")
    bars = PolyCollection(boxes, **kwargs)
    bars.set_array(np.array([n.velocity for n in found], dtype=float))
    bars.set_clim(0, 127)
    ax.add_collection(bars)
    pitches = [n.pitch for n in found] or [60]
    ax.set_ylim(min(pitches) - 2, max(pitches) + 2)
    ax.set_ylabel("MIDI note")
    return bars


def _mark_windows(clip: Clip, axes) -> None:
    """Window joins and loop points of a clip (from ``clip.extra``) on each of ``axes``."""
    joins = (clip.extra.get("windows") or {}).get("joins_s") or []
    loop = clip.extra.get("loop")
    for ax in axes:
        if joins:
            joinshow(joins, ax=ax)
        if loop:
            rate = clip.sample_rate
            loopshow(
                loop.get("start_sample", 0) / rate, loop.get("end_sample", len(clip.waveform)) / rate, ax=ax
            )


def melshow(
    data: np.ndarray,
    *,
    sr: int,
    hop_length: int = 160,
    n_mels: int = 64,
    fmin: float = 0.0,
    fmax: float | None = None,
    colorbar: bool = False,
    ax: Axes | None = None,
    **kwargs: Any,
) -> QuadMesh:
    """Draw a mel spectrogram: time in seconds, mel-spaced frequency axis labelled in Hz.

    Parameters
    ----------
    data : numpy.ndarray
        A mono waveform (1-D; its mel spectrogram in dB is computed with :func:`mel_db`) or a mel
        spectrogram already in dB, shaped ``(n_mels, frames)``.
    sr : int
        Sample rate in Hz.
    hop_length : int
        Samples between frames (AudioLDM: 160).
    n_mels : int
        Mel bands, used when ``data`` is a waveform.
    fmin, fmax : float
        Frequency range of the mel bands; ``fmax`` defaults to ``sr / 2``.
    colorbar : bool
        Add a colour bar in dB next to ``ax``.
    ax : matplotlib.axes.Axes, optional
        Where to draw; the current axes if omitted.
    **kwargs
        Passed to ``librosa.display.specshow`` (``cmap``, ``vmin``, ``vmax``...).

    Returns
    -------
    matplotlib.collections.QuadMesh

    Examples
    --------
    >>> import numpy as np
    >>> mesh = melshow(np.random.default_rng(0).standard_normal(16000), sr=16000, colorbar=True)
    >>> type(mesh).__name__
    'QuadMesh'
    """
    import librosa.display

    ax = _axes(ax)
    fmax = sr / 2 if fmax is None else fmax
    data = np.asarray(data, dtype=np.float32)
    mel = (
        mel_db(data, sr=sr, hop_length=hop_length, n_mels=n_mels, fmin=fmin, fmax=fmax)
        if data.ndim == 1
        else data
    )
    kwargs.setdefault("cmap", "magma")
    if data.ndim == 1:  # dB below the loudest bin: every such plot on the same 0 to -80 dB colours
        kwargs = {"vmin": -80.0, "vmax": 0.0, **kwargs}
    mesh = librosa.display.specshow(
        mel, sr=sr, hop_length=hop_length, x_axis="s", y_axis="mel", fmin=fmin, fmax=fmax, ax=ax, **kwargs
    )
    ax.set_xlabel("Time (s)")
    ax.set_ylabel("Frequency (Hz)")
    if colorbar:
        ax.figure.colorbar(mesh, ax=ax, format="%+2.0f dB")
    return mesh


def chromashow(
    data: np.ndarray,
    *,
    sr: int,
    hop_length: int = 512,
    colorbar: bool = False,
    ax: Axes | None = None,
    **kwargs: Any,
) -> QuadMesh:
    """Draw a chromagram: time in seconds against the 12 pitch classes (C at the bottom).

    Parameters
    ----------
    data : numpy.ndarray
        A mono waveform (its :func:`chroma` is computed) or a chromagram ``(12, frames)``.
    sr : int
        Sample rate in Hz.
    hop_length : int
        Samples between frames.
    colorbar : bool
        Add a colour bar (relative strength, 0 to 1).
    ax : matplotlib.axes.Axes, optional
        Where to draw; the current axes if omitted.
    **kwargs
        Passed to ``librosa.display.specshow`` (``cmap``...).

    Returns
    -------
    matplotlib.collections.QuadMesh

    Examples
    --------
    >>> t = np.arange(16000) / 16000
    >>> mesh = chromashow(np.sin(2 * np.pi * 440 * t), sr=16000)
    >>> mesh.axes.get_ylabel()
    'Pitch class'
    """
    import librosa.display

    ax = _axes(ax)
    data = np.asarray(data, dtype=np.float32)
    values = chroma(data, sr=sr, hop_length=hop_length) if data.ndim == 1 else data
    kwargs.setdefault("cmap", "Blues")
    mesh = librosa.display.specshow(
        values, sr=sr, hop_length=hop_length, x_axis="s", y_axis="chroma", ax=ax, vmin=0, vmax=1, **kwargs
    )
    ax.set_xlabel("Time (s)")
    ax.set_ylabel("Pitch class")
    if colorbar:
        ax.figure.colorbar(mesh, ax=ax)
    return mesh


def _new_figure(nrows: int, ncols: int, figsize: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    """A figure outside pyplot's state (safe in worker threads, never shown twice)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).reshape(-1)


def clip_figure(
    clip: Clip,
    *,
    figsize: tuple[float, float] | None = None,
    title: bool = True,
    beats: Any = None,
    chroma: bool = False,
    notes: Any = None,
) -> Figure:
    """Waveform above mel spectrogram (with a dB colour bar) of one clip; optionally beats and chroma.

    ``beats`` (seconds, e.g. ``mg.describe_audio(clip).beat_times``) are drawn as a grid on the
    waveform; ``chroma=True`` adds a chromagram below the spectrogram, ``notes`` (from
    :func:`mgtoolkit.transcribe`) a piano roll at the bottom. A clip made window by
    window shows its window joins (dashed), a loop its loop points (:func:`joinshow`, :func:`loopshow`).

    Returns a new :class:`matplotlib.figure.Figure` that belongs to no pyplot window; in a
    notebook it displays as the cell's result.

    Examples
    --------
    >>> import mgtoolkit as mg
    >>> clip = mg.generate("calm piano", seed=1, audio_length_in_s=1.0, num_inference_steps=2, model="tiny")
    >>> len(clip_figure(clip).axes)  # waveform, mel and its colour bar
    3
    """
    rows = 2 + bool(chroma) + (notes is not None)
    fig, axes = _new_figure(rows, 1, figsize or (6.0, 2.0 * rows))
    ax_wave, ax_mel = axes[0], axes[1]
    waveshow(clip.waveform, sr=clip.sample_rate, ax=ax_wave)
    if beats is not None and len(beats):
        beatshow(beats, ax=ax_wave)
    melshow(clip.waveform, sr=clip.sample_rate, ax=ax_mel, colorbar=True)
    if chroma:
        chromashow(clip.waveform, sr=clip.sample_rate, ax=axes[2], colorbar=True)
        axes[2].sharex(ax_mel)
    if notes is not None:
        pianoshow(notes, ax=axes[-1])
        axes[-1].sharex(ax_mel)
    _mark_windows(clip, (ax_wave, ax_mel))
    ax_wave.sharex(ax_mel)  # one time axis: the same ticks and limits above and below
    ax_wave.set_xlim(0.0, len(clip.waveform) / clip.sample_rate)
    if title:
        ax_wave.set_title(f"{_short(clip.prompt)}  ·  seed {clip.seed}", fontsize=9)
    return fig


def grid_figure(before: Any, after: Clip, *, figsize: tuple[float, float] = (7.0, 4.0)) -> Figure:
    """The beat grid before and after :func:`mgtoolkit.conform`: the beats heard on the original,
    and the exact grid of the result (bar lines thick, beats thin) over its waveform.

    ``before`` is the original audio (a clip or ``(y, sr)``); ``after`` the conformed clip.

    Examples
    --------
    >>> from mgtoolkit.analysis import conform, synth
    >>> groove = synth.drum_pattern(bpm=100, seconds=12)
    >>> len(grid_figure(groove, conform.conform(groove, bpm=104, bars=2)).axes)
    2
    """
    from ..io.features import estimate_tempo

    y, sr = (before.waveform, before.sample_rate) if hasattr(before, "waveform") else before
    record = after.extra["conform"]
    fig, (ax_before, ax_after) = _new_figure(2, 1, figsize)
    waveshow(np.asarray(y, dtype=np.float32), sr=sr, ax=ax_before)
    tempo, beats = estimate_tempo(np.asarray(y, dtype=np.float32), sr)
    beatshow(beats, ax=ax_before)
    ax_before.set_title(f"before: {tempo or 0:.1f} BPM, beats as heard", fontsize=9)
    waveshow(after.waveform, sr=after.sample_rate, ax=ax_after)
    beat_s = 60.0 / record["bpm"]
    grid = np.arange(0.0, after.duration - 1e-9, beat_s)
    bar = record["beats_per_bar"]
    beatshow(grid[::bar], ax=ax_after, linewidth=2.0, alpha=0.9, label="bars")
    beatshow([t for k, t in enumerate(grid) if k % bar], ax=ax_after)
    ax_after.set_xlim(0.0, after.duration)
    ax_after.set_title(
        f"after: exactly {record['bpm']:g} BPM, {record['bars']:g} bars from a downbeat", fontsize=9
    )
    return fig


def denoising_figure(
    snapshots: list[tuple[int, np.ndarray]],
    *,
    sr: int,
    hop_length: int = 160,
    total_steps: int | None = None,
    height: float = 2.4,
    titles: list[str] | None = None,
) -> Figure:
    """Mel spectrograms (dB, ``(n_mels, frames)``) side by side, one per denoising step.

    All panels share one colour scale, so the noise visibly settles into structure. ``titles``
    replaces the default "after step N of M" (N counted from 1) above each panel.

    Examples
    --------
    >>> import numpy as np
    >>> mels = [(0, np.zeros((64, 100))), (9, np.ones((64, 100)))]
    >>> len(denoising_figure(mels, sr=16000, total_steps=10).axes)
    3
    """
    fig, axes = _new_figure(1, len(snapshots), (2.6 * len(snapshots) + 1.0, height))
    low = min(float(np.min(m)) for _, m in snapshots)
    high = max(float(np.max(m)) for _, m in snapshots)
    mesh = None
    from matplotlib.ticker import MaxNLocator

    for i, (ax, (step, mel)) in enumerate(zip(axes, snapshots, strict=True)):
        mesh = melshow(mel, sr=sr, hop_length=hop_length, ax=ax, vmin=low, vmax=high)
        of = f" of {total_steps}" if total_steps else ""
        ax.set_title(titles[i] if titles else f"after step {step + 1}{of}", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=3, steps=[1, 2, 2.5, 5, 10]))  # small panels
        ax.tick_params(labelsize=7)
        if ax is not axes[0]:
            ax.set_ylabel("")
            ax.tick_params(labelleft=False)  # the same Hz axis as the first panel
    if mesh is not None:
        fig.colorbar(mesh, ax=list(axes), format="%+2.0f dB")
    return fig


def _short(text: str, limit: int = 70) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
