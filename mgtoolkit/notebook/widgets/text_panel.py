"""Text to music: the prompt panel, with the "Fit to a grid" tempo controls."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from ...types import Clip, GenerationRequest
from ..history import History
from .catalogue import KEYS, key_label
from .controls import Settings, _short, _slider, _text, _tip
from .limits import StudioLimits
from .panel_base import _as_clips, _backend, _Panel


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
