"""What a panel's status line says: warnings as notes, other threads' warnings left alone, colour
codes stripped, missing models explained.

Headless: set ``.value``, press ``Button.click()``; stand-ins from ``panel_standins.py``.
"""

from __future__ import annotations

import threading
import time

from panel_standins import (
    _fill_text,
    _image_panel,
    fake_generate,
)

import mgtoolkit as mg
from mgtoolkit.notebook.widgets import TextPanel


def test_warnings_become_a_note_in_the_status_line(history, recwarn):
    import warnings

    def noisy(request, **kwargs):
        warnings.warn(
            mg.PromptTruncatedWarning("prompt is 90 tokens; only the first 77 are used"), stacklevel=1
        )
        warnings.warn("third-party deprecation \x1b[93mnoise\x1b[0m", DeprecationWarning, stacklevel=1)
        return fake_generate(request, **kwargs)

    panel = TextPanel(noisy, synchronous=True, history=history)
    _fill_text(panel)
    panel.generate_button.click()
    assert panel.status.text.startswith("Done") and panel.status.text.endswith(
        "Note: prompt is 90 tokens; only the first 77 are used"
    )
    assert len(recwarn) == 0  # nothing escaped to stderr


def test_a_panel_does_not_swallow_other_threads_warnings(history):
    """The panel's note capture is per thread: a warning raised elsewhere meanwhile still shows."""
    import warnings

    inside, outside = threading.Event(), []

    def slow(request, **kwargs):
        inside.set()
        time.sleep(0.3)
        warnings.warn(mg.PromptTruncatedWarning("only this panel's note"), stacklevel=1)
        return fake_generate(request, **kwargs)

    panel = TextPanel(slow, history=history)
    _fill_text(panel)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        panel.generate_button.click()
        assert inside.wait(10)
        warnings.warn("another cell's warning", UserWarning, stacklevel=1)
        panel.wait(30)
        outside = [str(w.message) for w in caught]
    assert outside == ["another cell's warning"]
    assert panel.status.text.endswith("Note: only this panel's note")


def test_terminal_colour_codes_never_reach_a_status(history):
    def noisy(request, **kwargs):
        raise RuntimeError("\x1b[93mDeprecationWarning: paddle.fluid is deprecated\x1b[0m")

    panel = TextPanel(noisy, synchronous=True, history=history)
    _fill_text(panel)
    panel.generate_button.click()
    assert panel.status.text == "RuntimeError: DeprecationWarning: paddle.fluid is deprecated"
    panel.status.text = "a bare [93mcode[0m left by a copy"
    assert "[93m" not in panel.status.value and "\x1b" not in panel.status.value


def test_an_offline_model_message_says_what_the_panel_can_do(history):
    def offline(request, **kwargs):
        raise mg.ModelUnavailableError("model='x': could not load; pass model='/path/to/that/folder'")

    panel = TextPanel(offline, synchronous=True, history=history)
    _fill_text(panel)
    panel.generate_button.click()
    assert panel.status.text == (
        "The music model 'x' is not on this machine and cannot be downloaded from here. Choose 'tiny' in "
        "the Model list to try the panel (its clips are noise by design), or ask the notebook's author to "
        "download it first (python -m mgtoolkit fetch x)."
    )
    assert "/path/to" not in panel.status.text  # the dropdown cannot take a folder


def test_an_offline_captioner_message_says_to_type_the_caption(history):
    def offline(image):
        raise mg.ModelUnavailableError(
            "captioner='minigpt4': could not load; pass captioner='/path/to/that/folder'"
        )

    panel = _image_panel(history, describe=offline)
    panel.image.path.value = "lake.png"
    panel.describe_button.click()
    assert panel.status.text.startswith("The captioner (stage 1) 'minigpt4' is not on this machine")
    assert "Type your own description into the Caption box" in panel.status.text


def test_paddle_family_warnings_stay_out_of_notebooks_but_mgtoolkits_show():
    """Notebook 02 printed paddle's colour-coded deprecations and setuptools' distutils notice."""
    import warnings

    from mgtoolkit.runtime import import_paddle

    import_paddle()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        import_paddle()  # installs the filters again on top
        for module in ("paddlenlp.transformers.qwen2.modeling", "paddle.utils.deprecated", "_distutils_hack"):
            warnings.warn_explicit(
                "\x1b[93mWarning: API is deprecated\x1b[0m", UserWarning, "x.py", 1, module=module
            )
        warnings.warn_explicit(
            "prompt cut", mg.PromptTruncatedWarning, "x.py", 2, module="mgtoolkit.tasks.text"
        )
        warnings.warn_explicit("a user's own", UserWarning, "x.py", 3, module="__main__")
    assert [str(w.message) for w in caught] == ["prompt cut", "a user's own"]
