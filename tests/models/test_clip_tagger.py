"""The ``clip`` captioner: zero-shot tags of a picture over editable lists, the image chain's default.

Everything runs on the tiny CLIP (random weights, built offline). The loading test lays a CLIP out
as transformers publishes it (torch-layout ``model.safetensors``, ``config.json``, tokenizer and
processor files) in a Hugging Face cache and loads ``captioner="clip"`` from it; the parity test
(marker ``parity``, needs the torch venv) compares with transformers' own ``CLIPModel``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mgtoolkit as mg
from mgtoolkit.errors import InvalidInputError
from mgtoolkit.models import captioners, clip_tagger
from mgtoolkit.models.architectures import clip_preprocessor
from mgtoolkit.tasks import image as chains

FAST = {"audio_length_in_s": 1.0, "num_inference_steps": 2, "model": "tiny"}
LABELS = {"weather": ["rain", "snow", "bright sun"], "mood": ["calm", "tense", "joyful"]}


@pytest.fixture(scope="module")
def picture():
    return Image.open(mg.example_image()).convert("RGB")


@pytest.fixture(autouse=True)
def released():
    yield
    captioners.release_captioners()


def tag(image, labels=None, **kwargs):
    return mg.tag_image(image, labels, captioner="tiny-clip", top_k=None, **kwargs)


# --------------------------------------------------------------------------------------------------
# Tags and scores


def test_tags_come_from_the_given_labels(picture):
    tags = tag(picture, LABELS)
    assert list(tags.tags) == ["weather", "mood"]
    for category, names in LABELS.items():
        assert sorted(label for label, _ in tags.tags[category]) == sorted(names)
    best = {k: v[0][0] for k, v in tags.tags.items()}
    assert tags.caption == f"weather: {best['weather']}, {best['mood']}"
    assert tags.model == "tiny-clip"


def test_scores_are_sorted_probabilities_per_category(picture):
    for category, ranked in tag(picture).tags.items():
        scores = np.array([p for _, p in ranked])
        assert len(ranked) == len(clip_tagger.DEFAULT_LABELS[category])
        assert np.all((scores >= 0) & (scores <= 1))
        assert np.all(np.diff(scores) <= 0), category
        assert scores.sum() == pytest.approx(1.0, abs=1e-9)


def test_top_k_keeps_the_best(picture):
    every = tag(picture).tags
    top = mg.tag_image(picture, captioner="tiny-clip", top_k=2).tags
    assert {k: v[:2] for k, v in every.items()} == dict(top)


def test_editing_the_labels_changes_the_tags(picture):
    before = tag(picture, {"mood": ["calm", "tense"]})
    after = tag(picture, {"mood": ["calm", "tense", "joyful", "melancholic"]})
    renamed = tag(picture, {"mood": ["serene", "tense"]})
    assert dict(before.tags["mood"])["calm"] != pytest.approx(dict(after.tags["mood"])["calm"])
    assert dict(renamed.tags["mood"])["tense"] != pytest.approx(dict(before.tags["mood"])["tense"])
    assert {label for label, _ in renamed.tags["mood"]} == {"serene", "tense"}


def test_the_picture_changes_the_tags(picture):
    dark = Image.new("RGB", (64, 64), (0, 0, 0))
    assert tag(picture).tags != tag(dark).tags


def test_tags_are_deterministic_and_do_not_depend_on_keeping_the_model(picture):
    first = tag(picture, keep_loaded=True)
    assert captioners._load_cached.cache_info().currsize == 1
    second = tag(picture)
    assert captioners._load_cached.cache_info().currsize == 0  # released after use by default
    assert first == second


def test_the_default_caption_reads_like_a_scene(picture):
    tags = tag(picture)
    best = {k: v[0][0] for k, v in tags.tags.items()}
    assert tags.caption == (
        f"{best['scene']} at {best['time of day']}; {best['mood']}, {best['colour']} colours, "
        f"{best['energy']} energy"
    )
    assert json.loads(json.dumps(tags.to_dict()))["caption"] == tags.caption


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGBA", (40, 30), (200, 30, 30, 120)),
        Image.new("CMYK", (40, 30), (0, 200, 200, 0)),
        Image.new("L", (40, 30), 128),
        Image.new("RGB", (1, 1), (0, 255, 0)),
        Image.new("RGB", (5000, 3000), (20, 20, 90)),
        np.full((30, 40), 0.5, dtype=np.float32),
    ],
    ids=["rgba", "cmyk", "grayscale", "1x1", "huge", "array"],
)
def test_odd_pictures_are_tagged(image):
    tags = mg.tag_image(image, captioner="tiny-clip")
    assert set(tags.tags) == set(clip_tagger.DEFAULT_LABELS)
    assert all(len(v) == clip_tagger.TOP_K for v in tags.tags.values())


# --------------------------------------------------------------------------------------------------
# Bad labels: one line naming labels, before any model loads


@pytest.mark.parametrize(
    "labels, says",
    [
        ({"mood": []}, "has no labels"),
        ({"mood": ["  "]}, "has no labels"),
        ({"mood": ["calm", 3]}, "not text"),
        ({"mood": "calm"}, "not a list"),
        ({}, "non-empty mapping"),
        (["calm", "tense"], "non-empty mapping"),
        ({3: ["calm"]}, "not text"),
        ({"mood": [f"label {i}" for i in range(201)]}, "more than 200"),
    ],
)
def test_bad_labels_get_one_line_naming_labels(labels, says, monkeypatch, picture):
    def never(*args, **kwargs):
        raise AssertionError("a model was loaded for bad labels")

    monkeypatch.setattr(captioners, "load_captioner", never)
    for call in (
        lambda: mg.tag_image(picture, labels, captioner="tiny-clip"),
        lambda: mg.describe_image(picture, "tiny-clip", labels=labels),
        lambda: mg.image_to_music(picture, labels=labels, writer="template", seed=1, **FAST),
    ):
        with pytest.raises(InvalidInputError) as err:
            call()
        message = str(err.value)
        assert message.startswith("labels=") and says in message and "\n" not in message


def test_labels_with_a_captioner_that_cannot_read_them_are_refused(picture):
    with pytest.raises(InvalidInputError, match=r"^labels=.*CLIP captioners only.*'tiny-blip2'"):
        mg.image_to_music(picture, captioner="tiny-blip2", labels=LABELS, writer="template", seed=1, **FAST)


def test_bad_top_k_and_a_captioner_that_is_not_clip(picture):
    with pytest.raises(InvalidInputError, match="^top_k=0"):
        mg.tag_image(picture, top_k=0)
    with pytest.raises(InvalidInputError, match="^captioner='tiny-blip2'.*not a CLIP model"):
        mg.tag_image(picture, captioner="tiny-blip2")


# --------------------------------------------------------------------------------------------------
# In the image chain


def test_the_tiny_image_chain_uses_clip_by_default(picture, monkeypatch):
    monkeypatch.delenv("MGTOOLKIT_CAPTIONER", raising=False)
    assert chains.default_captioner() == "tiny-clip"
    assert chains.default_captioner("audioldm-s-full-v2") == "clip"
    story = mg.image_to_music(picture, writer="template", seed=1, **FAST)
    assert story.captioner == "tiny-clip" and story.clip.extra["captioner"] == "tiny-clip"
    assert story.caption == tag(picture).caption
    assert story.music_prompt == mg.prompts.template_prompt(story.caption)
    assert captioners._load_cached.cache_info().currsize == 0  # released before the music model


def test_chain_labels_reach_the_captioner_and_a_rerun_with_new_labels_recaptions(picture):
    story = mg.image_to_music(
        picture, labels={"weather": ["rain", "snow"]}, writer="template", seed=1, **FAST
    )
    assert story.caption.startswith("weather: ")
    again = story.rerun(labels={"season": ["summer", "winter"]})
    assert again.caption.startswith("season: ") and again.clip.seed == story.clip.seed
    assert mg.describe_image(picture, labels={"weather": ["rain", "snow"]}) == story.caption


def test_blip2_and_minigpt4_stay_one_argument_away_with_their_cost():
    clip, blip2, minigpt4 = (captioners.resolve_captioner(n) for n in ("clip", "blip2", "minigpt4"))
    assert (clip.family, clip.source, clip.size_gb) == ("clip", "openai/clip-vit-base-patch32", 0.6)
    assert blip2.family == "blip2" and blip2.size_gb == 8.0 and "15 GB of memory" in blip2.description
    assert minigpt4.family == "minigpt4" and minigpt4.size_gb == 15.0
    assert captioners.resolve_captioner("openai/clip-vit-base-patch32") is clip
    assert {"clip", "tiny-clip", "blip2", "minigpt4"} <= set(mg.CAPTIONERS)


def test_describe_image_with_blip2_still_goes_to_blip2(monkeypatch, picture):
    seen = []

    def fake_load(spec, device="cpu"):
        seen.append(spec.name)
        raise mg.ModelUnavailableError("not here")

    monkeypatch.setattr(captioners, "load_captioner", fake_load)
    with pytest.raises(mg.ModelUnavailableError):
        mg.describe_image(picture, captioner="blip2")
    assert seen == ["blip2"]


# --------------------------------------------------------------------------------------------------
# Loading a CLIP as transformers publishes it


_TORCH_LINEAR = (
    "q_proj.weight",
    "k_proj.weight",
    "v_proj.weight",
    "out_proj.weight",
    "fc1.weight",
    "fc2.weight",
)


def _publish_as_transformers(tiny: Path, target: Path) -> None:
    """The tiny CLIP's weights, config and tokenizer as transformers' ``save_pretrained`` lays them out."""
    from safetensors.numpy import load_file, save_file

    from mgtoolkit.models.tiny.clip import tiny_clip_configs

    target.mkdir(parents=True)
    state = load_file(str(tiny / "model.safetensors"))
    torch_state = {
        k: (v.T.copy() if k.endswith(_TORCH_LINEAR) or k.endswith("_projection.weight") else v)
        for k, v in state.items()
    }
    save_file(torch_state, str(target / "model.safetensors"), metadata={"format": "pt"})
    vocab = json.loads((tiny / "vocab.json").read_text(encoding="utf-8"))
    geometry = tiny_clip_configs(len(vocab))
    config = {
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": geometry["projection_dim"],
        "logit_scale_init_value": 2.6592,
        "initializer_factor": 1.0,
        "torch_dtype": "float32",
        "transformers_version": "4.40.0",
        "text_config": {**geometry["text_config"], "model_type": "clip_text_model"},
        "vision_config": {**geometry["vision_config"], "model_type": "clip_vision_model"},
    }
    (target / "config.json").write_text(json.dumps(config), encoding="utf-8")
    shutil.copy(tiny / "vocab.json", target / "vocab.json")
    shutil.copy(tiny / "merges.txt", target / "merges.txt")
    token = {
        "content": "<|endoftext|>",
        "lstrip": False,
        "normalized": True,
        "rstrip": False,
        "single_word": False,
    }
    tokenizer = {
        "tokenizer_class": "CLIPTokenizerFast",
        "model_max_length": 77,
        "do_lower_case": True,
        "errors": "replace",
        "bos_token": {**token, "content": "<|startoftext|>", "__type": "AddedToken"},
        "eos_token": {**token, "__type": "AddedToken"},
        "unk_token": {**token, "__type": "AddedToken"},
        "pad_token": "<|endoftext|>",
        "add_prefix_space": False,
    }
    (target / "tokenizer_config.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    specials = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    (target / "special_tokens_map.json").write_text(json.dumps({**specials, "pad_token": "<|endoftext|>"}))
    processor = clip_preprocessor(32)
    (target / "preprocessor_config.json").write_text(json.dumps(processor), encoding="utf-8")


def test_clip_loads_from_the_hugging_face_cache_as_transformers_publishes_it(tmp_path, monkeypatch, picture):
    from mgtoolkit.models import weights
    from mgtoolkit.models.tiny.clip import tiny_clip_dir

    want = tag(picture, LABELS)
    hub = tmp_path / "hub"
    repo = hub / "models--openai--clip-vit-base-patch32"
    _publish_as_transformers(tiny_clip_dir(), repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MGTOOLKIT_CACHE", str(tmp_path / "cache"))
    before = weights.conversions_done()
    got = mg.tag_image(picture, LABELS, captioner="clip", top_k=None)
    assert weights.conversions_done() == before + 1  # converted once from the torch layout
    assert got.model == "clip" and got.caption == want.caption
    for category in LABELS:
        np.testing.assert_allclose(
            [p for _, p in got.tags[category]], [p for _, p in want.tags[category]], rtol=1e-5, atol=1e-7
        )
    mg.tag_image(picture, LABELS, captioner="clip")
    assert weights.conversions_done() == before + 1  # the second load reads the converted copy


def test_a_clip_folder_without_its_tokenizer_files_says_which(tmp_path, monkeypatch, picture):
    from mgtoolkit.models.tiny.clip import tiny_clip_dir

    folder = tmp_path / "clip-no-vocab"
    shutil.copytree(tiny_clip_dir(), folder)
    (folder / "merges.txt").unlink()
    with pytest.raises(mg.ModelUnavailableError) as err:
        mg.tag_image(picture, captioner=str(folder))
    assert "lacks merges.txt" in str(err.value) and "\n" not in str(err.value)


def test_an_absent_clip_offline_says_what_to_download(tmp_path, monkeypatch, picture):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("PPNLP_HOME", str(tmp_path / "empty-ppnlp"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(mg.ModelUnavailableError) as err:
        mg.describe_image(picture, captioner="clip")
    message = str(err.value)
    assert message.startswith("captioner='clip'") and "0.6 GB" in message and "\n" not in message


# --------------------------------------------------------------------------------------------------
# Parity with transformers (the torch venv)


def _torch_python() -> Path | None:
    given = os.environ.get("MGTOOLKIT_PARITY_PYTHON")
    path = (
        Path(given)
        if given
        else Path(__file__).resolve().parents[2] / "build" / "parity-venv" / "bin" / "python"
    )
    return path if path.is_file() else None


@pytest.mark.parity
def test_clip_equals_transformers_on_the_same_weights(tmp_path, monkeypatch, picture):
    from mgtoolkit.models.tiny.clip import tiny_clip_configs, write_clip_tokenizer_files

    python = _torch_python()
    if python is None:
        reason = "parity: no torch venv (run `make parity`, or set MGTOOLKIT_PARITY_PYTHON)"
        if os.environ.get("MGTOOLKIT_PARITY_REQUIRED") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    vocab = write_clip_tokenizer_files(tmp_path)
    (tmp_path / "geometry.json").write_text(json.dumps(tiny_clip_configs(len(vocab))), encoding="utf-8")
    texts = [clip_tagger.LABEL_PROMPTS["mood"].format(m) for m in ("calm", "tense", "a joyful, bright")]
    (tmp_path / "texts.json").write_text(json.dumps(texts), encoding="utf-8")
    picture.resize((48, 40)).save(tmp_path / "image.png")
    done = subprocess.run(
        [
            str(python),
            str(Path(__file__).parents[1] / "parity" / "clip_reference.py"),
            "--work",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    want = np.load(tmp_path / "reference.npz")
    monkeypatch.setenv("MGTOOLKIT_CACHE", str(tmp_path / "cache"))
    loaded = captioners.load_captioner(captioners.resolve_captioner(str(tmp_path / "model")))
    model, processor = loaded.model, loaded.processor
    image = Image.open(tmp_path / "image.png").convert("RGB")
    pixels = processor.image_processor(images=image, return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(pixels, want["pixel_values"], atol=1e-5)
    ids = processor.tokenizer(texts, padding=True, return_tensors="np")["input_ids"]
    np.testing.assert_array_equal(ids, want["input_ids"])
    import paddle

    with paddle.no_grad():
        got_image = model.get_image_features(pixel_values=paddle.to_tensor(pixels)).numpy()
        got_text = model.get_text_features(input_ids=paddle.to_tensor(ids)).numpy()
    for got, key in ((got_image, "image_embeds"), (got_text, "text_embeds")):
        unit = got / np.linalg.norm(got, axis=-1, keepdims=True)
        np.testing.assert_allclose(unit, want[key], atol=2e-5, err_msg=key)
    assert float(model.logit_scale.numpy()) == pytest.approx(3.1)  # the 0-d scale was read, not left at init
    scored = clip_tagger.score_labels(
        model, processor, image, {"mood": ["calm", "tense", "a joyful, bright"]}
    )
    logits = want["logits_per_image"][0].astype(np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    expected = dict(zip(["calm", "tense", "a joyful, bright"], probs, strict=True))
    for label, p in scored["mood"]:
        assert p == pytest.approx(expected[label], rel=1e-4, abs=1e-6)
