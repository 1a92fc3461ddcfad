"""Chinese prompts into the English words AudioLDM's text encoder was trained on, without a model.

AudioLDM, AudioLDM 2 and MusicLDM read prompts through CLAP's RoBERTa or T5, trained on English
captions: Chinese characters reach them as byte pieces that mean nothing, so the clip follows none
of the user's words. :func:`translate_prompt` turns a Chinese (simplified or traditional) or mixed
prompt into English through a bilingual music glossary kept as data (``glossary_zh.tsv``: genres,
instruments, moods, tempo, dynamics, texture and scene words). Text is segmented with ``jieba``
(the glossary's terms added to its dictionary, so ``慢节奏`` stays one word); traditional characters
are folded to simplified with OpenCC's tables (``opencc-python-reimplemented``). English words in a
mixed prompt are kept as they are. Words the glossary does not know are listed in
:attr:`Translation.unknown` (the tasks warn with them): they are never passed on silently.

A chat writer (Qwen2, ChatGLM: both bilingual) translates better; the tasks offer it with
``translate="qwen2-0.5b"`` (see :func:`mgtoolkit.tasks.text.english_prompt`).
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

__all__ = ["Translation", "translate_prompt", "has_cjk", "has_words", "glossary"]

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_RUN = re.compile(f"[{_CJK}]+")
_PHRASE_BREAK = re.compile(r"[，,。．.、；;：:！!？?\n（）()【】\[\]《》「」『』\"“”]+")
_SEGMENTS = re.compile(f"([{_CJK}]+)")
# numbers said the Chinese way: 每分钟120拍, 120拍每分钟, 120拍/分 -> 120 bpm; 5秒 -> 5 seconds
_PATTERNS = (
    (re.compile(r"每分钟\s*(\d{2,3})\s*拍"), r" \1 bpm "),
    (re.compile(r"(\d{2,3})\s*拍\s*(?:每分钟|/\s*分钟?)"), r" \1 bpm "),
    (re.compile(r"(\d{2,3})\s*(?:bpm|BPM)"), r" \1 bpm "),
    (re.compile(r"(\d+(?:\.\d+)?)\s*秒"), r" \1 seconds "),
)
_LOCK = threading.Lock()


@dataclass(frozen=True, kw_only=True)
class Translation:
    """What the model receives for a prompt, beside the user's own words.

    Attributes
    ----------
    original : str
        The user's prompt.
    text : str
        The English the text encoder receives (``original`` itself when nothing was translated).
    method : str
        ``"none"`` (already English), ``"glossary"`` or ``"writer:<name>"``.
    unknown : tuple of str
        Words the glossary does not know; they are left out of ``text``.
    """

    original: str
    text: str
    method: str = "none"
    unknown: tuple[str, ...] = ()

    @property
    def translated(self) -> bool:
        return self.method != "none"

    def record(self) -> dict:
        """The sidecar's record: the user's words and the model's."""
        out = {"original": self.original, "sent": self.text, "method": self.method}
        return {**out, "unknown": list(self.unknown)} if self.unknown else out


def has_cjk(text: str) -> bool:
    """Whether ``text`` holds Chinese (Han) characters.

    >>> has_cjk("轻松的爵士 piano"), has_cjk("calm piano")
    (True, False)
    """
    return bool(_CJK_RUN.search(text or ""))


def has_words(text: str) -> bool:
    """Whether ``text`` holds a letter or a digit in any script (not only punctuation or emoji).

    >>> has_words("，。！🎹"), has_words("钢琴"), has_words("a")
    (False, True, True)
    """
    return any(unicodedata.category(ch)[0] in "LN" for ch in text or "")


@lru_cache(maxsize=1)
def glossary() -> dict[str, str]:
    """The glossary as ``{simplified Chinese: English}`` (English ``""`` for dropped function words)."""
    table: dict[str, str] = {}
    text = resources.files(__package__).joinpath("glossary_zh.tsv").read_text(encoding="utf-8")
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        _, zh, en = (line.split("\t") + ["", ""])[:3]
        table[zh.strip()] = en.strip()
    return table


@lru_cache(maxsize=1)
def _tools():
    """jieba's tokenizer with the glossary's terms, and OpenCC's traditional -> simplified table.

    jieba keeps its prefix-dictionary cache in the system's temporary folder by default, a folder
    every user can write; ours is built in memory only (``cache_file`` off), so nothing is read back.
    """
    import logging

    import jieba
    import opencc

    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.tmp_dir = None
    tokenizer.cache_file = None
    tokenizer.initialize = _no_cache_initialize(tokenizer)
    for word in glossary():
        tokenizer.add_word(word, freq=10**6)
    return tokenizer, opencc.OpenCC("t2s")


def _no_cache_initialize(tokenizer):
    """jieba's ``initialize`` without its marshal cache file (built from its dictionary each time)."""

    def initialize(dictionary=None):
        if tokenizer.initialized:
            return
        with tokenizer.lock:
            tokenizer.FREQ, tokenizer.total = tokenizer.gen_pfdict(tokenizer.get_dict_file())
            tokenizer.initialized = True

    return initialize


@lru_cache(maxsize=512)
def translate_prompt(text: str) -> Translation:
    """English for a Chinese or mixed prompt, through the glossary (cached per text).

    Parameters
    ----------
    text : str
        The prompt. Text with no Chinese characters comes back unchanged (``method="none"``).

    Returns
    -------
    Translation
        ``text`` is the English, phrase by phrase in the user's order (Chinese punctuation becomes
        ``", "``); English words are kept; unknown words are listed in ``unknown`` and left out.

    Examples
    --------
    >>> translate_prompt("轻松的爵士钢琴，慢节奏").text
    'relaxed jazz piano, slow tempo'
    >>> translate_prompt("輕鬆的爵士鋼琴").text
    'relaxed jazz piano'
    >>> translate_prompt("lo-fi 钢琴, 120 bpm").text
    'lo-fi piano, 120 bpm'
    """
    if not has_cjk(text):
        return Translation(original=text, text=text)
    with _LOCK:  # jieba's tokenizer is not safe to initialise from two threads
        tokenizer, converter = _tools()
        simplified = converter.convert(text)
    for pattern, repl in _PATTERNS:
        simplified = pattern.sub(repl, simplified)
    unknown: list[str] = []
    phrases = [_phrase(p, tokenizer, unknown) for p in _PHRASE_BREAK.split(simplified)]
    english = ", ".join(p for p in phrases if p)
    return Translation(original=text, text=english, method="glossary", unknown=tuple(dict.fromkeys(unknown)))


def _phrase(phrase: str, tokenizer, unknown: list[str]) -> str:
    """One phrase in English: Chinese runs through the glossary, everything else kept."""
    table = glossary()
    words: list[str] = []
    for part in _SEGMENTS.split(phrase):
        if not part.strip():
            continue
        if not has_cjk(part):
            words.extend(part.split())
            continue
        for token in tokenizer.lcut(part, HMM=False):
            words.extend(_token(token, table, unknown))
    return _tidy(words)


def _token(token: str, table: dict[str, str], unknown: list[str]) -> list[str]:
    """A segmented token's English words; a token the glossary lacks is tried character by
    character (``钢琴们`` -> piano + unknown ``们``) before it counts as unknown."""
    if token in table:
        return table[token].split()
    if len(token) > 1 and any(ch in table for ch in token):
        out: list[str] = []
        for ch in token:
            out.extend(_token(ch, table, unknown))
        return out
    unknown.append(token)
    return []


def _tidy(words: list[str]) -> str:
    """Join words, dropping a connective at either end and doubled connectives."""
    joiners = {"and", "with", "in", "while", "like"}
    out: list[str] = []
    for word in words:
        if out and word in joiners and out[-1] in joiners:
            continue
        out.append(word)
    while out and out[0] in {"and", "in", "while"}:
        out.pop(0)
    while out and out[-1] in joiners | {"very", "slightly", "super"}:
        out.pop()
    return " ".join(out)
