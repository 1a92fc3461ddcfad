"""What happens inside a generation, as data, for the lessons in ``notebooks/``.

- The mel spectrogram at chosen denoising steps: the latents the step callback hands over are
  decoded with the pipeline's own VAE (``pipe.decode_latents``), exactly as the final step is, so a
  class can watch noise turn into music.
- The *predicted clean sample* at those steps (what the model thinks the finished clip is, the
  HF Diffusion Models Class's picture), as a mel and as audio through the vocoder.
- Beat clicks mixed over a clip (``librosa.clicks``), to hear what the beat tracker found.
- A timed comparison: several settings of one prompt, each clip with the seconds it took.

Drawing lives in :mod:`mgtoolkit.notebook.plots`; only :func:`show_predicted_clean` draws, through it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..types import Clip

__all__ = [
    "Denoising",
    "denoise_with_snapshots",
    "denoising_snapshots",
    "show_denoising",
    "decode_mel",
    "ddim_predicted_clean",
    "show_predicted_clean",
    "beat_clicks",
    "key_candidates",
    "Timed",
    "Comparison",
    "compare",
]

_LOG_TO_DB = 20.0 / math.log(10.0)  # AudioLDM's mel is the natural log of magnitude
TOP_DB = 80.0
"""Dynamic range of the snapshots, as :func:`mgtoolkit.plots.mel_db`'s ``top_db``."""


@dataclass(frozen=True)
class Denoising:
    """One generation and the mel spectrograms seen along the way.

    Attributes
    ----------
    clip : Clip
        The finished clip.
    snapshots : list of (int, numpy.ndarray)
        ``(step, mel)`` with ``step`` counted from 0 and ``mel`` in dB below its loudest bin (0 to -80),
        shaped ``(n_mels, frames)``: the colour scale of every other mel plot.
    sample_rate, hop_length : int
        What the mel frames are measured in (for :func:`mgtoolkit.plots.melshow`).
    clean : list of (int, numpy.ndarray)
        ``(step, mel)`` of the *predicted clean sample* at the same steps (same dB scale), where the
        sampler is DDIM (the model's own); empty for other samplers.
    clean_clips : list of Clip
        Those predicted clean samples as audio (VAE, then vocoder), each a copy of ``clip`` with
        another waveform and ``extra["predicted_clean_at_step"]``.
    """

    clip: Clip
    snapshots: list[tuple[int, np.ndarray]]
    sample_rate: int
    hop_length: int
    clean: list[tuple[int, np.ndarray]] = field(default_factory=list)
    clean_clips: list[Clip] = field(default_factory=list)

    @property
    def total_steps(self) -> int:
        return self.clip.request.num_inference_steps


def _decode(loaded: Any, latents: np.ndarray, *, audio: bool = False):
    """The first candidate's latents through the VAE: its log mel ``[1, 1, frames, n_mels]`` and,
    with ``audio``, the vocoder's waveform (numpy, float32)."""
    from ..runtime import import_paddle

    paddle = import_paddle()
    pipe = loaded.pipe
    with paddle.no_grad():
        tensor = paddle.to_tensor(np.asarray(latents[:1])).cast(pipe.vae.dtype)
        mel = pipe.decode_latents(tensor)  # [1, 1, frames, n_mels], log magnitude
        wave = pipe.mel_spectrogram_to_waveform(mel).numpy()[0] if audio else None
    return mel.cast("float32").numpy(), wave


def _mel_db(log_mel: np.ndarray) -> np.ndarray:
    db = log_mel[0, 0].T * _LOG_TO_DB
    # referenced to its loudest bin and floored at -TOP_DB, like every other mel plot (mel_db)
    return np.maximum(db - float(np.max(db)), -TOP_DB).astype(np.float32)


def decode_mel(loaded: Any, latents: np.ndarray) -> np.ndarray:
    """Decode latents (``[batch, C, H, W]``) of the first candidate to a mel in dB, ``(n_mels, frames)``.

    ``loaded`` is what :func:`mgtoolkit.load_model` returns.
    """
    return _mel_db(_decode(loaded, latents)[0])


def ddim_predicted_clean(
    sample: np.ndarray, prev_sample: np.ndarray, alpha_prod_t: float, alpha_prod_t_prev: float
) -> np.ndarray:
    """The clean sample x0 that one deterministic DDIM step (``eta=0``) predicted, from its input and output.

    A DDIM step writes ``sample = sqrt(a) x0 + sqrt(1 - a) eps`` and
    ``prev_sample = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps`` with the same ``x0`` and ``eps``
    (``a`` is the cumulative alpha, ᾱ, at the step's timestep and ``a_prev`` at the next one). Two
    equations, two unknowns: this solves them for ``x0``, which is the scheduler's
    ``pred_original_sample`` (``x0 = (x_t - sqrt(1 - ᾱ_t) eps) / sqrt(ᾱ_t)``), whatever the model
    predicts (epsilon or v) and with guidance already applied.

    Examples
    --------
    >>> x0, eps = np.array([0.5]), np.array([-1.0])
    >>> x_t = np.sqrt(0.3) * x0 + np.sqrt(0.7) * eps
    >>> x_prev = np.sqrt(0.6) * x0 + np.sqrt(0.4) * eps
    >>> float(ddim_predicted_clean(x_t, x_prev, 0.3, 0.6)[0])
    0.5
    """
    a, b = math.sqrt(alpha_prod_t), math.sqrt(1.0 - alpha_prod_t)
    c, d = math.sqrt(alpha_prod_t_prev), math.sqrt(1.0 - alpha_prod_t_prev)
    x_t, x_prev = np.asarray(sample, np.float64), np.asarray(prev_sample, np.float64)
    return ((d * x_t - b * x_prev) / (a * d - b * c)).astype(np.float32)


def _ddim_alphas(loaded: Any, num_inference_steps: int) -> list[tuple[float, float]] | None:
    """``(ᾱ_t, ᾱ_prev)`` of each step of the model's own DDIM scheduler; ``None`` if it is not DDIM."""
    scheduler = loaded.pipe.scheduler
    if type(scheduler).__name__ != "DDIMScheduler":
        return None
    fresh = type(scheduler).from_config(scheduler.config)
    fresh.set_timesteps(num_inference_steps)
    cumprod = np.asarray(fresh.alphas_cumprod.numpy(), dtype=np.float64)
    final = float(np.asarray(fresh.final_alpha_cumprod.numpy()).reshape(-1)[0])
    stride = fresh.config.num_train_timesteps // num_inference_steps
    pairs = []
    for t in (int(t) for t in fresh.timesteps.numpy()):
        prev = t - stride
        pairs.append((float(cumprod[t]), float(cumprod[prev]) if prev >= 0 else final))
    return pairs


def _check_steps(steps_to_show: tuple[int, ...], num_inference_steps: int) -> tuple[int, ...]:
    steps = tuple(sorted({int(s) for s in steps_to_show}))
    if not steps or steps[0] < 0 or steps[-1] >= num_inference_steps:
        raise InvalidInputError(
            "steps_to_show",
            steps_to_show,
            f"must name steps between 0 and {num_inference_steps - 1}",
            f"pass e.g. (0, {num_inference_steps // 2}, {num_inference_steps - 1})",
        )
    return steps


def _clean_of(loaded: Any, clip: Clip, pairs: dict[int, tuple], alphas: list[tuple[float, float]]):
    """Decode the predicted clean sample of each kept ``step: (latents before, latents after)``."""
    from ..models.audioldm import initial_latents

    mels, clips = [], []
    for step, (before, after) in sorted(pairs.items()):
        if before is None:  # step 0 starts from the seed's noise (DDIM's init_noise_sigma is 1)
            before = initial_latents(after.shape[1:], [clip.seed])
        x0 = ddim_predicted_clean(before[:1], after[:1], *alphas[step])
        log_mel, wave = _decode(loaded, x0, audio=True)
        mels.append((step, _mel_db(log_mel)))
        wave = np.clip(np.asarray(wave, np.float32).reshape(-1)[: clip.waveform.shape[0]], -1.0, 1.0)
        extra = {**clip.extra, "predicted_clean_at_step": step}
        clips.append(dataclasses.replace(clip, waveform=wave, extra=extra, score=None))
    return mels, clips


def denoise_with_snapshots(
    prompt: str,
    *,
    steps_to_show: tuple[int, ...] = (0, 5, 10, 19),
    num_inference_steps: int = 20,
    **generate_kwargs: Any,
) -> Denoising:
    """Generate one clip and keep, after each of ``steps_to_show``, the decoded mel spectrogram
    and (DDIM only) the predicted clean sample.

    Parameters
    ----------
    prompt : str
        What the music should be.
    steps_to_show : tuple of int
        Denoising steps (from 0) to decode; each must be below ``num_inference_steps``.
    num_inference_steps : int
        Denoising steps of the generation.
    **generate_kwargs
        Anything else :func:`mgtoolkit.generate` takes (``seed``, ``guidance_scale``, ``model``...).
        With ``scheduler`` other than the model's DDIM, ``clean`` stays empty.

    Examples
    --------
    >>> run = denoise_with_snapshots("calm piano", steps_to_show=(0, 3), num_inference_steps=4,
    ...                              audio_length_in_s=1.0, seed=1, model="tiny")
    >>> [step for step, _ in run.snapshots], run.snapshots[0][1].shape
    ([0, 3], (64, 100))
    >>> [step for step, _ in run.clean], run.clean_clips[0].waveform.shape
    ([0, 3], (16000,))
    """
    from ..models.loading import use_model
    from ..tasks.text import generate

    steps = _check_steps(steps_to_show, num_inference_steps)
    generate_kwargs.pop("num_waveforms_per_prompt", None)
    loaded = use_model(
        generate_kwargs.get("model"), device=generate_kwargs.get("device"), dtype=generate_kwargs.get("dtype")
    )
    plain = not generate_kwargs.get("scheduler") and not generate_kwargs.get("loop")  # loops roll the latents
    alphas = _ddim_alphas(loaded, num_inference_steps) if plain else None
    snapshots: list[tuple[int, np.ndarray]] = []
    pairs: dict[int, tuple] = {}
    last: list[np.ndarray | None] = [None]  # the latents of the step before
    user_callback = generate_kwargs.pop("callback", None)

    def keep(step: int, total: int, latents: np.ndarray) -> None:
        if step in steps:
            snapshots.append((step, decode_mel(loaded, latents)))
            pairs[step] = (last[0], np.array(latents[:1]))
        last[0] = np.array(latents[:1]) if alphas and step + 1 in steps else None
        if user_callback is not None:
            user_callback(step, total, latents)

    clip = generate(prompt, num_inference_steps=num_inference_steps, callback=keep, **generate_kwargs)
    clean, clean_clips = _clean_of(loaded, clip, pairs, alphas) if alphas else ([], [])
    return Denoising(clip, snapshots, loaded.sample_rate, loaded.hop_length, clean, clean_clips)


def denoising_snapshots(
    prompt: str, *, steps_to_show: tuple[int, ...] = (0, 5, 10, 19), **generate_kwargs: Any
) -> list[tuple[int, np.ndarray]]:
    """Only the ``(step, mel dB)`` pairs of :func:`denoise_with_snapshots`."""
    return denoise_with_snapshots(prompt, steps_to_show=steps_to_show, **generate_kwargs).snapshots


def predicted_clean_figure(run: Denoising, *, height: float = 4.4):
    """Two rows of mels on one colour scale: the current sample (top) and the predicted clean
    sample (bottom) after each step of ``run.clean``."""
    from .plots import _new_figure, melshow

    steps = [step for step, _ in run.clean]
    current = [mel for step, mel in run.snapshots if step in steps]
    fig, axes = _new_figure(2, len(steps), (2.6 * len(steps) + 1.0, height))
    mesh = None
    for i, (step, clean) in enumerate(run.clean):
        for row, (mel, what) in enumerate(((current[i], "current"), (clean, "predicted clean"))):
            ax = axes[row * len(steps) + i]
            mesh = melshow(mel, sr=run.sample_rate, hop_length=run.hop_length, ax=ax, vmin=-TOP_DB, vmax=0.0)
            ax.set_title(f"{what}, after step {step + 1} of {run.total_steps}", fontsize=8)
            ax.tick_params(labelsize=7)
            if i:
                ax.set_ylabel("")
    if mesh is not None:
        fig.colorbar(mesh, ax=list(axes), format="%+2.0f dB")
    return fig


def show_predicted_clean(
    prompt: str,
    *,
    steps_to_show: tuple[int, ...] = (0, 5, 10, 19),
    num_inference_steps: int = 20,
    **generate_kwargs: Any,
) -> Denoising:
    """Show, after each of ``steps_to_show``, the current sample beside the predicted clean one,
    with a player for each predicted clean sample; returns the :class:`Denoising` it drew.

    Examples
    --------
    >>> run = show_predicted_clean("calm piano", steps_to_show=(0, 1), num_inference_steps=2,
    ...                            audio_length_in_s=1.0, seed=1, model="tiny")  # doctest: +SKIP
    """
    import base64

    from .display import _CSS, _display, _html, clip_card_html, figure_png

    for name in ("scheduler", "loop"):  # only DDIM without rolling the latents has one to show
        if generate_kwargs.get(name):
            raise InvalidInputError(
                name, generate_kwargs[name], "leaves no predicted clean sample to show", f"leave {name} out"
            )
    run = denoise_with_snapshots(
        prompt, steps_to_show=steps_to_show, num_inference_steps=num_inference_steps, **generate_kwargs
    )
    if not run.clean:
        model = generate_kwargs.get("model")
        raise InvalidInputError("model", model, "does not sample with DDIM", "use an AudioLDM model")
    png = base64.b64encode(figure_png(predicted_clean_figure(run))).decode("ascii")
    cards = "".join(
        clip_card_html(c, plots=False, title=f"predicted clean after step {s + 1} of {run.total_steps}")
        for (s, _), c in zip(run.clean, run.clean_clips, strict=True)
    )
    _display(
        _html(
            f'{_CSS}<img alt="current and predicted clean mel spectrograms at several steps" '
            f'style="max-width:100%" src="data:image/png;base64,{png}"><div class="mg-clips">{cards}</div>'
        )
    )
    return run


# --- listening: the beat tracker, the key ------------------------------------------------------------


def beat_clicks(clip: Clip, *, tempo_factor: float = 1.0, volume: float = 0.5) -> Clip:
    """The clip with a click on every beat the tracker found, to hear whether it found the pulse.

    Parameters
    ----------
    clip : Clip
        What to click over.
    tempo_factor : float
        ``1`` clicks the beats found; ``2`` adds a click halfway between them (double tempo);
        ``0.5`` keeps every other one (half tempo). A tracker often lands on half or double the
        tempo a musician would count; hear which one fits.
    volume : float
        Peak level of the clicks (0 to 1), mixed over the clip; the mix is scaled down if it would clip.

    Returns
    -------
    Clip
        A copy with the clicks mixed in and ``extra["beat_clicks"]``: the beat times clicked and the
        tempo they make (``None`` and no clicks when there is no clear pulse, as with ``tiny``'s noise).

    Examples
    --------
    >>> import numpy as np, mgtoolkit as mg
    >>> sr = 16000
    >>> pulse = np.zeros(4 * sr, np.float32); pulse[:: sr // 2] = 1.0          # 120 BPM clicks
    >>> clip = mg.Clip(waveform=pulse, sample_rate=sr, seed=0, request=mg.GenerationRequest(prompt="pulse"))
    >>> round(beat_clicks(clip).extra["beat_clicks"]["tempo_bpm"])
    120
    """
    import librosa

    from ..io.features import estimate_tempo

    if tempo_factor not in (0.5, 1.0, 2.0):
        raise InvalidInputError(
            "tempo_factor", tempo_factor, "must be 0.5, 1 or 2", "pass 2 to hear double tempo"
        )
    if not 0.0 <= volume <= 1.0:
        raise InvalidInputError("volume", volume, "must be between 0 and 1", "pass e.g. 0.5")
    from ..analysis.describe import ANALYSIS_RATE

    tempo, beats = estimate_tempo(_as_described(clip), ANALYSIS_RATE)  # as describe_audio hears it
    beats = np.asarray(beats, dtype=np.float64)
    if tempo is not None and tempo_factor == 2.0:
        beats = np.sort(np.concatenate([beats, (beats[:-1] + beats[1:]) / 2]))
    elif tempo is not None and tempo_factor == 0.5:
        beats = beats[::2]
    y = np.asarray(clip.waveform, dtype=np.float32)
    if tempo is not None and beats.size:
        clicks = librosa.clicks(times=beats, sr=clip.sample_rate, length=y.shape[0]).astype(np.float32)
        y = y + volume * clicks / max(float(np.max(np.abs(clicks))), 1e-9)
        y = y / max(1.0, float(np.max(np.abs(y))))
    record = {
        "tempo_bpm": None if tempo is None else round(tempo * tempo_factor, 2),
        "tempo_factor": tempo_factor,
        "beat_times": [round(float(t), 3) for t in beats] if tempo is not None else [],
    }
    return dataclasses.replace(
        clip, waveform=y.astype(np.float32), extra={**clip.extra, "beat_clicks": record}
    )


def _as_described(clip: Clip) -> np.ndarray:
    """The clip as :func:`mgtoolkit.describe_audio` analyses it: mono at its analysis rate."""
    from ..analysis.describe import ANALYSIS_RATE, MAX_DESCRIBE_S, MIN_DESCRIBE_S
    from ..io.audio import load_audio

    return load_audio(clip, ANALYSIS_RATE, min_s=MIN_DESCRIBE_S, max_s=MAX_DESCRIBE_S)


def key_candidates(clip: Clip, *, top: int = 3) -> list[tuple[str, float]]:
    """The ``top`` keys whose Krumhansl-Kessler profile best matches the clip's mean chroma, with
    their correlation (1 is a perfect match), best first: how sure the key is.

    A minor and C major share their seven notes, so their scores are often close; a winner by a
    few hundredths is a guess. An empty list when the chroma is flat (noise, drums only).

    Examples
    --------
    >>> import numpy as np, mgtoolkit as mg
    >>> sr, t = 16000, np.arange(3 * 16000) / 16000
    >>> chord = sum(np.sin(2 * np.pi * f * t) for f in (261.63, 329.63, 392.0)).astype(np.float32) / 4
    >>> clip = mg.Clip(waveform=chord, sample_rate=sr, seed=0, request=mg.GenerationRequest(prompt="C"))
    >>> key_candidates(clip)[0][0]
    'C major'
    """
    import warnings

    import librosa

    from ..analysis.describe import ANALYSIS_RATE
    from ..io.features import _MAJOR_PROFILE, _MINOR_PROFILE, PITCH_CLASSES, _at_most, estimate_key

    y = _as_described(clip)  # the rate describe_audio analyses at, so the two agree
    if estimate_key(y, ANALYSIS_RATE)[0] is None:
        return []
    y, sr = _at_most(y, ANALYSIS_RATE, 22050)
    with warnings.catch_warnings():  # as estimate_key: short clips warn about the lowest octaves
        warnings.simplefilter("ignore", UserWarning)
        chroma = librosa.feature.chroma_cqt(y=y, sr=sr, hop_length=512).mean(axis=1)
    scores = [
        (f"{PITCH_CLASSES[tonic]} {mode}", float(np.corrcoef(chroma, np.roll(profile, tonic))[0, 1]))
        for mode, profile in (("major", _MAJOR_PROFILE), ("minor", _MINOR_PROFILE))
        for tonic in range(12)
    ]
    return [(name, round(r, 3)) for name, r in sorted(scores, key=lambda s: -s[1])[:top]]


# --- comparisons with their times ---------------------------------------------------------------------


@dataclass(frozen=True)
class Timed:
    """One setting of a comparison: its label, the clip, and the seconds the call took."""

    label: str
    clip: Clip
    seconds: float


@dataclass(frozen=True)
class Comparison:
    """Clips of one prompt under several settings, in the order given; shows as a small table."""

    rows: tuple[Timed, ...]

    @property
    def clips(self) -> list[Clip]:
        return [row.clip for row in self.rows]

    def __repr__(self) -> str:
        width = max(len(row.label) for row in self.rows)
        lines = [f"{'setting':<{width}}  seconds  steps  guidance  sampler"]
        for row in self.rows:
            r = row.clip.request
            lines.append(
                f"{row.label:<{width}}  {row.seconds:7.2f}  {r.num_inference_steps:5d}  "
                f"{r.guidance_scale:8g}  {r.scheduler or 'ddim'}"
            )
        return "\n".join(lines)


def compare(prompt: str, settings: Mapping[str, Mapping[str, Any]], **common: Any) -> Comparison:
    """Make ``prompt`` once per entry of ``settings`` (label -> keyword arguments), timing each call.

    ``common`` holds what all share (``seed``, ``audio_length_in_s``...), so only the setting
    differs. The model is loaded before the first timed call, so no row pays for loading.

    Examples
    --------
    >>> runs = compare("calm piano", {"DDIM, 4 steps": {"num_inference_steps": 4},
    ...                               "DPM++, 2 steps": {"scheduler": "dpm++", "num_inference_steps": 2}},
    ...                audio_length_in_s=1.0, seed=3, model="tiny")
    >>> [row.label for row in runs.rows], [c.request.num_inference_steps for c in runs.clips]
    (['DDIM, 4 steps', 'DPM++, 2 steps'], [4, 2])
    """
    from ..tasks.text import generate, load_model

    if not settings:
        raise InvalidInputError(
            "settings", settings, "is empty", 'pass e.g. {"20 steps": {"num_inference_steps": 20}}'
        )
    load_model(common.get("model"), device=common.get("device"))
    rows = []
    for label, setting in settings.items():
        start = time.perf_counter()
        clip = generate(prompt, **{**common, **setting, "num_waveforms_per_prompt": 1})
        rows.append(Timed(str(label), clip, time.perf_counter() - start))
    return Comparison(tuple(rows))


def show_denoising(
    prompt: str,
    *,
    steps_to_show: tuple[int, ...] = (0, 5, 10, 19),
    num_inference_steps: int = 20,
    **generate_kwargs: Any,
) -> None:
    """Watch noise turn into music: the mel spectrogram after several denoising steps of one generation.

    Parameters
    ----------
    prompt : str
        What the music should be.
    steps_to_show : tuple of int
        Steps (from 0) to decode and draw; each below ``num_inference_steps``.
    num_inference_steps : int
        Denoising steps of the generation.
    **generate_kwargs
        Anything :func:`mgtoolkit.generate` takes (``seed``, ``guidance_scale``, ``negative_prompt``,
        ``audio_length_in_s``, ``model``...).

    Examples
    --------
    >>> import mgtoolkit as mg
    >>> mg.show_denoising("calm piano", steps_to_show=(0, 3), num_inference_steps=4,
    ...                   audio_length_in_s=1.0, seed=1, model="tiny")  # doctest: +SKIP
    """
    import base64

    from .display import _CSS, _display, _html, clip_html, denoising_titles, figure_png
    from .plots import denoising_figure

    run = denoise_with_snapshots(
        prompt, steps_to_show=steps_to_show, num_inference_steps=num_inference_steps, **generate_kwargs
    )
    fig = denoising_figure(
        run.snapshots,
        sr=run.sample_rate,
        hop_length=run.hop_length,
        total_steps=run.total_steps,
        titles=denoising_titles([step for step, _ in run.snapshots], run.total_steps),
    )
    png = base64.b64encode(figure_png(fig)).decode("ascii")
    _display(
        _html(
            f'{_CSS}<img class="mg-denoising" alt="mel spectrogram at several denoising steps" '
            f'style="max-width:100%" src="data:image/png;base64,{png}">{clip_html(run.clip)}'
        )
    )
