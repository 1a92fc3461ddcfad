"""The studio in Chinese, translated prompts in the panels, and the tempo controls (issues 25, 23).

Headless: set ``.value``, press ``Button.click()``. Every visible string of the whole studio tree
(labels, placeholders, tooltips, option labels, tab titles, HTML text and its aria/alt names) is
walked: in ``zh`` each must hold Chinese or be on an explicit allowlist (numbers, units, model ids,
key names, the user's own data); in ``en`` none may hold Chinese.
"""

from __future__ import annotations

import html
import re
import string

import ipywidgets as widgets
import numpy as np
import pytest

import mgtoolkit as mg
from mgtoolkit.errors import InvalidInputError, ModelUnavailableError
from mgtoolkit.models.registry import PRESETS
from mgtoolkit.notebook.widgets import History, Studio, StudioLimits, TextPanel, panel_message
from mgtoolkit.notebook.widgets.catalogue import KEYS, ZH, resolve_lang, tr, zh_error

SR = 16000
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")
UNITS = r"(s|kHz|Hz|LUFS|dBTP|BPM|MB)"
NEUTRAL = re.compile(rf"^[\d\s.,:;·#()+\-–−×/%'\"=→…]*({UNITS}[\d\s.,:;·()]*)*$")
"""Numbers, units and punctuation: the same in every language."""
ALLOWED = {*PRESETS, "tiny", *KEYS, "Ogg Vorbis", "MP3", "WAV", "FLAC", "MIDI", "BPM", "×"}
"""Model ids and key names: shown as they are in every language."""


# --- walking the widget tree ----------------------------------------------------------------------------


def _tree(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _tree(child)


def _html_texts(markup: str) -> list[str]:
    """The text nodes of ``markup`` (style blocks and data URIs left out) and its aria/alt/title names."""
    markup = re.sub(r"<style.*?</style>", "", markup, flags=re.S)
    names = re.findall(r'(?:aria-label|alt|title)="([^"]*)"', markup)
    markup = re.sub(r'src="data:[^"]*"', "", markup)
    nodes = re.split(r"<[^>]+>", markup)
    return [html.unescape(t).strip() for t in [*nodes, *names] if html.unescape(t).strip()]


def visible_strings(studio: widgets.Widget) -> list[tuple[str, str]]:
    """(where, text) for every string the studio shows or names for screen readers."""
    found: list[tuple[str, str]] = []
    for w in _tree(studio):
        kind = type(w).__name__
        for attr in ("description", "tooltip", "placeholder"):
            value = getattr(w, attr, None) if attr in w.trait_names() else None
            if isinstance(value, str) and value.strip("\u200b \n"):  # HTML's placeholder: a zero-width space
                found.append((f"{kind}.{attr}", value))
        if isinstance(w, widgets.Dropdown):
            found += [(f"{kind}.option", label) for label in w._options_labels]
        if isinstance(w, widgets.Tab):
            found += [(f"{kind}.title", title) for title in w.titles]
        if isinstance(w, widgets.HTML):
            found += [(f"{kind}.html", text) for text in _html_texts(w.value)]
        if isinstance(w, widgets.Output):
            for out in w.outputs:
                found += [(f"{kind}.output", t) for t in _html_texts(out["data"].get("text/html", ""))]
    return found


def not_chinese(studio, *, data: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """The strings with no Chinese that are not numbers, units, model ids, key names or ``data``."""
    allowed = ALLOWED | set(data)

    def fine(text: str) -> bool:
        return bool(CJK.search(text)) or text in allowed or bool(NEUTRAL.match(text))

    return [(where, text) for where, text in visible_strings(studio) if not fine(text)]


def chinese(studio) -> list[tuple[str, str]]:
    return [(where, text) for where, text in visible_strings(studio) if CJK.search(text)]


# --- stand-ins ------------------------------------------------------------------------------------------


def fake_generate(request, *, callback=None, cancel=None, **options):
    """Validates with the core, steps, makes sine clips; records the grid as mg.generate would."""
    req = mg.validate_request(request)
    for i in range(req.num_inference_steps):
        if callback is not None:
            callback(i, req.num_inference_steps, None)
    t = np.arange(int(req.audio_length_in_s * SR)) / SR
    extra = {}
    if options.get("bpm"):
        extra["conform"] = {
            "bpm": float(options["bpm"]),
            "bars": options["bars"],
            "beats_per_bar": options.get("beats_per_bar", 4),
            "key": options.get("key"),
        }
    return [
        mg.Clip(
            waveform=(0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32),
            sample_rate=SR,
            seed=req.seed,
            request=req,
            model_info={"name": req.model},
            extra=extra,
        )
    ]


def _studio(history, lang, **kwargs):
    return Studio(
        generate=fake_generate, synchronous=True, history=history, model="tiny", lang=lang, **kwargs
    )


def _fill(panel, prompt, *, seconds=1.0, steps=2):
    panel.prompt.value = prompt
    panel.settings.duration.value = seconds
    panel.settings.steps.value = steps
    panel.settings.model.value = "tiny"
    panel.settings.random_seed.value = False
    panel.settings.seed.value = 7


# --- the language -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"MGTOOLKIT_LANG": "zh"}, "zh"),
        ({"LANG": "zh_CN.UTF-8"}, "zh"),
        ({"LC_ALL": "zh_TW.UTF-8", "LANG": "en_US.UTF-8"}, "zh"),
        ({"LANG": "en_US.UTF-8"}, "en"),
        ({"MGTOOLKIT_LANG": "en", "LANG": "zh_CN.UTF-8"}, "en"),
        ({}, "en"),
    ],
)
def test_the_language_follows_the_notebooks_locale(monkeypatch, env, expected):
    for name in ("MGTOOLKIT_LANG", "LC_ALL", "LANG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert resolve_lang(None) == expected
    assert TextPanel(fake_generate, history=History()).lang == expected


def test_an_unknown_language_is_one_line():
    with pytest.raises(InvalidInputError, match=r"^lang='fr': .*'en' or 'zh'"):
        mg.studio(lang="fr")


def test_every_catalogue_entry_is_chinese_with_the_same_placeholders():
    fields = string.Formatter()
    for english, chinese_text in ZH.items():
        names = {f for _, f, _, _ in fields.parse(english) if f}
        assert {f for _, f, _, _ in fields.parse(chinese_text) if f} == names, english
        assert CJK.search(chinese_text) or english in (".", "; "), english


# --- no English in zh, no Chinese in en -------------------------------------------------------------------


def _exercised(history, lang):
    """A studio after a run with the grid on, a Save and a "Use these settings": most texts shown."""
    studio = _studio(history, lang)
    _fill(studio.text, "轻松的钢琴" if lang == "zh" else "calm piano")
    studio.text.grid.value = True
    studio.text.key.value = "A minor"
    studio.text.generate_button.click()
    row = studio.gallery.items.children[0]
    row.children[2].children[1].click()  # Use these settings
    return studio


def test_the_studio_in_chinese_has_no_english_label(history):
    studio = _exercised(history, "zh")
    assert studio.text.status.text.startswith("已填入种子为 7 的片段")
    left = not_chinese(studio, data=("轻松的钢琴",))
    assert not left, left
    # what it covers: labels, placeholders, tooltips, options, tab titles, buttons, aria names
    shown = dict((text, where) for where, text in visible_strings(studio))
    for expected in (
        "生成",
        "提示词",
        "例如：轻松的爵士钢琴，慢节奏",
        "文字 → 音乐",
        "保持原调",
        "A 小调",
        "同时导出 MIDI",
    ):
        assert expected in shown, expected
    assert "保存" in [w.description for w in _tree(studio.gallery) if isinstance(w, widgets.Button)]


def test_the_studio_in_english_has_no_chinese(history):
    studio = _exercised(history, "en")
    assert not chinese(studio), chinese(studio)
    assert studio.tabs.titles[0] == "Text → music" and studio.text.generate_button.description == "Generate"


def test_every_panel_takes_lang(history):
    from mgtoolkit.notebook.widgets import AudioPanel, HistoryGallery, ImagePanel

    for panel in (
        TextPanel(fake_generate, history=history, lang="zh"),
        ImagePanel(history=history, lang="zh"),
        AudioPanel(history=history, lang="zh"),
        HistoryGallery(history, lang="zh"),
    ):
        assert not not_chinese(panel), not_chinese(panel)


# --- translated prompts: both texts, unknown words as a note ------------------------------------------------


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_chinese_prompt_on_tiny_shows_both_texts_and_the_unknown_words(
    history, tmp_path, monkeypatch, lang
):
    monkeypatch.chdir(tmp_path)
    studio = Studio(synchronous=True, history=history, model="tiny", lang=lang)
    _fill(studio.text, "轻松的爵士钢琴，慢节奏，哈哈")
    studio.text.generate_button.click()
    clip = studio.text.result[0]
    record = clip.extra["translation"]["prompt"]
    assert record["sent"] == "relaxed jazz piano, slow tempo" and record["unknown"] == ["哈哈"]
    card = html.unescape(studio.text.output.outputs[0]["data"]["text/html"])
    row = html.unescape(studio.gallery.items.children[0].children[0].value)
    for shown in (card, row):
        assert "轻松的爵士钢琴，慢节奏，哈哈" in shown and "relaxed jazz piano, slow tempo" in shown
        assert ("模型收到" if lang == "zh" else "the model received") in shown
        assert re.search(r'class="mg-unknown">哈哈<', shown)
    status = studio.text.status.text
    if lang == "zh":
        assert status.startswith("完成：1 段，种子 7") and "注意：提示词：词典不认识“哈哈”" in status
        assert "glossary" not in status  # the core's English note is replaced, not repeated
    else:
        assert status.startswith("Done: 1 clip, seed 7") and "the glossary does not know 哈哈" in status
    assert "'relaxed jazz piano, slow tempo'" in status  # the note says what the model received


# --- errors in the user's language ---------------------------------------------------------------------------


def test_an_empty_prompt_is_refused_in_chinese(history):
    panel = TextPanel(fake_generate, synchronous=True, history=history, lang="zh")
    _fill(panel, "。。！")  # only punctuation: the same as empty
    panel.generate_button.click()
    assert panel.status.tone == "danger"
    assert panel.status.text.startswith("提示词：") and "是空的" in panel.status.text
    assert not re.search(r"[A-Za-z]{4,}", panel.status.text.split("：", 1)[1].replace("'", "")), (
        panel.status.text
    )


def test_core_errors_in_chinese_where_known_else_english_under_a_chinese_prefix():
    known = InvalidInputError("num_inference_steps", 0, "must be at least 1", "pass e.g. 20")
    assert panel_message(known, lang="zh") == "步数：0 超出了允许的范围；请在滑块范围内选择。"
    assert panel_message(known) == "Steps: 0 must be at least 1; pass e.g. 20."  # English unchanged
    odd = InvalidInputError("guidance_scale", 3, "wobbles oddly", "try again")
    assert (
        panel_message(odd, lang="zh")
        == "引导强度：出错了（英文原文）：guidance_scale=3: wobbles oddly; try again."
    )
    assert zh_error(odd) is None
    assert panel_message(RuntimeError("boom\nmore"), lang="zh") == "出错了（英文原文）：RuntimeError: boom"
    seed = InvalidInputError("seed", -1, "must be between 0 and 4294967295", "pass 120 or None")
    assert panel_message(seed, lang="zh").startswith("种子：-1 须是 0 到 4294967295 之间的整数")
    offline = ModelUnavailableError("model='audioldm-s-full-v2': not cached and HF_HUB_OFFLINE=1")
    said = panel_message(offline, lang="zh")
    assert said.startswith("音乐模型 'audioldm-s-full-v2' 不在本机") and "fetch audioldm-s-full-v2" in said


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_tempo_on_tiny_noise_is_refused_in_one_line_in_the_panels_language(
    history, tmp_path, monkeypatch, lang
):
    """The tiny model's noise has no pulse: generate with bpm refuses, and the panel says so."""
    monkeypatch.chdir(tmp_path)
    panel = TextPanel(synchronous=True, history=history, model="tiny", lang=lang)
    _fill(panel, "calm piano")
    panel.grid.value = True
    panel.bars.value = 1
    panel.generate_button.click()
    assert panel.status.tone == "danger" and "\n" not in panel.status.text and len(history) == 0
    if lang == "zh":
        assert (
            panel.status.text
            == "音频：听不出清晰的节拍，无法确定要拉伸的速度；请换一个种子或模型再试，或取消勾选“对齐节拍网格”。"
        )
    else:
        assert "has no clear pulse, so no tempo to stretch from" in panel.status.text


# --- tempo controls ------------------------------------------------------------------------------------------


def test_tempo_controls_are_off_by_default_and_reach_generate(history):
    seen = []

    def generate(request, **kwargs):
        seen.append((request, {k: v for k, v in kwargs.items() if k not in ("callback", "cancel")}))
        return fake_generate(request, **kwargs)

    panel = TextPanel(generate, synchronous=True, history=history)
    _fill(panel, "funky drum loop", seconds=3.0)
    assert panel.grid_box.layout.display == "none" and panel.options == {}
    panel.generate_button.click()
    panel.grid.value = True
    assert panel.grid_box.layout.display is None and panel.settings.duration.disabled
    panel.bpm.value, panel.bars.value, panel.beats_per_bar.value, panel.key.value = 97, 2, 3, "A minor"
    panel.generate_button.click()
    panel.key.value = ""  # keep
    panel.generate_button.click()
    assert [options for _, options in seen] == [
        {},
        {"bpm": 97, "bars": 2, "beats_per_bar": 3, "key": "A minor"},
        {"bpm": 97, "bars": 2, "beats_per_bar": 3},
    ]
    assert seen[0][0].audio_length_in_s == 3.0
    assert seen[1][0].audio_length_in_s == 5.0  # the core's default: the bars decide the length
    assert len(panel.key.options) == 25 and panel.key.options[0] == ("keep", "")


def test_tempo_bounds_are_restored_and_checked_in_the_kernel(history):
    panel = TextPanel(
        fake_generate,
        synchronous=True,
        history=history,
        limits=StudioLimits.notebook(max_audio_length_in_s=10.0),
        lang="zh",
    )
    panel.bpm.max = 1000  # what a browser can send
    assert (panel.bpm.min, panel.bpm.max, panel.bars.max, panel.beats_per_bar.max) == (40, 240, 64, 12)
    limits = StudioLimits.notebook()
    for values in ({"bpm": 300}, {"bpm": 39}, {"bars": 65}, {"beats_per_bar": 0}, {"bpm": float("nan")}):
        with pytest.raises(InvalidInputError):
            limits.check(values)
    _fill(panel, "drums")
    panel.grid.value = True
    panel.bpm.value, panel.bars.value = 60, 8  # 32 s, beyond this app's 10 s
    panel.generate_button.click()
    assert (
        panel.status.text
        == "小节数：8 在 60 BPM 下长 32.0 秒，超过了本应用的上限 10 秒；请减少小节数或加快速度。"
    )
    assert len(history) == 0


def test_the_history_shows_the_grid_and_reuse_restores_it(history):
    for lang, expected in (
        ("en", "bpm=97, bars=2, beats_per_bar=4, key='A minor'"),
        ("zh", "网格：97 BPM，2 小节，每小节 4 拍 · 调性 A 小调"),
    ):
        studio = _studio(History(), lang)
        _fill(studio.text, "drums")
        studio.text.grid.value = True
        studio.text.bpm.value, studio.text.bars.value, studio.text.key.value = 97, 2, "A minor"
        studio.text.generate_button.click()
        row = studio.gallery.items.children[0]
        assert expected in html.unescape(row.children[1].value)
        studio.text.grid.value, studio.text.bpm.value, studio.text.key.value = False, 120, ""
        studio.use_settings(studio.text.result[0])
        assert (studio.text.grid.value, studio.text.bpm.value, studio.text.bars.value) == (True, 97, 2)
        assert studio.text.key.value == "A minor"


# --- MIDI in the gallery's Save --------------------------------------------------------------------------------


def _saved_row(studio, tmp_path, monkeypatch):
    studio.gallery.save_root = tmp_path.resolve()
    monkeypatch.chdir(tmp_path)
    _fill(studio.text, "plucked tones")
    studio.text.generate_button.click()
    studio.gallery.export.midi.value = True
    row = studio.gallery.items.children[0]
    row.children[2].children[0].click()
    return row.children[3].value


def test_save_writes_midi_beside_the_audio(history, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from mgtoolkit.io import midi

    try:
        midi.model_path()
    except ModelUnavailableError:
        pytest.skip("the midi extra is not installed")
    said = _saved_row(_studio(history, "en"), tmp_path, monkeypatch)
    written = sorted(p.suffix for p in (tmp_path / "outputs").iterdir())
    assert ".mid" in written and ".wav" in written and re.search(r"notes \S+\.mid", said)
    assert (next((tmp_path / "outputs").glob("*.mid")).read_bytes()[:4]) == b"MThd"


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_save_without_the_transcriber_keeps_the_audio_and_says_one_line(history, tmp_path, monkeypatch, lang):
    from mgtoolkit.io import midi

    def missing():
        raise ModelUnavailableError(midi.MIDI_EXTRA)

    monkeypatch.setattr(midi, "model_path", missing)
    said = html.unescape(_saved_row(_studio(history, lang), tmp_path, monkeypatch))
    assert [p.suffix for p in (tmp_path / "outputs").iterdir() if p.suffix in (".wav", ".mid")] == [".wav"]
    assert 'pip install "mgtoolkit[midi]"' in said and "Traceback" not in said
    assert (
        ("导出 MIDI 音符需要 midi 扩展" in said)
        if lang == "zh"
        else ("transcribing needs the midi extra" in said)
    )
    assert tr(lang, "saved {path}", path="outputs").split(" ")[0] in said


def test_every_text_the_widgets_pass_to_the_catalogue_has_its_chinese():
    """Static: each literal given to ``tr``/``_t``/``t`` (and ``_text``'s three) is in the table,
    so states the walk above does not reach (uploads, errors, stages) are Chinese too."""
    import ast
    from pathlib import Path

    import mgtoolkit.notebook.widgets as package

    missing, seen = [], 0
    for source in [
        *Path(package.__file__).parent.glob("*.py"),
        Path(package.__file__).parents[1] / "display.py",
    ]:
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            args = {"tr": node.args[1:2], "_tr": node.args[1:2], "_t": node.args[:1], "t": node.args[:1]}.get(
                name, node.args[:3] if name == "_text" else []
            )
            for arg in args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    seen += 1
                    if arg.value not in ZH:
                        missing.append(f"{source.name}:{node.lineno}: {arg.value!r}")
    assert seen > 150 and not missing, missing
