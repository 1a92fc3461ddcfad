"""Image to music: describe, write a musical prompt, generate, each stage editable."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from ...errors import GenerationCancelled, InvalidInputError
from ...types import Clip, GenerationRequest
from ..history import History
from .controls import Settings, _FileInput, _text, _tip
from .limits import StudioLimits
from .panel_base import _as_clips, _backend, _Panel


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
