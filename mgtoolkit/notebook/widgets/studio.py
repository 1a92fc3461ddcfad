"""The studio: the three panels as tabs above the history gallery."""

from __future__ import annotations

import os
from collections.abc import Callable

import ipywidgets as widgets

from ...types import Clip
from ..history import HISTORY, History
from .catalogue import resolve_lang, tr
from .controls import _no_null_tooltips
from .gallery import HistoryGallery
from .limits import StudioLimits
from .panels import AudioPanel, ImagePanel, TextPanel

__all__ = ["Studio", "studio"]


class Studio(widgets.VBox):
    """The three panels as tabs, above the history gallery. Build it with :func:`studio`.

    ``limits`` (a :class:`StudioLimits`) is what every panel allows, checked in the kernel;
    ``lang`` (``"en"``, ``"zh"``, or ``None`` for the notebook's locale) the language it speaks.
    """

    def __init__(
        self,
        *,
        generate: Callable | None = None,
        describe: Callable | None = None,
        write: Callable | None = None,
        restyle: Callable | None = None,
        extend: Callable | None = None,
        describe_audio: Callable | None = None,
        synchronous: bool = False,
        history: History | None = None,
        model: str | None = None,
        save_root: str | os.PathLike | None = None,
        save_box: bool | None = None,
        limits: StudioLimits | None = None,
        lang: str | None = None,
    ) -> None:
        self.lang = lang = resolve_lang(lang)
        self.history = HISTORY if history is None else history
        self.limits = limits if limits is not None else StudioLimits.for_environment(model=model)
        common = {
            "synchronous": synchronous,
            "history": self.history,
            "model": model,
            "limits": self.limits,
            "lang": lang,
        }
        self.text = TextPanel(generate, extend=extend, **common)
        self.image = ImagePanel(describe, write, generate, **common)
        self.audio = AudioPanel(restyle, describe=describe_audio, write=write, generate=generate, **common)
        self.tabs = widgets.Tab(
            children=[self.text, self.image, self.audio],
            titles=[tr(lang, "Text → music"), tr(lang, "Image → music"), tr(lang, "Audio → music")],
        )
        self.gallery = HistoryGallery(
            self.history,
            on_reuse=self.use_settings,
            on_extend=self.extend,
            save_root=save_root,
            save_box=save_box,
            lang=lang,
        )
        super().__init__([self.tabs, self.gallery])
        self.add_class("mg-studio")
        _no_null_tooltips(self)

    def extend(self, clip: Clip, seconds: float = 10.0) -> None:
        """Continue ``clip`` by ``seconds`` in the text panel (its progress bar and Cancel), switched to."""
        self.tabs.selected_index = 0
        self.text.extend_clip(clip, seconds)

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
    limits: StudioLimits | None = None,
    lang: str | None = None,
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
    limits : StudioLimits, optional
        What the app allows, enforced in the kernel whatever the browser sends: clip length, steps,
        candidates, models, downloads, Path boxes and uploads. By default
        :meth:`StudioLimits.published` when Voilà serves the page (no Path boxes, no downloads,
        the default model and ``tiny`` only), :meth:`StudioLimits.notebook` otherwise.
    lang : str, optional
        ``"zh"`` for a studio in Chinese, ``"en"`` for English: every label, help text, tooltip,
        status line and message (core errors said from their field and problem where the studio
        knows them). ``None``: the notebook's locale (``$MGTOOLKIT_LANG``, then ``$LC_ALL`` or
        ``$LANG`` starting with ``zh``), else English.
    **backends
        ``generate``, ``describe``, ``write``, ``restyle``, ``extend`` stand-ins (for tests).

    Examples
    --------
    >>> import mgtoolkit as mg
    >>> s = mg.studio(model="tiny")
    >>> s.text.prompt.value = "calm piano"
    >>> s.text.settings.values()["model"]
    'tiny'
    """
    return Studio(
        model=model,
        synchronous=synchronous,
        save_root=save_root,
        save_box=save_box,
        limits=limits,
        lang=lang,
        **backends,
    )
