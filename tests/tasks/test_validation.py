"""Bad input: one line naming the field, the value and the fix; nothing loaded, nothing written."""

from __future__ import annotations

import math

import pytest

import mgtoolkit as mg
from mgtoolkit.models.registry import resolve_model

GOOD = {
    "prompt": "calm piano",
    "audio_length_in_s": 1.0,
    "num_inference_steps": 3,
    "model": "tiny",
    "seed": 1,
}

BAD = [
    ("prompt", "", "is empty"),
    ("prompt", "   \n\t", "is empty"),
    ("prompt", None, "is not text"),
    ("prompt", 42, "is not text"),
    ("negative_prompt", 3.5, "is not text"),
    ("audio_length_in_s", 0, "must be at least 0.04 s"),
    ("audio_length_in_s", -2.0, "must be at least 0.04 s"),
    ("audio_length_in_s", math.nan, "is not a finite number"),
    ("audio_length_in_s", math.inf, "is not a finite number"),
    ("audio_length_in_s", 600.0, "at most 300 s for tiny"),
    ("audio_length_in_s", "5", "is not a number"),
    ("num_inference_steps", 0, "must be between 1 and 1000"),
    ("num_inference_steps", 2.5, "is not a whole number"),
    ("num_inference_steps", True, "is not a whole number"),
    ("guidance_scale", -1.0, "must be between 0 and 30"),
    ("guidance_scale", math.nan, "is not a finite number"),
    ("num_waveforms_per_prompt", 0, "must be between 1 and 16"),
    ("num_waveforms_per_prompt", 10_000, "must be between 1 and 16"),
    ("seed", -5, "must be between 0 and"),
    ("seed", "abc", "is not a whole number"),
    ("scheduler", "warp-drive", "is not a known sampler"),
]


@pytest.mark.parametrize(("field", "value", "problem"), BAD, ids=[f"{f}={v!r}" for f, v, _ in BAD])
def test_bad_field_raises_one_line_naming_it(field, value, problem):
    with pytest.raises(mg.InvalidInputError) as info:
        mg.validate_request(mg.GenerationRequest(**{**GOOD, field: value}))
    err = info.value
    message = str(err)
    assert err.field == field
    assert message.startswith(f"{field}=") and problem in message
    assert "\n" not in message and message.endswith(".")
    assert isinstance(err, ValueError)  # a plain ValueError for callers that catch that


def test_good_request_is_normalised():
    req = mg.validate_request(
        mg.GenerationRequest(**{**GOOD, "prompt": "  calm \n piano ", "negative_prompt": " "})
    )
    assert req.prompt == "calm piano" and req.negative_prompt is None
    assert req.num_inference_steps == 3 and req.model == "tiny"


def test_whole_float_steps_are_accepted():
    assert (
        mg.validate_request(mg.GenerationRequest(**{**GOOD, "num_inference_steps": 4.0})).num_inference_steps
        == 4
    )


def test_validation_happens_before_any_model_is_loaded(monkeypatch):
    from mgtoolkit.models import audioldm

    monkeypatch.setattr(audioldm, "load", lambda *a, **k: pytest.fail("loaded a model for a bad request"))
    with pytest.raises(mg.InvalidInputError, match="^num_inference_steps="):
        mg.generate("calm piano", num_inference_steps=-1, model="tiny")


@pytest.mark.parametrize(
    ("model", "problem"),
    [("no-such-preset", "is not a known preset"), ("", "is empty"), ("a/b/c", "is not a known preset")],
)
def test_unknown_model_is_named(model, problem):
    with pytest.raises(mg.InvalidInputError, match=f"^model=.*{problem}"):
        resolve_model(model)


def test_directory_that_is_not_a_pipeline(tmp_path):
    with pytest.raises(mg.InvalidInputError, match="holds no model_index.json"):
        mg.generate("calm piano", model=str(tmp_path))


def test_too_long_prompt_is_truncated_with_a_warning(fast, tiny_model):
    words = " ".join(f"word{i}" for i in range(400))  # far over 512 tokens
    with pytest.warns(mg.PromptTruncatedWarning, match="the text encoder takes 512"):
        clip = mg.generate(words, seed=1, **fast)
    assert clip.waveform.shape == (16000,)


def test_offline_hub_gives_one_clear_message(monkeypatch):
    """What a user without internet sees for a real preset (every hub download is made to fail)."""
    from mgtoolkit.models import audioldm, weights
    from mgtoolkit.models import fetch as hubs

    tried = []

    def unreachable(hub):
        def download(repo_id, to):
            tried.append(hub)
            raise OSError("Connection refused")

        return download

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hubs, "_download_paddlenlp", unreachable("paddlenlp"))
    monkeypatch.setattr(hubs, "_download_hf", unreachable("hf"))
    monkeypatch.setattr(weights, "locate", lambda source, **_: None)
    audioldm._load_cached.cache_clear()
    with pytest.raises(mg.ModelUnavailableError) as info:
        mg.load_model("audioldm-l-full", device="cpu")
    message = str(info.value)
    assert "cvssp/audioldm-l-full" in message and "3.9 GB" in message
    assert "model='tiny'" in message and "model='/path/to/that/folder'" in message
    assert "Connection refused" in message and "\n" not in message
    assert tried == ["paddlenlp", "hf"]  # both hubs were tried, PaddleNLP's store first


def test_unknown_hub_id_fails_with_the_same_message():
    """The real from_pretrained path for a name no hub has (offline here, and missing everywhere)."""
    with pytest.raises(mg.ModelUnavailableError, match="could not fetch 'mgtoolkit-tests/no-such-model'"):
        mg.load_model("mgtoolkit-tests/no-such-model", device="cpu")
