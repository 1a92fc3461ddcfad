"""Text between the stages of a chain: the instruction to the LLM, cleaning its answer, the template writer.

Pure Python: no model, no paddle. :func:`template_prompt` is the writer that needs no model at
all, and the fallback when an LLM answers with nothing usable.
"""

from __future__ import annotations

import re

from .errors import InvalidInputError

__all__ = [
    "DEFAULT_INSTRUCTION",
    "MAX_PROMPT_WORDS",
    "build_instruction",
    "clean_answer",
    "is_usable",
    "template_prompt",
]

DEFAULT_INSTRUCTION = (
    "Given the scene description in the following paragraph, please create a musical style sentence "
    "that fits the scene. Description: {description}."
)
"""The instruction of the PaddleMIX music_generation app; ``{description}`` is replaced by the caption."""

MAX_PROMPT_WORDS = 77
"""Longest music prompt kept: about what AudioLDM's CLAP text encoder is trained on."""

MAX_DESCRIPTION_CHARS = 2000

# --------------------------------------------------------------------------------------------------
# The instruction


def build_instruction(description: str, instruction: str | None = None) -> str:
    """Fill the instruction template with a scene description.

    Parameters
    ----------
    description : str
        What the image shows (a caption or the user's own words).
    instruction : str, optional
        A template containing ``{description}``; ``None`` uses :data:`DEFAULT_INSTRUCTION`.

    Raises
    ------
    InvalidInputError
        If ``description`` is empty or ``instruction`` has no ``{description}`` placeholder.

    Examples
    --------
    >>> build_instruction("A foggy harbour.", "Music for: {description}")
    'Music for: A foggy harbour'
    """
    template = DEFAULT_INSTRUCTION if instruction is None else instruction
    if not isinstance(template, str) or "{description}" not in template:
        raise InvalidInputError(
            "instruction",
            instruction,
            "has no {description} placeholder",
            "write a template such as 'Write a music style for: {description}'",
        )
    if not isinstance(description, str) or not description.strip():
        raise InvalidInputError(
            "description",
            description,
            "is empty",
            "describe the scene, e.g. 'a crowded nightclub with neon lights'",
        )
    text = " ".join(description.split())[:MAX_DESCRIPTION_CHARS].rstrip(" .;,")
    return template.replace("{description}", text)


# --------------------------------------------------------------------------------------------------
# Cleaning an LLM's answer

_MARKUP = re.compile(
    r"<\|im_start\|>\s*(assistant|user|system)?|<\|im_end\|>|<\|endoftext\|>|<\|assistant\|>|<\|user\|>"
    r"|</?s>|<unk>|<pad>|<sop>|<eop>|<\|tab\|>|\[gMASK\]|\[MASK\]|\[sMASK\]|\[/?INST\]"
    r"|\[Round \d+\]|###\s*(Human|Assistant)\s*:?|(?m:^\s*(Assistant|AI|Bot|答|问)\s*[:：])",
    re.IGNORECASE,
)
_ASSISTANT_TURN = re.compile(
    r"<\|im_start\|>\s*assistant\s*|###\s*Assistant\s*:|(?m:^\s*(Assistant|答)\s*[:：])", re.IGNORECASE
)
_LABEL = re.compile(
    r"^(musical style( sentence)?|music(al)? (style|prompt|description)|music|style|prompt|answer|output"
    r"|response|sentence|result)\s*[:：\-–]\s*",
    re.IGNORECASE,
)
_OPENER = re.compile(
    r"^(sure|certainly|of course|okay|ok|absolutely|great|alright|yes)\b[!.,:]*\s*", re.IGNORECASE
)
_LEAD_IN = re.compile(
    r"^(here'?s|here is|this is|below is|i would suggest|i suggest|how about)\b[^:\n]*[:：]\s*", re.IGNORECASE
)
_CLOSER = re.compile(
    r"^(i hope|hope this|let me know|feel free|enjoy|this (sentence|style|music|piece)\b)", re.IGNORECASE
)
_AI_DISCLAIMER = re.compile(r"^as an ai( language model)?\b[^.!?]*[.!?]\s*", re.IGNORECASE)
_QUOTES = "\"'`“”‘’«»「」*_"


def _strip_preamble(text: str) -> str:
    """Drop openers ('Sure!'), lead-ins ("Here's a sentence:") and labels ('Musical style:')."""
    previous = None
    while previous != text:
        previous = text
        for pattern in (_AI_DISCLAIMER, _OPENER, _LEAD_IN, _LABEL):
            text = pattern.sub("", text, count=1).lstrip(" \n" + _QUOTES)
    return text


def _content_lines(text: str) -> list[str]:
    """Lines with bullets, numbering and lead-in lines ending in ':' removed."""
    lines: list[str] = []
    for raw in text.splitlines():
        line = re.sub(r"^\s*([-*•]|\d+[.)])\s+", "", raw).strip()
        if not line or (line.endswith((":", "：")) and not lines):  # "Here is a musical style sentence:"
            continue
        if line != raw.strip() and not lines:  # a list of options: keep the first
            return [line]
        lines.append(line)
    return lines


def _sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?。！？])[\"'`”’»*_]*\s+", text)
    return [s.strip() for s in parts if s.strip()]


def _bound_words(text: str, max_words: int) -> str:
    words = text.split()
    if len(words) <= max_words:
        return text
    return " ".join(words[:max_words]).rstrip(",;:-–") + "."


def clean_answer(
    answer: str, *, instruction: str | None = None, max_sentences: int = 2, max_words: int = MAX_PROMPT_WORDS
) -> str:
    """Turn an LLM's raw answer into one or two plain sentences of music prompt.

    Strips chat markup, an echo of the instruction, preambles ("Sure! Here's a musical style
    sentence:"), labels ("Musical style:"), bullets, quotes and closing pleasantries; keeps at most
    ``max_sentences`` sentences and ``max_words`` words.

    Returns
    -------
    str
        The cleaned prompt; ``""`` if nothing usable was left.

    Examples
    --------
    >>> clean_answer('Sure! Here\\'s a musical style sentence: "Smooth jazz piano, relaxed." Enjoy!')
    'Smooth jazz piano, relaxed.'
    """
    text = answer or ""
    turns = list(_ASSISTANT_TURN.finditer(text))
    if turns:  # a transcript echoed back: keep the assistant's last turn
        text = text[turns[-1].end() :]
    text = _MARKUP.sub("\n", text).replace("<n>", "\n")
    text = "".join(ch if ch.isprintable() or ch == "\n" else " " for ch in text)
    if instruction and instruction.strip() and instruction.strip() in text:
        text = text.split(instruction.strip(), 1)[1]
    lines = _content_lines(text)
    text = _strip_preamble(" ".join(lines))
    kept = []
    for sentence in _sentences(text):
        sentence = _strip_preamble(sentence).strip(_QUOTES + " ")
        if not sentence or _CLOSER.match(sentence):
            continue
        kept.append(sentence)
        if len(kept) == max_sentences:
            break
    text = " ".join(" ".join(kept).split()).strip(_QUOTES + " ")
    return _bound_words(text[:1].upper() + text[1:], max_words)


def is_usable(prompt: str) -> bool:
    """Whether a cleaned answer can serve as a music prompt: a few real words, not an echo.

    Examples
    --------
    >>> is_usable("Soft piano and rain."), is_usable("..."), is_usable("")
    (True, False, False)
    """
    words = re.findall(r"[^\W\d_]{2,}", prompt or "")
    if len(words) < 2 or sum(len(w) for w in words) < 8 or "\ufffd" in prompt:
        return False
    lowered = prompt.lower()
    return "musical style sentence" not in lowered and "scene description" not in lowered


# --------------------------------------------------------------------------------------------------
# The template writer

# (scene name, keyword stems, style words, instruments, tempo, mood)
_SCENES: list[tuple[str, tuple[str, ...], str, str, str, str]] = [
    (
        "party",
        ("nightclub", "club", "danc", "disco", "party", "rave", "neon", "dj", "concert", "festival", "crowd"),
        "energetic electronic dance music",
        "a pounding kick drum, deep bass and bright synths",
        "fast tempo around 128 BPM",
        "euphoric and lively",
    ),
    (
        "nature",
        (
            "forest",
            "wood",
            "tree",
            "meadow",
            "garden",
            "bird",
            "river",
            "stream",
            "field",
            "flower",
            "moss",
            "leaf",
            "leaves",
            "valley",
            "countryside",
        ),
        "calm acoustic folk",
        "fingerpicked acoustic guitar, wooden flute and soft strings",
        "slow tempo",
        "peaceful and airy",
    ),
    (
        "beach",
        ("beach", "ocean", "sea", "wave", "sand", "tropical", "island", "palm", "surf", "sunny"),
        "relaxed tropical pop",
        "steel drums, ukulele, marimba and light percussion",
        "mid-tempo",
        "sunny and carefree",
    ),
    (
        "lounge",
        (
            "lounge",
            "bar",
            "cocktail",
            "cafe",
            "café",
            "coffee",
            "restaurant",
            "jazz",
            "wine",
            "candle",
            "dinner",
        ),
        "smooth jazz",
        "piano, upright bass and brushed drums",
        "relaxed swing tempo",
        "cool and intimate",
    ),
    (
        "city",
        ("city", "street", "urban", "traffic", "car", "skyscraper", "subway", "downtown", "building"),
        "lo-fi hip hop",
        "dusty drums, mellow electric piano and vinyl crackle",
        "laid-back mid-tempo groove",
        "moody and nocturnal",
    ),
    (
        "epic",
        (
            "battle",
            "war",
            "army",
            "soldier",
            "dragon",
            "castle",
            "knight",
            "hero",
            "storm",
            "sword",
            "volcano",
            "fire",
        ),
        "epic orchestral film score",
        "soaring strings, brass, choir and thundering timpani",
        "driving tempo",
        "heroic and intense",
    ),
    (
        "sacred",
        ("church", "cathedral", "temple", "chapel", "monastery", "wedding", "altar", "prayer"),
        "sacred choral music",
        "a choir and pipe organ",
        "slow tempo",
        "reverent and uplifting",
    ),
    (
        "winter",
        ("snow", "winter", "ice", "frozen", "cold", "mountain", "glacier", "frost"),
        "cinematic ambient",
        "soft piano, glockenspiel and airy pads",
        "slow tempo",
        "serene and crisp",
    ),
    (
        "sad",
        (
            "sad",
            "lonely",
            "alone",
            "empty",
            "funeral",
            "grave",
            "cemetery",
            "tear",
            "cry",
            "abandon",
            "ruin",
            "grey",
            "gray",
        ),
        "melancholic piano ballad",
        "solo piano and a mournful cello",
        "slow tempo",
        "wistful and sad",
    ),
    (
        "playful",
        (
            "child",
            "kid",
            "playground",
            "toy",
            "cartoon",
            "birthday",
            "circus",
            "puppy",
            "kitten",
            "balloon",
            "game",
        ),
        "playful children's music",
        "xylophone, ukulele, whistling and hand claps",
        "bouncy upbeat tempo",
        "cheerful and cute",
    ),
    (
        "space",
        (
            "space",
            "star",
            "galaxy",
            "planet",
            "robot",
            "futur",
            "sci-fi",
            "spaceship",
            "astronaut",
            "cyber",
            "moon",
        ),
        "cinematic synthwave",
        "analog synth arpeggios, spacey pads and gated drums",
        "steady mid-tempo",
        "mysterious and vast",
    ),
    (
        "sport",
        ("sport", "race", "running", "football", "soccer", "stadium", "gym", "match", "bike"),
        "driving rock",
        "distorted electric guitars, bass and powerful drums",
        "fast tempo",
        "energetic and bold",
    ),
]
_DEFAULT_SCENE = (
    "calm",
    (),
    "gentle ambient instrumental music",
    "soft piano and warm pads",
    "moderate tempo",
    "calm and warm",
)
_MOOD_WORDS = {
    "energetic": ("energetic", "lively", "exciting", "excited", "vibrant", "electric", "busy", "bustling"),
    "calm": ("calm", "quiet", "peaceful", "serene", "tranquil", "still", "gentle", "relaxed", "relaxing"),
    "dark": ("dark", "night", "shadow", "gloomy", "foggy", "mist", "eerie", "spooky"),
    "warm": ("warm", "golden", "sunset", "sunrise", "dawn", "cozy", "cosy"),
}


def _words(text: str) -> list[str]:
    return re.findall(r"[a-zà-ÿ][a-zà-ÿ'-]*", text.lower())


def _matches(words: list[str], stems: tuple[str, ...]) -> int:
    return sum(
        1 for w in words for s in stems if w == s or (len(s) >= 4 and w.startswith(s)) or w.rstrip("s") == s
    )


def _pick_scene(words: list[str]):
    scores = [(_matches(words, scene[1]), -i, scene) for i, scene in enumerate(_SCENES)]
    best = max(scores, key=lambda item: (item[0], item[1]))
    return best[2] if best[0] > 0 else _DEFAULT_SCENE


def _extra_moods(words: list[str], style_and_mood: str) -> list[str]:
    """At most one mood word the description uses itself (whole words only), if not already said."""
    present = set(words)
    found = [
        name
        for name, stems in _MOOD_WORDS.items()
        if present.intersection(stems) and name not in style_and_mood
    ]
    return found[:1]


def template_prompt(description: str) -> str:
    """A deterministic music prompt from words in a scene description; no model involved.

    Picks a style, instruments, tempo and mood for the best-matching kind of scene (party,
    nature, beach, lounge, city, epic, sacred, winter, sad, playful, space, sport; else calm
    ambient), adding a mood word the description itself uses.

    Examples
    --------
    >>> template_prompt("A crowded nightclub with people dancing under neon lights.")
    'Energetic electronic dance music with a pounding kick drum, deep bass and bright synths, fast tempo around 128 BPM, euphoric and lively.'
    >>> template_prompt("A quiet forest at dawn.")
    'Calm acoustic folk with fingerpicked acoustic guitar, wooden flute and soft strings, slow tempo, peaceful and airy, warm.'

    A CLIP caption's mood and energy tags (after its ``;``) decide the mood and tempo:

    >>> template_prompt("a concert stage at night; melancholic, dark colours, slow energy")
    'Electronic dance music with a pounding kick drum, deep bass and bright synths, slow tempo, melancholic and wistful.'
    """
    words = _words(description or "")
    _, _, style, instruments, tempo, mood = _pick_scene(words)
    tagged_mood, tagged_tempo = _tagged(description or "")
    if tagged_mood or tagged_tempo:  # a CLIP caption's tags say how the picture feels: they win
        style = _without_mood_word(style)
        mood, tempo, extra = tagged_mood or mood, tagged_tempo or tempo, []
    else:
        extra = _extra_moods(words, f"{style} {mood}")
    parts = [f"{style[0].upper()}{style[1:]} with {instruments}", tempo, mood, *extra]
    return ", ".join(parts) + "."


_TAGGED_MOODS = {
    "calm": "calm and gentle",
    "joyful": "joyful and bright",
    "melancholic": "melancholic and wistful",
    "mysterious": "mysterious and dark",
    "romantic": "romantic and tender",
    "tense": "tense and suspenseful",
    "epic": "epic and heroic",
    "playful": "playful and bouncy",
    "dreamy": "dreamy and hazy",
    "energetic": "energetic and driving",
}
_TAGGED_TEMPI = {
    "still": "very slow tempo",
    "slow": "slow tempo",
    "lively": "lively mid-tempo",
    "frantic": "fast tempo around 150 BPM",
}
_STYLE_MOODS = ("energetic", "calm", "gentle", "epic", "playful", "melancholic", "dreamy", "upbeat", "dark")


def _tagged(description: str) -> tuple[str | None, str | None]:
    """The mood and tempo a tagger's caption states after its ``;`` (``"a beach; melancholic, slow
    energy"``): the first of :data:`mgtoolkit.models.clip_tagger.DEFAULT_LABELS`' moods named there,
    and the tempo its energy word means. Plain descriptions (no ``;``) give ``(None, None)``."""
    if ";" not in description:
        return None, None
    tags = description.split(";", 1)[1].lower()
    moods = [_TAGGED_MOODS[w] for w in re.findall(r"[a-z]+", tags) if w in _TAGGED_MOODS]
    energy = re.search(r"\b(still|slow|lively|frantic) energy\b", tags)
    return (moods[0] if moods else None), (_TAGGED_TEMPI[energy.group(1)] if energy else None)


def _without_mood_word(style: str) -> str:
    """``style`` without a leading mood adjective the tags may contradict ("energetic electronic ...")."""
    first, _, rest = style.partition(" ")
    return rest if first in _STYLE_MOODS and rest else style
