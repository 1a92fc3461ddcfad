"""The studio: the panels as tabs above the gallery, sharing the kernel's history.

Headless: set ``.value``, press ``Button.click()``; stand-ins from ``panel_standins.py``.
"""

from __future__ import annotations

from panel_standins import (
    _fill_text,
    fake_describe,
    fake_generate,
    fake_restyle,
    fake_write,
)

import mgtoolkit as mg
from mgtoolkit.notebook.widgets import Studio, TextPanel


def test_studio_tabs_history_save_and_reuse(history, in_tmp):
    studio = Studio(
        generate=fake_generate,
        describe=fake_describe,
        write=fake_write,
        restyle=fake_restyle,
        synchronous=True,
        history=history,
        model="tiny",
    )
    assert [studio.tabs.get_title(i) for i in range(3)] == ["Text → music", "Image → music", "Audio → music"]
    _fill_text(studio.text, "first tune")
    studio.text.generate_button.click()
    studio.image.image.path.value = "lake.png"
    studio.image.settings.duration.value = 1.0
    studio.image.generate_button.click()
    assert len(history) == 2 and "2 clips" in studio.gallery.title.value
    newest, oldest = studio.gallery.items.children
    assert "first tune" in oldest.children[0].value and "<audio" in oldest.children[0].value
    save, reuse, extend = oldest.children[2].children
    assert extend.description == "Extend +10 s"
    save.click()
    saved = sorted(p.name for p in (in_tmp / "outputs").iterdir())
    assert saved == [
        f"first-tune_seed{history.clips[0].seed}.json",
        f"first-tune_seed{history.clips[0].seed}.wav",
    ]
    assert 'download="' in oldest.children[3].value
    studio.tabs.selected_index = 1
    studio.text.prompt.value = "something else"
    reuse.click()
    assert studio.tabs.selected_index == 0 and studio.text.request.prompt == "first tune"
    assert studio.text.request.seed == history.clips[0].seed


def test_panels_share_the_kernel_history_by_default():
    from mgtoolkit.notebook import widgets

    assert TextPanel().history is widgets.HISTORY and mg.studio().history is widgets.HISTORY
