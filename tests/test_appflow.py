"""The PaddleMIX music_generation example, run through mgtoolkit.appflow on the tiny models."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import mgtoolkit as mg
from mgtoolkit.appflow import Appflow
from mgtoolkit.errors import InvalidInputError
from mgtoolkit.tasks.image import WriterFallbackWarning

# The document's example, verbatim except: the import line, and (for speed) 5 s / 20 steps -> 1 s / 2 steps.
EXAMPLE = """
#music generation
from mgtoolkit.appflow import Appflow
import paddle
from PIL import Image
import scipy
paddle.seed(1024)

# Text to music
task = Appflow(app="music_generation", models=["cvssp/audioldm"])
prompt = "A classic cocktail lounge vibe with smooth jazz piano and a cool, relaxed atmosphere."
negative_prompt = 'low quality, average quality, muffled quality, noise interference, poor and low-grade quality, inaudible quality, low-fidelity quality'
audio_length_in_s = 5
num_inference_steps = 20
output_path = "tmp.wav"
result = task(prompt=prompt, negative_prompt=negative_prompt, num_inference_steps=num_inference_steps, audio_length_in_s=audio_length_in_s, generator = paddle.Generator().manual_seed(120))['result']
scipy.io.wavfile.write(output_path, rate=16000, data=result)

# image to music
task1 = Appflow(app="music_generation", models=["miniGPT4/MiniGPT4-7B"])
negative_prompt = 'low quality, average quality, muffled quality, noise interference, poor and low-grade quality, inaudible quality, low-fidelity quality'
audio_length_in_s = 5
num_inference_steps = 20
output_path = "tmp.wav"
minigpt4_text = 'describe the image, '
image_pil = Image.open("dance.png").convert("RGB")
result = task1(image=image_pil, minigpt4_text=minigpt4_text )['result'].split('#')[0]
paddle.device.cuda.empty_cache()

prompt = "Given the scene description in the following paragraph, please create a musical style sentence that fits the scene.  Description:{}.".format(result)
task2 = Appflow(app="music_generation", models=["THUDM/chatglm-6b", "cvssp/audioldm"])
result = task2(prompt=prompt, negative_prompt=negative_prompt, num_inference_steps=num_inference_steps, audio_length_in_s=audio_length_in_s, generator = paddle.Generator().manual_seed(120))['result']
scipy.io.wavfile.write(output_path, rate=16000, data=result)
""".replace("audio_length_in_s = 5\n", "audio_length_in_s = 1\n").replace(
    "num_inference_steps = 20\n", "num_inference_steps = 2\n"
)
FAST = {"num_inference_steps": 2, "audio_length_in_s": 1}
PROMPT = "A classic cocktail lounge vibe with smooth jazz piano and a cool, relaxed atmosphere."


@pytest.fixture(scope="module")
def text_task():
    return Appflow(app="music_generation", models=["cvssp/audioldm"])


@pytest.fixture(scope="module")
def reference(text_task):
    import paddle

    return text_task(
        prompt=PROMPT, negative_prompt="low quality", generator=paddle.Generator().manual_seed(120), **FAST
    )["result"]


@pytest.mark.slow  # seconds of whole tiny-pipeline runs or a child process (make test runs it)
def test_the_documents_example_runs_with_only_the_import_changed(tmp_path, monkeypatch):
    shutil.copy(mg.example_image(), tmp_path / "dance.png")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    with pytest.warns(WriterFallbackWarning):  # the tiny chat model babbles; the template stands in
        exec(compile(EXAMPLE, "music_generation.md", "exec"), namespace)
    import scipy.io.wavfile

    rate, data = scipy.io.wavfile.read(tmp_path / "tmp.wav")
    assert rate == 16000 and data.shape == (16000,) and np.isfinite(data).all()
    assert isinstance(namespace["prompt"], str) and "Description:" in namespace["prompt"]
    assert namespace["result"].dtype == np.float32 and np.abs(namespace["result"]).max() > 0


def test_model_names_map_to_presets_or_tiny(monkeypatch):
    assert Appflow(app="music_generation", models=["cvssp/audioldm"]).stages == {"audio": "tiny"}
    monkeypatch.setenv("MGTOOLKIT_MODEL", "audioldm-s-full-v2")
    task = Appflow(app="music_generation", models=["THUDM/chatglm-6b", "cvssp/audioldm"])
    assert task.stages == {"writer": "chatglm-6b", "audio": "audioldm"}
    assert Appflow(app="music_generation", models=["miniGPT4/MiniGPT4-7B"]).stages == {
        "captioner": "minigpt4"
    }


def test_text_to_music_returns_the_waveform(reference):
    assert isinstance(reference, np.ndarray) and reference.shape == (16000,) and reference.dtype == np.float32


def test_the_generator_seed_takes_effect(text_task, reference):
    import paddle

    paddle.seed(1)  # the global seed does not matter, the generator's does
    same = text_task(
        prompt=PROMPT, negative_prompt="low quality", generator=paddle.Generator().manual_seed(120), **FAST
    )["result"]
    np.testing.assert_array_equal(same, reference)
    other = text_task(
        prompt=PROMPT, negative_prompt="low quality", generator=paddle.Generator().manual_seed(121), **FAST
    )["result"]
    assert not np.array_equal(other, reference)
    out = text_task(prompt=PROMPT, negative_prompt="low quality", seed=120, **FAST)
    np.testing.assert_array_equal(out["result"], reference)
    assert out["clip"].seed == 120


def test_negative_prompt_and_guidance_take_effect(text_task, reference):
    import paddle

    def run(**kwargs):
        return text_task(prompt=PROMPT, generator=paddle.Generator().manual_seed(120), **FAST, **kwargs)[
            "result"
        ]

    assert not np.array_equal(run(negative_prompt="muffled noise, static"), reference)
    assert not np.array_equal(run(negative_prompt="low quality", guidance_scale=6.0), reference)


def test_image_to_caption_returns_text():
    task = Appflow(app="music_generation", models=["miniGPT4/MiniGPT4-7B"])
    out = task(image=mg.example_image(), minigpt4_text="describe the image, ")
    assert set(out) == {"result"} and isinstance(out["result"], str)


def test_chat_model_answer_is_cleaned_before_it_becomes_the_prompt(monkeypatch):
    from mgtoolkit.models import writers

    monkeypatch.setattr(writers, "complete", lambda *a, **k: 'Sure! Musical style: "Dark pulsing techno."')
    task = Appflow(app="music_generation", models=["THUDM/chatglm-6b", "cvssp/audioldm"])
    out = task(prompt="Given ... Description: a club.", seed=3, **FAST)
    assert out["prompt"] == "Dark pulsing techno." and out["clip"].prompt == "Dark pulsing techno."
    assert out["clip"].extra["chat_answer"].startswith("Sure!")


def test_all_three_models_run_image_to_music():
    task = Appflow(
        app="music_generation", models=["miniGPT4/MiniGPT4-7B", "THUDM/chatglm-6b", "cvssp/audioldm"]
    )
    with pytest.warns(WriterFallbackWarning):
        out = task(image=mg.example_image(), seed=4, **FAST)
    assert out["result"].shape == (16000,) and out["caption"] and out["prompt"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"app": "music_generation"}, "models"),
        ({"app": "music_generation", "models": []}, "models"),
        ({"app": "music_generation", "models": ["openai/whisper"]}, "models"),
        ({"app": "music_generation", "models": ["cvssp/audioldm", "cvssp/audioldm-s-full-v2"]}, "models"),
        ({"app": "text_to_image", "models": ["cvssp/audioldm"]}, "app"),
    ],
)
def test_bad_tasks_say_what_to_do(kwargs, field):
    with pytest.raises(InvalidInputError) as err:
        Appflow(**kwargs)
    assert err.value.field == field
    assert "models=" in str(err.value) if field == "models" else "music_generation" in str(err.value)


@pytest.mark.parametrize(
    ("models", "inputs", "field"),
    [
        (["cvssp/audioldm"], {"promt": "typo"}, "promt"),
        (["cvssp/audioldm"], {}, "prompt"),
        (["cvssp/audioldm"], {"prompt": "jazz", "generator": 120}, "generator"),
        (["cvssp/audioldm"], {"prompt": "jazz", "audio_length_in_s": -2}, "audio_length_in_s"),
        (["cvssp/audioldm"], {"image": "dance.png"}, "models"),
        (["miniGPT4/MiniGPT4-7B"], {"prompt": "jazz"}, "models"),
        (["miniGPT4/MiniGPT4-7B"], {"image": b""}, "image"),
    ],
)
def test_bad_calls_name_the_input(models, inputs, field):
    task = Appflow(app="music_generation", models=models)
    with pytest.raises(InvalidInputError) as err:
        task(**inputs)
    assert err.value.field == field
