"""Prompts in the text encoder's language: Chinese becomes English before it reaches the model.

The request keeps the user's own words (its provenance); the pipeline gets an English copy, and each
clip's ``extra["translation"]`` records both (see :func:`english_request`). Models whose text encoder
reads many languages (``ModelSpec.text_language == "multi"``) get the words as they are.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from typing import Any

from ..errors import InvalidInputError, MgtoolkitWarning
from ..i18n import Translation, has_cjk, has_words, translate_prompt
from ..models.registry import ModelSpec
from ..types import GenerationRequest

__all__ = [
    "TRANSLATE_INSTRUCTION",
    "UntranslatedWordsWarning",
    "english_request",
    "to_english",
    "check_translate",
]

TRANSLATE_INSTRUCTION = (
    "Translate this description of music into one short English prompt for a text-to-audio model. "
    "Keep every genre, instrument, mood and tempo word; answer with the prompt only. "
    "Description: {description}"
)
"""What a chat writer is asked when ``translate=<writer>`` (an editable template with ``{description}``)."""

_FIELDS = ("prompt", "negative_prompt")
_FIX = "write it in English, or pass translate='qwen2-0.5b' to translate with a bilingual chat model"


class UntranslatedWordsWarning(MgtoolkitWarning):
    """Words of a prompt that the glossary does not know: they were left out of what the model got."""


def check_translate(translate: Any) -> bool | str:
    """``translate`` as given, or one line naming the field and the accepted values."""
    if isinstance(translate, bool) or (isinstance(translate, str) and translate.strip()):
        return translate
    raise InvalidInputError(
        "translate",
        translate,
        "is not True, False, 'glossary' or a writer name",
        "pass True (the built-in glossary), False (send the words as they are) or a writer such as 'qwen2-0.5b'",
    )


def english_request(
    request: GenerationRequest,
    spec: ModelSpec,
    translate: bool | str = True,
    *,
    instruction: str | None = None,
) -> tuple[GenerationRequest, dict[str, dict] | None]:
    """The request the pipeline should get, and the translation record (``None``: nothing changed).

    Parameters
    ----------
    request : GenerationRequest
        A validated request with the user's words.
    spec : ModelSpec
        The model; a multilingual text encoder needs no translation.
    translate : bool or str
        ``True`` or ``"glossary"``: the built-in glossary (no model, offline); a writer name
        (``"qwen2-0.5b"``, ``"chatglm-6b"``, a folder): that chat model, with ``instruction``;
        ``False``: the words as they are.
    """
    translate = check_translate(translate)
    if translate is False or getattr(spec, "text_language", "en") != "en":
        return request, None
    changes, records = {}, {}
    for field in _FIELDS:
        text = getattr(request, field)
        if text and has_cjk(text):
            result = to_english(text, translate, field=field, instruction=instruction)
            changes[field], records[field] = result.text, result.record()
    if not changes:
        return request, None
    return request.replace(**changes), records


def to_english(
    text: str, translate: bool | str = True, *, field: str = "prompt", instruction: str | None = None
) -> Translation:
    """``text`` in English by the glossary or a writer; unknown words warn, none left is an error."""
    if translate is True or translate == "glossary":
        result = translate_prompt(text)
    else:
        result = _by_writer(text, str(translate), instruction)
    if result.unknown:
        warnings.warn(
            UntranslatedWordsWarning(
                f"{field}: the glossary does not know {', '.join(result.unknown)}; left out, so the model "
                f"received {result.text!r}. {_FIX[0].upper()}{_FIX[1:]}."
            ),
            stacklevel=4,
        )
    if not has_words(result.text):
        raise InvalidInputError(field, text, "has no word the glossary knows", _FIX)
    return result


@lru_cache(maxsize=128)
def _by_writer(text: str, writer: str, instruction: str | None) -> Translation:
    """A chat writer's English for ``text`` (cached: the same words are translated once). A writer
    without a model (``template``), an unusable answer or one still in Chinese falls back to the
    glossary, which then says so through its record's method."""
    from .. import prompts
    from ..models import writers
    from ..runtime import pick_device

    spec = writers.resolve_writer(writer)
    if spec.needs_model:
        question = prompts.build_instruction(text, instruction or TRANSLATE_INSTRUCTION)
        loaded = writers.load_writer(spec, pick_device(None))
        try:
            answer = prompts.clean_answer(writers.complete(loaded, question), instruction=question)
        finally:
            writers.release_writers()
        if prompts.is_usable(answer) and not has_cjk(answer):
            return Translation(original=text, text=answer, method=f"writer:{spec.name}")
    return translate_prompt(text)
