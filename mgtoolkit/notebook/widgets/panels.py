"""The three panels (text, image, audio to music) and the machinery they share: Generate/Cancel,
progress, status, a worker thread, and the one place an exception is caught and shown."""

from __future__ import annotations

import base64
import html
import importlib
import re
import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from ...errors import GenerationCancelled, InvalidInputError
from ...types import Clip, GenerationRequest
from ..display import clips_html
from ..history import HISTORY, History
from ..notes import capture_notes
from .catalogue import KEYS, key_label, resolve_lang, tr
from .controls import (
    CSS,
    Settings,
    StatusLine,
    _FileInput,
    _no_null_tooltips,
    _short,
    _slider,
    _snap,
    _text,
    _tip,
)
from .limits import StudioLimits
from .messages import FILE_FIXES, UPLOAD_FIXES, panel_message

__all__ = ["TextPanel", "ImagePanel", "AudioPanel"]

_HOMES = {  # the pure tasks: a panel records what it makes in its own history
    "generate": "mgtoolkit.tasks.text",
    "extend": "mgtoolkit.tasks.extend",
    "restyle": "mgtoolkit.tasks.audio",
    "describe_image": "mgtoolkit.tasks.image",
    "write_music_prompt": "mgtoolkit.tasks.image",
    "default_captioner": "mgtoolkit.tasks.image",
    "default_writer": "mgtoolkit.tasks.image",
    "describe_audio": "mgtoolkit.analysis.describe",
}


def _backend(name: str) -> Callable[..., Any]:
    """The task function ``name``, looked up when first needed."""
    return getattr(importlib.import_module(_HOMES[name]), name)


def _as_clips(result: Any) -> list[Clip]:
    if isinstance(result, Clip):
        return [result]
    if hasattr(result, "clip") and isinstance(result.clip, Clip):  # a Story
        return [result.clip]
    return list(result)


# --- the panel machinery -----------------------------------------------------------------------------


class _Panel(widgets.VBox):
    """Status line, progress bar, Generate/Cancel and an Output, and the one exception handler."""

    generate_label = "Generate"
    generate_tip = "make music from the settings above"

    def __init__(
        self,
        *,
        synchronous: bool = False,
        history: History | None = None,
        limits: StudioLimits | None = None,
        model: str | None = None,
        lang: str | None = None,
    ) -> None:
        super().__init__()
        self.lang = resolve_lang(lang)
        self.limits = limits if limits is not None else StudioLimits.for_environment(model=model)
        self.synchronous = synchronous
        self.history = HISTORY if history is None else history
        self.result: Any = None
        self.generate_button = _tip(
            widgets.Button(
                description=self._t(self.generate_label),
                button_style="primary",
                icon="music",
                layout=widgets.Layout(width="auto"),
            ),
            self._t(self.generate_tip),
        )
        self.cancel_button = _tip(
            widgets.Button(
                description=self._t("Cancel"), icon="stop", disabled=True, layout=widgets.Layout(width="auto")
            ),
            self._t("stop at the next denoising step"),
        )
        self.progress = _tip(
            widgets.IntProgress(value=0, min=0, max=1, layout=widgets.Layout(width="40%", min_width="120px")),
            self._t("denoising progress"),
        )
        self.status = StatusLine("Ready.", lang=self.lang)
        self.output = widgets.Output()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        # one job at a time, decided here: not by a button's state, which the browser can change
        self._job = threading.Lock()
        self._busy_buttons: list[widgets.Button] = [self.generate_button]
        self.generate_button.on_click(lambda _b: self._start(self._generate_job, self._show_result))
        self.cancel_button.on_click(self._on_cancel)
        self.add_class("mg-panel")

    def _t(self, text: str, **fields: Any) -> str:
        """``text`` in the panel's language (see :mod:`.catalogue`)."""
        return tr(self.lang, text, **fields)

    def _layout(self, controls: list[widgets.Widget], actions: tuple[widgets.Widget, ...] = ()) -> None:
        bar = widgets.HBox([self.generate_button, *actions, self.cancel_button, self.progress])
        bar.add_class("mg-wrap")
        self.children = [widgets.HTML(CSS), *controls, bar, self.status, self.output]
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

    def _check_writer(self) -> None:
        """Where downloads are off, refuse the default writer if it is not on this machine."""
        if getattr(self, "_write", None) is None:
            self.limits.check_helper("writer", _backend("default_writer")())

    def _fixes(self) -> dict[str, str]:
        """What a message about a file says to do (no "type a path" where there is no Path box)."""
        return UPLOAD_FIXES if self.limits.paths is False else FILE_FIXES

    def _bad_file(self, source: _FileInput, problem: str) -> str:
        """``Uploaded file 'x.png': <problem>; <fix>.`` in the panel's language."""
        fix = self._t(self._fixes()[source.what])
        return self._t(
            "{file}: {problem}; {fix}.", file=source.described(), problem=self._t(problem), fix=fix
        )

    # - the handler
    @property
    def busy(self) -> bool:
        """Whether a job is running (the kernel's own flag, whatever the buttons say)."""
        return self._job.locked()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the current worker thread (if any) is done."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _generate_job(self) -> Any:
        return self.run(callback=self._on_step, cancel=self._cancel)

    def _start(self, job: Callable[[], Any], done: Callable[[Any], None]) -> bool:
        """Run ``job`` (then ``done`` with its result) unless one is running; whether it started."""
        if not self._job.acquire(blocking=False):
            self.status.text = self._t(
                "Busy: the panel is still working on the last request; wait for it, or press Cancel."
            )
            return False
        self._cancel = threading.Event()
        self._set_busy(True)
        if self.synchronous:
            self._work(job, done)
            return True
        self._thread = threading.Thread(target=self._work, args=(job, done), daemon=True)
        try:
            self._thread.start()
        except BaseException:
            self._set_busy(False)
            self._job.release()
            raise
        return True

    def _work(self, job: Callable[[], Any], done: Callable[[Any], None]) -> None:
        try:
            with capture_notes() as notes:  # this thread's notes go to the panel, not stderr
                result = job()
            done(result)
            notes = self._notes(notes, result)
            if notes:
                self.status.text = self.status.text + self._t(
                    " Note: {notes}", notes=self._t("; ").join(notes)
                )
        except GenerationCancelled:
            self._say(self._t("Cancelled: stopped at the next step; nothing was kept."), "warning")
        except Exception as exc:  # noqa: BLE001 - the one place errors are caught and shown
            self._say(self._message(exc), "danger")
        finally:
            self._set_busy(False)
            self._job.release()

    def _message(self, exc: BaseException) -> str:
        """What the panel says about ``exc``, in its language."""
        return panel_message(exc, files=self._file_names(), fixes=self._fixes(), lang=self.lang)

    def _notes(self, notes: list[str], result: Any) -> list[str]:
        """The run's notes to show: in English the core's own; in another language unknown words
        are said from the clips' translation records, the core's other notes kept under a prefix."""
        if self.lang == "en":
            return list(notes)  # the core's own words, with its fix
        made = [result] if isinstance(result, Clip) else result if isinstance(result, list) else []
        said = _untranslated_notes([c for c in made if isinstance(c, Clip)], self.lang)
        kept = [n for n in notes if not _UNTRANSLATED.match(n)] if said else list(notes)
        return said + [self._t("Note (in English): {note}", note=n) for n in kept]

    def _set_busy(self, busy: bool) -> None:
        for button in self._busy_buttons:
            button.disabled = busy
        self.cancel_button.disabled = not busy
        if busy:
            self.progress.value, self.progress.bar_style = 0, ""
            self._say(self._t("Working..."), "")

    def _say(self, text: str, style: str) -> None:
        self.status.text = text
        self.status.tone = style
        if style in ("danger", "warning"):
            self.progress.bar_style = style

    def _on_cancel(self, _button: Any = None) -> None:
        self._cancel.set()
        self.status.text = self._t("Cancelling at the next step...")

    def _step_text(self, step: int, total: int) -> str:
        return self._t("Denoising: step {step} of {total}", step=step + 1, total=total)

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
                "data": {"text/html": clips_html(clips, lang=self.lang), "text/plain": repr(clips)},
            },
        )
        self.progress.bar_style = "success"
        self._say(_done_message(clips, self.lang), "")


def _done_message(clips: list[Clip], lang: str = "en") -> str:
    seeds = ", ".join(str(c.seed) for c in clips)
    total = sum(float(c.timings.get("total_s", 0.0)) for c in clips[:1])
    done = "Done: 1 clip, seed {seeds}" if len(clips) == 1 else "Done: {n} clips, seed {seeds}"
    return (
        tr(lang, done, n=len(clips), seeds=seeds)
        + (tr(lang, ", {seconds} s", seconds=f"{total:.1f}") if total else "")
        + tr(lang, ".")
    )


_UNTRANSLATED = re.compile(r"^(prompt|negative_prompt): the glossary does not know ")
"""The core's note on unknown words (:class:`~mgtoolkit.UntranslatedWordsWarning`)."""


def _untranslated_notes(clips: list[Clip], lang: str) -> list[str]:
    """One note per translated text with words the glossary did not know, from the clips' records."""
    notes: list[str] = []
    for clip in clips[:1]:  # the candidates share their prompt
        for field, record in (clip.extra.get("translation") or {}).items():
            unknown = list(record.get("unknown") or ())
            if unknown:
                named = tr(lang, "prompt" if field == "prompt" else "negative")
                said = tr(
                    lang,
                    "the glossary does not know {words}; they were left out, so the model received {sent}",
                    words=("、" if lang == "zh" else ", ").join(unknown),
                    sent=repr(record.get("sent", "")),
                )
                notes.append(f"{named}{'：' if lang == 'zh' else ': '}{said}")
    return notes


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
    limits : StudioLimits, optional
        What the panel allows, checked in the kernel before anything runs (by default
        :meth:`StudioLimits.published` when Voilà serves the page, else :meth:`StudioLimits.notebook`).
    lang : str, optional
        ``"en"`` or ``"zh"``: the language of every label, help text, status line and message;
        ``None`` follows the notebook's locale (``$MGTOOLKIT_LANG``, then ``$LC_ALL``/``$LANG``).

    The "Fit to a grid" box (off by default) reveals BPM, bars, beats per bar and key, passed to
    :func:`mgtoolkit.generate` as ``bpm=``, ``bars=``, ``beats_per_bar=`` and ``key=`` (the bars
    then decide the length; see :attr:`options`).
    """

    def __init__(
        self,
        generate: Callable[..., Any] | None = None,
        *,
        synchronous: bool = False,
        history: History | None = None,
        model: str | None = None,
        extend: Callable[..., Any] | None = None,
        limits: StudioLimits | None = None,
        lang: str | None = None,
    ) -> None:
        super().__init__(synchronous=synchronous, history=history, limits=limits, model=model, lang=lang)
        self._generate = generate
        self._extend = extend
        t = self._t
        self.loop = _tip(
            widgets.Checkbox(value=False, description=t("Loop: the end flows into the start"), indent=False),
            t("make a seamless loop (Save writes loop points that samplers and DAWs read)"),
        )
        self.prompt = _text(
            "Prompt",
            "e.g. A classic cocktail lounge vibe with smooth jazz piano",
            "what the music should be",
            lang=self.lang,
        )
        self.negative_prompt = _text(
            "Negative prompt",
            "e.g. low quality, noise",
            "what to steer away from (optional)",
            rows=1,
            lang=self.lang,
        )
        self.settings = Settings(model=model, limits=self.limits, lang=self.lang)
        self.settings.reroll_button.on_click(self._on_reroll)
        self._busy_buttons.append(self.settings.reroll_button)
        self._tempo_controls()
        self._layout([self.prompt, self.negative_prompt, self.settings, self.loop, self.grid, self.grid_box])

    def _tempo_controls(self) -> None:
        """The "Fit to a grid" box (off) and, revealed by it, BPM, bars, beats per bar and key."""
        t = self._t
        self.grid = _tip(
            widgets.Checkbox(
                value=False,
                description=t("Fit to a grid: tempo, bars, key"),
                indent=False,
                layout=widgets.Layout(width="auto"),
            ),
            t(
                "stretch and cut the clip to an exact tempo, whole bars and a key (the bars decide its length)"
            ),
        )
        self.bpm = _slider(widgets.IntSlider, t("BPM"), t("beats per minute, 40 to 240"), 120, 40, 240, 1)
        self.bars = _slider(widgets.IntSlider, t("Bars"), t("how many bars long, 1 to 64"), 4, 1, 64, 1)
        self.beats_per_bar = _slider(
            widgets.IntSlider, t("Beats per bar"), t("beats in a bar (3 for a waltz), 1 to 12"), 4, 1, 12, 1
        )
        self.key = _tip(
            widgets.Dropdown(
                options=[(t("keep"), "")] + [(key_label(self.lang, k), k) for k in KEYS],
                value="",
                description=t("Key"),
                style={"description_width": "120px"},
            ),
            t("shift to this key, or keep the key it was made in"),
        )
        self.grid_box = widgets.VBox(
            [self.bpm, self.bars, self.beats_per_bar, self.key], layout=widgets.Layout(display="none")
        )
        self.grid.observe(self._on_grid, "value")

    def _on_grid(self, _change: Any = None) -> None:
        on = bool(self.grid.value)
        self.grid_box.layout.display = None if on else "none"
        self.settings.duration.disabled = on  # the bars decide the length

    @property
    def options(self) -> dict[str, Any]:
        """The keyword arguments :func:`mgtoolkit.generate` gets beside :attr:`request`: ``loop``,
        and with "Fit to a grid" ticked ``bpm``, ``bars``, ``beats_per_bar`` and ``key`` (absent
        when "keep")."""
        out: dict[str, Any] = {"loop": True} if self.loop.value else {}
        if self.grid.value:
            out.update(bpm=int(self.bpm.value), bars=int(self.bars.value))
            out["beats_per_bar"] = int(self.beats_per_bar.value)
            if self.key.value:
                out["key"] = self.key.value
        return out

    @property
    def request(self) -> GenerationRequest:
        """A :class:`~mgtoolkit.GenerationRequest` from the widget values (not yet validated).
        With "Fit to a grid" its length is left at the default: the bars decide it."""
        values = self.settings.values()
        if self.grid.value:
            values.pop("audio_length_in_s", None)
        return GenerationRequest(
            prompt=self.prompt.value,
            negative_prompt=self.negative_prompt.value or None,
            **values,
        )

    def run(self, *, callback: Callable | None = None, cancel: threading.Event | None = None) -> list[Clip]:
        """Generate from :attr:`request` and :attr:`options`; return the clips (also in :attr:`result`)."""
        self.settings.checked_values()  # this studio's limits, before anything runs
        options = self.options
        self.limits.check(options)  # the grid's bounds and length, whatever the browser did
        self.limits.check_texts({"prompt": self.prompt.value, "negative_prompt": self.negative_prompt.value})
        generate = self._generate or _backend("generate")
        clips = _as_clips(generate(self.request, callback=callback, cancel=cancel, **options))
        self.result = clips
        self.settings.show_seed(clips[0].seed)
        self.history.add(clips)
        return clips

    def extend_clip(self, clip: Clip, seconds: float = 10.0) -> None:
        """Continue ``clip`` by ``seconds`` (its prompt, a fresh window each ~10 s) on the panel's
        worker, with its progress bar and Cancel; the longer clip joins the history."""

        def job() -> Clip:
            self.limits.check_extended(clip.duration + float(seconds))
            self.limits.check(
                {"num_inference_steps": clip.request.num_inference_steps, "model": clip.request.model}
            )
            extend = self._extend or _backend("extend")
            longer = extend(clip, seconds=seconds, callback=self._on_step, cancel=self._cancel)
            self.history.add([longer])
            return longer

        self._say(
            self._t(
                "Extending the clip with seed {seed} by {seconds} s...",
                seed=clip.seed,
                seconds=f"{seconds:g}",
            ),
            "",
        )
        self._start(job, self._show_result)

    def load(self, clip: Clip) -> None:
        """Fill the panel with the prompt and settings that made ``clip`` ("use these settings again")."""
        self.prompt.value = clip.request.prompt
        self.negative_prompt.value = clip.request.negative_prompt or ""
        self.settings.load(clip.request, clip.seed)
        self.settings.candidates.value = 1
        self.loop.value = "loop" in clip.extra  # made as a seamless loop: make the next one so too
        grid = clip.extra.get("conform") or {}
        self.grid.value = bool(grid.get("bpm"))
        if grid.get("bpm"):
            self.bpm.value = int(round(float(grid["bpm"])))
            self.bars.value = int(grid.get("bars") or self.bars.value)
            self.beats_per_bar.value = int(grid.get("beats_per_bar") or 4)
        asked = grid.get("key")
        self.key.value = _key_option(asked) if asked else ""
        self._say(
            self._t(
                "Filled in from the clip with seed {seed} ({prompt}): change what you like, then press Generate.",
                seed=clip.seed,
                prompt=_short(clip.prompt),
            ),
            "",
        )

    def _on_reroll(self, _button: Any = None) -> None:
        self.settings.new_seed()
        self._start(self._generate_job, self._show_result)


def _key_option(name: str) -> str:
    """The key dropdown's value for a key name as recorded (``"Am"``, ``"A minor"``), or "keep"."""
    from ...analysis.conform import parse_key

    try:
        key = parse_key(name)
    except Exception:  # noqa: BLE001 - a key the dropdown cannot show: keep
        return ""
    return next((k for k in KEYS if (parse_key(k).tonic, parse_key(k).mode) == (key.tonic, key.mode)), "")


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
    synchronous, history, model, limits
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
        limits: StudioLimits | None = None,
        lang: str | None = None,
    ) -> None:
        super().__init__(synchronous=synchronous, history=history, limits=limits, model=model, lang=lang)
        self._describe, self._write, self._generate = describe, write, generate
        t = self._t
        self.image = _FileInput(
            "image/*", "image", "../mgtoolkit/assets/example_scene.png", limits=self.limits, lang=self.lang
        )
        self.preview = widgets.Image(
            format="png", layout=widgets.Layout(max_width="256px", max_height="256px", display="none")
        )
        self.describe_button = _tip(
            widgets.Button(
                description=t("1 · Describe image"), icon="eye", layout=widgets.Layout(width="auto")
            ),
            t("stage 1: the captioner writes what the picture shows"),
        )
        self.caption = _text(
            "Caption",
            "what the image shows (edit it if the captioner got it wrong)",
            "stage 1's text: edit it freely",
            rows=3,
            lang=self.lang,
        )
        self.write_button = _tip(
            widgets.Button(
                description=t("2 · Write music prompt"), icon="pen", layout=widgets.Layout(width="auto")
            ),
            t("stage 2: the writer turns the caption into a musical prompt"),
        )
        self.music_prompt = _text(
            "Music prompt",
            "the musical prompt (edit it freely)",
            "stage 2's text: the prompt for the music",
            rows=3,
            lang=self.lang,
        )
        self.negative_prompt = _text(
            "Negative prompt",
            "e.g. low quality, noise",
            "what to steer away from (optional)",
            rows=1,
            lang=self.lang,
        )
        self.settings = Settings(candidates=False, model=model, limits=self.limits, lang=self.lang)
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

    def _check_texts(self) -> None:
        self.limits.check_texts(
            {
                "caption": self.caption.value,
                "music_prompt": self.music_prompt.value,
                "negative_prompt": self.negative_prompt.value,
            }
        )

    def describe(self) -> str:
        """Stage 1: caption the image (also put into :attr:`caption`)."""
        image = self.image.value()
        if self._describe is None:
            self.limits.check_helper("captioner", _backend("default_captioner")())
        describe = self._describe or _backend("describe_image")
        self.caption.value = describe(image)
        return self.caption.value

    def write(self) -> str:
        """Stage 2: the musical prompt from the caption (also put into :attr:`music_prompt`)."""
        self.limits.check_texts({"caption": self.caption.value})
        self._check_writer()
        write = self._write or _backend("write_music_prompt")
        self.music_prompt.value = write(self.caption.value)
        return self.music_prompt.value

    def run(self, *, callback: Callable | None = None, cancel: threading.Event | None = None) -> Clip:
        """Run the stages still empty, then generate; return the clip (also in :attr:`result`)."""
        self.settings.checked_values()  # this studio's limits, before anything runs
        self._check_texts()
        if not self.caption.value.strip():
            self._say(self._t("Describing the image..."), "")
            self.describe()
        if not self.music_prompt.value.strip():
            GenerationCancelled.raise_if_set(cancel, "between stages")
            self._say(self._t("Writing the musical prompt..."), "")
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
        self._say(self._t("Describing the image..."), "")
        return self.describe()

    def _write_job(self) -> str:
        self._say(self._t("Writing the musical prompt..."), "")
        return self.write()

    def _set_caption(self, caption: str) -> None:
        self._say(self._t("Caption ready: edit it if needed, then press 2 · Write music prompt."), "")

    def _set_music_prompt(self, prompt: str) -> None:
        self._say(self._t("Music prompt ready: edit it if needed, then press Generate music."), "")

    def _on_image_change(self, _change: Any = None) -> None:
        self.caption.value = ""
        self.music_prompt.value = ""
        self.preview.layout.display = "none"
        try:
            found = self.image.preview_bytes()
        except InvalidInputError as exc:  # an upload beyond the app's limits
            self._say(self._message(exc), "danger")
            return
        if found is None:
            return
        content, _name = found
        kind = _image_kind(content)
        if kind is None:
            self._say(self._bad_file(self.image, "is not a picture this panel can read"), "danger")
            return
        self.preview.format, self.preview.value = kind, content
        self.preview.layout.display = None
        self._say(
            self._t(
                "{file} is ready: press 1 · Describe image (or Generate music).", file=self.image.described()
            ),
            "",
        )


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
    """Audio to music: listen to an uploaded clip, then restyle it or make new music from it.

    1. *Describe clip* (runs by itself on upload): tempo, key, loudness and CLAP tags
       (:func:`mgtoolkit.describe_audio`), shown under the player; its tags, tempo and key become
       the starting prompt when the prompt box is empty (a prompt you typed is never replaced).
    2. *Write music prompt* (optional): the chat writer turns the description into a musical prompt,
       as the image chain does (:func:`mgtoolkit.audio_to_music`).
    3. *Restyle* moves the clip's own sound towards the prompt; *New music* makes a fresh clip of
       the same length from the prompt alone.

    Parameters
    ----------
    restyle : callable, optional
        ``restyle(audio, prompt, *, strength, negative_prompt, num_inference_steps, guidance_scale,
        seed, model, callback, cancel) -> Clip``; :func:`mgtoolkit.restyle` by default.
    describe, write, generate : callable, optional
        :func:`mgtoolkit.describe_audio`, :func:`mgtoolkit.write_music_prompt` and
        :func:`mgtoolkit.generate` by default.
    synchronous, history, model, limits
        As for :class:`TextPanel`.
    """

    generate_label = "Restyle"
    generate_tip = "move the clip's sound towards the prompt"

    def __init__(
        self,
        restyle: Callable[..., Any] | None = None,
        *,
        describe: Callable[..., Any] | None = None,
        write: Callable[..., str] | None = None,
        generate: Callable[..., Any] | None = None,
        synchronous: bool = False,
        history: History | None = None,
        model: str | None = None,
        limits: StudioLimits | None = None,
        lang: str | None = None,
    ) -> None:
        super().__init__(synchronous=synchronous, history=history, limits=limits, model=model, lang=lang)
        t = self._t
        self._restyle, self._describe, self._write, self._generate = restyle, describe, write, generate
        self.description: Any = None  # the AudioDescription of the clip now in the panel
        self._making = "restyle"  # or "new music": what the progress line names
        self.audio = _FileInput(
            "audio/*,.wav,.flac,.ogg,.mp3",
            "audio",
            "outputs/my-clip.wav",
            limits=self.limits,
            check=self._check_header,
            lang=self.lang,
        )
        self.preview = widgets.HTML()
        self.heard = widgets.HTML()
        self.describe_button = _tip(
            widgets.Button(
                description=t("1 · Describe clip"), icon="headphones", layout=widgets.Layout(width="auto")
            ),
            t("stage 1: tempo, key, loudness and tags of the clip (runs by itself on upload)"),
        )
        self.write_button = _tip(
            widgets.Button(
                description=t("2 · Write music prompt"), icon="pen", layout=widgets.Layout(width="auto")
            ),
            t("stage 2 (optional): the writer turns the description into a musical prompt"),
        )
        self.strength = _slider(
            widgets.FloatSlider,
            t("Strength"),
            t("0.05: keep almost all of the original; 1: keep only its length and follow the prompt"),
            0.6,
            0.05,
            1.0,
            0.05,
        )
        self.prompt = _text(
            "Prompt",
            "what it should become, e.g. lo-fi hip hop with vinyl crackle",
            "what the clip should become (starts from what the clip sounds like)",
            lang=self.lang,
        )
        self.negative_prompt = _text(
            "Negative prompt",
            "e.g. low quality, noise",
            "what to steer away from (optional)",
            rows=1,
            lang=self.lang,
        )
        self.settings = Settings(
            duration=False, candidates=False, model=model, limits=self.limits, lang=self.lang
        )
        self.settings.reroll_button.layout.display = "none"
        self.new_music_button = _tip(
            widgets.Button(description=t("New music"), icon="music", layout=widgets.Layout(width="auto")),
            t("make a fresh clip of the same length from the prompt alone (the strength is not used)"),
        )
        self._busy_buttons += [self.describe_button, self.write_button, self.new_music_button]
        self.describe_button.on_click(lambda _b: self._start(self._describe_job, self._show_description))
        self.write_button.on_click(lambda _b: self._start(self._write_job, self._set_written_prompt))
        self.new_music_button.on_click(lambda _b: self._start(self._new_music_job, self._show_result))
        self.audio.observe_change(self._on_audio_change)
        self._layout(
            [
                self.audio,
                self.preview,
                _wrapping_row(self.describe_button, self.write_button),
                self.heard,
                self.prompt,
                self.negative_prompt,
                self.strength,
                self.settings,
            ],
            actions=(self.new_music_button,),
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

    def _check_header(self, content: bytes, shown: str) -> Any:
        """Refuse audio by its header (length, channels, rate) before anything decodes it."""
        from ...io.audio import check_audio_header

        return check_audio_header(
            content,
            max_s=self.limits.max_upload_s,
            max_channels=self.limits.max_upload_channels,
            shown=shown,
        )

    def describe(self) -> Any:
        """Stage 1: describe the clip (also in :attr:`description`); fills an empty prompt."""
        describe = self._describe or _backend("describe_audio")
        audio = self.audio.value()
        options: dict[str, Any] = {"clap": self._clap()}
        if self._describe is None and not self.limits.may_load("clap", options["clap"]):
            options["tags"] = False  # no CLAP here and no downloads: tempo, key and loudness only
        description = describe(audio, **options)
        if self.audio.value() != audio:  # another clip came meanwhile: this description is not its
            return None
        self.description = description
        if not self.prompt.value.strip():
            self.prompt.value = description.music_prompt()
        return description

    def write(self) -> str:
        """Stage 2: a musical prompt from the description (put into :attr:`prompt`)."""
        self._check_writer()
        write = self._write or _backend("write_music_prompt")
        self.prompt.value = write(self._described().sentence())
        return self.prompt.value

    def run(self, *, callback: Callable | None = None, cancel: threading.Event | None = None) -> Clip:
        """Restyle with :attr:`request`; return the clip (also in :attr:`result`)."""
        self.settings.checked_values()  # this studio's limits, before anything runs
        self.limits.check_texts({"prompt": self.prompt.value, "negative_prompt": self.negative_prompt.value})
        restyle = self._restyle or _backend("restyle")
        request = self.request
        clip = _as_clips(
            restyle(request.pop("audio"), request.pop("prompt"), **request, callback=callback, cancel=cancel)
        )[0]
        return self._keep(clip)

    def new_music(self, *, callback: Callable | None = None, cancel: threading.Event | None = None) -> Clip:
        """Fresh music from the prompt, as long as the clip (1-30 s); the clip's sound is not used."""
        description = self._described()
        GenerationCancelled.raise_if_set(cancel, "between stages")
        settings = {k: v for k, v in self.request.items() if k not in ("audio", "prompt", "strength")}
        length = min(
            max(round(float(description.duration_s), 1), 1.0), 30.0, self.limits.max_audio_length_in_s
        )
        self.limits.check({**settings, "audio_length_in_s": length})
        self.limits.check_texts({"prompt": self.prompt.value, "negative_prompt": self.negative_prompt.value})
        request = GenerationRequest(prompt=self.prompt.value, audio_length_in_s=length, **settings)
        generate = self._generate or _backend("generate")
        clip = _as_clips(generate(request, callback=callback, cancel=cancel))[0]
        return self._keep(clip.with_extra(audio_description=description.to_dict()))

    def _described(self) -> Any:
        """The clip's description, made now if there is none yet."""
        if self.description is None and self.describe() is None:
            raise InvalidInputError(
                "audio",
                self.audio.described(),
                "changed while it was being described",
                "press 1 · Describe clip, then try again",
            )
        return self.description

    def _keep(self, clip: Clip) -> Clip:
        self.result = clip
        self.settings.show_seed(clip.seed)
        self.history.add([clip])
        return clip

    def _clap(self) -> str | None:
        """The tiny CLAP for a tiny music model (as :func:`mgtoolkit.audio_to_music` picks)."""
        from ...models.registry import resolve_model

        try:
            return "tiny" if resolve_model(self.settings.model.value).is_tiny else None
        except Exception:  # noqa: BLE001 - an unknown model is reported when music is made
            return None

    def _step_text(self, step: int, total: int) -> str:
        if self._making == "new music":
            return self._t("New music: step {step} of {total}", step=step + 1, total=total)
        strength, steps = _snap(self.strength), int(self.settings.steps.value)
        return self._t(
            "Restyling: step {step} of {total} (strength {strength} × {steps} steps: the first steps are skipped "
            "to keep the original's shape)",
            step=step + 1,
            total=total,
            strength=f"{strength:g}",
            steps=steps,
        )

    def _describe_job(self) -> Any:
        self._say(self._t("Listening: tempo, key, loudness and tags..."), "")
        return self.describe()

    def _write_job(self) -> str:
        self._say(self._t("Writing a musical prompt from the description..."), "")
        return self.write()

    def _generate_job(self) -> Clip:
        self._making = "restyle"
        return super()._generate_job()

    def _new_music_job(self) -> Clip:
        self._making = "new music"
        return self.new_music(callback=self._on_step, cancel=self._cancel)

    def _show_description(self, description: Any) -> None:
        if description is None:
            self._say(
                self._t("The clip changed while it was being described: press 1 · Describe clip."), "warning"
            )
            return
        tagged = "" if description.tags else self._t(" (no tags: see the note)")
        self.heard.value = (
            f"<div class='mg-heard'><b>{html.escape(self._t('Heard:'))}</b> "
            f"{html.escape(description.sentence())}{html.escape(tagged)}</div>"
        )
        self._say(
            self._t("Described: the prompt starts from it; edit it, then press Restyle or New music."), ""
        )

    def _set_written_prompt(self, prompt: str) -> None:
        self._show_description(self.description)
        self._say(self._t("Music prompt ready: edit it if needed, then press Restyle or New music."), "")

    def _on_audio_change(self, _change: Any = None) -> None:
        self.preview.value = ""
        self.heard.value = ""
        self.description = None
        try:
            found = self.audio.preview_bytes()
        except InvalidInputError as exc:  # refused by its header or size, before any decoding
            self._say(self._message(exc), "danger")
            return
        if found is None:
            return
        content, name = found
        problem, mime = _audio_problem(content)
        if problem is not None:
            self._say(self._bad_file(self.audio, problem), "danger")
            return
        self.preview.value = _player(content, mime, self._t("original: {name}", name=name))
        self._say(self._t("{file} is ready: listening to it...", file=self.audio.described()), "")
        self._start(self._describe_job, self._show_description)


def _wrapping_row(*children: widgets.Widget) -> widgets.HBox:
    """Buttons side by side that wrap onto a new line on a narrow screen rather than shrink."""
    row = widgets.HBox(list(children))
    row.add_class("mg-wrap")
    return row


_MIMES = {"WAV": "audio/wav", "FLAC": "audio/flac", "OGG": "audio/ogg", "MP3": "audio/mpeg"}
"""The data URL's type, from the format libsndfile read (never from the file's name)."""


def _audio_problem(content: bytes) -> tuple[str | None, str]:
    """Why ``content`` cannot be played and restyled (``None`` if it reads as audio), and its MIME type."""
    from ...io.audio import audio_header

    info = audio_header(content)  # the header only: nothing is decoded here
    if info is None:
        return "is not an audio file this panel can read", ""
    if info.frames == 0:
        return "holds no sound", ""
    return None, _MIMES.get(str(info.format).upper(), "audio/wav")


def _player(content: bytes, mime: str, caption: str) -> str:
    """An ``<audio>`` player for ``content``: the caption escaped, the data URL of a known type."""
    label = html.escape(caption, quote=True)
    data = base64.b64encode(content).decode("ascii")
    return f'<div>{label}</div><audio controls aria-label="{label}" src="data:{mime};base64,{data}"></audio>'
