"""The notebook studio: ipywidgets panels for text, image and audio to music, and a history gallery.

Panels follow the jupyter-widgets tutorial's model/GUI split: a panel is a ``VBox`` built with
its backend functions (``mg.generate``, ``mg.describe_image``, ``mg.write_music_prompt``,
``mg.restyle`` by default; pass stand-ins to test), ``.request`` is computed from the widget
values, ``.run()`` calls the backend with it, ``.result`` holds what came back and the history records it. The Generate
button's handler is the only place an exception is caught: the core's one-line message appears in
the panel's status line, never a traceback. Work runs in a worker thread so that the kernel can
take the Cancel click, which stops the model at its next denoising step; ``synchronous=True`` runs
on the caller's thread (tests, scripts).

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
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from ..config import draw_seed
from ..errors import GenerationCancelled, MgtoolkitError
from ..models.registry import PRESETS, default_model
from ..types import Clip, GenerationRequest
from .display import audio_data_uri, clip_html, clips_html
from .history import HISTORY, History  # the gallery's model; re-exported
from .notes import capture_notes

__all__ = [
    "History",
    "HISTORY",
    "Settings",
    "TextPanel",
    "ImagePanel",
    "AudioPanel",
    "HistoryGallery",
    "Studio",
    "studio",
]

_WIDE = widgets.Layout(width="98%")


_HOMES = {  # the pure tasks: a panel records what it makes in its own history
    "generate": "mgtoolkit.tasks.text",
    "restyle": "mgtoolkit.tasks.audio",
    "describe_image": "mgtoolkit.tasks.image",
    "write_music_prompt": "mgtoolkit.tasks.image",
}


def _backend(name: str) -> Callable[..., Any]:
    """The task function ``name``, looked up when first needed."""
    return getattr(importlib.import_module(_HOMES[name]), name)


def one_line(exc: BaseException) -> str:
    """The message a panel shows for ``exc``: mgtoolkit's own one line, or type and first line."""
    if isinstance(exc, MgtoolkitError):
        return str(exc)
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _as_clips(result: Any) -> list[Clip]:
    if isinstance(result, Clip):
        return [result]
    if hasattr(result, "clip") and isinstance(result.clip, Clip):  # a Story
        return [result.clip]
    return list(result)


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
        style = {"description_width": "110px"}
        self.duration = widgets.FloatSlider(
            value=5.0, min=0.5, max=30.0, step=0.5, description="Seconds", style=style
        )
        self.steps = widgets.IntSlider(value=steps, min=1, max=200, description="Steps", style=style)
        self.guidance = widgets.FloatSlider(
            value=guidance, min=0.0, max=15.0, step=0.5, description="Guidance", style=style
        )
        self.seed = widgets.IntText(
            value=120, description="Seed", style=style, disabled=True, layout=widgets.Layout(width="220px")
        )
        self.random_seed = widgets.Checkbox(
            value=True, description="random", indent=False, layout=widgets.Layout(width="90px")
        )
        self.reroll_button = widgets.Button(
            description="Re-roll",
            icon="dice",
            tooltip="new seed, generate again",
            layout=widgets.Layout(width="100px"),
        )
        self.candidates = widgets.IntSlider(value=1, min=1, max=4, description="Candidates", style=style)
        self.model = widgets.Dropdown(
            options=_model_options(model), value=model or default_model(), description="Model", style=style
        )
        self.random_seed.observe(lambda change: setattr(self.seed, "disabled", change["new"]), "value")
        rows = [self.duration] if duration else []
        rows += [self.steps, self.guidance, widgets.HBox([self.seed, self.random_seed, self.reroll_button])]
        rows += [self.candidates] if candidates else []
        super().__init__(rows + [self.model])
        self._has_duration, self._has_candidates = duration, candidates

    def values(self) -> dict[str, Any]:
        """The generation arguments these controls set (names as in :func:`mgtoolkit.generate`)."""
        out: dict[str, Any] = {
            "num_inference_steps": self.steps.value,
            "guidance_scale": self.guidance.value,
            "seed": None if self.random_seed.value else self.seed.value,
            "model": self.model.value,
        }
        if self._has_duration:
            out["audio_length_in_s"] = self.duration.value
        if self._has_candidates:
            out["num_waveforms_per_prompt"] = self.candidates.value
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

    def __init__(self, *, synchronous: bool = False, history: History | None = None) -> None:
        super().__init__()
        self.synchronous = synchronous
        self.history = HISTORY if history is None else history
        self.result: Any = None
        self.generate_button = widgets.Button(
            description=self.generate_label, button_style="primary", icon="music"
        )
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", disabled=True)
        self.progress = widgets.IntProgress(value=0, min=0, max=1, layout=widgets.Layout(width="50%"))
        self.status = widgets.Label(value="Ready.")
        self.output = widgets.Output()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._busy_buttons: list[widgets.Button] = [self.generate_button]
        self.generate_button.on_click(lambda _b: self._start(self._generate_job, self._show_result))
        self.cancel_button.on_click(self._on_cancel)
        self.add_class("mg-panel")

    def _layout(self, controls: list[widgets.Widget]) -> None:
        bar = widgets.HBox([self.generate_button, self.cancel_button, self.progress])
        self.children = [*controls, bar, self.status, self.output]

    # - what subclasses provide
    @property
    def request(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, *, callback: Callable | None = None, cancel: threading.Event | None = None) -> Any:
        raise NotImplementedError  # pragma: no cover

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
                self.status.value = f"{self.status.value} Note: {'; '.join(notes)}"
        except GenerationCancelled:
            self._say("Cancelled: stopped at the next step; nothing was kept.", "warning")
        except Exception as exc:  # noqa: BLE001 - the one place errors are caught and shown
            self._say(one_line(exc), "danger")
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
        self.status.value = text
        self.status.style.text_color = {"danger": "#b00020", "warning": "#8a6d00"}.get(style)
        if style in ("danger", "warning"):
            self.progress.bar_style = style

    def _on_cancel(self, _button: Any = None) -> None:
        self._cancel.set()
        self.status.value = "Cancelling at the next step..."

    def _on_step(self, step: int, total: int, _latents: Any = None) -> None:
        self.progress.max = max(int(total), 1)
        self.progress.value = step + 1
        self.status.value = f"Denoising: step {step + 1} of {total}"

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


def _text(description: str, placeholder: str, rows: int = 2) -> widgets.Textarea:
    return widgets.Textarea(
        placeholder=placeholder,
        description=description,
        rows=rows,
        layout=_WIDE,
        style={"description_width": "110px"},
    )


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
        self.prompt = _text("Prompt", "e.g. A classic cocktail lounge vibe with smooth jazz piano")
        self.negative_prompt = _text("Negative prompt", "e.g. low quality, noise", rows=1)
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

    def _on_reroll(self, _button: Any = None) -> None:
        self.settings.new_seed()
        self._start(self._generate_job, self._show_result)


class _FileInput(widgets.VBox):
    """A FileUpload or a path (relative to the notebook's folder), and a preview."""

    def __init__(self, accept: str, what: str) -> None:
        self.upload = widgets.FileUpload(accept=accept, multiple=False, description=f"Upload {what}")
        self.path = widgets.Text(
            placeholder="or a path, e.g. ../mgtoolkit/assets/example_scene.png",
            description="Path",
            layout=_WIDE,
            style={"description_width": "110px"},
        )
        super().__init__([widgets.HBox([self.upload]), self.path])

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
        self.image = _FileInput("image/*", "image")
        self.preview = widgets.Image(
            format="png", layout=widgets.Layout(max_width="256px", max_height="256px")
        )
        self.describe_button = widgets.Button(description="1 · Describe image", icon="eye")
        self.caption = _text(
            "Caption", "what the image shows (edit it if the captioner got it wrong)", rows=3
        )
        self.write_button = widgets.Button(description="2 · Write music prompt", icon="pen")
        self.music_prompt = _text("Music prompt", "the musical prompt (edit it freely)", rows=3)
        self.negative_prompt = _text("Negative prompt", "e.g. low quality, noise", rows=1)
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
            _stop_if(cancel)
            self._say("Writing the musical prompt...", "")
            self.write()
        _stop_if(cancel)
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
        self._say("Caption ready: edit it if needed, then write the music prompt.", "")

    def _set_music_prompt(self, prompt: str) -> None:
        self._say("Music prompt ready: edit it if needed, then generate.", "")

    def _on_image_change(self, _change: Any = None) -> None:
        self.caption.value = ""
        self.music_prompt.value = ""
        found = self.image.preview_bytes()
        if found is not None:
            content, name = found
            self.preview.format = (Path(name).suffix.lstrip(".").lower() or "png").replace("jpg", "jpeg")
            self.preview.value = content


def _stop_if(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise GenerationCancelled("cancelled between stages")


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
        self.audio = _FileInput("audio/*,.wav,.flac,.ogg,.mp3", "audio")
        self.preview = widgets.HTML()
        self.strength = widgets.FloatSlider(
            value=0.6,
            min=0.05,
            max=1.0,
            step=0.05,
            description="Strength",
            style={"description_width": "110px"},
            tooltip="0: keep the original, 1: only the prompt",
        )
        self.prompt = _text("Prompt", "what it should become, e.g. lo-fi hip hop with vinyl crackle")
        self.negative_prompt = _text("Negative prompt", "e.g. low quality, noise", rows=1)
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
            "strength": self.strength.value,
            "negative_prompt": self.negative_prompt.value or None,
            **self.settings.values(),
        }

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

    def _on_audio_change(self, _change: Any = None) -> None:
        found = self.audio.preview_bytes()
        if found is None:
            self.preview.value = ""
            return
        content, name = found
        kind = (Path(name).suffix.lstrip(".").lower() or "wav").replace("mp3", "mpeg")
        data = base64.b64encode(content).decode("ascii")
        self.preview.value = (
            f"<div>original: {html.escape(name)}</div>"
            f'<audio controls src="data:audio/{kind};base64,{data}"></audio>'
        )


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
        Default folder for Save (relative to the notebook's folder).
    """

    def __init__(
        self, history: History, *, on_reuse: Callable[[Clip], None] | None = None, out_dir: str = "outputs"
    ) -> None:
        self.history = history
        self.on_reuse = on_reuse
        self.title = widgets.HTML()
        self.out_dir = widgets.Text(value=out_dir, description="Save to", style={"description_width": "60px"})
        self.items = widgets.VBox()
        self._rows: dict[int, widgets.Widget] = {}
        super().__init__([self.title, self.out_dir, self.items])
        history.subscribe(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the list from the history (rows already built are reused, forgotten ones dropped)."""
        clips = list(self.history.clips)
        alive = {id(c) for c in clips}
        for key in [k for k in self._rows if k not in alive]:
            _close_tree(self._rows.pop(key))  # the clip, its player and its WAV data go with it
        self.title.value = (
            f"<h4>History: {len(clips)} clip{'' if len(clips) == 1 else 's'} made in this kernel</h4>"
        )
        self.items.children = [self._row(c) for c in reversed(clips)]

    def _row(self, clip: Clip) -> widgets.Widget:
        if id(clip) not in self._rows:
            saved = widgets.HTML()
            save = widgets.Button(description="Save", icon="download")
            reuse = widgets.Button(
                description="Use these settings", icon="redo", layout=widgets.Layout(width="auto")
            )
            save.on_click(lambda _b: self._save(clip, saved))
            reuse.on_click(lambda _b: self.on_reuse(clip) if self.on_reuse else None)
            params = widgets.HTML(f"<small>{html.escape(_params_line(clip))}</small>")
            self._rows[id(clip)] = widgets.VBox(
                [widgets.HTML(clip_html(clip)), params, widgets.HBox([save, reuse]), saved],
                layout=widgets.Layout(border="1px solid #ddd", padding="4px", margin="2px"),
            )
        return self._rows[id(clip)]

    def _save(self, clip: Clip, saved: widgets.HTML) -> None:
        try:
            path = clip.save(self.out_dir.value or "outputs")
        except Exception as exc:  # noqa: BLE001 - shown in the row, never a traceback
            saved.value = f'<span style="color:#b00020">{html.escape(one_line(exc))}</span>'
            return
        saved.value = (
            f"saved {html.escape(os.fspath(path))} · "
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
        self.gallery = HistoryGallery(self.history, on_reuse=self.use_settings)
        super().__init__([self.tabs, self.gallery])
        self.add_class("mg-studio")

    def use_settings(self, clip: Clip) -> None:
        """Load ``clip``'s prompt and settings into the text panel and switch to it."""
        self.text.load(clip)
        self.tabs.selected_index = 0


def studio(*, model: str | None = None, synchronous: bool = False, **backends: Callable) -> Studio:
    """The notebook studio: text, image and audio panels as tabs, plus the history of this kernel.

    Parameters
    ----------
    model : str, optional
        Model selected at start (``$MGTOOLKIT_MODEL`` or the default otherwise).
    synchronous : bool
        Run generations on the caller's thread (no Cancel while running); for tests and scripts.
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
    return Studio(model=model, synchronous=synchronous, **backends)
