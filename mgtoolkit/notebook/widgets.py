"""The notebook studio: ipywidgets panels for text, image and audio to music, and a history gallery.

Panels follow the jupyter-widgets tutorial's model/GUI split: a panel is a ``VBox`` built with
its backend functions (``mg.generate``, ``mg.describe_image``, ``mg.write_music_prompt``,
``mg.restyle`` by default; pass stand-ins to test), ``.request`` is computed from the widget
values (snapped to each control's step), ``.run()`` calls the backend with it, ``.result`` holds
what came back and the history records it. The Generate button's handler is the only place an
exception is caught: a message written for the panel (naming the control to change, or the
uploaded file by its name) appears in the panel's status line, never a traceback. Work runs in a
worker thread so that the kernel can take the Cancel click, which stops the model at its next
denoising step; ``synchronous=True`` runs on the caller's thread (tests, scripts).

Saving from the history gallery stays inside a *save root* (the working directory unless the
notebook's author passes ``save_root=``); ``save_box=False`` hides the folder box (Voilà).

Examples
--------
>>> import mgtoolkit as mg
>>> panel = mg.TextPanel(synchronous=True)
>>> panel.prompt.value = "calm piano"
>>> panel.settings.model.value = "tiny"
>>> panel.generate_button.click()  # doctest: +SKIP
>>> panel.result  # doctest: +SKIP
[Clip('calm piano', seed=..., 5.00 s at 16000 Hz, model='tiny')]
"""

from __future__ import annotations

import base64
import html
import importlib
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import traitlets

from ..config import SEED_MAX, draw_seed
from ..errors import GenerationCancelled, InvalidInputError, MgtoolkitError, ModelUnavailableError
from ..models.registry import PRESETS, default_model
from ..types import Clip, GenerationRequest
from .display import audio_data_uri, clip_html, clips_html
from .history import HISTORY, History  # the gallery's model; re-exported
from .notes import capture_notes

__all__ = [
    "History",
    "HISTORY",
    "Settings",
    "StatusLine",
    "TextPanel",
    "ImagePanel",
    "AudioPanel",
    "HistoryGallery",
    "Studio",
    "studio",
    "panel_message",
    "strip_ansi",
]

_LABEL_W = "120px"
_STYLE = {"description_width": _LABEL_W}


def _wide() -> widgets.Layout:
    return widgets.Layout(width="100%", max_width="760px")


_CSS = """<style>
.mg-panel, .mg-studio, .mg-gallery {max-width: 100%; box-sizing: border-box}
.mg-status {width: 100%; height: auto !important}
.mg-status .mg-status-text {white-space: normal; overflow-wrap: anywhere; line-height: 1.4; padding: 2px 0}
.mg-panel .widget-label, .mg-panel .widget-inline-hbox .widget-label {overflow: visible; text-overflow: clip;
  white-space: normal; line-height: 1.2}
.mg-panel button, .mg-gallery button {max-width: 100%}
.mg-panel button:focus-visible, .mg-gallery button:focus-visible, .mg-studio .lm-TabBar-tab:focus-visible
  {outline: 3px solid #1a1a1a !important; outline-offset: 2px; box-shadow: 0 0 0 5px #ffd54f !important}
.mg-panel .widget-slider, .mg-panel .widget-text, .mg-panel .widget-dropdown {max-width: 100%}
.mg-wrap {flex-wrap: wrap; gap: 4px}
</style>"""

_HOMES = {  # the pure tasks: a panel records what it makes in its own history
    "generate": "mgtoolkit.tasks.text",
    "restyle": "mgtoolkit.tasks.audio",
    "describe_image": "mgtoolkit.tasks.image",
    "write_music_prompt": "mgtoolkit.tasks.image",
}

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]|\[\d{1,3}(;\d{1,3})*m")


def _backend(name: str) -> Callable[..., Any]:
    """The task function ``name``, looked up when first needed."""
    return getattr(importlib.import_module(_HOMES[name]), name)


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour codes (``\\x1b[93m``, or a bare ``[93m`` left by a copy).

    Examples
    --------
    >>> strip_ansi("\\x1b[93mdeprecated\\x1b[0m, [1mbold[0m")
    'deprecated, bold'
    """
    return _ANSI.sub("", text)


def one_line(exc: BaseException) -> str:
    """The message a panel shows for ``exc``: mgtoolkit's own one line, or type and first line."""
    if isinstance(exc, MgtoolkitError):
        return strip_ansi(str(exc))
    first = (strip_ansi(str(exc)).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _as_clips(result: Any) -> list[Clip]:
    if isinstance(result, Clip):
        return [result]
    if hasattr(result, "clip") and isinstance(result.clip, Clip):  # a Story
        return [result.clip]
    return list(result)


def _snap(slider: widgets.Widget) -> float:
    """A slider's value on its step grid (browsers send back ``2.9999999999999996``)."""
    step = float(slider.step)
    snapped = float(slider.min) + round((float(slider.value) - float(slider.min)) / step) * step
    return round(min(max(snapped, float(slider.min)), float(slider.max)), 10)


def _tip(widget: widgets.Widget, text: str) -> widgets.Widget:
    """Give ``widget`` a real tooltip (ipywidgets shows "null" otherwise) and return it."""
    widget.tooltip = text
    return widget


def _no_null_tooltips(widget: widgets.Widget) -> None:
    """Give every control without a tooltip an empty one (ipywidgets writes ``title="null"`` otherwise)."""
    if "tooltip" in widget.trait_names() and widget.tooltip is None:
        widget.tooltip = ""
    for child in getattr(widget, "children", ()):
        _no_null_tooltips(child)


# --- messages written for the panel --------------------------------------------------------------------

_CONTROLS = {
    "prompt": "Prompt",
    "negative_prompt": "Negative prompt",
    "audio_length_in_s": "Seconds",
    "num_inference_steps": "Steps",
    "guidance_scale": "Guidance",
    "num_waveforms_per_prompt": "Candidates",
    "strength": "Strength",
    "model": "Model",
}
_FILE_FIXES = {
    "image": "upload a PNG, JPEG or WebP picture, or remove the upload and type the path of one",
    "audio": "upload a WAV, FLAC, OGG or MP3 file (at least 0.5 s), or remove the upload and type a path",
}


def panel_message(exc: BaseException, *, files: dict[str, str] | None = None) -> str:
    """What a panel says about ``exc``: the control to change, the uploaded file by its name.

    Parameters
    ----------
    exc : BaseException
        What the task raised.
    files : dict, optional
        ``{"image": "Uploaded file 'lake.png'", ...}``: how to name each file input's value.

    Examples
    --------
    >>> panel_message(InvalidInputError("seed", -1, "must be between 0 and 4294967295", "pass 120 or None"))
    'Seed: -1 must be a whole number from 0 to 4294967295; type one, or tick random for a new seed each time.'
    """
    if isinstance(exc, ModelUnavailableError):
        return (
            "This model's weights are not on this machine and cannot be downloaded from here. Choose "
            "'tiny' in the Model list to try the panel (its clips are noise by design), or ask the "
            f"notebook's author to download the model first. (Details: {one_line(exc)})"
        )
    if not isinstance(exc, InvalidInputError):
        return one_line(exc)
    field = exc.field
    if field == "seed":
        return (
            f"Seed: {exc.value!r} must be a whole number from 0 to {SEED_MAX}; type one, or tick "
            "random for a new seed each time."
        )
    if field in _FILE_FIXES:
        named = (files or {}).get(field) or f"{field.capitalize()}"
        return f"{named}: {strip_ansi(exc.problem)}; {_FILE_FIXES[field]}."
    if field in _CONTROLS:
        return f"{_CONTROLS[field]}: {exc.value!r} {strip_ansi(exc.problem)}; {strip_ansi(exc.fix)}."
    return one_line(exc)


class StatusLine(widgets.HTML):
    """The panel's status: full text, wrapped, announced to screen readers (``role=status``).

    ``text`` is the plain message (terminal colour codes removed); ``value`` is its HTML.
    """

    text = traitlets.Unicode("")
    tone = traitlets.Unicode("")

    def __init__(self, text: str = "Ready.") -> None:
        super().__init__()
        self.add_class("mg-status")
        self.layout.width = "100%"
        self.text = text
        self._render()

    @traitlets.validate("text")
    def _clean(self, proposal: dict) -> str:
        return strip_ansi(str(proposal["value"]))

    @traitlets.observe("text", "tone")
    def _render(self, _change: Any = None) -> None:
        colour = {"danger": "#b00020", "warning": "#7a5c00"}.get(self.tone, "inherit")
        self.value = (
            f'<div class="mg-status-text" role="status" aria-live="polite" style="color:{colour}">'
            f"{html.escape(self.text)}</div>"
        )


# --- controls shared by the panels -------------------------------------------------------------------


class Settings(widgets.VBox):
    """Duration, steps, guidance, seed (fixed or random, with a re-roll), candidates and model."""

    def __init__(
        self,
        *,
        duration: bool = True,
        candidates: bool = True,
        steps: int = 20,
        guidance: float = 2.5,
        model: str | None = None,
    ) -> None:
        self.duration = _slider(
            widgets.FloatSlider, "Seconds", "length of the clip in seconds", 5.0, 0.5, 30.0, 0.5
        )
        self.steps = _slider(
            widgets.IntSlider, "Steps", "denoising steps: more is slower and cleaner", steps, 1, 200, 1
        )
        self.guidance = _slider(
            widgets.FloatSlider,
            "Guidance",
            "how strongly the prompt steers (1: a hint; 2-4 usual)",
            guidance,
            0.0,
            15.0,
            0.5,
        )
        self.seed = _tip(
            widgets.IntText(
                value=120,
                description="Seed",
                style=_STYLE,
                disabled=True,
                layout=widgets.Layout(width="260px"),
            ),
            f"the random seed (0 to {SEED_MAX}): the same seed and settings give the same clip",
        )
        self.random_seed = _tip(
            widgets.Checkbox(
                value=True, description="random", indent=False, layout=widgets.Layout(width="90px")
            ),
            "draw a new seed for each run (the one used is shown in the Seed box)",
        )
        self.reroll_button = _tip(
            widgets.Button(description="Re-roll", icon="dice", layout=widgets.Layout(width="auto")),
            "draw a new seed and generate again",
        )
        self.candidates = _slider(
            widgets.IntSlider, "Candidates", "how many clips to make (seeds seed, seed+1, ...)", 1, 1, 4, 1
        )
        self.model = _tip(
            widgets.Dropdown(
                options=_model_options(model),
                value=model or default_model(),
                description="Model",
                style=_STYLE,
            ),
            "the music model; 'tiny' makes noise quickly, for trying the panel out",
        )
        self.random_seed.observe(lambda change: setattr(self.seed, "disabled", change["new"]), "value")
        rows = [self.duration] if duration else []
        seed_row = widgets.HBox([self.seed, self.random_seed, self.reroll_button])
        seed_row.add_class("mg-wrap")
        rows += [self.steps, self.guidance, seed_row]
        rows += [self.candidates] if candidates else []
        super().__init__(rows + [self.model])
        self._has_duration, self._has_candidates = duration, candidates

    def values(self) -> dict[str, Any]:
        """The generation arguments these controls set (names as in :func:`mgtoolkit.generate`)."""
        out: dict[str, Any] = {
            "num_inference_steps": int(self.steps.value),
            "guidance_scale": _snap(self.guidance),
            "seed": None if self.random_seed.value else self.seed.value,
            "model": self.model.value,
        }
        if self._has_duration:
            out["audio_length_in_s"] = _snap(self.duration)
        if self._has_candidates:
            out["num_waveforms_per_prompt"] = int(self.candidates.value)
        return out

    def show_seed(self, seed: int) -> None:
        """Put the seed a run used into the seed box (so a random one can be kept)."""
        self.seed.value = int(seed)

    def new_seed(self) -> int:
        """Switch to a fixed, freshly drawn seed and return it."""
        self.random_seed.value = False
        self.seed.value = draw_seed()
        return self.seed.value

    def load(self, request: GenerationRequest, seed: int) -> None:
        """Set the controls from a request that made a clip with ``seed``."""
        self.duration.value = float(request.audio_length_in_s)
        self.steps.value = int(request.num_inference_steps)
        self.guidance.value = float(request.guidance_scale)
        self.random_seed.value = False
        self.seed.value = int(seed)
        if request.model and request.model not in self.model.options:
            self.model.options = (*self.model.options, request.model)
        self.model.value = request.model or default_model()


def _slider(kind: type, label: str, tip: str, value: float, low: float, high: float, step: float) -> Any:
    slider = kind(
        value=value,
        min=low,
        max=high,
        step=step,
        description=label,
        style=_STYLE,
        layout=widgets.Layout(width="100%", max_width="560px"),
    )
    return _tip(slider, tip)


def _model_options(extra: str | None) -> list[str]:
    names = list(PRESETS)
    for name in (default_model(), extra):
        if name and name not in names:
            names.insert(0, name)
    return names


# --- the panel machinery -----------------------------------------------------------------------------


class _Panel(widgets.VBox):
    """Status line, progress bar, Generate/Cancel and an Output, and the one exception handler."""

    generate_label = "Generate"
    generate_tip = "make music from the settings above"

    def __init__(self, *, synchronous: bool = False, history: History | None = None) -> None:
        super().__init__()
        self.synchronous = synchronous
        self.history = HISTORY if history is None else history
        self.result: Any = None
        self.generate_button = _tip(
            widgets.Button(
                description=self.generate_label,
                button_style="primary",
                icon="music",
                layout=widgets.Layout(width="auto"),
            ),
            self.generate_tip,
        )
        self.cancel_button = _tip(
            widgets.Button(
                description="Cancel", icon="stop", disabled=True, layout=widgets.Layout(width="auto")
            ),
            "stop at the next denoising step",
        )
        self.progress = _tip(
            widgets.IntProgress(value=0, min=0, max=1, layout=widgets.Layout(width="40%", min_width="120px")),
            "denoising progress",
        )
        self.status = StatusLine("Ready.")
        self.output = widgets.Output()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._busy_buttons: list[widgets.Button] = [self.generate_button]
        self.generate_button.on_click(lambda _b: self._start(self._generate_job, self._show_result))
        self.cancel_button.on_click(self._on_cancel)
        self.add_class("mg-panel")

    def _layout(self, controls: list[widgets.Widget]) -> None:
        bar = widgets.HBox([self.generate_button, self.cancel_button, self.progress])
        bar.add_class("mg-wrap")
        self.children = [widgets.HTML(_CSS), *controls, bar, self.status, self.output]
        _no_null_tooltips(self)

    # - what subclasses provide
    @property
    def request(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, *, callback: Callable | None = None, cancel: threading.Event | None = None) -> Any:
        raise NotImplementedError  # pragma: no cover

    def _file_names(self) -> dict[str, str]:
        """How the panel names its file inputs' values in messages."""
        return {}

    # - the handler
    @property
    def busy(self) -> bool:
        return self.cancel_button.disabled is False

    def wait(self, timeout: float | None = None) -> None:
        """Block until the current worker thread (if any) is done."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _generate_job(self) -> Any:
        return self.run(callback=self._on_step, cancel=self._cancel)

    def _start(self, job: Callable[[], Any], done: Callable[[Any], None]) -> None:
        if self.busy:
            return
        self._cancel = threading.Event()
        self._set_busy(True)
        if self.synchronous:
            self._work(job, done)
        else:
            self._thread = threading.Thread(target=self._work, args=(job, done), daemon=True)
            self._thread.start()

    def _work(self, job: Callable[[], Any], done: Callable[[Any], None]) -> None:
        try:
            with capture_notes() as notes:  # this thread's notes go to the panel, not stderr
                result = job()
            done(result)
            if notes:
                self.status.text = f"{self.status.text} Note: {'; '.join(notes)}"
        except GenerationCancelled:
            self._say("Cancelled: stopped at the next step; nothing was kept.", "warning")
        except Exception as exc:  # noqa: BLE001 - the one place errors are caught and shown
            self._say(panel_message(exc, files=self._file_names()), "danger")
        finally:
            self._set_busy(False)

    def _set_busy(self, busy: bool) -> None:
        for button in self._busy_buttons:
            button.disabled = busy
        self.cancel_button.disabled = not busy
        if busy:
            self.progress.value, self.progress.bar_style = 0, ""
            self._say("Working...", "")

    def _say(self, text: str, style: str) -> None:
        self.status.text = text
        self.status.tone = style
        if style in ("danger", "warning"):
            self.progress.bar_style = style

    def _on_cancel(self, _button: Any = None) -> None:
        self._cancel.set()
        self.status.text = "Cancelling at the next step..."

    def _step_text(self, step: int, total: int) -> str:
        return f"Denoising: step {step + 1} of {total}"

    def _on_step(self, step: int, total: int, _latents: Any = None) -> None:
        self.progress.max = max(int(total), 1)
        self.progress.value = step + 1
        self.status.text = self._step_text(step, total)

    def _show_result(self, result: Any) -> None:
        clips = _as_clips(result)
        self.result = result
        self.output.outputs = (
            {
                "output_type": "display_data",
                "metadata": {},
                "data": {"text/html": clips_html(clips), "text/plain": repr(clips)},
            },
        )
        self.progress.bar_style = "success"
        self._say(_done_message(clips), "")


def _done_message(clips: list[Clip]) -> str:
    seeds = ", ".join(str(c.seed) for c in clips)
    total = sum(float(c.timings.get("total_s", 0.0)) for c in clips[:1])
    return (
        f"Done: {len(clips)} clip{'s' if len(clips) > 1 else ''}, seed {seeds}"
        + (f", {total:.1f} s" if total else "")
        + "."
    )


def _text(description: str, placeholder: str, tip: str, rows: int = 2) -> widgets.Textarea:
    area = widgets.Textarea(
        placeholder=placeholder, description=description, rows=rows, layout=_wide(), style=_STYLE
    )
    return _tip(area, tip)


# --- the three panels ---------------------------------------------------------------------------------


class TextPanel(_Panel):
    """Text to music: prompt, negative prompt, and the generation settings.

    Parameters
    ----------
    generate : callable, optional
        ``generate(request, *, callback, cancel) -> Clip | list[Clip]``; :func:`mgtoolkit.generate`
        by default.
    synchronous : bool
        Run on the caller's thread instead of a worker thread.
    history : History, optional
        Where finished clips are recorded (the kernel-wide one by default).
    model : str, optional
        The model selected at start (``$MGTOOLKIT_MODEL`` or the default otherwise).
    """

    def __init__(
        self,
        generate: Callable[..., Any] | None = None,
        *,
        synchronous: bool = False,
        history: History | None = None,
        model: str | None = None,
    ) -> None:
        super().__init__(synchronous=synchronous, history=history)
        self._generate = generate
        self.prompt = _text(
            "Prompt", "e.g. A classic cocktail lounge vibe with smooth jazz piano", "what the music should be"
        )
        self.negative_prompt = _text(
            "Negative prompt", "e.g. low quality, noise", "what to steer away from (optional)", rows=1
        )
        self.settings = Settings(model=model)
        self.settings.reroll_button.on_click(self._on_reroll)
        self._busy_buttons.append(self.settings.reroll_button)
        self._layout([self.prompt, self.negative_prompt, self.settings])

    @property
    def request(self) -> GenerationRequest:
        """A :class:`~mgtoolkit.GenerationRequest` from the widget values (not yet validated)."""
        return GenerationRequest(
            prompt=self.prompt.value,
            negative_prompt=self.negative_prompt.value or None,
            **self.settings.values(),
        )

    def run(self, *, callback: Callable | None = None, cancel: threading.Event | None = None) -> list[Clip]:
        """Generate from :attr:`request`; return the clips (also kept in :attr:`result`)."""
        generate = self._generate or _backend("generate")
        clips = _as_clips(generate(self.request, callback=callback, cancel=cancel))
        self.result = clips
        self.settings.show_seed(clips[0].seed)
        self.history.add(clips)
        return clips

    def load(self, clip: Clip) -> None:
        """Fill the panel with the prompt and settings that made ``clip`` ("use these settings again")."""
        self.prompt.value = clip.request.prompt
        self.negative_prompt.value = clip.request.negative_prompt or ""
        self.settings.load(clip.request, clip.seed)
        self.settings.candidates.value = 1
        self._say(
            f"Filled in from the clip with seed {clip.seed} ({_short(clip.prompt)}): "
            "change what you like, then press Generate.",
            "",
        )

    def _on_reroll(self, _button: Any = None) -> None:
        self.settings.new_seed()
        self._start(self._generate_job, self._show_result)


def _short(text: str, limit: int = 40) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _FileInput(widgets.VBox):
    """A FileUpload or a path (relative to the notebook's folder), a Remove button, and which one wins."""

    def __init__(self, accept: str, what: str, example: str) -> None:
        self.what = what
        self.upload = _tip(
            widgets.FileUpload(
                accept=accept,
                multiple=False,
                description=f"Upload {what}",
                layout=widgets.Layout(width="auto"),
            ),
            f"choose a {what} file from your computer",
        )
        self.remove_button = _tip(
            widgets.Button(
                description="Remove upload",
                icon="times",
                disabled=True,
                layout=widgets.Layout(width="auto"),
            ),
            f"forget the uploaded {what} (then the typed path is used)",
        )
        self.path = _tip(
            widgets.Text(
                placeholder=f"or a path, e.g. {example}", description="Path", layout=_wide(), style=_STYLE
            ),
            f"a {what} file on the server, relative to the notebook's folder",
        )
        self.source = widgets.HTML()
        self.remove_button.on_click(self.clear_upload)
        self.upload.observe(self._update_source, "value")
        self.path.observe(self._update_source, "value")
        row = widgets.HBox([self.upload, self.remove_button])
        row.add_class("mg-wrap")
        super().__init__([row, self.path, self.source])
        self._update_source()

    def upload_name(self) -> str | None:
        """The uploaded file's name, if one is uploaded."""
        return str(self.upload.value[0].get("name", "") or "file") if self.upload.value else None

    def described(self) -> str:
        """How messages name the current value: the uploaded file's name or the typed path."""
        name = self.upload_name()
        if name is not None:
            return f"Uploaded file {name!r}"
        return f"Path {self.path.value.strip()!r}" if self.path.value.strip() else f"{self.what.capitalize()}"

    def clear_upload(self, _button: Any = None) -> None:
        """Forget the uploaded file."""
        self.upload.value = ()

    def _update_source(self, _change: Any = None) -> None:
        name, typed = self.upload_name(), self.path.value.strip()
        self.remove_button.disabled = name is None
        if name is not None and typed:
            text = f"Using the uploaded file {name} (the typed path is ignored until you remove the upload)."
        elif name is not None:
            text = f"Using the uploaded file {name}."
        elif typed:
            text = f"Using the path {typed}."
        else:
            text = f"No {self.what} yet: upload one or type a path."
        self.source.value = f"<small>{html.escape(text)}</small>"

    def value(self) -> str | bytes | None:
        """Uploaded bytes if a file was uploaded, else the path typed, else ``None``."""
        if self.upload.value:
            return bytes(self.upload.value[0]["content"])
        return self.path.value.strip() or None

    def preview_bytes(self) -> tuple[bytes, str] | None:
        """(content, file name) to preview, if there is a readable file."""
        if self.upload.value:
            item = self.upload.value[0]
            return bytes(item["content"]), str(item.get("name", ""))
        path = Path(self.path.value.strip()) if self.path.value.strip() else None
        if path is not None and path.is_file() and path.stat().st_size < 20_000_000:
            return path.read_bytes(), path.name
        return None

    def observe_change(self, handler: Callable[[Any], None]) -> None:
        self.upload.observe(handler, "value")
        self.path.observe(handler, "value")


class ImagePanel(_Panel):
    """Image to music in three stages whose results stay editable between them.

    1. *Describe*: the captioner writes what the image shows (``caption``).
    2. *Write prompt*: the writer turns that caption into a musical prompt (``music_prompt``).
    3. *Generate*: AudioLDM makes music from the musical prompt.

    Generate runs whichever stages are still empty, then the music; edit the caption or the
    prompt and press the next stage (or Generate) to go on from your text.

    Parameters
    ----------
    describe, write, generate : callable, optional
        Backends, by default :func:`mgtoolkit.describe_image`, :func:`mgtoolkit.write_music_prompt`
        and :func:`mgtoolkit.generate`.
    synchronous, history, model
        As for :class:`TextPanel`.
    """

    generate_label = "Generate music"
    generate_tip = "run the stages still empty, then make the music"

    def __init__(
        self,
        describe: Callable[..., str] | None = None,
        write: Callable[..., str] | None = None,
        generate: Callable[..., Any] | None = None,
        *,
        synchronous: bool = False,
        history: History | None = None,
        model: str | None = None,
    ) -> None:
        super().__init__(synchronous=synchronous, history=history)
        self._describe, self._write, self._generate = describe, write, generate
        self.image = _FileInput("image/*", "image", "../mgtoolkit/assets/example_scene.png")
        self.preview = widgets.Image(
            format="png", layout=widgets.Layout(max_width="256px", max_height="256px", display="none")
        )
        self.describe_button = _tip(
            widgets.Button(description="1 · Describe image", icon="eye", layout=widgets.Layout(width="auto")),
            "stage 1: the captioner writes what the picture shows",
        )
        self.caption = _text(
            "Caption",
            "what the image shows (edit it if the captioner got it wrong)",
            "stage 1's text: edit it freely",
            rows=3,
        )
        self.write_button = _tip(
            widgets.Button(
                description="2 · Write music prompt", icon="pen", layout=widgets.Layout(width="auto")
            ),
            "stage 2: the writer turns the caption into a musical prompt",
        )
        self.music_prompt = _text(
            "Music prompt",
            "the musical prompt (edit it freely)",
            "stage 2's text: the prompt for the music",
            rows=3,
        )
        self.negative_prompt = _text(
            "Negative prompt", "e.g. low quality, noise", "what to steer away from (optional)", rows=1
        )
        self.settings = Settings(candidates=False, model=model)
        self.settings.reroll_button.layout.display = "none"
        self._busy_buttons += [self.describe_button, self.write_button]
        self.describe_button.on_click(lambda _b: self._start(self._describe_job, self._set_caption))
        self.write_button.on_click(lambda _b: self._start(self._write_job, self._set_music_prompt))
        self.image.observe_change(self._on_image_change)
        self._layout(
            [
                self.image,
                self.preview,
                self.describe_button,
                self.caption,
                self.write_button,
                self.music_prompt,
                self.negative_prompt,
                self.settings,
            ]
        )

    @property
    def request(self) -> GenerationRequest:
        """The music stage's request: the musical prompt (as edited) and the settings."""
        return GenerationRequest(
            prompt=self.music_prompt.value,
            negative_prompt=self.negative_prompt.value or None,
            **self.settings.values(),
        )

    def _file_names(self) -> dict[str, str]:
        return {"image": self.image.described()}

    def describe(self) -> str:
        """Stage 1: caption the image (also put into :attr:`caption`)."""
        describe = self._describe or _backend("describe_image")
        self.caption.value = describe(self.image.value())
        return self.caption.value

    def write(self) -> str:
        """Stage 2: the musical prompt from the caption (also put into :attr:`music_prompt`)."""
        write = self._write or _backend("write_music_prompt")
        self.music_prompt.value = write(self.caption.value)
        return self.music_prompt.value

    def run(self, *, callback: Callable | None = None, cancel: threading.Event | None = None) -> Clip:
        """Run the stages still empty, then generate; return the clip (also in :attr:`result`)."""
        if not self.caption.value.strip():
            self._say("Describing the image...", "")
            self.describe()
        if not self.music_prompt.value.strip():
            GenerationCancelled.raise_if_set(cancel, "between stages")
            self._say("Writing the musical prompt...", "")
            self.write()
        GenerationCancelled.raise_if_set(cancel, "between stages")
        generate = self._generate or _backend("generate")
        clip = _as_clips(generate(self.request, callback=callback, cancel=cancel))[0]
        clip = clip.with_extra(caption=self.caption.value, music_prompt=self.music_prompt.value)
        self.result = clip
        self.settings.show_seed(clip.seed)
        self.history.add([clip])
        return clip

    def _describe_job(self) -> str:
        self._say("Describing the image...", "")
        return self.describe()

    def _write_job(self) -> str:
        self._say("Writing the musical prompt...", "")
        return self.write()

    def _set_caption(self, caption: str) -> None:
        self._say("Caption ready: edit it if needed, then press 2 · Write music prompt.", "")

    def _set_music_prompt(self, prompt: str) -> None:
        self._say("Music prompt ready: edit it if needed, then press Generate music.", "")

    def _on_image_change(self, _change: Any = None) -> None:
        self.caption.value = ""
        self.music_prompt.value = ""
        found = self.image.preview_bytes()
        self.preview.layout.display = "none"
        if found is None:
            return
        content, _name = found
        kind = _image_kind(content)
        if kind is None:
            self._say(
                f"{self.image.described()}: is not a picture this panel can read; {_FILE_FIXES['image']}.",
                "danger",
            )
            return
        self.preview.format, self.preview.value = kind, content
        self.preview.layout.display = None
        self._say(f"{self.image.described()} is ready: press 1 · Describe image (or Generate music).", "")


def _image_kind(content: bytes) -> str | None:
    """``"png"``, ``"jpeg"``, ``"gif"`` or ``"webp"`` from the file's first bytes, else ``None``."""
    signatures = {b"\x89PNG": "png", b"\xff\xd8\xff": "jpeg", b"GIF8": "gif"}
    for magic, kind in signatures.items():
        if content.startswith(magic):
            return kind
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "webp"
    return None


class AudioPanel(_Panel):
    """Audio to music: restyle an uploaded clip towards a prompt.

    Parameters
    ----------
    restyle : callable, optional
        ``restyle(audio, prompt, *, strength, negative_prompt, num_inference_steps, guidance_scale,
        seed, model, callback, cancel) -> Clip``; :func:`mgtoolkit.restyle` by default.
    synchronous, history, model
        As for :class:`TextPanel`.
    """

    generate_label = "Restyle"
    generate_tip = "move the clip's sound towards the prompt"

    def __init__(
        self,
        restyle: Callable[..., Any] | None = None,
        *,
        synchronous: bool = False,
        history: History | None = None,
        model: str | None = None,
    ) -> None:
        super().__init__(synchronous=synchronous, history=history)
        self._restyle = restyle
        self.audio = _FileInput("audio/*,.wav,.flac,.ogg,.mp3", "audio", "outputs/my-clip.wav")
        self.preview = widgets.HTML()
        self.strength = _slider(
            widgets.FloatSlider,
            "Strength",
            "0.05: keep almost all of the original; 1: keep only its length and follow the prompt",
            0.6,
            0.05,
            1.0,
            0.05,
        )
        self.prompt = _text(
            "Prompt",
            "what it should become, e.g. lo-fi hip hop with vinyl crackle",
            "what the clip should become",
        )
        self.negative_prompt = _text(
            "Negative prompt", "e.g. low quality, noise", "what to steer away from (optional)", rows=1
        )
        self.settings = Settings(duration=False, candidates=False, model=model)
        self.settings.reroll_button.layout.display = "none"
        self.audio.observe_change(self._on_audio_change)
        self._layout(
            [self.audio, self.preview, self.prompt, self.negative_prompt, self.strength, self.settings]
        )

    @property
    def request(self) -> dict[str, Any]:
        """The keyword arguments of :func:`mgtoolkit.restyle`, from the widget values."""
        return {
            "audio": self.audio.value(),
            "prompt": self.prompt.value,
            "strength": _snap(self.strength),
            "negative_prompt": self.negative_prompt.value or None,
            **self.settings.values(),
        }

    def _file_names(self) -> dict[str, str]:
        return {"audio": self.audio.described()}

    def run(self, *, callback: Callable | None = None, cancel: threading.Event | None = None) -> Clip:
        """Restyle with :attr:`request`; return the clip (also in :attr:`result`)."""
        restyle = self._restyle or _backend("restyle")
        request = self.request
        clip = _as_clips(
            restyle(request.pop("audio"), request.pop("prompt"), **request, callback=callback, cancel=cancel)
        )[0]
        self.result = clip
        self.settings.show_seed(clip.seed)
        self.history.add([clip])
        return clip

    def _step_text(self, step: int, total: int) -> str:
        strength, steps = _snap(self.strength), int(self.settings.steps.value)
        return (
            f"Restyling: step {step + 1} of {total} (strength {strength:g} × {steps} steps: "
            "the first steps are skipped to keep the original's shape)"
        )

    def _on_audio_change(self, _change: Any = None) -> None:
        self.preview.value = ""
        found = self.audio.preview_bytes()
        if found is None:
            return
        content, name = found
        problem = _audio_problem(content)
        if problem is not None:
            self._say(f"{self.audio.described()}: {problem}; {_FILE_FIXES['audio']}.", "danger")
            return
        kind = (Path(name).suffix.lstrip(".").lower() or "wav").replace("mp3", "mpeg")
        data = base64.b64encode(content).decode("ascii")
        label = html.escape(f"original: {name}")
        self.preview.value = (
            f"<div>{label}</div>"
            f'<audio controls aria-label="{label}" src="data:audio/{kind};base64,{data}"></audio>'
        )
        self._say(f"{self.audio.described()} is ready: write a prompt, then press Restyle.", "")


def _audio_problem(content: bytes) -> str | None:
    """Why ``content`` cannot be played and restyled, or ``None`` if it reads as audio."""
    import io

    try:
        import soundfile
    except ImportError:  # pragma: no cover - soundfile is a core dependency
        return None
    try:
        info = soundfile.info(io.BytesIO(content))
    except Exception:  # noqa: BLE001 - any reader error means "not audio we can read"
        return "is not an audio file this panel can read"
    if info.frames == 0:
        return "holds no sound"
    return None


# --- history gallery and the studio ---------------------------------------------------------------------


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
    """

    def __init__(
        self,
        history: History,
        *,
        on_reuse: Callable[[Clip], None] | None = None,
        out_dir: str = "outputs",
        save_root: str | os.PathLike | None = None,
        save_box: bool | None = None,
    ) -> None:
        self.history = history
        self.on_reuse = on_reuse
        self.save_root = Path(save_root if save_root is not None else os.getcwd()).resolve()
        self.title = widgets.HTML()
        self.out_dir = _tip(
            widgets.Text(
                value=out_dir,
                description="Save to",
                style={"description_width": "70px"},
                layout=widgets.Layout(width="95%", max_width="520px"),
            ),
            f"a folder inside {self.save_root}",
        )
        self.out_dir.layout.display = None if _show_save_box(save_box) else "none"
        self.items = widgets.VBox()
        self._rows: dict[int, widgets.Widget] = {}
        self._saved: dict[tuple[int, Path], Path] = {}
        super().__init__([self.title, self.out_dir, self.items])
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
        self.title.value = (
            f"<h4>History: {len(clips)} clip{'' if len(clips) == 1 else 's'} made in this kernel</h4>"
        )
        self.items.children = [self._row(c) for c in reversed(clips)]

    def _row(self, clip: Clip) -> widgets.Widget:
        if id(clip) not in self._rows:
            saved = widgets.HTML()
            what = f"{_short(clip.prompt, 30)!r}, seed {clip.seed}"
            save = _tip(
                widgets.Button(description="Save WAV", icon="download", layout=widgets.Layout(width="auto")),
                f"save the clip {what} as WAV + JSON",
            )
            reuse = _tip(
                widgets.Button(
                    description="Use these settings", icon="redo", layout=widgets.Layout(width="auto")
                ),
                f"put the prompt and settings of {what} into the Text → music tab",
            )
            save.on_click(lambda _b: self._save(clip, saved))
            reuse.on_click(lambda _b: self._reuse(clip, saved))
            params = widgets.HTML(f"<small>{html.escape(_params_line(clip))}</small>")
            buttons = widgets.HBox([save, reuse])
            buttons.add_class("mg-wrap")
            self._rows[id(clip)] = widgets.VBox(
                [widgets.HTML(clip_html(clip)), params, buttons, saved],
                layout=widgets.Layout(border="1px solid #ddd", padding="4px", margin="2px"),
            )
            _no_null_tooltips(self._rows[id(clip)])
        return self._rows[id(clip)]

    def folder(self) -> Path:
        """The folder Save writes into: ``out_dir`` resolved inside the save root, or an error."""
        typed = (self.out_dir.value or "outputs").strip() or "outputs"
        target = Path(typed).expanduser()
        target = (target if target.is_absolute() else self.save_root / target).resolve()
        if target != self.save_root and self.save_root not in target.parents:
            raise InvalidInputError(
                "Save to",
                typed,
                f"is outside the folder this studio may write to ({self.save_root})",
                "type a folder inside it, e.g. outputs",
            )
        return target

    def _save(self, clip: Clip, saved: widgets.HTML) -> None:
        try:
            folder = self.folder()
            known = self._saved.get((id(clip), folder))
            if known is not None and known.exists():
                saved.value = f"already saved as {html.escape(os.fspath(known))} · " + _download(clip, known)
                return
            path = clip.save(folder)
        except Exception as exc:  # noqa: BLE001 - shown in the row, never a traceback
            saved.value = f'<span style="color:#b00020">{html.escape(self._save_message(exc))}</span>'
            return
        self._saved[(id(clip), folder)] = path
        saved.value = f"saved {html.escape(os.fspath(path))} · " + _download(clip, path)

    def _save_message(self, exc: BaseException) -> str:
        """A save error naming the "Save to" box and what was typed there."""
        if isinstance(exc, InvalidInputError):
            return f"Save to {self.out_dir.value.strip() or 'outputs'!r}: {exc.problem}; {exc.fix}."
        return one_line(exc)

    def _reuse(self, clip: Clip, saved: widgets.HTML) -> None:
        if self.on_reuse is None:
            return
        self.on_reuse(clip)
        saved.value = "Settings put into the <b>Text → music</b> tab above (now selected)."


def _show_save_box(save_box: bool | None) -> bool:
    """``save_box``, or by default: shown in Jupyter, hidden on a page Voilà serves to visitors."""
    if save_box is not None:
        return bool(save_box)
    return "VOILA_KERNEL_ID" not in os.environ  # Voilà puts it into each visitor's kernel


def _download(clip: Clip, path: Path) -> str:
    return (
        f'<a download="{html.escape(path.name)}" href="{audio_data_uri(clip.waveform, clip.sample_rate)}">'
        "download</a>"
    )


def _close_tree(widget: widgets.Widget) -> None:
    """Close ``widget`` and everything inside it (ipywidgets keeps every open widget alive)."""
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    widget.close()


def _params_line(clip: Clip) -> str:
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
    return ", ".join(parts)


class Studio(widgets.VBox):
    """The three panels as tabs, above the history gallery. Build it with :func:`studio`."""

    def __init__(
        self,
        *,
        generate: Callable | None = None,
        describe: Callable | None = None,
        write: Callable | None = None,
        restyle: Callable | None = None,
        synchronous: bool = False,
        history: History | None = None,
        model: str | None = None,
        save_root: str | os.PathLike | None = None,
        save_box: bool | None = None,
    ) -> None:
        self.history = HISTORY if history is None else history
        common = {"synchronous": synchronous, "history": self.history, "model": model}
        self.text = TextPanel(generate, **common)
        self.image = ImagePanel(describe, write, generate, **common)
        self.audio = AudioPanel(restyle, **common)
        self.tabs = widgets.Tab(
            children=[self.text, self.image, self.audio],
            titles=["Text → music", "Image → music", "Audio → music"],
        )
        self.gallery = HistoryGallery(
            self.history, on_reuse=self.use_settings, save_root=save_root, save_box=save_box
        )
        super().__init__([self.tabs, self.gallery])
        self.add_class("mg-studio")
        _no_null_tooltips(self)

    def use_settings(self, clip: Clip) -> None:
        """Load ``clip``'s prompt and settings into the text panel, switch to it and focus its prompt."""
        self.text.load(clip)
        self.tabs.selected_index = 0
        self.text.prompt.focus()  # the browser scrolls the filled panel into view


def studio(
    *,
    model: str | None = None,
    synchronous: bool = False,
    save_root: str | os.PathLike | None = None,
    save_box: bool | None = None,
    **backends: Callable,
) -> Studio:
    """The notebook studio: text, image and audio panels as tabs, plus the history of this kernel.

    Parameters
    ----------
    model : str, optional
        Model selected at start (``$MGTOOLKIT_MODEL`` or the default otherwise).
    synchronous : bool
        Run generations on the caller's thread (no Cancel while running); for tests and scripts.
    save_root : str or Path, optional
        The folder the history's Save may write into (with its subfolders); the working directory
        by default. Typed folders outside it are refused with a message.
    save_box : bool, optional
        Show the "Save to" folder box (``False``: files go to ``outputs/`` under ``save_root``). By
        default shown in Jupyter, hidden when Voilà serves the page.
    **backends
        ``generate``, ``describe``, ``write``, ``restyle`` stand-ins (for tests).

    Examples
    --------
    >>> import mgtoolkit as mg
    >>> s = mg.studio(model="tiny")
    >>> s.text.prompt.value = "calm piano"
    >>> s.text.settings.values()["model"]
    'tiny'
    """
    return Studio(model=model, synchronous=synchronous, save_root=save_root, save_box=save_box, **backends)
