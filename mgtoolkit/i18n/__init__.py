"""Languages other than English: prompts into English for the text encoders, file names in pinyin.

Light to import: jieba, OpenCC and pypinyin load on first use.
"""

from .names import romanize
from .translate import Translation, glossary, has_cjk, has_words, translate_prompt

__all__ = ["Translation", "glossary", "has_cjk", "has_words", "romanize", "translate_prompt"]
