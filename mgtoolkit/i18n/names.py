"""File-name words for prompts in Chinese: pinyin, so ``轻松的爵士钢琴`` names its file
``qing-song-de-jue-shi-gang-qin_seed1.wav`` rather than ``clip_seed1.wav``."""

from __future__ import annotations

import re

from .translate import _CJK, has_cjk

__all__ = ["romanize"]

_CJK_SPLIT = re.compile(f"([{_CJK}]+)")


def romanize(text: str) -> str:
    """``text`` with every run of Chinese characters written in toneless pinyin, one word a syllable.

    Other characters are kept (the file-name rules of :func:`mgtoolkit.io.audio.safe_stem` apply after).

    >>> romanize("轻松的爵士钢琴 jazz")
    'qing-song-de-jue-shi-gang-qin jazz'
    >>> romanize("calm piano")
    'calm piano'
    """
    if not has_cjk(text):
        return text
    from pypinyin import lazy_pinyin

    parts = _CJK_SPLIT.split(text)  # odd items are the Chinese runs
    words = ["-".join(lazy_pinyin(part)) if i % 2 else part for i, part in enumerate(parts)]
    return " ".join(" ".join(words).split())
