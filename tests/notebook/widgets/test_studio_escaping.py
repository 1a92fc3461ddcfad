"""The studio as a Voilà visitor's browser drives it (issue 24, item 4): every user-given string
(file names, prompts, paths, errors, tags) is escaped in the panels, the status line and the
history gallery.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
from visitor_standins import (
    EVIL,
    _audio_panel,
    _browser_click,
    _browser_upload,
    _image_panel,
    _text_panel,
    _wav,
)

import mgtoolkit as mg
from mgtoolkit.notebook.display import clips_html
from mgtoolkit.notebook.widgets import (
    History,
    HistoryGallery,
    StatusLine,
    StudioLimits,
    TextPanel,
)


def _html_of(widget) -> str:
    """Every piece of HTML a widget tree shows: HTML widgets' values and Output's text/html."""
    parts = []
    if isinstance(widget, (widgets.HTML, widgets.HTMLMath)):
        parts.append(widget.value)
    if isinstance(widget, widgets.Output):
        parts += [o.get("data", {}).get("text/html", "") for o in widget.outputs]
    for child in getattr(widget, "children", ()):
        parts.append(_html_of(child))
    return "\n".join(parts)


def _assert_escaped(markup: str, text: str = EVIL) -> None:
    assert "<img src=x" not in markup and "onerror=alert(1)>" not in markup
    assert html.escape(text, quote=True) in markup


def test_an_uploaded_file_name_cannot_inject_script_into_the_audio_panel(calls):
    panel = _audio_panel(calls, StudioLimits.notebook())
    name = f"a.x{EVIL}"  # the name's "suffix" once became the data URL's type
    _browser_upload(panel.audio, name, _wav())
    markup = _html_of(panel)
    assert "<img src=x" not in markup and "onerror=alert(1)>" not in markup
    assert html.escape(f"original: {name}", quote=True) in panel.preview.value
    assert 'src="data:audio/wav;base64,' in panel.preview.value
    _assert_escaped(panel.audio.source.value)  # "Using the uploaded file ..."
    _assert_escaped(panel.heard.value)  # the description's tags


def test_an_uploaded_image_name_and_errors_are_escaped_in_the_image_panel(calls):
    panel = _image_panel(calls, StudioLimits.notebook())
    _browser_upload(panel.image, f"{EVIL}.png", b"not a picture")
    _assert_escaped(panel.status.value)
    _assert_escaped(panel.image.source.value)
    assert "<img src=x" not in _html_of(panel)


def test_prompts_and_errors_are_escaped_in_the_text_panel_and_the_status_line(calls):
    panel = _text_panel(calls, StudioLimits.notebook(), model="tiny")
    panel.prompt.value = EVIL
    panel.negative_prompt.value = EVIL
    panel.settings.duration.value = 1.0
    panel.settings.steps.value = 2
    _browser_click(panel.generate_button)
    assert panel.status.text.startswith("Done")
    markup = _html_of(panel)
    _assert_escaped(markup)
    status = StatusLine(EVIL)
    _assert_escaped(status.value)

    def failing(*args, **kwargs):
        raise ValueError(EVIL)

    broken = TextPanel(
        failing, synchronous=True, history=History(), limits=StudioLimits.notebook(), model="tiny"
    )
    broken.prompt.value = "calm"
    _browser_click(broken.generate_button)
    _assert_escaped(broken.status.value)


def test_prompts_paths_and_errors_are_escaped_in_the_history_gallery(calls, tmp_path):
    history = History()
    gallery = HistoryGallery(history, save_root=tmp_path)
    clip = calls.fake_generate(
        mg.GenerationRequest(prompt=EVIL, negative_prompt=EVIL, model="tiny", audio_length_in_s=1.0)
    )[0]
    history.add([clip])
    _assert_escaped(_html_of(gallery))
    gallery.out_dir.set_state({"value": f"../{EVIL}"})  # the hidden box, from the browser: refused
    save = gallery.items.children[0].children[2].children[0]
    _browser_click(save)
    saved = gallery.items.children[0].children[3].value
    _assert_escaped(saved)
    assert "outside the folder this studio may write to" in saved
    _assert_escaped(clips_html([clip, clip], plots=False))
    _assert_escaped(clip._repr_html_())
