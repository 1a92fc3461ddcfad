"""Captioner and writer backends on the tiny models, through the same from_pretrained code as real ones."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mgtoolkit.errors import InvalidInputError, ModelUnavailableError
from mgtoolkit.models import captioners, writers
from mgtoolkit.models.tiny import llm as tiny_llm

SCENE = "The image shows a crowded nightclub with people dancing on the dance floor."


@pytest.fixture(scope="module")
def picture():
    from PIL import Image

    rng = np.random.default_rng(0)
    return Image.fromarray((rng.random((48, 64, 3)) * 255).astype("uint8"), "RGB")


@pytest.mark.parametrize("kind", sorted(tiny_llm.TINY_KINDS))
def test_tiny_models_are_saved_with_self_written_tokenizers(kind):
    folder = tiny_llm.tiny_dir(kind)
    assert folder == tiny_llm.tiny_dir(kind)  # built once, then reused
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors"} <= names
    assert not names & {"model_state.pdparams", "pytorch_model.bin"}  # never a pickle (issue 15)
    assert names & {"vocab.json", "tokenizer.model", "ice_text.model", "sentencepiece.bpe.model"}
    assert not any(n.startswith("_") for n in names)  # build scratch removed
    assert json.loads((folder / "config.json").read_text())


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("chatglm-6b", "chatglm-6b"),
        ("THUDM/chatglm-6b", "chatglm-6b"),
        ("THUDM/chatglm2-6b", "chatglm2-6b"),
        ("Qwen/Qwen2-0.5B-Instruct", "qwen2-0.5b"),
        ("template", "template"),
        ("tiny", "tiny"),
    ],
)
def test_writer_names(name, expected):
    assert writers.resolve_writer(name).name == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("minigpt4", "minigpt4"),
        ("miniGPT4/MiniGPT4-7B", "minigpt4"),
        ("Salesforce/blip2-opt-2.7b", "blip2"),
        ("tiny", "tiny"),
        ("tiny-blip2", "tiny-blip2"),
    ],
)
def test_captioner_names(name, expected):
    assert captioners.resolve_captioner(name).name == expected


@pytest.mark.parametrize(
    ("resolve", "field"), [(writers.resolve_writer, "writer"), (captioners.resolve_captioner, "captioner")]
)
@pytest.mark.parametrize("bad", ["gpt-5", "", None, 3, "/no/such/folder"])
def test_unknown_names_are_refused(resolve, field, bad):
    with pytest.raises(InvalidInputError) as err:
        resolve(bad)
    assert err.value.field == field


def test_local_folders_are_recognised_by_their_config():
    assert writers.resolve_writer(str(tiny_llm.tiny_dir("chatglm2"))).family == "chatglm2"
    assert captioners.resolve_captioner(str(tiny_llm.tiny_dir("blip2"))).family == "blip2"
    with pytest.raises(InvalidInputError) as err:
        writers.resolve_writer(str(tiny_llm.tiny_dir("blip2")))
    assert err.value.field == "writer"


@pytest.mark.parametrize("name", ["tiny", "tiny-chatglm", "tiny-chatglm2"])
def test_tiny_writers_answer_repeatably(name):
    loaded = writers.load_writer(writers.resolve_writer(name))
    try:
        first = writers.complete(loaded, SCENE)
        again = writers.complete(loaded, SCENE)
    finally:
        writers.release_writers()
    assert isinstance(first, str) and first == again


def test_tiny_chatglm2_from_a_local_folder_matches_the_preset():
    by_name = writers.load_writer(writers.resolve_writer("tiny-chatglm2"))
    answer = writers.complete(by_name, SCENE)
    writers.release_writers()
    by_folder = writers.load_writer(writers.resolve_writer(str(tiny_llm.tiny_dir("chatglm2"))))
    try:
        assert writers.complete(by_folder, SCENE, max_new_tokens=16) == answer
    finally:
        writers.release_writers()


@pytest.mark.parametrize("name", ["tiny", "tiny-blip2"])
def test_tiny_captioners_describe(name, picture):
    loaded = captioners.load_captioner(captioners.resolve_captioner(name))
    try:
        text = captioners.caption(loaded, picture)
        assert isinstance(text, str) and text == captioners.caption(loaded, picture)
        assert "#" not in text or name != "tiny"
    finally:
        captioners.release_captioners()


def test_release_frees_the_cache():
    spec = writers.resolve_writer("tiny-chatglm2")
    first = writers.load_writer(spec)
    assert writers.load_writer(spec) is first
    writers.release_writers()
    assert writers.load_writer(spec) is not first
    writers.release_writers()


def test_offline_real_models_say_what_to_do(monkeypatch):
    import paddlenlp.transformers as pt

    def offline(*args, **kwargs):
        raise OSError("Can't connect to the model hub")

    monkeypatch.setattr(pt.AutoTokenizer, "from_pretrained", offline)
    monkeypatch.setattr(pt.MiniGPT4ForConditionalGeneration, "from_pretrained", offline)
    with pytest.raises(ModelUnavailableError) as err:
        writers.load_writer(writers.resolve_writer("chatglm-6b"))
    message = str(err.value)
    assert (
        "chatglm-6b" in message
        and "13 GB" in message
        and "writer='/path/to" in message
        and "'tiny'" in message
    )
    with pytest.raises(ModelUnavailableError) as err:
        captioners.load_captioner(captioners.resolve_captioner("minigpt4"))
    message = str(err.value)
    assert "minigpt4" in message and "15 GB" in message and "captioner='/path/to" in message
    assert "\n" not in message
