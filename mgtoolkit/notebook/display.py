"""IPython glue: see and hear clips inline.

:func:`show` draws each clip's waveform and mel spectrogram, adds an audio player and the prompt,
seed and model beneath; several clips sit side by side. The HTML is self-contained (the figure as
a PNG data URI, the audio as a WAV data URI), so it works the same in JupyterLab, Voilà, a panel's
Output widget and an exported notebook. IPython is imported only inside the functions that display.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..io.audio import audio_data_uri, player_html
from ..models.registry import DEFAULT_MODEL, PRESETS, default_model, resolve_model

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from ..types import Clip

__all__ = [
    "show",
    "clip_html",
    "clip_card_html",
    "clips_html",
    "figure_png",
    "about",
    "ModelNote",
    "denoising_titles",
]

_CSS = (
    "<style>.mg-clips{display:flex;flex-wrap:wrap;gap:12px}"
    ".mg-card{flex:1 1 260px;max-width:340px;min-width:0;box-sizing:border-box;border:1px solid #ddd;"
    "border-radius:6px;padding:6px;font-size:12px}"
    ".mg-card img{width:100%;height:auto}.mg-card audio{width:100%}"
    ".mg-meta{color:#444;margin-top:4px;word-break:break-word}</style>"
)


def _display(obj: Any) -> None:
    """``IPython.display.display``, or a clear error outside IPython."""
    try:
        from IPython.display import display
    except ImportError as exc:  # pragma: no cover - IPython comes with every Jupyter install
        raise ImportError("showing clips needs IPython: pip install 'mgtoolkit[notebook]'") from exc
    display(obj)


def _html(markup: str) -> Any:
    from IPython.display import HTML

    return HTML(markup)


def figure_png(fig: Figure, *, dpi: int = 80) -> bytes:
    """PNG bytes of a matplotlib figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _tr(lang: str, text: str, **fields: Any) -> str:
    """``text`` in ``lang`` (the studio's catalogue, loaded only for a language other than English)."""
    if lang == "en":
        return text.format(**fields) if fields else text
    from .widgets.catalogue import tr

    return tr(lang, text, **fields)


def clip_html(clip: Clip, *, lang: str = "en") -> str:
    """An ``<audio>`` player and a one-line caption for ``clip`` (what ``Clip._repr_html_`` shows),
    in ``lang`` (``"en"`` or ``"zh"``), and, for a translated prompt, the words the model received."""
    player = (
        clip._repr_html_()
        if lang == "en"
        else player_html(clip.waveform, clip.sample_rate, f"{clip.prompt} · {clip_summary(clip, lang)}")
    )
    return player + translation_html(clip, lang=lang)


def clip_summary(clip: Clip, lang: str = "en") -> str:
    """:meth:`Clip.summary` in ``lang``: seed, length, steps, guidance, model (and score)."""
    if lang == "en":
        return clip.summary()
    model = clip.model_info.get("name") or clip.request.model or ""
    parts = [
        _tr(lang, "seed {seed}", seed=clip.seed),
        _tr(lang, "{seconds} s", seconds=f"{clip.duration:.2f}"),
        _tr(lang, "{steps} steps", steps=clip.request.num_inference_steps),
        _tr(lang, "guidance {guidance}", guidance=f"{clip.request.guidance_scale:g}"),
        _tr(lang, "model {model}", model=model),
    ]
    if clip.score is not None:
        parts.append(_tr(lang, "score {score}", score=f"{clip.score:.3f}"))
    return " · ".join(parts)


def translation_html(clip: Clip, *, lang: str = "en") -> str:
    """The words the model received for each translated text of ``clip`` (its own words are the
    prompt shown beside), and the words the glossary did not know; ``""`` when nothing was translated."""
    lines = []
    for field, record in (clip.extra.get("translation") or {}).items():
        if not hasattr(record, "get"):
            continue
        named = _tr(lang, "prompt" if field == "prompt" else "negative")
        line = (
            f"<b>{html.escape(named)}</b> {html.escape(str(record.get('original', '')))} → "
            f"<b>{html.escape(_tr(lang, 'the model received'))}</b> "
            f'<span class="mg-sent">{html.escape(str(record.get("sent", "")))}</span>'
        )
        unknown = [str(w) for w in record.get("unknown") or ()]
        if unknown:
            line += (
                f"<br><b>{html.escape(_tr(lang, 'not understood, left out'))}</b> "
                f'<span class="mg-unknown">{html.escape(("、" if lang == "zh" else ", ").join(unknown))}</span>'
            )
        lines.append(line)
    return f'<div class="mg-translation"><small>{"<br>".join(lines)}</small></div>' if lines else ""


def _heard(clip: Clip):
    """Tempo, beats and key of ``clip`` (no tags), or ``None`` if it is too short or silent."""
    from ..analysis.describe import listen

    return listen(clip)


def clip_card_html(
    clip: Clip,
    *,
    plots: bool = True,
    title: str | None = None,
    chroma: bool = False,
    notes: bool = False,
    lang: str = "en",
) -> str:
    """One clip as a card: waveform (beat grid) + mel (+ chroma) image, player, prompt, tempo and key, seed, model."""
    heard = _heard(clip)
    parts = ['<div class="mg-card">']
    if title:
        parts.append(f"<b>{html.escape(title)}</b>")
    if plots:
        from .plots import clip_figure

        fig = clip_figure(
            clip,
            title=False,
            beats=heard.beat_times if heard else None,
            chroma=chroma,
            notes=_notes(clip, notes),
        )
        png = base64.b64encode(figure_png(fig)).decode("ascii")
        parts.append(
            f'<img class="mg-spectrogram" alt="{html.escape(_tr(lang, "waveform and mel spectrogram"))}" '
            f'src="data:image/png;base64,{png}">'
        )
    label = html.escape(
        f"{title + ': ' if title else ''}{clip.prompt} ({_tr(lang, 'seed {seed}', seed=clip.seed)})"
    )
    parts.append(
        f'<audio controls aria-label="{label}" src="{audio_data_uri(clip.waveform, clip.sample_rate)}"></audio>'
    )
    meta = f"<b>{html.escape(_tr(lang, 'prompt'))}</b> {html.escape(clip.prompt)}"
    if clip.request.negative_prompt:
        meta += f"<br><b>{html.escape(_tr(lang, 'negative'))}</b> {html.escape(clip.request.negative_prompt)}"
    strength = _strength(clip)
    if strength is not None:
        meta += (
            f"<br><b>{html.escape(_tr(lang, 'restyled'))}</b> "
            f"{html.escape(_tr(lang, 'strength {strength}', strength=f'{strength:g}'))}"
        )
    if heard:
        meta += f'<br><span class="mg-musical">{html.escape(_musical_line(heard, lang))}</span>'
    grid = grid_line(clip, lang)
    meta += f"<br>{html.escape(grid)}" if grid else ""
    meta += f"<br>{html.escape(clip_summary(clip, lang))}"
    parts.append(f'<div class="mg-meta">{meta}{translation_html(clip, lang=lang)}</div></div>')
    return "".join(parts)


def grid_line(clip: Clip, lang: str = "en") -> str:
    """The grid a clip was fitted to (``clip.extra["conform"]``): tempo, bars and key; or ``""``."""
    record = clip.extra.get("conform") or {}
    if not hasattr(record, "get") or not (record.get("bpm") or record.get("key")):
        return ""
    parts = []
    if record.get("bpm"):
        parts.append(
            _tr(
                lang,
                "grid: {bpm} BPM, {bars} bars of {beats}",
                bpm=f"{float(record['bpm']):g}",
                bars=record.get("bars"),
                beats=record.get("beats_per_bar") or 4,
            )
        )
    if record.get("key"):
        parts.append(_tr(lang, "key {key}", key=_key_name(str(record["key"]), lang)))
    return " · ".join(parts)


def _musical_line(heard: Any, lang: str) -> str:
    """Tempo and key heard in a clip (``about 120 BPM · A minor``), in ``lang``."""
    if lang == "en":
        return heard.musical_line()
    tempo = (
        _tr(lang, "about {bpm} BPM", bpm=f"{heard.tempo_bpm:.0f}")
        if heard.tempo_bpm is not None
        else _tr(lang, "no clear beat")
    )
    key = _key_name(heard.key_name, lang) if heard.key_name else _tr(lang, "no clear key")
    return f"{tempo} · {key}"


def _key_name(key: str, lang: str) -> str:
    if lang != "zh" or " " not in key:
        return key
    tonic, mode = key.split(" ", 1)
    return f"{tonic} {'大调' if mode == 'major' else '小调' if mode == 'minor' else mode}"


def _notes(clip: Clip, wanted: bool):
    """The clip's transcribed notes for a piano roll (:func:`mgtoolkit.transcribe`), if ``wanted``."""
    if not wanted:
        return None
    from ..io.midi import transcribe

    return transcribe(clip)


def _strength(clip: Clip) -> float | None:
    """The restyle strength that made ``clip``, if it was restyled."""
    restyle = clip.extra.get("restyle") or {}
    value = restyle.get("strength") if hasattr(restyle, "get") else None
    return None if value is None else float(value)


def _as_clip(item: Any) -> Clip:
    """A clip, or the ``.clip`` of a Story-like result."""
    return item if hasattr(item, "waveform") else item.clip


def _as_list(clip_or_clips: Any) -> list[Clip]:
    if hasattr(clip_or_clips, "waveform") or hasattr(clip_or_clips, "clip"):
        return [_as_clip(clip_or_clips)]
    return [_as_clip(item) for item in clip_or_clips]


def _card_title(clip: Clip, index: int, lang: str = "en") -> str:
    """``#1``, ``#2``, ...; the best of ranked candidates is marked (``#1 · best · score 0.312``)."""
    if clip.score is None:
        return f"#{index + 1}"
    best = f" · {_tr(lang, 'best')}" if clip.extra.get("rank") == 1 else ""
    return f"#{index + 1}{best} · {_tr(lang, 'score {score}', score=f'{clip.score:.3f}')}"


def clips_html(
    clip_or_clips: Clip | Iterable[Clip],
    *,
    plots: bool = True,
    chroma: bool = False,
    notes: bool = False,
    lang: str = "en",
) -> str:
    """The HTML :func:`show` displays: cards side by side, wrapping on narrow screens."""
    clips = _as_list(clip_or_clips)
    titled = len(clips) > 1
    cards = [
        clip_card_html(
            c,
            plots=plots,
            title=_card_title(c, i, lang) if titled else None,
            chroma=chroma,
            notes=notes,
            lang=lang,
        )
        for i, c in enumerate(clips)
    ]
    return f'{_CSS}<div class="mg-clips">{"".join(cards)}</div>'


def show(
    clip_or_clips: Clip | Iterable[Clip], *, plots: bool = True, chroma: bool = False, notes: bool = False
) -> None:
    """Show clips inline: waveform and mel spectrogram, a player, and prompt/seed/model beneath.

    Parameters
    ----------
    clip_or_clips : Clip, Story (anything with a ``.clip``), or a list of them
        Several clips are shown side by side, e.g. the candidates of one prompt or seeds 1-4.
    plots : bool
        Draw the waveform (with its beat grid) and mel spectrogram (``False``: players only, faster).
    chroma : bool
        Add a chromagram (the pitch classes the key is read from). Tempo and key are named under
        each player.
    notes : bool
        Add a piano roll of the notes heard (:func:`mgtoolkit.transcribe`; the ``midi`` extra).

    Examples
    --------
    >>> import mgtoolkit as mg
    >>> clips = mg.generate("calm piano", num_waveforms_per_prompt=2, seed=1, audio_length_in_s=1.0,
    ...                     num_inference_steps=2, model="tiny")
    >>> mg.show(clips)  # doctest: +SKIP
    """
    _display(_html(clips_html(clip_or_clips, plots=plots, chroma=chroma, notes=notes)))


def denoising_titles(steps: list[int], total: int) -> list[str]:
    """Panel titles that use the numbers passed as ``steps_to_show`` (from 0).

    Examples
    --------
    >>> denoising_titles([0, 19], 20)
    ['steps_to_show 0: 1 of 20 done', 'steps_to_show 19: 20 of 20 done']
    """
    return [f"steps_to_show {step}: {step + 1} of {total} done" for step in steps]


class ModelNote(str):
    """A string that shows as plain text (no quotes) as a cell's result."""

    def __repr__(self) -> str:
        return str(self)


def about(model: str | None = None) -> ModelNote:
    """Say which model is live and what its output will sound like.

    Put it at the top of a notebook so nobody mistakes the ``tiny`` model's noise for a bug.

    Examples
    --------
    >>> print(about("tiny"))  # doctest: +ELLIPSIS
    Live model: tiny ...
    """
    name = model or default_model()
    origin = "set by MGTOOLKIT_MODEL" if model is None and name != DEFAULT_MODEL else "default"
    if model is not None:
        origin = "chosen here"
    spec = resolve_model(name)
    if spec.is_tiny:
        return ModelNote(
            f"Live model: tiny ({origin}). Random weights for tests: every clip is noise by "
            "design, not a bug. Unset MGTOOLKIT_MODEL to hear real music."
        )
    size = f", about {spec.size_gb:g} GB, downloaded once on first use" if spec.size_gb else ""
    what = PRESETS[spec.name].description if spec.name in PRESETS else spec.source
    return ModelNote(f"Live model: {spec.name} ({origin}): {what}{size}. Weights license: {spec.license}.")
