"""The controls the panels share: status line, settings, text boxes, file inputs, and the CSS that
keeps labels whole, wraps the status and draws a focus ring."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import traitlets

from ...config import SEED_MAX, draw_seed
from ...errors import InvalidInputError
from ...models.registry import PRESETS, default_model
from ...types import GenerationRequest
from .catalogue import resolve_lang, tr
from .limits import StudioLimits, read_allowed_file
from .messages import strip_ansi

__all__ = ["StatusLine", "Settings", "CSS"]

_LABEL_W = "120px"
_STYLE = {"description_width": _LABEL_W}


def _wide() -> widgets.Layout:
    return widgets.Layout(width="100%", max_width="760px")


CSS = """<style>
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


class StatusLine(widgets.HTML):
    """The panel's status: full text, wrapped, announced to screen readers (``role=status``).

    ``text`` is the plain message (terminal colour codes removed); ``value`` is its HTML.
    """

    text = traitlets.Unicode("")
    tone = traitlets.Unicode("")

    def __init__(self, text: str = "Ready.", *, lang: str = "en") -> None:
        super().__init__()
        self.add_class("mg-status")
        self.layout.width = "100%"
        self.text = tr(lang, text)
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
        limits: StudioLimits | None = None,
        lang: str | None = None,
    ) -> None:
        self.lang = lang = resolve_lang(lang)
        self.limits = limits if limits is not None else StudioLimits.for_environment(model=model)
        top = self.limits
        self.duration = _slider(
            widgets.FloatSlider,
            tr(lang, "Seconds"),
            tr(lang, "length of the clip in seconds"),
            min(5.0, top.max_audio_length_in_s),
            0.5,
            top.max_audio_length_in_s,
            0.5,
        )
        self.steps = _slider(
            widgets.IntSlider,
            tr(lang, "Steps"),
            tr(lang, "denoising steps: more is slower and cleaner"),
            min(steps, top.max_num_inference_steps),
            1,
            top.max_num_inference_steps,
            1,
        )
        self.guidance = _slider(
            widgets.FloatSlider,
            tr(lang, "Guidance"),
            tr(lang, "how strongly the prompt steers (1: a hint; 2-4 usual)"),
            guidance,
            0.0,
            15.0,
            0.5,
        )
        self.seed = _tip(
            widgets.IntText(
                value=120,
                description=tr(lang, "Seed"),
                style=_STYLE,
                disabled=True,
                layout=widgets.Layout(width="260px"),
            ),
            tr(
                lang,
                "the random seed (0 to {max}): the same seed and settings give the same clip",
                max=SEED_MAX,
            ),
        )
        self.random_seed = _tip(
            widgets.Checkbox(
                value=True, description=tr(lang, "random"), indent=False, layout=widgets.Layout(width="90px")
            ),
            tr(lang, "draw a new seed for each run (the one used is shown in the Seed box)"),
        )
        self.reroll_button = _tip(
            widgets.Button(description=tr(lang, "Re-roll"), icon="dice", layout=widgets.Layout(width="auto")),
            tr(lang, "draw a new seed and generate again"),
        )
        self.candidates = _slider(
            widgets.IntSlider,
            tr(lang, "Candidates"),
            tr(lang, "how many clips to make (seeds seed, seed+1, ...)"),
            1,
            1,
            top.max_candidates,
            1,
        )
        options = _model_options(model, top.models)
        self.model = _tip(
            widgets.Dropdown(
                options=options,
                value=_first_offered((model, default_model()), options),
                description=tr(lang, "Model"),
                style=_STYLE,
            ),
            tr(lang, "the music model; 'tiny' makes noise quickly, for trying the panel out"),
        )
        self.random_seed.observe(lambda change: setattr(self.seed, "disabled", change["new"]), "value")
        rows = [self.duration] if duration else []
        seed_row = widgets.HBox([self.seed, self.random_seed, self.reroll_button])
        seed_row.add_class("mg-wrap")
        rows += [self.steps, self.guidance, seed_row]
        rows += [self.candidates] if candidates else []
        super().__init__(rows + [self.model])
        self._has_duration, self._has_candidates = duration, candidates

    def checked_values(self) -> dict[str, Any]:
        """:meth:`values`, refused in one line where they go beyond this studio's
        :class:`StudioLimits` (whatever the browser did to the sliders' bounds)."""
        values = self.values()
        self.limits.check(values)
        return values

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
        allowed = self.limits.models is None or request.model in self.limits.models
        if request.model and request.model not in self.model.options and allowed:
            self.model.options = (*self.model.options, request.model)
        if (request.model or default_model()) in self.model.options:
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
    _keep_bounds(slider)
    return _tip(slider, tip)


def _keep_bounds(slider: widgets.Widget) -> None:
    """Put ``min``, ``max`` and ``step`` back whenever they change (a browser may send new ones);
    the value is clamped into the bounds again by the slider itself."""
    bounds = {"min": slider.min, "max": slider.max, "step": slider.step}

    def restore(change: dict) -> None:
        if change["new"] != bounds[change["name"]]:
            setattr(slider, change["name"], bounds[change["name"]])

    slider.observe(restore, names=list(bounds))


def _first_offered(wanted: tuple[str | None, ...], options: list[str]) -> str:
    """The first of ``wanted`` that ``options`` holds, else the first option."""
    return next((name for name in wanted if name in options), options[0])


def _model_options(extra: str | None, allowed: tuple[str, ...] | None = None) -> list[str]:
    if allowed is not None:
        return list(allowed)
    names = list(PRESETS)
    for name in (default_model(), extra):
        if name and name not in names:
            names.insert(0, name)
    return names


def _text(
    description: str, placeholder: str, tip: str, rows: int = 2, *, lang: str = "en"
) -> widgets.Textarea:
    area = widgets.Textarea(
        placeholder=tr(lang, placeholder),
        description=tr(lang, description),
        rows=rows,
        layout=_wide(),
        style=_STYLE,
    )
    return _tip(area, tr(lang, tip))


def _short(text: str, limit: int = 40) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _FileInput(widgets.VBox):
    """A FileUpload or a path (relative to the notebook's folder), a Remove button, and which one wins."""

    def __init__(
        self,
        accept: str,
        what: str,
        example: str,
        *,
        limits: StudioLimits | None = None,
        check: Callable[[bytes, str], Any] | None = None,
        lang: str | None = None,
    ) -> None:
        self.what = what
        self.lang = lang = resolve_lang(lang)
        shown = tr(lang, what)  # the kind of file, as the panel names it
        self.limits = limits if limits is not None else StudioLimits.for_environment()
        self._check = check  # check(content, shown): refuse an upload before it is decoded
        self.upload = _tip(
            widgets.FileUpload(
                accept=accept,
                multiple=False,
                description=tr(lang, "Upload {what}", what=shown),
                layout=widgets.Layout(width="auto"),
            ),
            tr(lang, "choose a {what} file from your computer", what=shown),
        )
        self.remove_button = _tip(
            widgets.Button(
                description=tr(lang, "Remove upload"),
                icon="times",
                disabled=True,
                layout=widgets.Layout(width="auto"),
            ),
            tr(lang, "forget the uploaded {what} (then the typed path is used)", what=shown),
        )
        self.path = _tip(
            widgets.Text(
                placeholder=tr(lang, "or a path, e.g. {example}", example=example),
                description=tr(lang, "Path"),
                layout=_wide(),
                style=_STYLE,
            ),
            tr(lang, "a {what} file on the server, relative to the notebook's folder", what=shown),
        )
        if self.limits.paths is False:  # uploads only; a value the browser writes here is ignored too
            self.path.layout.display = "none"
        elif self.limits.paths is not True:
            self.path.tooltip = tr(
                lang, "a {what} file inside {folder}, relative to it", what=shown, folder=self.limits.paths
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

    def typed(self) -> str:
        """The typed path, or ``""`` when the app has no Path box."""
        return "" if self.limits.paths is False else self.path.value.strip()

    def described(self) -> str:
        """How messages name the current value: the uploaded file's name or the typed path."""
        name = self.upload_name()
        if name is not None:
            return tr(self.lang, "Uploaded file {name}", name=repr(name))
        if self.typed():
            return tr(self.lang, "Path {path}", path=repr(self.typed()))
        return tr(self.lang, self.what).capitalize()

    def clear_upload(self, _button: Any = None) -> None:
        """Forget the uploaded file."""
        self.upload.value = ()

    def _update_source(self, _change: Any = None) -> None:
        name, typed = self.upload_name(), self.typed()
        self.remove_button.disabled = name is None
        lang = self.lang
        if name is not None and typed:
            text = tr(
                lang,
                "Using the uploaded file {name} (the typed path is ignored until you remove the upload).",
                name=name,
            )
        elif name is not None:
            text = tr(lang, "Using the uploaded file {name}.", name=name)
        elif typed:
            text = tr(lang, "Using the path {path}.", path=typed)
        else:
            text = tr(lang, "No {what} yet: upload one or type a path.", what=tr(lang, self.what))
        self.source.value = f"<small>{html.escape(text)}</small>"

    def value(self) -> str | bytes | None:
        """Uploaded bytes if a file was uploaded, else the typed path (its bytes when the app
        confines paths to a folder), else ``None``. Refused in one line beyond the app's limits."""
        if self.upload.value:
            return self._upload_bytes()
        typed = self.typed()
        if not typed:
            return None
        if self.limits.paths is True:
            return typed
        return read_allowed_file(
            typed, Path(self.limits.paths), field=self.what, max_bytes=self.limits.max_upload_bytes
        )

    def _upload_bytes(self) -> bytes:
        item = self.upload.value[0]
        shown = f"the uploaded file {self.upload_name()!r}"
        self.limits.check_upload_size(int(len(item["content"])), self.what, shown)
        content = bytes(item["content"])
        if self._check is not None:
            self._check(content, shown)
        return content

    def preview_bytes(self) -> tuple[bytes, str] | None:
        """(content, file name) to preview, if there is a readable file; an upload beyond the
        app's limits raises its message, a typed path that cannot be read gives ``None``."""
        if self.upload.value:
            return self._upload_bytes(), str(self.upload_name())
        typed = self.typed()
        if not typed:
            return None
        if self.limits.paths is not True:
            try:
                return self.value(), Path(typed).name
            except InvalidInputError:  # missing or forbidden alike: said when the file is used
                return None
        path = Path(typed)
        if path.is_file() and path.stat().st_size < min(20_000_000, self.limits.max_upload_bytes):
            return path.read_bytes(), path.name
        return None

    def observe_change(self, handler: Callable[[Any], None]) -> None:
        self.upload.observe(handler, "value")
        self.path.observe(handler, "value")
