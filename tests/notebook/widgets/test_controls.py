"""The shared controls: sliders snapped to their step, the status line in full and announced,
tooltips everywhere, labels not cut.

Headless: set ``.value``, press ``Button.click()``; stand-ins from ``panel_standins.py``.
"""

from __future__ import annotations

from panel_standins import (
    _all_widgets,
    _audio_panel,
    _fill_text,
    _studio,
    fake_generate,
)

from mgtoolkit.notebook.widgets import TextPanel


def test_slider_values_are_snapped_to_their_step(history):
    """Browsers send back 2.9999999999999996: the request (and the sidecar) must say 3."""
    text = TextPanel(fake_generate, synchronous=True, history=history)
    text.settings.duration.value = 2.9999999999999996
    text.settings.guidance.value = 2.5000000000000004
    assert text.request.audio_length_in_s == 3.0 and text.request.guidance_scale == 2.5
    audio = _audio_panel(history)
    audio.strength.value = 0.6000000000000001
    assert audio.request["strength"] == 0.6 and audio.request["guidance_scale"] == 2.5


def test_status_shows_the_full_text_and_is_announced(history):
    panel = TextPanel(fake_generate, synchronous=True, history=history)
    long = "word " * 80
    panel.status.text = long
    assert html_unescape(panel.status.value).count("word") == 80
    assert 'role="status"' in panel.status.value and 'aria-live="polite"' in panel.status.value
    css = panel.children[0].value
    assert "white-space: normal" in css and "focus-visible" in css


def html_unescape(text: str) -> str:
    import html

    return html.unescape(text)


def test_every_control_has_a_real_tooltip_and_save_buttons_name_their_clip(history):
    studio = _studio(history)
    for prompt in ("first tune", "second tune"):
        _fill_text(studio.text, prompt)
        studio.text.generate_button.click()
    controls = [
        w
        for w in _all_widgets(studio)
        if isinstance(w, (mg_widgets().Button, mg_widgets().FileUpload)) or getattr(w, "description", "")
    ]
    assert controls and all(w.tooltip for w in controls), [w.description for w in controls if not w.tooltip]
    # ipywidgets writes title="null" for a tooltip of None, even on hidden labels
    assert not [w for w in _all_widgets(studio) if "tooltip" in w.trait_names() and w.tooltip is None]
    saves = [w for w in _all_widgets(studio.gallery) if getattr(w, "description", "") == "Save"]
    assert len(saves) == 2 and len({w.tooltip for w in saves}) == 2 and "second tune" in saves[0].tooltip


def mg_widgets():
    import ipywidgets

    return ipywidgets


def test_labels_are_not_cut(history):
    studio = _studio(history)
    buttons = [
        w for w in _all_widgets(studio) if isinstance(w, (mg_widgets().Button, mg_widgets().FileUpload))
    ]
    assert all(w.layout.width == "auto" for w in buttons if w.layout.display != "none")
    assert studio.text.settings.seed.layout.width == "260px"  # a 10-digit seed and its label fit
