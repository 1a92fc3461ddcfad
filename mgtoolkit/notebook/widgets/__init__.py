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

Every panel speaks English or Chinese (``lang="en"``/``"zh"``; ``None`` follows the notebook's
locale): each label, placeholder, tooltip, option, status line and message comes from one table,
:mod:`.catalogue`, and core errors are said in Chinese from their field and problem where it knows
them. A prompt the core translated shows the words the model received beside the user's own, and
the words the glossary did not know. The text tab's "Fit to a grid" passes ``bpm``, ``bars``,
``beats_per_bar`` and ``key`` to :func:`mgtoolkit.generate`; the gallery's Save can write MIDI too.

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

from ..history import HISTORY, History  # the gallery's model; re-exported
from .controls import Settings, StatusLine
from .gallery import HistoryGallery
from .limits import StudioLimits
from .messages import one_line, panel_message, strip_ansi
from .panels import AudioPanel, ImagePanel, TextPanel
from .studio import Studio, studio

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
    "StudioLimits",
    "studio",
    "one_line",
    "panel_message",
    "strip_ansi",
]
