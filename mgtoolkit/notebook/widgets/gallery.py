"""The history gallery: every clip of this kernel with its player, parameters, Save (inside a save
root, in the format, rate and loudness picked above the list) and "Use these settings"."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from ...errors import InvalidInputError
from ...types import Clip
from ..display import clip_html, grid_line
from ..history import History
from .catalogue import resolve_lang, tr
from .controls import _no_null_tooltips, _short, _tip
from .messages import panel_message

__all__ = ["ExportChoice", "HistoryGallery"]


class HistoryGallery(widgets.VBox):
    """Everything made since the kernel started: replay, parameters, save/download, reuse settings.

    Parameters
    ----------
    history : History
        The clips to list (newest first).
    on_reuse : callable, optional
        Called with a clip when its "Use these settings" button is pressed.
    out_dir : str
        Default folder for Save, inside ``save_root``.
    save_root : str or Path, optional
        The only folder (with its subfolders) Save may write into; the working directory by default.
        Paths outside it (``..``, absolute paths elsewhere, symlinks leading out) are refused.
    save_box : bool, optional
        Show the "Save to" box; ``False`` keeps every file in ``out_dir``. By default it is shown
        in Jupyter and hidden when Voilà serves the page (a visitor cannot pick folders).

    Save writes what :attr:`export` is set to: format (16-bit WAV, 24-bit FLAC, Ogg Vorbis, MP3),
    sample rate (the model's, 44.1 or 48 kHz, resampled with soxr) and loudness (as made, or
    normalised to -14/-16/-23 LUFS with a -1 dBTP ceiling), as :meth:`mgtoolkit.Clip.save` does,
    and with "MIDI too" the clip's notes beside it (:meth:`mgtoolkit.Clip.to_midi`; the ``midi``
    extra). ``lang``: the language of its labels and messages (as for :class:`Studio`).
    """

    def __init__(
        self,
        history: History,
        *,
        on_reuse: Callable[[Clip], None] | None = None,
        on_extend: Callable[[Clip], None] | None = None,
        out_dir: str = "outputs",
        save_root: str | os.PathLike | None = None,
        save_box: bool | None = None,
        lang: str | None = None,
    ) -> None:
        self.lang = lang = resolve_lang(lang)
        self.history = history
        self.on_reuse = on_reuse
        self.on_extend = on_extend
        self.save_root = Path(save_root if save_root is not None else os.getcwd()).resolve()
        self.title = widgets.HTML()
        self.out_dir = _tip(
            widgets.Text(
                value=out_dir,
                description=tr(lang, "Save to"),
                style={"description_width": "70px"},
                layout=widgets.Layout(width="95%", max_width="520px"),
            ),
            tr(lang, "a folder inside {root}", root=self.save_root),
        )
        self.out_dir.layout.display = None if _show_save_box(save_box) else "none"
        self.export = ExportChoice(lang=lang)
        self.items = widgets.VBox()
        self._rows: dict[int, widgets.Widget] = {}
        self._saved: dict[tuple, Path] = {}
        super().__init__([self.title, self.out_dir, self.export, self.items])
        self.add_class("mg-gallery")
        _no_null_tooltips(self)
        history.subscribe(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the list from the history (rows already built are reused, forgotten ones dropped)."""
        clips = list(self.history.clips)
        alive = {id(c) for c in clips}
        for key in [k for k in self._rows if k not in alive]:
            _close_tree(self._rows.pop(key))  # the clip, its player and its WAV data go with it
            self._saved = {k: v for k, v in self._saved.items() if k[0] != key}
        title = (
            "History: 1 clip made in this kernel"
            if len(clips) == 1
            else "History: {n} clips made in this kernel"
        )
        self.title.value = f"<h4>{html.escape(tr(self.lang, title, n=len(clips)))}</h4>"
        self.items.children = [self._row(c) for c in reversed(clips)]

    def _row(self, clip: Clip) -> widgets.Widget:
        if id(clip) not in self._rows:
            saved = widgets.HTML()
            t = self._t
            shown = _short(clip.prompt, 30)
            what = t(
                "{prompt}, seed {seed}", prompt=shown if self.lang == "zh" else repr(shown), seed=clip.seed
            )
            save = _tip(
                widgets.Button(description=t("Save"), icon="download", layout=widgets.Layout(width="auto")),
                t("save the clip {what} in the format picked above, with its JSON sidecar", what=what),
            )
            reuse = _tip(
                widgets.Button(
                    description=t("Use these settings"), icon="redo", layout=widgets.Layout(width="auto")
                ),
                t("put the prompt and settings of {what} into the Text → music tab", what=what),
            )
            extend = _tip(
                widgets.Button(
                    description=t("Extend +10 s"), icon="forward", layout=widgets.Layout(width="auto")
                ),
                t(
                    "continue {what} by 10 s in the Text → music tab (the clip itself stays as it is)",
                    what=what,
                ),
            )
            save.on_click(lambda _b: self._save(clip, saved))
            reuse.on_click(lambda _b: self._reuse(clip, saved))
            extend.on_click(lambda _b: self._extend(clip, saved))
            params = widgets.HTML(f"<small>{html.escape(_params_line(clip, self.lang))}</small>")
            buttons = widgets.HBox([save, reuse] + ([extend] if self.on_extend is not None else []))
            buttons.add_class("mg-wrap")
            self._rows[id(clip)] = widgets.VBox(
                [widgets.HTML(clip_html(clip, lang=self.lang)), params, buttons, saved],
                layout=widgets.Layout(border="1px solid #ddd", padding="4px", margin="2px"),
            )
            _no_null_tooltips(self._rows[id(clip)])
        return self._rows[id(clip)]

    def _t(self, text: str, **fields: Any) -> str:
        return tr(self.lang, text, **fields)

    def folder(self) -> Path:
        """The folder Save writes into: ``out_dir`` resolved inside the save root, or an error."""
        typed = (self.out_dir.value or "outputs").strip() or "outputs"
        target = Path(typed).expanduser()
        target = (target if target.is_absolute() else self.save_root / target).resolve()
        if target != self.save_root and self.save_root not in target.parents:
            raise InvalidInputError(
                "Save to",
                typed,
                self._t("is outside the folder this studio may write to ({root})", root=self.save_root),
                self._t("type a folder inside it, e.g. outputs"),
            )
        return target

    def _save(self, clip: Clip, saved: widgets.HTML) -> None:
        shown = ""
        try:
            folder = self.folder()
            options = self.export.values()
            midi = options.pop("midi", False)
            key = (id(clip), folder, tuple(sorted(options.items())))
            known = self._saved.get(key)
            if known is not None and known.exists():
                shown = self._saved_html("already saved as {path}", known)
            else:
                known = clip.save(folder, **options)
                self._saved[key] = known
                shown = self._saved_html("saved {path}", known)
            if midi:  # the audio is kept whatever happens to its notes
                notes = known.with_suffix(".mid")
                if not notes.exists():
                    clip.to_midi(notes)
                shown += " · " + self._saved_html("notes {path}", notes)
        except Exception as exc:  # noqa: BLE001 - shown in the row, never a traceback
            error = f'<span style="color:#b00020">{html.escape(self._save_message(exc))}</span>'
            saved.value = f"{shown}<br>{error}" if shown else error
            return
        saved.value = shown

    def _saved_html(self, said: str, path: Path) -> str:
        """``saved outputs/x.wav · download``, in the gallery's language."""
        return html.escape(self._t(said, path=os.fspath(path))) + " · " + _download(path, self._t("download"))

    def _save_message(self, exc: BaseException) -> str:
        """A save error naming the "Save to" box and what was typed there, or the export option."""
        if isinstance(exc, InvalidInputError) and exc.field in ("out_dir", "Save to"):
            typed = repr(self.out_dir.value.strip() or "outputs")
            return self._t(
                "Save to {typed}: {problem}; {fix}.", typed=typed, problem=exc.problem, fix=exc.fix
            )
        return panel_message(exc, lang=self.lang)

    def _extend(self, clip: Clip, saved: widgets.HTML) -> None:
        if self.on_extend is None:
            return
        self.on_extend(clip)
        saved.value = self._t(
            "Extending in the <b>Text → music</b> tab above (now selected); the result joins this list."
        )

    def _reuse(self, clip: Clip, saved: widgets.HTML) -> None:
        if self.on_reuse is None:
            return
        self.on_reuse(clip)
        saved.value = self._t("Settings put into the <b>Text → music</b> tab above (now selected).")


def _show_save_box(save_box: bool | None) -> bool:
    """``save_box``, or by default: shown in Jupyter, hidden on a page Voilà serves to visitors."""
    if save_box is not None:
        return bool(save_box)
    return "VOILA_KERNEL_ID" not in os.environ  # Voilà puts it into each visitor's kernel


_MIME = {
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".mp3": "audio/mpeg",
    ".mid": "audio/midi",
}


def _download(path: Path, label: str = "download") -> str:
    """A link that downloads the file as written (its format, rate, loudness and tags)."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    mime = _MIME.get(path.suffix.lower(), "application/octet-stream")
    return f'<a download="{html.escape(path.name)}" href="data:{mime};base64,{data}">{html.escape(label)}</a>'


class ExportChoice(widgets.HBox):
    """Format, sample rate and loudness for Save: the keyword arguments of :meth:`Clip.save`."""

    FORMATS = (("WAV, 16-bit", "wav"), ("FLAC, 24-bit", "flac"), ("Ogg Vorbis", "ogg"), ("MP3", "mp3"))
    RATES = (("model's rate", 0), ("44.1 kHz", 44100), ("48 kHz", 48000))
    LOUDNESS = (
        ("level as made", 0.0),
        ("-14 LUFS (streaming)", -14.0),
        ("-16 LUFS (podcasts)", -16.0),
        ("-23 LUFS (broadcast)", -23.0),
    )

    def __init__(self, *, lang: str | None = None) -> None:
        lang = resolve_lang(lang)

        def pick(label: str, options: tuple, tip: str, width: str) -> widgets.Dropdown:
            box = widgets.Dropdown(
                options=[(tr(lang, shown), value) for shown, value in options],
                description=tr(lang, label),
                style={"description_width": "initial"},
                layout=widgets.Layout(width=width),
            )
            return _tip(box, tr(lang, tip))

        self.format = pick("Format", self.FORMATS, "file format Save writes", "190px")
        self.sample_rate = pick(
            "Rate", self.RATES, "sample rate Save writes (resampled with soxr for a DAW session)", "190px"
        )
        self.loudness = pick(
            "Loudness",
            self.LOUDNESS,
            "normalise the integrated loudness, never above -1 dBTP true peak",
            "250px",
        )
        self.midi = _tip(
            widgets.Checkbox(
                value=False,
                description=tr(lang, "MIDI too"),
                indent=False,
                layout=widgets.Layout(width="auto"),
            ),
            tr(lang, "also write the clip's notes as a MIDI file beside the audio (needs the midi extra)"),
        )
        super().__init__([self.format, self.sample_rate, self.loudness, self.midi])
        self.add_class("mg-wrap")

    def values(self) -> dict[str, Any]:
        """``{"format": ..., "sample_rate": ..., "loudness": ...}`` (``None``: keep the clip's), and
        ``"midi": True`` when the notes are to be written too."""
        out: dict[str, Any] = {
            "format": self.format.value,
            "sample_rate": int(self.sample_rate.value) or None,
            "loudness": float(self.loudness.value) or None,
        }
        if self.midi.value:
            out["midi"] = True
        return out


def _close_tree(widget: widgets.Widget) -> None:
    """Close ``widget`` and everything inside it (ipywidgets keeps every open widget alive)."""
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    widget.close()


def _params_line(clip: Clip, lang: str = "en") -> str:
    """The settings that made ``clip``: argument names in English (to copy into code), a plain
    line in other languages; with the grid it was fitted to."""
    grid = grid_line(clip, lang)
    if lang != "en":
        from ..display import clip_summary

        line = clip_summary(clip, lang)
        strength = (clip.extra.get("restyle") or {}).get("strength")
        if strength is not None:
            line = tr(lang, "strength {strength}", strength=f"{float(strength):g}") + " · " + line
        return " · ".join(p for p in (line, grid) if p)
    r = clip.request
    parts = [
        f"seed={clip.seed}",
        f"audio_length_in_s={r.audio_length_in_s:g}",
        f"num_inference_steps={r.num_inference_steps}",
        f"guidance_scale={r.guidance_scale:g}",
        f"model={clip.model_info.get('name') or r.model}",
    ]
    strength = (clip.extra.get("restyle") or {}).get("strength")
    if strength is not None:
        parts.insert(0, f"strength={float(strength):g}")
    if r.negative_prompt:
        parts.insert(0, f"negative_prompt={r.negative_prompt!r}")
    record = clip.extra.get("conform") or {}
    if record.get("bpm"):
        parts += [f"bpm={float(record['bpm']):g}", f"bars={record.get('bars')}"]
        parts.append(f"beats_per_bar={record.get('beats_per_bar') or 4}")
    if record.get("key"):
        parts.append(f"key={record['key']!r}")
    return ", ".join(parts)
