"""Chinese prompts reach the model as English (issue 25): the glossary, jieba's segmentation,
traditional characters, mixed prompts, unknown words, and pinyin file names."""

from __future__ import annotations

import random
import re

import pytest

from mgtoolkit.i18n import glossary, has_cjk, has_words, romanize, translate_prompt
from mgtoolkit.i18n.translate import _tools
from mgtoolkit.io.audio import safe_stem

CATEGORIES = ("genre", "instrument", "mood", "tempo", "dynamics")


def _entries(category: str) -> list[tuple[str, str]]:
    from importlib import resources

    text = resources.files("mgtoolkit.i18n").joinpath("glossary_zh.tsv").read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
    return [(zh, en) for cat, zh, en in rows if cat == category and en]


def _prompts(n: int = 30) -> list[tuple[str, list[str]]]:
    """``n`` prompts of the shape 'mood的genre instrument，tempo' with the words each must give."""
    rng = random.Random(25)
    pick = {cat: _entries(cat) for cat in CATEGORIES}
    out = []
    for _ in range(n):
        mood, genre, inst, tempo, dyn = (
            rng.choice(pick[c]) for c in ("mood", "genre", "instrument", "tempo", "dynamics")
        )
        text = f"{mood[0]}的{genre[0]}{inst[0]}，{tempo[0]}，{dyn[0]}"
        out.append((text, [mood[1], genre[1], inst[1], tempo[1], dyn[1]]))
    return out


def test_the_glossary_is_data_with_hundreds_of_music_words():
    table = glossary()
    assert len(table) >= 300
    for cat in CATEGORIES:
        assert len(_entries(cat)) >= 20, cat
    assert table["钢琴"] == "piano" and table["慢节奏"] == "slow tempo"


def test_the_issue_example():
    result = translate_prompt("轻松的爵士钢琴，慢节奏")
    assert result.text == "relaxed jazz piano, slow tempo"
    assert result.method == "glossary" and result.unknown == ()
    assert result.record() == {
        "original": "轻松的爵士钢琴，慢节奏",
        "sent": "relaxed jazz piano, slow tempo",
        "method": "glossary",
    }


@pytest.mark.parametrize(("text", "expected"), _prompts(30))
def test_thirty_prompts_from_the_glossary_become_english(text, expected):
    result = translate_prompt(text)
    assert not has_cjk(result.text), result.text
    assert result.unknown == (), result.unknown
    for words in expected:
        assert re.search(rf"(^|\W){re.escape(words)}(\W|$)", result.text), (words, result.text)


def test_traditional_characters_work_as_simplified():
    assert translate_prompt("輕鬆的爵士鋼琴，慢節奏").text == "relaxed jazz piano, slow tempo"
    assert (
        translate_prompt("憂鬱的大提琴獨奏").text
        == translate_prompt("忧郁的大提琴独奏").text
        == "melancholic cello solo"
    )


def test_english_words_in_a_mixed_prompt_are_kept_as_they_are():
    result = translate_prompt("lo-fi 钢琴，vinyl crackle, 120 BPM")
    assert result.text == "lo-fi piano, vinyl crackle, 120 bpm"


def test_english_prompts_are_left_alone():
    result = translate_prompt("Smooth jazz piano, relaxed lounge")
    assert result.text == "Smooth jazz piano, relaxed lounge" and result.method == "none"
    assert not result.translated


def test_tempo_said_the_chinese_way():
    assert translate_prompt("每分钟120拍的电子舞曲").text == "120 bpm electronic dance music"
    assert translate_prompt("90拍每分钟，放克贝斯").text == "90 bpm, funk bass"


def test_unknown_words_are_listed_and_left_out():
    result = translate_prompt("钢琴和外星人")
    assert result.text == "piano"
    assert result.unknown == ("外星人",)
    assert "外星人" not in result.text


def test_punctuation_and_emoji_have_no_words():
    assert not has_words("，。！？…🎹🎶 ")
    assert has_words("钢琴") and has_words("a") and has_words("7")


def test_jieba_reads_no_cache_from_the_shared_temporary_folder(tmp_path, monkeypatch):
    tokenizer, _ = _tools()
    assert tokenizer.cache_file is None
    assert tokenizer.lcut("慢节奏的钢琴", HMM=False)[0] == "慢节奏"


def test_pinyin_names_keep_their_meaning_and_stay_safe():
    assert safe_stem(romanize("轻松的爵士钢琴")) == "qing-song-de-jue-shi-gang-qin"
    assert safe_stem(romanize("轻松的爵士钢琴，慢节奏")) == "qing-song-de-jue-shi-gang-qin-man-jie-zou"
    assert safe_stem(romanize("../钢琴/../../etc")) == "gang-qin-etc"
    stems = {safe_stem(romanize(text)) for text, _ in _prompts(30)}
    assert len(stems) == 30  # different prompts, different names
    assert all(re.fullmatch(r"[a-z0-9_-]+", s) for s in stems)


# --- through generate, on the tiny model ------------------------------------------------------


def test_a_chinese_prompt_reaches_the_model_as_its_english(fast):
    import numpy as np

    import mgtoolkit as mg

    chinese = mg.generate("轻松的爵士钢琴，慢节奏", seed=3, **fast)
    english = mg.generate("relaxed jazz piano, slow tempo", seed=3, **fast)
    np.testing.assert_array_equal(chinese.waveform, english.waveform)
    assert chinese.prompt == "轻松的爵士钢琴，慢节奏"  # the request keeps the user's words
    record = chinese.extra["translation"]["prompt"]
    assert record == {
        "original": "轻松的爵士钢琴，慢节奏",
        "sent": "relaxed jazz piano, slow tempo",
        "method": "glossary",
    }
    assert "translation" not in english.extra


def test_the_negative_prompt_is_translated_too(fast):
    import numpy as np

    import mgtoolkit as mg

    zh = mg.generate("calm piano", negative_prompt="低质量，噪音", seed=4, **fast)
    en = mg.generate("calm piano", negative_prompt="low quality, noise", seed=4, **fast)
    np.testing.assert_array_equal(zh.waveform, en.waveform)
    assert zh.request.negative_prompt == "低质量，噪音"
    assert zh.extra["translation"]["negative_prompt"]["sent"] == "low quality, noise"


def test_translate_false_sends_the_words_as_they_are(fast):
    import numpy as np

    import mgtoolkit as mg

    raw = mg.generate("轻松的爵士钢琴", seed=5, translate=False, **fast)
    glossed = mg.generate("轻松的爵士钢琴", seed=5, **fast)
    assert "translation" not in raw.extra
    assert not np.array_equal(raw.waveform, glossed.waveform)


def test_english_prompts_are_bit_identical_with_translation_on_or_off(fast):
    import numpy as np

    import mgtoolkit as mg

    on = mg.generate("warm lo-fi beat", seed=6, **fast)
    off = mg.generate("warm lo-fi beat", seed=6, translate=False, **fast)
    np.testing.assert_array_equal(on.waveform, off.waveform)
    assert "translation" not in on.extra


def test_unknown_words_warn_and_are_not_sent(fast):
    import mgtoolkit as mg
    from mgtoolkit.tasks.language import UntranslatedWordsWarning

    with pytest.warns(UntranslatedWordsWarning, match="外星人"):
        clip = mg.generate("钢琴和外星人", seed=7, **fast)
    assert clip.extra["translation"]["prompt"]["sent"] == "piano"
    assert clip.extra["translation"]["prompt"]["unknown"] == ["外星人"]


@pytest.mark.parametrize(
    ("prompt", "problem"),
    [("，。！", "是空的（没有文字）"), ("🎹🎶", "is empty"), ("   ", "is empty")],
)
def test_punctuation_or_emoji_only_is_an_empty_prompt_in_the_users_language(prompt, problem, fast):
    import mgtoolkit as mg
    from mgtoolkit.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=re.escape(problem)) as info:
        mg.generate(prompt, **fast)
    assert info.value.field == "prompt"


def test_a_prompt_with_no_known_word_is_refused(fast):
    import mgtoolkit as mg
    from mgtoolkit.errors import InvalidInputError

    with pytest.warns(UserWarning), pytest.raises(InvalidInputError, match="has no word the glossary knows"):
        mg.generate("外星人", **fast)


def test_a_bad_translate_value_names_the_field(fast):
    import mgtoolkit as mg
    from mgtoolkit.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="^translate=3"):
        mg.generate("钢琴", translate=3, **fast)


def test_the_saved_file_is_named_in_pinyin_and_the_sidecar_has_both_texts(tmp_path, fast):
    import json

    import mgtoolkit as mg

    clip = mg.generate("轻松的爵士钢琴", seed=1, **fast)
    wav = clip.save(tmp_path)
    assert wav.name == "qing-song-de-jue-shi-gang-qin_seed1.wav"
    sidecar = json.loads(wav.with_suffix(".json").read_text(encoding="utf-8"))
    assert sidecar["prompt"] == "轻松的爵士钢琴"
    assert "relaxed jazz piano" in json.dumps(sidecar, ensure_ascii=False)


def test_a_writer_translates_once_and_never_hands_chinese_to_the_model():
    from mgtoolkit.tasks.language import _by_writer, to_english

    _by_writer.cache_clear()
    first = to_english("轻松的爵士钢琴", "tiny")
    again = to_english("轻松的爵士钢琴", "tiny")
    assert first is again  # cached: the writer ran once
    assert not has_cjk(first.text)
    assert first.method in ("writer:tiny", "glossary")  # tiny babbles: the glossary may stand in
    assert to_english("轻松的爵士钢琴", "template").method == "glossary"  # no model to ask
