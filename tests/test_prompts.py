"""The instruction template, cleaning LLM answers, and the template writer (no model involved)."""

from __future__ import annotations

import pytest

from mgtoolkit.errors import InvalidInputError
from mgtoolkit.prompts import (
    DEFAULT_INSTRUCTION,
    MAX_PROMPT_WORDS,
    build_instruction,
    clean_answer,
    is_usable,
    template_prompt,
)

NIGHTCLUB = (
    "The image shows a crowded nightclub with people dancing on the dance floor. The lights on the dance "
    "floor are green and red, and there are several people on the dance floor. The atmosphere is lively "
    "and energetic."
)


def test_default_instruction_is_the_apps_and_fills_in():
    text = build_instruction("A quiet forest at dawn.")
    assert text == (
        "Given the scene description in the following paragraph, please create a musical style "
        "sentence that fits the scene. Description: A quiet forest at dawn."
    )
    assert "{description}" in DEFAULT_INSTRUCTION


def test_custom_instruction_and_braces_in_the_description():
    assert build_instruction("a {weird} scene", "Music for {description}!") == "Music for a {weird} scene!"


@pytest.mark.parametrize("instruction", ["no placeholder here", "", 3])
def test_instruction_without_placeholder_is_refused(instruction):
    with pytest.raises(InvalidInputError) as err:
        build_instruction("a forest", instruction)
    assert err.value.field == "instruction"


@pytest.mark.parametrize("description", ["", "   ", None])
def test_empty_description_is_refused(description):
    with pytest.raises(InvalidInputError) as err:
        build_instruction(description)
    assert err.value.field == "description"


MESSY = [
    (
        'Sure! Here\'s a musical style sentence that fits the scene: "Pulsing house beats with neon synths." '
        "I hope this helps!",
        "Pulsing house beats with neon synths.",
    ),
    (
        "<|im_start|>assistant\nMusical style: Smooth jazz piano, relaxed.<|im_end|>",
        "Smooth jazz piano, relaxed.",
    ),
    (
        "Here is a musical style sentence:\n\n1. **Upbeat EDM with heavy bass drops.**\n2. Calm lo-fi beats.",
        "Upbeat EDM with heavy bass drops.",
    ),
    (
        "Certainly! As an AI language model, I can help. Musical style - calm ambient pads.",
        "Calm ambient pads.",
    ),
    (
        "答：Energetic techno with driving drums. The crowd goes wild. Lights flash. Night ends.",
        "Energetic techno with driving drums. The crowd goes wild.",
    ),
    (
        "Music prompt: 'Soft acoustic guitar and flute, slow tempo.'</s>",
        "Soft acoustic guitar and flute, slow tempo.",
    ),
    ("[Round 0]\n问：write music\n答：Dark cinematic strings.", "Dark cinematic strings."),
    ("   \n  Okay. Gentle rain and piano.<eop>", "Gentle rain and piano."),
    (
        "Of course!\n\nStyle: “Epic orchestral score with brass.”\n\nLet me know if you want more.",
        "Epic orchestral score with brass.",
    ),
]


@pytest.mark.parametrize(("answer", "expected"), MESSY)
def test_clean_answer_on_messy_llm_output(answer, expected):
    assert clean_answer(answer) == expected


def test_clean_answer_drops_an_echoed_instruction():
    instruction = build_instruction("a sunny beach")
    answer = instruction + " Tropical steel drums and ukulele."
    assert clean_answer(answer, instruction=instruction) == "Tropical steel drums and ukulele."


def test_clean_answer_bounds_length():
    long_answer = " ".join(["drums"] * 300)
    cleaned = clean_answer(long_answer)
    assert len(cleaned.split()) == MAX_PROMPT_WORDS
    assert cleaned.endswith(".")


def test_clean_answer_removes_control_characters():
    assert clean_answer("Calm\x00 piano\x1f with rain.") == "Calm piano with rain."


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "   ",
        "<|im_end|>",
        "Sure!",
        "...",
        "\ufffd\ufffd ab\ufffd cd",
        "Given the scene description in the following paragraph, please create a musical style sentence",
    ],
)
def test_unusable_answers(answer):
    assert not is_usable(clean_answer(answer))


def test_usable_answer():
    assert is_usable(clean_answer("Sure! Lush strings and soft piano."))


TEMPLATE_CASES = [
    (NIGHTCLUB, ["energetic", "dance", "128 bpm"]),
    ("A quiet forest at dawn with birds in the trees.", ["calm", "acoustic", "slow"]),
    ("Waves rolling onto a sunny beach with palm trees.", ["tropical", "ukulele"]),
    ("A classic cocktail lounge with candles and a bar.", ["jazz", "piano"]),
    ("A rainy city street at night with cars.", ["lo-fi", "electric piano"]),
    ("Knights and a dragon battle in front of a castle.", ["epic", "orchestral", "brass"]),
    ("The nave of an old cathedral.", ["choir", "organ"]),
    ("Snow covered mountains in winter.", ["ambient", "piano"]),
    ("A lonely man sitting alone at a grave.", ["melancholic", "slow"]),
    ("Children playing with balloons on a playground.", ["playful", "xylophone"]),
    ("An astronaut floating among the stars of a galaxy.", ["synth"]),
    ("A blank wall.", ["ambient", "calm"]),
]


@pytest.mark.parametrize(("description", "expected_words"), TEMPLATE_CASES)
def test_template_writer_on_scenes(description, expected_words):
    prompt = template_prompt(description).lower()
    for word in expected_words:
        assert word in prompt, (description, prompt)
    assert prompt.endswith(".")
    assert len(prompt.split()) <= MAX_PROMPT_WORDS


def test_template_writer_is_deterministic_and_usable():
    prompts = {template_prompt(NIGHTCLUB) for _ in range(3)}
    assert len(prompts) == 1
    assert is_usable(prompts.pop())


def test_template_writer_adds_a_mood_word_from_the_description():
    assert "dark" in template_prompt("A dark and foggy harbour.").lower()
    assert "dark" not in template_prompt(NIGHTCLUB).lower()  # 'nightclub' is not 'night'


def test_a_clip_captions_mood_and_energy_decide_the_template_prompt():
    from mgtoolkit.prompts import template_prompt

    sad = template_prompt("a concert stage at night; melancholic, dark colours, slow energy")
    assert "melancholic" in sad and "slow tempo" in sad
    assert "128 BPM" not in sad and "euphoric" not in sad and not sad.startswith("Energetic")
    fast = template_prompt("a forest; joyful, lush green colours, frantic energy")
    assert "joyful" in fast and "150 BPM" in fast


def test_plain_descriptions_keep_the_scenes_own_mood():
    from mgtoolkit.prompts import template_prompt

    assert template_prompt("A concert stage at night, melancholic.").startswith(
        "Energetic electronic dance music"
    )
