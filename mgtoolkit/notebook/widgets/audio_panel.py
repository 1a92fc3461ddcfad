"""Audio to music: listen to an uploaded clip, describe it, then restyle it or make new music."""

from __future__ import annotations

import base64
import html
import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from ...errors import GenerationCancelled, InvalidInputError
from ...types import Clip, GenerationRequest
from ..history import History
from .controls import Settings, _FileInput, _slider, _snap, _text, _tip
from .limits import StudioLimits
from .panel_base import _as_clips, _backend, _Panel


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
