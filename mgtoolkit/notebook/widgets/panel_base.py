"""The machinery the three panels share: Generate/Cancel, progress, status, a worker thread, and
the one place an exception is caught and shown."""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from ...errors import GenerationCancelled
from ...types import Clip
from ..display import clips_html
from ..history import HISTORY, History
from ..notes import capture_notes
from .catalogue import resolve_lang, tr
from .controls import CSS, StatusLine, _FileInput, _no_null_tooltips, _tip
from .limits import StudioLimits
from .messages import FILE_FIXES, UPLOAD_FIXES, panel_message

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
